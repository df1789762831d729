import { describe, expect, it } from 'vitest';
import { Volume } from '../volume.js';
import { applyAffine, type Mat4, type Vec3 } from './affine.js';
import { canonicalOrientation, inverseOrientation, reorient, type Orientation } from './reorient.js';
import { PlaneResizer, resizeInPlane } from './resample.js';

// An oblique, left-handed, anisotropic affine: rotation about z by 30°, then x flipped.
const c = Math.cos(Math.PI / 6);
const s = Math.sin(Math.PI / 6);
const oblique: Mat4 = [
  [-1.5 * c, 1.5 * s * 0, 0, 10],
  [1.5 * s, 1.2 * c, 0, -20],
  [0, 1.2 * s, -6, 30],
  [0, 0, 0, 1],
];
oblique[0][1] = -1.2 * s;

function numbered(dims: [number, number, number], frames = 1): Volume<Float32Array> {
  const data = new Float32Array(dims[0] * dims[1] * dims[2] * frames);
  for (let n = 0; n < data.length; n++) data[n] = n;
  return new Volume({ data, dims, affine: oblique, frames });
}

/** World position of the voxel holding value `value` in `v`. */
function worldOfValue(v: Volume<Float32Array>, value: number): Vec3 {
  const n = v.data.indexOf(value);
  const i = n % v.dims[0];
  const j = Math.floor(n / v.dims[0]) % v.dims[1];
  const k = Math.floor(n / (v.dims[0] * v.dims[1])) % v.dims[2];
  return applyAffine(v.affine, [i, j, k]);
}

describe('reorient', () => {
  const all: Orientation[] = [];
  for (const perm of [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] as [number, number, number][]) {
    for (let f = 0; f < 8; f++) all.push({ perm, flip: [!!(f & 1), !!(f & 2), !!(f & 4)] });
  }

  it('keeps every voxel at its world position, for all 48 orientations', () => {
    const v = numbered([4, 3, 5]);
    for (const o of all) {
      const r = reorient(v, o);
      expect(r.dims).toEqual([v.dims[o.perm[0]], v.dims[o.perm[1]], v.dims[o.perm[2]]]);
      for (const value of [0, 7, 23, 59]) {
        const a = worldOfValue(v, value);
        const b = worldOfValue(r, value);
        for (let d = 0; d < 3; d++) expect(b[d]).toBeCloseTo(a[d], 9);
      }
    }
  });

  it('round-trips exactly through the inverse orientation, frames included', () => {
    const v = numbered([4, 3, 5], 2);
    for (const o of all) {
      const back = reorient(reorient(v, o), inverseOrientation(o));
      expect(back.dims).toEqual(v.dims);
      expect(Array.from(back.data)).toEqual(Array.from(v.data));
      back.affine.forEach((row, r) => row.forEach((x, cc) => expect(x).toBeCloseTo(v.affine[r][cc], 12)));
    }
  });

  it('puts the largest-spacing axis last and points axes along +RAS', () => {
    const o = canonicalOrientation(oblique);
    expect(o.perm[2]).toBe(2);
    const r = reorient(numbered([4, 3, 5]), o);
    // After canonicalisation the slice axis has spacing 6 and heads to +S.
    expect(r.spacing[2]).toBeCloseTo(6, 9);
    expect(r.affine[2][2]).toBeGreaterThan(0);
    // The row axis is the one closest to x, heading to +x.
    expect(Math.abs(r.affine[0][0])).toBeGreaterThan(Math.abs(r.affine[1][0]));
    expect(r.affine[0][0]).toBeGreaterThan(0);
  });

  it('chooses the same grid whatever the stored axis order', () => {
    const v = numbered([4, 3, 5]);
    const ref = reorient(v, canonicalOrientation(v.affine));
    for (const o of all) {
      const stored = reorient(v, o);
      const canon = reorient(stored, canonicalOrientation(stored.affine));
      expect(canon.dims).toEqual(ref.dims);
      expect(Array.from(canon.data)).toEqual(Array.from(ref.data));
    }
  });
});

describe('in-plane resize', () => {
  it('reproduces a linear ramp exactly with linear interpolation (both alignments)', () => {
    const w = 7;
    const h = 5;
    const src = new Float64Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) src[y * w + x] = 3 * x - 2 * y + 1;
    for (const alignment of ['corners', 'half-pixel'] as const) {
      const r = new PlaneResizer(w, h, 13, 9, { interpolation: 'linear', alignment });
      const dst = new Float64Array(13 * 9);
      r.resize(src, 0, dst, 0);
      for (let y = 0; y < 9; y++) {
        for (let x = 0; x < 13; x++) {
          const sx = alignment === 'corners' ? (x * (w - 1)) / 12 : Math.min(Math.max(((x + 0.5) * w) / 13 - 0.5, 0), w - 1);
          const sy = alignment === 'corners' ? (y * (h - 1)) / 8 : Math.min(Math.max(((y + 0.5) * h) / 9 - 0.5, 0), h - 1);
          expect(dst[y * 13 + x]).toBeCloseTo(3 * sx - 2 * sy + 1, 9);
        }
      }
    }
  });

  it('nearest matches scipy.ndimage.zoom(order=0) sampling for an upscale 4 → 6', () => {
    // zoom maps output x to input x·(4−1)/(6−1) = 0, .6, 1.2, 1.8, 2.4, 3 and rounds: 0,1,1,2,2,3.
    const r = new PlaneResizer(4, 1, 6, 1, { interpolation: 'nearest', alignment: 'corners' });
    const dst = new Uint8Array(6);
    r.resize(Uint8Array.from([10, 11, 12, 13]), 0, dst, 0);
    expect(Array.from(dst)).toEqual([10, 11, 11, 12, 12, 13]);
  });

  it('keeps the world position of the grid corners (corners) or centres (half-pixel)', () => {
    const v = numbered([8, 6, 3]);
    const corners = resizeInPlane(v, [15, 11], { interpolation: 'linear', alignment: 'corners' });
    const a = applyAffine(v.affine, [7, 5, 2]);
    const b = applyAffine(corners.affine, [14, 10, 2]);
    for (let d = 0; d < 3; d++) expect(b[d]).toBeCloseTo(a[d], 9);
    const half = resizeInPlane(v, [16, 12], { interpolation: 'linear', alignment: 'half-pixel' });
    // Doubling: source voxel 0's centre lies halfway between output voxels 0 and 1.
    const centre = applyAffine(half.affine, [0.5, 0.5, 0]);
    const src0 = applyAffine(v.affine, [0, 0, 0]);
    for (let d = 0; d < 3; d++) expect(centre[d]).toBeCloseTo(src0[d], 9);
    expect(half.spacing[0]).toBeCloseTo(v.spacing[0] / 2, 9);
  });
});
