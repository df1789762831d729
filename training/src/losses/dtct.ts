/**
 * DTCT: dual-teacher competition on Ω3 (both students unsure). Tensors are the unlabeled part,
 * channels-last probabilities [Bu, …spatial, C] (2D or 3D); omega3 is a 0/1 mask [Bu, …spatial].
 */
import * as tf from '@tensorflow/tfjs-core';
import { noGrad, stopGradient } from '../model/no-grad.js';

/** s = t^(1/T) / (t^(1/T) + (1 − t)^(1/T)), element-wise, not renormalised over classes. */
export function sharpen(t: tf.Tensor, temperature: number): tf.Tensor {
  return tf.tidy(() => {
    const e = 1 / temperature;
    const a = tf.pow(t, e);
    return tf.div(a, tf.add(a, tf.pow(tf.sub(1, t), e)));
  });
}

/** Per-voxel entropy −Σ_k x log(x + 1e-6), averaged over all voxels of x [B, …spatial, C]. */
export function meanEntropy(x: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(x, tf.log(tf.add(x, 1e-6))), -1))) as tf.Scalar);
}

/**
 * How the entropies of p·1Ω3 and q·1Ω3 are averaged: 'released' over all unlabeled voxels (voxels
 * outside Ω3 add 0 but count), 'masked' over the voxels of Ω3 only.
 */
export type EntropyMean = 'released' | 'masked';

export interface DtctInputs {
  /** Clean softmax of student A / B. */
  pA: tf.Tensor;
  pB: tf.Tensor;
  /** Perturbed-branch softmax of student A / B. */
  qA: tf.Tensor;
  qB: tf.Tensor;
  omega3: tf.Tensor;
}

export interface DtctOptions {
  /** Sharpening temperature T (released 0.1). */
  temperature?: number;
  /**
   * false (default, released quirk): the teacher is not detached, so the MSE gradient also
   * reaches the teacher network. true: the teacher is a constant.
   */
  detachTeacher?: boolean;
  entropyMean?: EntropyMean;
}

export interface DtctTerms {
  focusA: tf.Scalar;
  focusB: tf.Scalar;
  mseA: tf.Scalar;
  mseB: tf.Scalar;
  /** H(p_i·1Ω3) and H(q_i·1Ω3). */
  entropyPA: tf.Scalar;
  entropyQA: tf.Scalar;
  entropyPB: tf.Scalar;
  entropyQB: tf.Scalar;
}

/** The per-pixel teacher: clean softmax of the student whose clean max-probability is larger. */
export function competitionTeacher<T extends tf.Tensor>(pA: T, pB: T): T {
  return tf.tidy(() => {
    const aWins = noGrad((a, b) => tf.cast(tf.greater(tf.max(a, -1, true), tf.max(b, -1, true)), 'float32'), pA, pB);
    return tf.add(tf.mul(pA, aWins), tf.mul(pB, tf.sub(1, aWins))) as T;
  });
}

/** focus_i = Σ_{Ω3,k}(q_i − s)²/|Ω3| + H(p_i·1Ω3) + H(q_i·1Ω3). */
export function dtctLoss(inputs: DtctInputs, options: DtctOptions = {}): DtctTerms {
  const temperature = options.temperature ?? 0.1;
  const detach = options.detachTeacher ?? false;
  const entropyMean = options.entropyMean ?? 'released';
  return tf.tidy(() => {
    const { pA, pB, qA, qB } = inputs;
    const m = tf.expandDims(inputs.omega3, -1);
    const teacher = competitionTeacher(pA, pB);
    const s = sharpen(detach ? stopGradient(teacher) : teacher, temperature);
    const count = tf.add(tf.sum(inputs.omega3), 1e-16);
    const mse = (q: tf.Tensor) => tf.div(tf.sum(tf.mul(m, tf.square(tf.sub(q, s)))), count) as tf.Scalar;
    const mseA = mse(qA);
    const mseB = mse(qB);
    // 'masked': the all-voxel mean rescaled to a mean over Ω3 (outside it the entropy is 0).
    const voxels = inputs.omega3.size;
    const entropy = (x: tf.Tensor) => {
      const overAll = meanEntropy(tf.mul(x, m));
      return entropyMean === 'released' ? overAll : (tf.div(tf.mul(overAll, voxels), count) as tf.Scalar);
    };
    const entropyPA = entropy(pA);
    const entropyQA = entropy(qA);
    const entropyPB = entropy(pB);
    const entropyQB = entropy(qB);
    return {
      focusA: tf.addN([mseA, entropyPA, entropyQA]) as tf.Scalar,
      focusB: tf.addN([mseB, entropyPB, entropyQB]) as tf.Scalar,
      mseA,
      mseB,
      entropyPA,
      entropyQA,
      entropyPB,
      entropyQB,
    };
  });
}
