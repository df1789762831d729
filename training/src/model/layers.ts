/**
 * The building blocks of the U-Net as pure functions over a ParameterStore, NHWC layout,
 * with PyTorch semantics (Conv2d with bias, BatchNorm2d, LeakyReLU(0.01), element-wise Dropout).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ParameterStore } from './params.js';
import { drawOpSeed, type UniformSource } from './random-source.js';

/** PyTorch BatchNorm2d defaults. */
export const BN_MOMENTUM = 0.1;
export const BN_EPS = 1e-5;
export const LEAKY_SLOPE = 0.01;

/** Convolution with bias, stride 1, zero padding (kernel−1)/2 on each side ("same"). */
export function conv(store: ParameterStore, prefix: string, x: tf.Tensor4D): tf.Tensor4D {
  const kernel = store.get(`${prefix}.kernel`) as unknown as tf.Tensor4D;
  const bias = store.get(`${prefix}.bias`);
  const pad = kernel.shape[0] === 1 ? 'valid' : 'same';
  return tf.add(tf.conv2d(x, kernel, 1, pad), bias);
}

export interface BatchNormMode {
  /** true: normalise with batch statistics and update the running ones (train()); false: eval(). */
  training: boolean;
}

/**
 * BatchNorm2d. Training: normalise with the biased batch variance; update running mean and
 * running var (the latter from the unbiased variance) with momentum 0.1, as PyTorch does.
 */
export function batchNorm(store: ParameterStore, prefix: string, x: tf.Tensor4D, mode: BatchNormMode): tf.Tensor4D {
  const gamma = store.get(`${prefix}.gamma`);
  const beta = store.get(`${prefix}.beta`);
  const runningMean = store.get(`${prefix}.runningMean`);
  const runningVar = store.get(`${prefix}.runningVar`);
  if (!mode.training) {
    return tf.add(tf.mul(tf.div(tf.sub(x, runningMean), tf.sqrt(tf.add(runningVar, BN_EPS))), gamma), beta);
  }
  const [b, h, w] = x.shape;
  const n = b * h * w;
  if (n < 2) {
    throw new Error(`batchNorm ${prefix}: training needs more than one value per channel (got batch ${b}, ${h}×${w})`);
  }
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  tf.tidy(() => {
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - BN_MOMENTUM), tf.mul(mean, BN_MOMENTUM)));
    runningVar.assign(tf.add(tf.mul(runningVar, 1 - BN_MOMENTUM), tf.mul(variance, (BN_MOMENTUM * n) / (n - 1))));
  });
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, BN_EPS))), gamma), beta);
}

/** Element-wise dropout with the 1/(1−p) rescaling of torch.nn.Dropout; identity when p = 0. */
export function dropout(x: tf.Tensor4D, p: number, rng: UniformSource): tf.Tensor4D {
  if (p <= 0) return x;
  const u = tf.randomUniform(x.shape, 0, 1, 'float32', drawOpSeed(rng));
  const keep = tf.mul(tf.cast(tf.greaterEqual(u, p), 'float32'), 1 / (1 - p));
  return tf.mul(x, keep);
}

export interface BlockMode extends BatchNormMode {
  /** Required when training with dropout > 0. */
  rng?: UniformSource;
}

/** conv3×3 → BN → LeakyReLU → Dropout(p) → conv3×3 → BN → LeakyReLU. */
export function convBlock(
  store: ParameterStore,
  prefix: string,
  x: tf.Tensor4D,
  dropoutP: number,
  mode: BlockMode,
): tf.Tensor4D {
  let y = tf.leakyRelu(batchNorm(store, `${prefix}.bn1`, conv(store, `${prefix}.conv1`, x), mode), LEAKY_SLOPE);
  if (mode.training && dropoutP > 0) {
    if (!mode.rng) throw new Error(`convBlock ${prefix}: training with dropout needs an rng`);
    y = dropout(y, dropoutP, mode.rng);
  }
  return tf.leakyRelu(batchNorm(store, `${prefix}.bn2`, conv(store, `${prefix}.conv2`, y), mode), LEAKY_SLOPE);
}
