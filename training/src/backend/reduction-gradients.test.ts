import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@alhvr/core';
import { selectBackend } from './select-backend.js';
import { installReductionGradients } from './reduction-gradients.js';

/** dL/dx of L = Σ w · reduce(x) computed by hand: w spread over the reduced axes (÷ their size for a mean). */
function expectedGradient(shape: number[], axes: number[], w: Float32Array, mean: boolean): number[] {
  const size = shape.reduce((a, b) => a * b, 1);
  const reduced = axes.reduce((n, a) => n * shape[a], 1);
  const out: number[] = [];
  for (let i = 0; i < size; i++) {
    // index of i in the reduced output: drop the reduced axes' coordinates
    let rest = i;
    const coords = new Array<number>(shape.length);
    for (let d = shape.length - 1; d >= 0; d--) {
      coords[d] = rest % shape[d];
      rest = Math.floor(rest / shape[d]);
    }
    let j = 0;
    for (let d = 0; d < shape.length; d++) if (!axes.includes(d)) j = j * shape[d] + coords[d];
    out.push(mean ? Math.fround(w[j] / reduced) : w[j]);
  }
  return out;
}

describe('Sum and Mean gradients without a ones tensor', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    test.each([
      { shape: [2, 5, 3, 4], axes: [0, 1, 2] },
      { shape: [2, 5, 3, 4], axes: [3] },
      { shape: [2, 5, 3, 4], axes: [1, 3] },
      { shape: [7, 6], axes: [0, 1] },
    ])(`${backend}: $shape over $axes, exactly dy spread (÷ size for the mean), keepDims or not`, async ({ shape, axes }) => {
      await selectBackend(backend, { threads: 1, log: () => {} });
      installReductionGradients();
      const rng = new Rng(5);
      const x = tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.next()), shape);
      const outSize = shape.filter((_, d) => !axes.includes(d)).reduce((a, b) => a * b, 1);
      const w = Float32Array.from({ length: outSize }, () => 2 * rng.next() - 1);
      for (const mean of [false, true]) {
        for (const keepDims of [false, true]) {
          const reduce = (t: tf.Tensor) => (mean ? tf.mean(t, axes, keepDims) : tf.sum(t, axes, keepDims));
          const dx = tf.tidy(() => tf.grad((t: tf.Tensor) => {
            const r = reduce(t);
            return tf.sum(tf.mul(r, tf.tensor(w, r.shape)));
          })(x).dataSync());
          expect(Array.from(dx), `${mean ? 'mean' : 'sum'} keepDims ${keepDims}`).toEqual(expectedGradient(shape, axes, w, mean));
        }
      }
      x.dispose();
    });
  }
});
