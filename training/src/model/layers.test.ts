import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from '../backend/select-backend.js';
import { addBatchNorm, ParameterStore } from './params.js';
import { BN_EPS, BN_MOMENTUM, LEAKY_SLOPE, batchNorm, batchNormLeakyRelu } from './layers.js';

/**
 * The training-mode BatchNorm(+LeakyReLU) is one autograd node with a hand-written backward pass.
 * Here it is checked against tfjs autodiff of the textbook formula (moments → normalise → affine →
 * LeakyReLU), values and gradients for x, γ, β, on the cpu and the wasm backend.
 */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) - 0.5;
}

function reference(x: tf.Tensor4D, g: tf.Tensor, b: tf.Tensor, leaky: boolean): tf.Tensor {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const y = tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, BN_EPS))), g), b);
  return leaky ? tf.leakyRelu(y, LEAKY_SLOPE) : y;
}

function maxRelDiff(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  expect(m).toBeGreaterThan(0);
  return d / m;
}

beforeAll(async () => {
  await selectBackend('wasm', { threads: 2, log: () => {} });
});
afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('fused training BatchNorm', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    for (const leaky of [true, false]) {
      test(`${backend}: ${leaky ? 'BN + LeakyReLU' : 'BN'} values, gradients and running statistics match autodiff of the formula`, async () => {
        await tf.setBackend(backend);
        const r = lcg(leaky ? 3 : 4);
        const [B, H, W, C] = [3, 5, 4, 6];
        const xData = Float32Array.from({ length: B * H * W * C }, (_, i) => 3 * r() + (i % C) * 0.7);
        const wy = Float32Array.from({ length: B * H * W * C }, () => r());
        const store = new ParameterStore(`bn-test-${backend}-${leaky}`);
        addBatchNorm(store, 'bn', C);
        store.get('bn.gamma').assign(tf.tensor1d(Array.from({ length: C }, () => 1 + r())));
        store.get('bn.beta').assign(tf.tensor1d(Array.from({ length: C }, () => r())));
        const gamma = store.get('bn.gamma');
        const beta = store.get('bn.beta');
        const rm0 = store.get('bn.runningMean').dataSync().slice();
        const rv0 = store.get('bn.runningVar').dataSync().slice();
        const x = tf.tensor4d(xData, [B, H, W, C]);
        const weights = tf.tensor4d(wy, [B, H, W, C]);
        const fused = (xt: tf.Tensor) => {
          const y = leaky ? batchNormLeakyRelu(store, 'bn', xt as tf.Tensor4D, { training: true })
            : batchNorm(store, 'bn', xt as tf.Tensor4D, { training: true });
          return tf.sum(tf.mul(y, weights)) as tf.Scalar;
        };
        const got = tf.variableGrads(() => fused(x), [gamma, beta]);
        const gotDx = tf.grad(fused)(x);
        const refFn = (xt: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(reference(xt as tf.Tensor4D, g, b, leaky), weights)) as tf.Scalar;
        const [rdx, rdg, rdb] = tf.grads(refFn)([x, gamma, beta]);
        expect(maxRelDiff(got.value.dataSync(), refFn(x, gamma, beta).dataSync())).toBeLessThan(1e-5);
        expect(maxRelDiff(gotDx.dataSync(), rdx.dataSync())).toBeLessThan(1e-4);
        expect(maxRelDiff(got.grads[gamma.name].dataSync(), rdg.dataSync())).toBeLessThan(1e-4);
        expect(maxRelDiff(got.grads[beta.name].dataSync(), rdb.dataSync())).toBeLessThan(1e-4);
        // two training forwards ran (variableGrads and grad): running stats moved twice toward the batch stats
        const { mean, variance } = tf.moments(x, [0, 1, 2]);
        const n = B * H * W;
        const m = mean.dataSync();
        const v = variance.dataSync();
        const rm = store.get('bn.runningMean').dataSync();
        const rv = store.get('bn.runningVar').dataSync();
        const k = 1 - BN_MOMENTUM;
        for (let c = 0; c < C; c++) {
          expect(rm[c]).toBeCloseTo(rm0[c] * k * k + m[c] * (1 - k * k), 4);
          expect(rv[c]).toBeCloseTo(rv0[c] * k * k + (v[c] * n) / (n - 1) * (1 - k * k), 4);
        }
        store.dispose();
      });
    }
  }
});
