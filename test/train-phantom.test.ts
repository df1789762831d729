import { describe, expect, it, beforeAll } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writePhantomDataset } from '@alhvr/core/node';
import { resolveConfig, train, readMetrics, type IterationRecord, type ValidationRecord } from '@alhvr/training';

// A few ALHVR iterations on phantoms, small widths and patch, on the wasm backend.
let data: string;
let work: string;
const base = (out: string, iterations: number) =>
  resolveConfig({
    data,
    out,
    format: 'nnunet',
    labeledCases: 2,
    valCases: 1,
    iterations,
    batchLabeled: 2,
    batchUnlabeled: 2,
    patch: 32,
    widths: [4, 8, 16, 32, 64],
    valEvery: 3,
    checkpointEvery: 3,
    backend: 'wasm',
    seed: 7,
  });
const quiet = { log: () => {} };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'alhvr-train-'));
  data = join(work, 'data');
  await writePhantomDataset(data, { cases: 5, seed: 3 });
  return () => rm(work, { recursive: true, force: true });
});

describe('ALHVR training on phantoms (wasm)', () => {
  it('trains with finite, live loss terms, sane γ and regions, and validates', async () => {
    const out = join(work, 'run-full');
    const result = await train(base(out, 6), { events: quiet });
    expect(result.iteration).toBe(6);
    const records = await readMetrics(out);
    const its = records.filter((r): r is IterationRecord => r.type === 'iteration');
    expect(its.map((r) => r.iteration)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const r of its) {
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(r.gamma).toBeGreaterThan(0);
      expect(r.gamma).toBeLessThanOrEqual(1);
      expect(r.regions.omega1 + r.regions.omega2 + r.regions.omega3).toBeCloseTo(1, 5);
      expect(r.weight).toBeGreaterThan(0);
      for (const k of ['supA', 'supB', 'focusA', 'focusB', 'protoA', 'protoB', 'ceA', 'diceA', 'mseA', 'protoCeA', 'protoCosA']) {
        expect(Number.isFinite(r.terms[k]), k).toBe(true);
        expect(r.terms[k], k).not.toBe(0);
      }
    }
    // No tensor leaks: the live tensor count is the same after every iteration.
    expect(new Set(its.map((r) => r.tensors)).size).toBe(1);
    const vals = records.filter((r): r is ValidationRecord => r.type === 'validation');
    expect(vals.map((v) => `${v.iteration}${v.student}`)).toEqual(['3a', '3b', '6a', '6b']);
    for (const v of vals) {
      expect(v.meanDice).toBeGreaterThanOrEqual(0);
      expect(v.meanDice).toBeLessThanOrEqual(1);
      expect(v.perClass.map((c) => c.label)).toEqual([1, 2, 3]);
    }
    const files = await readdir(out);
    for (const f of ['config.json', 'metrics.jsonl', 'latest.ckpt', 'best-a.ckpt', 'best-b.ckpt']) expect(files).toContain(f);
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('resumes exactly: a run stopped at 3 and resumed gives the uninterrupted losses', async () => {
    const full = (await readMetrics(join(work, 'run-full'))).filter((r): r is IterationRecord => r.type === 'iteration');
    const out = join(work, 'run-resumed');
    await train(base(out, 3), { events: quiet });
    await train(base(out, 6), { resume: true, events: quiet });
    const resumed = (await readMetrics(out)).filter((r): r is IterationRecord => r.type === 'iteration');
    expect(resumed.map((r) => r.iteration)).toEqual([1, 2, 3, 4, 5, 6]);
    for (let n = 0; n < 6; n++) {
      expect(resumed[n].loss).toBeCloseTo(full[n].loss, 5);
      expect(resumed[n].gamma).toBeCloseTo(full[n].gamma, 5);
    }
  });

  it('stops on abort after the current iteration and writes latest', async () => {
    const out = join(work, 'run-abort');
    const controller = new AbortController();
    const result = await train(base(out, 50), {
      signal: controller.signal,
      events: { ...quiet, onIteration: (r) => r.iteration === 2 && controller.abort() },
    });
    expect(result.stopped).toBe(true);
    expect(result.iteration).toBe(2);
    expect(await readdir(out)).toContain('latest.ckpt');
    await expect(train(base(out, 4), { events: quiet })).rejects.toThrow(/--resume/);
  });

  it('trains the supervised baseline on labelled data only', async () => {
    const out = join(work, 'run-sup');
    await train({ ...base(out, 2), method: 'supervised', batchUnlabeled: 0 }, { events: quiet });
    const its = (await readMetrics(out)).filter((r): r is IterationRecord => r.type === 'iteration');
    expect(Object.keys(its[0].terms).sort()).toEqual(['ceA', 'diceA']);
    expect(tf.getBackend()).toBe('wasm');
  });
});
