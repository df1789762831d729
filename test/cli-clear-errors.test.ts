// Mistakes a new user makes, answered with one clear line (or handled) instead of a raw error.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Volume } from '@alhvr/core';
import { readNiftiFile, writeNiftiFile, writePhantomDataset } from '@alhvr/core/node';
import { readManifest } from '@alhvr/inference/node';
import { runCli, stderrLines } from './cli-harness.js';
import { daikonSeries } from './fixtures.js';

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

describe('alhvr-segment on DICOM', () => {
  it("records a series under its own folder, not the folder searched", async () => {
    const studies = join(tmp, 'studies');
    const series = join(studies, 'patient-a', 'series-7');
    mkdirSync(series, { recursive: true });
    for (const f of readdirSync(daikonSeries)) copyFileSync(join(daikonSeries, f), join(series, f));
    const out = join(tmp, 'dicom-out');
    const r = await runCli('alhvr-segment', [studies, '--out', out, '--quiet', '--formats', 'nifti']);
    expect(r.code, r.stderr).toBe(0);
    const [entry] = [...(await readManifest(out)).values()];
    expect(entry.kind).toBe('dicom-series');
    expect(entry.input).toBe(series);
  });
});

describe('alhvr-segment on a 4D NIfTI (cine MR)', () => {
  let cine: string;
  beforeAll(async () => {
    const image = await readNiftiFile(join(dataset, 'imagesTr', 'phantom_000_0000.nii.gz'));
    const frame = Float32Array.from(image.data);
    const data = new Float32Array(frame.length * 3);
    for (let t = 0; t < 3; t++) data.set(frame.map((v) => v * (1 + 0.1 * t)), t * frame.length);
    cine = join(tmp, 'cine.nii.gz');
    await writeNiftiFile(cine, new Volume({ data, dims: image.dims, affine: image.affine, frames: 3 }));
  });
  const summaryRows = (out: string) => {
    const [header, ...rows] = readFileSync(join(out, 'summary.csv'), 'utf8').trim().split('\n');
    const col = header.split(',').indexOf('warnings');
    return rows.map((r) => ({ id: r.split(',')[0], status: r.split(',')[1], warnings: r.split(',')[col] }));
  };

  it('by default segments volume 0 and says so on the terminal and in summary.csv', async () => {
    const out = join(tmp, 'cine-default');
    const r = await runCli('alhvr-segment', [cine, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('case cine: warning: 4D file with 3 volumes; using volume 0');
    expect(summaryRows(out)).toEqual([{ id: 'cine', status: 'ok', warnings: '4D file with 3 volumes; using volume 0' }]);
  });

  it('--volume all makes every volume a case <id>_t<N>; --volume N picks one; a bad N fails that case', async () => {
    const all = join(tmp, 'cine-all');
    const r = await runCli('alhvr-segment', [cine, '--out', all, '--volume', 'all', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(summaryRows(all).map((x) => x.id).sort()).toEqual(['cine_t0', 'cine_t1', 'cine_t2']);
    const one = join(tmp, 'cine-one');
    expect((await runCli('alhvr-segment', [cine, '--out', one, '--volume', '2', '--quiet'])).code).toBe(0);
    const mask = (dir: string) => readFileSync(join(dir, 'mask.nii.gz'));
    expect(mask(join(one, 'cine')).equals(mask(join(all, 'cine_t2')))).toBe(true);
    const beyond = await runCli('alhvr-segment', [cine, '--out', join(tmp, 'cine-beyond'), '--volume', '7']);
    expect(beyond.code).toBe(1);
    expect(beyond.stderr).toMatch(/case cine failed: .*volume index 7 is out of range: the file has 3 volume/);
    const bad = await runCli('alhvr-segment', [cine, '--out', join(tmp, 'cine-bad'), '--volume', 'last']);
    expect(bad.code).toBe(2);
    expect(stderrLines(bad)).toEqual(['alhvr-segment: error: --volume must be a volume index (0, 1, …) or "all" (got "last")']);
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
