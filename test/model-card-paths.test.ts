// A model card ships inside a public ONNX file: it must not carry folders of the training machine.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DEFAULT_CONFIG, saveCheckpoint, type UNet } from '@alhvr/training';
import { loadRunForExport } from '@alhvr/export';
import { CLASSES, makeStudent, SMALL_WIDTHS, useBackend } from './export-fixtures.js';

let dir: string;
let a: UNet;

beforeAll(async () => {
  await useBackend();
  a = makeStudent(7);
  dir = mkdtempSync(join(tmpdir(), 'alhvr-card-paths-'));
  const runDir = join(dir, 'run1');
  mkdirSync(runDir);
  writeFileSync(join(runDir, 'config.json'), JSON.stringify({ dataset: { classes: CLASSES.map(({ value, name }) => ({ value, name })) } }));
  const state = {
    version: 1,
    iteration: 10,
    config: {
      ...DEFAULT_CONFIG,
      method: 'supervised',
      data: '/home/dr-smith/hospital-x/cohort-2024',
      out: '/srv/private/runs/cohort-2024-run',
      unlabeledDir: '/home/dr-smith/unlabelled',
      widths: SMALL_WIDTHS,
      dropout: [0, 0, 0, 0, 0],
      patch: 32,
    },
    rng: { netA: [1, 2, 3, 4], data: [1, 2, 3, 4] },
    sampler: {},
    gamma: 0.5,
    best: {},
    datasetFingerprint: 'sha256:feedbeef',
    backend: 'wasm',
  };
  await saveCheckpoint(join(runDir, 'latest.ckpt'), state, { 'a.params': new Map<string, tf.Tensor>(a.params.variables) });
});
afterAll(() => {
  a?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('the exported card keeps folder names of data/out/unlabeledDir, never absolute paths', async () => {
  const run = await loadRunForExport(join(dir, 'run1'), { students: 'a' });
  try {
    const text = JSON.stringify(run.card);
    expect(text).not.toMatch(/dr-smith|\/srv\/|\/home\//);
    expect(run.card.training.config).toMatchObject({ data: 'cohort-2024', out: 'cohort-2024-run', unlabeledDir: 'unlabelled' });
  } finally {
    for (const s of run.students) s.dispose();
  }
});
