// Shared by the 3D export and segmentation tests: tiny VNet3d students that look trained, and a
// training run folder holding them as training's checkpoint code writes it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ALHVR_RECIPE_PREPROCESSING, Rng, type ModelCard, type ModelClass, type Preprocessing } from '@alhvr/core';
import { DEFAULT_CONFIG, saveCheckpoint, VNet3d } from '@alhvr/training';
import { phantomPatches } from '@alhvr/export';

export const TINY_VNET_WIDTHS = [2, 4, 4, 8, 8];

/** The abdominal CT phantom's labels (core/src/phantom/abdomen-ct.ts ABDOMEN_CT_LABELS). */
export const CT_CLASSES: ModelClass[] = [
  { value: 0, name: 'background', color: [0, 0, 0] },
  { value: 1, name: 'liver', color: [230, 25, 75] },
  { value: 2, name: 'kidney', color: [60, 180, 75] },
  { value: 3, name: 'spleen', color: [0, 130, 200] },
  { value: 4, name: 'pancreas', color: [255, 225, 25] },
];

export const CT_PREPROCESSING = (targetSpacing: [number, number, number]): Preprocessing =>
  ({ ...ALHVR_RECIPE_PREPROCESSING, normalisation: { kind: 'zscore-volume' }, targetSpacing }) as Preprocessing;

/**
 * A VNet3d whose outputs depend on the input and spread over the classes, as a trained one's
 * would: BatchNorm statistics calibrated on z-scored CT phantom patches, random BatchNorm γ/β
 * (so folding is exercised) and a sharpened head. A fresh network would predict nearly uniform
 * probabilities everywhere and prove little.
 */
export function makeVNet(seed: number, opts: { widths?: number[]; numClasses?: number } = {}): VNet3d {
  const net = new VNet3d({ numClasses: opts.numClasses ?? CT_CLASSES.length, widths: opts.widths ?? TINY_VNET_WIDTHS, dropout: 0 }, new Rng(seed));
  const rng = new Rng(seed + 1000);
  const card = { normalisation: { kind: 'zscore-volume' } } as ModelCard;
  const x = tf.tensor5d(phantomPatches(card, 2, 99, [32, 32, 32]), [2, 32, 32, 32, 1]);
  for (let i = 0; i < 4; i++) tf.dispose(net.forward(x, { training: true, rng, auxiliary: false }) as unknown as tf.Tensor[]);
  x.dispose();
  const fill = (v: tf.Variable, lo: number, hi: number) => v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => rng.uniform(lo, hi)), v.shape));
  for (const [name, v] of net.params.variables) {
    if (name.endsWith('.gamma')) fill(v, 0.5, 1.5);
    else if (name.endsWith('.beta')) fill(v, -0.3, 0.3);
    else if (name === 'dec.out.kernel') v.assign(tf.tidy(() => tf.mul(v, 8)));
  }
  return net;
}

export interface VNetRunOptions {
  patch: number;
  targetSpacing: [number, number, number];
  gamma?: number;
  iteration?: number;
}

/** A vnet3d training run folder: config.json (classes) and latest.ckpt with both students. */
export async function writeVNetRun(runDir: string, a: VNet3d, b: VNet3d, opts: VNetRunOptions): Promise<void> {
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, 'config.json'), JSON.stringify({ dataset: { classes: CT_CLASSES.map(({ value, name }) => ({ value, name })) } }));
  const state = {
    version: 1,
    iteration: opts.iteration ?? 3,
    config: {
      ...DEFAULT_CONFIG,
      data: '/data/abdomen-ct',
      out: '/runs/ct',
      network: 'vnet3d',
      widths: a.config.widths,
      patch: opts.patch,
      proportion: 0.7,
      preprocessing: CT_PREPROCESSING(opts.targetSpacing),
    },
    rng: { netA: [1, 2, 3, 4], netB: [1, 2, 3, 4], data: [1, 2, 3, 4] },
    sampler: {},
    gamma: opts.gamma ?? 0.6,
    best: { a: null, b: null },
    datasetFingerprint: 'sha256:c7c7',
    backend: 'wasm',
  };
  const params = (net: VNet3d) => new Map<string, tf.Tensor>(net.params.variables);
  await saveCheckpoint(join(runDir, 'latest.ckpt'), state, { 'a.params': params(a), 'b.params': params(b) });
}
