/**
 * CG-CPCL: confidence-guided cross-prototype consistency on Ω2. Tensors are the unlabeled
 * part, NHWC: probabilities [Bu, H, W, K], prototype features [Bu, h, w, D] at 1/8 resolution.
 */
import * as tf from '@tensorflow/tfjs-core';
import { noGrad } from '../model/no-grad.js';
import { resizeBilinear } from '../model/resize.js';
import { transposedProduct } from '../backend/transposed-product.js';

/** torch.nn.functional.cosine_similarity's eps. */
const COS_EPS = 1e-8;

/**
 * Class prototypes [K, D]: per image the mean feature over pixels of each class (denominator
 * + 1e-5), summed over images and divided by the batch size. Not detached.
 */
export function classPrototypes(features: tf.Tensor4D, classIndex: tf.Tensor3D, numClasses: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, h, w, d] = features.shape;
    const onehot = noGrad((c) => tf.cast(tf.oneHot(tf.reshape(tf.cast(c, 'int32'), [b, h * w]), numClasses), 'float32'), classIndex);
    const sums = transposedProduct(onehot as tf.Tensor3D, tf.reshape(features, [b, h * w, d])); // [b, K, D] = onehotᵀ · features
    const counts = tf.add(tf.sum(onehot, 1), 1e-5); // [b, K]
    const means = tf.div(sums, tf.expandDims(counts, -1));
    return tf.div(tf.sum(means, 0), b) as tf.Tensor2D;
  });
}

/** Rows scaled to unit L2 norm; the squared norm is clamped at eps² (finite gradient at 0). */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(x, tf.rsqrt(tf.maximum(tf.sum(tf.square(x), -1, true), COS_EPS * COS_EPS)));
}

/** Cosine similarity of each pixel's feature with each prototype, × scaler: [B, H, W, K]. */
export function prototypeLogits(features: tf.Tensor4D, prototypes: tf.Tensor2D, scaler = 1): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, d] = features.shape;
    const f = unitRows(tf.reshape(features, [b * h * w, d]));
    const cos = tf.matMul(f, unitRows(prototypes), false, true);
    return tf.reshape(tf.mul(cos, scaler), [b, h, w, prototypes.shape[0]]);
  });
}

export type ProtoCeReduction = 'released' | 'masked';

export interface CgCpclInputs {
  pA: tf.Tensor4D;
  pB: tf.Tensor4D;
  /** Clean and perturbed prototype features of each student, at 1/8 resolution. */
  feaA: tf.Tensor4D;
  feaB: tf.Tensor4D;
  feaAuxA: tf.Tensor4D;
  feaAuxB: tf.Tensor4D;
  /** 0/1 masks [Bu, H, W]: M_A (B teaches A) and M_B (A teaches B). */
  mA: tf.Tensor;
  mB: tf.Tensor;
}

export interface CgCpclOptions {
  scaler?: number;
  /**
   * How the prototype cross-entropy is reduced over M_A:
   * 'released' (default): exactly the released expression
   *   sum(mask.unsqueeze(1) * ce) / (sum(mask) + 1e-16), where mask [Bu,1,H,W] broadcasts
   *   against ce [Bu,H,W] to [Bu,Bu,H,W], i.e. Σ_hw (Σ_i M_i(hw)) (Σ_j ce_j(hw)) / |M|.
   *   Identical to the masked mean when Bu = 1.
   * 'masked': the stated intent, Σ M·ce / (|M| + 1e-16).
   */
  protoCe?: ProtoCeReduction;
}

export interface CgCpclTerms {
  protoA: tf.Scalar;
  protoB: tf.Scalar;
  ceA: tf.Scalar;
  ceB: tf.Scalar;
  cosA: tf.Scalar;
  cosB: tf.Scalar;
}

function maskedCe(ce: tf.Tensor3D, mask: tf.Tensor, reduction: ProtoCeReduction): tf.Scalar {
  const denom = tf.add(tf.sum(mask), 1e-16);
  if (reduction === 'masked') return tf.div(tf.sum(tf.mul(mask, ce)), denom) as tf.Scalar;
  return tf.div(tf.sum(tf.mul(tf.sum(mask, 0), tf.sum(ce, 0))), denom) as tf.Scalar;
}

/** proto_A = ce_A + cos_A against B's prototypes; symmetric for B. */
export function cgCpclLoss(inputs: CgCpclInputs, options: CgCpclOptions = {}): CgCpclTerms {
  const scaler = options.scaler ?? 1;
  const reduction = options.protoCe ?? 'released';
  return tf.tidy(() => {
    const { pA, pB } = inputs;
    const [, h, w, k] = pA.shape;
    const up = (f: tf.Tensor4D) => resizeBilinear(f, [h, w], false);
    const argA = noGrad((p) => tf.argMax(p, -1), pA) as tf.Tensor3D;
    const argB = noGrad((p) => tf.argMax(p, -1), pB) as tf.Tensor3D;
    const protoOfA = classPrototypes(up(inputs.feaA), argA, k);
    const protoOfB = classPrototypes(up(inputs.feaB), argB, k);
    const logitsA = prototypeLogits(up(inputs.feaAuxA), protoOfB, scaler);
    const logitsB = prototypeLogits(up(inputs.feaAuxB), protoOfA, scaler);
    const pixelCe = (logits: tf.Tensor4D, target: tf.Tensor3D) =>
      tf.neg(tf.sum(tf.mul(noGrad((t) => tf.cast(tf.oneHot(t, k), 'float32'), target), tf.logSoftmax(logits, -1)), -1)) as tf.Tensor3D;
    const ceA = maskedCe(pixelCe(logitsA, argB), inputs.mA, reduction);
    const ceB = maskedCe(pixelCe(logitsB, argA), inputs.mB, reduction);
    const cosTerm = (logits: tf.Tensor4D, mask: tf.Tensor) =>
      tf.mean(tf.mul(tf.sub(1, logits), tf.expandDims(mask, -1))) as tf.Scalar;
    const cosA = cosTerm(logitsA, inputs.mA);
    const cosB = cosTerm(logitsB, inputs.mB);
    return { protoA: tf.add(ceA, cosA) as tf.Scalar, protoB: tf.add(ceB, cosB) as tf.Scalar, ceA, ceB, cosA, cosB };
  });
}
