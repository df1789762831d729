import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { regionMasks, regionFractions, lowestProportionMean } from './regions.js';
import { ceLoss, diceLoss, oneHotLabels } from './supervised.js';
import { sharpen, competitionTeacher, meanEntropy } from './dtct.js';
import { classPrototypes, prototypeLogits } from './cgcpcl.js';
import { rampWeight } from './ramp.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const values = (t: tf.Tensor) => Array.from(t.dataSync());

describe('γ and regions, hand-worked on a 2×2 image', () => {
  // mean confidences (cA+cB)/2 = [0.8, 0.5, 0.7, 0.7]; N = 4, β = 0.8 → k = 3 lowest:
  // 0.5, 0.7, 0.7 → γ = 1.9/3 ≈ 0.6333.
  const cA = tf.tensor3d([0.9, 0.6, 0.5, 0.8], [1, 2, 2]);
  const cB = tf.tensor3d([0.7, 0.4, 0.9, 0.6], [1, 2, 2]);

  test('γ is the mean of the lowest ⌊β·N⌋ mean confidences', () => {
    const r = regionMasks(cA, cB, 0.8);
    expect(r.gamma.dataSync()[0]).toBeCloseTo(1.9 / 3, 6);
    // β = 0.5 → k = 2: 0.5, 0.7
    expect(regionMasks(cA, cB, 0.5).gamma.dataSync()[0]).toBeCloseTo(0.6, 6);
  });

  test('pixel 0 both confident → Ω1; 1 both unsure → Ω3; 2 only B confident → M_A; 3 only A → M_B', () => {
    const r = regionMasks(cA, cB, 0.8);
    expect(values(r.omega1)).toEqual([1, 0, 0, 0]);
    expect(values(r.omega3)).toEqual([0, 1, 0, 0]);
    expect(values(r.mA)).toEqual([0, 0, 1, 0]);
    expect(values(r.mB)).toEqual([0, 0, 0, 1]);
    const f = regionFractions(r);
    expect(f).toEqual({ omega1: 0.25, omega2: 0.5, omega3: 0.25, unassigned: 0 });
  });

  test('a confidence tied with γ falls in no region (released inequalities) and is reported as unassigned', () => {
    const c = tf.fill([1, 2, 2], 0.5);
    const r = regionMasks(c, c, 0.8);
    expect(r.gamma.dataSync()[0]).toBe(0.5);
    expect(regionFractions(r)).toEqual({ omega1: 0, omega2: 0, omega3: 0, unassigned: 1 });
  });

  test('β selecting no pixel is an input error', () => {
    expect(() => lowestProportionMean(tf.ones([1, 2, 2]), 0.2)).toThrow(/selects no pixel/);
    expect(() => regionMasks(cA, tf.ones([1, 2, 3]), 0.8)).toThrow(/shapes differ/);
  });
});

describe('supervised terms, hand-worked', () => {
  const labels = tf.tensor3d([0, 1, 1, 2], [1, 2, 2], 'int32');
  const onehot = oneHotLabels(labels, 4);

  test('CE of uniform logits is log C', () => {
    expect(ceLoss(tf.zeros([1, 2, 2, 4]) as tf.Tensor4D, labels).dataSync()[0]).toBeCloseTo(Math.log(4), 6);
  });

  test('Dice of a perfect prediction: released 0.5 per present class and 1 for an absent one; standard 0', () => {
    // present classes: 1 − n/(n+n) = 0.5; absent class 3: 1 − 0/(0+0+1e-10) = 1 → mean (0.5·3+1)/4
    expect(diceLoss(onehot, onehot).dataSync()[0]).toBeCloseTo(2.5 / 4, 6);
    expect(diceLoss(onehot, onehot, { variant: 'standard' }).dataSync()[0]).toBeCloseTo(0, 6);
  });

  test('Dice of a uniform prediction (p = 1/4 everywhere)', () => {
    const p = tf.fill([1, 2, 2, 4], 0.25) as tf.Tensor4D;
    // class k with n_k labeled pixels: Σpg = n_k/4, Σp² = 4/16 = 0.25, Σg² = n_k
    const released = [1, 2, 1, 0].map((n) => 1 - n / 4 / (0.25 + n + 1e-10));
    const standard = [1, 2, 1, 0].map((n) => 1 - (n / 2 + 1e-5) / (0.25 + n + 1e-5));
    const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    expect(diceLoss(p, onehot).dataSync()[0]).toBeCloseTo(mean(released), 6);
    expect(diceLoss(p, onehot, { variant: 'standard' }).dataSync()[0]).toBeCloseTo(mean(standard), 6);
  });
});

describe('DTCT pieces', () => {
  test('sharpen is element-wise and not renormalised', () => {
    const s = values(sharpen(tf.tensor1d([0.7, 0.2, 0.5]), 0.5));
    expect(s[0]).toBeCloseTo(0.49 / (0.49 + 0.09), 6);
    expect(s[1]).toBeCloseTo(0.04 / (0.04 + 0.64), 6);
    expect(s[2]).toBeCloseTo(0.5, 6);
    const t = values(sharpen(tf.tensor1d([0.6, 0.4]), 0.1));
    expect(t[0]).toBeCloseTo(0.6 ** 10 / (0.6 ** 10 + 0.4 ** 10), 6);
  });

  test('teacher is the clean softmax of the more confident student, per pixel', () => {
    const pA = tf.tensor4d([0.6, 0.4, 0.2, 0.8], [1, 1, 2, 2]);
    const pB = tf.tensor4d([0.9, 0.1, 0.3, 0.7], [1, 1, 2, 2]);
    expect(values(competitionTeacher(pA, pB))).toEqual(values(tf.tensor1d([0.9, 0.1, 0.2, 0.8])));
  });

  test('entropy is averaged over all pixels, masked-out pixels counting as zero', () => {
    const x = tf.tensor4d([0.5, 0.5, 0, 0], [1, 1, 2, 2]);
    const h = -2 * 0.5 * Math.log(0.5 + 1e-6);
    expect(meanEntropy(x).dataSync()[0]).toBeCloseTo(h / 2, 6);
  });
});

describe('CG-CPCL pieces', () => {
  test('prototypes: per-image class means (+1e-5), summed over images and divided by the batch size', () => {
    // image 0: class 0 at two pixels with features 1 and 3, class 1 at none;
    // image 1: class 1 at both pixels with features 2 and 4.
    const fea = tf.tensor4d([1, 3, 2, 4], [2, 1, 2, 1]);
    const cls = tf.tensor3d([0, 0, 1, 1], [2, 1, 2], 'int32');
    const p = values(classPrototypes(fea, cls, 3));
    expect(p[0]).toBeCloseTo(4 / (2 + 1e-5) / 2, 6);
    expect(p[1]).toBeCloseTo(6 / (2 + 1e-5) / 2, 6);
    expect(p[2]).toBe(0);
  });

  test('prototype logits are cosine similarities × scaler; a zero prototype gives 0', () => {
    const fea = tf.tensor4d([3, 4], [1, 1, 1, 2]);
    const protos = tf.tensor2d([1, 0, 0, 2, 0, 0], [3, 2]);
    const l = values(prototypeLogits(fea, protos, 2));
    expect(l[0]).toBeCloseTo(2 * 0.6, 6);
    expect(l[1]).toBeCloseTo(2 * 0.8, 6);
    expect(l[2]).toBe(0);
  });
});

describe('rampWeight', () => {
  test('0.1·exp(−5(1−min(⌊t/150⌋,200)/200)²)', () => {
    expect(rampWeight(0)).toBeCloseTo(0.1 * Math.exp(-5), 12);
    expect(rampWeight(149)).toBe(rampWeight(0));
    expect(rampWeight(150)).toBeCloseTo(0.1 * Math.exp(-5 * (199 / 200) ** 2), 12);
    expect(rampWeight(15000)).toBeCloseTo(0.1 * Math.exp(-5 * 0.25), 12);
    expect(rampWeight(30000)).toBeCloseTo(0.1, 12);
    expect(rampWeight(100000)).toBeCloseTo(0.1, 12);
  });
});
