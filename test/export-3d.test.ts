import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VNet3d } from '@alhvr/training';
import { checkParity, decodeOnnxModel, exportOnnx, loadRunForExport, ONNX_OUTPUTS, readOnnxModelCard } from '@alhvr/export';
import { runCli } from './cli-harness.js';
import { onnxChecker, useBackend } from './export-fixtures.js';
import { CT_CLASSES, makeVNet, writeVNetRun } from './vnet3d-fixtures.js';

let a: VNet3d;
let b: VNet3d;
let dir: string;
let runDir: string;
const SPACING: [number, number, number] = [1.6, 1.6, 3];

beforeAll(async () => {
  await useBackend();
  a = makeVNet(11);
  b = makeVNet(12);
  dir = mkdtempSync(join(tmpdir(), 'alhvr-export-3d-'));
  runDir = join(dir, 'ct-run');
  await writeVNetRun(runDir, a, b, { patch: 32, targetSpacing: SPACING, gamma: 0.62, iteration: 7 });
});
afterAll(() => {
  a.dispose();
  b.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('3D export', () => {
  test('a vnet3d run gives a 3D card: patch, target spacing and normalisation verbatim from the checkpoint', async () => {
    const run = await loadRunForExport(runDir);
    try {
      expect(run.dimensions).toBe(3);
      expect(run.selection).toBe('both');
      expect(run.card.dimensions).toBe(3);
      expect(run.card.input.size).toEqual([32, 32, 32]);
      expect(run.card.targetSpacing).toEqual(SPACING);
      expect(run.card.normalisation).toEqual({ kind: 'zscore-volume' });
      expect(run.card.regions).toEqual({ gamma: 0.62, beta: 0.7, gammaSource: 'training-final' });
      expect((run.card.training.config as { preprocessing: { targetSpacing: number[] } }).preprocessing.targetSpacing).toEqual(SPACING);
      expect(run.students.every((s) => s.parameterCount() === a.parameterCount())).toBe(true);
    } finally {
      run.students.forEach((s) => s.dispose());
    }
  });

  test('both students in one NCDHW graph with the 2D graph\'s heads; parity ≤ 1e-4 against TensorFlow.js on CT patches', async () => {
    const run = await loadRunForExport(runDir);
    try {
      const { onnx, card, summary } = exportOnnx(run.students, run.card, { debugLogits: true });
      expect(card.input).toMatchObject({ size: [32, 32, 32], layout: 'NCDHW', name: 'image' });
      expect(summary.inputs[0].shape).toEqual(['N', 1, 'D', 'H', 'W']);
      const outputs = Object.fromEntries(summary.outputs.map((o) => [o.name, o.shape]));
      // The same output contract as the 2D ensemble, over [D, H, W], but the per-pixel entropy: 3D
      // averages overlapping windows' probabilities first and takes the entropy of the average.
      expect(Object.keys(outputs).filter((n) => !n.startsWith('logits_')).sort()).toEqual(Object.values(ONNX_OUTPUTS).filter((n) => n !== ONNX_OUTPUTS.entropy).sort());
      expect(outputs.probabilities).toEqual(['N', CT_CLASSES.length, 'D', 'H', 'W']);
      expect(outputs.region).toEqual(['N', 'D', 'H', 'W']);
      const ops = decodeOnnxModel(onnx).graph!.node.map((n) => n.opType);
      expect(ops.filter((o) => o === 'ConvTranspose')).toHaveLength(8);
      expect(ops).not.toContain('BatchNormalization');
      // Cubic at the card's patch, and a non-cubic patch through the dynamic axes.
      for (const size of [undefined, [48, 32, 16] as [number, number, number]]) {
        const parity = await checkParity(run.students, onnx, { slices: 2, size });
        expect(parity.failures).toEqual([]);
        expect(parity.dimensions).toBe(3);
        expect(parity.maxAbsLogits).not.toBeNull();
        expect(parity.maxAbsLogits!).toBeLessThanOrEqual(1e-4);
        expect(parity.maxAbsProbabilities).toBeLessThanOrEqual(1e-4);
        expect(parity.regionAgreement).toBe(1);
        expect(parity.pixels).toBe(2 * (size ?? [32, 32, 32]).reduce((x, y) => x * y, 1));
      }
    } finally {
      run.students.forEach((s) => s.dispose());
    }
  });

  test('fp16 and one-student 3D exports pass their parity checks; one student has no region head', async () => {
    const run = await loadRunForExport(runDir);
    try {
      const half = exportOnnx(run.students, run.card, { precision: 'fp16' });
      const p16 = await checkParity(run.students, half.onnx, { slices: 1 });
      expect(p16.precision).toBe('fp16');
      expect(p16.failures).toEqual([]);
      const stored = exportOnnx(run.students, run.card, { precision: 'fp16-weights' });
      const pw = await checkParity(run.students, stored.onnx, { slices: 1 });
      expect(pw.precision).toBe('fp16-weights');
      expect(pw.failures).toEqual([]);
      expect(stored.summary.weightBytes * 2).toBe(exportOnnx(run.students, run.card).summary.weightBytes);
      const single = exportOnnx(run.students, run.card, { students: 'b' });
      expect(single.card.students).toBe('b');
      expect(single.summary.outputs.map((o) => o.name)).not.toContain('region');
      const pb = await checkParity(run.students, single.onnx, { slices: 1 });
      expect(pb.failures).toEqual([]);
      expect(pb.maxAbsProbabilities).toBeLessThanOrEqual(1e-4);
    } finally {
      run.students.forEach((s) => s.dispose());
    }
  });

  test('alhvr-export RUN_DIR on a vnet3d run writes a checked ONNX file carrying the 3D card; int8 refused in one line', async () => {
    const out = join(dir, 'ct.onnx');
    const r = await runCli('alhvr-export', [runDir, '--out', out, '--parity-slices', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/output region uint8 \[N, D, H, W\]/);
    expect(r.stdout).toMatch(/input 32×32×32 at 1\.6×1\.6×3 mm/);
    expect(r.stdout).toMatch(/1 CT phantom patches at 32×32×32/);
    expect(r.stdout).toMatch(/PASS/);
    expect(r.stderr).toMatch(/not calibrated: the run records no validation cases/);
    const card = readOnnxModelCard(new Uint8Array(readFileSync(out)));
    expect(card.dimensions).toBe(3);
    expect(card.targetSpacing).toEqual(SPACING);
    expect(card.calibration).toBeUndefined();
    const check = onnxChecker(out);
    expect(check.ok, check.stderr).toBe(true);

    const int8 = await runCli('alhvr-export', [runDir, '--out', join(dir, 'ct8.onnx'), '--precision', 'int8']);
    expect(int8.code).not.toBe(0);
    expect(int8.stderr.trim().split('\n').filter((l) => /int8/.test(l))).toHaveLength(1);
    expect(int8.stderr).toMatch(/--precision int8 is for 2D models/);
    expect(readdirSync(dir)).not.toContain('ct8.onnx');
  });
});
