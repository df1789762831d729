import type { Normalisation } from './model-card.js';

/**
 * Per-volume intensity normalisation, shared by training and inference so both see the same
 * numbers. Writes into `out` (may be `data` itself) and returns it.
 * - minmax-volume: (x − min) / (max − min); a constant volume becomes all zeros.
 * - zscore-volume: (x − mean) / std (population std); a constant volume becomes all zeros.
 * - window: clip to [low, high], then scale to [0, 1].
 */
export function normaliseIntensities(data: ArrayLike<number>, rule: Normalisation, out: Float32Array = new Float32Array(data.length)): Float32Array {
  const n = data.length;
  let offset = 0;
  let scale = 0;
  if (rule.kind === 'minmax-volume') {
    let lo = Infinity;
    let hi = -Infinity;
    for (let p = 0; p < n; p++) {
      const v = data[p];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    offset = lo;
    scale = hi > lo ? 1 / (hi - lo) : 0;
  } else if (rule.kind === 'zscore-volume') {
    let sum = 0;
    for (let p = 0; p < n; p++) sum += data[p];
    const mean = n ? sum / n : 0;
    let ss = 0;
    for (let p = 0; p < n; p++) ss += (data[p] - mean) ** 2;
    const std = n ? Math.sqrt(ss / n) : 0;
    offset = mean;
    scale = std > 0 ? 1 / std : 0;
  } else {
    const { low, high } = rule;
    const s = high > low ? 1 / (high - low) : 0;
    for (let p = 0; p < n; p++) out[p] = (Math.min(Math.max(data[p], low), high) - low) * s;
    return out;
  }
  for (let p = 0; p < n; p++) out[p] = (data[p] - offset) * scale;
  return out;
}
