import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '@alhvr/inference/no-telemetry';
import * as ort from 'onnxruntime-node';
import { ALHVR_RECIPE_RESIZE, Rng, validateModelCard, type ModelCard } from '@alhvr/core';
import type { UNet } from '@alhvr/training';
import { makeCard, makeStudent, onnxChecker, useBackend } from '../../test/export-fixtures.js';
import { exportOnnx } from './export-onnx.js';
import { decodeOnnxModel, ElemType } from './onnx-graph-builder.js';
import { readOnnxModelCard } from './onnx-model-card.js';
import { phantomSlices } from './parity.js';
import { quantizeWeightsPerChannel, uint8Params, WEIGHT_CODE_MAX } from './quantize.js';
import { exportOnnxInt8, type ModelInputBatch } from './quantize-calibration.js';

const SIZE = 64;
let a: UNet;
let b: UNet;
let dir: string;
beforeAll(async () => {
  await useBackend();
  a = makeStudent(11, { calibrationSize: SIZE });
  b = makeStudent(12, { calibrationSize: SIZE });
  dir = mkdtempSync(join(tmpdir(), 'alhvr-int8-'));
});
afterAll(() => {
  a.dispose();
  b.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const card = () => makeCard([SIZE, SIZE], 0.5);
const batchesOf = (slices: Float32Array, n: number): ModelInputBatch[] => {
  const plane = SIZE * SIZE;
  const out: ModelInputBatch[] = [];
  for (let s = 0; s < n; s += 4) out.push({ data: slices.slice(s * plane, Math.min(n, s + 4) * plane), n: Math.min(4, n - s), height: SIZE, width: SIZE });
  return out;
};

async function run(model: Uint8Array, input: Float32Array, n: number, opts: ort.InferenceSession.SessionOptions = {}) {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', ...opts });
  const out = await session.run({ image: new ort.Tensor('float32', input, [n, 1, SIZE, SIZE]) });
  await session.release();
  return { label: out.label.data as Uint8Array, confidence: out.confidence.data as Float32Array };
}

describe('int8 quantization helpers', () => {
  test('per-channel symmetric weights: each channel uses ±WEIGHT_CODE_MAX and rounds within half a step', () => {
    const rng = new Rng(3);
    const w = Float32Array.from({ length: 3 * 18 }, (_, i) => rng.uniform(-1, 1) * (i < 18 ? 0.01 : i < 36 ? 2 : 0));
    const { q, scales } = quantizeWeightsPerChannel(w, 3);
    for (let c = 0; c < 2; c++) {
      const chan = [...q.subarray(c * 18, (c + 1) * 18)];
      expect(Math.max(...chan.map(Math.abs))).toBe(WEIGHT_CODE_MAX);
      for (let i = 0; i < 18; i++) expect(Math.abs(q[c * 18 + i] * scales[c] - w[c * 18 + i])).toBeLessThanOrEqual(scales[c] / 2 + 1e-9);
    }
    expect([...q.subarray(36)].every((v) => v === 0)).toBe(true); // all-zero filter
    expect(scales[0]).toBeLessThan(scales[1] / 50);
  });

  test('uint8 activation parameters cover the range and represent zero exactly', () => {
    expect(uint8Params({ min: 0, max: 2.55 })).toEqual({ scale: expect.closeTo(0.01, 9), zeroPoint: 0 });
    const p = uint8Params({ min: -1, max: 3 });
    expect(p.zeroPoint).toBe(64);
    expect(p.scale).toBeCloseTo(4 / 255, 9);
    expect(uint8Params({ min: 0.5, max: 1 }).zeroPoint).toBe(0); // range widened down to zero
  });
});

describe('exportOnnxInt8', () => {
  test('runs in ONNX Runtime, agrees with fp32 on ≥ 95 % of voxels, convs become integer kernels, card records int8', async () => {
    const calibration = batchesOf(phantomSlices({ ...card(), resize: ALHVR_RECIPE_RESIZE } as ModelCard, 12, 41), 12);
    const int8 = await exportOnnxInt8([a, b], card(), { batches: calibration }, { source: 'phantoms-41', cases: 4 });
    const fp32 = exportOnnx([a, b], card());

    // Card: precision and the activation-scale calibration; the fp32 export says fp32.
    const written = readOnnxModelCard(int8.onnx);
    expect(written.precision).toEqual({ network: 'int8', activationScales: { rule: expect.stringMatching(/min-max/), source: 'phantoms-41', cases: 4, slices: 12 } });
    expect(readOnnxModelCard(fp32.onnx).precision).toEqual({ network: 'fp32' });
    expect(int8.summary.precision).toBe('int8');
    // int8 weights: about a quarter of the float32 bytes (scales, int32 biases and the float head on top).
    expect(int8.summary.weightBytes).toBeLessThan(fp32.summary.weightBytes * 0.35);

    // The graph as written: same contract, QDQ pairs, every network conv's weight int8 per channel.
    const g = decodeOnnxModel(int8.onnx).graph!;
    expect(g.output.map((o) => o.name)).toEqual(decodeOnnxModel(fp32.onnx).graph!.output.map((o) => o.name));
    const int8Weights = g.initializer.filter((t) => t.dataType === 3 /* INT8 */ && t.name!.endsWith('.weight.q'));
    expect(int8Weights).toHaveLength(44); // 46 convs, the two logits convs stay float32
    expect(g.node.filter((n) => n.opType === 'Conv')).toHaveLength(46);
    expect(g.input[0].type!.tensorType!.elemType).toBe(ElemType.FLOAT);
    // Shape reads dimensions off the uint8 tensors: no DequantizeLinear kept alive for it.
    const shapes = g.node.filter((n) => n.opType === 'Shape');
    expect(shapes).toHaveLength(16);
    for (const n of shapes) expect(n.input![0]).toMatch(/\.q$/);
    const file = join(dir, 'int8.onnx');
    writeFileSync(file, int8.onnx);
    const checked = onnxChecker(file);
    expect(checked.ok, checked.stderr).toBe(true);

    // ONNX Runtime's optimised graph: the QDQ convolutions became integer kernels.
    const optimised = join(dir, 'int8.optimised.onnx');
    const test = phantomSlices({ ...card(), resize: ALHVR_RECIPE_RESIZE } as ModelCard, 10, 77);
    const q = await run(int8.onnx, test, 10, { optimizedModelFilePath: optimised });
    const ops = decodeOnnxModel(readFileSync(optimised)).graph!.node.map((n) => n.opType!);
    const count = (op: string) => ops.filter((o) => o === op).length;
    expect(count('QLinearConv')).toBe(44);
    expect(ops.filter((o) => o === 'Conv' || o === 'FusedConv').length).toBe(2); // the logits convs only
    expect(count('QLinearLeakyRelu')).toBeGreaterThan(0);

    // Labels on unseen smooth phantom slices agree with the fp32 model.
    const f = await run(fp32.onnx, test, 10);
    let agree = 0;
    let confidenceGap = 0;
    for (let i = 0; i < f.label.length; i++) {
      if (f.label[i] === q.label[i]) agree++;
      confidenceGap += Math.abs(f.confidence[i] - q.confidence[i]);
    }
    expect(agree / f.label.length).toBeGreaterThanOrEqual(0.95);
    expect(confidenceGap / f.label.length).toBeLessThan(0.05);
    // The labels are not trivial (all one class would agree for free).
    expect(new Set(f.label).size).toBeGreaterThanOrEqual(3);
  }, 120_000);

  test('the card schema: precision is fp32, fp16 or int8, and int8 names its activation calibration', () => {
    const written = readOnnxModelCard(exportOnnx([a, b], card(), { precision: 'fp16' }).onnx);
    expect(written.precision).toEqual({ network: 'fp16' });
    expect(() => validateModelCard({ ...written, precision: { network: 'int4' } })).toThrow(/card\.precision\.network must be one of/);
    expect(() => validateModelCard({ ...written, precision: { network: 'int8' } })).toThrow(/card\.precision\.activationScales is required/);
  });

  test('refuses to quantize without calibration slices', async () => {
    await expect(exportOnnxInt8([a, b], card(), { batches: [] }, { source: 'none', cases: 0 })).rejects.toThrow(/needs calibration volumes/);
  });
});
