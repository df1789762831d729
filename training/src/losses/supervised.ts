/**
 * Supervised terms on the labeled part of the batch (NHWC: logits/probabilities [B, H, W, C],
 * labels int32 [B, H, W]).
 */
import * as tf from '@tensorflow/tfjs-core';

/** Float one-hot [B, H, W, C] of int32 labels [B, H, W]. */
export function oneHotLabels(labels: tf.Tensor3D, numClasses: number): tf.Tensor4D {
  return tf.cast(tf.oneHot(tf.cast(labels, 'int32'), numClasses), 'float32') as tf.Tensor4D;
}

/** Mean pixel-wise cross-entropy of softmax(logits) against labels (torch F.cross_entropy). */
export function ceLoss(logits: tf.Tensor4D, labels: tf.Tensor3D): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits, -1);
    const onehot = oneHotLabels(labels, logits.shape[3]);
    return tf.neg(tf.mean(tf.sum(tf.mul(onehot, logp), -1))) as tf.Scalar;
  });
}

export type DiceVariant = 'released' | 'standard';

export interface DiceOptions {
  /**
   * 'released' (default, ALHVR utils/losses.py DiceLoss): per class 1 − Σpg / (Σp² + Σg² + 1e-10),
   * no factor 2 and the smoothing term in the denominator only.
   * 'standard' (SSL4MIS DiceLoss): per class 1 − (2Σpg + 1e-5) / (Σp² + Σg² + 1e-5).
   */
  variant?: DiceVariant;
}

/**
 * Soft Dice loss, sums over the whole batch per class, then averaged over all classes
 * including background. `p` are probabilities, `onehot` the one-hot targets, both [B, H, W, C].
 */
export function diceLoss(p: tf.Tensor4D, onehot: tf.Tensor4D, options: DiceOptions = {}): tf.Scalar {
  const variant = options.variant ?? 'released';
  return tf.tidy(() => {
    const axes = [0, 1, 2];
    const intersect = tf.sum(tf.mul(p, onehot), axes);
    const denom = tf.add(tf.sum(tf.mul(p, p), axes), tf.sum(tf.mul(onehot, onehot), axes));
    const ratio =
      variant === 'released'
        ? tf.div(intersect, tf.add(denom, 1e-10))
        : tf.div(tf.add(tf.mul(intersect, 2), 1e-5), tf.add(denom, 1e-5));
    return tf.mean(tf.sub(1, ratio)) as tf.Scalar;
  });
}
