import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSsl4misList, readSsl4misVolume, ssl4misRootOfList } from './ssl4mis-h5.js';

let root: string;
const [K, H, W] = [3, 5, 7];

beforeAll(async () => {
  await h5wasm.ready;
  root = await mkdtemp(join(tmpdir(), 'ssl4mis-'));
  await mkdir(join(root, 'data_list'));
  await writeFile(join(root, 'data_list', 'test.list'), 'case_a\n\ncase_b\n');
  const n = K * H * W;
  const image = Float32Array.from({ length: n }, (_, p) => p / n);
  const label = Uint8Array.from({ length: n }, (_, p) => p % 4);
  const f = new h5wasm.File(join(root, 'case_a.h5'), 'w');
  f.create_dataset({ name: 'image', data: image, shape: [K, H, W], dtype: '<f4', chunks: [K, H, W], compression: 4 });
  f.create_dataset({ name: 'label', data: label, shape: [K, H, W], dtype: '<B' });
  f.close();
  const g = new h5wasm.File(join(root, 'flat.h5'), 'w');
  g.create_dataset({ name: 'image', data: new Float32Array(H * W), shape: [H, W], dtype: '<f4' });
  g.close();
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('SSL4MIS HDF5 volumes', () => {
  it('reads [slice,row,col] as x-fastest volumes with the label on the same grid', async () => {
    const { image, label } = await readSsl4misVolume(join(root, 'case_a.h5'));
    expect(image.dims).toEqual([W, H, K]);
    expect(image.spacing).toEqual([1, 1, 1]);
    // Voxel (x=2, y=3, z=1) is element [1][3][2] of the stored array.
    const p = 1 * H * W + 3 * W + 2;
    expect(image.data[p]).toBeCloseTo(p / (K * H * W), 6);
    expect(label!.data[p]).toBe(p % 4);
    expect(label!.dims).toEqual(image.dims);
  });

  it('takes a known spacing, lists cases and names the file on a bad volume', async () => {
    const { image } = await readSsl4misVolume(join(root, 'case_a.h5'), { spacing: [1.5, 1.5, 10] });
    expect(image.spacing).toEqual([1.5, 1.5, 10]);
    expect(await readSsl4misList(root, 'test')).toEqual(['case_a', 'case_b']);
    expect(ssl4misRootOfList(join(root, 'data_list', 'test.list'))).toEqual({ root, name: 'test' });
    await expect(readSsl4misVolume(join(root, 'flat.h5'))).rejects.toThrow(/flat\.h5.*must be a 3D volume/);
    await expect(readSsl4misList(root, 'val')).rejects.toThrow(/missing val\.list/);
  });
});
