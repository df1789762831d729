/**
 * Pseudo-labels from `alhvr-segment` output folders: the pseudo-label loop's way back into
 * training. Each folder is read through its manifest.jsonl; a case is used when it segmented
 * (status ok) with a verdict in `verdicts`, or whenever a reviewer put a `corrected.nii.gz` (any
 * source) or a `corrected.seg.dcm` (a DICOM SEG, for a case segmented from a DICOM series) in its
 * folder: a full label, weight 1 everywhere, whatever the verdict. Every used case is
 * checked before any training: its segment run's classes equal the dataset's, its source image
 * is byte-for-byte the one segmented (the manifest's input hash, recomputed with alhvr-segment's
 * scheme), and its mask and maps lie on the source image's grid (a DICOM SEG correction: on the
 * series' slices, with segment labels that are the dataset's class names). A failed check stops the run
 * with one line naming the case. A source may also be a DICOMweb server (`--pseudo-labels URL`):
 * the SEGs our runs stored there, or a reviewer's newer SEG of the same series, with verdicts and
 * maps from the segment folder named beside it (pseudo-labels-dicomweb.ts).
 *
 * Training must not import inference (layering), so the manifest and report fields read here
 * are declared locally; test/pseudo-label-loop.test.ts checks that the file names and the
 * input hash agree with inference's.
 */
import { createHash, type Hash } from 'node:crypto';
import { readSync } from 'node:fs';
import { OpenFiles } from './open-files.js';
import { mkdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import {
  InputError,
  canonicalOrientation,
  readDicomSeg,
  dicomSegToLabelVolume,
  maxAbsDiff4,
  normaliseIntensities,
  reorient,
  type Preprocessing,
  type Volume,
  type VoxelArray,
} from '@alhvr/core';
import { displayUrl, readDicomSeries, readNiftiFile, readNiftiHeaderFile, scanDicom, writeFileAtomic } from '@alhvr/core/node';
import type { DatasetClass, SliceRef } from './slice-dataset.js';
import {
  DicomwebTransport,
  dicomwebSourceName,
  isDicomwebSource,
  listStoredSegs,
  readRemoteSeries,
  segsFingerprint,
  type PseudoDicomwebAccess,
} from './pseudo-labels-dicomweb.js';

export { dicomwebSourceName, isDicomwebSource, type PseudoDicomwebAccess } from './pseudo-labels-dicomweb.js';

/** How a run records a --pseudo-labels entry in config.json, the checkpoint and the card: a folder's name or a server's host name. */
export function pseudoSourceRecordName(source: string): string {
  return isDicomwebSource(source) ? dicomwebSourceName(source) : basename(resolve(source));
}

/**
 * Where a --pseudo-labels entry is found again on --resume (kept in the checkpoint's state): a
 * folder's absolute path; a server's URL without credentials, query or fragment (the client
 * talks to that address anyway), so no token given in a URL is ever written.
 */
export function pseudoSourceLocation(source: string): string {
  return isDicomwebSource(source) ? displayUrl(source.trim()) : resolve(source);
}

export type PseudoVerdict = 'accept' | 'review' | 'reject';
export const PSEUDO_VERDICTS: readonly PseudoVerdict[] = ['accept', 'review', 'reject'];
export type PseudoWeighting = 'region' | 'confidence' | 'none';
export const PSEUDO_WEIGHTINGS: readonly PseudoWeighting[] = ['region', 'confidence', 'none'];

/** Names alhvr-segment writes (inference/src/outputs.ts CASE_FILES, manifest.ts), and the reviewer's file. */
export const SEGMENT_FILES = {
  manifest: 'manifest.jsonl',
  mask: 'mask.nii.gz',
  confidence: 'confidence.nii.gz',
  region: 'region.nii.gz',
  report: 'report.json',
  /** The case's DICOM SEG (a DICOM-series case); --store sends it to the PACS. */
  seg: 'seg.dcm',
  /** A reviewer's label for the case; alhvr-segment never writes or removes it. */
  corrected: 'corrected.nii.gz',
  /** The same as a DICOM SEG on the case's source series (segments named as the classes). */
  correctedSeg: 'corrected.seg.dcm',
} as const;

/** Region values of region.nii.gz (core REGION): 1 reliable and stable, 2 unstable, 3 unreliable. */
const REGION_RELIABLE = 1;
const REGION_UNSTABLE = 2;
const REGION_UNRELIABLE = 3;

/** The fields of an alhvr-segment manifest line this reader relies on. */
interface SegmentManifestLine {
  caseId: string;
  input: string;
  kind: 'nifti' | 'dicom-series';
  inputHash: string;
  status: 'ok' | 'failed';
  summary?: { verdict?: string };
}

/** What a trained model records about one pseudo-label source it learnt from: names and hashes, no paths, no tokens. */
export interface PseudoLabelSource {
  /** The segment output folder's name, or a DICOMweb server's host name. */
  name: string;
  /** A DICOMweb server (`--pseudo-labels URL`); absent for a segment output folder. */
  kind?: 'dicomweb';
  /** Folder: sha256 of its manifest.jsonl as read. */
  manifestSha256?: string;
  /** DICOMweb: sha256 of the sorted SOP Instance UIDs of the SEGs used (which SEGs, without naming one). */
  segsSha256?: string;
  /** DICOMweb: the model files (sha256, from each SEG of ours' AlgorithmParameters "model-sha256=…") whose SEGs were used, sorted; SEGs written before the hash was recorded add none. */
  models?: string[];
  /**
   * Cases used, by verdict; `corrected` counts reviewer-corrected cases (whatever their verdict).
   * DICOMweb: verdicts come from the segment folder named beside the server; `unreviewed` counts
   * our SEGs used without one (their verdict is not in the SEG).
   */
  cases: { accept: number; review: number; reject: number; corrected: number; unreviewed?: number };
  /** Cases left out because their image is one of the dataset's labelled or validation images. */
  skippedInDataset: number;
}

export interface PseudoLabelOptions {
  classes: DatasetClass[];
  verdicts: readonly PseudoVerdict[];
  weighting: PseudoWeighting;
  /** Region weighting: the weight of Ω2 (unstable) voxels; Ω1 weighs 1, Ω3 0. */
  unstableWeight: number;
  /** Folder for the preprocessed slices (rewritten at every start). */
  cacheDir: string;
  /** The training config's slice axis and normalisation: pseudo-labelled images are read like the dataset's. */
  preprocessing: Pick<Preprocessing, 'sliceAxis' | 'normalisation'>;
  /**
   * Called with the real path of each case's source image: a reason string when the image is
   * already one of the dataset's labelled or validation images (then the case is left out).
   */
  inDataset?: (sourceRealPath: string) => string | undefined;
  /** Headers, CA, timeouts for `--pseudo-labels URL` sources (never recorded). */
  dicomweb?: PseudoDicomwebAccess;
  signal?: AbortSignal;
  log?: (message: string) => void;
}

export interface PseudoLabelSet {
  /** One entry per slice of every used case, along the canonical slice axis. */
  readonly slices: SliceRef[];
  /** Real paths of the source images that carry pseudo-labels (to keep them out of the unlabeled pool). */
  readonly sourcePaths: Set<string>;
  readonly sources: PseudoLabelSource[];
  readonly maxSliceVoxels: number;
  /** Read one normalised slice, its labels and its per-pixel weights into caller-owned buffers. */
  readSlice(ref: SliceRef, image: Float32Array, label: Uint8Array, weight: Float32Array): { width: number; height: number };
  close(): Promise<void>;
}

interface CachedPseudoCase {
  dims: [number, number, number];
  imagePath: string;
  labelPath: string;
  weightPath: string;
}

const NIFTI_PAIR = /^(.*)\.(hdr|img)(\.gz)?$/i;
const exists = (p: string) => stat(p).then(() => true, () => false);

/** One error line naming the case by its folder (InputError puts the path first). */
function refuse(dir: string, caseId: string, message: string): never {
  throw new InputError(`cannot use as a pseudo-label: ${message}`, join(dir, caseId));
}

/** alhvr-segment's hashCaseInput prefix: name, length and bytes of each file, in the given order. */
async function hashFiles(files: string[]): Promise<Hash> {
  const h = createHash('sha256');
  for (const f of files) {
    const bytes = await readFile(f);
    h.update(`${basename(f)}\0${bytes.length}\0`);
    h.update(bytes);
  }
  return h;
}

async function niftiFiles(path: string): Promise<string[]> {
  const files = [path];
  const m = NIFTI_PAIR.exec(path);
  if (m) {
    const partner = `${m[1]}.${m[2].toLowerCase() === 'hdr' ? 'img' : 'hdr'}`;
    for (const p of [partner, `${partner}.gz`, partner.toUpperCase()]) {
      if (await exists(p)) {
        files.push(p);
        break;
      }
    }
  }
  return files;
}

/** Where the segmented image is now, provided its bytes still hash to the manifest's input hash. */
type LocatedSource = { kind: 'nifti'; path: string; volume?: number } | { kind: 'dicom-series'; files: string[]; seriesId: string; path: string };

async function locateSource(dir: string, entry: SegmentManifestLine): Promise<LocatedSource> {
  // alhvr-segment records inputs as given on its command line; relative ones are taken from here.
  const path = resolve(entry.input);
  if (!(await exists(path))) refuse(dir, entry.caseId, `its source ${entry.input} no longer exists`);
  if (!entry.inputHash) refuse(dir, entry.caseId, 'the manifest records no input hash for it');
  const changed = () => refuse(dir, entry.caseId, `its source ${basename(entry.input)} changed since it was segmented (input hash differs)`);
  if (entry.kind === 'dicom-series') {
    // The manifest names the series' folder, not its files: find the series whose files hash to it.
    for (const series of (await scanDicom([path])).series) {
      const files = [...series.files].sort();
      if ((await hashFiles(files)).digest('hex') === entry.inputHash) return { kind: 'dicom-series', files, seriesId: series.id, path };
    }
    return changed();
  }
  const base = await hashFiles(await niftiFiles(path));
  if (base.copy().digest('hex') === entry.inputHash) return { kind: 'nifti', path };
  // A volume of a 4D file (--volume N or all) is hashed with its index appended.
  const volumes = await readNiftiHeaderFile(path).then((h) => h.volumes, () => 1);
  for (let t = 0; t < volumes && volumes > 1; t++) {
    if (base.copy().update(`volume\0${t}`).digest('hex') === entry.inputHash) return { kind: 'nifti', path, volume: t };
  }
  return changed();
}

function sameGrid(a: Volume<VoxelArray>, b: Volume<VoxelArray>): boolean {
  return a.dims.every((d, n) => d === b.dims[n]) && maxAbsDiff4(a.affine, b.affine) <= 1e-3 * Math.max(...a.spacing);
}

async function readMap(dir: string, caseId: string, file: string, image: Volume<VoxelArray>): Promise<Volume<VoxelArray>> {
  let vol: Volume<VoxelArray>;
  try {
    vol = await readNiftiFile(join(dir, caseId, file));
  } catch (err) {
    refuse(dir, caseId, `cannot read ${file} (${(err as Error).message.split('\n')[0]})`);
  }
  if (!sameGrid(vol, image)) {
    refuse(dir, caseId, `${file} (dims ${vol.dims.join('×')}) does not lie on its source image's grid (dims ${image.dims.join('×')})`);
  }
  return vol;
}

/**
 * A reviewer's DICOM SEG, placed on the case's source series by core's reader (segments to classes
 * by label; any mismatch of geometry or classes is refused with the reader's reason).
 */
async function readCorrectedSeg(dir: string, caseId: string, image: Volume<VoxelArray>, classes: readonly DatasetClass[]): Promise<Volume<VoxelArray>> {
  const file = SEGMENT_FILES.correctedSeg;
  if (!image.meta.dicom) refuse(dir, caseId, `${file} is a DICOM SEG, but the case was segmented from a NIfTI image (use ${SEGMENT_FILES.corrected})`);
  try {
    return dicomSegToLabelVolume(await readDicomSeg(await readFile(join(dir, caseId, file))), image, classes);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return refuse(dir, caseId, `${file}: ${err.message}`);
  }
}

function classesOf(report: unknown): { value: number; name: string }[] | undefined {
  const classes = (report as { model?: { classes?: unknown } })?.model?.classes;
  return Array.isArray(classes) ? classes.map((c: { value: number; name: string }) => ({ value: c.value, name: c.name })) : undefined;
}

const describeClasses = (cs: { value: number; name: string }[]) => cs.map((c) => `${c.value} ${c.name}`).join(', ');

interface FolderManifest {
  dir: string;
  source: PseudoLabelSource;
  entries: SegmentManifestLine[];
}

async function readFolderManifest(dir: string): Promise<FolderManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, SEGMENT_FILES.manifest), 'utf8');
  } catch {
    throw new InputError('not an alhvr-segment output folder (no readable manifest.jsonl)', dir);
  }
  const entries = new Map<string, SegmentManifestLine>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as SegmentManifestLine;
      if (typeof e.caseId === 'string') entries.set(e.caseId, e);
    } catch {
      // alhvr-segment's reader skips a line left by an interrupted edit; so does this one.
    }
  }
  return {
    dir,
    source: { name: basename(resolve(dir)), manifestSha256: createHash('sha256').update(text).digest('hex'), cases: { accept: 0, review: 0, reject: 0, corrected: 0 }, skippedInDataset: 0 },
    entries: [...entries.values()].sort((a, b) => (a.caseId < b.caseId ? -1 : 1)),
  };
}

/** The classes a case's report.json records, refused (one line) unless they are the dataset's. */
async function checkCaseClasses(dir: string, caseId: string, classes: readonly DatasetClass[]): Promise<void> {
  let report: unknown;
  try {
    report = JSON.parse(await readFile(join(dir, caseId, SEGMENT_FILES.report), 'utf8'));
  } catch {
    refuse(dir, caseId, `has no readable ${SEGMENT_FILES.report} (the segment run's classes are unknown)`);
  }
  const modelClasses = classesOf(report);
  const wanted = classes.map((c) => ({ value: c.value, name: c.name }));
  if (!modelClasses || describeClasses(modelClasses) !== describeClasses(wanted)) {
    refuse(dir, caseId, `segmented by a model with classes [${modelClasses ? describeClasses(modelClasses) : 'none recorded'}], the dataset has [${describeClasses(wanted)}]`);
  }
}

/**
 * Read, check and cache every usable case of the given sources: alhvr-segment output folders and
 * DICOMweb servers (see pseudo-labels-dicomweb.ts). A folder's cases segmented from a server are
 * read through that server, which must be named too, so its reviewers' SEGs are seen. Throws (one
 * line naming the case) on the first refusal; nothing is trained on partly checked data.
 */
export async function openPseudoLabels(dirs: string[], opts: PseudoLabelOptions): Promise<PseudoLabelSet> {
  await rm(opts.cacheDir, { recursive: true, force: true });
  await mkdir(opts.cacheDir, { recursive: true });
  const cached = new Map<string, CachedPseudoCase>();
  const slices: SliceRef[] = [];
  const sourcePaths = new Map<string, string>();
  const sources: PseudoLabelSource[] = [];
  const verdicts = new Set<string>(opts.verdicts);
  const maxLabel = opts.classes.length - 1;
  let maxSliceVoxels = 0;

  /** Reorient, normalise, weigh and cache one checked case; `fail` refuses naming it. */
  const cacheCase = async (id: string, image: Volume<VoxelArray>, mask: Volume<VoxelArray>, weightMap: Volume<VoxelArray> | undefined, fail: (message: string) => never) => {
    const orientation = canonicalOrientation(image.affine, opts.preprocessing.sliceAxis);
    const canon = reorient(image, orientation);
    const normalised = normaliseIntensities(canon.data, opts.preprocessing.normalisation, canon.data instanceof Float32Array ? canon.data : undefined);
    const labelData = reorient(mask, orientation).data;
    const label = new Uint8Array(labelData.length);
    for (let p = 0; p < label.length; p++) {
      const v = labelData[p];
      if (!(v >= 0 && v <= maxLabel && Number.isInteger(v))) fail(`label value ${v} is not one of the dataset's classes 0–${maxLabel}`);
      label[p] = v;
    }
    const weight = new Float32Array(label.length).fill(1);
    if (weightMap) {
      const w = reorient(weightMap, orientation).data;
      for (let p = 0; p < weight.length; p++) {
        if (opts.weighting === 'confidence') {
          // The written confidence is already the calibrated ensemble max-probability in [0, 1].
          weight[p] = Math.min(1, Math.max(0, w[p]));
        } else if (w[p] === REGION_RELIABLE) weight[p] = 1;
        else if (w[p] === REGION_UNSTABLE) weight[p] = opts.unstableWeight;
        else if (w[p] === REGION_UNRELIABLE) weight[p] = 0;
        else fail(`region value ${w[p]} is not 1, 2 or 3`);
      }
    }
    const stem = join(opts.cacheDir, id);
    const c: CachedPseudoCase = { dims: canon.dims, imagePath: `${stem}.image.f32`, labelPath: `${stem}.label.u8`, weightPath: `${stem}.weight.f32` };
    await writeFileAtomic(c.imagePath, new Uint8Array(normalised.buffer, normalised.byteOffset, normalised.byteLength));
    await writeFileAtomic(c.labelPath, label);
    await writeFileAtomic(c.weightPath, new Uint8Array(weight.buffer));
    cached.set(id, c);
    for (let slice = 0; slice < c.dims[2]; slice++) slices.push({ caseId: id, slice });
    maxSliceVoxels = Math.max(maxSliceVoxels, c.dims[0] * c.dims[1]);
  };

  /** The weight map of a case the folder segmented (none for --pseudo-weighting none). */
  const weightMapOf = async (dir: string, caseId: string, image: Volume<VoxelArray>) => {
    if (opts.weighting === 'none') return undefined;
    const file = opts.weighting === 'region' ? SEGMENT_FILES.region : SEGMENT_FILES.confidence;
    if (!(await exists(join(dir, caseId, file)))) {
      refuse(dir, caseId, `has no ${file}${opts.weighting === 'region' ? ' (a one-student model writes no regions; use --pseudo-weighting confidence or none)' : ''}`);
    }
    return readMap(dir, caseId, file, image);
  };

  const servers = dirs.filter(isDicomwebSource);
  const folders: FolderManifest[] = [];
  for (const dir of dirs.filter((d) => !isDicomwebSource(d))) {
    const folder = await readFolderManifest(dir);
    if (folders.some((f) => f.source.name === folder.source.name)) throw new InputError(`two pseudo-label folders are both named "${folder.source.name}"; the run records folders by name, so rename one`, dir);
    folders.push(folder);
  }
  // A folder's DICOMweb cases (manifest input = the series' address) are read through their server.
  const remoteCases = new Map<string, { folder: FolderManifest; entry: SegmentManifestLine }>();
  for (const folder of folders) {
    for (const entry of folder.entries) {
      if (!isDicomwebSource(entry.input)) continue;
      const server = servers.find((u) => entry.input.startsWith(`${displayUrl(u)}/studies/`));
      if (!server) {
        const named = entry.input.replace(/\/studies\/.*$/, '');
        refuse(folder.dir, entry.caseId, `was segmented from the DICOMweb server ${named}: name the server too (--pseudo-labels ${named} ${folder.dir}), so its stored and reviewed SEGs are read there`);
      }
      remoteCases.set(entry.input, { folder, entry });
    }
  }

  for (const [dirIndex, { dir, source, entries }] of folders.entries()) {
    for (const entry of entries) {
      if (isDicomwebSource(entry.input)) continue;
      const caseDir = join(dir, entry.caseId);
      const correctedNifti = await exists(join(caseDir, SEGMENT_FILES.corrected));
      const correctedSeg = await exists(join(caseDir, SEGMENT_FILES.correctedSeg));
      if (correctedNifti && correctedSeg) {
        refuse(dir, entry.caseId, `has both ${SEGMENT_FILES.corrected} and ${SEGMENT_FILES.correctedSeg}; keep the reviewer's one correction`);
      }
      const corrected = correctedNifti || correctedSeg;
      const verdict = entry.summary?.verdict;
      if (!corrected && !(entry.status === 'ok' && verdict && verdicts.has(verdict))) continue;

      // Classes first: a mask of another label set is wrong however well it fits the image.
      await checkCaseClasses(dir, entry.caseId, opts.classes);

      const located = await locateSource(dir, entry);
      const real = await realpath(located.path);
      const key = located.kind === 'nifti' ? `${real}#${located.volume ?? 0}` : `${real}#${located.seriesId}`;
      const inDataset = opts.inDataset?.(real);
      if (inDataset) {
        opts.log?.(`pseudo-labels: case ${entry.caseId} of ${source.name} left out: ${inDataset}`);
        source.skippedInDataset++;
        continue;
      }
      const twice = sourcePaths.get(key);
      if (twice) refuse(dir, entry.caseId, `segments the same image as ${twice}; pass each image once`);
      sourcePaths.set(key, `case ${entry.caseId} of ${source.name}`);

      const image =
        located.kind === 'nifti'
          ? await readNiftiFile(located.path, { volumeIndex: located.volume })
          : await readDicomSeries(located.files, { seriesUID: located.seriesId });
      const mask = correctedSeg
        ? await readCorrectedSeg(dir, entry.caseId, image, opts.classes)
        : await readMap(dir, entry.caseId, corrected ? SEGMENT_FILES.corrected : SEGMENT_FILES.mask, image);
      const weightMap = corrected ? undefined : await weightMapOf(dir, entry.caseId, image);
      await cacheCase(`pseudo-${dirIndex}-${entry.caseId}`, image, mask, weightMap, (m) => refuse(dir, entry.caseId, m));
      if (corrected) source.cases.corrected++;
      else source.cases[verdict as PseudoVerdict]++;
    }
    sources.push(source);
  }

  for (const [serverIndex, url] of servers.entries()) {
    const name = dicomwebSourceName(url);
    if (servers.findIndex((u) => displayUrl(u) === displayUrl(url)) !== serverIndex) throw new InputError('this DICOMweb server is named twice in --pseudo-labels', displayUrl(url));
    const source: PseudoLabelSource = { name, kind: 'dicomweb', segsSha256: '', cases: { accept: 0, review: 0, reject: 0, corrected: 0, unreviewed: 0 }, skippedInDataset: 0 };
    const t = new DicomwebTransport({ ...opts.dicomweb, url });
    try {
      const listing = await listStoredSegs(t, { signal: opts.signal, log: opts.log });
      opts.log?.(`pseudo-labels: ${t.display}: ${listing.segs.ours} SEG(s) of alhvr-segment on ${listing.series.length} series, ${listing.segs.others} other SEG(s)`);
      const used: string[] = [];
      const models = new Set<string>();
      let unpaired = 0;
      for (const [n, s] of listing.series.entries()) {
        const paired = remoteCases.get(s.input);
        const where = paired ? join(paired.folder.dir, paired.entry.caseId) : s.input;
        const fail = (message: string): never => {
          throw new InputError(`cannot use as a pseudo-label: ${message}`, where);
        };
        // The reviewer's SEG wins whatever the verdict; else ours, by the paired folder's verdict.
        const verdict = paired?.entry.summary?.verdict;
        if (!s.reviewer && paired && !(paired.entry.status === 'ok' && verdict && verdicts.has(verdict))) continue;
        if (!s.reviewer && !paired) {
          if (opts.weighting !== 'none') {
            fail(`a SEG carries labels only, and no segment folder named beside ${t.display} holds this series' ${opts.weighting === 'region' ? 'region' : 'confidence'} map and verdict; name that folder too (--pseudo-labels ${t.display} DIR) or use --pseudo-weighting none`);
          }
          unpaired++;
        }
        // Ours must be a whole label set of the dataset's classes; a reviewer may have drawn only some.
        const label = s.reviewer ?? s.ours;
        const ourLabels = s.ours.seg.segments.map((g) => g.label.toLowerCase()).sort();
        const wanted = opts.classes.filter((c) => c.value !== 0).map((c) => c.name.toLowerCase()).sort();
        if (ourLabels.join('\0') !== wanted.join('\0')) {
          fail(`segmented by a model with segments [${s.ours.seg.segments.map((g) => g.label).join(', ')}], the dataset has classes [${opts.classes.filter((c) => c.value !== 0).map((c) => c.name).join(', ')}]`);
        }
        if (paired) await checkCaseClasses(paired.folder.dir, paired.entry.caseId, opts.classes);
        const image = await readRemoteSeries(t, s, join(opts.cacheDir, `dicomweb-${serverIndex}-${n}`), opts.signal).catch((err: unknown) => fail((err as Error).message.split('\n')[0]));
        let mask: Volume<VoxelArray>;
        try {
          mask = dicomSegToLabelVolume(label.seg, image, opts.classes);
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          return fail(`${s.reviewer ? "the reviewer's" : 'our'} SEG ${label.seg.identity.seriesInstanceUID}: ${err.message}`);
        }
        let weightMap: Volume<VoxelArray> | undefined;
        if (!s.reviewer && paired) {
          // The folder's maps belong to its seg.dcm: they weigh the stored SEG only if it is that one.
          const local = await readFile(join(paired.folder.dir, paired.entry.caseId, SEGMENT_FILES.seg)).then(async (b) => (await readDicomSeg(b)).identity.sopInstanceUID, () => undefined);
          if (opts.weighting !== 'none' && local !== s.ours.seg.identity.sopInstanceUID) {
            fail(`the SEG stored on ${t.display} is not this folder's seg.dcm (segmented again since it was stored?), so the folder's maps do not belong to it; store it again (alhvr-segment --store --resume) or use --pseudo-weighting none`);
          }
          weightMap = await weightMapOf(paired.folder.dir, paired.entry.caseId, image);
        }
        sourcePaths.set(`${s.input}#`, `series ${s.input}`);
        await cacheCase(`pseudo-dicomweb-${serverIndex}-${n}`, image, mask, weightMap, fail);
        used.push(label.seg.identity.sopInstanceUID);
        const model = /^model-sha256=([0-9a-f]{64})$/.exec(s.ours.seg.identity.algorithmParameters)?.[1];
        if (model) models.add(model);
        if (s.reviewer) source.cases.corrected++;
        else if (paired) source.cases[verdict as PseudoVerdict]++;
        else source.cases.unreviewed!++;
      }
      if (unpaired) opts.log?.(`pseudo-labels: ${t.display}: ${unpaired} SEG(s) of ours used with weight 1 and verdicts unchecked (no segment folder named beside the server)`);
      source.segsSha256 = segsFingerprint(used);
      source.models = [...models].sort();
    } finally {
      t.close();
    }
    sources.push(source);
  }

  const files = new OpenFiles();
  return {
    slices,
    sourcePaths: new Set([...sourcePaths.keys()].map((k) => k.slice(0, k.lastIndexOf('#')))),
    sources,
    maxSliceVoxels,
    readSlice(ref, image, label, weight) {
      const c = cached.get(ref.caseId);
      if (!c) throw new Error(`unknown pseudo-labelled case ${ref.caseId}`);
      const [w, h] = c.dims;
      const n = w * h;
      readSync(files.fd(c.imagePath), new Uint8Array(image.buffer, image.byteOffset, n * 4), 0, n * 4, ref.slice * n * 4);
      readSync(files.fd(c.labelPath), label, 0, n, ref.slice * n);
      readSync(files.fd(c.weightPath), new Uint8Array(weight.buffer, weight.byteOffset, n * 4), 0, n * 4, ref.slice * n * 4);
      return { width: w, height: h };
    },
    async close() {
      files.closeAll();
    },
  };
}

/** The pseudo-labelled stream as the trainer uses it: the set, and the unlabeled pool without its images. */
export interface PseudoStream {
  set: PseudoLabelSet;
  unlabeled: SliceRef[];
}

/**
 * Open the pseudo-labels a run asks for against its dataset: cases whose image is a labelled or
 * validation image of the dataset are left out (a true label wins; validation must stay unseen),
 * and images that now carry pseudo-labels leave the unlabeled pool, so no slice is both.
 */
export async function openPseudoStream(
  dataset: { labeled: SliceRef[]; unlabeled: SliceRef[]; validationIds: string[]; classes: DatasetClass[]; sourcePath?(caseId: string): string | undefined },
  config: { pseudoLabels?: string[]; pseudoVerdicts: readonly PseudoVerdict[]; pseudoWeighting: PseudoWeighting; pseudoUnstableWeight: number; out: string; preprocessing: Pick<Preprocessing, 'sliceAxis' | 'normalisation'> },
  log?: (message: string) => void,
  access: { dicomweb?: PseudoDicomwebAccess; signal?: AbortSignal } = {},
): Promise<PseudoStream | undefined> {
  if (!config.pseudoLabels?.length) return undefined;
  const realOf = async (id: string) => {
    const p = dataset.sourcePath?.(id);
    return p ? realpath(p).catch(() => resolve(p)) : undefined;
  };
  const taken = new Map<string, string>();
  for (const id of new Set(dataset.labeled.map((r) => r.caseId))) {
    const p = await realOf(id);
    if (p) taken.set(p, `its image is the labelled case ${id}`);
  }
  for (const id of dataset.validationIds) {
    const p = await realOf(id);
    if (p) taken.set(p, `its image is the validation case ${id}`);
  }
  const set = await openPseudoLabels(config.pseudoLabels, {
    classes: dataset.classes,
    verdicts: config.pseudoVerdicts,
    weighting: config.pseudoWeighting,
    unstableWeight: config.pseudoUnstableWeight,
    cacheDir: join(config.out, 'cache', 'pseudo-labels'),
    preprocessing: config.preprocessing,
    inDataset: (p) => taken.get(p),
    dicomweb: access.dicomweb,
    signal: access.signal,
    log,
  });
  if (set.slices.length === 0) {
    throw new InputError(`no usable pseudo-labelled case (verdicts ${config.pseudoVerdicts.join(', ')}, a corrected.nii.gz or corrected.seg.dcm, or a reviewer's SEG on the server) in ${set.sources.map((s) => s.name).join(', ')}`);
  }
  const carrying = new Set<string>();
  for (const id of new Set(dataset.unlabeled.map((r) => r.caseId))) {
    const p = await realOf(id);
    if (p && set.sourcePaths.has(p)) carrying.add(id);
  }
  return { set, unlabeled: dataset.unlabeled.filter((r) => !carrying.has(r.caseId)) };
}
