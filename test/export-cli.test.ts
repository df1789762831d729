import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DEFAULT_CONFIG, saveCheckpoint, type UNet } from '@alhvr/training';
import { readOnnxModelCard } from '@alhvr/export';
import { writePhantomDataset } from '@alhvr/core/node';
import { runCli, stderrLines } from './cli-harness.js';
import { CLASSES, makeStudent, onnxChecker, SMALL_WIDTHS, useBackend } from './export-fixtures.js';

let a: UNet;
let b: UNet;
let dir: string;
let runDir: string;

const state = (gamma: number, iteration: number) => ({
  version: 1,
  iteration,
  config: { ...DEFAULT_CONFIG, data: '/data/phantom', out: '/runs/x', widths: SMALL_WIDTHS, dropout: [0, 0, 0, 0, 0], patch: 64 },
  rng: { netA: [1, 2, 3, 4], netB: [1, 2, 3, 4], data: [1, 2, 3, 4] },
  sampler: {},
  gamma,
  best: { a: { iteration: 40, meanDice: 0.61, result: {} }, b: { iteration: 60, meanDice: 0.58, result: {} } },
  datasetFingerprint: 'sha256:feedbeef',
  backend: 'wasm',
});
const params = (net: UNet) => new Map<string, tf.Tensor>(net.params.variables);

beforeAll(async () => {
  await useBackend();
  a = makeStudent(41);
  b = makeStudent(42);
  dir = mkdtempSync(join(tmpdir(), 'alhvr-export-cli-'));
  runDir = join(dir, 'run1');
  mkdirSync(runDir);
  writeFileSync(join(runDir, 'config.json'), JSON.stringify({ dataset: { classes: CLASSES.map(({ value, name }) => ({ value, name })) } }));
  // latest holds other (here: zeroed-out b) weights so the test can see best-* are preferred.
  await saveCheckpoint(join(runDir, 'best-a.ckpt'), state(0.5, 40), { 'a.params': params(a), 'b.params': params(b) });
  await saveCheckpoint(join(runDir, 'best-b.ckpt'), state(0.5, 60), { 'a.params': params(a), 'b.params': params(b) });
  const zeros = new Map([...params(b)].map(([n, t]) => [n, n.endsWith('runningVar') ? tf.onesLike(t) : tf.zerosLike(t)]));
  await saveCheckpoint(join(runDir, 'latest.ckpt'), state(0.55, 80), { 'a.params': params(a), 'b.params': zeros });
});
afterAll(() => {
  a.dispose();
  b.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('alhvr-export', () => {
  test('RUN_DIR → ONNX: best checkpoints, final γ, summary and parity printed, file passes onnx.checker', async () => {
    const out = join(dir, 'model.onnx');
    const r = await runCli('alhvr-export', [runDir, '--out', out, '--parity-slices', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ONNX opset 17, fp32, students both/);
    expect(r.stdout).toMatch(/output region uint8 \[N, H, W\]/);
    expect(r.stdout).toMatch(/labels agree 100\.0000 %/);
    expect(r.stdout).toMatch(/PASS/);
    expect(r.stderr).toMatch(/not calibrated: the run records no validation cases/);
    expect(r.stderr).toMatch(/best-a\.ckpt/);
    expect(r.stderr).toMatch(/best-b\.ckpt/);
    const card = readOnnxModelCard(new Uint8Array(readFileSync(out)));
    expect(card.regions).toEqual({ gamma: 0.55, beta: 0.8, gammaSource: 'training-final' });
    expect(card.training.iterations).toBe(80);
    expect(card.training.datasetFingerprint).toBe('sha256:feedbeef');
    expect(card.training.bestValidation).toEqual({ a: { iteration: 40, meanDice: 0.61 }, b: { iteration: 60, meanDice: 0.58 } });
    expect(card.classes.map((c) => c.name)).toEqual(['background', 'RV', 'Myo', 'LV']);
    expect(card.input.size).toEqual([64, 64]);
    const check = onnxChecker(out);
    expect(check.ok, check.stderr).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  test('CHECKPOINT --students b --fp16 --gamma', async () => {
    const out = join(dir, 'b16.onnx');
    const r = await runCli('alhvr-export', [join(runDir, 'best-b.ckpt'), '--out', out, '--students', 'b', '--fp16', '--gamma', '0.7', '--parity-slices', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/fp16, students b/);
    const card = readOnnxModelCard(new Uint8Array(readFileSync(out)));
    expect(card.students).toBe('b');
    expect(card.regions.gamma).toBe(0.7);
    expect(card.regions.gammaSource).toBe('calibrated');
  });

  test('--calibration (repeatable) calibrates on labelled folders and records them by name', async () => {
    const [first, second] = [join(dir, 'cal-a'), join(dir, 'cal-b')];
    await writePhantomDataset(first, { cases: 2, seed: 501 });
    await writePhantomDataset(second, { cases: 2, seed: 502, shift: 1 });
    const out = join(dir, 'calibrated.onnx');
    const r = await runCli('alhvr-export', [runDir, '--out', out, '--parity-slices', '1', '--calibration', first, '--calibration', second,
      '--modality', 'MR', '--body-part', 'HEART', '--intended-use', 'test model']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/calibration on 4 volumes \(folder cal-a\+cal-b\)/);
    expect(r.stdout).toMatch(/temperature [\d.]+; foreground ECE/);
    expect(r.stdout).toMatch(/PASS/);
    const card = readOnnxModelCard(new Uint8Array(readFileSync(out)));
    expect(card.calibration!.source).toEqual({
      kind: 'folder',
      name: 'cal-a+cal-b',
      cases: 4,
      ids: ['cal-a/phantom_000', 'cal-a/phantom_001', 'cal-b/phantom_000', 'cal-b/phantom_001'],
    });
    expect(card.regions.gammaSource).toBe('calibrated');
    expect(card.intendedUse).toEqual({ modality: 'MR', bodyPart: 'HEART', description: 'test model' });
    expect(JSON.stringify(card)).not.toContain(dir);
  });

  test('errors are one line and write nothing', async () => {
    const out = join(dir, 'never.onnx');
    const missing = await runCli('alhvr-export', [join(dir, 'nope'), '--out', out]);
    expect(missing.code).toBe(1);
    const errors = stderrLines(missing).filter((l) => l.includes('error'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^alhvr-export: error: .*no such run folder or checkpoint/);
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ dataset: { classes: CLASSES } }));
    const extra = new Map([...params(a), ['dec.up1.attention.kernel', tf.zeros([1, 1, 2, 2])]]);
    await saveCheckpoint(join(bad, 'latest.ckpt'), state(0.5, 1), { 'a.params': extra, 'b.params': params(b) });
    const refused = await runCli('alhvr-export', [bad, '--out', out]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/"dec\.up1\.attention\.kernel".*unknown layer/);
    const usage = await runCli('alhvr-export', [runDir]);
    expect(usage.code).toBe(2);
    expect(existsSync(out)).toBe(false);
  });
});
