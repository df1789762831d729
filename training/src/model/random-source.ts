/**
 * What the network needs from a random source: uniform floats in [0, 1). `Rng` from
 * @alhvr/core (seeded sfc32 with saveable state) satisfies it; Math.random is never used, so a
 * run is reproducible from its seed and resumable from the saved RNG state.
 */
export interface UniformSource {
  next(): number;
}

/** A 31-bit seed for a tfjs random op, drawn from `rng` so the op follows the seeded stream. */
export function drawOpSeed(rng: UniformSource): number {
  return Math.floor(rng.next() * 2147483647);
}
