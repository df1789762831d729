import { describe, expect, it, beforeAll } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { InputError } from '@alhvr/core';
import { openAcdcH5Dataset } from './acdc-h5-dataset.js';

// A miniature SSL4MIS ACDC tree: 2 training cases of 3 slices each (12×10 px), 1 validation volume.
let root: string;
const W = 12;
const H = 10;
const sliceValue = (c: number, s: number) => c * 10 + s;

function writeH5(path: string, shape: number[], fill: (n: number) => [number, number]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const image = new Float32Array(n);
  const label = new Uint8Array(n);
  for (let p = 0; p < n; p++) [image[p], label[p]] = fill(p);
  const f = new h5wasm.File(path, 'w');
  f.create_dataset({ name: 'image', data: image, shape, dtype: '<f4', chunks: shape, compression: 4 });
  f.create_dataset({ name: 'label', data: label, shape, dtype: '<B' });
  f.close();
}

beforeAll(async () => {
  await h5wasm.ready;
  root = await mkdtemp(join(tmpdir(), 'acdc-h5-'));
  await mkdir(join(root, 'data_list'), { recursive: true });
  await mkdir(join(root, 'slices'), { recursive: true });
  const names: string[] = [];
  for (let c = 1; c <= 2; c++) {
    for (let s = 0; s < 3; s++) {
      const name = `patient00${c}_frame01_slice_${s}`;
      names.push(name);
      // Pixel (x, y) of slice s holds a value identifying the slice plus x; label = x mod 4.
      writeH5(join(root, 'slices', `${name}.h5`), [H, W], (p) => [sliceValue(c, s) + (p % W) / 100, (p % W) % 4]);
    }
  }
  await writeFile(join(root, 'data_list', 'train_slices.list'), `${names.join('\n')}\n`);
  await writeFile(join(root, 'data_list', 'val.list'), 'patient003_frame01\n');
  await writeFile(join(root, 'data_list', 'test.list'), 'patient003_frame01\n');
  writeH5(join(root, 'patient003_frame01.h5'), [4, H, W], (p) => [Math.floor(p / (W * H)), Math.floor(p / W) % 4]);
  return () => rm(root, { recursive: true, force: true });
});

describe('SSL4MIS ACDC HDF5 dataset', () => {
  it('splits the first N listed slices as labelled and reads slices x-fastest', async () => {
    const ds = await openAcdcH5Dataset(root, { labeledSlices: 2 });
    expect(ds.labeled.map((r) => r.caseId)).toEqual(['patient001_frame01_slice_0', 'patient001_frame01_slice_1']);
    expect(ds.unlabeled).toHaveLength(4);
    expect(ds.maxSliceVoxels).toBe(W * H);
    const image = new Float32Array(W * H);
    const label = new Uint8Array(W * H);
    const size = ds.readSlice(ds.unlabeled[3], image, label);
    expect(size).toEqual({ width: W, height: H });
    expect(image[5]).toBeCloseTo(sliceValue(2, 2) + 0.05, 5);
    expect(label[W + 5]).toBe(1);
    const v = await ds.readValidation('patient003_frame01');
    expect(v.image.dims).toEqual([W, H, 4]);
    expect(v.image.data[2 * W * H]).toBe(2);
    expect(v.label.data[3 * W]).toBe(3);
    // No geometry in the HDF5 files: the voxel grid, as the released script scores.
    expect(v.image.spacing).toEqual([1, 1, 1]);
  });

  it('gives different fingerprints for different labelled splits', async () => {
    const a = await openAcdcH5Dataset(root, { labeledSlices: 2 });
    const b = await openAcdcH5Dataset(root, { labeledSlices: 3 });
    expect(a.fingerprint).not.toBe(b.fingerprint);
  });

  it('refuses a missing listed slice and an impossible split before training', async () => {
    await expect(openAcdcH5Dataset(root, { labeledSlices: 6 })).rejects.toThrow(InputError);
    await writeFile(join(root, 'data_list', 'train_slices.list'), 'patient009_frame01_slice_0\n');
    await expect(openAcdcH5Dataset(root, { labeledSlices: 1 })).rejects.toThrow(/missing|labeled slices/);
  });
});
