import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generatePhantomCase, segmentationMetrics } from '@alhvr/core';
import { readNiftiFile, writeNiftiFile } from '@alhvr/core/node';
import { runCli } from './cli-harness.js';

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
