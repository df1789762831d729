// The pictures as the commands write them: alhvr-segment's summary.png, alhvr-train's
// progress.png/.svg after a run with a single validation, alhvr-eval --plot.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Volume } from '@alhvr/core';
import { writeNiftiFile, writePhantomDataset } from '@alhvr/core/node';
import { runCli } from './cli-harness.js';

let tmp: string;
let data: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-plots-'));
  data = join(tmp, 'phantom');
  await writePhantomDataset(data, { cases: 3, seed: 5 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Width and height from the PNG header, and the luminance variance of the decoded pixels (0 for a blank picture). */
function picture(path: string) {
  const bytes = readFileSync(path);
  const image = PNG.sync.read(bytes);
  let sum = 0;
  let sum2 = 0;
  const n = image.width * image.height;
  for (let p = 0; p < n; p++) {
    const y = 0.299 * image.data[4 * p] + 0.587 * image.data[4 * p + 1] + 0.114 * image.data[4 * p + 2];
    sum += y;
    sum2 += y * y;
  }
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), variance: sum2 / n - (sum / n) ** 2 };
}

describe('pictures written by the commands', () => {
  it('alhvr-segment draws summary.png beside summary.csv, failed cases included', async () => {
    const input = join(tmp, 'inputs');
    mkdirSync(input);
    copyFileSync(join(data, 'imagesTr', readdirSync(join(data, 'imagesTr'))[0]), join(input, 'good.nii.gz'));
    writeFileSync(join(input, 'broken.nii.gz'), Buffer.from('not a NIfTI file'));
    const out = join(tmp, 'seg');
    const r = await runCli('alhvr-segment', [input, '--out', out]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).not.toMatch(/summary\.png not drawn/);
    const p = picture(join(out, 'summary.png'));
    expect([p.width, p.height]).toEqual([1200, 560]);
    expect(p.variance).toBeGreaterThan(100);
  });

  it('alhvr-train draws progress.png and progress.svg after its single validation', async () => {
    const out = join(tmp, 'run');
    const small = ['--patch', '32', '--widths', '2,4,8,16,32', '--batch', '1+1', '--labeled-cases', '1', '--val-cases', '1', '--backend', 'wasm', '--threads', '1'];
    const r = await runCli('alhvr-train', ['--data', data, '--out', out, '--iterations', '3', '--val-every', '1000', '--checkpoint-every', '1000', '--quiet', ...small]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const p = picture(join(out, 'progress.png'));
    expect(p.width).toBe(1600);
    expect(p.height).toBeGreaterThan(600);
    expect(p.variance).toBeGreaterThan(100);
    const svg = readFileSync(join(out, 'progress.svg'), 'utf8');
    expect(svg).toMatch(/best A: Dice \d\.\d{3} @ 3/);
    expect(svg).toMatch(/best B: Dice \d\.\d{3} @ 3/);
  });

  it('alhvr-eval --plot writes the distribution picture; a --plot that is not a .png is a usage error before anything is read', async () => {
    const dims: [number, number, number] = [10, 8, 4];
    const box = (i0: number) => {
      const v = new Uint8Array(10 * 8 * 4);
      for (let k = 1; k < 3; k++) for (let j = 2; j < 6; j++) for (let i = i0; i < i0 + 4; i++) v[i + 10 * (j + 8 * k)] = 1;
      return new Volume({ data: v, dims, affine: [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 5, 0], [0, 0, 0, 1]] });
    };
    for (const d of ['ref', 'pred']) mkdirSync(join(tmp, d));
    for (const [id, shift] of [['c1', 0], ['c2', 1], ['c3', 3]] as const) {
      await writeNiftiFile(join(tmp, 'ref', `${id}.nii.gz`), box(2));
      await writeNiftiFile(join(tmp, 'pred', `${id}.nii.gz`), box(2 + shift));
    }
    const png = join(tmp, 'plots', 'eval.png');
    const r = await runCli('alhvr-eval', ['--pred', join(tmp, 'pred'), '--ref', join(tmp, 'ref'), '--plot', png, '--plot-threshold', '0.5']);
    expect(r.code, r.stderr).toBe(0);
    const p = picture(png);
    expect(p.width).toBe(1400);
    expect(p.variance).toBeGreaterThan(100);

    const bad = await runCli('alhvr-eval', ['--pred', join(tmp, 'pred'), '--ref', join(tmp, 'ref'), '--plot', join(tmp, 'eval.jpg')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--plot writes a PNG/);
    expect(existsSync(join(tmp, 'eval.jpg'))).toBe(false);
  });
});
