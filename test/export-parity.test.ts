import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { generatePhantomCase, MODEL_CARD_KEY } from '@alhvr/core';
import { createSliceModel, segmentVolume, type SliceModel } from '@alhvr/inference';
import type { UNet } from '@alhvr/training';
import { checkParity, exportOnnx, formatParity, FP16_PARITY, FP16_WEIGHTS_PARITY, phantomSlices, readOnnxModelCard } from '@alhvr/export';
import { makeCard, makeStudent, onnxChecker, useBackend } from './export-fixtures.js';
import { PYTHON } from './support/python.js';

let a: UNet;
let b: UNet;
let dir: string;
beforeAll(async () => {
  await useBackend();
  a = makeStudent(21);
  b = makeStudent(22);
  dir = mkdtempSync(join(tmpdir(), 'alhvr-export-'));
});
afterAll(() => {
  a.dispose();
  b.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe('parity with TensorFlow.js (small widths)', () => {
  test('two students, fp32, 64×48 non-square, batch 2: logits/probabilities ≤ 1e-4, labels ≥ 99.99 %, regions identical', async () => {
    const { onnx } = exportOnnx([a, b], makeCard([64, 48], 0.5), { debugLogits: true });
    const r = await checkParity([a, b], onnx, { slices: 4, batch: 2, backend: 'wasm' });
    expect(r.maxAbsLogits).not.toBeNull();
    expect(r.maxAbsLogits!).toBeLessThanOrEqual(1e-4);
    expect(r.maxAbsProbabilities).toBeLessThanOrEqual(1e-4);
    expect(r.maxAbsStudentConfidence!).toBeLessThanOrEqual(1e-4);
    expect(r.argmaxAgreement).toBeGreaterThanOrEqual(0.9999);
    expect(r.regionMismatches).toBe(0);
    expect(r.regionTies).toBe(0);
    // A region flip is a tie only within the probability bound of γ: the bound and the margin agree.
    expect(r.thresholds.regionTieMargin).toBe(r.thresholds.maxAbsProbabilities);
    expect(r.pass).toBe(true);
  });

  test('the test networks are not trivial: several labels and all three regions occur', async () => {
    const { onnx } = exportOnnx([a, b], makeCard([64, 48], 0.5));
    const session = await ortNode.InferenceSession.create(onnx);
    const x = phantomSlices(readOnnxModelCard(onnx), 2, 20250101);
    const out = await session.run({ image: new ortNode.Tensor('float32', x, [2, 1, 48, 64]) });
    expect(new Set(out.label.data as Uint8Array).size).toBeGreaterThanOrEqual(3);
    expect(new Set(out.region.data as Uint8Array)).toEqual(new Set([1, 2, 3]));
  });

  test('the entropy output is each pixel\'s entropy of the probabilities over ln C; the pipeline\'s signal is the same from it', async () => {
    const { onnx } = exportOnnx([a, b], makeCard([64, 48], 0.5));
    const session = await ortNode.InferenceSession.create(onnx);
    const x = phantomSlices(readOnnxModelCard(onnx), 2, 20250101);
    const out = await session.run({ image: new ortNode.Tensor('float32', x, [2, 1, 48, 64]) });
    const p = out.probabilities.data as Float32Array;
    const entropy = out.entropy.data as Float32Array;
    const plane = 48 * 64;
    expect(out.entropy.dims).toEqual([2, 48, 64]);
    let worst = 0;
    let spread = 0;
    for (let s = 0; s < 2; s++) {
      for (let q = 0; q < plane; q++) {
        let h = 0;
        for (let c = 0; c < 4; c++) {
          const pc = p[(s * 4 + c) * plane + q];
          if (pc > 0) h -= pc * Math.log(pc);
        }
        h /= Math.log(4);
        worst = Math.max(worst, Math.abs(h - entropy[s * plane + q]));
        spread = Math.max(spread, h);
      }
    }
    expect(spread).toBeGreaterThan(0.3);
    expect(worst).toBeLessThanOrEqual(1e-6);

    // The 2D pipeline takes the model's entropy plane when there is one, else the probabilities.
    const { model } = await createSliceModel(onnx, ortNode, {}, 'entropy.onnx');
    const withoutEntropy: SliceModel = {
      card: model.card,
      available: new Set([...model.available].filter((k) => k !== 'entropy')),
      run: (batch, n, h, w, fetch) => model.run(batch, n, h, w, fetch),
    };
    const fetched: string[][] = [];
    const watched: SliceModel = { ...withoutEntropy, available: model.available, run: (batch, n, h, w, fetch) => (fetched.push([...fetch]), model.run(batch, n, h, w, fetch)) };
    const { image } = generatePhantomCase({ seed: 11, index: 0 });
    const fromPlane = await segmentVolume(image, watched, { batch: 4 });
    const fromProbabilities = await segmentVolume(image, withoutEntropy, { batch: 4 });
    expect(fetched[0]).toContain('entropy');
    expect(fetched[0]).not.toContain('probabilities');
    expect(fromPlane.label.data).toEqual(fromProbabilities.label.data);
    expect(fromPlane.signals.foregroundEntropyCount).toBe(fromProbabilities.signals.foregroundEntropyCount);
    expect(fromPlane.signals.foregroundEntropyCount).toBeGreaterThan(1000);
    expect(Math.abs(fromPlane.signals.foregroundEntropySum / fromProbabilities.signals.foregroundEntropySum - 1)).toBeLessThanOrEqual(1e-6);
    // Kept probabilities are still fetched, beside the entropy plane.
    const kept = await segmentVolume(image, watched, { batch: 4, saveProbabilities: true });
    expect(fetched.at(-1)).toEqual(expect.arrayContaining(['entropy', 'probabilities']));
    expect(kept.signals.foregroundEntropySum).toBe(fromPlane.signals.foregroundEntropySum);
    await model.release();
  });

  test('dynamic dims: a model carded at 32×32 runs at 64×48 with batch 3 and still matches', async () => {
    const { onnx } = exportOnnx([a, b], makeCard([32, 32], 0.5), { debugLogits: true });
    const r = await checkParity([a, b], onnx, { slices: 3, batch: 3, size: [64, 48], backend: 'wasm' });
    expect(r.size).toEqual([64, 48]);
    expect(r.maxAbsLogits!).toBeLessThanOrEqual(1e-4);
    expect(r.pass).toBe(true);
  });

  test.each(['a', 'b'] as const)('student %s alone matches its own network', async (which) => {
    const { onnx } = exportOnnx([a, b], makeCard([32, 32]), { students: which, debugLogits: true });
    const r = await checkParity([a, b], onnx, { slices: 2, backend: 'wasm' });
    expect(r.maxAbsLogits!).toBeLessThanOrEqual(1e-4);
    expect(r.regionMismatches).toBeNull();
    expect(r.pass).toBe(true);
    // Checked against the other network the same model must fail: parity can tell them apart.
    const wrong = await checkParity(which === 'a' ? [b] : [a], onnx, { slices: 1, backend: 'wasm' });
    expect(wrong.pass).toBe(false);
  });

  test(`fp16 stays within the measured tolerance (probabilities ≤ ${FP16_PARITY.maxAbsProbabilities})`, async () => {
    const { onnx } = exportOnnx([a, b], makeCard([64, 48], 0.5), { fp16: true, debugLogits: true });
    const r = await checkParity([a, b], onnx, { slices: 4, backend: 'wasm' });
    console.log(formatParity(r));
    expect(r.precision).toBe('fp16');
    expect(r.maxAbsLogits!).toBeLessThanOrEqual(FP16_PARITY.maxAbsLogits);
    expect(r.maxAbsProbabilities).toBeLessThanOrEqual(FP16_PARITY.maxAbsProbabilities);
    expect(r.argmaxAgreement).toBeGreaterThanOrEqual(FP16_PARITY.minArgmaxAgreement);
    expect(r.regionMismatches).toBe(0);
    // fp16 really changes the numbers (otherwise this test would not be testing half precision).
    expect(r.maxAbsProbabilities).toBeGreaterThan(1e-6);
  });

  test(`fp16-weights (float32 compute) stays within its bounds (probabilities ≤ ${FP16_WEIGHTS_PARITY.maxAbsProbabilities})`, async () => {
    const stored = await checkParity([a, b], exportOnnx([a, b], makeCard([64, 48], 0.5), { precision: 'fp16-weights', debugLogits: true }).onnx, { slices: 4, backend: 'wasm' });
    console.log(formatParity(stored));
    expect(stored.precision).toBe('fp16-weights');
    expect(stored.failures).toEqual([]);
    expect(stored.maxAbsLogits!).toBeLessThanOrEqual(FP16_WEIGHTS_PARITY.maxAbsLogits);
    expect(stored.maxAbsProbabilities).toBeLessThanOrEqual(FP16_WEIGHTS_PARITY.maxAbsProbabilities);
    expect(stored.argmaxAgreement).toBeGreaterThanOrEqual(FP16_WEIGHTS_PARITY.minArgmaxAgreement);
    // The weights really are rounded (otherwise this would test nothing).
    expect(stored.maxAbsLogits!).toBeGreaterThan(1e-5);
  });
});

describe('the exported file in other ONNX consumers', () => {
  test.each([
    ['both', {}],
    ['single', { students: 'a' as const }],
    ['fp16', { fp16: true }],
    ['fp16-weights', { precision: 'fp16-weights' as const }],
  ])('onnx.checker full_check passes (%s) and python reads the card', (name, opts) => {
    const file = join(dir, `${name}.onnx`);
    writeFileSync(file, exportOnnx([a, b], makeCard([64, 48]), opts).onnx);
    const check = onnxChecker(file);
    expect(check.ok, check.stderr).toBe(true);
    const r = spawnSync(PYTHON, ['-c', `import onnx,sys,json; m=onnx.load(sys.argv[1]); print(json.dumps({p.key: json.loads(p.value)["regions"]["gamma"] for p in m.metadata_props}))`, file], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ [MODEL_CARD_KEY]: 0.5 });
  });

  test('onnxruntime-web (wasm, one thread) under Node gives the same outputs as onnxruntime-node', async () => {
    ortWeb.env.wasm.numThreads = 1;
    for (const precision of ['fp32', 'fp16', 'fp16-weights'] as const) {
      const fp16 = precision !== 'fp32';
      const { onnx, card } = exportOnnx([a, b], makeCard([64, 48], 0.5), { precision });
      const x = phantomSlices(card, 2, 7);
      const node = await (await ortNode.InferenceSession.create(onnx)).run({ image: new ortNode.Tensor('float32', x, [2, 1, 48, 64]) });
      const web = await (await ortWeb.InferenceSession.create(onnx, { executionProviders: ['wasm'] })).run({
        image: new ortWeb.Tensor('float32', x, [2, 1, 48, 64]),
      });
      for (const name of ['probabilities', 'confidence', 'student_confidence', 'entropy']) {
        const p = node[name].data as Float32Array;
        const q = web[name].data as Float32Array;
        expect(q.length).toBe(p.length);
        let d = 0;
        for (let i = 0; i < p.length; i++) d = Math.max(d, Math.abs(p[i] - q[i]));
        expect(d, `${name} ${precision}`).toBeLessThanOrEqual(fp16 ? FP16_PARITY.maxAbsProbabilities : 1e-5);
      }
      for (const name of ['label', 'region']) {
        const p = node[name].data as Uint8Array;
        const q = web[name].data as Uint8Array;
        let differ = 0;
        for (let i = 0; i < p.length; i++) if (p[i] !== q[i]) differ++;
        expect(differ / p.length, `${name} ${precision}`).toBeLessThanOrEqual(fp16 ? 1e-3 : 0);
      }
      expect(web.region.dims).toEqual([2, 48, 64]);
    }
  });
});

