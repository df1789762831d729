import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ort } from './ort-node.js';
import { workerOrtRuntime } from './ort-node-worker.js';
import { createSliceModel, type OrtRuntime, type SliceOutputKind } from './session.js';
import { sessionOptionsFor } from './device.js';
import { segmentVolume } from './pipeline.js';
import { generatePhantomCase } from '@alhvr/core';

const shipped = fileURLToPath(new URL('../../models/alhvr-default.onnx', import.meta.url));
const FETCH: SliceOutputKind[] = ['probabilities', 'label', 'confidence', 'region', 'studentConfidence'];

function phantomLikeBatch(n: number, h: number, w: number): Float32Array {
  // A bright disc on a textured background, different per slice, so every output has structure.
  const x = new Float32Array(n * h * w);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        const r = Math.hypot(i - h / 2 - 6 * b, j - w / 2 + 4 * b);
        x[(b * h + i) * w + j] = (r < 20 + 3 * b ? 1.5 : -0.5) + 0.2 * Math.sin(i * 0.7 + j * 0.3 + b);
      }
  return x;
}

describe('onnxruntime-node in a worker thread', () => {
  it('gives the same outputs as a session on the calling thread, and leaves the caller its batch', async () => {
    const bytes = new Uint8Array(readFileSync(shipped));
    const options = sessionOptionsFor('cpu', { threads: 1 });
    const direct = await createSliceModel(bytes, ort as unknown as OrtRuntime, options, shipped);
    const worker = await createSliceModel(bytes, workerOrtRuntime('onnxruntime-node'), options, shipped);
    const [h, w] = [128, 128];
    const batch = phantomLikeBatch(3, h, w);
    const before = batch.slice();
    const a = await direct.model.run(batch, 3, h, w, FETCH);
    const b = await worker.model.run(batch, 3, h, w, FETCH);
    expect(batch).toEqual(before);
    for (const k of FETCH) {
      expect(b[k]!.constructor).toBe(a[k]!.constructor);
      expect(b[k]).toEqual(a[k]);
    }
    // A partial batch: only the first n slices of a larger buffer are sent.
    const partial = await worker.model.run(batch, 2, h, w, ['label']);
    expect(partial.label).toEqual(a.label!.subarray(0, 2 * h * w));
    await direct.model.release();
    await worker.model.release();
    await expect(worker.model.run(batch, 1, h, w, ['label'])).rejects.toThrow(/released/);
  });

  it('runs without a memory pattern, with outputs identical to a session that has one, shape after shape', async () => {
    // Each new batch shape would warm up twice with the pattern (see device.ts).
    const options = sessionOptionsFor('cpu', { threads: 1 });
    expect(options.enableMemPattern).toBe(false);
    expect(options.enableCpuMemArena).not.toBe(false);
    const bytes = new Uint8Array(readFileSync(shipped));
    const plain = await createSliceModel(bytes, ort as unknown as OrtRuntime, options, shipped);
    const patterned = await createSliceModel(bytes, ort as unknown as OrtRuntime, { ...options, enableMemPattern: true }, shipped);
    const [h, w] = [128, 128];
    const batch = phantomLikeBatch(4, h, w);
    for (const n of [4, 1, 4, 3, 4]) {
      const a = await plain.model.run(batch, n, h, w, FETCH);
      const b = await patterned.model.run(batch, n, h, w, FETCH);
      expect(new Set(a.region).size).toBeGreaterThan(1);
      for (const k of FETCH) expect(a[k]).toEqual(b[k]);
    }
    await plain.model.release();
    await patterned.model.release();
  });

  it('segments a phantom exactly as the calling-thread session does', async () => {
    const bytes = new Uint8Array(readFileSync(shipped));
    const options = sessionOptionsFor('cpu', { threads: 1 });
    const direct = await createSliceModel(bytes, ort as unknown as OrtRuntime, options, shipped);
    const worker = await createSliceModel(bytes, workerOrtRuntime('onnxruntime-node'), options, shipped);
    const image = generatePhantomCase({ seed: 7, index: 0 }).image;
    const a = await segmentVolume(image, direct.model, { batch: 4 });
    const b = await segmentVolume(image, worker.model, { batch: 4 });
    expect(a.label.data.some((v) => v !== 0)).toBe(true);
    expect(b.label.data).toEqual(a.label.data);
    expect(b.confidence.data).toEqual(a.confidence.data);
    expect(b.region!.data).toEqual(a.region!.data);
    expect(b.signals).toEqual(a.signals);
    await direct.model.release();
    await worker.model.release();
  }, 180_000);

  it('rejects with ONNX Runtime\'s own message when a run fails, and keeps working', async () => {
    const bytes = new Uint8Array(readFileSync(shipped));
    const session = await workerOrtRuntime('onnxruntime-node').InferenceSession.create(bytes, sessionOptionsFor('cpu', { threads: 1 }));
    const Tensor = workerOrtRuntime('onnxruntime-node').Tensor;
    await expect(session.run({ image: new Tensor('float32', new Float32Array(10), [1, 10]) })).rejects.toThrow(/rank|dimension|Invalid/i);
    await expect(session.run({ nope: new Tensor('float32', new Float32Array(4), [1, 1, 2, 2]) })).rejects.toThrow(/missing/);
    const ok = await session.run({ image: new Tensor('float32', new Float32Array(64 * 64), [1, 1, 64, 64]) }, ['label']);
    expect(ok.label.dims).toEqual([1, 64, 64]);
    expect((ok.label.data as Uint8Array).length).toBe(64 * 64);
    await session.release!();
  });

  it('names the problem when the model bytes are not a model', async () => {
    await expect(workerOrtRuntime('onnxruntime-node').InferenceSession.create(new Uint8Array([1, 2, 3]), {})).rejects.toThrow(/./);
  });
});
