import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from './select-backend.js';

// The wasm Transpose that copies whole last-axis runs, against the cpu backend: a transpose only
// moves values, so the results must be equal element for element.
const cases: [number[], number[]][] = [
  [[3, 4, 8], [1, 0, 2]],
  [[2, 3, 5, 16], [2, 0, 1, 3]],
  [[2, 3, 4, 5, 24], [0, 3, 1, 2, 4]],
  // vnet3d.ts upConv and downConv at small sizes
  [[6, 3, 4, 2, 2, 18], [0, 3, 1, 4, 2, 5]],
  [[6, 2, 3, 2, 4, 18], [0, 2, 4, 1, 3, 5]],
  [[4, 1, 3, 1, 2, 40], [0, 3, 1, 4, 2, 5]],
  // cases the backend's own kernel keeps: the last axis moves, a short last axis, rank 2
  [[3, 4, 8], [0, 2, 1]],
  [[2, 3, 5, 4], [2, 0, 1, 3]],
  [[5, 9], [1, 0]],
];

async function on(backend: string, data: Float32Array, shape: number[], perm: number[]): Promise<{ values: number[]; shape: number[] }> {
  await tf.setBackend(backend);
  const t = tf.transpose(tf.tensor(data, shape), perm);
  const r = { values: Array.from(await t.data()), shape: t.shape };
  t.dispose();
  return r;
}

beforeAll(async () => {
  await selectBackend('wasm', { threads: 2, log: () => {} });
});
afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('wasm Transpose keeping the last axis', () => {
  it.each(cases)('x %j, perm %j equals the cpu backend', async (shape, perm) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i + 0.25 * Math.sin(i));
    const ref = await on('cpu', data, shape, perm);
    const got = await on('wasm', data, shape, perm);
    expect(got.shape).toEqual(ref.shape);
    expect(got.values).toEqual(ref.values);
  });

  it('gives the cpu backend\'s gradient through an upConv-style shuffle and leaves no buffer behind', async () => {
    const shape = [4, 3, 2, 2, 2, 16];
    const x = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.cos(i));
    const w = Float32Array.from({ length: x.length }, (_, i) => Math.sin(0.3 * i));
    const grad = async (backend: string) => {
      await tf.setBackend(backend);
      const numDataIds = () => (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
      const xt = tf.tensor(x, shape);
      const wt = tf.tensor(w, [4, 2, 3, 2, 2, 16]);
      const before = numDataIds();
      const g = tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.transpose(t, [0, 3, 1, 4, 2, 5]), wt)))(xt));
      const v = Array.from(await g.data());
      g.dispose();
      expect(numDataIds()).toBe(before);
      tf.dispose([xt, wt]);
      return v;
    };
    const ref = await grad('cpu');
    expect(await grad('wasm')).toEqual(ref);
  });
});
