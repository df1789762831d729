// preview.png as a segment run writes it: annotated (header, legend) when the caller passes the
// plots' rasterizer, as alhvr-segment does; the montage alone without one. The header's verdict
// badge follows the case's own verdict in report.json, and the legend shows the card's colours.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { Volume, scalingAffine } from '@alhvr/core';
import { writeNiftiFile } from '@alhvr/core/node';
import { CASE_FILES, VERDICT_COLORS, runSegmentation } from '@alhvr/inference/node';
import { rasterizeSvgLayer } from '../cli/src/lib/plots/render.js';
import { runCli } from './cli-harness.js';
import { makeToyModel } from './segment-toy-model.js';

let dir: string;
let model: string;
let image: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-segment-preview-'));
  model = makeToyModel(dir, { size: [32, 32] });
  // A bright disc through the middle slices of a 32×32×10 volume.
  const dims: [number, number, number] = [32, 32, 10];
  const data = new Float32Array(32 * 32 * 10);
  for (let k = 2; k < 8; k++) for (let j = 0; j < 32; j++) for (let i = 0; i < 32; i++) data[i + 32 * (j + 32 * k)] = Math.hypot(i - 16, j - 16) < 8 ? 100 : (i * 7 + j * 3) % 20;
  image = join(dir, 'disc.nii.gz');
  await writeNiftiFile(image, new Volume({ data, dims, affine: scalingAffine([1, 1, 3]) }));
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const read = (out: string) => PNG.sync.read(readFileSync(join(out, 'disc', CASE_FILES.preview)));
const pixel = (png: PNG, x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3));

describe('preview.png from a segment run', () => {
  it('carries the verdict of report.json and the card colours when a rasterizer is given; the montage alone otherwise', async () => {
    const annotated = join(dir, 'annotated');
    const plain = join(dir, 'plain');
    const run = (output: string, withRasterizer: boolean) =>
      runSegmentation([{ kind: 'nifti', path: image }], { output, model, device: 'cpu', threads: 1, formats: new Set(['nifti'] as const), ...(withRasterizer ? { previewRasterizer: rasterizeSvgLayer } : {}) });
    expect((await run(annotated, true)).exitCode).toBe(0);
    expect((await run(plain, false)).exitCode).toBe(0);
    const report = JSON.parse(readFileSync(join(annotated, 'disc', CASE_FILES.report), 'utf8'));
    const withText = read(annotated);
    const montage = read(plain);
    // Header above, legend below: taller than the montage, which sits in it pixel for pixel (below the tiles' captions).
    expect(withText.height).toBeGreaterThan(montage.height + 44);
    expect(pixel(withText, 9, 27)).toEqual([...VERDICT_COLORS[report.triage.verdict as 'accept' | 'review' | 'reject']]);
    const row = 2 + 30;
    for (let x = 0; x < montage.width; x += 5) expect(pixel(withText, x, 44 + row)).toEqual(pixel(montage, x, row));
    // The first legend swatch is the first foreground class's colour.
    const first = report.model.classes.find((c: { value: number }) => c.value !== 0);
    expect(pixel(withText, 13, 44 + montage.height + 4 + 9)).toEqual(first.color);
  }, 120_000);

  it('alhvr-segment writes the annotated picture', async () => {
    const out = join(dir, 'cli');
    const r = await runCli('alhvr-segment', [image, '--out', out, '--model', model, '--formats', 'nifti', '--threads', '1']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'disc', CASE_FILES.report), 'utf8'));
    expect(pixel(read(out), 9, 27)).toEqual([...VERDICT_COLORS[report.triage.verdict as 'accept' | 'review' | 'reject']]);
  }, 120_000);
});
