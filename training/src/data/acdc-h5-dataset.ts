import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ALHVR_RECIPE_PREPROCESSING, InputError, type Preprocessing } from '@alhvr/core';
import { loadH5wasm, readSsl4misList, readSsl4misVolume } from '@alhvr/core/node';
import type { DatasetClass, SliceDataset, SliceRef, ValidationVolume } from './slice-dataset.js';

/** ACDC as the SSL4MIS preprocessing lays it out; its slices are already min–max normalised. */
export interface AcdcH5Options {
  /** Labelled slices: the first N of train_slices.list (7 cases = 136, 14 cases = 256). */
  labeledSlices: number;
  /** Which list supplies validation volumes (default val.list). */
  validationList?: 'val' | 'test';
  /** Must be the recipe's slice axis and normalisation: the files were made with them. */
  preprocessing?: Pick<Preprocessing, 'sliceAxis' | 'normalisation'>;
}

export const ACDC_CLASSES: DatasetClass[] = [
  { value: 0, name: 'background' },
  { value: 1, name: 'RV' },
  { value: 2, name: 'Myo' },
  { value: 3, name: 'LV' },
];

function datasetOf(file: any, name: string, path: string): any {
  const d = file.get(name);
  if (!d || !d.shape) throw new InputError(`has no "${name}" dataset`, path);
  return d;
}

export async function openAcdcH5Dataset(root: string, opts: AcdcH5Options): Promise<SliceDataset> {
  // SSL4MIS stored these slices already min–max normalised along their stored axis; a different
  // rule cannot be applied to them, and training with one would make the card lie.
  const recipe = ALHVR_RECIPE_PREPROCESSING;
  const wanted = opts.preprocessing ?? recipe;
  if (JSON.stringify(wanted.normalisation) !== JSON.stringify(recipe.normalisation) || wanted.sliceAxis !== recipe.sliceAxis) {
    throw new InputError(`acdc-h5 slices come normalised (${recipe.normalisation.kind}) along their stored axis; preprocessing ${JSON.stringify({ sliceAxis: wanted.sliceAxis, normalisation: wanted.normalisation })} cannot apply to them (use the nnunet layout)`, root);
  }
  const h5wasm = await loadH5wasm();
  const slices = await readSsl4misList(root, 'train_slices');
  const valIds = await readSsl4misList(root, opts.validationList ?? 'val');
  if (opts.labeledSlices < 1 || opts.labeledSlices >= slices.length) {
    throw new InputError(`labeled slices ${opts.labeledSlices} must be in 1–${slices.length - 1} (train_slices.list has ${slices.length})`, root);
  }
  const slicePath = (name: string) => join(root, 'slices', `${name}.h5`);
  const open = (path: string) => {
    try {
      return new h5wasm.File(path, 'r');
    } catch (err) {
      throw new InputError(`cannot open HDF5 file (${(err as Error).message})`, path);
    }
  };
  // Read every slice's shape once up front: a missing or malformed file fails before training.
  let maxSliceVoxels = 0;
  const hash = createHash('sha256');
  for (const name of slices) {
    const path = slicePath(name);
    try {
      await stat(path);
    } catch {
      throw new InputError('listed in train_slices.list but missing', path);
    }
    const f = open(path);
    try {
      const shape = datasetOf(f, 'image', path).shape as number[];
      if (shape.length !== 2) throw new InputError(`image must be 2D, has shape ${shape.join('×')}`, path);
      maxSliceVoxels = Math.max(maxSliceVoxels, shape[0] * shape[1]);
    } finally {
      f.close();
    }
    hash.update(`${name}\n`);
  }
  hash.update(JSON.stringify({ labeledSlices: opts.labeledSlices, valIds }));
  const refs: SliceRef[] = slices.map((caseId) => ({ caseId, slice: 0 }));

  return {
    format: 'acdc-h5',
    classes: ACDC_CLASSES,
    labeled: refs.slice(0, opts.labeledSlices),
    unlabeled: refs.slice(opts.labeledSlices),
    validationIds: valIds,
    maxSliceVoxels,
    fingerprint: hash.digest('hex'),
    readSlice(ref, image, label) {
      const path = slicePath(ref.caseId);
      const f = open(path);
      try {
        const d = datasetOf(f, 'image', path);
        const [h, w] = d.shape as number[];
        image.set(d.value as ArrayLike<number>);
        if (label) {
          const l = datasetOf(f, 'label', path).value as ArrayLike<number>;
          for (let p = 0; p < w * h; p++) {
            if (l[p] > 3 || l[p] < 0) throw new InputError(`label value ${l[p]} is not one of the ACDC classes 0–3`, path);
            label[p] = l[p];
          }
        }
        return { width: w, height: h };
      } finally {
        f.close();
      }
    },
    async readValidation(id): Promise<ValidationVolume> {
      const { image, label } = await readSsl4misVolume(join(root, `${id}.h5`));
      if (!label) throw new InputError('has no "label" dataset', join(root, `${id}.h5`));
      return { id, image, label };
    },
    async close() {},
  };
}
