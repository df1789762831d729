import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from './select-backend.js';

// Every layout the fast kernel takes over, against the cpu backend's reference result.
const cases: [number[], number[], boolean, boolean][] = [
  [[3, 5, 4], [3, 4, 6], false, false],
  [[3, 4, 5], [3, 4, 6], true, false],
  [[3, 5, 4], [3, 6, 4], false, true],
  [[3, 4, 5], [3, 6, 4], true, true],
  [[1, 5, 4], [3, 4, 6], false, false],
  [[3, 5, 4], [1, 4, 6], false, false],
  [[2, 2, 5, 4], [2, 2, 4, 6], false, false],
  [[5, 4], [6, 4], false, true],
  [[4, 5], [4, 6], true, false],
];

async function on(backend: string, fn: () => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(backend);
  const t = fn();
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

/** tf.matMul of fixed sin/cos operands of these shapes on cpu (ref) and on wasm (got), same length. */
async function matMulBothWays(sa: number[], sb: number[], ta: boolean, tb: boolean): Promise<{ ref: Float32Array; got: Float32Array }> {
  const av = Float32Array.from({ length: sa.reduce((x, y) => x * y, 1) }, (_, n) => Math.sin(n * 1.3));
  const bv = Float32Array.from({ length: sb.reduce((x, y) => x * y, 1) }, (_, n) => Math.cos(n * 0.7));
  const run = () => tf.matMul(tf.tensor(av, sa), tf.tensor(bv, sb), ta, tb);
  const ref = await on('cpu', run);
  const got = await on('wasm', run);
  expect(got.length).toBe(ref.length);
  return { ref, got };
}

beforeAll(async () => {
  await selectBackend('wasm', { log: () => {} });
});

describe('wasm BatchMatMul on XNNPACK', () => {
  it.each(cases)('a %j × b %j (transposeA %s, transposeB %s) matches cpu', async (sa, sb, ta, tb) => {
    const { ref, got } = await matMulBothWays(sa, sb, ta, tb);
    for (let n = 0; n < ref.length; n++) expect(got[n]).toBeCloseTo(ref[n], 4);
  });

  it('gives the same gradients as cpu and leaks no tensors', async () => {
    const a = Float32Array.from({ length: 2 * 3 * 4 }, (_, n) => n / 7 - 1);
    const b = Float32Array.from({ length: 2 * 4 * 5 }, (_, n) => Math.sin(n));
    const grads = async (backend: string) => {
      await tf.setBackend(backend);
      const before = tf.memory().numTensors;
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y))))([tf.tensor(a, [2, 3, 4]), tf.tensor(b, [2, 4, 5])]);
      const out = await Promise.all(g.map((t) => t.data()));
      tf.dispose(g);
      expect(tf.memory().numTensors - before).toBeLessThanOrEqual(2);
      return out;
    };
    const ref = await grads('cpu');
    const got = await grads('wasm');
    for (let i = 0; i < 2; i++) for (let n = 0; n < ref[i].length; n++) expect(got[i][n]).toBeCloseTo(ref[i][n], 4);
  });

  // Aᵀ·B over long K runs as 4×8 pixel-sum blocks: C directly (M of 4, N of 8), or Cᵀ then
  // transposed (N of 4, M of 8); rank 2 and batched.
  it.each([
    [[2, 1100, 8], [2, 1100, 16]],
    [[2, 1100, 16], [2, 1100, 4]],
    [[1100, 12], [1100, 8]],
    [[3, 1030, 8], [3, 1030, 8]],
  ])('long-K aᵀ·b: a %j, b %j matches cpu', async (sa, sb) => {
    const { ref, got } = await matMulBothWays(sa, sb, true, false);
    // terms of magnitude ≤ 1: float32 sums of ~1000 of them in another order differ by ≲ 1000·2⁻²⁴
    expect(Math.max(...ref.map(Math.abs))).toBeGreaterThan(0.5);
    for (let n = 0; n < ref.length; n++) expect(Math.abs(got[n] - ref[n])).toBeLessThanOrEqual(1e-4);
  });
});
