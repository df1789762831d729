import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Volume, type Mat4 } from '@alhvr/core';
import { writeNiftiFile } from '@alhvr/core/node';
import { resolveConfig } from '../config.js';
import { readMetrics, train, type IterationRecord } from '../trainer.js';

// The --regions switch must reach the objective the trainer differentiates.
let root: string;
const affine: Mat4 = [
  [1.5, 0, 0, 0],
  [0, 1.5, 0, 0],
  [0, 0, 8, 0],
  [0, 0, 0, 1],
];
const dims: [number, number, number] = [16, 16, 3];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'regions-'));
  await mkdir(join(root, 'imagesTr'));
  await mkdir(join(root, 'labelsTr'));
  await writeFile(join(root, 'dataset.json'), JSON.stringify({ labels: { background: 0, RV: 1, Myo: 2, LV: 3 }, file_ending: '.nii.gz' }));
  const n = dims[0] * dims[1] * dims[2];
  for (const [k, id] of ['a', 'b', 'c', 'u', 'v'].entries()) {
    const image = Float32Array.from({ length: n }, (_, p) => ((p * (7 + k)) % 13) + (p % 16 > 8 ? 10 : 0));
    await writeNiftiFile(join(root, 'imagesTr', `${id}_0000.nii.gz`), new Volume({ data: image, dims, affine }));
    if (id === 'u' || id === 'v') continue;
    const label = Uint8Array.from({ length: n }, (_, p) => (p % 16 > 8 ? 1 + ((p >> 4) % 3) : 0));
    await writeNiftiFile(join(root, 'labelsTr', `${id}.nii.gz`), new Volume({ data: label, dims, affine }));
  }
});
afterAll(() => rm(root, { recursive: true, force: true }));

async function firstIteration(name: string, regions?: (1 | 2 | 3)[]): Promise<IterationRecord> {
  const out = join(root, name);
  const config = resolveConfig({
    data: root, out, labeledCases: 2, valCases: 1, batchLabeled: 2, batchUnlabeled: 2, patch: 16, widths: [2, 2, 2, 2, 2],
    backend: 'cpu', iterations: 1, rampIterations: 200, consistency: 100, valEvery: 1, checkpointEvery: 1, ...(regions ? { regions } : {}),
  });
  await train(config, { events: { log: () => {} } });
  return (await readMetrics(out)).find((r): r is IterationRecord => r.type === 'iteration')!;
}

describe('alhvr-train regions switch', () => {
  it('rejects region lists other than distinct values among 1, 2, 3', () => {
    const base = { data: 'd', out: 'o' };
    expect(resolveConfig(base).regions).toEqual([1, 2, 3]);
    expect(resolveConfig({ ...base, regions: [] }).regions).toEqual([]);
    expect(() => resolveConfig({ ...base, regions: [4] as never })).toThrow(/regions must list distinct values/);
    expect(() => resolveConfig({ ...base, regions: [2, 2] })).toThrow(/regions must list distinct values/);
  });

  it('a run with no region gets no unsupervised contribution; the published default does', async () => {
    const unsupervised = (r: IterationRecord) => r.loss - (r.terms.supA + r.terms.supB);
    const all = await firstIteration('all');
    expect(all.weight).toBeGreaterThan(0);
    expect(unsupervised(all)).toBeGreaterThan(1e-4);
    const none = await firstIteration('none', []);
    expect(none.terms.focusA).toBe(0);
    expect(none.terms.protoB).toBe(0);
    expect(Math.abs(unsupervised(none))).toBeLessThan(1e-6);
    const omega3 = await firstIteration('omega3', [3]);
    expect(omega3.terms.protoA).toBe(0);
    expect(omega3.terms.focusA).toBeGreaterThan(0);
  });
});
