import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { REGION, Rng, betaQuantileMean } from '@alhvr/core';
import { lowestProportionMean, regionMasks } from './regions.js';

// Training's tfjs region rule must be core's plain-array rule (quality.ts), which export
// calibration and inference use: the same γ (β-quantile mean) and the same region ids.

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function confidences(seed: number, n: number): [Float32Array, Float32Array] {
  const rng = new Rng(seed);
  const draw = () => Float32Array.from({ length: n }, () => 0.25 + 0.75 * rng.next());
  return [draw(), draw()];
}

describe('training region rule against core', () => {
  test.each([
    [1, 0.1],
    [2, 0.5],
    [3, 1],
  ])('γ is core betaQuantileMean of the mean confidence (seed %i, β %f)', (seed, beta) => {
    const [a, b] = confidences(seed, 2 * 24 * 24);
    const mean = Float32Array.from(a, (v, p) => Math.fround(Math.fround(v + b[p]) * 0.5));
    const gamma = tf.tidy(() => lowestProportionMean(tf.mul(tf.add(tf.tensor(a), tf.tensor(b)), 0.5), beta).dataSync()[0]);
    expect(gamma).toBeCloseTo(betaQuantileMean(mean, beta), 6);
  });

  test('Ω1, Ω2 and Ω3 are core REGION reliable, unstable and unreliable: 3 − #students above γ', () => {
    const [a, b] = confidences(7, 3 * 16 * 16);
    const shape = [3, 16, 16];
    const r = regionMasks(tf.tensor(a, shape), tf.tensor(b, shape), 0.3);
    const gamma = r.gamma.dataSync()[0];
    const [o1, mA, mB, o3] = [r.omega1, r.mA, r.mB, r.omega3].map((t) => t.dataSync());
    const mean = Float32Array.from(a, (v, p) => Math.fround(Math.fround(v + b[p]) * 0.5));
    expect(gamma).toBeCloseTo(betaQuantileMean(mean, 0.3), 6);
    const counts = { [REGION.reliable]: 0, [REGION.unstable]: 0, [REGION.unreliable]: 0 };
    for (let p = 0; p < a.length; p++) {
      // Core's rule as the exported graph and inference apply it (no confidence equals γ here).
      const id = 3 - ((a[p] > gamma ? 1 : 0) + (b[p] > gamma ? 1 : 0));
      const fromMasks = o1[p] ? REGION.reliable : mA[p] || mB[p] ? REGION.unstable : o3[p] ? REGION.unreliable : 0;
      expect(o1[p] + mA[p] + mB[p] + o3[p]).toBe(1);
      expect(fromMasks).toBe(id);
      counts[id as 1 | 2 | 3]++;
    }
    // The draw exercises every region.
    expect(Object.values(counts).every((c) => c > 0)).toBe(true);
    tf.dispose([r.gamma, r.omega1, r.mA, r.mB, r.omega3]);
  });
});
