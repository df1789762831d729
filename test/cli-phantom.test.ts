import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDicomSlice, readNiftiIndependently, runCli, stderrLines } from './cli-harness.js';

const tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-phantom-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

describe('alhvr-phantom', () => {
  it('writes N cases with labels and a dataset.json, reporting progress', async () => {
    const out = join(tmp, 'ds');
    const result = await runCli('alhvr-phantom', ['--out', out, '--cases', '2', '--seed', '7']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/\[2\/2\] 100%/);
    const dataset = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')) as {
      numTraining: number;
      labels: Record<string, number>;
      file_ending: string;
    };
    expect(dataset.numTraining).toBe(2);
    const images = readdirSync(join(out, 'imagesTr')).sort();
    const labels = readdirSync(join(out, 'labelsTr')).sort();
    expect(images).toHaveLength(2);
    expect(labels).toHaveLength(2);
    const allowed = new Set(Object.values(dataset.labels));
    for (let n = 0; n < 2; n++) {
      expect(images[n].endsWith(`_0000${dataset.file_ending}`)).toBe(true);
      const image = readNiftiIndependently(join(out, 'imagesTr', images[n]));
      const label = readNiftiIndependently(join(out, 'labelsTr', labels[n]));
      expect(label.header.dims.slice(1, 4)).toEqual(image.header.dims.slice(1, 4));
      for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) expect(label.affine[r][c]).toBeCloseTo(image.affine[r][c], 5);
      const present = new Set(label.values);
      for (const v of present) expect(allowed.has(v)).toBe(true);
      expect(present.size).toBeGreaterThan(1);
      expect(Math.max(...image.values.slice(0, 100000)) > Math.min(...image.values.slice(0, 100000))).toBe(true);
    }
  });

  it('gives identical files for the same seed and different ones for another', async () => {
    const a = join(tmp, 'seed-a');
    const b = join(tmp, 'seed-b');
    const c = join(tmp, 'seed-c');
    const runs = await Promise.all(
      [
        [a, '11'],
        [b, '11'],
        [c, '12'],
      ].map(([out, seed]) => runCli('alhvr-phantom', ['--out', out, '--cases', '1', '--seed', seed, '--quiet'])),
    );
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(runs.map((r) => r.stdout + r.stderr)).toEqual(['', '', '']);
    // Voxels, not file bytes: a gzip header carries its write time.
    const file = join('imagesTr', readdirSync(join(a, 'imagesTr'))[0]);
    const [va, vb, vc] = [a, b, c].map((d) => readNiftiIndependently(join(d, file)).values);
    expect(va.length).toBe(vb.length);
    expect(va.every((v, n) => v === vb[n])).toBe(true);
    expect(va.length === vc.length && va.every((v, n) => v === vc[n])).toBe(false);
  });

  it('--kind abdomen-ct writes HU images (int16), organ labels, a CT dataset.json and, with --dicom, a CT series matching the NIfTI', async () => {
    const out = join(tmp, 'ct');
    const args = ['--out', out, '--cases', '2', '--seed', '5', '--kind', 'abdomen-ct', '--matrix', '96', '--dicom'];
    const result = await runCli('alhvr-phantom', args);
    expect(result.code, result.stderr).toBe(0);
    const dataset = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')) as {
      channel_names: Record<string, string>;
      labels: Record<string, number>;
      contrastPhases: Record<string, string>;
    };
    expect(dataset.channel_names).toEqual({ '0': 'CT' });
    expect(dataset.labels).toEqual({ background: 0, liver: 1, kidney: 2, spleen: 3, pancreas: 4 });
    expect(Object.keys(dataset.contrastPhases)).toEqual(['phantom_000', 'phantom_001']);
    const image = readNiftiIndependently(join(out, 'imagesTr', 'phantom_000_0000.nii.gz'));
    const label = readNiftiIndependently(join(out, 'labelsTr', 'phantom_000.nii.gz'));
    expect(image.datatypeCode).toBe(4); // int16
    const [nx, ny, nz] = image.header.dims.slice(1, 4);
    expect([nx, ny]).toEqual([96, 96]);
    expect(new Set(label.values)).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(image.values.reduce((m, v) => Math.min(m, v), Infinity)).toBeGreaterThanOrEqual(-1024);
    // The DICOM series: one CT slice per k, HU equal to the NIfTI's voxels, positions along +z (LPS).
    const files = readdirSync(join(out, 'dicom', 'phantom_000')).sort();
    expect(files).toHaveLength(nz);
    for (const k of [0, nz - 1]) {
      const slice = parseDicomSlice(join(out, 'dicom', 'phantom_000', files[k]));
      expect(slice.modality).toBe('CT');
      expect([slice.rows, slice.columns]).toEqual([ny, nx]);
      const nifti = image.values.subarray(k * nx * ny, (k + 1) * nx * ny);
      expect(slice.values.every((v, n) => v === nifti[n])).toBe(true);
      // RAS affine → LPS: negate x and y of the voxel (0, 0, k) position.
      const ras = [0, 1, 2].map((r) => image.affine[r][2] * k + image.affine[r][3]);
      expect(slice.ipp[0]).toBeCloseTo(-ras[0], 3);
      expect(slice.ipp[1]).toBeCloseTo(-ras[1], 3);
      expect(slice.ipp[2]).toBeCloseTo(ras[2], 3);
    }
  });

  it('--kind abdomen-ct: same seed same bytes (NIfTI voxels and every DICOM file)', async () => {
    const [a, b] = [join(tmp, 'ct-a'), join(tmp, 'ct-b')];
    const runs = await Promise.all(
      [a, b].map((out) => runCli('alhvr-phantom', ['--out', out, '--cases', '1', '--seed', '9', '--kind', 'abdomen-ct', '--matrix', '64', '--dicom', '--quiet'])),
    );
    expect(runs.map((r) => r.code)).toEqual([0, 0]);
    const va = readNiftiIndependently(join(a, 'imagesTr', 'phantom_000_0000.nii.gz')).values;
    const vb = readNiftiIndependently(join(b, 'imagesTr', 'phantom_000_0000.nii.gz')).values;
    expect(va.every((v, n) => v === vb[n])).toBe(true);
    const files = readdirSync(join(a, 'dicom', 'phantom_000'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(readFileSync(join(a, 'dicom', 'phantom_000', f)).equals(readFileSync(join(b, 'dicom', 'phantom_000', f)))).toBe(true);
    }
  });

  it('--kind abdomen-ct --shift: the same labels as the in-domain case, other voxels, recorded in dataset.json', async () => {
    const [plain, shifted] = [join(tmp, 'ct-plain'), join(tmp, 'ct-shift')];
    const runs = await Promise.all(
      [[plain], [shifted, '--shift', '1.5']].map(([out, ...extra]) => runCli('alhvr-phantom', ['--out', out, '--cases', '1', '--seed', '9', '--kind', 'abdomen-ct', '--matrix', '64', '--quiet', ...extra])),
    );
    expect(runs.map((r) => r.code)).toEqual([0, 0]);
    const labels = [plain, shifted].map((d) => readNiftiIndependently(join(d, 'labelsTr', 'phantom_000.nii.gz')).values);
    expect(labels[0].every((v, n) => v === labels[1][n])).toBe(true);
    const images = [plain, shifted].map((d) => readNiftiIndependently(join(d, 'imagesTr', 'phantom_000_0000.nii.gz')).values);
    expect(images[0].some((v, n) => v !== images[1][n])).toBe(true);
    expect(JSON.parse(readFileSync(join(shifted, 'dataset.json'), 'utf8')).shift).toBe(1.5);
    expect(JSON.parse(readFileSync(join(plain, 'dataset.json'), 'utf8')).shift).toBeUndefined();
  });

  it('rejects cardiac-only and CT-only options on the other kind with one line', async () => {
    const bad = [
      ['--dicom'],
      ['--kind', 'abdomen-ct', '--matrix', '7'],
    ];
    const results = await Promise.all(bad.map((extra) => runCli('alhvr-phantom', ['--out', join(tmp, 'never'), '--cases', '1', '--seed', '1', ...extra])));
    for (const result of results) {
      expect(result.code).toBe(2);
      expect(stderrLines(result)).toHaveLength(1);
    }
    expect(existsSync(join(tmp, 'never'))).toBe(false);
  });

  it('refuses a non-empty output folder with one line and leaves it as it was', async () => {
    const out = join(tmp, 'occupied');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'mine');
    const result = await runCli('alhvr-phantom', ['--out', out, '--cases', '1', '--seed', '1']);
    expect(result.code).toBe(1);
    expect(stderrLines(result)).toHaveLength(1);
    expect(stderrLines(result)[0]).toContain('occupied');
    expect(listTree(out)).toEqual(['keep.txt']);
  });

  it('stops on Ctrl-C with exit code 130 and leaves no partial dataset', async () => {
    const parent = join(tmp, 'interrupted');
    mkdirSync(parent);
    const out = join(parent, 'ds');
    let sent = false;
    const result = await runCli('alhvr-phantom', ['--out', out, '--cases', '500', '--seed', '3'], {
      // Interrupt once the first case is done, i.e. in the middle of the run.
      onStderr: (chunk, child) => {
        if (!sent && /\[1\/500\]/.test(chunk)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    });
    expect(sent).toBe(true);
    expect(result.code).toBe(130);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });
});
