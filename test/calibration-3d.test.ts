// Calibration of a 3D (vnet3d) model at export: the calibration volumes go through alhvr-segment's
// sliding window; the card carries temperature, γ, quality model and thresholds as for 2D, and
// alhvr-segment's verdict on a 3D case follows the card.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { estimateQuality, expectedCalibrationError, generateAbdomenCtCase, validateModelCard, Volume, type Mat4, type ModelCard } from '@alhvr/core';
import { readNiftiFile, writeAbdomenCtDataset, writeNiftiFile } from '@alhvr/core/node';
import { calibrate, calibrationCaseFiles, exportOnnx, loadRunForExport, readOnnxModelCard, sampleWindowVoxels, windowOrigins, type VoxelSample } from '@alhvr/export';
import { assessCase, computeCaseStats, openModelBytes, segmentVolume, type SliceModel, type SliceOutputKind } from '@alhvr/inference/node';
import type { VNet3d } from '@alhvr/training';
import { runCli } from './cli-harness.js';
import { useBackend } from './export-fixtures.js';
import { CT_CLASSES, makeVNet, writeVNetRun } from './vnet3d-fixtures.js';

const PATCH = 16;
const SPACING: [number, number, number] = [1.6, 1.6, 3];
const CASES = 6;

let dir: string;
let runDir: string;
let calDir: string;
let modelPath: string;
let card: ModelCard;
let exportOut: string;

beforeAll(async () => {
  await useBackend();
  dir = mkdtempSync(join(tmpdir(), 'alhvr-calibration-3d-'));
  runDir = join(dir, 'ct-run');
  const [a, b]: VNet3d[] = [makeVNet(31), makeVNet(32)];
  await writeVNetRun(runDir, a, b, { patch: PATCH, targetSpacing: SPACING, gamma: 0.6 });
  a.dispose();
  b.dispose();
  calDir = join(dir, 'ct-calibration');
  await writeAbdomenCtDataset(calDir, { cases: CASES, seed: 77, matrix: 64 });
  modelPath = join(dir, 'ct.onnx');
  const r = await runCli('alhvr-export', [runDir, '--out', modelPath, '--calibration', calDir, '--parity-slices', '0']);
  expect(r.code, r.stderr).toBe(0);
  exportOut = r.stdout + r.stderr;
  card = readOnnxModelCard(new Uint8Array(readFileSync(modelPath))) as ModelCard;
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Foreground ECE of a calibrated graph over the calibration cases (source grid, voxels the reference or the model labels foreground). */
async function foregroundEce(onnx: Uint8Array): Promise<number> {
  const opened = await openModelBytes(onnx, 'ece model', { device: 'cpu', threads: 1 });
  const conf: number[] = [];
  const correct: number[] = [];
  try {
    for (const c of await calibrationCaseFiles(calDir)) {
      const { image, label } = await c.load();
      const r = await segmentVolume(image, opened.model);
      for (let v = 0; v < label.data.length; v++) {
        if (label.data[v] === 0 && r.label.data[v] === 0) continue;
        conf.push(r.confidence.data[v]);
        correct.push(r.label.data[v] === label.data[v] ? 1 : 0);
      }
    }
  } finally {
    await opened.model.release();
  }
  return expectedCalibrationError(Float32Array.from(conf), Uint8Array.from(correct));
}

describe('3D calibration', () => {
  test('the 3D card carries the calibration as a 2D card does', () => {
    expect(exportOut).toMatch(/calibration: voxels 1\/6/);
    expect(exportOut).toMatch(/calibration on 6 volumes \(folder ct-calibration\)/);
    const valid = validateModelCard(JSON.parse(JSON.stringify(card)));
    expect(valid.dimensions).toBe(3);
    const k = card.calibration!;
    const ids = readdirSync(join(calDir, 'labelsTr')).map((f) => f.replace('.nii.gz', '')).sort();
    expect(k.source).toEqual({ kind: 'folder', name: 'ct-calibration', cases: CASES, ids });
    // fitTemperatureEce's grid: [1/4, 10], refined by ±15 %.
    expect(k.temperature).toBeGreaterThanOrEqual(0.25 / 1.15);
    expect(k.temperature).toBeLessThanOrEqual(10 * 1.15);
    expect(card.regions.gammaSource).toBe('calibrated');
    expect(card.regions.gamma).toBeGreaterThan(0);
    expect(card.regions.gamma).toBeLessThan(1);
    expect(k.betaRuleGamma).toBeGreaterThan(0);
    expect(k.quality.rejectDice).toBeLessThanOrEqual(k.quality.acceptDice);
    expect(k.quality.rejectDice).toBeGreaterThanOrEqual(0.3);
    expect(k.quality.case.weights).toHaveLength(k.quality.case.features.length);
    expect(k.quality.perClass.weights).toHaveLength(k.quality.perClass.features.length);
    // Reference volumes per organ, from the calibration labels on their own grids.
    expect(k.quality.volumes.map((v) => v.value)).toEqual([1, 2, 3, 4]);
    const liverMl = ids.map((id) => {
      const { label } = generateAbdomenCtCase({ seed: 77, index: Number(id.slice(-3)), matrix: 64 });
      const [sx, sy, sz] = label.spacing;
      return Math.log1p((label.data.filter((l) => l === 1).length * sx * sy * sz) / 1000);
    });
    expect(k.quality.volumes[0].logMean).toBeCloseTo(liverMl.reduce((s, v) => s + v, 0) / liverMl.length, 3);
  });

  test('the temperature lowers the foreground calibration error of alhvr-segment\'s output on the calibration set (versus T = 1)', async () => {
    const k = card.calibration!;
    expect(k.ece.after).toBeLessThanOrEqual(k.ece.before);
    // The fit pools every voxel either student or the reference calls foreground (the 2D rule);
    // alhvr-segment's confidence is the ensemble's. Twin students make the two sets the same
    // voxels, so what is checked here is the sliding window: a temperature fitted on single
    // windows must also calibrate the window-averaged output on the source grid.
    const twin = makeVNet(33);
    const run = await loadRunForExport(runDir);
    run.students.forEach((s) => s.dispose());
    const twinCard = run.card;
    try {
      const cases = await calibrationCaseFiles(calDir);
      const { calibration } = await calibrate([twin, twin], twinCard, cases, { source: { kind: 'folder', name: 'twins' } });
      const tempered = exportOnnx([twin, twin], { ...twinCard, calibration }).onnx;
      const untempered = exportOnnx([twin, twin], { ...twinCard, calibration: { ...calibration, temperature: 1 } }).onnx;
      const [after, before] = [await foregroundEce(tempered), await foregroundEce(untempered)];
      expect(calibration.ece.after).toBeLessThanOrEqual(calibration.ece.before);
      if (calibration.temperature === 1) expect(after).toBe(before);
      else expect(after).toBeLessThan(before);
    } finally {
      twin.dispose();
    }
  }, 300_000);

  test('alhvr-segment on a 3D case with the calibrated model: regions by the calibrated γ, verdict by core\'s quality maths on the case\'s signals and the card', async () => {
    const { image } = generateAbdomenCtCase({ seed: 78, index: 0, matrix: 64 });
    const input = join(dir, 'unseen', 'ct_0000.nii.gz');
    await writeNiftiFile(input, image, { datatype: 'int16' });
    const out = join(dir, 'seg');
    const r = await runCli('alhvr-segment', [join(dir, 'unseen'), '--model', modelPath, '--out', out, '--threads', '1']);
    expect(r.code, r.stderr).toBe(0);
    const [caseId] = readdirSync(out).filter((f) => !f.includes('.'));
    const report = JSON.parse(readFileSync(join(out, caseId, 'report.json'), 'utf8'));
    expect(report.gamma).toEqual({ value: card.regions.gamma, mode: 'model' });
    const opened = await openModelBytes(new Uint8Array(readFileSync(modelPath)), 'calibrated', { device: 'cpu', threads: 1 });
    try {
      // The file as the CLI read it (its affine is float32 on disk).
      const result = await segmentVolume(await readNiftiFile(input), opened.model);
      const stats = computeCaseStats(result.label, result.confidence, result.region, opened.identity.card);
      const assessed = assessCase(stats, result.signals, opened.identity.card);
      expect(report.signals).toEqual(JSON.parse(JSON.stringify(assessed.signals)));
      expect(report.quality).toEqual(JSON.parse(JSON.stringify(assessed.quality)));
      expect(report.triage.verdict).toBe(assessed.triage.verdict);
      expect(report.triage.reasons).toEqual(assessed.triage.reasons);
      expect(report.triage.reasons.length).toBeGreaterThan(0);
      // The students' agreement is measured in 3D, so the verdict is core's rule on the card's predicted Dice.
      expect(report.signals.agreement).not.toBeNull();
      const q = estimateQuality(report.signals, card.calibration!.quality);
      expect(report.quality.predictedDice).toBeCloseTo(q.predictedDice, 12);
      const { acceptDice, rejectDice } = card.calibration!.quality;
      expect(report.triage.verdict).toBe(q.outOfDomain.length || q.predictedDice < rejectDice ? 'reject' : q.predictedDice < acceptDice ? 'review' : 'accept');
    } finally {
      await opened.model.release();
    }
  }, 240_000);
});

describe('3D voxel gathering (sliding window tap)', () => {
  /** A volume on the card's grid whose intensity encodes its label, and a model whose logits echo its input. */
  function echoCase(dims: [number, number, number], seed: number) {
    const n = dims[0] * dims[1] * dims[2];
    let s = seed;
    const label = new Uint8Array(n).map(() => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) % CT_CLASSES.length);
    const image = Float32Array.from(label, (l) => l * 100);
    const affine: Mat4 = [
      [SPACING[0], 0, 0, 0],
      [0, SPACING[1], 0, 0],
      [0, 0, SPACING[2], 0],
      [0, 0, 0, 1],
    ];
    return { image: new Volume({ data: image, dims, affine }), label: new Volume({ data: label, dims, affine }) };
  }

  function echoModel(): SliceModel {
    const C = CT_CLASSES.length;
    return {
      card,
      available: new Set<SliceOutputKind>(['probabilities', 'label', 'confidence', 'logitsA', 'logitsB']),
      run: () => Promise.reject(new Error('2D run called on a 3D model')),
      async runPatches(batch, n, patch, fetch) {
        const voxels = patch[0] * patch[1] * patch[2];
        // Class 0's logit is the normalised intensity itself; the others stay 0.
        const logits = new Float32Array(C * voxels);
        logits.set(batch.subarray(0, voxels), 0);
        const out: Record<string, Float32Array> = { probabilities: new Float32Array(C * voxels).fill(1 / C), logitsA: logits, logitsB: logits };
        return Object.fromEntries(fetch.map((k) => [k, out[k]]));
      },
    };
  }

  test('every gathered voxel pairs its window logits with its own reference label, including volumes smaller than the patch', async () => {
    for (const dims of [
      [37, 29, 11],
      [10, 9, 7],
    ] as [number, number, number][]) {
      const { image, label } = echoCase(dims, dims[0]);
      const samples = { roi: { classes: 5, logitsA: [], logitsB: [], truth: [] } as VoxelSample, uniform: { classes: 5, logitsA: [], logitsB: [], truth: [] } as VoxelSample };
      await sampleWindowVoxels(image, label, echoModel(), samples, { seed: 1 });
      const origins = windowOrigins(dims, [PATCH, PATCH, PATCH]);
      // Window voxels inside the volume: each axis's in-volume extents summed over its windows.
      const along = (a: number) => [...new Set(origins.map((o) => o[a]))].reduce((s, o) => s + Math.min(PATCH, dims[a] - o) - Math.max(0, -o), 0);
      const observations = along(0) * along(1) * along(2);
      expect(samples.uniform.truth).toHaveLength(Math.ceil(observations / 8));
      for (const sample of [samples.roi, samples.uniform]) {
        // The intensity (class 0's logit) of every voxel of class k lies below every voxel of class k + 1.
        const byClass = Array.from({ length: 5 }, () => [] as number[]);
        sample.truth.forEach((t, v) => byClass[t].push(sample.logitsA[v * 5]));
        for (let k = 0; k + 1 < 5; k++) {
          expect(byClass[k].length).toBeGreaterThan(0);
          expect(Math.max(...byClass[k])).toBeLessThan(Math.min(...byClass[k + 1]));
        }
      }
      expect(samples.roi.truth.filter((t) => t !== 0).length).toBeGreaterThan(0);
    }
  });

  test('the reservoirs bound what one case keeps', async () => {
    const { image, label } = echoCase([37, 29, 11], 5);
    const samples = { roi: { classes: 5, logitsA: [], logitsB: [], truth: [] } as VoxelSample, uniform: { classes: 5, logitsA: [], logitsB: [], truth: [] } as VoxelSample };
    await sampleWindowVoxels(image, label, echoModel(), samples, { seed: 1, capacity: 300 });
    expect(samples.roi.truth).toHaveLength(300);
    expect(samples.uniform.truth).toHaveLength(300);
    expect(samples.roi.logitsA).toHaveLength(300 * 5);
  });
});
