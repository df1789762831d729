/**
 * CG-CPCL: confidence-guided cross-prototype consistency on Ω2. Tensors are the unlabeled
 * part, channels last at any spatial rank: probabilities [Bu, …spatial, K], prototype features
 * [Bu, …spatial/8, D] (2D: bilinear, 3D: trilinear upsampling, align_corners false).
 */
import * as tf from '@tensorflow/tfjs-core';
import { noGrad } from '../model/no-grad.js';
import { resizeLinear } from '../model/resize.js';
import { stopGradient } from '../model/no-grad.js';
import { transposedProduct } from '../backend/transposed-product.js';

/** torch.nn.functional.cosine_similarity's eps. */
const COS_EPS = 1e-8;

/**
 * Class prototypes [K, D]: per image the mean feature over pixels of each class (denominator
 * + 1e-5), summed over images and divided by the batch size. Not detached.
 */
export function classPrototypes(features: tf.Tensor, classIndex: tf.Tensor, numClasses: number): tf.Tensor2D {
  return tf.tidy(() => {
    const b = features.shape[0];
    const d = features.shape[features.rank - 1];
    const voxels = features.size / (b * d);
    const onehot = noGrad((c) => tf.cast(tf.oneHot(tf.reshape(tf.cast(c, 'int32'), [b, voxels]), numClasses), 'float32'), classIndex);
    const sums = transposedProduct(onehot as tf.Tensor3D, tf.reshape(features, [b, voxels, d])); // [b, K, D] = onehotᵀ · features
    const counts = tf.add(tf.sum(onehot, 1), 1e-5); // [b, K]
    const means = tf.div(sums, tf.expandDims(counts, -1));
    return tf.div(tf.sum(means, 0), b) as tf.Tensor2D;
  });
}

/** Rows scaled to unit L2 norm; the squared norm is clamped at eps² (finite gradient at 0). */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(x, tf.rsqrt(tf.maximum(tf.sum(tf.square(x), -1, true), COS_EPS * COS_EPS)));
}

/** Cosine similarity of each voxel's feature with each prototype, × scaler: [B, …spatial, K]. */
export function prototypeLogits<T extends tf.Tensor>(features: T, prototypes: tf.Tensor2D, scaler = 1): T {
  return tf.tidy(() => {
    const d = features.shape[features.rank - 1];
    const f = unitRows(tf.reshape(features, [features.size / d, d]));
    const cos = tf.matMul(f, unitRows(prototypes), false, true);
    return tf.reshape(tf.mul(cos, scaler), [...features.shape.slice(0, -1), prototypes.shape[0]]) as T;
  });
}

export type ProtoCeReduction = 'released' | 'masked';

/**
 * The cosine term: 'released' (1 − cos) toward every prototype, averaged over all
 * [Bu, …spatial, K] elements (masked voxels only contribute); 'target' only toward the target
 * class's prototype, averaged over the mask.
 */
export type ProtoCosReduction = 'released' | 'target';

export interface CgCpclInputs {
  pA: tf.Tensor;
  pB: tf.Tensor;
  /** Clean and perturbed prototype features of each student, at 1/8 resolution. */
  feaA: tf.Tensor;
  feaB: tf.Tensor;
  feaAuxA: tf.Tensor;
  feaAuxB: tf.Tensor;
  /** 0/1 masks [Bu, …spatial]: M_A (B teaches A) and M_B (A teaches B). */
  mA: tf.Tensor;
  mB: tf.Tensor;
}

export interface CgCpclOptions {
  scaler?: number;
  /**
   * How the prototype cross-entropy is reduced over M_A:
   * 'released' (default): exactly the released expression
   *   sum(mask.unsqueeze(1) * ce) / (sum(mask) + 1e-16), where mask [Bu,1,…] broadcasts
   *   against ce [Bu,…] to [Bu,Bu,…], i.e. Σ_v (Σ_i M_i(v)) (Σ_j ce_j(v)) / |M| (2D and 3D alike).
   *   Identical to the masked mean when Bu = 1.
   * 'masked': the stated intent, Σ M·ce / (|M| + 1e-16).
   */
  protoCe?: ProtoCeReduction;
  protoCos?: ProtoCosReduction;
  /** false (released): prototypes carry gradients into the other student's clean features; true: constants. */
  detachPrototypes?: boolean;
}

export interface CgCpclTerms {
  protoA: tf.Scalar;
  protoB: tf.Scalar;
  ceA: tf.Scalar;
  ceB: tf.Scalar;
  cosA: tf.Scalar;
  cosB: tf.Scalar;
}

function maskedCe(ce: tf.Tensor, mask: tf.Tensor, reduction: ProtoCeReduction): tf.Scalar {
  const denom = tf.add(tf.sum(mask), 1e-16);
  if (reduction === 'masked') return tf.div(tf.sum(tf.mul(mask, ce)), denom) as tf.Scalar;
  return tf.div(tf.sum(tf.mul(tf.sum(mask, 0), tf.sum(ce, 0))), denom) as tf.Scalar;
}

/** proto_A = ce_A + cos_A against B's prototypes; symmetric for B. */
export function cgCpclLoss(inputs: CgCpclInputs, options: CgCpclOptions = {}): CgCpclTerms {
  const scaler = options.scaler ?? 1;
  const reduction = options.protoCe ?? 'released';
  const cosReduction = options.protoCos ?? 'released';
  return tf.tidy(() => {
    const { pA, pB } = inputs;
    const spatial = pA.shape.slice(1, -1);
    const k = pA.shape[pA.rank - 1];
    const up = (f: tf.Tensor) => resizeLinear(f, spatial, false);
    const argA = noGrad((p) => tf.argMax(p, -1), pA);
    const argB = noGrad((p) => tf.argMax(p, -1), pB);
    const prototypes = (f: tf.Tensor, classes: tf.Tensor) => {
      const proto = classPrototypes(up(f), classes, k);
      return options.detachPrototypes ? stopGradient(proto) : proto;
    };
    const protoOfA = prototypes(inputs.feaA, argA);
    const protoOfB = prototypes(inputs.feaB, argB);
    const logitsA = prototypeLogits(up(inputs.feaAuxA), protoOfB, scaler);
    const logitsB = prototypeLogits(up(inputs.feaAuxB), protoOfA, scaler);
    const oneHot = (t: tf.Tensor) => noGrad((x) => tf.cast(tf.oneHot(tf.cast(x, 'int32'), k), 'float32'), t);
    const voxelCe = (logits: tf.Tensor, target: tf.Tensor) => tf.neg(tf.sum(tf.mul(oneHot(target), tf.logSoftmax(logits, -1)), -1));
    const ceA = maskedCe(voxelCe(logitsA, argB), inputs.mA, reduction);
    const ceB = maskedCe(voxelCe(logitsB, argA), inputs.mB, reduction);
    const cosTerm = (logits: tf.Tensor, mask: tf.Tensor, target: tf.Tensor) => {
      if (cosReduction === 'released') return tf.mean(tf.mul(tf.sub(1, logits), tf.expandDims(mask, -1))) as tf.Scalar;
      const targetCos = tf.sum(tf.mul(logits, oneHot(target)), -1);
      return tf.div(tf.sum(tf.mul(tf.sub(1, targetCos), mask)), tf.add(tf.sum(mask), 1e-16)) as tf.Scalar;
    };
    const cosA = cosTerm(logitsA, inputs.mA, argB);
    const cosB = cosTerm(logitsB, inputs.mB, argA);
    return { protoA: tf.add(ceA, cosA) as tf.Scalar, protoB: tf.add(ceB, cosB) as tf.Scalar, ceA, ceB, cosA, cosB };
  });
}
