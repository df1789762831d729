import { Volume, type VoxelArray, type Dims3 } from '../volume.js';
import { type Mat4, multiply4 } from './affine.js';

/** Interpolation: nearest for labels, linear (bilinear in-plane) for images and maps. */
export type Interpolation = 'nearest' | 'linear';

/**
 * Where output samples sit on the input grid. `corners`: first and last samples coincide
 * (scipy.ndimage.zoom's default, which the ALHVR recipe uses); `half-pixel`: pixel areas
 * scale (torch/ITK convention).
 */
export type GridAlignment = 'corners' | 'half-pixel';

export interface ResizeRule {
  interpolation: Interpolation;
  alignment: GridAlignment;
}

function sourceCoordinate(out: number, outSize: number, inSize: number, alignment: GridAlignment): number {
  if (alignment === 'corners') return outSize > 1 ? (out * (inSize - 1)) / (outSize - 1) : 0;
  const c = ((out + 0.5) * inSize) / outSize - 0.5;
  return Math.min(Math.max(c, 0), inSize - 1);
}

/** Precomputed sampling of one axis, reused across every slice of a volume (and by resample-volume.ts in 3D). */
export interface AxisSampling {
  lo: Int32Array;
  hi: Int32Array;
  w: Float64Array;
  nearest: Int32Array;
}

export function axisSampling(inSize: number, outSize: number, alignment: GridAlignment): AxisSampling {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const w = new Float64Array(outSize);
  const nearest = new Int32Array(outSize);
  for (let o = 0; o < outSize; o++) {
    const c = sourceCoordinate(o, outSize, inSize, alignment);
    const l = Math.min(Math.floor(c), inSize - 1);
    lo[o] = l;
    hi[o] = Math.min(l + 1, inSize - 1);
    w[o] = c - l;
    // floor(c + 0.5): scipy's order-0 rounding; the epsilon keeps exact halves stable under float error.
    nearest[o] = Math.min(Math.floor(c + 0.5 + 1e-9), inSize - 1);
  }
  return { lo, hi, w, nearest };
}

/** Resizes 2D planes (row-major, x fastest) into caller-owned buffers, so hot loops allocate nothing. */
export class PlaneResizer {
  private readonly xs: AxisSampling;
  private readonly ys: AxisSampling;

  constructor(
    readonly inWidth: number,
    readonly inHeight: number,
    readonly outWidth: number,
    readonly outHeight: number,
    readonly rule: ResizeRule,
  ) {
    this.xs = axisSampling(inWidth, outWidth, rule.alignment);
    this.ys = axisSampling(inHeight, outHeight, rule.alignment);
  }

  /** Resize the plane starting at `src[srcOffset]` into `dst[dstOffset..]`. */
  resize(src: ArrayLike<number>, srcOffset: number, dst: { [n: number]: number }, dstOffset: number): void {
    const { xs, ys, inWidth: iw, outWidth: ow, outHeight: oh } = this;
    if (this.rule.interpolation === 'nearest') {
      for (let y = 0; y < oh; y++) {
        const row = srcOffset + ys.nearest[y] * iw;
        const d = dstOffset + y * ow;
        for (let x = 0; x < ow; x++) dst[d + x] = src[row + xs.nearest[x]];
      }
      return;
    }
    for (let y = 0; y < oh; y++) {
      const r0 = srcOffset + ys.lo[y] * iw;
      const r1 = srcOffset + ys.hi[y] * iw;
      const wy = ys.w[y];
      const d = dstOffset + y * ow;
      for (let x = 0; x < ow; x++) {
        const x0 = xs.lo[x];
        const x1 = xs.hi[x];
        const wx = xs.w[x];
        const top = src[r0 + x0] + (src[r0 + x1] - src[r0 + x0]) * wx;
        const bottom = src[r1 + x0] + (src[r1 + x1] - src[r1 + x0]) * wx;
        dst[d + x] = top + (bottom - top) * wy;
      }
    }
  }
}

/** Affine of a volume whose planes were resized from `from` to `to` voxels per row/column. */
function resizedAffine(affine: Mat4, from: [number, number], to: [number, number], alignment: GridAlignment): Mat4 {
  const scale = [0, 1].map((a) =>
    alignment === 'corners' ? (to[a] > 1 ? (from[a] - 1) / (to[a] - 1) : 1) : from[a] / to[a],
  );
  const shift = [0, 1].map((a) => (alignment === 'corners' ? 0 : (scale[a] - 1) / 2));
  const indexMap: Mat4 = [
    [scale[0], 0, 0, shift[0]],
    [0, scale[1], 0, shift[1]],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
  ];
  return multiply4(affine, indexMap);
}

/**
 * Resize every i–j plane of a volume to `size` = [width, height]; the slice axis (k) is kept.
 * The output affine is exact for the chosen alignment, so the result still sits in the world.
 */
export function resizeInPlane<T extends VoxelArray>(vol: Volume<T>, size: [number, number], rule: ResizeRule): Volume<T> {
  const [iw, ih, nk] = vol.dims;
  const [ow, oh] = size;
  if (!(ow > 0 && oh > 0 && Number.isInteger(ow) && Number.isInteger(oh))) throw new Error(`invalid plane size ${size}`);
  const resizer = new PlaneResizer(iw, ih, ow, oh, rule);
  const planes = nk * vol.frames;
  const out = new (vol.data.constructor as new (len: number) => T)(ow * oh * planes);
  for (let p = 0; p < planes; p++) resizer.resize(vol.data, p * iw * ih, out, p * ow * oh);
  const dims: Dims3 = [ow, oh, nk];
  const affine = resizedAffine(vol.affine, [iw, ih], [ow, oh], rule.alignment);
  return new Volume({ data: out, dims, affine, frames: vol.frames, meta: vol.meta });
}
