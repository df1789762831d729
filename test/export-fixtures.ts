// Shared by the export tests: small ALHVR students with non-trivial weights and a model card.
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, type ModelClass } from '@alhvr/core';
import { UNet, selectBackend } from '@alhvr/training';
import type { ExportCard } from '@alhvr/export';

export const SMALL_WIDTHS = [4, 8, 16, 32, 64];
export const PYTHON = '/usr/bin/python3'; // Debian's python3 has python3-onnx; a pyenv shim may not.

let backendReady: Promise<unknown> | undefined;
/** The tfjs backend every export test uses for building networks and the reference forward. */
export function useBackend(): Promise<unknown> {
  backendReady ??= selectBackend('wasm', { threads: 1, log: () => {} });
  return backendReady;
}

/**
 * A freshly initialised U-Net predicts almost uniform probabilities, which would make label and
 * region checks meaningless. These students get random BatchNorm statistics and affine terms
 * (so folding is exercised) and a sharpened output layer (so predictions are confident and
 * varied, as a trained network's are).
 */
export function makeStudent(seed: number, opts: { widths?: number[]; numClasses?: number; scope?: string } = {}): UNet {
  const net = new UNet({ numClasses: opts.numClasses ?? 4, widths: opts.widths ?? SMALL_WIDTHS }, new Rng(seed), opts.scope);
  const rng = new Rng(seed + 1000);
  const fill = (v: tf.Variable, lo: number, hi: number) =>
    v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => rng.uniform(lo, hi)), v.shape));
  for (const [name, v] of net.params.variables) {
    if (name.endsWith('.runningVar')) fill(v, 0.2, 2);
    else if (name.endsWith('.gamma')) fill(v, 0.5, 1.8);
    else if (name.endsWith('.runningMean') || name.endsWith('.beta')) fill(v, -0.3, 0.3);
    else if (name === 'dec.out.kernel') v.assign(tf.tidy(() => tf.mul(v, 12)));
  }
  return net;
}

export const CLASSES: ModelClass[] = [
  { value: 0, name: 'background', color: [0, 0, 0] },
  { value: 1, name: 'RV', color: [230, 25, 75] },
  { value: 2, name: 'Myo', color: [60, 180, 75] },
  { value: 3, name: 'LV', color: [0, 130, 200] },
];

export function makeCard(size: [number, number], gamma = 0.8): ExportCard {
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
