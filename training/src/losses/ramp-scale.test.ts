import { describe, expect, it } from 'vitest';
import { rampWeight } from './ramp.js';

describe('ramp length', () => {
  it('reaches the full weight at the end of the ramp, whatever its length', () => {
    expect(rampWeight(30_000)).toBeCloseTo(0.1, 12);
    expect(rampWeight(800, 0.1, 200, 800 / 200)).toBeCloseTo(0.1, 12);
    // Halfway through a scaled ramp equals halfway through the published one.
    expect(rampWeight(400, 0.1, 200, 4)).toBeCloseTo(rampWeight(15_000), 12);
    expect(rampWeight(400, 0.1, 200, 4)).toBeCloseTo(0.1 * Math.exp(-5 * 0.25), 12);
  });
});
