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

/**
 * Bytes read from the start of each file when scanning, tried in turn. Most headers end within
 * 16 KiB; enhanced multi-frame headers with per-frame groups can run to hundreds of KiB. Reading
 * little matters: every fresh buffer page costs a first touch, and at 10 000 files a 256 KiB
 * read per file cost more than parsing.
 */
const HEADER_PREFIX_STEPS = [16 * 1024, 1024 * 1024];

/** Header reads in flight while scanning. */
const READS_IN_FLIGHT = 8;

/**
 * Parse a file's header from a prefix that reaches the PixelData tag (scanning 10 000 files must
 * not read 10 000 pixel arrays); otherwise from the whole file, which is also what decides the
 * error for a file that is not a usable image.
 */
async function readHeader(file: string, prefixSteps: readonly number[]): Promise<DicomInstance> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    for (const prefixBytes of prefixSteps) {
      if (size <= prefixBytes) break;
      const prefix = new Uint8Array(prefixBytes);
      const { bytesRead } = await handle.read(prefix, 0, prefixBytes, 0);
      try {
        return parseDicomInstance(prefix.subarray(0, bytesRead), file, { headerOnly: true, prefixOnly: true });
      } catch {
        // The header is longer than the prefix (or the prefix cut a compressed stream): read more.
      }
    }
    const bytes = new Uint8Array(size);
    await handle.read(bytes, 0, size, 0);
    return parseDicomInstance(bytes, file, { headerOnly: true });
  } finally {
    await handle.close();
  }
}

async function scanInstances(paths: string[], prefixSteps: readonly number[] = HEADER_PREFIX_STEPS): Promise<{ instances: DicomInstance[]; skipped: DicomScanResult['skipped'] }> {
  const files: string[] = [];
  const skipped: DicomScanResult['skipped'] = [];
  await listFiles(paths.map((p) => resolve(p)), files, skipped);
  // A few reads in flight at once hide the per-file open/stat/read/close round trips; results
  // keep the file order, so grouping and the skipped list do not depend on timing.
  const results: ({ instance: DicomInstance } | { skipped: { path: string; reason: string } })[] = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      const file = files[i];
      try {
        results[i] = { instance: await readHeader(file, prefixSteps) };
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        results[i] = { skipped: { path: file, reason: e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message } };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_IN_FLIGHT, files.length) }, worker));
  const instances: DicomInstance[] = [];
  for (const r of results) {
    if ('instance' in r) instances.push(r.instance);
    else skipped.push(r.skipped);
  }
  return { instances, skipped };
}

/**
 * Walks files and folders (recursively), reads DICOM headers only and lists the image series found.
 * Files that are not DICOM images are counted in `skipped` with the reason.
 */
export async function scanDicom(paths: string[], opts: { headerPrefixBytes?: number } = {}): Promise<DicomScanResult> {
  const { instances, skipped } = await scanInstances(paths, opts.headerPrefixBytes === undefined ? undefined : [opts.headerPrefixBytes]);
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
