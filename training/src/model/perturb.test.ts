import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { FEATURE_DROPOUT_RANGE, perturbFeatures } from './perturb.js';

/** A scripted uniform source: the values the released code's random calls would return. */
const scripted = (values: number[]) => ({ next: () => values.shift()! });

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('feature perturbation (method page: network, auxiliary branch)', () => {
  it('feature dropout draws its threshold u anew for each of the five encoder levels', () => {
    // Each level's channel mean is a ramp 0.01…1.00 over 100 locations; max = 1, so a location is
    // zeroed where its mean ≥ u: five different u give five different kept counts.
    const ramp = Float32Array.from({ length: 100 }, (_, p) => (p + 1) / 100);
    const features = Array.from({ length: 5 }, () => tf.tensor4d(ramp, [1, 10, 10, 1]));
    const us = [0.02, 0.27, 0.52, 0.77, 0.93]; // fractions of the [0.7, 0.9] range, off the ramp's grid
    const [lo, hi] = FEATURE_DROPOUT_RANGE;
    // First draw > 0.5 selects dropout (released: random.random() > 0.5); then one u per level.
    const { features: out, kind } = perturbFeatures(features, scripted([0.9, ...us]));
    expect(kind).toBe('dropout');
    const kept = out.map((t) => Array.from(t.dataSync()).filter((v) => v !== 0).length);
    expect(kept).toEqual(us.map((f) => ramp.filter((a) => a < lo + (hi - lo) * f).length));
    expect(new Set(kept).size).toBe(5);
    tf.dispose([...features, ...out]);
  });

  it('a first draw ≤ 0.5 selects feature noise, x + x·n with |n| ≤ 0.3', () => {
    const x = tf.ones([2, 4, 4, 3]) as tf.Tensor4D;
    const { features: out, kind } = perturbFeatures([x], scripted([0.2, 0.123]));
    expect(kind).toBe('noise');
    const v = out[0].dataSync();
    expect(Math.max(...v)).toBeLessThanOrEqual(1.3);
    expect(Math.min(...v)).toBeGreaterThanOrEqual(0.7);
    // The noise is shared over the batch: both samples are perturbed identically.
    const half = v.length / 2;
    for (let p = 0; p < half; p++) expect(v[p]).toBe(v[p + half]);
    tf.dispose([x, ...out]);
  });
});
