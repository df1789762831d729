// Mistakes a new user makes, answered with one clear line (or handled) instead of a raw error.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantomDataset } from '@alhvr/core/node';
import { runCli, stderrLines } from './cli-harness.js';

let tmp: string;
let dataset: string;
let seg: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'alhvr-clear-errors-'));
  dataset = join(tmp, 'Dataset001');
  await writePhantomDataset(dataset, { cases: 2, seed: 21 });
  seg = join(tmp, 'seg');
  // The dataset root, as a user would give it: labelsTr/ must not be segmented as images.
  const r = await runCli('alhvr-segment', [dataset, '--out', seg, '--verbose']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toContain('left out 2 label map(s) of an nnU-Net dataset');
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('alhvr-segment', () => {
  it('segments imagesTr of a dataset root and skips its label maps', () => {
    expect(readdirSync(seg).filter((f) => !f.includes('.')).sort()).toEqual(['phantom_000_0000', 'phantom_001_0000']);
  });

  it('keeps letters of any script in case ids', async () => {
    const input = join(tmp, 'names');
    mkdirSync(input);
    const image = join(dataset, 'imagesTr', 'phantom_000_0000.nii.gz');
    copyFileSync(image, join(input, 'Müller.nii.gz'));
    copyFileSync(image, join(input, '山田太郎.nii.gz'));
    const out = join(tmp, 'names-out');
    const r = await runCli('alhvr-segment', [input, '--out', out, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out).filter((f) => !f.includes('.')).sort()).toEqual(['Müller', '山田太郎']);
  });
});

describe('alhvr-eval', () => {
  it('refuses images given as references in one line, before scoring them', async () => {
    const r = await runCli('alhvr-eval', ['--pred', seg, '--ref', join(dataset, 'imagesTr')]);
    expect(r.code).toBe(1);
    const errors = stderrLines(r).filter((l) => l.includes('error'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^alhvr-eval: error: .*phantom_000_0000\.nii\.gz: --ref is not a label map: it holds the value .* give the labels \(e\.g\. labelsTr\), not the images$/);
  });

  it('does not warn "no prediction" for a reference it paired, and prints an aligned table', async () => {
    const refs = join(tmp, 'refs-with-channel-suffix');
    mkdirSync(refs);
    for (const f of readdirSync(join(dataset, 'labelsTr'))) copyFileSync(join(dataset, 'labelsTr', f), join(refs, f.replace('.nii.gz', '_0000.nii.gz')));
    const r = await runCli('alhvr-eval', ['--pred', seg, '--ref', refs, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/no prediction/);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^label\s+cases\s+Dice\s+Jaccard\s+HD95 mm\s+ASD mm$/);
    // Every column starts where its header does.
    const starts = (line: string) => [...line.matchAll(/(?<=^|\s{2})\S/g)].map((m) => m.index);
    for (const line of lines.slice(1)) expect(starts(line), line).toEqual(starts(lines[0]));
  });
});

describe('alhvr-info', () => {
  it('lists every readable image of a folder and names each unreadable one (exit 1)', async () => {
    const folder = join(tmp, 'info');
    mkdirSync(folder);
    copyFileSync(join(dataset, 'imagesTr', 'phantom_000_0000.nii.gz'), join(folder, 'good-a.nii.gz'));
    copyFileSync(join(dataset, 'imagesTr', 'phantom_001_0000.nii.gz'), join(folder, 'zz-good-b.nii.gz'));
    const bytes = readFileSync(join(folder, 'good-a.nii.gz'));
    writeFileSync(join(folder, 'broken.nii.gz'), bytes.subarray(0, bytes.length >> 1));
    writeFileSync(join(folder, 'random.nii'), Buffer.alloc(2000, 7));
    const r = await runCli('alhvr-info', [folder]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(join(folder, 'good-a.nii.gz'));
    expect(r.stdout).toContain(join(folder, 'zz-good-b.nii.gz'));
    const errors = stderrLines(r);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^alhvr-info: error: .*broken\.nii\.gz: /);
    expect(errors[1]).toMatch(/^alhvr-info: error: .*random\.nii: /);
    const json = await runCli('alhvr-info', [folder, '--json']);
    const doc = JSON.parse(json.stdout) as { images: unknown[]; errors: { path: string }[] };
    expect(doc.images).toHaveLength(2);
    expect(doc.errors.map((e) => e.path)).toEqual([join(folder, 'broken.nii.gz'), join(folder, 'random.nii')]);
  });
});

describe('alhvr-export', () => {
  it('--out naming an existing folder is one line, before any work', async () => {
    const folder = join(tmp, 'a-folder');
    mkdirSync(folder);
    const r = await runCli('alhvr-export', [join(tmp, 'no-run'), '--out', folder]);
    expect(r.code).toBe(1);
    expect(stderrLines(r)).toEqual([`alhvr-export: error: ${folder}: --out is a folder; give the ONNX file to write (e.g. model.onnx)`]);
  });
});
