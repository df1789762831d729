import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@alhvr/core';
import { selectBackend } from './select-backend.js';
import { BATCHNORM_TRAIN, BATCHNORM_TRAIN_GRAD, hasFusedBatchNorm } from './batchnorm-kernels.js';
import { addBatchNorm, ParameterStore } from '../model/params.js';
import { batchNormLeakyRelu, BN_EPS, LEAKY_SLOPE } from '../model/layers.js';

function random(shape: number[], rng: Rng, offset = 0): tf.Tensor {
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => offset + 2 * rng.next() - 1), shape);
}

/** BatchNorm (+ LeakyReLU) composed from tfjs ops, differentiated by tfjs itself: the independent reference. */
function reference(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, slope: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const v = tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, BN_EPS))), g), b);
  return slope === 1 ? v : tf.leakyRelu(v, slope);
}

function maxRelDiff(got: tf.Tensor, want: tf.Tensor): number {
  const g = got.dataSync();
  const w = want.dataSync();
  let scale = 0;
  for (const v of w) scale = Math.max(scale, Math.abs(v));
  let d = 0;
  for (let i = 0; i < w.length; i++) d = Math.max(d, Math.abs(g[i] - w[i]));
  return d / Math.max(scale, 1e-12);
}

describe.each(['wasm', 'cpu'] as const)('fused BatchNorm kernels on %s', (backend) => {
  // c = 8 runs the SIMD passes on wasm, c = 6 the plain loops; the mean offset tests the centring.
  test.each([
    { c: 8, slope: LEAKY_SLOPE, offset: 0 },
    { c: 6, slope: LEAKY_SLOPE, offset: 3 },
    { c: 12, slope: 1, offset: -2 },
  ])('c = $c, slope $slope: output, statistics and gradients match tfjs ops', async ({ c, slope, offset }) => {
    await selectBackend(backend, { threads: 1, log: () => {} });
    expect(hasFusedBatchNorm(backend)).toBe(true);
    const rng = new Rng(c);
    const shape = [3, 9, 7, c];
    const x = random(shape, rng, offset);
    const g = random([c], rng, 1);
    const b = random([c], rng);
    const dy = random(shape, rng);

    const [y, mean, variance, rstd] = tf.engine().runKernel(BATCHNORM_TRAIN, { x, gamma: g, beta: b }, { slope, eps: BN_EPS }) as tf.Tensor[];
    const want = reference(x, g, b, slope);
    expect(maxRelDiff(y, want)).toBeLessThan(1e-5);
    const m = tf.moments(x, [0, 1, 2]);
    expect(maxRelDiff(mean, m.mean)).toBeLessThan(1e-5);
    expect(maxRelDiff(variance, m.variance)).toBeLessThan(1e-5);
    expect(maxRelDiff(rstd, tf.rsqrt(tf.add(m.variance, BN_EPS)))).toBeLessThan(1e-5);

    const [dx, dGamma, dBeta] = tf.engine().runKernel(BATCHNORM_TRAIN_GRAD, { dy, x, y, mean, rstd, gamma: g }, { slope }) as tf.Tensor[];
    const [rx, rg, rb] = tf.grads((xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => reference(xi, gi, bi, slope))([x, g, b], dy);
    expect(maxRelDiff(dx, rx)).toBeLessThan(1e-4);
    expect(maxRelDiff(dGamma, rg)).toBeLessThan(1e-4);
    expect(maxRelDiff(dBeta, rb)).toBeLessThan(1e-4);
    tf.dispose([x, g, b, dy, y, mean, variance, rstd, want, m.mean, m.variance, dx, dGamma, dBeta, rx, rg, rb]);
  });

  test('the network layer runs through them, and updates the running statistics as PyTorch does', async () => {
    await selectBackend(backend, { threads: 1, log: () => {} });
    const store = new ParameterStore(`bn_${backend}`);
    addBatchNorm(store, 'bn', 8);
    const x = random([2, 4, 4, 8], new Rng(5), 2);
    const profile = await tf.profile(() => batchNormLeakyRelu(store, 'bn', x as tf.Tensor4D, { training: true }));
    expect(profile.kernelNames).toContain(BATCHNORM_TRAIN);
    const m = tf.moments(x, [0, 1, 2]);
    const n = 2 * 4 * 4;
    expect(maxRelDiff(store.get('bn.runningMean'), tf.mul(m.mean, 0.1))).toBeLessThan(1e-5);
    expect(maxRelDiff(store.get('bn.runningVar'), tf.add(0.9, tf.mul(m.variance, (0.1 * n) / (n - 1))))).toBeLessThan(1e-5);
    store.dispose();
  });
});
