import { readFile, readdir, stat } from 'node:fs/promises';
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

// Header-only reads: a read of the first chunk would be faster still, but a header can be larger
// than any fixed chunk, and dicom-parser stops before the pixel data anyway.
async function scanInstances(paths: string[]): Promise<{ instances: DicomInstance[]; skipped: DicomScanResult['skipped'] }> {
  const files: string[] = [];
  const skipped: DicomScanResult['skipped'] = [];
  await listFiles(paths.map((p) => resolve(p)), files, skipped);
  const instances: DicomInstance[] = [];
  for (const file of files) {
    try {
      const bytes = await readFile(file);
      instances.push(parseDicomInstance(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file, { headerOnly: true }));
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
export async function scanDicom(paths: string[]): Promise<DicomScanResult> {
  const { instances, skipped } = await scanInstances(paths);
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
