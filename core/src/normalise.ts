import type { Normalisation } from './model-card.js';

/**
 * The per-volume intensity map as numbers: value ↦ (clip(value) − offset) · scale. Computing it
 * once and applying it to any part of the volume lets training normalise whole volumes and
 * inference normalise plane by plane with bit-identical results.
 */
export interface IntensityMap {
  offset: number;
  scale: number;
  /** Clip bounds applied before the affine map (window rule only). */
  clip?: [number, number];
}

/**
 * Statistics of a volume under a normalisation rule:
 * - minmax-volume: (x − min) / (max − min); a constant volume maps to zeros.
 * - zscore-volume: (x − mean) / std (population std); a constant volume maps to zeros.
 * - window: clip to [low, high], then scale to [0, 1].
 * - ct-foreground: clip to [low, high], then (x − mean) / std, all four from the training set.
 */
export function intensityMap(data: ArrayLike<number>, rule: Normalisation): IntensityMap {
  const n = data.length;
  if (rule.kind === 'minmax-volume') {
    let lo = Infinity;
    let hi = -Infinity;
    for (let p = 0; p < n; p++) {
      const v = data[p];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return { offset: lo, scale: hi > lo ? 1 / (hi - lo) : 0 };
  }
  if (rule.kind === 'zscore-volume') {
    // 'positive': statistics of the voxels > 0 (SSL4MIS BraTS), applied to every voxel.
    const counted = rule.voxels === 'positive' ? (v: number) => v > 0 : () => true;
    let sum = 0;
    let count = 0;
    for (let p = 0; p < n; p++) {
      if (counted(data[p])) {
        sum += data[p];
        count++;
      }
    }
    const mean = count ? sum / count : 0;
    let ss = 0;
    for (let p = 0; p < n; p++) if (counted(data[p])) ss += (data[p] - mean) ** 2;
    const std = count ? Math.sqrt(ss / count) : 0;
    return { offset: mean, scale: std > 0 ? 1 / std : 0 };
  }
  if (rule.kind === 'ct-foreground') {
    // Fixed numbers from the training set: nothing depends on this volume.
    return { offset: rule.mean, scale: 1 / rule.std, clip: [rule.low, rule.high] };
  }
  const { low, high } = rule;
  return { offset: low, scale: high > low ? 1 / (high - low) : 0, clip: [low, high] };
}

/** Apply `map` to `data` into `out` (may be `data` itself); returns `out`. */
export function applyIntensityMap(map: IntensityMap, data: ArrayLike<number>, out: { [n: number]: number; length: number }): typeof out {
  const { offset, scale, clip } = map;
  if (clip) {
    const [low, high] = clip;
    for (let p = 0; p < data.length; p++) out[p] = (Math.min(Math.max(data[p], low), high) - offset) * scale;
  } else {
    for (let p = 0; p < data.length; p++) out[p] = (data[p] - offset) * scale;
  }
  return out;
}

/** Per-volume normalisation shared by training and inference; writes into `out` and returns it. */
export function normaliseIntensities(data: ArrayLike<number>, rule: Normalisation, out: Float32Array = new Float32Array(data.length)): Float32Array {
  applyIntensityMap(intensityMap(data, rule), data, out);
  return out;
}
