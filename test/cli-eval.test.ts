import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Volume } from '@alhvr/core';
import { writeNiftiFile } from '@alhvr/core/node';
import { runCli } from './cli-harness.js';

// Reference: a 4×4×2 box of label 1 (32 voxels). Prediction: the same box shifted by one voxel
// along i (24 overlapping voxels) → Dice = 2·24/(32+32) = 0.75, Jaccard = 24/40 = 0.6.
// Label 2 exists only in the reference → Dice 0, HD95 NaN under the flagged policy.
const tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-eval-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const affine = [
  [2, 0, 0, 0],
  [0, 2, 0, 0],
  [0, 0, 5, 0],
  [0, 0, 0, 1],
];

function box(i0: number, withLabel2: boolean): Volume<Uint8Array> {
  const dims: [number, number, number] = [10, 8, 4];
  const data = new Uint8Array(10 * 8 * 4);
  for (let k = 1; k < 3; k++) for (let j = 2; j < 6; j++) for (let i = i0; i < i0 + 4; i++) data[i + 10 * (j + 8 * k)] = 1;
  if (withLabel2) data[9 + 10 * (7 + 8 * 3)] = 2;
  return new Volume({ data, dims, affine });
}

beforeAll(async () => {
  mkdirSync(join(tmp, 'ref'));
  mkdirSync(join(tmp, 'seg', 'case1'), { recursive: true });
  await writeNiftiFile(join(tmp, 'ref', 'case1.nii.gz'), box(2, true));
  await writeNiftiFile(join(tmp, 'seg', 'case1', 'mask.nii.gz'), box(3, false));
});

describe('alhvr-eval', () => {
  it('scores an alhvr-segment output folder against labelsTr-style references', async () => {
    const r = await runCli('alhvr-eval', ['--pred', join(tmp, 'seg'), '--ref', join(tmp, 'ref'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    const [m1, m2] = doc.cases[0].metrics;
    expect(doc.cases[0].id).toBe('case1');
    expect(m1.label).toBe(1);
    expect(m1.dice).toBeCloseTo(0.75, 10);
    expect(m1.jaccard).toBeCloseTo(0.6, 10);
    // Surfaces differ by one voxel step along i (2 mm) at the two i faces only.
    expect(m1.hd95Voxels).toBeCloseTo(1, 10);
    expect(m1.hd95Mm).toBeCloseTo(2, 10);
    expect(m2.label).toBe(2);
    expect(m2.dice).toBe(0);
    expect(m2.hd95Mm).toBeNull();
    expect(m2.predEmpty).toBe(true);
  });

  it('pairs alhvr-segment case ids of nnU-Net images (<case>_0000) with their labels', async () => {
    mkdirSync(join(tmp, 'seg2', 'case1_0000'), { recursive: true });
    await writeNiftiFile(join(tmp, 'seg2', 'case1_0000', 'mask.nii.gz'), box(3, false));
    const r = await runCli('alhvr-eval', ['--pred', join(tmp, 'seg2'), '--ref', join(tmp, 'ref'), '--json', '--classes', '1']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.cases.map((c: { id: string }) => c.id)).toEqual(['case1']);
    expect(doc.cases[0].metrics[0].dice).toBeCloseTo(0.75, 10);
  });

  it('scores a never-predicted class 0 on every metric with the released-code policy', async () => {
    const r = await runCli('alhvr-eval', ['--pred', join(tmp, 'seg'), '--ref', join(tmp, 'ref'), '--json', '--empty-policy', 'released-code', '--classes', '2']);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout).cases[0].metrics[0];
    expect([m.dice, m.jaccard, m.hd95Mm, m.asdMm]).toEqual([0, 0, 0, 0]);
  });

  it('fails with one line when nothing pairs up', async () => {
    const r = await runCli('alhvr-eval', ['--pred', join(tmp, 'ref'), '--ref', join(tmp, 'nowhere')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('nowhere');
  });
});
