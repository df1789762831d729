import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { maxAbsDiff4 } from '@alhvr/core';
import { readNiftiFile, writeAbdomenCtDataset } from '@alhvr/core/node';
import { checkParity, exportOnnx, loadRunForExport, readOnnxModelCard } from '@alhvr/export';
import { runSegmentation } from '@alhvr/inference/node';
import { resolveConfig, train, type TrainConfig } from '@alhvr/training';

// The 3D chain end to end: a vnet3d run written by the trainer (1 iteration, tiny widths) is
// exported and segmented as alhvr-export and alhvr-segment do, each reading only what the previous step wrote.
let work: string;
let ct: string;
let run: string;
let config: TrainConfig;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'alhvr-export-3d-train-'));
  ct = join(work, 'ct');
  run = join(work, 'run');
  await writeAbdomenCtDataset(ct, { cases: 4, seed: 8, matrix: 32 });
  config = resolveConfig({
    data: ct,
    out: run,
    network: 'vnet3d',
    labeledCases: 2,
    valCases: 1,
    iterations: 1,
    patch: 16,
    widths: [4, 4, 4, 4, 4],
    // No validation: the chain needs the checkpoint, not a score.
    valEvery: 100,
    checkpointEvery: 1,
    backend: 'wasm',
    threads: 1,
    seed: 5,
    preprocessing: { targetSpacing: [1.6, 1.6, 3] },
  });
  await train(config, { events: { log: () => {} } });
}, 240_000);
afterAll(() => rm(work, { recursive: true, force: true }));

describe('a trained vnet3d run through export and segmentation', () => {
  it('exports with the run\'s preprocessing in the card and segments a CT back on its grid', async () => {
    // In-process (the CLIs' own tests cover their flags): loadRunForExport and runSegmentation are what they call.
    const loaded = await loadRunForExport(run);
    let onnx: Uint8Array;
    try {
      onnx = exportOnnx(loaded.students, loaded.card).onnx;
      const parity = await checkParity(loaded.students, onnx, { slices: 1 });
      expect(parity.failures).toEqual([]);
    } finally {
      loaded.students.forEach((s) => s.dispose());
    }
    const model = join(work, 'ct.onnx');
    await writeFile(model, onnx);
    const card = readOnnxModelCard(onnx);
    const saved = JSON.parse(await readFile(join(run, 'config.json'), 'utf8')).config;
    expect(card.dimensions).toBe(3);
    expect(card.input.size).toEqual([16, 16, 16]);
    // Verbatim from the run: the measured CT rule and the spacing.
    expect(card.normalisation).toEqual(saved.preprocessing.normalisation);
    expect(card.normalisation.kind).toBe('ct-foreground');
    expect(card.targetSpacing).toEqual([1.6, 1.6, 3]);
    expect(card.resize).toEqual(saved.preprocessing.resize);
    expect(card.regions.beta).toBe(0.7);

    const image = join(ct, 'imagesTr', (await readdir(join(ct, 'imagesTr'))).sort()[0]);
    const out = join(work, 'out');
    const result = await runSegmentation([{ kind: 'nifti', path: image }], { output: out, model, device: 'cpu', threads: 1, preview: false });
    expect(result.exitCode).toBe(0);
    const caseId = result.entries[0].caseId;
    const [mask, source] = await Promise.all([readNiftiFile(join(out, caseId, 'mask.nii.gz')), readNiftiFile(image)]);
    expect(mask.dims).toEqual(source.dims);
    expect(maxAbsDiff4(mask.affine, source.affine)).toBeLessThan(1e-5);
    expect(Math.max(...mask.data)).toBeLessThan(card.classes.length);
    const report = JSON.parse(await readFile(join(out, caseId, 'report.json'), 'utf8'));
    expect(report.slidingWindow.patch).toEqual([16, 16, 16]);
    expect(report.slidingWindow.windows).toBeGreaterThanOrEqual(1);
  }, 240_000);
});
