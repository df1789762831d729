// The shipped abdominal CT model (`--model abdomen-ct`): it must load by name, run its sliding
// window on a CT volume it never saw, return labels on the input grid, and find every organ (an
// untrained or collapsed model finds the liver only, or nothing). Its card must say what it is.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateAbdomenCtCase, segmentationMetrics } from '@alhvr/core';
import { readNiftiFile, writeNiftiFile } from '@alhvr/core/node';
import { readOnnxModelCard } from '@alhvr/export';
import { runCli } from './cli-harness.js';

const modelPath = fileURLToPath(new URL('../models/alhvr-abdomen-ct.onnx', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'alhvr-shipped-ct-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('shipped abdominal CT model', () => {
  it('is a calibrated 3D CT model with float16-stored weights, under 10 MB, that names no path of the training machine', () => {
    // Files in git stay under 10 MB: the weights are stored in half precision (float32 compute).
    expect(statSync(modelPath).size).toBeLessThan(10e6);
    const card = readOnnxModelCard(new Uint8Array(readFileSync(modelPath)));
    expect(card.precision).toEqual({ network: 'fp16-weights' });
    expect(card.dimensions).toBe(3);
    expect(card.classes.map((c) => c.name)).toEqual(['background', 'liver', 'kidney', 'spleen', 'pancreas']);
    expect(card.intendedUse).toMatchObject({ modality: 'CT', bodyPart: 'ABDOMEN' });
    expect(card.regions.gammaSource).toBe('calibrated');
    expect(card.calibration!.temperature).toBeGreaterThan(0);
    const config = card.training.config as { data: string; out: string };
    expect(config.data).not.toContain('/');
    expect(config.out).not.toContain('/');
  });

  it('segments an unseen CT phantom by name, on its grid, finding every organ', async () => {
    // Seed 424242 is none of the recipe's (training 3031, calibration 4401, test 4343).
    const { image, label } = generateAbdomenCtCase({ seed: 424242, index: 0, matrix: 128, body: 'adult' });
    await writeNiftiFile(join(tmp, 'ct.nii.gz'), image);
    const r = await runCli('alhvr-segment', [join(tmp, 'ct.nii.gz'), '--model', 'abdomen-ct', '--output', join(tmp, 'out'), '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const mask = await readNiftiFile(join(tmp, 'out', 'ct', 'mask.nii.gz'));
    expect(mask.dims).toEqual(image.dims);
    mask.affine.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo(image.affine[i][j], 4)));
    const dice = Object.fromEntries(segmentationMetrics(mask, label, [1, 2, 3, 4]).map((m) => [m.label, m.dice]));
    expect(dice[1], JSON.stringify(dice)).toBeGreaterThan(0.85);
    for (const organ of [2, 3, 4]) expect(dice[organ], JSON.stringify(dice)).toBeGreaterThan(0.4);
    const report = JSON.parse(readFileSync(join(tmp, 'out', 'ct', 'report.json'), 'utf8'));
    expect(JSON.stringify(report)).toContain('alhvr-abdomen-ct');
    expect(['accept', 'review', 'reject']).toContain(report.triage.verdict);
    expect(report.quality.predictedDice).toBeGreaterThan(0);
  }, 240_000);
});
