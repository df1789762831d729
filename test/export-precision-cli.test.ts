import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DEFAULT_CONFIG, saveCheckpoint, type UNet } from '@alhvr/training';
import { decodeOnnxModel, readOnnxModelCard } from '@alhvr/export';
import { writePhantomDataset } from '@alhvr/core/node';
import { runCli } from './cli-harness.js';
import { CLASSES, makeStudent, SMALL_WIDTHS, useBackend } from './export-fixtures.js';

let dir: string;
let runDir: string;
let calibrationDir: string;
const nets: UNet[] = [];

beforeAll(async () => {
  await useBackend();
  nets.push(makeStudent(71), makeStudent(72));
  dir = mkdtempSync(join(tmpdir(), 'alhvr-export-precision-'));
  runDir = join(dir, 'run');
  mkdirSync(runDir);
  // No validation cases recorded: int8 must be given --calibration.
  writeFileSync(join(runDir, 'config.json'), JSON.stringify({ dataset: { classes: CLASSES.map(({ value, name }) => ({ value, name })) } }));
  const state = {
    version: 1,
    iteration: 10,
    config: { ...DEFAULT_CONFIG, data: '/data/phantom', out: '/runs/x', widths: SMALL_WIDTHS, dropout: [0, 0, 0, 0, 0], patch: 64 },
    rng: { netA: [1, 2, 3, 4], netB: [1, 2, 3, 4], data: [1, 2, 3, 4] },
    sampler: {},
    gamma: 0.5,
    best: { a: { iteration: 10, meanDice: 0.5, result: {} }, b: { iteration: 10, meanDice: 0.5, result: {} } },
    backend: 'wasm',
  };
  const weights = { 'a.params': new Map<string, tf.Tensor>(nets[0].params.variables), 'b.params': new Map<string, tf.Tensor>(nets[1].params.variables) };
  await saveCheckpoint(join(runDir, 'best-a.ckpt'), state, weights);
  await saveCheckpoint(join(runDir, 'best-b.ckpt'), state, weights);
  await saveCheckpoint(join(runDir, 'latest.ckpt'), state, weights);
  calibrationDir = join(dir, 'calib-int8');
  await writePhantomDataset(calibrationDir, { cases: 2, seed: 601 });
});
afterAll(() => {
  for (const n of nets) n.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('alhvr-export --precision', () => {
  test('rejects an unknown precision and --fp16 with another precision, writing nothing', async () => {
    const out = join(dir, 'bad.onnx');
    const unknown = await runCli('alhvr-export', [runDir, '--out', out, '--precision', 'int4']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/precision/);
    expect(unknown.stderr).toMatch(/int4/);
    const contradiction = await runCli('alhvr-export', [runDir, '--out', out, '--fp16', '--precision', 'int8']);
    expect(contradiction.code).not.toBe(0);
    expect(contradiction.stderr).toMatch(/--fp16 contradicts --precision int8/);
    expect(existsSync(out)).toBe(false);
  });

  test('int8 without calibration volumes says how to give them', async () => {
    const out = join(dir, 'none.onnx');
    const r = await runCli('alhvr-export', [runDir, '--out', out, '--precision', 'int8', '--parity-slices', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--precision int8 needs calibration volumes.*--calibration DIR/);
    expect(existsSync(out)).toBe(false);
  });

  test('int8 with --calibration DIR (ensemble left uncalibrated): QDQ graph, card records the scales\' calibration', async () => {
    const out = join(dir, 'int8.onnx');
    const r = await runCli('alhvr-export', [runDir, '--out', out, '--precision', 'int8', '--no-calibrate', '--calibration', calibrationDir, '--parity-slices', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ONNX opset 17, int8, students both/);
    expect(r.stdout).toMatch(/PASS/); // parity of the fp32 graph it was quantized from
    const bytes = new Uint8Array(readFileSync(out));
    const card = readOnnxModelCard(bytes);
    expect(card.calibration).toBeUndefined();
    expect(card.precision?.network).toBe('int8');
    expect(card.precision?.activationScales).toMatchObject({ source: 'folder calib-int8', cases: 2 });
    expect(card.precision!.activationScales!.slices).toBeGreaterThan(2);
    const ops = decodeOnnxModel(bytes).graph!.node.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QuantizeLinear').length).toBeGreaterThan(40);
    const fp16 = join(dir, 'fp16.onnx');
    const h = await runCli('alhvr-export', [runDir, '--out', fp16, '--fp16', '--parity-slices', '0']);
    expect(h.code, h.stderr).toBe(0);
    expect(readOnnxModelCard(new Uint8Array(readFileSync(fp16))).precision).toEqual({ network: 'fp16' });
  }, 120_000);
});
