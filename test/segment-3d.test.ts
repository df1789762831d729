import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ALHVR_3D_RECIPE_PREPROCESSING, applyIntensityMap, generateAbdomenCtCase, intensityMap, maxAbsDiff4, Volume, type Mat4 } from '@alhvr/core';
import { readNiftiFile } from '@alhvr/core/node';
import { exportOnnx, type ExportCard } from '@alhvr/export';
import { discoverInputs, loadCase, openModelFile, segmentVolume, type OpenedModel } from '@alhvr/inference/node';
import { runCli } from './cli-harness.js';
import { useBackend } from './export-fixtures.js';
import { CT_CLASSES, makeVNet } from './vnet3d-fixtures.js';

const PATCH = 32;
const TARGET: [number, number, number] = [1.6, 1.6, 3];
const GAMMA = 0.6;

let dir: string;
let modelPath: string;
let opened: OpenedModel;
let session: ort.InferenceSession;
/** Phantom HU values to fill test volumes with (64 × 64 × nz). */
let hu: Volume<Float32Array>;

const affine = (s: readonly number[]): Mat4 => [
  [s[0], 0, 0, -20],
  [0, s[1], 0, 10],
  [0, 0, s[2], 40],
  [0, 0, 0, 1],
];

/** A volume of phantom HU values on a grid of our choosing (the phantom's slices repeat along k). */
function ctVolume(dims: [number, number, number], spacing: readonly number[]): Volume<Float32Array> {
  const [hx, hy, hz] = hu.dims;
  const data = new Float32Array(dims[0] * dims[1] * dims[2]);
  for (let z = 0, n = 0; z < dims[2]; z++) {
    for (let y = 0; y < dims[1]; y++) {
      for (let x = 0; x < dims[0]; x++, n++) data[n] = hu.data[((z % hz) * hy + (y + 8) % hy) * hx + ((x + 8) % hx)];
    }
  }
  return new Volume({ data, dims, affine: affine(spacing), meta: { path: 'test.nii.gz' } });
}

/** The exported graph run once on a whole 32³ window (no sliding window): labels, confidence, region. */
async function wholeWindow(window: Float32Array): Promise<{ label: Uint8Array; confidence: Float32Array; region: Uint8Array; studentLabel: Uint8Array }> {
  const out = await session.run({ image: new ort.Tensor('float32', window, [1, 1, PATCH, PATCH, PATCH]) });
  const probs = out.probabilities.data as Float32Array;
  const student = out.student_confidence.data as Float32Array;
  const voxels = PATCH ** 3;
  const label = new Uint8Array(voxels);
  const confidence = new Float32Array(voxels);
  const region = new Uint8Array(voxels);
  const g = Math.fround(GAMMA);
  for (let v = 0; v < voxels; v++) {
    let best = 0;
    for (let c = 1; c < CT_CLASSES.length; c++) if (probs[c * voxels + v] > probs[best * voxels + v]) best = c;
    label[v] = best;
    confidence[v] = probs[best * voxels + v];
    region[v] = 3 - (student[v] > g ? 1 : 0) - (student[voxels + v] > g ? 1 : 0);
  }
  return { label, confidence, region, studentLabel: out.student_label.data as Uint8Array };
}

beforeAll(async () => {
  await useBackend();
  dir = mkdtempSync(join(tmpdir(), 'alhvr-segment-3d-'));
  const a = makeVNet(21);
  const b = makeVNet(22);
  const card: ExportCard = {
    name: 'ct-test',
    description: 'Tiny 3D test model (random weights, not trained).',
    classes: CT_CLASSES,
    dimensions: 3,
    input: { size: [PATCH, PATCH, PATCH], sliceAxis: 'largest-spacing' },
    targetSpacing: TARGET,
    normalisation: { kind: 'zscore-volume' },
    resize: ALHVR_3D_RECIPE_PREPROCESSING.resize,
    regions: { gamma: GAMMA, beta: 0.7, gammaSource: 'training-final' },
    training: { method: 'alhvr', iterations: 3 },
  };
  const { onnx } = exportOnnx([a, b], card);
  a.dispose();
  b.dispose();
  modelPath = join(dir, 'ct.onnx');
  writeFileSync(modelPath, onnx);
  opened = await openModelFile(modelPath, { device: 'cpu', threads: 1 });
  session = await ort.InferenceSession.create(onnx, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  hu = generateAbdomenCtCase({ seed: 3, index: 0, matrix: 64 }).image;
});
afterAll(async () => {
  await opened?.model.release();
  await session?.release();
  rmSync(dir, { recursive: true, force: true });
});

describe('alhvr-segment with a 3D model', () => {
  test('anisotropic input resampled to the card spacing: equals one whole-volume forward where the grid fits one window, labels back on the source grid', async () => {
    // 1.5 mm slices to the card's 3 mm: the model grid is 32³ (one window); each grid slice is the mean of two source slices.
    const vol = ctVolume([32, 32, 64], [1.6, 1.6, 1.5]);
    const progress: number[][] = [];
    const r = await segmentVolume(vol, opened.model, { onProgress: (done, total) => progress.push([done, total]) });
    expect(r.windows).toBe(1);
    expect(r.modelGrid).toEqual([32, 32, 32]);
    expect(progress).toEqual([[1, 1]]);
    expect(r.label.dims).toEqual(vol.dims);
    expect(maxAbsDiff4(r.label.affine, vol.affine)).toBe(0);

    // Independent model-grid input: slice pairs averaged, then the card's z-score over that grid.
    const voxels = PATCH ** 3;
    const grid = new Float32Array(voxels);
    for (let z = 0; z < 32; z++) {
      for (let p = 0; p < 32 * 32; p++) grid[z * 1024 + p] = (vol.data[2 * z * 1024 + p] + vol.data[(2 * z + 1) * 1024 + p]) / 2;
    }
    applyIntensityMap(intensityMap(grid, { kind: 'zscore-volume' }), grid, grid);
    const want = await wholeWindow(grid);
    expect(new Set(want.label).size).toBeGreaterThan(1); // a constant answer would prove nothing
    expect(new Set(want.region).size).toBeGreaterThan(1);
    // Nearest back along k (half-pixel): source slices 2z and 2z + 1 both carry grid slice z.
    let labelDiff = 0;
    let regionDiff = 0;
    let confDiff = 0;
    for (let k = 0; k < 64; k++) {
      const z = k >> 1;
      for (let p = 0; p < 1024; p++) {
        if (r.label.data[k * 1024 + p] !== want.label[z * 1024 + p]) labelDiff++;
        if (r.region!.data[k * 1024 + p] !== want.region[z * 1024 + p]) regionDiff++;
      }
    }
    // Confidence goes back linearly: where neighbouring grid slices agree it is the grid value.
    for (let z = 1; z < 31; z++) {
      for (let p = 0; p < 1024; p++) {
        const c = want.confidence[z * 1024 + p];
        if (c === want.confidence[(z - 1) * 1024 + p] && c === want.confidence[(z + 1) * 1024 + p]) {
          confDiff = Math.max(confDiff, Math.abs(r.confidence.data[2 * z * 1024 + p] - c));
        }
      }
    }
    expect(labelDiff).toBe(0);
    expect(regionDiff).toBe(0);
    expect(confDiff).toBeLessThanOrEqual(1e-6);

    // The students' agreement tallies (model grid): what each student labelled, counted directly.
    const counted = { a: new Float64Array(256), b: new Float64Array(256), both: new Float64Array(256) };
    for (let v = 0; v < voxels; v++) {
      const [la, lb] = [want.studentLabel[v], want.studentLabel[voxels + v]];
      counted.a[la]++;
      counted.b[lb]++;
      if (la === lb) counted.both[la]++;
    }
    expect(counted.both.reduce((s, x) => s + x, 0)).toBeLessThan(voxels); // the random students disagree somewhere
    expect(r.signals.studentOverlap).toEqual(counted);
  });

  test('a volume smaller than the patch: zero-padded (⌊pad/2⌋ before) into one window, cut back to its own grid', async () => {
    const dims: [number, number, number] = [20, 24, 12];
    const vol = ctVolume(dims, TARGET); // already at the card's spacing: no resampling
    const r = await segmentVolume(vol, opened.model, {});
    expect(r.windows).toBe(1);
    expect(r.label.dims).toEqual(dims);
    const normalised = Float32Array.from(vol.data);
    applyIntensityMap(intensityMap(normalised, { kind: 'zscore-volume' }), normalised, normalised);
    const window = new Float32Array(PATCH ** 3); // zeros: the padding
    const [ox, oy, oz] = dims.map((d) => Math.floor((PATCH - d) / 2));
    for (let z = 0; z < dims[2]; z++) {
      for (let y = 0; y < dims[1]; y++) {
        for (let x = 0; x < dims[0]; x++) window[((z + oz) * PATCH + y + oy) * PATCH + x + ox] = normalised[(z * dims[1] + y) * dims[0] + x];
      }
    }
    const want = await wholeWindow(window);
    let labelDiff = 0;
    let confDiff = 0;
    for (let z = 0; z < dims[2]; z++) {
      for (let y = 0; y < dims[1]; y++) {
        for (let x = 0; x < dims[0]; x++) {
          const w = ((z + oz) * PATCH + y + oy) * PATCH + x + ox;
          const v = (z * dims[1] + y) * dims[0] + x;
          if (r.label.data[v] !== want.label[w]) labelDiff++;
          confDiff = Math.max(confDiff, Math.abs(r.confidence.data[v] - want.confidence[w]));
        }
      }
    }
    expect(labelDiff).toBe(0);
    expect(confDiff).toBeLessThanOrEqual(1e-6);
  });

  test('several windows (stride 21 of 32): every voxel covered; --gaussian weights them differently', async () => {
    const vol = ctVolume([48, 40, 40], TARGET);
    const uniform = await segmentVolume(vol, opened.model, { saveProbabilities: true });
    const gaussian = await segmentVolume(vol, opened.model, { gaussian: true, saveProbabilities: true });
    // ⌈(48 − 32)/21⌉ + 1 = 2 per axis.
    expect(uniform.windows).toBe(8);
    const n = vol.voxelCount;
    const probs = uniform.probabilities!.data;
    let worst = 0;
    for (let v = 0; v < n; v++) {
      let s = 0;
      for (let c = 0; c < CT_CLASSES.length; c++) s += probs[c * n + v];
      worst = Math.max(worst, Math.abs(s - 1)); // an uncovered voxel would be 0/0 = NaN
    }
    expect(worst).toBeLessThanOrEqual(1e-5);
    // Agreement tallies: every model-grid voxel (here the source grid) counted once over the 8 windows.
    const overlap = uniform.signals.studentOverlap!;
    expect(overlap.a.reduce((s, x) => s + x, 0)).toBe(n);
    expect(overlap.b.reduce((s, x) => s + x, 0)).toBe(n);
    let differs = 0;
    for (let v = 0; v < n; v++) if (Math.abs(uniform.confidence.data[v] - gaussian.confidence.data[v]) > 1e-4) differs++;
    expect(differs).toBeGreaterThan(0);
    // --gamma-mode volume: γ by the β rule on this volume's averaged student confidences, regions follow it.
    const byVolume = await segmentVolume(vol, opened.model, { gammaMode: 'volume' });
    expect(byVolume.gamma?.mode).toBe('volume');
    expect(byVolume.gamma?.beta).toBe(0.7);
    expect(byVolume.gamma!.value).toBeGreaterThan(0);
    expect(byVolume.gamma!.value).toBeLessThan(1);
    expect(byVolume.gamma!.value).not.toBe(GAMMA);
    expect(Buffer.compare(Buffer.from(byVolume.label.data), Buffer.from(uniform.label.data))).toBe(0);
    const lower = byVolume.gamma!.value < GAMMA;
    // A lower γ makes students confident more often: region values can only fall, and vice versa.
    for (let v = 0; v < n; v++) {
      const [r, r0] = [byVolume.region!.data[v], uniform.region!.data[v]];
      if (lower ? r > r0 : r < r0) throw new Error(`voxel ${v}: region ${r0} → ${r} moved the wrong way for γ ${byVolume.gamma!.value}`);
    }
  });

  test('a CT DICOM series from alhvr-phantom in: mask, confidence, region and SEG on the series grid, report and per-window progress', async () => {
    const dataset = join(dir, 'phantom');
    const made = await runCli('alhvr-phantom', ['--kind', 'abdomen-ct', '--cases', '1', '--seed', '5', '--matrix', '64', '--dicom', '--out', dataset]);
    expect(made.code, made.stderr).toBe(0);
    const out = join(dir, 'out');
    const r = await runCli('alhvr-segment', [join(dataset, 'dicom'), '--model', modelPath, '--out', out, '--threads', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/windows \[\d+\/\d+\]/);
    const [caseId] = readdirSync(out).filter((f) => !f.includes('.'));
    const caseDir = join(out, caseId);
    for (const f of ['mask.nii.gz', 'confidence.nii.gz', 'region.nii.gz', 'seg.dcm', 'preview.png', 'report.json']) expect(existsSync(join(caseDir, f)), f).toBe(true);
    const found = await discoverInputs([join(dataset, 'dicom')]);
    const series = await loadCase(found.cases[0].source);
    const mask = await readNiftiFile(join(caseDir, 'mask.nii.gz'));
    expect(mask.dims).toEqual(series.dims);
    expect(maxAbsDiff4(mask.affine, series.affine)).toBeLessThan(1e-4);
    const report = JSON.parse(readFileSync(join(caseDir, 'report.json'), 'utf8'));
    expect(report.series.modality).toBe('CT');
    expect(report.slidingWindow).toMatchObject({ patch: [32, 32, 32], targetSpacingMm: TARGET, weighting: 'uniform' });
    // The model grid is the series at the card's spacing.
    const spacing = series.spacing;
    expect(report.slidingWindow.modelGrid).toEqual(series.dims.map((d, a) => Math.max(1, Math.round((d * spacing[a]) / TARGET[a]))));
    // The same case in-process gives the same labels (the CLI adds nothing of its own).
    const direct = await segmentVolume(series, opened.model, {});
    expect(Buffer.compare(Buffer.from(mask.data.buffer, mask.data.byteOffset, mask.data.byteLength), Buffer.from(direct.label.data))).toBe(0);

    const outG = join(dir, 'out-gaussian');
    const g = await runCli('alhvr-segment', [join(dataset, 'dicom'), '--model', modelPath, '--out', outG, '--gaussian', '--threads', '1']);
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(outG, caseId, 'report.json'), 'utf8')).slidingWindow.weighting).toBe('gaussian');
  });
});
