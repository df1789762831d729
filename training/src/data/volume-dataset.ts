/**
 * The 3D network's data: whole volumes (not slices) at the run's target spacing, normalised by
 * the preprocessing block, read whole for random crops (crop3d.ts) and for sliding-window
 * validation. Two layouts: nnU-Net raw (NIfTI, resampled once into a cache) and SSL4MIS's
 * BraTS 2019 HDF5 (`--format brats-h5`, stored already preprocessed, read as stored).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  ALHVR_3D_RECIPE_PREPROCESSING,
  CtForegroundStatistics,
  InputError,
  applyIntensityMap,
  intensityMap,
  maxAbsDiff4,
  resampleToSpacing,
  Volume,
  type IntensityMap,
  type Mat4,
  type Preprocessing,
} from '@alhvr/core';
import { readNiftiFile, readSsl4misVolume, writeFileAtomic } from '@alhvr/core/node';
import { checkLabels, listNnunetCases, readDatasetJson, splitNnunetCases, type CaseFiles } from './nnunet-dataset.js';
import type { DatasetClass, ValidationVolume } from './slice-dataset.js';
import type { Dims3 } from './crop3d.js';

/** One case as the network's data: normalised intensities and labels, i fastest. */
export interface VolumeCase {
  dims: Dims3;
  image: Float32Array;
  label?: Uint8Array;
}

export interface VolumeDataset {
  readonly format: 'nnunet' | 'brats-h5';
  readonly classes: DatasetClass[];
  /** Case ids. */
  readonly labeled: string[];
  readonly unlabeled: string[];
  readonly validationIds: string[];
  /** sha256 over the file names, sizes and the split. */
  readonly fingerprint: string;
  /** The block the volumes were prepared with, complete (a CT rule carries its measured numbers). */
  readonly preprocessing: Preprocessing;
  /** A case at the target spacing, normalised; its labels only when `withLabel`. */
  readCase(id: string, withLabel: boolean): Promise<VolumeCase>;
  readValidation(id: string): Promise<ValidationVolume>;
  close(): Promise<void>;
}

export interface VolumeDatasetOptions {
  /** nnU-Net: number of labelled cases (first N) or their ids; brats-h5: the first N of the train list. */
  labeledCases: number | string[];
  /** nnU-Net: labelled cases held out for validation (brats-h5 validates on its val list). */
  valCases: number;
  unlabeledDir?: string;
  /** Where resampled volumes are cached (nnU-Net). */
  cacheDir: string;
  /** The config's block: a `ct-foreground` rule without numbers is measured here. */
  preprocessing: Preprocessing;
  log?: (message: string) => void;
}

interface CachedVolume {
  dims: Dims3;
  affine: Mat4;
  imagePath: string;
  labelPath?: string;
}

/** Case files to a resampled volume in the cache (raw intensities: normalisation is applied on read). */
async function cacheVolume(files: CaseFiles, classes: DatasetClass[], dir: string, p: Preprocessing): Promise<CachedVolume> {
  const imagePath = join(dir, `${files.id}.image.f32`);
  const labelPath = files.label ? join(dir, `${files.id}.label.u8`) : undefined;
  const metaPath = join(dir, `${files.id}.json`);
  const source = await stat(files.image);
  const key = JSON.stringify([files.image, source.size, source.mtimeMs, files.label ?? '', p.targetSpacing, p.resize.image, p.resize.label]);
  try {
    const meta = JSON.parse(await readFile(metaPath, 'utf8'));
    if (meta.key === key) return { ...(meta.volume as Omit<CachedVolume, 'imagePath' | 'labelPath'>), imagePath, labelPath };
  } catch {
    // not cached yet
  }
  const image = await readNiftiFile(files.image);
  const spacing = p.targetSpacing!;
  const resampled = resampleToSpacing(image, spacing, p.resize.image);
  const data = resampled.data instanceof Float32Array ? resampled.data : Float32Array.from(resampled.data);
  await writeFileAtomic(imagePath, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  if (files.label && labelPath) {
    const label = await readNiftiFile(files.label);
    if (label.dims.some((d, n) => d !== image.dims[n]) || maxAbsDiff4(label.affine, image.affine) > 1e-3 * Math.max(...image.spacing)) {
      throw new InputError(`label geometry (dims ${label.dims.join('×')}) does not match its image ${basename(files.image)} (dims ${image.dims.join('×')})`, files.label);
    }
    const ids = checkLabels(label, classes, files.label);
    const back = resampleToSpacing(label.withData(ids), spacing, p.resize.label);
    await writeFileAtomic(labelPath, Uint8Array.from(back.data));
  }
  const volume = { dims: resampled.dims, affine: resampled.affine };
  await writeFileAtomic(metaPath, JSON.stringify({ key, volume }));
  return { ...volume, imagePath, labelPath };
}

const asFloat32 = (bytes: Buffer) => new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));

/** The nnU-Net raw layout for a 3D network: every used case resampled once to the target spacing. */
export async function openNnunetVolumes(root: string, opts: VolumeDatasetOptions): Promise<VolumeDataset> {
  const { classes, modality } = await readDatasetJson(root);
  const cases = await listNnunetCases(root, opts.unlabeledDir);
  const { labeledIds, labeledSet, valSet, unlabeledCases } = splitNnunetCases(cases, opts, root);
  let preprocessing = opts.preprocessing;
  if (!preprocessing.targetSpacing) throw new InputError('a 3D run needs preprocessing.targetSpacing', root);
  // CT picks nnU-Net's CT rule unless the run named another: the BraTS recipe's z-score over
  // positive voxels means nothing for HU (air is negative, soft tissue positive).
  const recipeRule = ALHVR_3D_RECIPE_PREPROCESSING.normalisation;
  if (modality?.toUpperCase() === 'CT' && JSON.stringify(preprocessing.normalisation) === JSON.stringify(recipeRule)) {
    preprocessing = { ...preprocessing, normalisation: { kind: 'ct-foreground' } as Preprocessing['normalisation'] };
    opts.log?.('dataset modality CT: normalisation ct-foreground (nnU-Net: training-set foreground percentiles 0.5–99.5 %, mean, std)');
  }
  const dir = join(opts.cacheDir, '3d');
  await mkdir(dir, { recursive: true });
  const used = cases.filter((c) => labeledSet.has(c.id) || valSet.has(c.id) || unlabeledCases.includes(c));
  const cached = new Map<string, CachedVolume>();
  let done = 0;
  for (const c of used) {
    // Unlabeled cases never need their labels; not reading them keeps them out of training.
    const files = labeledSet.has(c.id) || valSet.has(c.id) ? c : { id: c.id, image: c.image };
    cached.set(c.id, await cacheVolume(files, classes, dir, preprocessing));
    if (++done === used.length) opts.log?.(`resampled ${used.length} cases to ${preprocessing.targetSpacing!.join(' × ')} mm into ${dir}`);
  }
  const readImage = async (id: string) => asFloat32(await readFile(cached.get(id)!.imagePath));
  const readLabel = async (id: string) => {
    const c = cached.get(id)!;
    if (!c.labelPath) throw new Error(`case ${id} has no label`);
    return new Uint8Array(await readFile(c.labelPath));
  };
  const rule = preprocessing.normalisation as Preprocessing['normalisation'] & { mean?: number };
  if (rule.kind === 'ct-foreground' && rule.mean === undefined) {
    const stats = new CtForegroundStatistics();
    for (const id of labeledIds) stats.add(await readImage(id), await readLabel(id));
    preprocessing = { ...preprocessing, normalisation: stats.result() };
    const n = preprocessing.normalisation as { low: number; high: number; mean: number; std: number };
    opts.log?.(`CT normalisation from ${labeledIds.length} labelled cases: clip [${n.low.toFixed(1)}, ${n.high.toFixed(1)}] HU, mean ${n.mean.toFixed(1)}, std ${n.std.toFixed(1)}`);
  }
  // Per-volume rules depend on the whole volume: computed on first read and kept (two numbers a case).
  const maps = new Map<string, IntensityMap>();
  const normalised = async (id: string) => {
    const image = await readImage(id);
    let map = maps.get(id);
    if (!map) maps.set(id, (map = intensityMap(image, preprocessing.normalisation)));
    return applyIntensityMap(map, image, image) as Float32Array;
  };

  const hash = createHash('sha256');
  for (const c of used) hash.update(`${basename(c.image)}:${(await stat(c.image)).size}\n`);
  hash.update(JSON.stringify({ network: 'vnet3d', labeledIds, validation: [...valSet], classes }));
  return {
    format: 'nnunet',
    classes,
    labeled: labeledIds,
    unlabeled: unlabeledCases.map((c) => c.id),
    validationIds: [...valSet],
    fingerprint: hash.digest('hex'),
    preprocessing,
    async readCase(id, withLabel) {
      const c = cached.get(id);
      if (!c) throw new Error(`unknown case ${id}`);
      return { dims: c.dims, image: await normalised(id), label: withLabel ? await readLabel(id) : undefined };
    },
    async readValidation(id) {
      const c = cached.get(id);
      if (!c) throw new Error(`unknown validation case ${id}`);
      const image = new Volume({ data: await normalised(id), dims: c.dims, affine: c.affine });
      return { id, image, label: image.withData(await readLabel(id)) };
    },
    async close() {},
  };
}

/** BraTS 2019 as SSL4MIS ships it: foreground is the whole tumour. */
export const BRATS_CLASSES: DatasetClass[] = [
  { value: 0, name: 'background' },
  { value: 1, name: 'whole tumour' },
];

/** One id per line; text after a comma is ignored (the released lists). */
async function readCaseList(root: string, name: string): Promise<string[]> {
  for (const file of [`${name}.list`, `${name}.txt`]) {
    let text: string;
    try {
      text = await readFile(join(root, file), 'utf8');
    } catch {
      continue;
    }
    return text.split(/\r?\n/).map((l) => l.split(',')[0].trim()).filter(Boolean);
  }
  throw new InputError(`missing ${name}.list (expected the SSL4MIS BraTS 2019 layout: train.list, val.list and data/<case>.h5)`, root);
}

/**
 * SSL4MIS's BraTS 2019 HDF5 layout: `train.list`/`val.list` (or .txt) beside `data/<case>.h5`
 * (or `<case>.h5`), datasets `image` (FLAIR, already cropped, clipped and z-scored by SSL4MIS's
 * preprocessing) and `label` (> 0 is tumour). The loader does no resampling or normalisation, as
 * released; the block must therefore be the 3D recipe, which describes how the files were made.
 */
export async function openBratsH5Volumes(root: string, opts: Pick<VolumeDatasetOptions, 'labeledCases' | 'preprocessing'>): Promise<VolumeDataset> {
  const recipe = ALHVR_3D_RECIPE_PREPROCESSING;
  const p = opts.preprocessing;
  if (JSON.stringify(p.normalisation) !== JSON.stringify(recipe.normalisation) || JSON.stringify(p.targetSpacing) !== JSON.stringify(recipe.targetSpacing)) {
    throw new InputError(
      `brats-h5 volumes come preprocessed (${JSON.stringify({ targetSpacing: recipe.targetSpacing, normalisation: recipe.normalisation })}); preprocessing ${JSON.stringify({ targetSpacing: p.targetSpacing, normalisation: p.normalisation })} cannot apply to them (use the nnunet layout)`,
      root,
    );
  }
  const train = await readCaseList(root, 'train');
  const validationIds = await readCaseList(root, 'val');
  const pathOf = new Map<string, string>();
  for (const id of [...train, ...validationIds]) {
    const inData = join(root, 'data', `${id}.h5`);
    const beside = join(root, `${id}.h5`);
    const found = await stat(inData).then(() => inData, () => stat(beside).then(() => beside, () => undefined));
    if (!found) throw new InputError(`case "${id}" of the lists has no data/${id}.h5`, root);
    pathOf.set(id, found);
  }
  let labeled: string[];
  if (Array.isArray(opts.labeledCases)) {
    for (const id of opts.labeledCases) if (!train.includes(id)) throw new InputError(`labeled case "${id}" is not in train.list`, root);
    labeled = opts.labeledCases;
  } else {
    if (!(opts.labeledCases >= 1 && opts.labeledCases <= train.length)) throw new InputError(`--labeled-cases ${opts.labeledCases} is outside 1–${train.length} (cases in train.list)`, root);
    labeled = train.slice(0, opts.labeledCases);
  }
  const labeledSet = new Set(labeled);
  const unlabeled = train.filter((id) => !labeledSet.has(id));
  const read = async (id: string, withLabel: boolean) => {
    const path = pathOf.get(id);
    if (!path) throw new Error(`unknown case ${id}`);
    const v = await readSsl4misVolume(path);
    if (withLabel && !v.label) throw new InputError('has no "label" dataset', path);
    // Released: label cast to uint8, tumour labels > 0 are the whole tumour.
    const label = withLabel ? v.label!.withData(Uint8Array.from(v.label!.data, (x) => (x > 0 ? 1 : 0))) : undefined;
    return { image: v.image, label };
  };
  const hash = createHash('sha256');
  for (const id of [...train, ...validationIds]) hash.update(`${basename(pathOf.get(id)!)}:${(await stat(pathOf.get(id)!)).size}\n`);
  hash.update(JSON.stringify({ network: 'vnet3d', labeled, validation: validationIds }));
  return {
    format: 'brats-h5',
    classes: BRATS_CLASSES,
    labeled,
    unlabeled,
    validationIds,
    fingerprint: hash.digest('hex'),
    preprocessing: p,
    async readCase(id, withLabel) {
      const { image, label } = await read(id, withLabel);
      return { dims: image.dims, image: image.data, label: label?.data };
    },
    async readValidation(id) {
      const { image, label } = await read(id, true);
      return { id, image, label: label! };
    },
    async close() {},
  };
}
