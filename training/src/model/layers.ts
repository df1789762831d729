/**
 * The building blocks of the U-Net as pure functions over a ParameterStore, NHWC layout,
 * with PyTorch semantics (Conv2d with bias, BatchNorm2d, LeakyReLU(0.01), element-wise Dropout).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ParameterStore } from './params.js';
import { drawOpSeed, type UniformSource } from './random-source.js';
import { BATCHNORM_TRAIN, BATCHNORM_TRAIN_GRAD, hasFusedBatchNorm } from '../backend/batchnorm-kernels.js';
import { BN_EPS, BN_MOMENTUM, LEAKY_SLOPE, type ConvBlockSpec, type ConvLayerSpec } from './unet-spec.js';

/** The network's numerical constants, declared in unet-spec.ts. */
export { BN_EPS, BN_MOMENTUM, LEAKY_SLOPE };

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
 * Per-channel sums [C] of x viewed as [N, C]. (A GEMM with a row of ones looks faster in isolation
 * but repacks x as XNNPACK weights on every call; in a real step it was slower than Sum.)
 */
function channelSums(x2: tf.Tensor2D): tf.Tensor1D {
  return tf.sum(x2, 0);
}

/**
 * x·diag(scale) + shift per channel (scale, shift: [C], and shift must have been computed at rank 1:
 * the wasm kernel checks the rank the buffer was allocated with), optionally followed by LeakyReLU, as one fused GEMM with a
 * diagonal matrix: the wasm backend's broadcasting Multiply/Add over a [C] operand are several
 * times slower than this, and the GEMM is exact (every product but one is with an exact zero).
 */
function channelAffine(x2: tf.Tensor2D, scale: tf.Tensor, shift: tf.Tensor, leaky: boolean): tf.Tensor2D {
  const [n, c] = x2.shape;
  // The kernel itself: tf.fused.matMul would fall back to unfused ops inside a gradient scope.
  // Callers only use this inside a customGrad node, where nothing is recorded on the tape anyway.
  const out = tf.engine().runKernel(
    '_FusedMatMul',
    { a: tf.reshape(x2, [1, n, c]), b: tf.reshape(tf.diag(tf.reshape(scale, [c])), [1, c, c]), bias: shift },
    { transposeA: false, transposeB: false, activation: leaky ? 'leakyrelu' : 'linear', leakyreluAlpha: LEAKY_SLOPE },
  ) as tf.Tensor;
  return tf.reshape(out, [n, c]);
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
 * autograd node: forward and backward are written out with the textbook formulas, so the tape keeps
 * only x and the output instead of every intermediate, and both passes run a handful of large ops.
 * Running statistics are updated as a side effect (momentum 0.1, unbiased variance), as PyTorch does.
 */
function batchNormTraining(store: ParameterStore, prefix: string, x: tf.Tensor4D, leaky: boolean): tf.Tensor4D {
  if (hasFusedBatchNorm(tf.getBackend())) return fusedBatchNormTraining(store, prefix, x, leaky);
  const gamma = store.get(`${prefix}.gamma`);
  const beta = store.get(`${prefix}.beta`);
  const [b, h, w, c] = x.shape;
  const n = valuesPerChannel(prefix, x);
  const f = tf.customGrad((...args: unknown[]) => {
    const [xt, g, bt] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D];
    const save = args[3] as (ts: tf.Tensor[]) => void;
    const x2 = tf.reshape(xt, [n, c]) as tf.Tensor2D;
    const mean = tf.div(channelSums(x2), n);
    const centered = channelAffine(x2, tf.onesLike(mean), tf.neg(mean), false);
    const variance = tf.div(channelSums(tf.mul(centered, centered)), n);
    const rstd = tf.rsqrt(tf.add(variance, BN_EPS));
    const scale = tf.mul(rstd, g);
    const y = tf.reshape(channelAffine(centered, scale, bt, leaky), [b, h, w, c]) as tf.Tensor4D;
    updateRunningStats(store, prefix, mean, variance, n);
    save([xt, y, mean, rstd, g]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ys, m, r, gs] = saved;
      const dz = tf.reshape(leaky ? tf.mul(dy, tf.step(ys, LEAKY_SLOPE)) : dy, [n, c]) as tf.Tensor2D;
      const xhat = channelAffine(tf.reshape(xs, [n, c]) as tf.Tensor2D, r, tf.neg(tf.mul(m, r)), false);
      const dBeta = channelSums(dz);
      const dGamma = channelSums(tf.mul(dz, xhat));
      const gr = tf.mul(gs, r);
      // dx = γ·rstd·(dz − mean(dz) − x̂·mean(dz·x̂))
      const dx = tf.add(
        channelAffine(dz, gr, tf.mul(gr, tf.div(dBeta, -n)), false),
        channelAffine(xhat, tf.mul(gr, tf.div(dGamma, -n)), tf.zeros([c]), false),
      );
      return [tf.reshape(dx, [b, h, w, c]), dGamma, dBeta];
    };
    return { value: y, gradFunc };
  });
  return f(x, gamma, beta) as tf.Tensor4D;
}

/**
 * The same node through the backend's fused kernels (backend/batchnorm-kernels.ts): one pass
 * structure instead of a dozen tfjs ops per direction.
 */
function fusedBatchNormTraining(store: ParameterStore, prefix: string, x: tf.Tensor4D, leaky: boolean): tf.Tensor4D {
  const n = valuesPerChannel(prefix, x);
  const slope = leaky ? LEAKY_SLOPE : 1;
  const f = tf.customGrad((...args: unknown[]) => {
    const [xt, g, bt] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D];
    const save = args[3] as (ts: tf.Tensor[]) => void;
    const [y, mean, variance, rstd] = tf.engine().runKernel(BATCHNORM_TRAIN, { x: xt, gamma: g, beta: bt }, { slope, eps: BN_EPS }) as tf.Tensor[];
    updateRunningStats(store, prefix, mean, variance, n);
    save([xt, y, mean, rstd, g]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ys, m, r, gs] = saved;
      return tf.engine().runKernel(BATCHNORM_TRAIN_GRAD, { dy, x: xs, y: ys, mean: m, rstd: r, gamma: gs }, { slope }) as tf.Tensor[];
    };
    return { value: y as tf.Tensor4D, gradFunc };
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
