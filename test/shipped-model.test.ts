import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generatePhantomCase, Rng, scalingAffine, segmentationMetrics, Volume } from '@alhvr/core';
import { readOnnxModelCard } from '@alhvr/export';
import { readNiftiFile, writeNiftiFile } from '@alhvr/core/node';
import { runCli } from './cli-harness.js';
import { daikonData } from './fixtures.js';

const defaultModelPath = () => fileURLToPath(new URL('../models/alhvr-default.onnx', import.meta.url));

// The embedded default must load, segment with no --model, and actually segment: on an unseen
// phantom its ensemble labels must overlap the truth (a broken or untrained model scores ~0).
const tmp = mkdtempSync(join(tmpdir(), 'alhvr-shipped-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('shipped default model', () => {
  it('segments an unseen phantom out of the box, on the input geometry, with useful Dice', async () => {
    const { image, label } = generatePhantomCase({ seed: 424242, index: 0 });
    await writeNiftiFile(join(tmp, 'case.nii.gz'), image);
    const r = await runCli('alhvr-segment', [join(tmp, 'case.nii.gz'), '--output', join(tmp, 'out'), '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const mask = await readNiftiFile(join(tmp, 'out', 'case', 'mask.nii.gz'));
    expect(mask.dims).toEqual(image.dims);
    mask.affine.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(image.affine[i][j], 4)));
    const metrics = segmentationMetrics(mask, label, [1, 2, 3]);
    const meanDice = metrics.reduce((s, m) => s + m.dice, 0) / 3;
    expect(meanDice).toBeGreaterThan(0.6);
    const report = JSON.parse(readFileSync(join(tmp, 'out', 'case', 'report.json'), 'utf8'));
    expect(JSON.stringify(report)).toContain('alhvr-default');
  });
});

describe('shipped default model: calibrated trust signals', () => {
  it('carries its calibration and intended use, and no path of the training machine', async () => {
    const bytes = new Uint8Array(readFileSync(defaultModelPath()));
    const card = readOnnxModelCard(bytes);
    expect(card.regions.gammaSource).toBe('calibrated');
    expect(card.calibration!.source.cases).toBeGreaterThanOrEqual(30);
    expect(card.calibration!.temperature).toBeGreaterThan(0);
    expect(card.intendedUse).toMatchObject({ modality: 'MR', bodyPart: 'HEART' });
    const config = card.training.config as { data: string; out: string };
    expect(config.data).not.toContain('/');
    expect(config.out).not.toContain('/');
  });

  it('predicts the Dice of unseen phantoms, and rejects noise and a CT', async () => {
    const inputs = join(tmp, 'trust');
    mkdirSync(inputs, { recursive: true });
    const truth = new Map<string, Volume<Uint8Array>>();
    for (const index of [1, 2, 3]) {
      const { image, label } = generatePhantomCase({ seed: 424242, index });
      await writeNiftiFile(join(inputs, `phantom${index}.nii.gz`), image);
      truth.set(`phantom${index}`, label);
    }
    const rng = new Rng(9);
    const dims: [number, number, number] = [160, 160, 8];
    const noise = Float32Array.from({ length: dims[0] * dims[1] * dims[2] }, () => rng.uniform(0, 1000));
    await writeNiftiFile(join(inputs, 'noise.nii.gz'), new Volume({ data: noise, dims, affine: scalingAffine([1.5, 1.5, 8]) }));
    copyFileSync(join(daikonData, 'rle.dcm'), join(inputs, 'ct.dcm'));
    const out = join(tmp, 'trust-out');
    const r = await runCli('alhvr-segment', [inputs, '--out', out, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const errors: number[] = [];
    for (const [id, label] of truth) {
      const report = JSON.parse(readFileSync(join(out, id, 'report.json'), 'utf8'));
      const mask = await readNiftiFile(join(out, id, 'mask.nii.gz'));
      const dice = segmentationMetrics(mask, label, [1, 2, 3]).reduce((s, m) => s + m.dice, 0) / 3;
      errors.push(Math.abs(report.quality.predictedDice - dice));
    }
    expect(errors.reduce((s, e) => s + e, 0) / errors.length).toBeLessThan(0.15);
    const noiseReport = JSON.parse(readFileSync(join(out, 'noise', 'report.json'), 'utf8'));
    expect(noiseReport.triage.verdict).toBe('reject');
    expect(noiseReport.triage.reasons.join(' ')).toMatch(/out of the model's domain/);
    const summary = readFileSync(join(out, 'summary.csv'), 'utf8');
    const ct = summary.split('\n').find((l) => /Modality CT/.test(l));
    expect(ct, summary).toBeDefined();
    expect(ct).toMatch(/,reject,/);
  }, 240_000); // one alhvr-segment run over five inputs; slow only on a loaded machine
});
