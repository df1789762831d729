import { describe, expect, test } from 'vitest';
import { DISPLAY_WINDOW_SAMPLE, REGION_COLORS, displayWindow } from './display.js';
import { REGION } from './quality.js';

describe('region palette', () => {
  test('paints the unstable and unreliable regions in distinct colours and leaves reliable clear', () => {
    expect(Object.keys(REGION_COLORS).map(Number).sort()).toEqual([REGION.unstable, REGION.unreliable]);
    expect(REGION_COLORS[REGION.reliable]).toBeUndefined();
    expect(REGION_COLORS[REGION.unstable]).not.toEqual(REGION_COLORS[REGION.unreliable]);
  });
});

describe('displayWindow', () => {
  test('takes the 0.5th and 99.5th percentiles, so a few hot voxels do not set the window', () => {
    const data = Float32Array.from({ length: 1000 }, (_, n) => n % 100);
    data[0] = 1e6;
    data[1] = -1e6;
    expect(displayWindow(data)).toEqual([0, 99]);
  });

  test('ignores non-finite values, never returns an empty window', () => {
    expect(displayWindow(Float32Array.from([NaN, 3, Infinity, 3]))).toEqual([3, 4]);
    expect(displayWindow(Float32Array.from([NaN]))).toEqual([0, 1]);
    expect(displayWindow(new Float32Array(0))).toEqual([0, 1]);
  });

  test('equals the percentiles of a sorted copy, with ties, negatives and runs', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const cases: Float32Array[] = [
      Float32Array.from({ length: 5001 }, () => Math.round(rand() * 40) - 20),
      Float32Array.from({ length: 20000 }, () => (rand() - 0.3) * 1e3),
      Float32Array.from({ length: 3000 }, (_, i) => i),
      Float32Array.from({ length: 3000 }, (_, i) => 3000 - i),
      Float32Array.from({ length: 777 }, () => 7),
      Float32Array.from({ length: 2 }, (_, i) => i),
      Float32Array.from([5]),
    ];
    for (const data of cases) {
      const sorted = Float64Array.from(data).sort();
      const n = sorted.length;
      const lo = sorted[Math.floor(0.005 * (n - 1))];
      const hi = sorted[Math.ceil(0.995 * (n - 1))];
      expect(displayWindow(data)).toEqual(hi > lo ? [lo, hi] : [lo, lo + 1]);
    }
  });

  test('estimates large volumes from a strided sample of at most 2^16 values', () => {
    const n = 4 * DISPLAY_WINDOW_SAMPLE + 3;
    const data = Float32Array.from({ length: n }, (_, i) => i / n);
    const [lo, hi] = displayWindow(data);
    expect(lo).toBeCloseTo(0.005, 3);
    expect(hi).toBeCloseTo(0.995, 3);
  });
});
