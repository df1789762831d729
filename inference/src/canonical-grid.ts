import type { Dims3, Orientation } from '@alhvr/core';

/**
 * Addressing of a volume's voxels in a reoriented (canonical) order without copying it:
 * canonical voxel (i, j, k) lives at source index `start + i·step[0] + j·step[1] + k·step[2]`.
 * Same convention as core's `reorient`, which copies; inference reads and writes in place.
 */
export interface CanonicalGrid {
  /** Dims in canonical order: [plane width, plane height, slices]. */
  dims: Dims3;
  start: number;
  step: [number, number, number];
}

export function canonicalGrid(sourceDims: Dims3, o: Orientation): CanonicalGrid {
  const stride = [1, sourceDims[0], sourceDims[0] * sourceDims[1]];
  const dims: Dims3 = [sourceDims[o.perm[0]], sourceDims[o.perm[1]], sourceDims[o.perm[2]]];
  const step = [0, 1, 2].map((a) => (o.flip[a] ? -stride[o.perm[a]] : stride[o.perm[a]])) as [number, number, number];
  let start = 0;
  for (let a = 0; a < 3; a++) if (o.flip[a]) start += (sourceDims[o.perm[a]] - 1) * stride[o.perm[a]];
  return { dims, start, step };
}

/** Copy canonical plane k of `src` into `dst` (row-major, width = dims[0]), mapping each value. */
export function gatherPlane(
  grid: CanonicalGrid,
  src: ArrayLike<number>,
  k: number,
  dst: { [n: number]: number },
  map: (v: number) => number = (v) => v,
): void {
  const [w, h] = grid.dims;
  const [s0, s1, s2] = grid.step;
  let p = 0;
  for (let j = 0; j < h; j++) {
    let q = grid.start + j * s1 + k * s2;
    for (let i = 0; i < w; i++, q += s0) dst[p++] = map(src[q]);
  }
}

/** Write plane `src` (row-major, width = dims[0]) into canonical plane k of `dst`, at `offset` (a frame's start). */
export function scatterPlane(grid: CanonicalGrid, src: ArrayLike<number>, k: number, dst: { [n: number]: number }, offset = 0): void {
  const [w, h] = grid.dims;
  const [s0, s1, s2] = grid.step;
  let p = 0;
  for (let j = 0; j < h; j++) {
    let q = offset + grid.start + j * s1 + k * s2;
    for (let i = 0; i < w; i++, q += s0) dst[q] = src[p++];
  }
}
