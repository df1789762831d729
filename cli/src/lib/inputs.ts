import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { existsSync } from 'node:fs';
import { type DicomSeriesSummary, InputError } from '@alhvr/core';
import { scanDicom } from '@alhvr/core/node';
import { isNiftiPath, isPairImagePath, sanitiseFileStem, stripNiftiExtension, uniqueNames } from './file-names.js';
import { listFiles, statInput } from './list-files.js';

export interface NiftiSource {
  kind: 'nifti';
  /** Unique within one expansion and stable across runs on the same inputs; safe as a file name. */
  id: string;
  path: string;
}

export interface DicomSeriesSource {
  kind: 'dicom-series';
  id: string;
  /** The INPUT argument (file or folder) the series was found under. */
  path: string;
  series: DicomSeriesSummary;
}

export type ImageSource = NiftiSource | DicomSeriesSource;

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface ExpandedInputs {
  sources: ImageSource[];
  /** Files under the given folders that are neither NIfTI nor DICOM images. */
  skipped: SkippedFile[];
  /** With `skipLabelMaps`: NIfTI files left out because they are an nnU-Net dataset's labels. */
  labelMaps: string[];
}

export interface ExpandInputsOptions {
  signal?: AbortSignal;
  /**
   * Leave out NIfTI files in labelsTr/ or labelsTs/ of an nnU-Net dataset (a folder beside
   * imagesTr/ or imagesTs/, or with dataset.json) found while searching a folder given above it.
   */
  skipLabelMaps?: boolean;
}

const NNUNET_LABEL_FOLDERS = new Set(['labelsTr', 'labelsTs']);

/** Whether `file`, found under the searched folder `root`, is a label map of an nnU-Net dataset. */
function isNnunetLabelMap(file: string, root: string): boolean {
  const rel = relative(root, file).split(sep);
  for (let n = 0; n < rel.length - 1; n++) {
    if (!NNUNET_LABEL_FOLDERS.has(rel[n])) continue;
    const datasetRoot = join(root, ...rel.slice(0, n));
    if (['imagesTr', 'imagesTs', 'dataset.json'].some((f) => existsSync(join(datasetRoot, f)))) return true;
  }
  return false;
}

function stripPrefix(path: string, reason: string): string {
  return reason.startsWith(`${path}: `) ? reason.slice(path.length + 2) : reason;
}

/** A .img file is the data of a .hdr next to it, not an image of its own. */
function hasHeaderSibling(imgPath: string): boolean {
  const stem = imgPath.replace(/\.img(\.gz)?$/i, '');
  return ['.hdr', '.hdr.gz', '.HDR', '.HDR.GZ'].some((ext) => existsSync(stem + ext));
}

function niftiStem(path: string, root?: string): string {
  const rel = root ? relative(root, path) : basename(path);
  return sanitiseFileStem(stripNiftiExtension(rel).split(sep).join('_'));
}

const present = (s: string | undefined): s is string => s !== undefined && s.trim() !== '';

/** "2_FSE_PD_AXIAL_OBL": series number, then description (or modality); the UID when unnumbered. */
function seriesStem(series: DicomSeriesSummary): string {
  const parts = [present(series.number) ? series.number : series.id, present(series.description) ? series.description : series.modality];
  return sanitiseFileStem(parts.filter(present).join('_'), 'series');
}

async function expandOne(path: string, options: ExpandInputsOptions): Promise<{ found: (ImageSource & { stem: string })[]; skipped: SkippedFile[]; labelMaps?: string[] }> {
  const st = await statInput(path);
  if (st.isFile()) {
    if (isNiftiPath(path)) return { found: [{ kind: 'nifti', id: '', stem: niftiStem(path), path }], skipped: [] };
    const scan = await scanDicom([path]);
    if (scan.series.length === 0) {
      const reason = scan.skipped[0] ? stripPrefix(path, scan.skipped[0].reason) : 'no image found';
      throw new InputError(`not a NIfTI or DICOM image (${reason})`, path);
    }
    return { found: scan.series.map((series) => ({ kind: 'dicom-series', id: '', stem: seriesStem(series), path, series })), skipped: [] };
  }
  if (!st.isDirectory()) throw new InputError('not a file or folder', path);
  const files = await listFiles(path, { signal: options.signal });
  if (files.length === 0) throw new InputError('folder holds no files', path);
  const labelMaps = options.skipLabelMaps ? files.filter((f) => isNiftiPath(f) && isNnunetLabelMap(f, path)) : [];
  const nifti = files.filter((f) => isNiftiPath(f) && !labelMaps.includes(f));
  const pairData = files.filter((f) => isPairImagePath(f) && hasHeaderSibling(f));
  const others = files.filter((f) => !isNiftiPath(f) && !pairData.includes(f));
  const scan = others.length ? await scanDicom(others) : { series: [], skipped: [] };
  const skipped = scan.skipped.map((s) => ({ path: s.path, reason: stripPrefix(s.path, s.reason) }));
  const found: (ImageSource & { stem: string })[] = [
    ...nifti.map((p) => ({ kind: 'nifti' as const, id: '', stem: niftiStem(p, path), path: p })),
    ...scan.series.map((series) => ({ kind: 'dicom-series' as const, id: '', stem: seriesStem(series), path, series })),
  ];
  if (found.length === 0) {
    const example = skipped[0] ? `, e.g. ${basename(skipped[0].path)}: ${skipped[0].reason}` : '';
    const labels = labelMaps.length ? `; ${labelMaps.length} nnU-Net label map(s) left out` : '';
    throw new InputError(`no NIfTI files or DICOM series found (${skipped.length} file(s) skipped${example}${labels})`, path);
  }
  return { found, skipped, labelMaps };
}

/**
 * Turn INPUT arguments into image sources: a file ending .nii/.nii.gz (or an Analyze/NIfTI
 * .hdr) is a NIfTI image, any other file must be a DICOM instance, and a folder is searched
 * recursively for both (DICOM files grouped into series, other files reported as skipped).
 * Ids are file-name-safe, unique and depend only on the inputs: NIfTI by their path under
 * the folder, DICOM series by series number and description.
 */
export async function expandInputs(paths: string[], options: ExpandInputsOptions = {}): Promise<ExpandedInputs> {
  if (paths.length === 0) throw new InputError('no input given');
  const found: (ImageSource & { stem: string })[] = [];
  const skipped: SkippedFile[] = [];
  const labelMaps: string[] = [];
  const seen = new Set<string>();
  for (const path of paths) {
    if (options.signal?.aborted) break;
    const result = await expandOne(path, options);
    for (const source of result.found) {
      // The same file or series reached through two arguments is one image.
      const key = source.kind === 'nifti' ? resolve(source.path) : `dicom:${source.series.id}:${source.series.files.map((f) => resolve(f)).join('|')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      found.push(source);
    }
    skipped.push(...result.skipped);
    labelMaps.push(...(result.labelMaps ?? []));
  }
  const ids = uniqueNames(found.map((s) => s.stem));
  const sources = found.map(({ stem: _stem, ...source }, n) => ({ ...source, id: ids[n] }) as ImageSource);
  return { sources, skipped, labelMaps };
}

/** The folder holding a series' files (their deepest common folder), for display. */
export function seriesFolder(series: DicomSeriesSummary): string {
  const dirs = series.files.map((f) => dirname(resolve(f)).split(sep));
  if (dirs.length === 0) return '.';
  let common = dirs[0];
  for (const d of dirs.slice(1)) {
    let n = 0;
    while (n < common.length && n < d.length && common[n] === d[n]) n++;
    common = common.slice(0, n);
  }
  return common.join(sep) || sep;
}

/** "2 FSE PD AXIAL OBL (MR, 20 files)": how a series is named in messages. */
export function describeSeries(series: DicomSeriesSummary): string {
  const name = [series.number ? `#${series.number}` : '', series.description ? `"${series.description}"` : ''].filter(Boolean).join(' ');
  return `${series.id}${name ? ` ${name}` : ''} (${series.modality ?? 'unknown modality'}, ${series.files.length} file(s))`;
}
