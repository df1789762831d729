/**
 * Supervised terms on the labeled part of the batch, channels last at any spatial rank:
 * logits/probabilities [B, …spatial, C] (2D [B, H, W, C], 3D [B, D, H, W, C]), labels int32
 * [B, …spatial]. The same code serves both networks.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Float one-hot [B, …spatial, C] of int32 labels [B, …spatial]. */
export function oneHotLabels<T extends tf.Tensor>(labels: tf.Tensor, numClasses: number): T {
  return tf.cast(tf.oneHot(tf.cast(labels, 'int32'), numClasses), 'float32') as T;
}

/** Number of classes: the channels-last axis. */
export const classCount = (x: tf.Tensor): number => x.shape[x.rank - 1];

/**
 * Mean pixel-wise cross-entropy of softmax(logits) against labels (torch F.cross_entropy).
 *
 * With a per-voxel `weight` [B, …spatial] (pseudo-labels: 1 reliable, less where the label is less
 * trustworthy, 0 ignored) it is Σ w·ce / Σ w — torch's weighted/ignore_index mean — so a pixel
 * of weight 0 contributes nothing, not even to the denominator, and all-ones weights give the
 * plain mean exactly. A batch whose weights are all 0 has loss 0.
 */
export function ceLoss(logits: tf.Tensor, labels: tf.Tensor, weight?: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits, -1);
    const onehot = oneHotLabels(labels, classCount(logits));
    const perPixel = tf.neg(tf.sum(tf.mul(onehot, logp), -1));
    if (!weight) return tf.mean(perPixel) as tf.Scalar;
    // max(Σw, tiny) keeps an all-zero batch at 0/tiny = 0 instead of NaN.
    return tf.div(tf.sum(tf.mul(perPixel, weight)), tf.maximum(tf.sum(weight), 1e-12)) as tf.Scalar;
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
  /**
   * Per-voxel weights [B, …spatial]: every sum (Σpg, Σp², Σg²) runs over w·(…), so a pixel of weight
   * 0 has no influence and no gradient, and all-ones weights give the unweighted loss.
   */
  weight?: tf.Tensor;
}

/**
 * Soft Dice loss, sums over the whole batch per class, then averaged over all classes
 * including background. `p` are probabilities, `onehot` the one-hot targets, both [B, …spatial, C].
 */
export function diceLoss(p: tf.Tensor, onehot: tf.Tensor, options: DiceOptions = {}): tf.Scalar {
  const variant = options.variant ?? 'released';
  return tf.tidy(() => {
    // Every axis but the classes: batch and all spatial axes are pooled.
    const axes = Array.from({ length: p.rank - 1 }, (_, i) => i);
    const w = options.weight ? tf.expandDims(options.weight, -1) : undefined;
    const weighted = (x: tf.Tensor) => (w ? tf.mul(x, w) : x);
    const intersect = tf.sum(weighted(tf.mul(p, onehot)), axes);
    const denom = tf.add(tf.sum(weighted(tf.mul(p, p)), axes), tf.sum(weighted(tf.mul(onehot, onehot)), axes));
    const ratio =
      variant === 'released'
        ? tf.div(intersect, tf.add(denom, 1e-10))
        : tf.div(tf.add(tf.mul(intersect, 2), 1e-5), tf.add(denom, 1e-5));
    return tf.mean(tf.sub(1, ratio)) as tf.Scalar;
  });
}
