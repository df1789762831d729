/**
 * DTCT: dual-teacher competition on Ω3 (both students unsure). Tensors are the unlabeled part,
 * NHWC probabilities [Bu, H, W, C]; omega3 is a 0/1 mask [Bu, H, W].
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

/** Per-pixel entropy −Σ_k x log(x + 1e-6), averaged over all pixels of x [B, H, W, C]. */
export function meanEntropy(x: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(x, tf.log(tf.add(x, 1e-6))), -1))) as tf.Scalar);
}

export interface DtctInputs {
  /** Clean softmax of student A / B. */
  pA: tf.Tensor4D;
  pB: tf.Tensor4D;
  /** Perturbed-branch softmax of student A / B. */
  qA: tf.Tensor4D;
  qB: tf.Tensor4D;
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
export function competitionTeacher(pA: tf.Tensor4D, pB: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const aWins = noGrad((a, b) => tf.cast(tf.greater(tf.max(a, -1, true), tf.max(b, -1, true)), 'float32'), pA, pB);
    return tf.add(tf.mul(pA, aWins), tf.mul(pB, tf.sub(1, aWins))) as tf.Tensor4D;
  });
}

/** focus_i = Σ_{Ω3,k}(q_i − s)²/|Ω3| + H(p_i·1Ω3) + H(q_i·1Ω3). */
export function dtctLoss(inputs: DtctInputs, options: DtctOptions = {}): DtctTerms {
  const temperature = options.temperature ?? 0.1;
  const detach = options.detachTeacher ?? false;
  return tf.tidy(() => {
    const { pA, pB, qA, qB } = inputs;
    const m = tf.expandDims(inputs.omega3, -1);
    const teacher = competitionTeacher(pA, pB);
    const s = sharpen(detach ? stopGradient(teacher) : teacher, temperature);
    const count = tf.add(tf.sum(inputs.omega3), 1e-16);
    const mse = (q: tf.Tensor) => tf.div(tf.sum(tf.mul(m, tf.square(tf.sub(q, s)))), count) as tf.Scalar;
    const mseA = mse(qA);
    const mseB = mse(qB);
    const entropyPA = meanEntropy(tf.mul(pA, m));
    const entropyQA = meanEntropy(tf.mul(qA, m));
    const entropyPB = meanEntropy(tf.mul(pB, m));
    const entropyQB = meanEntropy(tf.mul(qB, m));
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
