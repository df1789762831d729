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
  // A typed sort is numeric and needs no comparator calls: ~10× faster than Array.sort on 100k values.
  const sorted = sample.subarray(0, n).sort();
  const lo = sorted[Math.floor(DISPLAY_WINDOW_PERCENTILES[0] * (n - 1))];
  const hi = sorted[Math.ceil(DISPLAY_WINDOW_PERCENTILES[1] * (n - 1))];
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}
