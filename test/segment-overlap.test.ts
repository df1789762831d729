import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePhantomCase, type Volume, type VoxelArray } from '@alhvr/core';
import { readDicomSeries, readNiftiFile, writeNiftiFile } from '@alhvr/core/node';
import { discoverInputs, openModelFile, runSegmentation, segmentVolume, type SegmentResult } from '@alhvr/inference/node';
import { daikonSeries } from './fixtures.js';
import { makeToyModel } from './segment-toy-model.js';

// The run reads the next case (files, hash, .nii.gz inflated by node:zlib) while the current one
// is segmented, and writes outputs while the next is segmented. None of that may change a voxel:
// each case's maps must equal segmenting core's own reading of the file, one case at a time.

let dir: string;
let model: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-segment-overlap-'));
  model = makeToyModel(dir, { size: [64, 64] });
  mkdirSync(join(dir, 'input'));
  for (let index = 0; index < 3; index++) {
    await writeNiftiFile(join(dir, 'input', `phantom_${index}.nii.gz`), generatePhantomCase({ seed: 5, index }).image);
  }
  copyFileSync(join(dir, 'input', 'phantom_1.nii.gz'), join(dir, 'input', 'phantom_1_copy.nii.gz'));
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sameVoxels(a: Volume<VoxelArray>, b: Volume<VoxelArray>, what: string): void {
  expect(a.dims, what).toEqual(b.dims);
  expect(a.data.length, what).toBe(b.data.length);
  let differing = 0;
  for (let n = 0; n < a.data.length; n++) if (a.data[n] !== b.data[n]) differing++;
  expect(differing, what).toBe(0);
}

describe('overlapped reading and writing', () => {
  it('gives each case exactly the maps of segmenting it alone from core\'s reader', async () => {
    const out = join(dir, 'out');
    const { cases } = await discoverInputs([join(dir, 'input'), daikonSeries]);
    expect(cases).toHaveLength(5);
    const run = await runSegmentation(cases.map((c) => c.source), { output: out, model, device: 'cpu', threads: 2, batch: 4, formats: new Set(['nifti']), preview: false });
    expect(run.failed).toBe(0);
    const opened = await openModelFile(model, { device: 'cpu', threads: 2 });
    try {
      for (const c of run.cases) {
        const source = c.source;
        const image = source.kind === 'nifti' ? await readNiftiFile(source.path) : await readDicomSeries(source.series.files, { seriesUID: source.series.id });
        const alone: SegmentResult = await segmentVolume(image, opened.model, { batch: 4 });
        sameVoxels(await readNiftiFile(join(out, c.id, 'mask.nii.gz')), alone.label, `${c.id} mask`);
        sameVoxels(await readNiftiFile(join(out, c.id, 'confidence.nii.gz')), alone.confidence, `${c.id} confidence`);
        sameVoxels(await readNiftiFile(join(out, c.id, 'region.nii.gz')), alone.region!, `${c.id} region`);
      }
    } finally {
      await opened.model.release();
    }
  });
});
