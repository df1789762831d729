import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { daikonData, daikonSeries } from '../../../test/fixtures.js';
import { InputError } from '../errors.js';
import { type Mat4, type Vec3, maxAbsDiff4 } from '../geometry/affine.js';
import { readDicomSeries, scanDicom } from './scan.js';

const seriesFiles = readdirSync(daikonSeries).filter((f) => f.endsWith('.dcm')).sort();
const tmpRoot = mkdtempSync(join(tmpdir(), 'alhvr-dicom-series-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const d = join(tmpRoot, `case${dirCount++}`);
  mkdirSync(d);
  return d;
}

/** Header values read directly with dicom-parser, independent of the reader under test. */
function header(path: string) {
  const ds = dicomParser.parseDicom(new Uint8Array(readFileSync(path)));
  const vals = (tag: string) => ds.string(tag)!.split('\\').map(Number);
  const el = ds.elements.x7fe00010;
  const pixels = new Int16Array(ds.byteArray.buffer.slice(ds.byteArray.byteOffset + el.dataOffset, ds.byteArray.byteOffset + el.dataOffset + el.length));
  return { ipp: vals('x00200032') as Vec3, iop: vals('x00200037'), ps: vals('x00280030'), pixels, sop: ds.string('x00080018')! };
}

describe('the 20-slice oblique MR series', async () => {
  const vol = await readDicomSeries(daikonSeries);
  const headers = seriesFiles.map((f) => ({ file: join(daikonSeries, f), ...header(join(daikonSeries, f)) }));
  const iop = headers[0].iop;
  const normal: Vec3 = [
    iop[1] * iop[5] - iop[2] * iop[4],
    iop[2] * iop[3] - iop[0] * iop[5],
    iop[0] * iop[4] - iop[1] * iop[3],
  ];
  const along = (p: Vec3) => p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
  const sorted = [...headers].sort((a, b) => along(a.ipp) - along(b.ipp));

  it('has the dims and type of the stored images', () => {
    expect(vol.dims).toEqual([256, 256, 20]);
    expect(vol.data).toBeInstanceOf(Int16Array);
    expect(vol.meta.kind).toBe('dicom-series');
    expect(vol.meta.sourceDatatype).toBe('int16');
  });

  it('reports the series’ own uneven spacing (steps differ by > 1 %), and strict mode refuses it', async () => {
    const pos = sorted.map((h) => along(h.ipp));
    const steps = pos.slice(1).map((p, k) => p - pos[k]);
    const med = [...steps].sort((a, b) => a - b)[9];
    const off = steps.filter((d) => Math.abs(d - med) > 0.01 * med);
    expect(off.length).toBeGreaterThan(0);
    const uneven = vol.meta.warnings.filter((w) => /uneven slice spacing/.test(w));
    expect(uneven).toHaveLength(1);
    expect(uneven[0].match(/\(step /g)).toHaveLength(off.length);
    await expect(readDicomSeries(daikonSeries, { strict: true })).rejects.toThrow(/uneven slice spacing/);
  });

  it('orders slices along the normal and keeps each slice’s pixels in row-major i/j order', () => {
    const refs = vol.meta.dicom!.slices;
    expect(refs.map((r) => r.sopInstanceUID)).toEqual(sorted.map((h) => h.sop));
    for (let k = 1; k < refs.length; k++) expect(along(refs[k].imagePositionPatient)).toBeGreaterThan(along(refs[k - 1].imagePositionPatient));
    for (const k of [0, 7, 19]) {
      const px = sorted[k].pixels;
      for (const [i, j] of [[10, 200], [128, 64], [255, 0], [3, 250]]) {
        expect(vol.data[vol.index(i, j, k)]).toBe(px[j * 256 + i]);
      }
    }
  });

  it('has the affine computed by hand from the first and last slice', () => {
    const first = sorted[0].ipp;
    const last = sorted[19].ipp;
    const [rs, cs] = sorted[0].ps; // between rows, between columns
    const lps: Mat4 = [
      [iop[0] * cs, iop[3] * rs, (last[0] - first[0]) / 19, first[0]],
      [iop[1] * cs, iop[4] * rs, (last[1] - first[1]) / 19, first[1]],
      [iop[2] * cs, iop[5] * rs, (last[2] - first[2]) / 19, first[2]],
      [0, 0, 0, 1],
    ];
    const ras = lps.map((row, r) => (r < 2 ? row.map((v) => -v) : row));
    expect(maxAbsDiff4(vol.affine, ras)).toBeLessThan(1e-9);
    expect(iop[4]).not.toBe(1); // really oblique
  });

  it('fills the DICOM meta', () => {
    const m = vol.meta.dicom!;
    expect(m.seriesInstanceUID).toBe('0.0.0.0.3.8811.2.20010413115754.12432');
    expect(m.modality).toBe('MR');
    expect(m.fileCount).toBe(20);
    expect(m.imageOrientationPatient).toEqual(iop);
    expect(m.pixelSpacing).toEqual([0.859375, 0.859375]);
    expect(m.transferSyntaxUIDs).toEqual(['1.2.840.10008.1.2.1']);
    expect(m.slices[0].file).toBe(sorted[0].file);
    expect(m.slices[0].frameNumber).toBeUndefined();
    expect(m.patientStudy.StudyInstanceUID).toMatch(/^[0-9.]+$/);
  });

  it('reads the same volume whatever the file names and order', async () => {
    const dir = freshDir();
    const order = [...seriesFiles].sort((a, b) => ((a.charCodeAt(7) * 7919) % 31) - ((b.charCodeAt(7) * 7919) % 31) || b.localeCompare(a));
    order.forEach((f, n) => copyFileSync(join(daikonSeries, f), join(dir, `img${String(n).padStart(2, '0')}`)));
    const shuffled = await readDicomSeries(dir);
    expect(shuffled.dims).toEqual(vol.dims);
    expect(maxAbsDiff4(shuffled.affine, vol.affine)).toBe(0);
    expect(Buffer.from(shuffled.data.buffer).equals(Buffer.from(vol.data.buffer))).toBe(true);
  });

  it('refuses a series with a missing middle slice, naming the gap', async () => {
    const dir = freshDir();
    const dropped = sorted[9].file;
    for (const h of headers) if (h.file !== dropped) copyFileSync(h.file, join(dir, h.file.split('/').pop()!));
    await expect(readDicomSeries(dir)).rejects.toThrow(/missing slices.*1 slice\(s\) missing between/);
    await expect(readDicomSeries(dir)).rejects.toBeInstanceOf(InputError);
  });

  it('keeps one copy of a file duplicated under another name, with a warning', async () => {
    const dir = freshDir();
    for (const h of headers) copyFileSync(h.file, join(dir, h.file.split('/').pop()!));
    copyFileSync(sorted[5].file, join(dir, 'copy-of-slice.dcm'));
    const v = await readDicomSeries(dir);
    expect(v.dims).toEqual([256, 256, 20]);
    expect(v.meta.warnings.some((w) => /duplicate slice.*copy-of-slice\.dcm|duplicate slice.*brain_006/.test(w))).toBe(true);
    expect(Buffer.from(v.data.buffer).equals(Buffer.from(vol.data.buffer))).toBe(true);
  });

  it('refuses two different images at the same position', async () => {
    const dir = freshDir();
    for (const h of headers) copyFileSync(h.file, join(dir, h.file.split('/').pop()!));
    const bytes = new Uint8Array(readFileSync(sorted[5].file));
    bytes[bytes.length - 1000] ^= 0x55;
    writeFileSync(join(dir, 'altered.dcm'), bytes);
    await expect(readDicomSeries(dir)).rejects.toThrow(/two different images at the same slice position/);
  });

  it('reads a single slice with the stated slice spacing', async () => {
    const v = await readDicomSeries(sorted[3].file);
    expect(v.dims).toEqual([256, 256, 1]);
    expect(v.spacing[2]).toBeCloseTo(2, 9); // SpacingBetweenSlices of these files
    for (let r = 0; r < 3; r++) for (const c of [0, 1]) expect(v.affine[r][c]).toBeCloseTo(vol.affine[r][c], 9);
    const ipp = sorted[3].ipp;
    expect([v.affine[0][3], v.affine[1][3], v.affine[2][3]]).toEqual([-ipp[0], -ipp[1], ipp[2]]);
  });
});

describe('folders with several series', () => {
  it('lists the series and refuses to guess', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b', 'deep'), { recursive: true });
    for (const f of seriesFiles) copyFileSync(join(daikonSeries, f), join(dir, 'a', f));
    copyFileSync(join(daikonData, 'jpeg_lossless_sel1.dcm'), join(dir, 'b', 'deep', 'ct.dcm'));
    writeFileSync(join(dir, 'notes.txt'), 'not a dicom file\n'.repeat(30));
    const scan = await scanDicom([dir]);
    expect(scan.series.map((s) => s.modality).sort()).toEqual(['CT', 'MR']);
    const mr = scan.series.find((s) => s.modality === 'MR')!;
    expect(mr.files).toHaveLength(20);
    expect(mr.dims).toEqual([256, 256, 20]);
    expect(scan.skipped).toHaveLength(1);
    expect(scan.skipped[0].path).toMatch(/notes\.txt$/);
    await expect(readDicomSeries(dir)).rejects.toThrow(/2 series found.*0\.0\.0\.0\.3\.8811\.2\.20010413115754\.12432/);
    const ct = await readDicomSeries(dir, { seriesUID: scan.series.find((s) => s.modality === 'CT')!.seriesInstanceUID });
    expect(ct.dims).toEqual([512, 400, 1]);
    expect(ct.meta.dicom!.transferSyntaxUIDs).toEqual(['1.2.840.10008.1.2.4.70']);
  });

  it('an empty folder is an InputError', async () => {
    await expect(readDicomSeries(freshDir())).rejects.toThrow(/no DICOM image files found/);
  });

  it('rescaled data becomes Float32 with slope and intercept applied', async () => {
    const v = await readDicomSeries(join(daikonData, 'rle.dcm'));
    expect(v.data).toBeInstanceOf(Float32Array);
    let min = Infinity;
    for (const x of v.data) min = Math.min(min, x);
    expect(min).toBe(-2000 - 1024); // stored minimum −2000 (padding), intercept −1024
  });
});
