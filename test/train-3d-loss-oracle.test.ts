import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's node bundle registers no gradients; the ESM modules do (loaded through vite here).
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { Rng } from '@alhvr/core';
import { alhvrLoss, resizeLinear, resolveConfig, type AlhvrLossOptions, type StudentOutputs } from '@alhvr/training';
import { maxAbs, maxAbsDiff, pack, requireTorch, runOracle, unpack, type PackedTensor } from './support/python.js';

// The 3D objective is the 2D loss code on [N, D, H, W, C]; the reference is an independent
// PyTorch transcription of the released BraTS script (test/oracles/reference_losses_3d.py).
const NAMES = ['logitsA', 'logitsB', 'logitsAuxA', 'logitsAuxB', 'feaA', 'feaB', 'feaAuxA', 'feaAuxB'] as const;
type Inputs = Record<(typeof NAMES)[number], tf.Tensor>;

function uniform(rng: Rng, shape: number[], lo: number, hi: number): tf.Tensor {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = rng.uniform(lo, hi);
  return tf.tensor(v, shape);
}

/** The released batch shape in small: 2 labelled + 2 unlabelled crops of 16³, C = 2, post-ReLU features at 1/8. */
function makeBatch(seed: number) {
  const rng = new Rng(seed);
  const [side, classes, channels, labeled] = [16, 2, 6, 2];
  const inputs = {} as Inputs;
  for (const n of NAMES) {
    inputs[n] = n.startsWith('logits') ? uniform(rng, [4, side, side, side, classes], -2, 2) : uniform(rng, [4, side / 8, side / 8, side / 8, channels], 0, 1);
  }
  const lab = new Int32Array(labeled * side ** 3);
  for (let i = 0; i < lab.length; i++) lab[i] = rng.int(0, classes - 1);
  return { inputs, labels: tf.tensor(lab, [labeled, side, side, side], 'int32'), labeled };
}

const students = (x: Inputs): [StudentOutputs, StudentOutputs] => [
  { logits: x.logitsA, logitsAux: x.logitsAuxA, fea: x.feaA, feaAux: x.feaAuxA },
  { logits: x.logitsB, logitsAux: x.logitsAuxB, fea: x.feaB, feaAux: x.feaAuxB },
];

function values(batch: ReturnType<typeof makeBatch>, options: AlhvrLossOptions): Record<string, number> {
  const [a, b] = students(batch.inputs);
  const terms = alhvrLoss(a, b, batch.labels, options);
  return Object.fromEntries(Object.entries(terms).map(([k, v]) => [k, typeof v === 'number' ? v : (v as tf.Tensor).dataSync()[0]]));
}

function ours(batch: ReturnType<typeof makeBatch>, options: AlhvrLossOptions) {
  const grads = tf.grads((...t: tf.Tensor[]) => {
    const [sa, sb] = students(Object.fromEntries(NAMES.map((n, i) => [n, t[i]])) as Inputs);
    return alhvrLoss(sa, sb, batch.labels, options).loss;
  })(NAMES.map((n) => batch.inputs[n]));
  return { values: values(batch, options), grads: Object.fromEntries(NAMES.map((n, i) => [n, grads[i].dataSync()])) };
}

function reference(batch: ReturnType<typeof makeBatch>, o: AlhvrLossOptions) {
  const tensors: Record<string, PackedTensor> = { labels: pack(batch.labels) };
  for (const n of NAMES) tensors[n] = pack(batch.inputs[n]);
  return runOracle('reference_losses_3d.py', {
    task: 'alhvr3d',
    tensors,
    labeled: o.labeledCount,
    iteration: o.iteration,
    iterationsPerStep: (o.rampIterations ?? 30_000) / 200,
    proportion: o.proportion,
    temperature: o.temperature ?? 0.1,
    scaler: o.scaler ?? 1,
    diceLoss: o.diceLoss ?? 'released',
    detachTeacher: o.detachTeacher ?? false,
    detachPrototypes: o.detachPrototypes ?? false,
    protoCe: o.protoCe ?? 'released',
    protoCos: o.protoCos ?? 'released',
    entropyMean: o.entropyMean ?? 'released',
  });
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  requireTorch();
});

describe('3D ALHVR objective against the PyTorch reference of the released BraTS script', () => {
  // The loss options a vnet3d config resolves to (β 0.7, the 30 000-iteration ramp).
  const recipe = resolveConfig({ data: '/d', out: '/o', network: 'vnet3d' });
  const released: AlhvrLossOptions = { labeledCount: 2, iteration: 14_999, proportion: recipe.proportion, rampIterations: recipe.rampIterations, diceLoss: recipe.diceLoss, detachTeacher: recipe.detachTeacher, protoCe: recipe.protoCe, protoCos: recipe.protoCos, detachPrototypes: recipe.detachPrototypes, entropyMean: recipe.entropyMean };
  const corrected: AlhvrLossOptions = { ...released, iteration: 7_000, rampIterations: 15_000, diceLoss: 'standard', detachTeacher: true, detachPrototypes: true, protoCe: 'masked', protoCos: 'target', entropyMean: 'masked' };
  const cases: [string, AlhvrLossOptions][] = [
    ['released defaults, last iteration', released],
    ['every quirk switch corrected', corrected],
  ];

  test('the 3D config selects β 0.7 and a ramp that ends at 28 % of its cap', () => {
    expect(released.proportion).toBe(0.7);
    const v = values(makeBatch(7), released);
    expect(v.weight).toBeCloseTo(0.1 * Math.exp(-5 * 0.505 ** 2), 12);
    expect(v.weight).toBeCloseTo(0.0279, 4);
  });

  for (const [name, options] of cases) {
    test(`every term and the gradient of every input match within 1e-5 (${name})`, () => {
      const batch = makeBatch(name.length);
      const o = ours(batch, options);
      const ref = reference(batch, options);
      expect(o.values.weight).toBeCloseTo(ref.weight, 12);
      for (const [k, v] of Object.entries(ref.terms as Record<string, number>)) {
        expect(Math.abs(o.values[k] - v), `${k}: ours ${o.values[k]} torch ${v}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(v)));
      }
      // The inputs must exercise every region and every term.
      for (const k of ['omega1Fraction', 'omega2Fraction', 'omega3Fraction', 'mseA', 'mseB', 'protoCeA', 'protoCeB', 'protoCosA']) expect(ref.terms[k], k).toBeGreaterThan(1e-3);
      for (const n of NAMES) {
        const r = unpack(ref.grads[n]);
        const scale = maxAbs(r);
        // Detached prototypes: the clean features feed nothing else, so no gradient reaches them.
        const unreached = options.detachPrototypes && (n === 'feaA' || n === 'feaB');
        if (unreached) expect(maxAbs(o.grads[n]), n).toBe(0);
        else expect(scale, n).toBeGreaterThan(0);
        const diff = maxAbsDiff(o.grads[n], r);
        expect(diff, `${n}: max |Δ| ${diff}, max |g| ${scale}`).toBeLessThan(1e-5);
      }
    });
  }

  test('each corrected switch changes the loss (so the comparison above covers it)', () => {
    const batch = makeBatch(31);
    const base = values(batch, released);
    for (const sw of [{ protoCos: 'target' }, { entropyMean: 'masked' }, { protoCe: 'masked' }] as Partial<AlhvrLossOptions>[]) {
      const v = values(batch, { ...released, ...sw });
      expect(Math.abs(v.loss - base.loss), JSON.stringify(sw)).toBeGreaterThan(1e-6);
    }
    // Detaching the prototypes leaves the value and changes only the clean features' gradient.
    const detached = ours(batch, { ...released, detachPrototypes: true });
    const attached = ours(batch, released);
    expect(detached.values.loss).toBeCloseTo(base.loss, 6);
    expect(maxAbsDiff(detached.grads.feaA, attached.grads.feaA)).toBeGreaterThan(1e-7);
    expect(maxAbsDiff(detached.grads.feaAuxA, attached.grads.feaAuxA)).toBeLessThan(1e-9);
  });

  test('trilinear upsampling equals torch (align_corners false and true), non-cubic', () => {
    const rng = new Rng(5);
    const x = uniform(rng, [2, 2, 3, 4, 3], -1, 1);
    for (const alignCorners of [false, true]) {
      const size = [16, 8, 12];
      const ref = runOracle('reference_losses_3d.py', { task: 'trilinear', x: pack(x), size, alignCorners });
      const y = resizeLinear(x, size, alignCorners);
      expect(y.shape).toEqual([2, 16, 8, 12, 3]);
      expect(maxAbsDiff(y.dataSync(), unpack(ref.y))).toBeLessThan(1e-6);
    }
  });
});
