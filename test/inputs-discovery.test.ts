import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDicomSeries, readNiftiFile } from '@alhvr/core/node';
import { diskFileReader, discoverInputs, readCaseInput, type InputFileReader } from '@alhvr/inference/node';
import { runCli } from './cli-harness.js';
import { daikonData, daikonSeries, niftiData } from './fixtures.js';
import { makeToyModel } from './segment-toy-model.js';

let tmp: string;
let input: string;

/** The disk reader, counting what it is asked for, per file. */
function countingReader(): InputFileReader & { heads: Map<string, number>; wholes: Map<string, number> } {
  const heads = new Map<string, number>();
  const wholes = new Map<string, number>();
  const bump = (m: Map<string, number>, p: string) => m.set(p, (m.get(p) ?? 0) + 1);
  return {
    heads,
    wholes,
    head: (path, length) => (bump(heads, path), diskFileReader.head(path, length)),
    whole: (path) => (bump(wholes, path), diskFileReader.whole(path)),
  };
}

/** The input hash as training's pseudo-label provenance recomputes it: name, length and bytes of each file, sorted. */
function independentHash(files: string[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort()) {
    const bytes = readFileSync(f);
    h.update(`${basename(f)}\0${bytes.length}\0`);
    h.update(bytes);
  }
  return h.digest('hex');
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'alhvr-inputs-'));
  input = join(tmp, 'input');
  mkdirSync(join(input, 'mr'), { recursive: true });
  mkdirSync(join(input, 'nested', 'deeper'), { recursive: true });
  for (const f of readdirSync(daikonSeries)) copyFileSync(join(daikonSeries, f), join(input, 'mr', f));
  copyFileSync(join(daikonData, 'implicit_little.dcm'), join(input, 'IM0001'));
  copyFileSync(join(niftiData, 'little.nii.gz'), join(input, 'nested', 'deeper', 'scan.nii.gz'));
  copyFileSync(join(niftiData, 'little.nii.gz'), join(input, 'scan.nii.gz'));
  // The commands' own test: small, since it runs both commands as processes.
  mkdirSync(join(tmp, 'small', 'nested'), { recursive: true });
  copyFileSync(join(daikonData, 'implicit_little.dcm'), join(tmp, 'small', 'IM0001'));
  copyFileSync(join(niftiData, 'little.nii.gz'), join(tmp, 'small', 'nested', 'scan.nii.gz'));
  copyFileSync(join(niftiData, 'little.nii.gz'), join(tmp, 'small', 'scan.nii.gz'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('input discovery reads each DICOM file once for hash and parse', () => {
  it('discovery reads only headers; a case reads each of its files whole exactly once', async () => {
    const reader = countingReader();
    const { cases } = await discoverInputs([join(input, 'mr')], { reader });
    expect(cases).toHaveLength(1);
    const source = cases[0].source;
    if (source.kind !== 'dicom-series') throw new Error('expected a DICOM series');
    const files = source.series.files;
    expect(files).toHaveLength(20);
    expect([...reader.heads.keys()].sort()).toEqual([...files].sort());
    expect([...reader.heads.values()].every((n) => n === 1)).toBe(true);
    expect(reader.wholes.size).toBe(0);
    // The scanned headers travel with the case: the id needs no second look at the first file.
    expect(source.headers).toHaveLength(20);
    expect(source.headers.every((h) => !('decodeFrame' in h))).toBe(true);

    reader.heads.clear();
    const caseInput = await readCaseInput(source, reader);
    const volume = await caseInput.decode();
    expect(reader.heads.size).toBe(0);
    expect([...reader.wholes.keys()].sort()).toEqual([...files].sort());
    expect([...reader.wholes.values()].every((n) => n === 1)).toBe(true);
    expect(caseInput.inputHash).toBe(independentHash(files));
    const reference = await readDicomSeries(files, { seriesUID: source.series.id });
    expect(volume.dims).toEqual(reference.dims);
    expect(volume.affine).toEqual(reference.affine);
    expect(Buffer.from(volume.data.buffer, volume.data.byteOffset, volume.data.byteLength).equals(
      Buffer.from(reference.data.buffer, reference.data.byteOffset, reference.data.byteLength),
    )).toBe(true);
  });

  it('a NIfTI case is read once too, and decodes to what core reads', async () => {
    const reader = countingReader();
    const path = join(input, 'scan.nii.gz');
    const caseInput = await readCaseInput({ kind: 'nifti', path }, reader);
    const volume = await caseInput.decode();
    expect([...reader.wholes.entries()]).toEqual([[path, 1]]);
    expect(caseInput.inputHash).toBe(independentHash([path]));
    const reference = await readNiftiFile(path);
    expect(volume.dims).toEqual(reference.dims);
    expect(Array.from(volume.data)).toEqual(Array.from(reference.data));
  });
});

describe('one case-id scheme for every command', () => {
  it('names NIfTI by file name (by path under the searched folder where file names clash) and DICOM by PatientID_StudyDate_SeriesNumber_Description', async () => {
    const { cases } = await discoverInputs([input]);
    const ids = cases.map((c) => c.id).sort();
    expect(ids).toHaveLength(4);
    expect(ids).toContain('nested_deeper_scan');
    expect(ids).toContain('scan');
    const mr = cases.find((c) => c.source.kind === 'dicom-series' && c.source.series.files.length === 20)!;
    const first = mr.source.kind === 'dicom-series' ? mr.source.headers[0] : undefined;
    expect(mr.id).toBe([first?.patientStudy.PatientID, first?.patientStudy.StudyDate, first?.seriesNumber, 'FSE_PD_AXIAL_OBL'].filter(Boolean).join('_').replace(/[^\p{L}\p{N}._-]+/gu, '_'));
  });

  it('alhvr-convert names its files as alhvr-segment names its case folders', { timeout: 120_000 }, async () => {
    const input = join(tmp, 'small');
    const ids = (await discoverInputs([input])).cases.map((c) => c.id).sort();
    expect(ids).toHaveLength(3);

    const converted = join(tmp, 'converted');
    const convert = await runCli('alhvr-convert', [input, '--out', `${converted}/`]);
    expect(convert.code, convert.stderr).toBe(0);
    const model = makeToyModel(tmp, { size: [32, 32] });
    const segmented = join(tmp, 'segmented');
    const segment = await runCli('alhvr-segment', [input, '--out', segmented, '--model', model, '--formats', 'nifti', '--no-preview', '--threads', '2']);
    expect(segment.code, segment.stderr).toBe(0);
    const convertNames = readdirSync(converted).map((f) => f.replace(/\.nii\.gz$/, '')).sort();
    const caseFolders = readdirSync(segmented, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(convertNames).toEqual(ids);
    expect(caseFolders).toEqual(ids);
  });
});
