// Shared by the export tests: small ALHVR students with non-trivial weights and a model card.
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { ALHVR_RECIPE_RESIZE, Rng, type ModelCard, type ModelClass } from '@alhvr/core';
import { UNet, selectBackend } from '@alhvr/training';
import { phantomSlices, type ExportCard } from '@alhvr/export';
import { PYTHON } from './support/python.js';

export const SMALL_WIDTHS = [4, 8, 16, 32, 64];

let backendReady: Promise<unknown> | undefined;
/** The tfjs backend every export test uses for building networks and the reference forward. */
export function useBackend(): Promise<unknown> {
  backendReady ??= selectBackend('wasm', { threads: 1, log: () => {} });
  return backendReady;
}

/**
 * A freshly initialised U-Net predicts almost uniform, input-independent probabilities, which
 * would make label and region checks meaningless. These students are made to look trained:
 * BatchNorm running statistics calibrated on phantom slices (training-mode passes without
 * dropout, so activations stay O(1) as in a trained network), random γ/β (so folding is
 * exercised) and a sharpened output layer. On phantom slices all four labels occur, logits stay
 * within about ±6 and max probabilities spread over about 0.35–0.7 (γ = 0.5 splits the regions).
 */
export function makeStudent(seed: number, opts: { widths?: number[]; numClasses?: number; scope?: string; calibrationSize?: number } = {}): UNet {
  const net = new UNet({ numClasses: opts.numClasses ?? 4, widths: opts.widths ?? SMALL_WIDTHS, dropout: [0, 0, 0, 0, 0] }, new Rng(seed), opts.scope);
  const rng = new Rng(seed + 1000);
  const size = opts.calibrationSize ?? 32;
  const card = { input: { size: [size, size] }, normalisation: { kind: 'minmax-volume' }, resize: ALHVR_RECIPE_RESIZE } as ModelCard;
  const calibration = tf.tensor4d(phantomSlices(card, 4, 99), [4, size, size, 1]);
  for (let i = 0; i < 8; i++) tf.dispose(net.forward(calibration, { training: true, rng }) as unknown as tf.Tensor[]);
  calibration.dispose();
  const fill = (v: tf.Variable, lo: number, hi: number) =>
    v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => rng.uniform(lo, hi)), v.shape));
  for (const [name, v] of net.params.variables) {
    if (name.endsWith('.gamma')) fill(v, 0.5, 1.5);
    else if (name.endsWith('.beta')) fill(v, -0.3, 0.3);
    else if (name === 'dec.out.kernel') v.assign(tf.tidy(() => tf.mul(v, 10)));
  }
  return net;
}

export const CLASSES: ModelClass[] = [
  { value: 0, name: 'background', color: [0, 0, 0] },
  { value: 1, name: 'RV', color: [230, 25, 75] },
  { value: 2, name: 'Myo', color: [60, 180, 75] },
  { value: 3, name: 'LV', color: [0, 130, 200] },
];

export function makeCard(size: [number, number], gamma = 0.5): ExportCard {
  return {
    name: 'export-test',
    description: 'Export test model with random weights (not trained).',
    classes: CLASSES,
    input: { size, sliceAxis: 'largest-spacing' },
    normalisation: { kind: 'minmax-volume' },
    regions: { gamma, beta: 0.8, gammaSource: 'training-final' },
    training: {
      method: 'alhvr',
      iterations: 1234,
      datasetFingerprint: 'sha256:0123abcd',
      config: { widths: SMALL_WIDTHS, lr: 0.01 },
      bestValidation: { a: { iteration: 1200, meanDice: 0.5 }, b: { iteration: 1000, meanDice: 0.45 } },
    },
  };
}

/** Run onnx.checker (full check, with shape inference) on a model file; returns stderr on failure. */
export function onnxChecker(file: string): { ok: boolean; stderr: string } {
  const r = spawnSync(PYTHON, ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', file], { encoding: 'utf8' });
  return { ok: r.status === 0, stderr: r.stderr };
}
