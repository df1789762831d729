import { type Mat4, multiply4, axisDirections, spacingFromAffine } from './affine.js';
import { Volume, type VoxelArray, type Dims3 } from '../volume.js';

/**
 * An axis permutation with flips. Axis `a` of the reoriented volume runs along source axis
 * `perm[a]`, reversed when `flip[a]`. Reorienting changes the voxel order only: every voxel
 * keeps its world position, because the affine is updated to match.
 */
export interface Orientation {
  perm: [number, number, number];
  flip: [boolean, boolean, boolean];
}

export type SliceAxisRule = 'largest-spacing' | 0 | 1 | 2;

/**
 * The canonical orientation the toolkit trains and infers in: the slice axis last (by default
 * the axis with the largest spacing — the acquisition's through-plane axis — with ties going to
 * the highest index axis), the in-plane axis closest to RAS x first, and every axis pointing
 * towards the positive end of its dominant RAS component. It depends on the geometry only, so
 * a DICOM series and the NIfTI converted from it land on the same voxel grid.
 */
export function canonicalOrientation(affine: Mat4, sliceAxis: SliceAxisRule = 'largest-spacing'): Orientation {
  const spacing = spacingFromAffine(affine);
  const dirs = axisDirections(affine);
  let s: number;
  if (sliceAxis === 'largest-spacing') {
    s = 2;
    for (const a of [1, 0]) if (spacing[a] > spacing[s] * (1 + 1e-3)) s = a;
  } else {
    s = sliceAxis;
  }
  const inPlane = [0, 1, 2].filter((a) => a !== s);
  // The in-plane axis with the larger |x| component becomes the row (i) axis.
  const [u, v] = Math.abs(dirs[inPlane[0]][0]) >= Math.abs(dirs[inPlane[1]][0]) ? inPlane : [inPlane[1], inPlane[0]];
  const perm: [number, number, number] = [u, v, s];
  const flip = perm.map((a) => {
    const d = dirs[a];
    const dominant = [0, 1, 2].reduce((best, c) => (Math.abs(d[c]) > Math.abs(d[best]) ? c : best), 0);
    return d[dominant] < 0;
  }) as [boolean, boolean, boolean];
  return { perm, flip };
}

export function isIdentityOrientation(o: Orientation): boolean {
  return o.perm[0] === 0 && o.perm[1] === 1 && o.perm[2] === 2 && !o.flip.some(Boolean);
}

/** The orientation that undoes `o`. */
export function inverseOrientation(o: Orientation): Orientation {
  const perm = [0, 0, 0] as [number, number, number];
  const flip = [false, false, false] as [boolean, boolean, boolean];
  for (let a = 0; a < 3; a++) {
    perm[o.perm[a]] = a;
    flip[o.perm[a]] = o.flip[a];
  }
  return { perm, flip };
}

/** Matrix taking a reoriented voxel index to the source voxel index. */
function indexMap(o: Orientation, srcDims: Dims3): Mat4 {
  const m: Mat4 = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  for (let a = 0; a < 3; a++) {
    const src = o.perm[a];
    if (o.flip[a]) {
      m[src][a] = -1;
      m[src][3] = srcDims[src] - 1;
    } else {
      m[src][a] = 1;
    }
  }
  return m;
}

/** Voxel order changed per `o`; geometry preserved. Frames (4th axis) are carried along. */
export function reorient<T extends VoxelArray>(vol: Volume<T>, o: Orientation): Volume<T> {
  if (isIdentityOrientation(o)) return vol;
  const sd = vol.dims;
  const dims: Dims3 = [sd[o.perm[0]], sd[o.perm[1]], sd[o.perm[2]]];
  const srcStride = [1, sd[0], sd[0] * sd[1]];
  // For each output axis: how far the source index moves per output step, and where it starts.
  const step = [0, 1, 2].map((a) => (o.flip[a] ? -srcStride[o.perm[a]] : srcStride[o.perm[a]]));
  const start = [0, 1, 2].reduce((acc, a) => acc + (o.flip[a] ? (sd[o.perm[a]] - 1) * srcStride[o.perm[a]] : 0), 0);
  const n = vol.voxelCount;
  const src = vol.data;
  const out = new (src.constructor as new (len: number) => T)(src.length);
  for (let f = 0; f < vol.frames; f++) {
    const base = f * n;
    let p = base;
    for (let k = 0; k < dims[2]; k++) {
      for (let j = 0; j < dims[1]; j++) {
        let q = base + start + k * step[2] + j * step[1];
        for (let i = 0; i < dims[0]; i++, q += step[0]) out[p++] = src[q];
      }
    }
  }
  const affine = multiply4(vol.affine, indexMap(o, sd));
  return new Volume({ data: out, dims, affine, frames: vol.frames, meta: vol.meta });
}
