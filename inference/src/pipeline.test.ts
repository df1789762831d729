import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Volume,
  canonicalOrientation,
  inverseOrientation,
  maxAbsDiff4,
  multiply4,
  normaliseIntensities,
  reorient,
  resizeInPlane,
  type Mat4,
  type ModelCard,
  type ResizeRule,
} from '@alhvr/core';
import { makeToyModel, toyReference } from '../../test/segment-toy-model.js';
import { openModelFile, type OpenedModel } from './session-node.js';
import { segmentVolume } from './pipeline.js';
import type { SliceModel } from './session.js';

let dir: string;
const models: Record<string, OpenedModel> = {};

const HALF_PIXEL: ModelCard['resize'] = {
  image: { interpolation: 'linear', alignment: 'half-pixel' },
  labelBack: { interpolation: 'nearest', alignment: 'half-pixel' },
  mapBack: { interpolation: 'linear', alignment: 'half-pixel' },
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-pipeline-'));
  models.recipe = await openModelFile(makeToyModel(dir, { size: [32, 48], name: 'recipe.onnx' }), { device: 'cpu', threads: 1 });
  models.halfPixel = await openModelFile(makeToyModel(dir, { size: [48, 32], name: 'half.onnx', card: { resize: HALF_PIXEL } }), { device: 'cpu', threads: 1 });
});
afterAll(async () => {
  for (const m of Object.values(models)) await m.model.release();
  rmSync(dir, { recursive: true, force: true });
});

/** Oblique (rotated 30° about an oblique axis), flipped, anisotropic: slice axis is source axis 1. */
function obliqueVolume(): Volume<Int16Array> {
  const dims: [number, number, number] = [37, 9, 29];
  const c = Math.cos(Math.PI / 6);
  const s = Math.sin(Math.PI / 6);
  const rot: Mat4 = [
    [c, 0, s, 0],
    [s * s, c, -s * c, 0],
    [-s * c, s, c * c, 0],
    [0, 0, 0, 1],
  ];
  const scaleFlip: Mat4 = [
    [-0.8, 0, 0, 20],
    [0, 3.0, 0, -14],
    [0, 0, -0.9, 7],
    [0, 0, 0, 1],
  ];
  const affine = multiply4(rot, scaleFlip);
  const data = new Int16Array(dims[0] * dims[1] * dims[2]);
  let p = 0;
  for (let k = 0; k < dims[2]; k++)
    for (let j = 0; j < dims[1]; j++)
      for (let i = 0; i < dims[0]; i++) {
        const blob = Math.exp(-((i - 12) ** 2 + (k - 10) ** 2) / 40) * 900 + Math.exp(-((i - 27) ** 2 + (k - 20) ** 2) / 25) * 500;
        data[p++] = Math.round(blob + 15 * j + 40 * Math.sin(i / 3) * Math.cos(k / 4) - 100);
      }
  return new Volume({ data, dims, affine, meta: { kind: 'generated', path: 'oblique' } });
}

/** Independent chain: core reorient + resizeInPlane copies, numpy network, back again. */
function referenceOnSource(vol: Volume<Int16Array>, card: ModelCard, dirPath: string) {
  const o = canonicalOrientation(vol.affine, card.input.sliceAxis);
  const can = reorient(vol, o);
  const [w, h, k] = can.dims;
  const [mw, mh] = card.input.size;
  const model = resizeInPlane(can.withData(normaliseIntensities(can.data, card.normalisation)), [mw, mh], card.resize.image);
  const ref = toyReference(dirPath, model.data as Float32Array, k, mh, mw);
  const back = <T extends Uint8Array | Float32Array>(data: T, rule: ResizeRule) => {
    const small = new Volume({ data, dims: [mw, mh, k], affine: model.affine });
    return reorient(resizeInPlane(small, [w, h], rule), inverseOrientation(o));
  };
  return { o, ref, mw, mh, k, back };
}

describe('segmentVolume', () => {
  for (const variant of ['recipe', 'halfPixel'] as const) {
    it(`labels equal the numpy forward pass of the toy network on the preprocessed slices (${variant})`, async () => {
      const vol = obliqueVolume();
      const { model } = models[variant];
      const result = await segmentVolume(vol, model, { batch: 4 });
      const { ref, back } = referenceOnSource(vol, model.card, dir);
      const label = back(ref.label, model.card.resize.labelBack);
      const margin = back(ref.margin, model.card.resize.labelBack);
      expect(maxAbsDiff4(label.affine, vol.affine)).toBeLessThan(1e-9);
      let compared = 0;
      let mismatched = 0;
      for (let n = 0; n < vol.voxelCount; n++) {
        if (margin.data[n] < 1e-4) continue; // a near tie: float rounding may pick either class
        compared++;
        if (label.data[n] !== result.label.data[n]) mismatched++;
      }
      expect(compared).toBeGreaterThan(0.98 * vol.voxelCount);
      expect(mismatched).toBe(0);
      expect(new Set(result.label.data).size).toBeGreaterThanOrEqual(2);
    });
  }

  it('returns outputs on the input grid with values in range', async () => {
    const vol = obliqueVolume();
    const { model } = models.recipe;
    const r = await segmentVolume(vol, model, { batch: 3, saveProbabilities: true });
    for (const out of [r.label, r.confidence, r.region!, r.probabilities!]) {
      expect(out.dims).toEqual(vol.dims);
      expect(out.affine).toEqual(vol.affine);
    }
    expect(r.probabilities!.frames).toBe(3);
    expect(r.label.data.every((v) => v <= 2)).toBe(true);
    expect(r.confidence.data.every((v) => v >= 1 / 3 - 1e-6 && v <= 1 + 1e-6)).toBe(true);
    expect(new Set(r.region!.data).size).toBeGreaterThanOrEqual(2);
    expect(r.region!.data.every((v) => v >= 1 && v <= 3)).toBe(true);
    // Probabilities per voxel sum to 1 and their max is the confidence (linear resize keeps both).
    const n = vol.voxelCount;
    for (let v = 0; v < n; v += 97) {
      const p = [0, 1, 2].map((c) => r.probabilities!.data[c * n + v]);
      expect(p[0] + p[1] + p[2]).toBeCloseTo(1, 5);
      expect(Math.max(...p)).toBeLessThanOrEqual(r.confidence.data[v] + 1e-5);
    }
  });

  it('gives the same result whatever the batch size', async () => {
    const vol = obliqueVolume();
    const { model } = models.recipe;
    const a = await segmentVolume(vol, model, { batch: 1 });
    const b = await segmentVolume(vol, model, { batch: 7 });
    expect(b.label.data).toEqual(a.label.data);
    expect(b.region!.data).toEqual(a.region!.data);
    expect(b.confidence.data).toEqual(a.confidence.data);
  });

  it('keeps the model busy: the next batch runs while one is mapped back, and no batch is written while its call runs', async () => {
    const vol = obliqueVolume();
    const inner = models.recipe.model;
    const events: string[] = [];
    let calls = 0;
    let untouched = true;
    const slow: SliceModel = {
      card: inner.card,
      available: inner.available,
      async run(batch, n, h, w, fetch) {
        const call = calls++;
        events.push(`run ${call}`);
        const sent = batch.slice(0, n * h * w);
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (!sent.every((v, i) => Object.is(v, batch[i]))) untouched = false;
        return inner.run(sent, n, h, w, fetch);
      },
    };
    let mapped = 0;
    const tap = { fetch: [], onBatch: () => events.push(`mapped ${mapped++}`) };
    const pipelined = await segmentVolume(vol, slow, { batch: 3, tap });
    const direct = await segmentVolume(vol, inner, { batch: 3 });
    expect(untouched).toBe(true);
    expect(calls).toBe(3); // 9 slices in batches of 3
    // Batch n + 1 is running before batch n is mapped back.
    expect(events).toEqual(['run 0', 'run 1', 'mapped 0', 'run 2', 'mapped 1', 'mapped 2']);
    expect(pipelined.label.data).toEqual(direct.label.data);
    expect(pipelined.confidence.data).toEqual(direct.confidence.data);
    expect(pipelined.region!.data).toEqual(direct.region!.data);
    expect(pipelined.signals).toEqual(direct.signals);
  });

  it('recomputes regions with the per-volume β-quantile γ of the training rule', async () => {
    const vol = obliqueVolume();
    const { model } = models.recipe;
    const r = await segmentVolume(vol, model, { gammaMode: 'volume' });
    const { ref, back, mw, mh, k } = referenceOnSource(vol, model.card, dir);
    const plane = mw * mh;
    const means: number[] = [];
    for (let s = 0; s < k; s++) for (let p = 0; p < plane; p++) means.push((ref.student[s * 2 * plane + p] + ref.student[(s * 2 + 1) * plane + p]) / 2);
    means.sort((x, y) => x - y);
    const m = Math.floor(model.card.regions.beta * means.length);
    const gamma = means.slice(0, m).reduce((s, v) => s + v, 0) / m;
    expect(r.gamma?.mode).toBe('volume');
    expect(r.gamma!.value).toBeCloseTo(gamma, 5);
    expect(Math.abs(gamma - model.card.regions.gamma)).toBeGreaterThan(0.01); // the option changes something
    const regionModel = new Uint8Array(k * plane);
    const nearTie = new Float32Array(k * plane);
    for (let s = 0; s < k; s++)
      for (let p = 0; p < plane; p++) {
        const ca = ref.student[s * 2 * plane + p];
        const cb = ref.student[(s * 2 + 1) * plane + p];
        regionModel[s * plane + p] = 3 - (ca > gamma ? 1 : 0) - (cb > gamma ? 1 : 0);
        nearTie[s * plane + p] = Math.min(Math.abs(ca - gamma), Math.abs(cb - gamma));
      }
    const region = back(regionModel, model.card.resize.labelBack);
    const tie = back(nearTie, model.card.resize.labelBack);
    let mismatched = 0;
    for (let n = 0; n < vol.voxelCount; n++) if (tie.data[n] > 1e-4 && region.data[n] !== r.region!.data[n]) mismatched++;
    expect(mismatched).toBe(0);
  });
});
