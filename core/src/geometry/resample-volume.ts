import { Volume, type Dims3, type VoxelArray } from '../volume.js';
import { type Mat4, multiply4 } from './affine.js';
import { axisSampling, type GridAlignment, type ResizeRule } from './resample.js';

/**
 * Resampling of whole 3D grids to a voxel spacing, the 3D counterpart of resample.ts's plane
 * resizing, with the same rules (nearest for labels, linear = trilinear here; `corners` or
 * `half-pixel` alignment) and the same per-axis sampling. Used where a 3D model's card or
 * training preprocessing names a `targetSpacing`: volumes go to that spacing and outputs back.
 */

type Writable = { [n: number]: number; length: number };

/** Voxels per axis at `target` spacing: max(1, round(n·s/t)) (nnU-Net's new shape). */
export function resampledDims(dims: Dims3, spacing: readonly number[], target: readonly number[]): Dims3 {
  return [0, 1, 2].map((a) => {
    if (!(spacing[a] > 0 && target[a] > 0)) throw new Error(`resample: spacing ${spacing[a]} and target ${target[a]} must be positive`);
    return Math.max(1, Math.round((dims[a] * spacing[a]) / target[a]));
  }) as Dims3;
}

/**
 * Resample `src` (dims `from`, i fastest) to `to` voxels per axis into `out` (length ∏to).
 * Trilinear is separable interpolation over the eight neighbours; nearest picks one voxel.
 */
export function resampleGrid<T extends Writable>(src: ArrayLike<number>, from: Dims3, to: Dims3, rule: ResizeRule, out: T, srcOffset = 0, outOffset = 0): T {
  const [xs, ys, zs] = [0, 1, 2].map((a) => axisSampling(from[a], to[a], rule.alignment));
  const [nx, ny] = from;
  const [ox, oy, oz] = to;
  const plane = nx * ny;
  let o = outOffset;
  if (rule.interpolation === 'nearest') {
    for (let z = 0; z < oz; z++) {
      const zb = srcOffset + zs.nearest[z] * plane;
      for (let y = 0; y < oy; y++) {
        const row = zb + ys.nearest[y] * nx;
        for (let x = 0; x < ox; x++) out[o++] = src[row + xs.nearest[x]];
      }
    }
    return out;
  }
  for (let z = 0; z < oz; z++) {
    const z0 = srcOffset + zs.lo[z] * plane;
    const z1 = srcOffset + zs.hi[z] * plane;
    const wz = zs.w[z];
    for (let y = 0; y < oy; y++) {
      const y0 = ys.lo[y] * nx;
      const y1 = ys.hi[y] * nx;
      const wy = ys.w[y];
      const r00 = z0 + y0;
      const r01 = z0 + y1;
      const r10 = z1 + y0;
      const r11 = z1 + y1;
      for (let x = 0; x < ox; x++) {
        const x0 = xs.lo[x];
        const x1 = xs.hi[x];
        const wx = xs.w[x];
        const a = src[r00 + x0] + (src[r00 + x1] - src[r00 + x0]) * wx;
        const b = src[r01 + x0] + (src[r01 + x1] - src[r01 + x0]) * wx;
        const c = src[r10 + x0] + (src[r10 + x1] - src[r10 + x0]) * wx;
        const d = src[r11 + x0] + (src[r11 + x1] - src[r11 + x0]) * wx;
        const near = a + (b - a) * wy;
        const far = c + (d - c) * wy;
        out[o++] = near + (far - near) * wz;
      }
    }
  }
  return out;
}

/** Affine of a grid resampled from `from` to `to` voxels per axis, exact for the alignment. */
export function resampledAffine(affine: Mat4, from: Dims3, to: Dims3, alignment: GridAlignment): Mat4 {
  const scale = [0, 1, 2].map((a) => (alignment === 'corners' ? (to[a] > 1 ? (from[a] - 1) / (to[a] - 1) : 1) : from[a] / to[a]));
  const shift = scale.map((s) => (alignment === 'corners' ? 0 : (s - 1) / 2));
  const indexMap: Mat4 = [
    [scale[0], 0, 0, shift[0]],
    [0, scale[1], 0, shift[1]],
    [0, 0, scale[2], shift[2]],
    [0, 0, 0, 1],
  ];
  return multiply4(affine, indexMap);
}

/**
 * A single-frame volume resampled to `target` spacing [x, y, z] mm along its own i, j, k axes
 * (no reorientation), as float32 for linear rules and in the input's array type for nearest.
 */
export function resampleToSpacing<T extends VoxelArray>(vol: Volume<T>, target: readonly number[], rule: ResizeRule): Volume<T | Float32Array> {
  if (vol.frames !== 1) throw new Error(`resampleToSpacing: ${vol.frames} frames; one volume at a time`);
  const to = resampledDims(vol.dims, vol.spacing, target);
  const n = to[0] * to[1] * to[2];
  const out = rule.interpolation === 'nearest' ? new (vol.data.constructor as new (len: number) => T)(n) : new Float32Array(n);
  resampleGrid(vol.data, vol.dims, to, rule, out);
  return new Volume({ data: out, dims: to, affine: resampledAffine(vol.affine, vol.dims, to, rule.alignment), meta: vol.meta });
}
