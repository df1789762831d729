import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng, Volume, canonicalOrientation, reorient, type Mat4 } from '@alhvr/core';
import { readNiftiFile, writeNiftiFile } from '@alhvr/core/node';
import { openNnunetDataset } from './data/nnunet-dataset.js';
import { UNet } from './model/unet.js';
import { predictVolume, validate } from './validate.js';

// Validation keeps each case's geometry: the volumes the dataset hands out are core Volumes on
// the canonical grid of their source file (not an affine made up from spacing), and predictions
// come back on that grid.
let root: string;
// Stored with the slice axis first, x flipped and an origin far from zero: reorientation must move all of it.
const affine: Mat4 = [
  [0, -1.25, 0, 40],
  [0, 0, 1.5, -20],
  [7, 0, 0, 12],
  [0, 0, 0, 1],
];
const dims: [number, number, number] = [3, 20, 18];

beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'validate-'));
  await mkdir(join(root, 'imagesTr'));
  await mkdir(join(root, 'labelsTr'));
  await writeFile(join(root, 'dataset.json'), JSON.stringify({ labels: { background: 0, RV: 1, Myo: 2, LV: 3 }, file_ending: '.nii.gz' }));
  const n = dims[0] * dims[1] * dims[2];
  for (const [k, id] of ['a', 'b', 'c'].entries()) {
    const image = Float32Array.from({ length: n }, (_, p) => ((p * (5 + k)) % 17) + 3);
    await writeNiftiFile(join(root, 'imagesTr', `${id}_0000.nii.gz`), new Volume({ data: image, dims, affine }));
    const label = Uint8Array.from({ length: n }, (_, p) => (p % 7 === 0 ? 1 + (p % 3) : 0));
    await writeNiftiFile(join(root, 'labelsTr', `${id}.nii.gz`), new Volume({ data: label, dims, affine }));
  }
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('validation volumes keep their geometry', () => {
  it('nnU-Net readValidation gives the source’s canonical Volumes; predictVolume answers on the same grid; validate scores them', async () => {
    const ds = await openNnunetDataset(root, { labeledCases: 1, valCases: 1, cacheDir: join(root, 'cache') });
    expect(ds.validationIds).toEqual(['c']);
    const v = await ds.readValidation('c');
    const source = await readNiftiFile(join(root, 'labelsTr', 'c.nii.gz'));
    const canon = reorient(source, canonicalOrientation(source.affine));
    expect(v.image).toBeInstanceOf(Volume);
    expect(v.image.dims).toEqual(canon.dims);
    expect(v.image.affine).toEqual(canon.affine);
    expect(v.label.affine).toEqual(canon.affine);
    expect(Array.from(v.label.data)).toEqual(Array.from(canon.data));
    expect(v.image.dims).toEqual([20, 18, 3]);
    expect(v.image.spacing.map((s) => Math.round(s * 100) / 100)).toEqual([1.25, 1.5, 7]);

    const net = new UNet({ numClasses: 4, widths: [2, 2, 2, 2, 2] }, new Rng(3));
    const pred = predictVolume(net, v.image, 16);
    expect(pred.dims).toEqual(v.image.dims);
    expect(pred.affine).toEqual(v.image.affine);
    const result = await validate(net, ds, 16);
    expect(result.perClass.map((c) => c.label)).toEqual([1, 2, 3]);
    expect(Number.isFinite(result.meanDice)).toBe(true);
    net.dispose();
    await ds.close();
  });
});
