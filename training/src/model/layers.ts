/**
 * The building blocks of the U-Net as pure functions over a ParameterStore, NHWC layout,
 * with PyTorch semantics (Conv2d with bias, BatchNorm2d, LeakyReLU(0.01), element-wise Dropout).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ParameterStore } from './params.js';
import { drawOpSeed, type UniformSource } from './random-source.js';
import { batchNormTrainBackward, batchNormTrainForward } from '../backend/batchnorm-training.js';
import { BN_EPS, BN_MOMENTUM, LEAKY_SLOPE, type ConvBlockSpec, type ConvLayerSpec } from './unet-spec.js';

/** The network's numerical constants, declared in unet-spec.ts. */
export { BN_EPS, BN_MOMENTUM, LEAKY_SLOPE };

/** Convolution with bias, stride 1, zero padding (kernel−1)/2 on each side ("same"). */
export function conv(store: ParameterStore, prefix: string, x: tf.Tensor4D): tf.Tensor4D {
  const kernel = store.get(`${prefix}.kernel`) as unknown as tf.Tensor4D;
  const bias = store.get(`${prefix}.bias`);
  const pad = kernel.shape[0] === 1 ? 'valid' : 'same';
  // fused: the backend adds the bias inside the convolution (XNNPACK on wasm) instead of in a
  // second pass over the output; the gradient is the same three (dx, dW, the bias's sum of dy)
  return tf.fused.conv2d({ x, filter: kernel, strides: 1, pad, bias });
}

export interface BatchNormMode {
  /** true: normalise with batch statistics and update the running ones (train()); false: eval(). */
  training: boolean;
}

/** Values per channel in a batch; BatchNorm's variance needs at least two. */
function valuesPerChannel(prefix: string, x: tf.Tensor4D): number {
  const [b, h, w] = x.shape;
  const n = b * h * w;
  if (n < 2) {
    throw new Error(`batchNorm ${prefix}: training needs more than one value per channel (got batch ${b}, ${h}×${w})`);
  }
  return n;
}

/** PyTorch's running-statistics update: momentum 0.1, running variance from the unbiased variance. */
function updateRunningStats(store: ParameterStore, prefix: string, mean: tf.Tensor, biasedVariance: tf.Tensor, n: number): void {
  const runningMean = store.get(`${prefix}.runningMean`);
  const runningVar = store.get(`${prefix}.runningVar`);
  tf.tidy(() => {
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - BN_MOMENTUM), tf.mul(mean, BN_MOMENTUM)));
    runningVar.assign(tf.add(tf.mul(runningVar, 1 - BN_MOMENTUM), tf.mul(biasedVariance, (BN_MOMENTUM * n) / (n - 1))));
  });
}

/**
 * Training-mode BatchNorm2d (biased batch variance), optionally followed by LeakyReLU, as ONE
 * autograd node whose forward and backward the backend provides (backend/batchnorm-training.ts):
 * the tape keeps only x and the output instead of every intermediate. Running statistics are
 * updated as a side effect (momentum 0.1, unbiased variance), as PyTorch does.
 */
function batchNormTraining(store: ParameterStore, prefix: string, x: tf.Tensor4D, leaky: boolean): tf.Tensor4D {
  const n = valuesPerChannel(prefix, x);
  const slope = leaky ? LEAKY_SLOPE : 1;
  const f = tf.customGrad((...args: unknown[]) => {
    const [xt, g, bt] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D];
    const save = args[3] as (ts: tf.Tensor[]) => void;
    const [y, mean, variance, rstd] = batchNormTrainForward(xt, g, bt, slope, BN_EPS);
    updateRunningStats(store, prefix, mean, variance, n);
    save([xt, y, mean, rstd, g]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ys, m, r, gs] = saved;
      return batchNormTrainBackward(dy, xs, ys, m, r, gs, slope);
    };
    return { value: y, gradFunc };
  });
  return f(x, store.get(`${prefix}.gamma`), store.get(`${prefix}.beta`)) as tf.Tensor4D;
}

/**
 * BatchNorm2d. Training: normalise with the biased batch variance; update running mean and
 * running var (the latter from the unbiased variance) with momentum 0.1, as PyTorch does.
 */
export function batchNorm(store: ParameterStore, prefix: string, x: tf.Tensor4D, mode: BatchNormMode): tf.Tensor4D {
  if (mode.training) return batchNormTraining(store, prefix, x, false);
  const gamma = store.get(`${prefix}.gamma`);
  const beta = store.get(`${prefix}.beta`);
  const runningMean = store.get(`${prefix}.runningMean`);
  const runningVar = store.get(`${prefix}.runningVar`);
  return tf.add(tf.mul(tf.div(tf.sub(x, runningMean), tf.sqrt(tf.add(runningVar, BN_EPS))), gamma), beta);
}

/** LeakyReLU(0.01) of BatchNorm2d, fused into one autograd node when training. */
export function batchNormLeakyRelu(store: ParameterStore, prefix: string, x: tf.Tensor4D, mode: BatchNormMode): tf.Tensor4D {
  if (mode.training) return batchNormTraining(store, prefix, x, true);
  return tf.leakyRelu(batchNorm(store, prefix, x, mode), LEAKY_SLOPE);
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

/** A conv of the spec, followed by BatchNorm + LeakyReLU when the spec says so. */
export function convLayer(store: ParameterStore, layer: ConvLayerSpec, x: tf.Tensor4D, mode: BatchNormMode): tf.Tensor4D {
  const y = conv(store, layer.name, x);
  return layer.bn ? batchNormLeakyRelu(store, layer.bn, y, mode) : y;
}

/** A block of the spec: conv3×3 → BN → LeakyReLU → Dropout(p) → conv3×3 → BN → LeakyReLU. */
export function convBlock(store: ParameterStore, block: ConvBlockSpec, x: tf.Tensor4D, mode: BlockMode): tf.Tensor4D {
  let y = convLayer(store, block.conv1, x, mode);
  if (mode.training && block.dropout > 0) {
    if (!mode.rng) throw new Error(`convBlock ${block.name}: training with dropout needs an rng`);
    y = dropout(y, block.dropout, mode.rng);
  }
  return convLayer(store, block.conv2, y, mode);
}
