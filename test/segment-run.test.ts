import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOOLKIT_VERSION, Volume, decodeDicomSeg, maxAbsDiff4, multiply4, type Mat4 } from '@alhvr/core';
import { readNiftiFile, writeNiftiFile } from '@alhvr/core/node';
import { assignCaseIds, discoverInputs, loadCase, readManifest, runSegmentation, selectShard, type CaseSource, type RunResult } from '@alhvr/inference/node';
import { daikonSeries, niftiData } from './fixtures.js';
import { makeToyModel } from './segment-toy-model.js';

dcmjs.log.setLevel('error');

let dir: string;
let model: string;
let sources: CaseSource[];
let first: RunResult;
const out = () => join(dir, 'out');

function obliqueFlippedAffine(): Mat4 {
  const c = Math.cos(0.4);
  const s = Math.sin(0.4);
  return multiply4(
    [
      [c, -s, 0, 0],
      [s, c, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ],
    [
      [-1.2, 0, 0, 30],
      [0, 0, 4, -10],
      [0, 1.1, 0.3, 5],
      [0, 0, 0, 1],
    ],
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-segment-run-'));
  model = makeToyModel(dir, { size: [64, 64] });
  const dims: [number, number, number] = [40, 12, 33];
  const data = new Float32Array(dims[0] * dims[1] * dims[2]).map((_, n) => Math.sin(n / 50) * 100 + (n % 40));
  const oblique = join(dir, 'oblique flipped.nii.gz');
  await writeNiftiFile(oblique, new Volume({ data, dims, affine: obliqueFlippedAffine() }));
  const corrupt = join(dir, 'corrupt.nii');
  copyFileSync(join(niftiData, 'not-nifti.nii'), corrupt);
  const found = await discoverInputs([daikonSeries]);
  expect(found.cases).toHaveLength(1);
  sources = [
    found.cases[0].source,
    { kind: 'nifti', path: join(niftiData, 'little.nii.gz') },
    { kind: 'nifti', path: join(niftiData, 'big.nii.gz') },
    { kind: 'nifti', path: join(niftiData, 'avg152T1_LR_nifti.nii.gz') },
    { kind: 'nifti', path: oblique },
    { kind: 'nifti', path: corrupt },
  ];
  first = await runSegmentation(sources, { output: out(), model, device: 'cpu', threads: 2, batch: 8 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('alhvr-segment run', () => {
  it('records the corrupt case as failed, finishes the others, and exits non-zero', async () => {
    expect(first.exitCode).not.toBe(0);
    expect(first.failed).toBe(1);
    const manifest = await readManifest(out());
    expect(manifest.size).toBe(sources.length);
    const failed = [...manifest.values()].filter((e) => e.status === 'failed');
    expect(failed.map((e) => e.caseId)).toEqual(['corrupt']);
    expect(failed[0].error).toMatch(/corrupt\.nii/);
    const csv = readFileSync(join(out(), 'summary.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(sources.length + 1);
    expect(csv[1].startsWith('corrupt,failed,')).toBe(true);
    const scores = csv.slice(2).map((line) => Number(line.split(',')[3]));
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
  });

  it('writes outputs on exactly the input geometry, with values in range', async () => {
    const cases = await assignCaseIds(sources.slice(0, -1));
    for (const c of cases) {
      const image = await loadCase(c.source);
      const mask = await readNiftiFile(join(out(), c.id, 'mask.nii.gz'));
      const conf = await readNiftiFile(join(out(), c.id, 'confidence.nii.gz'));
      const region = await readNiftiFile(join(out(), c.id, 'region.nii.gz'));
      for (const v of [mask, conf, region]) {
        expect(v.dims, c.id).toEqual(image.dims);
        // NIfTI stores the sform in float32: equal up to that precision.
        expect(maxAbsDiff4(v.affine, image.affine), c.id).toBeLessThan(1e-4 * Math.max(1, ...image.affine.flat().map(Math.abs)));
      }
      expect(mask.data).toBeInstanceOf(Uint8Array);
      expect(region.data).toBeInstanceOf(Uint8Array);
      expect(conf.data).toBeInstanceOf(Float32Array);
      expect(mask.data.every((v) => v <= 2)).toBe(true);
      expect(region.data.every((v) => v >= 1 && v <= 3)).toBe(true);
      expect(conf.data.every((v) => v >= 0 && v <= 1 + 1e-6)).toBe(true);
      const report = JSON.parse(readFileSync(join(out(), c.id, 'report.json'), 'utf8'));
      expect(report.model.cardHash).toMatch(/^[0-9a-f]{64}$/);
      expect(['accept', 'review', 'reject']).toContain(report.triage.verdict);
      // Voxel volume = parallelepiped spanned by the affine's columns (a sheared grid is not spacing³).
      const [a, b, d] = [0, 1, 2].map((col) => [0, 1, 2].map((row) => image.affine[row][col]));
      const cross = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
      const mm3 = Math.abs(cross[0] * d[0] + cross[1] * d[1] + cross[2] * d[2]);
      const counted = mask.data.reduce((s, v) => s + (v === 2 ? 1 : 0), 0);
      expect(report.stats.classes[2].volumeMl).toBeCloseTo((counted * mm3) / 1000, 6);
      expect(statSync(join(out(), c.id, 'preview.png')).size).toBeGreaterThan(100);
    }
  });

  it('writes a DICOM SEG that references the source instances slice by slice', async () => {
    const [c] = await assignCaseIds(sources.slice(0, 1));
    const image = await loadCase(c.source);
    const mask = await readNiftiFile(join(out(), c.id, 'mask.nii.gz'));
    const bytes = readFileSync(join(out(), c.id, 'seg.dcm'));
    const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(
      dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)).dict,
    );
    const slices = image.meta.dicom!.slices;
    const uids = slices.map((s) => s.sopInstanceUID);
    // The report names the series it segmented, and the toolkit version that did it.
    const report = JSON.parse(readFileSync(join(out(), c.id, 'report.json'), 'utf8'));
    expect(report.series.seriesInstanceUID).toBe(image.meta.dicom!.seriesInstanceUID);
    expect(report.series.modality).toBe('MR');
    expect(report.series.folder).toBe(report.input);
    expect(report.toolkit.version).toBe(TOOLKIT_VERSION);
    const arr = (x: any) => (Array.isArray(x) ? x : [x]);
    // The SEG names the exact model file that made it (what a PACS reader tells models apart by).
    const algorithm = arr(arr(ds.SegmentSequence)[0].SegmentationAlgorithmIdentificationSequence)[0];
    expect(algorithm.AlgorithmParameters).toBe(`model-sha256=${report.model.modelHash}`);
    expect(decodeDicomSeg(new Uint8Array(bytes)).identity.algorithmParameters).toBe(`model-sha256=${report.model.modelHash}`);
    const referenced = arr(ds.ReferencedSeriesSequence)[0];
    expect(referenced.SeriesInstanceUID).toBe(image.meta.dicom!.seriesInstanceUID);
    expect(new Set(arr(referenced.ReferencedInstanceSequence).map((r: any) => r.ReferencedSOPInstanceUID))).toEqual(new Set(uids));
    const frameSize = ds.Rows * ds.Columns;
    expect([ds.Columns, ds.Rows]).toEqual([image.dims[0], image.dims[1]]);
    const packed = new Uint8Array(arr(ds.PixelData)[0]);
    const segmentValue = new Map(arr(ds.SegmentSequence).map((s: any) => [s.SegmentNumber, s.SegmentLabel]));
    expect([...segmentValue.values()]).toEqual(['mid', 'bright']);
    let framesChecked = 0;
    arr(ds.PerFrameFunctionalGroupsSequence).forEach((fg: any, f: number) => {
      const sop = arr(arr(fg.DerivationImageSequence)[0].SourceImageSequence)[0].ReferencedSOPInstanceUID;
      const k = uids.indexOf(sop);
      expect(k).toBeGreaterThanOrEqual(0);
      const segment = arr(fg.SegmentIdentificationSequence)[0].ReferencedSegmentNumber as number;
      let ones = 0;
      for (let n = 0; n < frameSize; n++) ones += (packed[(f * frameSize + n) >> 3] >> ((f * frameSize + n) & 7)) & 1;
      let expected = 0;
      for (let n = 0; n < frameSize; n++) expected += mask.data[k * frameSize + n] === segment ? 1 : 0;
      expect(ones).toBe(expected);
      framesChecked++;
    });
    expect(framesChecked).toBeGreaterThan(0);
  });

  it('resume skips finished cases with the same input and model, and retries failed ones', async () => {
    const caseIds = (await assignCaseIds(sources)).map((c) => c.id);
    const maskPath = join(out(), caseIds[1], 'mask.nii.gz');
    const before = statSync(maskPath).mtimeMs;
    const again = await runSegmentation(sources, { output: out(), model, device: 'cpu', resume: true });
    expect(again.skipped).toBe(sources.length - 1);
    expect(again.failed).toBe(1);
    expect(statSync(maskPath).mtimeMs).toBe(before);
    // A different model (another card → other hash) redoes every case.
    const other = makeToyModel(dir, { name: 'other.onnx', size: [32, 32] });
    const redo = await runSegmentation(sources.slice(1, 2), { output: out(), model: other, device: 'cpu', resume: true, preview: false });
    expect(redo.skipped).toBe(0);
    expect(statSync(maskPath).mtimeMs).not.toBe(before);
  });

  it('shards partition the case list', async () => {
    const cases = await assignCaseIds(sources);
    for (const count of [1, 2, 3, 5]) {
      const parts = Array.from({ length: count }, (_, i) => selectShard(cases, { index: i + 1, count }).map((c) => c.id));
      const all = parts.flat();
      expect(new Set(all).size).toBe(all.length);
      expect(new Set(all)).toEqual(new Set(cases.map((c) => c.id)));
    }
  });
});
