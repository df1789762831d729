/**
 * Confidence threshold γ and the Ω1/Ω2/Ω3 regions of the unlabeled pixels (released
 * train_ALHVR_acdc.py). All outputs are constants for autograd. The tfjs form of core's
 * plain-array rule (core/src/quality.ts: `betaQuantileMean`, `REGION` ids: Ω1 = reliable,
 * Ω2 = unstable, Ω3 = unreliable) that export and inference apply; regions.test.ts holds them equal.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { noGrad } from '../model/no-grad.js';

export interface RegionMasks {
  /** Mean of the lowest ⌊β·N⌋ values of (cA + cB)/2. */
  gamma: tf.Scalar;
  /** cA > γ and cB > γ: reliable and stable, no unsupervised loss. */
  omega1: tf.Tensor;
  /** cA ≤ γ and cB > γ: B teaches A (part of Ω2). */
  mA: tf.Tensor;
  /** cB ≤ γ and cA > γ: A teaches B (part of Ω2). */
  mB: tf.Tensor;
  /** cA < γ and cB < γ: both unsure. */
  omega3: tf.Tensor;
}

/** Mean of the lowest ⌊proportion·N⌋ entries (torch.topk(largest=False) then mean). */
export function lowestProportionMean(values: tf.Tensor, proportion: number): tf.Scalar {
  const n = values.size;
  const k = Math.floor(n * proportion);
  if (!(proportion > 0 && proportion <= 1) || k < 1) {
    throw new InputError(`regionMasks: proportion ${proportion} of ${n} pixels selects no pixel (need 0 < β ≤ 1 and β·N ≥ 1)`);
  }
  return noGrad((v) => {
    const { values: top } = tf.topk(tf.neg(tf.reshape(v, [n])), k, false);
    return tf.neg(tf.mean(top)) as tf.Scalar;
  }, values);
}

/**
 * Regions from the perturbed-branch confidences cA = max_k qA and cB = max_k qB (same shape,
 * e.g. [Bu, H, W]). Masks are float32 0/1 of that shape. The inequalities are the released
 * ones: a pixel whose confidence equals γ exactly may fall in none of the regions.
 */
export function regionMasks(cA: tf.Tensor, cB: tf.Tensor, proportion: number): RegionMasks {
  if (!tf.util.arraysEqual(cA.shape, cB.shape)) {
    throw new InputError(`regionMasks: confidence shapes differ ([${cA.shape}] vs [${cB.shape}])`);
  }
  return tf.tidy(() => {
    const gamma = lowestProportionMean(tf.mul(tf.add(cA, cB), 0.5), proportion);
    const masks = noGrad(
      (a, b, g) => {
        const f = (t: tf.Tensor) => tf.cast(t, 'float32');
        const aHi = tf.greater(a, g);
        const bHi = tf.greater(b, g);
        return tf.stack([
          f(tf.logicalAnd(aHi, bHi)),
          f(tf.logicalAnd(tf.lessEqual(a, g), bHi)),
          f(tf.logicalAnd(tf.lessEqual(b, g), aHi)),
          f(tf.logicalAnd(tf.less(a, g), tf.less(b, g))),
        ]);
      },
      cA,
      cB,
      gamma,
    );
    const [omega1, mA, mB, omega3] = tf.unstack(masks);
    return { gamma, omega1, mA, mB, omega3 };
  });
}

export interface RegionFractions {
  omega1: number;
  omega2: number;
  omega3: number;
  /** Pixels in no region (confidence exactly equal to γ); 0 unless there are ties. */
  unassigned: number;
}

/** Fractions of pixels in each region (they sum to 1 with `unassigned`). */
export function regionFractions(r: RegionMasks): RegionFractions {
  const [o1, a, b, o3] = tf.tidy(() => tf.stack([tf.mean(r.omega1), tf.mean(r.mA), tf.mean(r.mB), tf.mean(r.omega3)]).dataSync());
  const omega2 = a + b;
  return { omega1: o1, omega2, omega3: o3, unassigned: Math.max(0, 1 - o1 - omega2 - o3) };
}
