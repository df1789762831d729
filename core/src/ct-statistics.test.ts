import { describe, expect, it } from 'vitest';
import { CtForegroundStatistics, percentile } from './ct-statistics.js';
import { normaliseIntensities } from './normalise.js';

describe('CT foreground statistics (nnU-Net CT rule)', () => {
  it('measures percentiles, mean and std over the foreground of every case only', () => {
    const stats = new CtForegroundStatistics();
    // Case 1: foreground 0..99, background −1000 (air) that must not count.
    const image1 = Float32Array.from({ length: 150 }, (_, i) => (i < 100 ? i : -1000));
    const label1 = Uint8Array.from({ length: 150 }, (_, i) => (i < 100 ? 1 + (i % 2) : 0));
    // Case 2: foreground 100..199.
    const image2 = Float32Array.from({ length: 100 }, (_, i) => 100 + i);
    const label2 = new Uint8Array(100).fill(3);
    stats.add(image1, label1);
    stats.add(image2, label2);
    const rule = stats.result();
    const values = Array.from({ length: 200 }, (_, i) => i);
    const mean = 99.5;
    const std = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / 200);
    expect(rule.kind).toBe('ct-foreground');
    expect(rule.mean).toBeCloseTo(mean, 10);
    expect(rule.std).toBeCloseTo(std, 10);
    // NumPy: np.percentile(np.arange(200), [0.5, 99.5]) = [0.995, 198.005]
    expect(rule.low).toBeCloseTo(0.995, 10);
    expect(rule.high).toBeCloseTo(198.005, 10);
  });

  it('samples the percentiles of a large case but keeps the mean and std exact', () => {
    const stats = new CtForegroundStatistics(1000);
    const n = 100_000;
    const image = Float32Array.from({ length: n }, (_, i) => i % 1000);
    stats.add(image, new Uint8Array(n).fill(1));
    const rule = stats.result();
    expect(rule.mean).toBeCloseTo(499.5, 8);
    expect(rule.low).toBeGreaterThanOrEqual(0);
    expect(rule.low).toBeLessThan(15);
    expect(rule.high).toBeGreaterThan(985);
  });

  it('refuses a training set without foreground', () => {
    const stats = new CtForegroundStatistics();
    stats.add(new Float32Array(4), new Uint8Array(4));
    expect(() => stats.result()).toThrow(/no foreground voxel/);
  });

  it('the rule clips then z-scores with the stored numbers, whatever the volume', () => {
    const rule = { kind: 'ct-foreground' as const, low: -100, high: 300, mean: 50, std: 25 };
    expect(Array.from(normaliseIntensities([-1000, 50, 100, 2000], rule))).toEqual([-6, 0, 2, 10]);
  });

  it('z-score over positive voxels takes mean and std from voxels > 0 and applies them to all', () => {
    const out = normaliseIntensities([0, 0, 2, 4], { kind: 'zscore-volume', voxels: 'positive' });
    expect(Array.from(out)).toEqual([-3, -3, -1, 1]);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
  });
});
