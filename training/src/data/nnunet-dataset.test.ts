import { describe, expect, it, beforeEach, afterEach } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError, Volume, type Mat4 } from '@alhvr/core';
import { writeNiftiFile } from '@alhvr/core/node';
import { openNnunetDataset } from './nnunet-dataset.js';
import { resolveConfig } from '../config.js';
import { train } from '../trainer.js';

// Bad training data must be refused with a clear error before any training starts.
let root: string;
const affine: Mat4 = [
  [1.5, 0, 0, 0],
  [0, 1.5, 0, 0],
  [0, 0, 8, 0],
  [0, 0, 0, 1],
];
const dims: [number, number, number] = [16, 12, 3];

async function writeCase(id: string, opts: { label?: number; labelDims?: [number, number, number]; noLabel?: boolean } = {}) {
  const n = dims[0] * dims[1] * dims[2];
  const image = Float32Array.from({ length: n }, (_, p) => (p * 7) % 13);
  await writeNiftiFile(join(root, 'imagesTr', `${id}_0000.nii.gz`), new Volume({ data: image, dims, affine }));
  if (opts.noLabel) return;
  const ld = opts.labelDims ?? dims;
  const label = new Uint8Array(ld[0] * ld[1] * ld[2]);
  label[5] = opts.label ?? 1;
  label[6] = 2;
  await writeNiftiFile(join(root, 'labelsTr', `${id}.nii.gz`), new Volume({ data: label, dims: ld, affine }));
}

const open = (labeledCases: number | string[], valCases = 1) =>
  openNnunetDataset(root, { labeledCases, valCases, cacheDir: join(root, 'cache') });

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'nnunet-'));
  await mkdir(join(root, 'imagesTr'));
  await mkdir(join(root, 'labelsTr'));
  await writeFile(join(root, 'dataset.json'), JSON.stringify({ labels: { background: 0, RV: 1, Myo: 2, LV: 3 }, file_ending: '.nii.gz' }));
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe('nnU-Net dataset checks', () => {
  it('splits labelled, validation and unlabeled cases and reads canonical slices', async () => {
    for (const id of ['a', 'b', 'c']) await writeCase(id);
    await writeCase('u', { noLabel: true });
    const ds = await open(1);
    expect(ds.labeled.map((r) => r.caseId)).toEqual(['a', 'a', 'a']);
    expect(ds.validationIds).toEqual(['c']);
    expect([...new Set(ds.unlabeled.map((r) => r.caseId))]).toEqual(['b', 'u']);
    const image = new Float32Array(ds.maxSliceVoxels);
    const label = new Uint8Array(ds.maxSliceVoxels);
    expect(ds.readSlice(ds.labeled[0], image, label)).toEqual({ width: 16, height: 12 });
    expect(Math.max(...image)).toBeCloseTo(1, 6); // per-volume min–max
    expect(label[5]).toBe(1);
    await ds.close();
  });

  it('refuses a label value outside the class list, naming the file', async () => {
    await writeCase('a', { label: 7 });
    await writeCase('b');
    await writeCase('u', { noLabel: true });
    await expect(open(1)).rejects.toThrow(/label value 7 is not one of the dataset's classes 0–3/);
    await expect(open(1)).rejects.toThrow(/a\.nii\.gz/);
  });

  it('refuses image/label geometry mismatch', async () => {
    await writeCase('a', { labelDims: [16, 12, 2] });
    await writeCase('b');
    await writeCase('u', { noLabel: true });
    await expect(open(1)).rejects.toThrow(/label geometry .* does not match/);
  });

  it('refuses a listed case without a label and an impossible split', async () => {
    await writeCase('a');
    await writeCase('b');
    await writeCase('u', { noLabel: true });
    await expect(open(['u'])).rejects.toThrow(/has no label/);
    await expect(open(['zzz'])).rejects.toThrow(/not in imagesTr/);
    await expect(open(5)).rejects.toThrow(/outside 1–1/);
  });

  it('trains supervised on a dataset whose every training case is labelled; ALHVR refuses the empty unlabeled pool', async () => {
    for (const id of ['a', 'b', 'c']) await writeCase(id);
    const ds = await open(2);
    expect(ds.unlabeled).toEqual([]);
    expect([...new Set(ds.labeled.map((r) => r.caseId))]).toEqual(['a', 'b']);
    await ds.close();
    const tiny = { data: root, labeledCases: 2, valCases: 1, batchLabeled: 2, batchUnlabeled: 2, patch: 16, widths: [2, 2, 2, 2, 2], backend: 'cpu' as const, iterations: 2, valEvery: 2, checkpointEvery: 2 };
    const supervised = await train(resolveConfig({ ...tiny, out: join(root, 'sup'), method: 'supervised' }), { events: { log: () => {} } });
    expect(supervised.iteration).toBe(2);
    expect(supervised.best.a).not.toBeNull();
    // Resuming it: a supervised run has no γ (NaN, stored as null) and must still report a number.
    const gammas: number[] = [];
    const resumed = await train(resolveConfig({ ...tiny, out: join(root, 'sup'), method: 'supervised', iterations: 3 }), { resume: true, events: { log: () => {}, onIteration: (r) => gammas.push(r.gamma) } });
    expect(resumed.iteration).toBe(3);
    expect(gammas).toEqual([NaN]);
    const err = await train(resolveConfig({ ...tiny, out: join(root, 'ssl'), method: 'alhvr' }), { events: { log: () => {} } }).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(String(err.message)).toMatch(/unlabeled pool is empty.*--method supervised/);
  });

  it('refuses a batch larger than the labelled data before the first iteration', async () => {
    for (const id of ['a', 'b']) await writeCase(id);
    await writeCase('u', { noLabel: true });
    const config = resolveConfig({ data: root, out: join(root, 'run'), labeledCases: 1, valCases: 1, batchLabeled: 8, batchUnlabeled: 2, patch: 16, widths: [2, 2, 2, 2, 2], backend: 'cpu', iterations: 1 });
    const err = await train(config, { events: { log: () => {} } }).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(String(err.message)).toMatch(/batch of 8 labelled slices is larger than the 3 labelled slices/);
  });
});
