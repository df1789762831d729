/**
 * The full ALHVR objective for two students on one batch (method spec, "One training
 * iteration"): L_i = sup_i + w(t)·(focus_i + proto_i), loss = L_A + L_B.
 *
 * Quirk switches (defaults = released behaviour):
 *   diceLoss      'released' | 'standard'  → supervised Dice (supervised.ts)
 *   detachTeacher false | true             → DTCT teacher gradient (dtct.ts)
 *   protoCe       'released' | 'masked'    → CG-CPCL cross-entropy reduction (cgcpcl.ts)
 *   protoCos      'released' | 'target'    → CG-CPCL cosine term (cgcpcl.ts)
 *   detachPrototypes false | true          → prototype gradient (cgcpcl.ts)
 *   entropyMean   'released' | 'masked'    → DTCT entropy average (dtct.ts)
 *
 * Rank-generic: 2D tensors [B, H, W, C] and 3D [B, D, H, W, C] run the same code (3D page §3).
 *
 * Region ablation (the paper's Table 1): `regions` lists which of Ω1/Ω2/Ω3 receive the
 * unsupervised terms; default all, as published. Without 3 there is no DTCT term (focus = 0),
 * without 2 no CG-CPCL term (proto = 0); Ω1 has no term in the published method.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { noGrad } from '../model/no-grad.js';
import { ceLoss, classCount, diceLoss, oneHotLabels, type DiceVariant } from './supervised.js';
import { regionMasks } from './regions.js';
import { dtctLoss, type EntropyMean } from './dtct.js';
import { cgCpclLoss, type ProtoCeReduction, type ProtoCosReduction } from './cgcpcl.js';
import { rampWeightOver } from './ramp.js';

/** What alhvrLoss needs from one student's training forward (UNetOutput or VNet3dOutput in training mode). */
export interface StudentOutputs {
  logits: tf.Tensor;
  logitsAux: tf.Tensor;
  fea: tf.Tensor;
  feaAux: tf.Tensor;
}

export interface AlhvrLossOptions {
  /** Bl: the first Bl images of the batch are labeled, the rest unlabeled. */
  labeledCount: number;
  /** Iterations completed before this one (drives w(t)). */
  iteration: number;
  /** β (released 0.8). */
  proportion?: number;
  /** Sharpening temperature (released 0.1). */
  temperature?: number;
  /** Prototype-logit multiplier (released 1). */
  scaler?: number;
  /** Maximum unsupervised weight (released 0.1). */
  consistency?: number;
  /** Iterations the ramp spans (released 30 000 = 200 steps of 150); shorter CPU runs scale it. */
  rampIterations?: number;
  diceLoss?: DiceVariant;
  detachTeacher?: boolean;
  protoCe?: ProtoCeReduction;
  protoCos?: ProtoCosReduction;
  detachPrototypes?: boolean;
  entropyMean?: EntropyMean;
  /** Regions receiving the unsupervised terms (default [1, 2, 3], as published). */
  regions?: readonly number[];
  /**
   * Per-voxel weights [Bl, …spatial] of the labelled part for the supervised terms (CE and Dice):
   * 1 for true labels, the pseudo-label weighting for pseudo-labelled slices. Absent = all ones.
   */
  labelWeight?: tf.Tensor;
}

/** The run-wide settings of the objective (a TrainConfig carries them under the same names). */
export type AlhvrLossRecipe = Omit<AlhvrLossOptions, 'labeledCount' | 'iteration' | 'labelWeight'>;

export interface AlhvrLossTerms {
  /** L_A + L_B: the scalar to differentiate. */
  loss: tf.Scalar;
  lossA: tf.Scalar;
  lossB: tf.Scalar;
  supA: tf.Scalar;
  supB: tf.Scalar;
  ceA: tf.Scalar;
  ceB: tf.Scalar;
  diceA: tf.Scalar;
  diceB: tf.Scalar;
  focusA: tf.Scalar;
  focusB: tf.Scalar;
  mseA: tf.Scalar;
  mseB: tf.Scalar;
  protoA: tf.Scalar;
  protoB: tf.Scalar;
  protoCeA: tf.Scalar;
  protoCeB: tf.Scalar;
  protoCosA: tf.Scalar;
  protoCosB: tf.Scalar;
  gamma: tf.Scalar;
  /** Fractions of unlabeled pixels in Ω1, Ω2 (= M_A ∪ M_B), Ω3 (sum to 1 barring ties with γ). */
  omega1Fraction: tf.Scalar;
  omega2Fraction: tf.Scalar;
  omega3Fraction: tf.Scalar;
  /** w(t) used for this iteration. */
  weight: number;
}

function checkShapes(a: StudentOutputs, b: StudentOutputs, labels: tf.Tensor, bl: number, labelWeight?: tf.Tensor): void {
  const [n, ...rest] = a.logits.shape;
  const spatial = rest.slice(0, -1);
  const same = (x: tf.Tensor, shape: number[], what: string) => {
    if (!tf.util.arraysEqual(x.shape, shape)) throw new InputError(`alhvrLoss: ${what} has shape [${x.shape}], expected [${shape}]`);
  };
  for (const [s, name] of [[a, 'A'], [b, 'B']] as const) {
    same(s.logits, a.logits.shape, `logits of ${name}`);
    same(s.logitsAux, a.logits.shape, `logitsAux of ${name}`);
    same(s.feaAux, s.fea.shape, `feaAux of ${name}`);
    if (s.fea.shape[0] !== n) throw new InputError(`alhvrLoss: fea of ${name} has batch ${s.fea.shape[0]}, expected ${n}`);
  }
  if (!Number.isInteger(bl) || bl < 1 || bl >= n) {
    throw new InputError(`alhvrLoss: labeledCount must be in [1, ${n - 1}] for a batch of ${n}, got ${bl}`);
  }
  same(labels, [bl, ...spatial], 'labels');
  if (labelWeight) same(labelWeight, [bl, ...spatial], 'labelWeight');
}

/** The first n items of the batch axis, and the rest (any rank). */
const head = (x: tf.Tensor, n: number) => tf.slice(x, [0, ...x.shape.slice(1).map(() => 0)], [n, ...x.shape.slice(1).map(() => -1)]);
const tail = (x: tf.Tensor, n: number) => tf.slice(x, [n, ...x.shape.slice(1).map(() => 0)], [-1, ...x.shape.slice(1).map(() => -1)]);

export function alhvrLoss(a: StudentOutputs, b: StudentOutputs, labels: tf.Tensor, options: AlhvrLossOptions): AlhvrLossTerms {
  const bl = options.labeledCount;
  checkShapes(a, b, labels, bl, options.labelWeight);
  const weight = rampWeightOver(options.iteration, options.consistency ?? 0.1, options.rampIterations ?? 30_000);
  const terms = tf.tidy(() => {
    const numClasses = classCount(a.logits);
    const pA = tf.softmax(a.logits, -1);
    const pB = tf.softmax(b.logits, -1);
    const qA = tf.softmax(a.logitsAux, -1);
    const qB = tf.softmax(b.logitsAux, -1);

    const onehot = oneHotLabels(labels, numClasses);
    const dice = { variant: options.diceLoss ?? 'released', weight: options.labelWeight };
    const ceA = ceLoss(head(a.logits, bl), labels, options.labelWeight);
    const ceB = ceLoss(head(b.logits, bl), labels, options.labelWeight);
    const diceA = diceLoss(head(pA, bl), onehot, dice);
    const diceB = diceLoss(head(pB, bl), onehot, dice);
    const supA = tf.add(ceA, diceA) as tf.Scalar;
    const supB = tf.add(ceB, diceB) as tf.Scalar;

    const uPA = tail(pA, bl);
    const uPB = tail(pB, bl);
    const uQA = tail(qA, bl);
    const uQB = tail(qB, bl);
    const confidence = (q: tf.Tensor) => noGrad((x) => tf.max(x, -1), q);
    const regions = regionMasks(confidence(uQA), confidence(uQB), options.proportion ?? 0.8);

    const enabled = new Set(options.regions ?? [1, 2, 3]);
    const zero = () => tf.scalar(0);
    const dtct = enabled.has(3)
      ? dtctLoss(
          { pA: uPA, pB: uPB, qA: uQA, qB: uQB, omega3: regions.omega3 },
          { temperature: options.temperature ?? 0.1, detachTeacher: options.detachTeacher ?? false, entropyMean: options.entropyMean },
        )
      : { focusA: zero(), focusB: zero(), mseA: zero(), mseB: zero() };
    const proto = enabled.has(2)
      ? cgCpclLoss(
          {
            pA: uPA,
            pB: uPB,
            feaA: tail(a.fea, bl),
            feaB: tail(b.fea, bl),
            feaAuxA: tail(a.feaAux, bl),
            feaAuxB: tail(b.feaAux, bl),
            mA: regions.mA,
            mB: regions.mB,
          },
          { scaler: options.scaler ?? 1, protoCe: options.protoCe ?? 'released', protoCos: options.protoCos, detachPrototypes: options.detachPrototypes },
        )
      : { protoA: zero(), protoB: zero(), ceA: zero(), ceB: zero(), cosA: zero(), cosB: zero() };

    const lossA = tf.add(supA, tf.mul(tf.add(dtct.focusA, proto.protoA), weight)) as tf.Scalar;
    const lossB = tf.add(supB, tf.mul(tf.add(dtct.focusB, proto.protoB), weight)) as tf.Scalar;
    const terms: Omit<AlhvrLossTerms, 'weight'> = {
      loss: tf.add(lossA, lossB) as tf.Scalar,
      lossA,
      lossB,
      supA,
      supB,
      ceA,
      ceB,
      diceA,
      diceB,
      focusA: dtct.focusA,
      focusB: dtct.focusB,
      mseA: dtct.mseA,
      mseB: dtct.mseB,
      protoA: proto.protoA,
      protoB: proto.protoB,
      protoCeA: proto.ceA,
      protoCeB: proto.ceB,
      protoCosA: proto.cosA,
      protoCosB: proto.cosB,
      gamma: regions.gamma,
      omega1Fraction: tf.mean(regions.omega1) as tf.Scalar,
      omega2Fraction: tf.add(tf.mean(regions.mA), tf.mean(regions.mB)) as tf.Scalar,
      omega3Fraction: tf.mean(regions.omega3) as tf.Scalar,
    };
    return terms as unknown as tf.TensorContainerObject;
  }) as unknown as Omit<AlhvrLossTerms, 'weight'>;
  return { ...terms, weight };
}
