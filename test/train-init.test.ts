// alhvr-train --init: the students start from another run's best checkpoints (parameters only),
// the run records where they came from by name and hash, and a source of another shape is refused.
import { describe, expect, it, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePhantomDataset } from '@alhvr/core/node';
import { loadCheckpoint, resolveConfig, train } from '@alhvr/training';

let data: string;
let work: string;
const base = (out: string, extra: Record<string, unknown> = {}) =>
  resolveConfig({
    data,
    out,
    format: 'nnunet',
    labeledCases: 2,
    valCases: 1,
    iterations: 2,
    batchLabeled: 2,
    batchUnlabeled: 2,
    patch: 32,
    widths: [4, 8, 16, 32, 64],
    valEvery: 2,
    checkpointEvery: 2,
    backend: 'wasm',
    seed: 7,
    ...extra,
  });
const quiet = { log: () => {} };
const sha = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'alhvr-train-init-'));
  data = join(work, 'data');
  await writePhantomDataset(data, { cases: 4, seed: 5 });
  return () => rm(work, { recursive: true, force: true });
});

describe('alhvr-train --init', () => {
  it('starts each student from the source run’s best checkpoint of that student and records it by name and hash', async () => {
    const source = join(work, 'round0');
    await train(base(source), { events: quiet });
    // A learning rate of 1e-30 leaves the parameters where they started after one step.
    const next = join(work, 'round1');
    await train(base(next, { iterations: 1, lr: 1e-30, seed: 99, init: source }), { events: quiet });
    const after = await loadCheckpoint(join(next, 'latest.ckpt'));
    for (const key of ['a', 'b'] as const) {
      const from = (await loadCheckpoint(join(source, `best-${key}.ckpt`))).groups[`${key}.params`];
      const got = after.groups[`${key}.params`];
      let compared = 0;
      for (const [name, t] of from) {
        if (!/kernel|bias|gamma|beta/.test(name)) continue; // BatchNorm running statistics move with every forward pass
        const g = got.get(name)!;
        let diff = 0;
        for (let i = 0; i < t.data.length; i++) diff = Math.max(diff, Math.abs(g.data[i] - t.data[i]));
        expect(diff, `${key} ${name}`).toBeLessThan(1e-6);
        compared++;
      }
      expect(compared).toBeGreaterThan(10);
    }
    // A different seed alone would have drawn other weights: the start really came from the source.
    const fresh = join(work, 'fresh');
    await train(base(fresh, { iterations: 1, lr: 1e-30, seed: 99 }), { events: quiet });
    const freshA = (await loadCheckpoint(join(fresh, 'latest.ckpt'))).groups['a.params'];
    const name = [...freshA.keys()].find((n) => /kernel/.test(n))!;
    expect(Math.max(...freshA.get(name)!.data.map((v, i) => Math.abs(v - after.groups['a.params'].get(name)!.data[i])))).toBeGreaterThan(1e-3);
    const saved = JSON.parse(await readFile(join(next, 'config.json'), 'utf8')).config;
    expect(saved.init).toBe('round0');
    expect(saved.initSource).toEqual({ name: 'round0', checkpoints: { a: await sha(join(source, 'best-a.ckpt')), b: await sha(join(source, 'best-b.ckpt')) } });
  }, 240_000);

  it('refuses, in one line naming the folder, a source of another width or a folder without checkpoints', async () => {
    const source = join(work, 'round0');
    await expect(train(base(join(work, 'wide'), { iterations: 1, widths: [8, 8, 16, 32, 64], init: source }), { events: quiet })).rejects.toThrow(
      /round0: student a's parameter .* differs in name or shape/,
    );
    await expect(train(base(join(work, 'empty'), { iterations: 1, init: data }), { events: quiet })).rejects.toThrow(/data: --init: no best-a\.ckpt/);
  }, 240_000);
});
