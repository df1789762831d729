/**
 * The objective of one training step on the students' training forwards: ALHVR's L_A + L_B
 * (losses/alhvr.ts) for two students, CE + Dice of student a for the supervised baseline.
 */
import * as tf from '@tensorflow/tfjs-core';
import { alhvrLoss, type AlhvrLossRecipe, type StudentOutputs } from './losses/alhvr.js';
import { ceLoss, classCount, diceLoss, oneHotLabels, type DiceVariant } from './losses/supervised.js';
import type { StudentOutput } from './students.js';
import type { Batch } from './data/batches.js';
import type { StepObjective } from './students.js';

export interface StepLoss extends StepObjective {
  /** w(t) the unsupervised terms were weighted with (0 for the supervised baseline). */
  weight: number;
}

function withAuxiliary(out: StudentOutput, student: string): StudentOutputs {
  if (!out.logitsAux || !out.feaAux) throw new Error(`student ${student}'s training forward has no auxiliary branch`);
  return { logits: out.logits, logitsAux: out.logitsAux, fea: out.fea, feaAux: out.feaAux };
}

/**
 * `outputs` are the students' training forwards on `batch`, a first; `iteration` counts the
 * iterations completed before this one. The recipe is the run's config (same field names).
 */
export function stepLoss(outputs: StudentOutput[], batch: Batch, iteration: number, recipe: AlhvrLossRecipe & { diceLoss: DiceVariant }): StepLoss {
  const [a, b] = outputs;
  if (!b) {
    const ce = ceLoss(a.logits, batch.labels, batch.labelWeight);
    const dice = diceLoss(tf.softmax(a.logits, -1), oneHotLabels(batch.labels, classCount(a.logits)), { variant: recipe.diceLoss, weight: batch.labelWeight });
    return { loss: tf.add(ce, dice) as tf.Scalar, terms: { ceA: ce, diceA: dice }, weight: 0 };
  }
  const { loss, weight, ...terms } = alhvrLoss(withAuxiliary(a, 'a'), withAuxiliary(b, 'b'), batch.labels, {
    ...recipe,
    labeledCount: batch.labeledCount,
    iteration,
    labelWeight: batch.labelWeight,
  });
  return { loss, terms, weight };
}
