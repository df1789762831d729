import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Rng } from '@alhvr/core';
import { loadH5wasm, writeAbdomenCtDataset } from '@alhvr/core/node';
import {
  cropInto,
  cropPadding,
  drawCrop,
  loadCheckpoint,
  openBratsH5Volumes,
  readMetrics,
  resolveConfig,
  train,
  type IterationRecord,
  type TrainConfig,
  type ValidationRecord,
} from '@alhvr/training';
import { PYTHON } from './support/python.js';

// 3D training end to end on tiny CT phantoms (VNet widths 2, 16³ crops, wasm), the brats-h5
// layout on generated files, and the released crop augmentation against numpy.
let work: string;
let ct: string;
const quiet = { log: () => {} };

const ctConfig = (out: string, iterations: number, extra: Partial<TrainConfig> = {}) =>
  resolveConfig({
    data: ct,
    out,
    network: 'vnet3d',
    labeledCases: 2,
    valCases: 1,
    iterations,
    patch: 16,
    widths: [4, 4, 4, 4, 4],
    valEvery: 3,
    checkpointEvery: 3,
    backend: 'wasm',
    threads: 1,
    seed: 11,
    preprocessing: { targetSpacing: [1.6, 1.6, 3] },
    ...extra,
  });

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'alhvr-train-3d-'));
  ct = join(work, 'ct');
  await writeAbdomenCtDataset(ct, { cases: 5, seed: 3, matrix: 32 });
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe('alhvr-train --network vnet3d on abdominal CT phantoms', () => {
  it('trains, validates by sliding window and records the measured CT normalisation', async () => {
    const out = join(work, 'full');
    const result = await train(ctConfig(out, 3), { events: quiet });
    expect(result.iteration).toBe(3);
    const records = await readMetrics(out);
    const its = records.filter((r): r is IterationRecord => r.type === 'iteration');
    expect(its.map((r) => r.iteration)).toEqual([1, 2, 3]);
    for (const r of its) {
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(r.regions.omega1 + r.regions.omega2 + r.regions.omega3).toBeCloseTo(1, 5);
      for (const k of ['supA', 'supB']) expect(r.terms[k], k).toBeGreaterThan(0);
      for (const k of ['focusA', 'focusB', 'protoA', 'protoB']) expect(Number.isFinite(r.terms[k]), k).toBe(true);
    }
    // Tiny nets whose Dropout3d drops every channel give a constant crop some iterations (no Ω3
    // then); over the run every unsupervised term is live.
    for (const k of ['focusA', 'focusB', 'mseA', 'protoA', 'protoB', 'protoCosA']) expect(Math.max(...its.map((r) => r.terms[k])), k).toBeGreaterThan(0);
    // β 0.7 of 2·16³ unlabelled voxels; ramp of the released 3D schedule at t = 0..2.
    expect(its[0].weight).toBeCloseTo(0.1 * Math.exp(-5), 10);
    expect(new Set(its.map((r) => r.tensors)).size).toBe(1);
    const vals = records.filter((r): r is ValidationRecord => r.type === 'validation');
    expect(vals.map((v) => `${v.iteration}${v.student}`)).toEqual(['3a', '3b']);
    for (const v of vals) expect(v.perClass.map((c) => c.label)).toEqual([1, 2, 3, 4]);

    const saved = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(saved.config.network).toBe('vnet3d');
    expect(saved.config.preprocessing.targetSpacing).toEqual([1.6, 1.6, 3]);
    const rule = saved.config.preprocessing.normalisation;
    expect(rule.kind).toBe('ct-foreground');
    // Foreground organs of the phantom lie in soft-tissue HU: the measured numbers say so.
    expect(rule.low).toBeGreaterThan(-200);
    expect(rule.high).toBeLessThan(400);
    expect(rule.mean).toBeGreaterThan(0); // partial-volume voxels at 1.6 mm pull tiny organs toward fat
    expect(rule.mean).toBeLessThan(220);
    expect(rule.std).toBeGreaterThan(1);
    // The checkpoint carries the same complete block (what export copies into the card).
    const ckpt = await loadCheckpoint<{ config: TrainConfig }>(join(out, 'latest.ckpt'));
    expect(ckpt.state.config.preprocessing).toEqual(saved.config.preprocessing);
    expect([...ckpt.groups['a.params'].keys()]).toContain('enc.4.conv3.kernel');
  }, 240_000);

  it('resumes exactly: stopped after 2 iterations and resumed, it ends where the uninterrupted run does', async () => {
    const out = join(work, 'resumed');
    await train(ctConfig(out, 2), { events: quiet });
    await train(ctConfig(out, 3), { resume: true, events: quiet });
    const its = (dir: string) => readMetrics(dir).then((r) => r.filter((x): x is IterationRecord => x.type === 'iteration'));
    const [full, resumed] = [await its(join(work, 'full')), await its(out)];
    expect(resumed.map((r) => r.loss)).toEqual(full.map((r) => r.loss));
    const [a, b] = [await loadCheckpoint(join(work, 'full', 'latest.ckpt')), await loadCheckpoint(join(out, 'latest.ckpt'))];
    for (const group of ['a.params', 'b.params', 'a.momentum', 'b.momentum']) {
      for (const [name, t] of a.groups[group]) expect(Array.from(b.groups[group].get(name)!.data), `${group} ${name}`).toEqual(Array.from(t.data));
    }
  }, 240_000);

  it('refuses 3D-impossible combinations in one line', () => {
    expect(() => ctConfig(join(work, 'x'), 1, { format: 'acdc-h5' })).toThrow(/^invalid training config: format acdc-h5 holds 2D slices/);
    expect(() => resolveConfig({ data: ct, out: join(work, 'x'), format: 'brats-h5' })).toThrow(/brats-h5 holds 3D volumes/);
  });
});

async function writeBrats(root: string): Promise<void> {
  const h5wasm = await loadH5wasm();
  await mkdir(join(root, 'data'), { recursive: true });
  const ids = ['BraTS19_a', 'BraTS19_b', 'BraTS19_c', 'BraTS19_d'];
  const [k, h, w] = [18, 20, 22];
  ids.forEach((id, n) => {
    const image = new Float32Array(k * h * w);
    const label = new Uint8Array(k * h * w);
    for (let z = 0; z < k; z++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const p = x + w * (y + h * z);
      const r = Math.hypot(x - 11, y - 10, z - 9);
      label[p] = r < 4 ? 4 : r < 6 ? 2 : 0; // BraTS values: every tumour label is whole tumour
      image[p] = (label[p] ? 2 : 0) + 0.1 * Math.sin(p + n);
    }
    const f = new h5wasm.File(join(root, 'data', `${id}.h5`), 'w');
    f.create_dataset({ name: 'image', data: image, shape: [k, h, w], dtype: '<f4' });
    f.create_dataset({ name: 'label', data: label, shape: [k, h, w], dtype: '<B' });
    f.close();
  });
  // Released list format: one id per line, anything after a comma ignored.
  await writeFile(join(root, 'train.list'), 'BraTS19_a,extra\nBraTS19_b\nBraTS19_c\n');
  await writeFile(join(root, 'val.list'), 'BraTS19_d\n');
}

describe('--format brats-h5 (SSL4MIS BraTS 2019 layout)', () => {
  it('reads lists and volumes as stored, whole tumour as class 1, and trains a vnet3d on them', async () => {
    const root = join(work, 'brats');
    await writeBrats(root);
    const config = resolveConfig({ data: root, out: join(work, 'brats-run'), network: 'vnet3d', format: 'brats-h5', labeledCases: 1, batchLabeled: 1, batchUnlabeled: 1, iterations: 1, patch: 16, widths: [2, 2, 2, 2, 2], valEvery: 1, backend: 'wasm', threads: 1 });
    const dataset = await openBratsH5Volumes(root, config);
    expect([dataset.labeled, dataset.unlabeled, dataset.validationIds]).toEqual([['BraTS19_a'], ['BraTS19_b', 'BraTS19_c'], ['BraTS19_d']]);
    const c = await dataset.readCase('BraTS19_a', true);
    expect(c.dims).toEqual([22, 20, 18]);
    expect(new Set(c.label)).toEqual(new Set([0, 1]));
    expect(c.image[11 + 22 * (10 + 20 * 9)]).toBeCloseTo(2 + 0.1 * Math.sin(11 + 22 * (10 + 20 * 9)), 5);
    const result = await train(config, { events: quiet });
    expect(result.iteration).toBe(1);
    const vals = (await readMetrics(join(work, 'brats-run'))).filter((r): r is ValidationRecord => r.type === 'validation');
    expect(vals.map((v) => v.perClass.map((p) => p.label))).toEqual([[1], [1]]);
    // A block other than the one the files were made with is refused, naming both.
    await expect(openBratsH5Volumes(root, { labeledCases: 1, preprocessing: { ...config.preprocessing, targetSpacing: [2, 2, 2] } })).rejects.toThrow(/brats-h5 volumes come preprocessed/);
    await writeFile(join(root, 'val.list'), 'BraTS19_zz\n');
    await expect(openBratsH5Volumes(root, config)).rejects.toThrow(/case "BraTS19_zz" of the lists has no data\/BraTS19_zz\.h5/);
  }, 120_000);
});

describe('released 3D augmentation (rot90 + flip + crop)', () => {
  it('equals numpy rot90(axes 0–1) then flip, cropped, for every turn and flip', () => {
    const dims: [number, number, number] = [5, 4, 3];
    const volume = Float32Array.from({ length: 60 }, (_, p) => p);
    const patch = 3;
    const script = `
import json, numpy as np
a = np.arange(60, dtype=np.float32).reshape(3, 4, 5).transpose(2, 1, 0)  # [i, j, k]
out = {}
for k in range(4):
    for f in range(2):
        t = np.flip(np.rot90(a, k, axes=(0, 1)), axis=f)[1:4, 0:3, 0:3]
        out[f"{k}{f}"] = t.transpose(2, 1, 0).reshape(-1).tolist()  # i fastest
print(json.dumps(out))`;
    const r = spawnSync(PYTHON, ['-c', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const ref = JSON.parse(r.stdout) as Record<string, number[]>;
    for (let k = 0; k < 4; k++) for (const f of [0, 1] as const) {
      const image = new Float32Array(27);
      cropInto({ dims, image: volume }, patch, { quarterTurns: k as 0, flipAxis: f, offsets: [1, 0, 0], pad: [0, 0, 0] }, image, undefined, 0);
      expect(Array.from(image), `turns ${k} flip ${f}`).toEqual(ref[`${k}${f}`]);
    }
  });

  it('pads every axis when a side is ≤ the patch and never takes the last offset', () => {
    expect(cropPadding([10, 40, 40], 16)).toEqual([6, 0, 0]);
    expect(cropPadding([40, 40, 40], 16)).toEqual([0, 0, 0]);
    const rng = new Rng(1);
    const seen = new Set<number>();
    for (let n = 0; n < 300; n++) {
      const c = drawCrop(rng, [20, 20, 10], 16);
      expect(c.pad).toEqual([1, 1, 6]);
      // Padded sides 22, 22, 22: offsets in [0, 22 − 16 − 1].
      for (const o of c.offsets) expect(o).toBeLessThanOrEqual(5);
      seen.add(c.offsets[0]);
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    // The corrected switch takes the last offset too.
    const inclusive = new Set(Array.from({ length: 300 }, () => drawCrop(rng, [20, 20, 10], 16, 'inclusive').offsets[0]));
    expect([...inclusive].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const image = new Float32Array(16 ** 3).fill(NaN);
    const label = new Int32Array(16 ** 3).fill(-1);
    cropInto({ dims: [4, 4, 4], image: new Float32Array(64).fill(7), label: new Uint8Array(64).fill(1) }, 16, { quarterTurns: 0, flipAxis: 0, offsets: [0, 0, 0], pad: [17, 17, 17] }, image, label, 0);
    expect(image.filter((v) => v === 7).length).toBe(0);
    cropInto({ dims: [4, 4, 4], image: new Float32Array(64).fill(7), label: new Uint8Array(64).fill(1) }, 16, { quarterTurns: 0, flipAxis: 0, offsets: [5, 5, 5], pad: [9, 9, 9] }, image, label, 0);
    expect(image.filter((v) => v === 7).length).toBe(64);
    expect(label.filter((v) => v === 1).length).toBe(64);
    expect(image.filter((v) => v === 0).length).toBe(16 ** 3 - 64);
    // padValue 'min': the padding reads the given value instead of 0.
    cropInto({ dims: [4, 4, 4], image: new Float32Array(64).fill(7) }, 16, { quarterTurns: 0, flipAxis: 0, offsets: [5, 5, 5], pad: [9, 9, 9] }, image, undefined, 0, -3);
    expect(image.filter((v) => v === -3).length).toBe(16 ** 3 - 64);
  });
});
