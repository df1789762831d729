/** Steps of the released sigmoid ramp (sigmoid_rampup(·, 200)); a run's ramp iterations are spread over them. */
export const RAMP_STEPS = 200;

/**
 * Weight of the unsupervised terms at iteration t (released: consistency 0.1 ×
 * sigmoid_rampup(t // 150, 200)); the ramp spans the first 30 000 iterations.
 * t is the number of iterations completed before this one (the released iter_num).
 */
export function rampWeight(t: number, consistency = 0.1, rampupLength = RAMP_STEPS, iterationsPerStep = 150): number {
  if (!(t >= 0)) throw new RangeError(`rampWeight: iteration must be ≥ 0, got ${t}`);
  const current = Math.min(Math.floor(t / iterationsPerStep), rampupLength);
  const phase = 1 - current / rampupLength;
  return consistency * Math.exp(-5 * phase * phase);
}

/** w(t) of a ramp spanning `rampIterations` iterations (the published 30 000, or scaled for a short run). */
export function rampWeightOver(t: number, consistency: number, rampIterations: number): number {
  return rampWeight(t, consistency, RAMP_STEPS, rampIterations / RAMP_STEPS);
}
