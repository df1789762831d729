import { describe, expect, it } from 'vitest';
import { Volume } from '../volume.js';
import { applyAffine } from './affine.js';
import { resampledDims, resampleGrid, resampleToSpacing } from './resample-volume.js';

const affine = (s: number[]) => [
  [s[0], 0, 0, -10],
  [0, s[1], 0, 5],
  [0, 0, s[2], 20],
  [0, 0, 0, 1],
];

describe('resampling a volume to a spacing', () => {
  it('new dims are round(n·s/t), at least one voxel', () => {
    expect(resampledDims([512, 512, 300], [0.7, 0.7, 1.5], [1, 1, 3])).toEqual([358, 358, 150]);
    expect(resampledDims([4, 4, 1], [1, 1, 1], [1, 1, 5])).toEqual([4, 4, 1]);
  });

  it('is the identity at the volume\'s own spacing (any rule)', () => {
    const data = Float32Array.from({ length: 5 * 4 * 3 }, (_, n) => Math.sin(n) * 100);
    const vol = new Volume({ data, dims: [5, 4, 3], affine: affine([0.8, 0.8, 2.5]) });
    for (const interpolation of ['linear', 'nearest'] as const) {
      const out = resampleToSpacing(vol, [0.8, 0.8, 2.5], { interpolation, alignment: 'half-pixel' });
      expect(out.dims).toEqual([5, 4, 3]);
      expect(Array.from(out.data)).toEqual(Array.from(data));
    }
  });

  it('trilinear reproduces a linear ramp in every axis (corners alignment) and nearest keeps label values', () => {
    const dims: [number, number, number] = [6, 5, 4];
    const ramp = (x: number, y: number, z: number) => 2 * x - 3 * y + 5 * z + 1;
    const data = new Float32Array(6 * 5 * 4);
    for (let z = 0; z < 4; z++) for (let y = 0; y < 5; y++) for (let x = 0; x < 6; x++) data[(z * 5 + y) * 6 + x] = ramp(x, y, z);
    const to: [number, number, number] = [11, 9, 7];
    const out = resampleGrid(data, dims, to, { interpolation: 'linear', alignment: 'corners' }, new Float64Array(11 * 9 * 7));
    for (let z = 0; z < 7; z++) {
      for (let y = 0; y < 9; y++) {
        for (let x = 0; x < 11; x++) {
          expect(out[(z * 9 + y) * 11 + x]).toBeCloseTo(ramp((x * 5) / 10, (y * 4) / 8, (z * 3) / 6), 4);
        }
      }
    }
    const labels = Uint8Array.from({ length: 6 * 5 * 4 }, (_, n) => [0, 3, 7][n % 3]);
    const near = resampleGrid(labels, dims, to, { interpolation: 'nearest', alignment: 'half-pixel' }, new Uint8Array(11 * 9 * 7));
    expect(new Set(near)).toEqual(new Set([0, 3, 7]));
  });

  it('keeps the volume in place in the world: the field of view\'s centre maps to the same point', () => {
    const vol = new Volume({ data: new Float32Array(64 * 48 * 10), dims: [64, 48, 10], affine: affine([0.7, 0.7, 5]) });
    const out = resampleToSpacing(vol, [1.4, 1.4, 2.5], { interpolation: 'linear', alignment: 'half-pixel' });
    expect(out.dims).toEqual([32, 24, 20]);
    expect(out.spacing.map((s) => +s.toFixed(6))).toEqual([1.4, 1.4, 2.5]);
    const centre = (dims: number[]) => dims.map((d) => (d - 1) / 2) as [number, number, number];
    const a = applyAffine(vol.affine, centre(vol.dims));
    const b = applyAffine(out.affine, centre(out.dims));
    for (let i = 0; i < 3; i++) expect(b[i]).toBeCloseTo(a[i], 9);
  });
});
