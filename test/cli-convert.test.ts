import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daikonData, daikonSeries, niftiData } from './fixtures.js';
import { type DicomSlice, applyAffine, cross, dot, parseDicomSlice, readNiftiIndependently, runCli, stderrLines } from './cli-harness.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-convert-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const rasToLps = (p: number[]) => [-p[0], -p[1], p[2]];

describe('alhvr-convert DICOM series → NIfTI', () => {
  let slices: DicomSlice[];
  let out: string;

  beforeAll(async () => {
    slices = readdirSync(daikonSeries)
      .filter((f) => f.endsWith('.dcm'))
      .map((f) => parseDicomSlice(join(daikonSeries, f)));
    out = join(tmp, 'series.nii.gz');
    const result = await runCli('alhvr-convert', [daikonSeries, '--out', out]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(out);
  });

  it('keeps every voxel at its DICOM world position with its DICOM value', () => {
    const nii = readNiftiIndependently(out);
    const [, nx, ny, nz] = nii.header.dims;
    expect([nx, ny, nz]).toEqual([slices[0].columns, slices[0].rows, slices.length]);
    const rowCos = slices[0].iop.slice(0, 3);
    const colCos = slices[0].iop.slice(3);
    const normal = cross(rowCos, colCos);
    const [rowSpacing, colSpacing] = slices[0].pixelSpacing;
    const usedSlices = new Set<DicomSlice>();
    let checked = 0;
    for (let k = 0; k < nz; k++) {
      // The slice whose plane holds voxel (0, 0, k). A NIfTI grid is regular, and this series' steps
      // vary by up to ~0.1 mm, so the plane may be off by a fraction of a millimetre along the normal.
      const origin = rasToLps(applyAffine(nii.affine, [0, 0, k]));
      const byDistance = slices.map((s) => Math.abs(dot([origin[0] - s.ipp[0], origin[1] - s.ipp[1], origin[2] - s.ipp[2]], normal)));
      const slice = slices[byDistance.indexOf(Math.min(...byDistance))];
      expect(Math.min(...byDistance)).toBeLessThan(0.6);
      usedSlices.add(slice);
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const w = rasToLps(applyAffine(nii.affine, [i, j, k]));
          const rel = [w[0] - slice.ipp[0], w[1] - slice.ipp[1], w[2] - slice.ipp[2]];
          const col = dot(rel, rowCos) / colSpacing;
          const row = dot(rel, colCos) / rowSpacing;
          const c = Math.round(col);
          const r = Math.round(row);
          // The slice steps of this series are not all along one line (up to 0.05 pixel of in-plane
          // drift), which a regular NIfTI grid cannot follow: allow 0.1 pixel, far below a pixel swap.
          if (Math.abs(col - c) > 0.1 || Math.abs(row - r) > 0.1 || c < 0 || r < 0 || c >= nx || r >= ny) {
            throw new Error(`voxel (${i},${j},${k}) lands at column ${col}, row ${row} of ${slice.file}`);
          }
          const expected = slice.values[r * slice.columns + c];
          const actual = nii.values[i + nx * (j + ny * k)];
          if (actual !== expected) throw new Error(`voxel (${i},${j},${k}) is ${actual}, DICOM pixel is ${expected}`);
          checked++;
        }
      }
    }
    expect(checked).toBe(nx * ny * nz);
    expect(usedSlices.size).toBe(slices.length);
  });

  it('stores the integral pixel values in a 16-bit integer type', () => {
    const nii = readNiftiIndependently(out);
    expect([4, 512]).toContain(nii.datatypeCode);
    expect(nii.header.scl_slope === 0 || nii.header.scl_slope === 1).toBe(true);
  });

  it('refuses to overwrite an existing output without --force, and overwrites with it', async () => {
    const before = readFileSync(out);
    const refused = await runCli('alhvr-convert', [daikonSeries, '--out', out]);
    expect(refused.code).toBe(1);
    expect(stderrLines(refused)).toHaveLength(1);
    expect(refused.stderr).toContain(out);
    expect(readFileSync(out).equals(before)).toBe(true);
    const forced = await runCli('alhvr-convert', [daikonSeries, '--out', out, '--force', '--quiet']);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toBe('');
  });
});

describe('alhvr-convert NIfTI → NIfTI', () => {
  it.each(['big.nii.gz', 'avg152T1_LR_nifti.nii.gz', 'avg152T1_LR_nifti2.nii.gz'])('%s keeps values and affine', async (file) => {
    const src = join(niftiData, file);
    const out = join(tmp, `copy-${file.replace(/\.nii(\.gz)?$/, '')}.nii`);
    const result = await runCli('alhvr-convert', [src, '--out', out]);
    expect(result.code).toBe(0);
    const a = readNiftiIndependently(src);
    const b = readNiftiIndependently(out);
    expect(b.header.dims.slice(1, 4)).toEqual(a.header.dims.slice(1, 4));
    expect(b.values.length).toBe(a.values.length);
    const firstDifference = a.values.findIndex((v, n) => b.values[n] !== v);
    expect(firstDifference).toBe(-1);
    for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) expect(b.affine[r][c]).toBeCloseTo(a.affine[r][c], 5);
    // Integer sources keep their type; float data holding only small integers is stored as int16.
    const integral = a.values.every((v) => Number.isInteger(v) && v >= -32768 && v <= 32767);
    const sourceIsInteger = ![16, 64].includes(a.datatypeCode);
    expect(b.datatypeCode).toBe(sourceIsInteger ? a.datatypeCode : integral ? 4 : 16);
  });

  it('applies scl_slope/scl_inter, and --volume picks one volume of a 5D file', async () => {
    const src = join(niftiData, '5D_small.nii');
    const ref = readNiftiIndependently(src);
    const voxels = ref.header.dims[1] * ref.header.dims[2] * ref.header.dims[3];
    const volumes = ref.values.length / voxels;
    expect(volumes).toBeGreaterThan(1);
    const all = join(tmp, '5d-all.nii.gz');
    expect((await runCli('alhvr-convert', [src, '--out', all])).code).toBe(0);
    const allBack = readNiftiIndependently(all);
    expect(allBack.values.length).toBe(ref.values.length);
    expect(allBack.values.every((v, n) => Math.abs(v - ref.values[n]) < 1e-6)).toBe(true);

    const one = join(tmp, '5d-volume2.nii.gz');
    expect((await runCli('alhvr-convert', [src, '--out', one, '--volume', String(volumes - 1)])).code).toBe(0);
    const oneBack = readNiftiIndependently(one);
    expect(oneBack.values.length).toBe(voxels);
    expect(oneBack.values.every((v, n) => Math.abs(v - ref.values[(volumes - 1) * voxels + n]) < 1e-6)).toBe(true);

    const bad = await runCli('alhvr-convert', [src, '--out', join(tmp, 'never.nii.gz'), '--volume', String(volumes)]);
    expect(bad.code).toBe(1);
    expect(stderrLines(bad)).toHaveLength(1);
    expect(bad.stderr).toContain('5D_small.nii');
    expect(existsSync(join(tmp, 'never.nii.gz'))).toBe(false);
  });
});

describe('alhvr-convert on a folder holding several series', () => {
  let mixed: string;
  let volumeUID: string;
  const others = ['implicit_little.dcm', 'explicit_little.dcm'];

  beforeAll(() => {
    mixed = join(tmp, 'mixed');
    mkdirSync(join(mixed, 'volume'), { recursive: true });
    for (const f of readdirSync(daikonSeries)) copyFileSync(join(daikonSeries, f), join(mixed, 'volume', f));
    for (const f of others) copyFileSync(join(daikonData, f), join(mixed, f));
    writeFileSync(join(mixed, 'notes.txt'), 'not an image\n');
    volumeUID = parseDicomSlice(join(daikonSeries, 'brain_001.dcm')).seriesUID;
  });

  it('without --series, fails with one line listing every series UID, description and file count', async () => {
    const out = join(tmp, 'mixed-out.nii.gz');
    const result = await runCli('alhvr-convert', [mixed, '--out', out]);
    expect(result.code).toBe(1);
    const lines = stderrLines(result);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^alhvr-convert: error: /);
    expect(lines[0]).toContain(mixed);
    expect(lines[0]).toContain(volumeUID);
    expect(lines[0]).toContain('FSE PD AXIAL OBL');
    expect(lines[0]).toContain('20 file');
    for (const f of others) {
      const bytes = readFileSync(join(daikonData, f)).toString('latin1');
      // Every other series' UID appears in the message (found in its bytes, not from our reader).
      const uid = f === 'implicit_little.dcm' ? '1.2.840.113619.2.1.3352.1136944889.4.834485379' : '999.999.2.19960619.163000.1';
      expect(bytes).toContain(uid);
      expect(lines[0]).toContain(uid);
    }
    expect(existsSync(out)).toBe(false);
  });

  it('--series picks one', async () => {
    const out = join(tmp, 'picked.nii.gz');
    const result = await runCli('alhvr-convert', [mixed, '--out', out, '--series', volumeUID]);
    expect(result.code).toBe(0);
    expect(readNiftiIndependently(out).header.dims.slice(1, 4)).toEqual([256, 256, 20]);
  });

  it('--out DIR/ writes one file per series, named from the series', async () => {
    const dir = join(tmp, 'per-series');
    const result = await runCli('alhvr-convert', [mixed, '--out', `${dir}/`]);
    expect(result.code).toBe(0);
    const names = readdirSync(dir).sort();
    expect(names).toHaveLength(3);
    expect(names.every((n) => /^[A-Za-z0-9][A-Za-z0-9._+-]*\.nii\.gz$/.test(n) && !n.includes('..'))).toBe(true);
    expect(names.some((n) => n.includes('FSE_PD_AXIAL_OBL'))).toBe(true);
    expect(names.some((n) => n.includes('FLAIR'))).toBe(true);
  });
});
