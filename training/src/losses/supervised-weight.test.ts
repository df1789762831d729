// Per-pixel weights on the supervised terms (pseudo-labels): hand-computed values, and that a
// slice of weight 0 (all Ω3 under region weighting) contributes neither loss nor gradient.
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { ceLoss, diceLoss, oneHotLabels } from './supervised.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const scalar = (t: tf.Scalar) => t.dataSync()[0];

describe('weighted CE and Dice, hand-worked on one 1×2 image with 2 classes', () => {
  // pixel 0: logits [0, 0] → p = [0.5, 0.5], label 0, weight 1
  // pixel 1: logits [ln 3, 0] → p = [0.75, 0.25], label 1, weight 0.5
  const logits = tf.tensor4d([0, 0, Math.log(3), 0], [1, 1, 2, 2]);
  const labels = tf.tensor3d([0, 1], [1, 1, 2], 'int32');
  const weight = tf.tensor3d([1, 0.5], [1, 1, 2]);
  const p = tf.softmax(logits, -1) as tf.Tensor4D;
  const g = oneHotLabels(labels, 2);

  test('CE = Σ w·ce / Σ w', () => {
    // (1·ln 2 + 0.5·ln 4) / 1.5 = 2 ln 2 / 1.5
    expect(scalar(ceLoss(logits, labels, weight))).toBeCloseTo((2 * Math.LN2) / 1.5, 6);
    // Wrong normalisations give other numbers: Σ w·ce / N = 0.693, unweighted mean = 1.040.
    expect(scalar(ceLoss(logits, labels))).toBeCloseTo((Math.LN2 + 2 * Math.LN2) / 2, 6);
  });

  test('released Dice: per class 1 − Σwpg / (Σwp² + Σwg²), averaged over classes', () => {
    // class 0: Σwpg = 0.5, Σwp² = 0.25 + 0.5·0.5625 = 0.53125, Σwg² = 1      → 0.5 / 1.53125
    // class 1: Σwpg = 0.5·0.25 = 0.125, Σwp² = 0.25 + 0.5·0.0625 = 0.28125, Σwg² = 0.5 → 0.125 / 0.78125
    const expected = (1 - 0.5 / 1.53125 + (1 - 0.125 / 0.78125)) / 2;
    expect(scalar(diceLoss(p, g, { weight }))).toBeCloseTo(expected, 6);
  });

  test('standard Dice: per class 1 − (2Σwpg + 1e-5) / (Σwp² + Σwg² + 1e-5)', () => {
    const expected = (1 - (1 + 1e-5) / (1.53125 + 1e-5) + (1 - (0.25 + 1e-5) / (0.78125 + 1e-5))) / 2;
    expect(scalar(diceLoss(p, g, { weight, variant: 'standard' }))).toBeCloseTo(expected, 6);
  });

  test('all-ones weights give the unweighted losses exactly', () => {
    const ones = tf.onesLike(weight) as tf.Tensor3D;
    expect(scalar(ceLoss(logits, labels, ones))).toBeCloseTo(scalar(ceLoss(logits, labels)), 7);
    expect(scalar(diceLoss(p, g, { weight: ones }))).toBeCloseTo(scalar(diceLoss(p, g)), 7);
  });
});

describe('a slice of weight 0 contributes nothing', () => {
  // Two 2×2 images with 3 classes; image 1 is pseudo-labelled with every pixel in Ω3 (weight 0).
  const data = [0.3, -1, 2, 1.5, 0.2, -0.4, -2, 0.7, 0.1, 0.9, 0.9, -0.3, 1.1, -0.6, 0.4, -0.2, 0.5, 2.2, 0.8, 0.1, -1.3, 0, 1.7, 0.6];
  const logits = tf.tensor4d(data, [2, 2, 2, 3]);
  const labels = tf.tensor3d([0, 1, 2, 1, 2, 2, 0, 1], [2, 2, 2], 'int32');
  const weight = tf.tensor3d([1, 1, 1, 1, 0, 0, 0, 0], [2, 2, 2]);
  const first = (t: tf.Tensor4D | tf.Tensor3D) => tf.slice(t, 0, 1);
  const supervised = (l: tf.Tensor4D, y: tf.Tensor3D, w?: tf.Tensor3D) =>
    tf.add(ceLoss(l, y, w), diceLoss(tf.softmax(l, -1) as tf.Tensor4D, oneHotLabels(y, 3), { weight: w })) as tf.Scalar;

  test('the loss equals the loss of the other slice alone', () => {
    const withZero = scalar(supervised(logits, labels, weight));
    const alone = scalar(supervised(first(logits) as tf.Tensor4D, first(labels) as tf.Tensor3D));
    expect(withZero).toBeCloseTo(alone, 6);
    // Unweighted, the second slice does change the loss (the check above can fail).
    expect(Math.abs(scalar(supervised(logits, labels)) - alone)).toBeGreaterThan(1e-3);
  });

  test('its logits receive zero gradient, the other slice non-zero', () => {
    const grad = tf.grad((l: tf.Tensor) => supervised(l as tf.Tensor4D, labels, weight))(logits);
    const values = Array.from(grad.dataSync());
    const perImage = values.length / 2;
    expect(values.slice(perImage).every((v) => v === 0)).toBe(true);
    expect(values.slice(0, perImage).some((v) => Math.abs(v) > 1e-4)).toBe(true);
  });

  test('an all-zero batch has loss 0 in CE (not NaN)', () => {
    expect(scalar(ceLoss(logits, labels, tf.zerosLike(weight) as tf.Tensor3D))).toBe(0);
  });
});
