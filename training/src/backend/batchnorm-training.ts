/**
 * Training-mode BatchNorm2d (+ optional LeakyReLU) forward and backward, as the model calls them
 * (model/layers.ts wraps the pair in one autograd node). Where the backend has the fused kernels
 * of batchnorm-kernels.ts (wasm, cpu) they run; elsewhere (tensorflow) the same textbook
 * formulas run as tfjs ops, written for the ops the wasm backend is fast at.
 *
 * `slope` is the LeakyReLU slope after the affine step, 1 for none.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BATCHNORM_TRAIN, BATCHNORM_TRAIN_GRAD, hasFusedBatchNorm } from './batchnorm-kernels.js';

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
function channelAffine(x2: tf.Tensor2D, scale: tf.Tensor, shift: tf.Tensor, slope: number): tf.Tensor2D {
  const [n, c] = x2.shape;
  // The kernel itself: tf.fused.matMul would fall back to unfused ops inside a gradient scope.
  // Callers only use this inside a customGrad node, where nothing is recorded on the tape anyway.
  const out = tf.engine().runKernel(
    '_FusedMatMul',
    { a: tf.reshape(x2, [1, n, c]), b: tf.reshape(tf.diag(tf.reshape(scale, [c])), [1, c, c]), bias: shift },
    { transposeA: false, transposeB: false, activation: slope !== 1 ? 'leakyrelu' : 'linear', leakyreluAlpha: slope },
  ) as tf.Tensor;
  return tf.reshape(out, [n, c]);
}

/** [y, mean, variance (biased), rstd] of x [B, H, W, C] normalised with its batch statistics. */
export function batchNormTrainForward(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, slope: number, eps: number): [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D] {
  if (hasFusedBatchNorm(tf.getBackend())) {
    return tf.engine().runKernel(BATCHNORM_TRAIN, { x, gamma, beta }, { slope, eps }) as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
  }
  const [b, h, w, c] = x.shape;
  const n = b * h * w;
  const x2 = tf.reshape(x, [n, c]) as tf.Tensor2D;
  const mean = tf.div(channelSums(x2), n) as tf.Tensor1D;
  const centered = channelAffine(x2, tf.onesLike(mean), tf.neg(mean), 1);
  const variance = tf.div(channelSums(tf.mul(centered, centered)), n) as tf.Tensor1D;
  const rstd = tf.rsqrt(tf.add(variance, eps)) as tf.Tensor1D;
  const y = tf.reshape(channelAffine(centered, tf.mul(rstd, gamma), beta, slope), [b, h, w, c]) as tf.Tensor4D;
  return [y, mean, variance, rstd];
}

/** [dx, dGamma, dBeta] from the output gradient and what the forward saved. */
export function batchNormTrainBackward(dy: tf.Tensor, x: tf.Tensor, y: tf.Tensor, mean: tf.Tensor, rstd: tf.Tensor, gamma: tf.Tensor, slope: number): tf.Tensor[] {
  if (hasFusedBatchNorm(tf.getBackend())) {
    return tf.engine().runKernel(BATCHNORM_TRAIN_GRAD, { dy, x, y, mean, rstd, gamma }, { slope }) as tf.Tensor[];
  }
  const [b, h, w, c] = x.shape;
  const n = b * h * w;
  const dz = tf.reshape(slope !== 1 ? tf.mul(dy, tf.step(y, slope)) : dy, [n, c]) as tf.Tensor2D;
  const xhat = channelAffine(tf.reshape(x, [n, c]) as tf.Tensor2D, rstd, tf.neg(tf.mul(mean, rstd)), 1);
  const dBeta = channelSums(dz);
  const dGamma = channelSums(tf.mul(dz, xhat));
  const gr = tf.mul(gamma, rstd);
  // dx = γ·rstd·(dz − mean(dz) − x̂·mean(dz·x̂))
  const dx = tf.add(
    channelAffine(dz, gr, tf.mul(gr, tf.div(dBeta, -n)), 1),
    channelAffine(xhat, tf.mul(gr, tf.div(dGamma, -n)), tf.zeros([c]), 1),
  );
  return [tf.reshape(dx, [b, h, w, c]), dGamma, dBeta];
}
