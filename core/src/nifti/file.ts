import { open, readFile, stat } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import type { Volume } from '../volume.js';
import { type DecodeNiftiOptions, type NiftiHeaderInfo, decodeNifti, decodeNiftiHeader, decodeNiftiPair } from './read.js';
import { type EncodeNiftiOptions, encodeNifti } from './write.js';

export type ReadNiftiFileOptions = Omit<DecodeNiftiOptions, 'path'>;
export type WriteNiftiFileOptions = Omit<EncodeNiftiOptions, 'gzip'>;

/** Bytes read for a header-only look; a gzip stream whose header needs more is read whole. */
const HEADER_PROBE_BYTES = 64 * 1024;

function fsProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return 'file not found';
    case 'EISDIR':
      return 'is a directory, not a NIfTI file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    default:
      return `cannot read file (${code ?? (err instanceof Error ? err.message : String(err))})`;
  }
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    if ((await stat(path)).isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (err) {
    throw new InputError(fsProblem(err), path);
  }
}

const PAIR = /^(.*)\.(hdr|img)(\.gz)?$/i;

/** For a .hdr or .img path, the header and image files of the pair (the partner may be gzipped or not). */
async function pairPaths(path: string): Promise<{ hdr: string; img: string } | null> {
  const m = PAIR.exec(path);
  if (!m) return null;
  const [, stem, ext, gz] = m;
  const upper = ext === ext.toUpperCase();
  const partnerExt = ext.toLowerCase() === 'hdr' ? (upper ? 'IMG' : 'img') : upper ? 'HDR' : 'hdr';
  const candidates = [`${stem}.${partnerExt}${gz ?? ''}`, `${stem}.${partnerExt}${gz ? '' : '.gz'}`];
  for (const candidate of candidates) {
    try {
      await stat(candidate);
      return ext.toLowerCase() === 'hdr' ? { hdr: path, img: candidate } : { hdr: candidate, img: path };
    } catch {
      // try the next spelling
    }
  }
  throw new InputError(`half of a .hdr/.img pair: ${candidates[0]} not found`, path);
}

/** A .nii / .nii.gz file, or a .hdr/.img pair given by either file. */
export async function readNiftiFile(path: string, opts: ReadNiftiFileOptions = {}): Promise<Volume> {
  const pair = await pairPaths(path);
  if (pair) {
    const [hdr, img] = await Promise.all([readBytes(pair.hdr), readBytes(pair.img)]);
    const vol = decodeNiftiPair(hdr, img, { ...opts, path });
    vol.meta.path = path;
    return vol;
  }
  return decodeNifti(await readBytes(path), { ...opts, path });
}

/** Header only: reads the first 64 KiB, and the whole file only when a gzip header lies beyond that. */
export async function readNiftiHeaderFile(path: string): Promise<NiftiHeaderInfo> {
  const pair = await pairPaths(path);
  const headerPath = pair?.hdr ?? path;
  let probe: Uint8Array;
  let size: number;
  try {
    if ((await stat(headerPath)).isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    const handle = await open(headerPath, 'r');
    try {
      size = (await handle.stat()).size;
      probe = new Uint8Array(Math.min(size, HEADER_PROBE_BYTES));
      await handle.read(probe, 0, probe.length, 0);
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw new InputError(fsProblem(err), headerPath);
  }
  try {
    return decodeNiftiHeader(probe, headerPath);
  } catch (err) {
    if (!(err instanceof InputError) || size <= probe.length) throw err;
    return decodeNiftiHeader(await readBytes(headerPath), headerPath);
  }
}

/** Write .nii or .nii.gz (gzip chosen by the extension) atomically: on failure the target is untouched. */
export async function writeNiftiFile(path: string, vol: Volume, opts: WriteNiftiFileOptions = {}): Promise<void> {
  const lower = path.toLowerCase();
  if (!lower.endsWith('.nii') && !lower.endsWith('.nii.gz')) {
    throw new InputError('output must be named .nii or .nii.gz', path);
  }
  let bytes: Uint8Array;
  try {
    bytes = encodeNifti(vol, { ...opts, gzip: lower.endsWith('.gz') });
  } catch (err) {
    if (err instanceof InputError) throw new InputError(err.message, path);
    throw err;
  }
  try {
    await writeFileAtomic(path, bytes);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    throw new InputError(`cannot write file (${code ?? (err instanceof Error ? err.message : String(err))})`, path);
  }
}
