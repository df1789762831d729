import { open, readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import type { Volume } from '../volume.js';
import { type DicomInstance, parseDicomInstance } from './instance.js';
import {
  type AssembleOptions,
  type DicomSeriesSummary,
  assembleDicomVolume,
  groupDicomInstances,
  selectDicomGroup,
  summarizeDicomGroup,
} from './series.js';

export interface DicomScanResult {
  series: DicomSeriesSummary[];
  skipped: { path: string; reason: string }[];
}

async function listFiles(paths: string[], out: string[], skipped: DicomScanResult['skipped']): Promise<void> {
  for (const p of paths) {
    let st;
    try {
      st = await stat(p);
    } catch {
      throw new InputError('no such file or folder', p);
    }
    if (st.isDirectory()) {
      const names = (await readdir(p)).sort();
      await listFiles(names.map((n) => join(p, n)), out, skipped);
    } else if (st.isFile()) {
      out.push(p);
    } else {
      skipped.push({ path: p, reason: 'not a regular file' });
    }
  }
}

/** Bytes read from the start of each file when scanning; headers are almost always shorter. */
const HEADER_PREFIX_BYTES = 256 * 1024;

/**
 * Parse a file's header from its first `prefixBytes` when they reach the PixelData tag (scanning
 * 10 000 files must not read 10 000 pixel arrays); otherwise from the whole file, which is also
 * what decides the error for a file that is not a usable image.
 */
async function readHeader(file: string, prefixBytes: number): Promise<DicomInstance> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size > prefixBytes) {
      const prefix = new Uint8Array(prefixBytes);
      const { bytesRead } = await handle.read(prefix, 0, prefixBytes, 0);
      try {
        return parseDicomInstance(prefix.subarray(0, bytesRead), file, { headerOnly: true, prefixOnly: true });
      } catch {
        // The header is longer than the prefix (or the prefix cut a compressed stream): read it all.
      }
    }
    const bytes = new Uint8Array(size);
    await handle.read(bytes, 0, size, 0);
    return parseDicomInstance(bytes, file, { headerOnly: true });
  } finally {
    await handle.close();
  }
}

async function scanInstances(paths: string[], prefixBytes = HEADER_PREFIX_BYTES): Promise<{ instances: DicomInstance[]; skipped: DicomScanResult['skipped'] }> {
  const files: string[] = [];
  const skipped: DicomScanResult['skipped'] = [];
  await listFiles(paths.map((p) => resolve(p)), files, skipped);
  const instances: DicomInstance[] = [];
  for (const file of files) {
    try {
      instances.push(await readHeader(file, prefixBytes));
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      skipped.push({ path: file, reason: e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message });
    }
  }
  return { instances, skipped };
}

/**
 * Walks files and folders (recursively), reads DICOM headers only and lists the image series found.
 * Files that are not DICOM images are counted in `skipped` with the reason.
 */
export async function scanDicom(paths: string[], opts: { headerPrefixBytes?: number } = {}): Promise<DicomScanResult> {
  const { instances, skipped } = await scanInstances(paths, opts.headerPrefixBytes);
  return { series: groupDicomInstances(instances).map(summarizeDicomGroup), skipped };
}

/**
 * Reads one series from files/folders into a Volume. With several series present, `seriesUID`
 * (a summary's `id` or SeriesInstanceUID) must say which.
 */
export async function readDicomSeries(
  pathOrFolder: string | string[],
  opts: { seriesUID?: string } & Omit<AssembleOptions, 'path'> = {},
): Promise<Volume> {
  const paths = Array.isArray(pathOrFolder) ? pathOrFolder : [pathOrFolder];
  const where = paths.length === 1 ? paths[0] : `${paths.length} paths`;
  const { instances, skipped } = await scanInstances(paths);
  if (instances.length === 0) {
    const why = skipped.length ? ` (${skipped.length} file(s) skipped, e.g. ${skipped[0].path}: ${skipped[0].reason})` : '';
    throw new InputError(`no DICOM image files found${why}`, where);
  }
  const group = selectDicomGroup(groupDicomInstances(instances), opts.seriesUID, where);
  const full: DicomInstance[] = [];
  for (const h of group.instances) {
    const bytes = await readFile(h.file!);
    full.push(parseDicomInstance(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), h.file));
  }
  const vol = await assembleDicomVolume(full, { strict: opts.strict, path: where });
  vol.meta.warnings.unshift(...group.warnings);
  return vol;
}
