/**
 * Weight of the unsupervised terms at iteration t (released: consistency 0.1 ×
 * sigmoid_rampup(t // 150, 200)); the ramp spans the first 30 000 iterations.
 * t is the number of iterations completed before this one (the released iter_num).
 */
export function rampWeight(t: number, consistency = 0.1, rampupLength = 200, iterationsPerStep = 150): number {
  if (!(t >= 0)) throw new RangeError(`rampWeight: iteration must be ≥ 0, got ${t}`);
  const current = Math.min(Math.floor(t / iterationsPerStep), rampupLength);
  const phase = 1 - current / rampupLength;
  return consistency * Math.exp(-5 * phase * phase);
}
