import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { OpenFiles } from './open-files.js';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  ALHVR_RECIPE_PREPROCESSING,
  InputError,
  canonicalOrientation,
  maxAbsDiff4,
  normaliseIntensities,
  reorient,
  Volume,
  type Mat4,
  type Preprocessing,
} from '@alhvr/core';
import { readNiftiFile, writeFileAtomic } from '@alhvr/core/node';
import type { DatasetClass, SliceDataset, SliceRef, ValidationVolume } from './slice-dataset.js';

export interface NnunetOptions {
  /** Number of labelled training cases (first N by case id), or an explicit list of case ids. */
  labeledCases: number | string[];
  /** Cases held out for validation (taken from the end of the labelled list). */
  valCases: number;
  /** Extra folder of unlabeled images (NIfTI), added to the unlabeled pool. */
  unlabeledDir?: string;
  /** Where preprocessed (canonical, normalised) volumes are cached for slice streaming. */
  cacheDir: string;
  /** Slice axis and normalisation of the cached volumes (default: the recipe). */
  preprocessing?: Pick<Preprocessing, 'sliceAxis' | 'normalisation'>;
  onProgress?: (done: number, total: number) => void;
}

export interface CaseFiles {
  id: string;
  image: string;
  label?: string;
}

interface CachedCase {
  id: string;
  dims: [number, number, number];
  /** Of the canonical (reoriented) volume the cached voxels are in. */
  affine: Mat4;
  imagePath: string;
  labelPath?: string;
}

export const NIFTI = /\.nii(\.gz)?$/;

export function caseIdOf(imageFile: string): string {
  // nnU-Net names images <case>_0000.nii.gz (channel suffix); labels <case>.nii.gz.
  return basename(imageFile).replace(NIFTI, '').replace(/_\d{4}$/, '');
}

export async function listNifti(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((f) => NIFTI.test(f)).sort();
  } catch {
    return [];
  }
}

export async function readDatasetJson(root: string): Promise<{ classes: DatasetClass[]; fileEnding: string; modality?: string }> {
  const path = join(root, 'dataset.json');
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch {
    throw new InputError('no dataset.json (expected the nnU-Net raw layout: imagesTr/, labelsTr/, dataset.json)', root);
  }
  let json: any;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new InputError(`not valid JSON (${(err as Error).message})`, path);
  }
  const labels = json.labels;
  if (typeof labels !== 'object' || labels === null) throw new InputError('has no "labels" object', path);
  // nnU-Net v2 maps name → value; the MSD/v1 layout maps value → name.
  const entries = Object.entries(labels).map(([k, v]) => (typeof v === 'number' ? { name: k, value: v } : { name: String(v), value: Number(k) }));
  if (entries.some((e) => !Number.isInteger(e.value) || e.value < 0 || e.value > 255)) throw new InputError('labels must be integers 0–255', path);
  entries.sort((a, b) => a.value - b.value);
  if (entries.length < 2 || entries[0].value !== 0 || entries.some((e, n) => e.value !== n)) {
    throw new InputError('labels must be consecutive integers starting at 0 (background)', path);
  }
  // Channel 0's modality (nnU-Net v2 channel_names, v1/MSD modality): "CT" selects CT normalisation in 3D.
  const modality = json.channel_names?.['0'] ?? json.modality?.['0'];
  return { classes: entries, fileEnding: json.file_ending ?? '.nii.gz', modality: typeof modality === 'string' ? modality : undefined };
}

export function checkLabels(label: Volume, classes: DatasetClass[], path: string): Uint8Array {
  const out = new Uint8Array(label.voxelCount);
  const max = classes.length - 1;
  for (let p = 0; p < out.length; p++) {
    const v = label.data[p];
    if (!(v >= 0 && v <= max && Number.isInteger(v))) {
      throw new InputError(`label value ${v} is not one of the dataset's classes 0–${max}`, path);
    }
    out[p] = v;
  }
  return out;
}

/**
 * What the cached voxels depend on besides the source files. Empty for the recipe, so caches
 * written before the preprocessing block existed stay valid.
 */
function preprocessingKey(p: Pick<Preprocessing, 'sliceAxis' | 'normalisation'>): string {
  const recipe = ALHVR_RECIPE_PREPROCESSING;
  const same = p.sliceAxis === recipe.sliceAxis && JSON.stringify(p.normalisation) === JSON.stringify(recipe.normalisation);
  return same ? '' : `:${JSON.stringify({ sliceAxis: p.sliceAxis, normalisation: p.normalisation })}`;
}

/** Read, canonicalise and normalise one case, and store it raw for positioned slice reads. */
async function cacheCase(files: CaseFiles, classes: DatasetClass[], cacheDir: string, preprocessing: Pick<Preprocessing, 'sliceAxis' | 'normalisation'>): Promise<CachedCase> {
  const imagePath = join(cacheDir, `${files.id}.image.f32`);
  const labelPath = files.label ? join(cacheDir, `${files.id}.label.u8`) : undefined;
  const metaPath = join(cacheDir, `${files.id}.json`);
  const sourceStat = await stat(files.image);
  const key = `${files.image}:${sourceStat.size}:${sourceStat.mtimeMs}:${files.label ?? ''}${preprocessingKey(preprocessing)}`;
  try {
    const meta = JSON.parse(await readFile(metaPath, 'utf8'));
    // Entries from before the cache kept the affine are made again.
    // Paths are this cache folder's, not the ones written: a run folder may have been moved.
    if (meta.key === key && Array.isArray(meta.case?.affine)) return { ...(meta.case as CachedCase), imagePath, labelPath };
  } catch {
    // not cached yet
  }
  const image = await readNiftiFile(files.image);
  const orientation = canonicalOrientation(image.affine, preprocessing.sliceAxis);
  const canon = reorient(image, orientation);
  // In place when possible: the raw intensities are not needed again.
  const normalised = normaliseIntensities(canon.data, preprocessing.normalisation, canon.data instanceof Float32Array ? canon.data : undefined);
  let labelData: Uint8Array | undefined;
  if (files.label) {
    const label = await readNiftiFile(files.label);
    if (label.dims.some((d, n) => d !== image.dims[n]) || maxAbsDiff4(label.affine, image.affine) > 1e-3 * Math.max(...image.spacing)) {
      throw new InputError(`label geometry (dims ${label.dims.join('×')}) does not match its image ${basename(files.image)} (dims ${image.dims.join('×')})`, files.label);
    }
    labelData = checkLabels(reorient(label, orientation), classes, files.label);
  }
  await writeFileAtomic(imagePath, new Uint8Array(normalised.buffer, normalised.byteOffset, normalised.byteLength));
  if (labelData && labelPath) await writeFileAtomic(labelPath, labelData);
  const cached: CachedCase = { id: files.id, dims: canon.dims, affine: canon.affine, imagePath, labelPath };
  await writeFileAtomic(metaPath, JSON.stringify({ key, case: cached }));
  return cached;
}

/** Every case of the layout (imagesTr with their labelsTr, then an extra unlabeled folder's images). */
export async function listNnunetCases(root: string, unlabeledDir?: string): Promise<CaseFiles[]> {
  const images = await listNifti(join(root, 'imagesTr'));
  if (images.length === 0) throw new InputError('imagesTr/ holds no NIfTI images', root);
  const labels = new Set(await listNifti(join(root, 'labelsTr')));
  const cases: CaseFiles[] = images.map((f) => {
    const id = caseIdOf(f);
    const labelName = [...labels].find((l) => l.replace(NIFTI, '') === id);
    return { id, image: join(root, 'imagesTr', f), label: labelName ? join(root, 'labelsTr', labelName) : undefined };
  });
  const extra = unlabeledDir ? await listNifti(unlabeledDir) : [];
  for (const f of extra) cases.push({ id: `unlabeled_${caseIdOf(f)}`, image: join(unlabeledDir as string, f) });
  return cases;
}

/**
 * The run's split of an nnU-Net dataset: the last `valCases` labelled cases are held out for
 * validation, the labelled training cases are the first N (or a list), every other case is
 * unlabeled. Shared by the 2D slice and the 3D volume datasets.
 */
export function splitNnunetCases(cases: CaseFiles[], opts: Pick<NnunetOptions, 'labeledCases' | 'valCases'>, root: string) {
  const withLabels = cases.filter((c) => c.label);
  const valCount = opts.valCases;
  if (withLabels.length <= valCount) throw new InputError(`${withLabels.length} labelled cases cannot hold out ${valCount} for validation and still train`, root);
  const validation = withLabels.slice(withLabels.length - valCount);
  const trainable = withLabels.slice(0, withLabels.length - valCount);
  let labeledIds: string[];
  if (Array.isArray(opts.labeledCases)) {
    const known = new Set(cases.map((c) => c.id));
    for (const id of opts.labeledCases) {
      if (!known.has(id)) throw new InputError(`labeled case "${id}" is not in imagesTr/`, root);
      if (!withLabels.some((c) => c.id === id)) throw new InputError(`labeled case "${id}" has no label in labelsTr/`, root);
      if (validation.some((c) => c.id === id)) throw new InputError(`labeled case "${id}" is one of the held-out validation cases`, root);
    }
    labeledIds = opts.labeledCases;
  } else {
    if (opts.labeledCases < 1 || opts.labeledCases > trainable.length) {
      throw new InputError(`--labeled-cases ${opts.labeledCases} is outside 1–${trainable.length} (labelled cases left after holding out ${valCount} for validation)`, root);
    }
    labeledIds = trainable.slice(0, opts.labeledCases).map((c) => c.id);
  }
  const labeledSet = new Set(labeledIds);
  const valSet = new Set(validation.map((c) => c.id));
  const unlabeledCases = cases.filter((c) => !labeledSet.has(c.id) && !valSet.has(c.id));
  return { labeledIds, labeledSet, valSet, validation, unlabeledCases };
}

/** nnU-Net / Medical Segmentation Decathlon raw layout, preprocessed once into a slice cache. */
export async function openNnunetDataset(root: string, opts: NnunetOptions): Promise<SliceDataset> {
  const { classes } = await readDatasetJson(root);
  const cases = await listNnunetCases(root, opts.unlabeledDir);

  const { labeledIds, labeledSet, valSet, unlabeledCases } = splitNnunetCases(cases, opts, root);
  // An empty unlabeled pool is the caller's concern: ALHVR needs one, a supervised run does not.

  await mkdir(opts.cacheDir, { recursive: true });
  const cached = new Map<string, CachedCase>();
  const used = cases.filter((c) => labeledSet.has(c.id) || valSet.has(c.id) || unlabeledCases.includes(c));
  let done = 0;
  for (const c of used) {
    // Unlabeled cases never need their labels; not reading them keeps their labels out of training.
    const files = labeledSet.has(c.id) || valSet.has(c.id) ? c : { id: c.id, image: c.image };
    cached.set(c.id, await cacheCase(files, classes, opts.cacheDir, opts.preprocessing ?? ALHVR_RECIPE_PREPROCESSING));
    opts.onProgress?.(++done, used.length);
  }
  const slicesOf = (id: string): SliceRef[] => Array.from({ length: cached.get(id)!.dims[2] }, (_, slice) => ({ caseId: id, slice }));
  const labeled = labeledIds.flatMap(slicesOf);
  const unlabeled = unlabeledCases.map((c) => c.id).flatMap(slicesOf);
  let maxSliceVoxels = 0;
  for (const c of cached.values()) maxSliceVoxels = Math.max(maxSliceVoxels, c.dims[0] * c.dims[1]);

  const hash = createHash('sha256');
  for (const c of used) {
    const s = await stat(c.image);
    hash.update(`${basename(c.image)}:${s.size}\n`);
  }
  hash.update(JSON.stringify({ labeledIds, validation: [...valSet], classes }));

  const files = new OpenFiles();

  return {
    format: 'nnunet',
    classes,
    labeled,
    unlabeled,
    validationIds: [...valSet],
    maxSliceVoxels,
    fingerprint: hash.digest('hex'),
    readSlice(ref, image, label) {
      const c = cached.get(ref.caseId);
      if (!c) throw new Error(`unknown case ${ref.caseId}`);
      const [w, h] = c.dims;
      const n = w * h;
      readSync(files.fd(c.imagePath), new Uint8Array(image.buffer, image.byteOffset, n * 4), 0, n * 4, ref.slice * n * 4);
      if (label) {
        if (!c.labelPath) throw new Error(`case ${ref.caseId} has no label`);
        readSync(files.fd(c.labelPath), label, 0, n, ref.slice * n);
      }
      return { width: w, height: h };
    },
    async readValidation(id): Promise<ValidationVolume> {
      const c = cached.get(id);
      if (!c || !c.labelPath) throw new Error(`unknown validation case ${id}`);
      const imageBytes = await readFile(c.imagePath);
      const image = new Float32Array(imageBytes.buffer.slice(imageBytes.byteOffset, imageBytes.byteOffset + imageBytes.byteLength));
      const volume = new Volume({ data: image, dims: c.dims, affine: c.affine });
      return { id, image: volume, label: volume.withData(new Uint8Array(await readFile(c.labelPath))) };
    },
    sourcePath: (id) => cases.find((c) => c.id === id)?.image,
    async close() {
      files.closeAll();
    },
  };
}
