import { describe, expect, it } from 'vitest';
import { Rng, normaliseIntensities, type Normalisation } from '@alhvr/core';
import { PlaneNormaliser } from './plane-normaliser.js';

const RULES: Normalisation[] = [{ kind: 'minmax-volume' }, { kind: 'zscore-volume' }, { kind: 'window', low: -200, high: 400 }];

function sample(kind: 'int16' | 'float32' | 'float64', n: number, seed: number): Int16Array | Float32Array | Float64Array {
  const rng = new Rng(seed);
  if (kind === 'int16') return Int16Array.from({ length: n }, () => Math.round(rng.uniform(-1024, 3000)));
  // Large offsets with fine detail: values a float32 copy of the input would round.
  if (kind === 'float64') return Float64Array.from({ length: n }, () => 1e6 + rng.uniform(-1000, 1000) + 1e-7 * rng.uniform(0, 1));
  return Float32Array.from({ length: n }, () => rng.uniform(-5, 5));
}

describe('PlaneNormaliser', () => {
  for (const rule of RULES) {
    for (const kind of ['int16', 'float32', 'float64'] as const) {
      it(`gives exactly normaliseIntensities' float32 values plane by plane (${rule.kind}, ${kind})`, () => {
        const plane = 37 * 11;
        const data = sample(kind, plane * 5, 17);
        const whole = normaliseIntensities(data, rule);
        const norm = new PlaneNormaliser(data, rule);
        const raw = new Float64Array(plane);
        const out = new Float32Array(plane);
        for (let k = 0; k < 5; k++) {
          for (let p = 0; p < plane; p++) raw[p] = data[k * plane + p];
          norm.apply(raw, out);
          expect(out).toEqual(whole.subarray(k * plane, (k + 1) * plane));
        }
      });
    }
  }

  it('maps a constant volume to zeros, as the volume rule does', () => {
    const data = new Int16Array(20).fill(7);
    for (const rule of RULES.slice(0, 2)) {
      const out = new Float32Array(20).fill(1);
      new PlaneNormaliser(data, rule).apply(Float64Array.from(data), out);
      expect(Array.from(out)).toEqual(new Array(20).fill(0));
    }
  });
});
