import type { Normalisation } from '@alhvr/core';

/**
 * core's `normaliseIntensities`, one plane at a time: the volume statistics are computed once
 * (same loops, same order, so the same doubles), then each plane is mapped exactly as the whole
 * volume would be. Inference thus never holds a float32 copy of the input volume
 * (4 bytes/voxel: 630 MB for a 512×512×600 CT). plane-normaliser.test.ts checks equality.
 */
export class PlaneNormaliser {
  private readonly offset: number = 0;
  private readonly scale: number = 0;
  private readonly window?: { low: number; high: number; scale: number };

  constructor(data: ArrayLike<number>, rule: Normalisation) {
    const n = data.length;
    if (rule.kind === 'minmax-volume') {
      let lo = Infinity;
      let hi = -Infinity;
      for (let p = 0; p < n; p++) {
        const v = data[p];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      this.offset = lo;
      this.scale = hi > lo ? 1 / (hi - lo) : 0;
    } else if (rule.kind === 'zscore-volume') {
      let sum = 0;
      for (let p = 0; p < n; p++) sum += data[p];
      const mean = n ? sum / n : 0;
      let ss = 0;
      for (let p = 0; p < n; p++) ss += (data[p] - mean) ** 2;
      const std = n ? Math.sqrt(ss / n) : 0;
      this.offset = mean;
      this.scale = std > 0 ? 1 / std : 0;
    } else {
      const { low, high } = rule;
      this.window = { low, high, scale: high > low ? 1 / (high - low) : 0 };
    }
  }

  /** Normalise `raw` (the input's own values, as doubles) into `out`. */
  apply(raw: Float64Array, out: Float32Array): void {
    const w = this.window;
    if (w) {
      for (let p = 0; p < raw.length; p++) out[p] = (Math.min(Math.max(raw[p], w.low), w.high) - w.low) * w.scale;
      return;
    }
    const { offset, scale } = this;
    for (let p = 0; p < raw.length; p++) out[p] = (raw[p] - offset) * scale;
  }
}
