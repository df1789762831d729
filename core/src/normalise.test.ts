import { describe, expect, it } from 'vitest';
import { normaliseIntensities } from './normalise.js';

describe('normaliseIntensities', () => {
  it('min–max maps the range onto [0, 1]', () => {
    expect(Array.from(normaliseIntensities(Int16Array.from([-100, 0, 300]), { kind: 'minmax-volume' }))).toEqual([0, 0.25, 1]);
  });
  it('z-score gives zero mean and unit population std', () => {
    const out = normaliseIntensities([1, 2, 3, 4], { kind: 'zscore-volume' });
    const std = Math.sqrt(1.25);
    [1, 2, 3, 4].forEach((x, n) => expect(out[n]).toBeCloseTo((x - 2.5) / std, 6));
  });
  it('window clips then scales', () => {
    expect(Array.from(normaliseIntensities([-2000, -1000, 0, 1000, 3000], { kind: 'window', low: -1000, high: 1000 }))).toEqual([0, 0, 0.5, 1, 1]);
  });
  it('maps a constant volume to zeros instead of NaN', () => {
    for (const kind of ['minmax-volume', 'zscore-volume'] as const) {
      expect(Array.from(normaliseIntensities([5, 5, 5], { kind }))).toEqual([0, 0, 0]);
    }
  });
  it('can normalise in place', () => {
    const d = Float32Array.from([0, 10]);
    expect(normaliseIntensities(d, { kind: 'minmax-volume' }, d)).toBe(d);
    expect(Array.from(d)).toEqual([0, 1]);
  });
});
