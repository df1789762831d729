/**
 * How segmentations are shown, shared by inference's preview.png and the viewer's SliceRenderer:
 * one region palette and one grey-level window rule, so a case looks the same in both.
 */
import { REGION } from './quality.js';

export type RgbColor = readonly [number, number, number];

/**
 * Region map colours: region 1 (reliable and stable) is left clear so the image shows through;
 * 2 (unstable: one student confident) orange; 3 (unreliable: neither) magenta, which stays
 * distinct from orange for colour-blind readers and from the red of the usual RV class colour.
 */
export const REGION_COLORS: Readonly<Record<number, RgbColor>> = {
  [REGION.unstable]: [255, 170, 0],
  [REGION.unreliable]: [220, 0, 220],
};

/** Lower and upper percentile (as fractions) of the grey-level display window. */
export const DISPLAY_WINDOW_PERCENTILES = [0.005, 0.995] as const;

/** Most voxels the window is estimated from (an evenly strided sample of larger volumes). */
export const DISPLAY_WINDOW_SAMPLE = 65536;

/**
 * Grey-level window [low, high] from the 0.5th and 99.5th percentiles of (an evenly strided
 * sample of at most 2^16 of) the finite values, so a few hot voxels do not leave the image dark.
 * Never empty: a constant image gets [v, v + 1]; no finite value gives [0, 1].
 */
export function displayWindow(values: ArrayLike<number>): [number, number] {
  const step = Math.max(1, Math.floor(values.length / DISPLAY_WINDOW_SAMPLE));
  const sample = new Float64Array(Math.ceil(values.length / step));
  let n = 0;
  for (let i = 0; i < values.length; i += step) if (Number.isFinite(values[i])) sample[n++] = values[i];
  if (n === 0) return [0, 1];
  // Two order statistics need no full sort: selection is linear (one preview per case pays for it).
  const kLo = Math.floor(DISPLAY_WINDOW_PERCENTILES[0] * (n - 1));
  const kHi = Math.ceil(DISPLAY_WINDOW_PERCENTILES[1] * (n - 1));
  const lo = selectKth(sample, 0, n, kLo);
  const hi = selectKth(sample, kLo, n, kHi);
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

/**
 * The k-th smallest of a[from…to) (k absolute, from ≤ k < to), as a sorted copy would hold it;
 * a is reordered so that a[from…k) ≤ a[k] ≤ a[k+1…to). Hoare partitioning around the median of
 * three, iterating into the side that holds k.
 */
function selectKth(a: Float64Array, from: number, to: number, k: number): number {
  let left = from;
  let right = to - 1;
  while (right > left) {
    const mid = (left + right) >>> 1;
    // median of three as the pivot, so sorted or constant runs stay linear
    if (a[mid] < a[left]) swap(a, mid, left);
    if (a[right] < a[left]) swap(a, right, left);
    if (a[right] < a[mid]) swap(a, right, mid);
    const pivot = a[mid];
    let i = left;
    let j = right;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        swap(a, i, j);
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else return a[k];
  }
  return a[k];
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}
