import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@alhvr/core';
import { selectBackend } from './select-backend.js';

function random(shape: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * rng.next() - 1);
}

/** Runs `f` on the wasm backend and on the cpu backend with the same inputs; returns both results. */
async function onBoth(f: () => tf.Tensor | tf.Tensor[]): Promise<{ wasm: number[][]; cpu: number[][]; shapes: number[][] }> {
  const run = async (name: 'wasm' | 'cpu') => {
    await selectBackend(name, { threads: 1, log: () => {} });
    const out = tf.tidy(f);
    const list = Array.isArray(out) ? out : [out];
    const r = { values: list.map((t) => Array.from(t.dataSync())), shapes: list.map((t) => t.shape) };
    tf.dispose(list);
    return r;
  };
  const w = await run('wasm');
  const c = await run('cpu');
  expect(w.shapes).toEqual(c.shapes);
  return { wasm: w.values, cpu: c.values, shapes: w.shapes };
}

function expectClose(a: number[][], b: number[][], tol: number): void {
  expect(a.length).toBe(b.length);
  a.forEach((row, i) => row.forEach((v, j) => expect(Math.abs(v - b[i][j])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b[i][j])))));
}

describe('wasm Identity shares the buffer instead of copying it', () => {
  test('a clone adds no buffer, and outlives its source', async () => {
    await selectBackend('wasm', { threads: 1, log: () => {} });
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.tensor(random([64, 8], 7), [64, 8]);
    const want = Array.from(x.dataSync());
    const buffers = backend.numDataIds();
    const y = tf.clone(x);
    expect(backend.numDataIds()).toBe(buffers);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual(want);
    y.dispose();
    expect(backend.numDataIds()).toBe(buffers - 1);
  });
});

describe('wasm Sum / Concat / SplitV over channels match the cpu backend', () => {
  test.each([
    { shape: [5000, 8], axis: [0], keepDims: false },
    { shape: [2, 17, 13, 12], axis: [0, 1, 2], keepDims: false },
    { shape: [2, 17, 13, 12], axis: [2, 0, 1], keepDims: true },
    { shape: [3, 4, 5], axis: [1], keepDims: false },
    { shape: [3, 4, 5], axis: [0, 1, 2], keepDims: false },
    { shape: [2, 9, 7, 16], axis: [0, 1, 2], keepDims: false },
    { shape: [700, 24], axis: [0], keepDims: true },
  ])('sum of $shape over $axis (keepDims $keepDims)', async ({ shape, axis, keepDims }) => {
    const x = random(shape, 1);
    const r = await onBoth(() => tf.sum(tf.tensor(x, shape), axis, keepDims));
    expectClose(r.wasm, r.cpu, 1e-5);
  });

  test.each([
    { shapes: [[2, 9, 7, 8], [2, 9, 7, 8]], axis: 3 },
    { shapes: [[2, 9, 7, 3], [2, 9, 7, 5], [2, 9, 7, 1]], axis: -1 },
    { shapes: [[2, 9, 7, 3], [4, 9, 7, 3]], axis: 0 },
    { shapes: [[3, 5, 4], [3, 5, 3], [3, 5, 8]], axis: 2 },
    { shapes: [[2, 33, 64], [2, 33, 16]], axis: -1 },
  ])('concat of $shapes along $axis', async ({ shapes, axis }) => {
    const xs = shapes.map((s, i) => random(s, 10 + i));
    const r = await onBoth(() => tf.concat(xs.map((x, i) => tf.tensor(x, shapes[i])), axis));
    expect(r.wasm).toEqual(r.cpu);
  });

  test.each([
    { shape: [2, 9, 7, 16], sizes: [8, 8], axis: 3 },
    { shape: [2, 9, 7, 9], sizes: [2, 3, 4], axis: -1 },
    { shape: [6, 9, 7, 3], sizes: [2, 4], axis: 0 },
    { shape: [3, 5, 16], sizes: [8, 4, 3, 1], axis: 2 },
    { shape: [2, 33, 80], sizes: [64, 16], axis: -1 },
  ])('split of $shape into $sizes along $axis', async ({ shape, sizes, axis }) => {
    const x = random(shape, 3);
    const r = await onBoth(() => tf.split(tf.tensor(x, shape), sizes, axis));
    expect(r.wasm).toEqual(r.cpu);
  });

  test('the gradient of a channel concat (a split) flows to each input unchanged', async () => {
    const [a, b, dy] = [random([1, 4, 4, 3], 4), random([1, 4, 4, 5], 5), random([1, 4, 4, 8], 6)];
    const r = await onBoth(() => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.concat([p, q], 3))(
      [tf.tensor(a, [1, 4, 4, 3]), tf.tensor(b, [1, 4, 4, 5])], tf.tensor(dy, [1, 4, 4, 8])));
    expect(r.wasm).toEqual(r.cpu);
  });
});

test('wasm channel sums are the double-precision sums of the rows in order, rounded once (8 columns at a time or not)', async () => {
  await selectBackend('wasm', { threads: 1, log: () => {} });
  for (const c of [16, 12]) {
    const rows = 999;
    const x = random([rows, c], 11);
    const want = Array.from({ length: c }, (_, k) => {
      let acc = 0;
      for (let r = 0; r < rows; r++) acc += x[r * c + k];
      return Math.fround(acc);
    });
    const got = tf.tidy(() => Array.from(tf.sum(tf.tensor(x, [rows, c]), 0).dataSync()));
    expect(got).toEqual(want);
  }
});

describe('wasm Multiply broadcast along the last axis (or along all but it) matches the cpu backend', () => {
  test.each([
    { a: [4, 9, 7, 1], b: [4, 9, 7, 4] },
    { a: [4, 9, 7, 3], b: [4, 9, 7, 1] },
    { a: [300, 32], b: [300, 1] },
    { a: [1, 1, 1, 4], b: [2, 5, 6, 4] },
    { a: [2, 5, 6, 4], b: [4] },
    { a: [3, 1, 4], b: [3, 5, 4] }, // a middle axis: the backend's own kernel
    { a: [3, 5, 4], b: [3, 5, 4] },
    { a: [6, 4], b: [] },
    { a: [1, 1, 1], b: [3, 5, 4] },
    { a: [2, 3, 1], b: [1] },
  ])('$a × $b, and the gradient to each', async ({ a, b }) => {
    const [x, y] = [random(a, 3), random(b, 4)];
    const r = await onBoth(() => {
      const [ta, tb] = [tf.tensor(x, a), tf.tensor(y, b)];
      const weights = tf.tensor(random(tf.broadcast_util.assertAndGetBroadcastShape(a, b), 5), tf.broadcast_util.assertAndGetBroadcastShape(a, b));
      const grads = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.mul(p, q), weights)))([ta, tb]);
      return [tf.mul(ta, tb), tf.mul(tb, ta), ...grads];
    });
    expectClose(r.wasm, r.cpu, 1e-5);
  });
});

describe('wasm comparisons against one value per sample, or one value, match the cpu backend', () => {
  test.each([
    { a: [4, 9, 7, 1], b: [4, 1, 1, 1] },
    { a: [4, 1, 1, 1], b: [4, 9, 7, 1] },
    { a: [3, 5, 4], b: [3, 1, 1] },
    { a: [3, 5, 4], b: [] },
    { a: [], b: [3, 5, 4] },
    { a: [3, 5, 4], b: [1, 1, 1] },
    { a: [3, 5, 4], b: [3, 5, 1] }, // per pixel: the backend's own kernel
    { a: [3, 5, 4], b: [3, 5, 4] },
  ])('$a against $b', async ({ a, b }) => {
    // Ties and NaN: every third value of the larger operand equals the value it is compared with, one is NaN.
    const [big, small] = a.length >= b.length && a.reduce((m, d) => m * d, 1) >= b.reduce((m, d) => m * d, 1) ? [a, b] : [b, a];
    const x = random(big, 8);
    const y = random(small, 9);
    const perSample = small.length === big.length && small[0] === big[0] && small.slice(1).every((d) => d === 1);
    const block = x.length / (perSample ? big[0] : 1);
    if (perSample || y.length === 1) for (let p = 0; p < x.length; p += 3) x[p] = y[Math.floor(p / block)];
    x[1] = NaN;
    const [ta, tb] = big === a ? [x, y] : [y, x];
    const r = await onBoth(() => {
      const [pa, pb] = [tf.tensor(ta, a), tf.tensor(tb, b)];
      return [tf.less(pa, pb), tf.lessEqual(pa, pb), tf.greater(pa, pb), tf.greaterEqual(pa, pb)];
    });
    expect(r.wasm).toEqual(r.cpu);
    for (const mask of r.cpu) expect(mask.some((v) => v === 1) && mask.some((v) => v === 0)).toBe(true);
  });
});
