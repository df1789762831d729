/**
 * Feature perturbations of the auxiliary decoder branch (released UNet_fea_aux). One branch
 * type is chosen per forward call; as in the released code, each of the five encoder outputs
 * draws its own u (dropout) or its own noise tensor (noise).
 */
import * as tf from '@tensorflow/tfjs-core';
import { noGrad } from './no-grad.js';
import { drawOpSeed, type UniformSource } from './random-source.js';

/**
 * Per sample: a = channel mean; zero every location where a ≥ max(a)·u. The mask is a
 * constant for autograd (the released code builds it from a comparison).
 */
export function featureDropout(x: tf.Tensor4D, u: number): tf.Tensor4D {
  const mask = noGrad((f) => {
    const a = tf.mean(f, 3, true);
    const threshold = tf.mul(tf.max(a, [1, 2, 3], true), u);
    return tf.cast(tf.less(a, threshold), 'float32');
  }, x);
  return tf.mul(x, mask);
}

/** x + x·n with n of shape [1, H, W, C] (shared over the batch). */
export function featureNoise(x: tf.Tensor4D, noise: tf.Tensor): tf.Tensor4D {
  return tf.add(x, tf.mul(x, noise));
}

export type PerturbationKind = 'dropout' | 'noise';

export const FEATURE_DROPOUT_RANGE: [number, number] = [0.7, 0.9];
export const FEATURE_NOISE_RANGE = 0.3;

/** Perturbed copies of the encoder outputs; returns which perturbation was drawn. */
export function perturbFeatures(
  features: tf.Tensor4D[],
  rng: UniformSource,
): { features: tf.Tensor4D[]; kind: PerturbationKind } {
  // Released: `random.random() > 0.5` selects FeatureDropout.
  const kind: PerturbationKind = rng.next() > 0.5 ? 'dropout' : 'noise';
  const out = features.map((x) => {
    if (kind === 'dropout') {
      const [lo, hi] = FEATURE_DROPOUT_RANGE;
      return featureDropout(x, lo + (hi - lo) * rng.next());
    }
    const [, h, w, c] = x.shape;
    const noise = tf.randomUniform([1, h, w, c], -FEATURE_NOISE_RANGE, FEATURE_NOISE_RANGE, 'float32', drawOpSeed(rng));
    return featureNoise(x, noise);
  });
  return { features: out, kind };
}
