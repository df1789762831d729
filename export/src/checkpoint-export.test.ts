import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ALHVR_RECIPE_PREPROCESSING, type Preprocessing } from '@alhvr/core';
import { writePhantomDataset } from '@alhvr/core/node';
import { checkpointPath, loadCheckpoint, resolveConfig, saveCheckpoint, selectBackend, train, type TrainState } from '@alhvr/training';
import { loadRunForExport } from './checkpoint-export.js';
import { exportOnnx } from './export-onnx.js';

// The preprocessing block travels config → checkpoint → model card, and runs saved before the
// block existed resume and export with the recipe.
let work: string;
let data: string;
const quiet = { events: { log: () => {} } };
const run = (out: string, iterations: number, preprocessing?: Parameters<typeof resolveConfig>[0]['preprocessing']) =>
  resolveConfig({
    data,
    out,
    labeledCases: 1,
    valCases: 1,
    iterations,
    batchLabeled: 1,
    batchUnlabeled: 1,
    patch: 32,
    widths: [2, 4, 8, 16, 32],
    valEvery: 2,
    checkpointEvery: 2,
    backend: 'wasm',
    threads: 1,
    seed: 5,
    preprocessing,
  });

const custom: Preprocessing = {
  sliceAxis: 2,
  normalisation: { kind: 'zscore-volume' },
  resize: {
    ...ALHVR_RECIPE_PREPROCESSING.resize,
    image: { interpolation: 'linear', alignment: 'half-pixel' },
    mapBack: { interpolation: 'nearest', alignment: 'half-pixel' },
  },
};

beforeAll(async () => {
  await selectBackend('wasm', { threads: 1, log: () => {} });
  work = await mkdtemp(join(tmpdir(), 'alhvr-preprocessing-'));
  data = join(work, 'data');
  await writePhantomDataset(data, { cases: 4, seed: 11 });
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** Export both students and check the written card's preprocessing fields. */
async function exportedCard(runDir: string) {
  const loaded = await loadRunForExport(runDir);
  try {
    return exportOnnx(loaded.students, loaded.card).card;
  } finally {
    for (const s of loaded.students) s.dispose();
  }
}

describe('preprocessing block', () => {
  test('a non-default block is what the dataset uses, is saved in the checkpoint and is copied into the card', async () => {
    const out = join(work, 'custom');
    const config = run(out, 2, { sliceAxis: 2, normalisation: { kind: 'zscore-volume' }, resize: { image: custom.resize.image, mapBack: custom.resize.mapBack } });
    expect(config.preprocessing).toEqual(custom);
    await train(config, quiet);

    // z-scored voxels have mean 0, so some are negative; min–max would give none.
    const imageFile = (await readdir(join(out, 'cache'))).find((f) => f.endsWith('.image.f32'))!;
    const cached = await readFile(join(out, 'cache', imageFile));
    const voxels = new Float32Array(cached.buffer, cached.byteOffset, cached.byteLength / 4);
    expect(voxels.reduce((m, v) => Math.min(m, v), Infinity)).toBeLessThan(-0.5);

    const { state } = await loadCheckpoint<TrainState>(checkpointPath(out, 'latest'));
    expect(state.config.preprocessing).toEqual(custom);

    const card = await exportedCard(out);
    expect(card.input.sliceAxis).toBe(2);
    expect(card.normalisation).toEqual({ kind: 'zscore-volume' });
    expect(card.resize).toEqual(custom.resize);
    expect(card.input.size).toEqual([32, 32]);
    expect((card.training.config as { preprocessing: unknown }).preprocessing).toEqual(custom);
  }, 60_000);

  test('a checkpoint saved before the block existed exports with the recipe and resumes into it', async () => {
    const out = join(work, 'old');
    await train(run(out, 2), quiet);
    // Rewrite every checkpoint as an older toolkit wrote it: the same state without the block.
    for (const name of ['latest', 'best-a', 'best-b'] as const) {
      const file = checkpointPath(out, name);
      const { state, groups } = await loadCheckpoint<TrainState>(file);
      const { preprocessing: _dropped, ...oldConfig } = state.config;
      const tensors = Object.fromEntries(Object.entries(groups).map(([g, m]) => [g, new Map([...m].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]))]));
      await saveCheckpoint(file, { ...state, config: oldConfig }, tensors);
      for (const m of Object.values(tensors)) tf.dispose([...m.values()]);
    }
    expect((await loadCheckpoint<TrainState>(checkpointPath(out, 'latest'))).state.config.preprocessing).toBeUndefined();

    const card = await exportedCard(out);
    expect(card.input.sliceAxis).toBe('largest-spacing');
    expect(card.normalisation).toEqual({ kind: 'minmax-volume' });
    expect(card.resize).toEqual(ALHVR_RECIPE_PREPROCESSING.resize);
    expect((card.training.config as { preprocessing: unknown }).preprocessing).toEqual(ALHVR_RECIPE_PREPROCESSING);

    // A moved copy resumes (config given without the block, as an old config.json reads).
    const moved = join(work, 'old-moved');
    await mkdir(moved);
    for (const f of ['latest.ckpt', 'best-a.ckpt', 'best-b.ckpt', 'config.json', 'metrics.jsonl']) await copyFile(join(out, f), join(moved, f));
    const result = await train({ ...run(moved, 3) }, { ...quiet, resume: true });
    expect(result.iteration).toBe(3);
    const { state } = await loadCheckpoint<TrainState>(checkpointPath(moved, 'latest'));
    expect(state.iteration).toBe(3);
    expect(state.config.preprocessing).toEqual(ALHVR_RECIPE_PREPROCESSING);
  }, 60_000);
});
