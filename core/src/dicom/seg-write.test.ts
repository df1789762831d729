import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { daikonSeries } from '../../../test/fixtures.js';
import { PYTHON } from '../../../test/support/python.js';
import { Volume, type DicomSeriesMeta } from '../volume.js';
import { readDicomSeries } from './scan.js';
import { InputError } from '../errors.js';
import { scalingAffine } from '../geometry/affine.js';
import { encodeDicomSeg, rgbToDicomLab, SEGMENTATION_SOP_CLASS_UID, type SegClass } from './seg-write.js';
import { isValidUid, newUid } from './uid.js';
import { writeDicomSegFile } from './seg-file.js';

dcmjs.log.setLevel('error');

type Vec3 = [number, number, number];
const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
/** Number of positions where two label volumes differ (vitest's deep equality is slow on 1M+ elements). */
function differingVoxels(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}
const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

// The source series through the project's reader: the SEG is written for what it produces.
const sourceVolume = await readDicomSeries(daikonSeries);
const sourceMeta = sourceVolume.meta.dicom!;
const [cols, rows] = sourceVolume.dims;

/** A label volume on the source geometry, with `meta.dicom` replaced when given. */
function labelVolume(data: Uint8Array, dicom: DicomSeriesMeta = sourceMeta): Volume<Uint8Array> {
  const v = sourceVolume.withData(data);
  return new Volume({ data, dims: v.dims, affine: v.affine, meta: { ...v.meta, dicom } });
}

/** The same series with its (illegal, root "0.0.0.0") UIDs replaced by fresh valid ones. */
function withValidUids(meta: DicomSeriesMeta): DicomSeriesMeta {
  const fresh = new Map<string, string>();
  const map = (u: string) => fresh.get(u) ?? fresh.set(u, newUid()).get(u)!;
  return {
    ...meta,
    patientStudy: { ...meta.patientStudy, StudyInstanceUID: map(meta.patientStudy.StudyInstanceUID) },
    seriesInstanceUID: map(meta.seriesInstanceUID),
    frameOfReferenceUID: map(meta.frameOfReferenceUID!),
    slices: meta.slices.map((s) => ({ ...s, sopInstanceUID: map(s.sopInstanceUID) })),
  };
}

interface ParsedSeg {
  ds: any;
  frames: Uint8Array[];
}

function parseSeg(bytes: Uint8Array): ParsedSeg {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const d = dcmjs.data.DicomMessage.readFile(ab);
  expect(d.meta['00020010'].Value[0]).toBe('1.2.840.10008.1.2.1');
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(d.dict);
  const frameSize = ds.Rows * ds.Columns;
  const packed = new Uint8Array(asArray(ds.PixelData)[0] as ArrayBuffer);
  expect(packed.length).toBeGreaterThanOrEqual(Math.ceil((ds.NumberOfFrames * frameSize) / 8));
  // Unpack the continuous bit stream: bit b of the stream is bit (b % 8) of byte ⌊b / 8⌋.
  const frames: Uint8Array[] = [];
  for (let f = 0; f < ds.NumberOfFrames; f++) {
    const frame = new Uint8Array(frameSize);
    for (let n = 0; n < frameSize; n++) {
      const bit = f * frameSize + n;
      frame[n] = (packed[bit >> 3] >> (bit & 7)) & 1;
    }
    frames.push(frame);
  }
  return { ds, frames };
}

function frameSource(item: any): { uid: string; frame?: number } {
  const src = asArray(asArray(item.DerivationImageSequence)[0].SourceImageSequence)[0] as any;
  return { uid: src.ReferencedSOPInstanceUID, frame: src.ReferencedFrameNumber };
}

/** Rebuild the label volume from a parsed SEG, placing frames by their referenced source image. */
function reconstruct(seg: ParsedSeg, meta: DicomSeriesMeta, classes: SegClass[], dims: Vec3): Uint8Array {
  const sliceOf = new Map(meta.slices.map((s, k) => [`${s.sopInstanceUID}#${s.frameNumber ?? ''}`, k]));
  const valueOfSegment = new Map<number, number>();
  for (const s of asArray(seg.ds.SegmentSequence) as any[]) {
    const cls = classes.find((c) => c.name === s.SegmentLabel);
    expect(cls, `segment ${s.SegmentLabel}`).toBeDefined();
    valueOfSegment.set(s.SegmentNumber, cls!.value);
  }
  const out = new Uint8Array(dims[0] * dims[1] * dims[2]);
  const size = dims[0] * dims[1];
  let overlaps = 0;
  asArray(seg.ds.PerFrameFunctionalGroupsSequence).forEach((item: any, f) => {
    const segNo = asArray(item.SegmentIdentificationSequence)[0] as any;
    const value = valueOfSegment.get(segNo.ReferencedSegmentNumber)!;
    const src = frameSource(item);
    const k = sliceOf.get(`${src.uid}#${src.frame ?? ''}`);
    expect(k, `frame ${f + 1} source ${src.uid}`).toBeDefined();
    const pos = (asArray(item.PlanePositionSequence)[0] as any).ImagePositionPatient;
    expect(pos).toEqual([...meta.slices[k!].imagePositionPatient]);
    const frame = seg.frames[f];
    for (let n = 0; n < size; n++) {
      if (!frame[n]) continue;
      if (out[k! * size + n] !== 0) overlaps++;
      out[k! * size + n] = value;
    }
  });
  expect(overlaps, 'voxels claimed by two segments').toBe(0);
  return out;
}

// Independent reader: pydicom unpacks the 1-bit frames itself (numpy.unpackbits, little bit order).
const PYDICOM_SCRIPT = `
import sys, json, pydicom
ds = pydicom.dcmread(sys.argv[1])
px = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns).astype('uint8')
px.tofile(sys.argv[2])
print(json.dumps([{"segment": int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
  "uid": str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)}
  for f in ds.PerFrameFunctionalGroupsSequence]))
`;

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'seg-write-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** dciodvfy's findings for bytes written to a file; the SEG is valid when none starts with "Error". */
function dciodvfy(bytes: Uint8Array, name: string): { errors: string[]; warnings: string[] } {
  const file = join(tmp, name);
  writeFileSync(file, bytes);
  const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
  expect(r.error).toBeUndefined();
  const lines = `${r.stdout}\n${r.stderr}`.split('\n');
  return { errors: lines.filter((l) => l.startsWith('Error')), warnings: lines.filter((l) => l.startsWith('Warning')) };
}

describe('encodeDicomSeg on the 20-slice oblique MR series', () => {
  const meta = sourceMeta;
  const dims: Vec3 = [cols, rows, meta.slices.length];
  const classes: SegClass[] = [
    { value: 1, name: 'Liver', color: [200, 100, 50] },
    { value: 3, name: 'lesion candidate' },
  ];
  // A sphere of class 1 and, in a few slices, a box of class 3 that cuts into the sphere.
  const mask = new Uint8Array(dims[0] * dims[1] * dims[2]);
  const [ci, cj, ck, r] = [120, 140, 9, 6.5];
  for (let k = 0; k < dims[2]; k++) {
    for (let j = 0; j < dims[1]; j++) {
      for (let i = 0; i < dims[0]; i++) {
        const n = i + dims[0] * (j + dims[1] * k);
        const di = (i - ci) / 8;
        const dj = (j - cj) / 8;
        if (di * di + dj * dj + (k - ck) * (k - ck) <= r * r) mask[n] = 1;
        if (k >= 3 && k <= 5 && i >= 100 && i < 131 && j >= 20 && j < 150) mask[n] = 3;
      }
    }
  }
  const volume = labelVolume(mask);
  const now = new Date(2024, 4, 6, 7, 8, 9);
  const bytes = encodeDicomSeg(volume, classes, { algorithmName: 'ALHVR test', algorithmVersion: '1.2', algorithmParameters: 'model-sha256=ab12', now, contentCreator: 'Doe^Jane' });
  const seg = parseSeg(bytes);

  it("passes dciodvfy: errors only for the source series' own illegal UIDs, none with valid source UIDs", () => {
    // This 2001 series uses UIDs under the root "0.0.0.0", which dciodvfy rejects wherever the
    // SEG must repeat them (study, frame of reference, referenced instances).
    const sourceUids = new Set([
      meta.patientStudy.StudyInstanceUID,
      meta.seriesInstanceUID,
      meta.frameOfReferenceUID,
      ...meta.slices.map((s) => s.sopInstanceUID),
    ]);
    const raw = dciodvfy(bytes, 'sphere-source-uids.dcm');
    expect(raw.errors.length).toBeGreaterThan(0);
    for (const line of raw.errors) {
      const m = /^Error - Illegal root for UID - "([0-9.]+)"/.exec(line);
      expect(m && sourceUids.has(m[1]), line).toBe(true);
    }
    // The same geometry and mask with the source's UIDs replaced by valid ones: no errors at all.
    const validMeta = withValidUids(meta);
    const valid = labelVolume(mask, validMeta);
    const checked = dciodvfy(encodeDicomSeg(valid, classes, { now }), 'sphere.dcm');
    expect(checked.errors).toEqual([]);
    expect(checked.warnings).toEqual([]);
  });

  it('decodes the same in pydicom (Debian python3-pydicom): frames, segments and source references', () => {
    const file = join(tmp, 'sphere-pydicom.dcm');
    writeFileSync(file, bytes);
    const out = join(tmp, 'sphere-pydicom.u8');
    const r = spawnSync(PYTHON, ['-c', PYDICOM_SCRIPT, file, out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const frameInfo = JSON.parse(r.stdout) as { segment: number; uid: string }[];
    const pixels = new Uint8Array(readFileSync(out));
    const size = rows * cols;
    expect(pixels.length).toBe(frameInfo.length * size);
    const kOf = new Map(meta.slices.map((s, k) => [s.sopInstanceUID, k]));
    let wrong = 0;
    frameInfo.forEach(({ segment, uid }, f) => {
      const k = kOf.get(uid)!;
      const value = classes[segment - 1].value;
      for (let n = 0; n < size; n++) if (pixels[f * size + n] !== (mask[k * size + n] === value ? 1 : 0)) wrong++;
    });
    expect(wrong).toBe(0);
    expect(frameInfo.length).toBe(seg.ds.NumberOfFrames);
  });

  it('reconstructs the mask exactly on the same source instances', () => {
    expect(differingVoxels(reconstruct(seg, meta, classes, dims), mask)).toBe(0);
  });

  it('writes one frame per (segment, slice) with content, grouped by segment and ordered along the normal', () => {
    let expected = 0;
    for (const c of classes) for (let k = 0; k < dims[2]; k++) if (mask.subarray(k * rows * cols, (k + 1) * rows * cols).includes(c.value)) expected++;
    expect(seg.ds.NumberOfFrames).toBe(expected);
    const o = meta.imageOrientationPatient;
    const normal = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
    const items = asArray(seg.ds.PerFrameFunctionalGroupsSequence) as any[];
    const keys = items.map((it) => [
      (asArray(it.SegmentIdentificationSequence)[0] as any).ReferencedSegmentNumber,
      dot((asArray(it.PlanePositionSequence)[0] as any).ImagePositionPatient, normal),
    ]);
    for (let f = 1; f < keys.length; f++) {
      const [s0, p0] = keys[f - 1];
      const [s1, p1] = keys[f];
      expect(s1 > s0 || (s1 === s0 && p1 > p0), `frame ${f + 1} order`).toBe(true);
    }
    // Dimension index values are (segment number, 1-based rank of the slice along the normal).
    const ranks = meta.slices.map((s) => dot(s.imagePositionPatient, normal)).sort((a, b) => a - b);
    items.forEach((it, f) => {
      const div = (asArray(it.FrameContentSequence)[0] as any).DimensionIndexValues;
      expect(div).toEqual([keys[f][0], ranks.findIndex((p) => Math.abs(p - keys[f][1]) < 1e-6) + 1]);
    });
  });

  it('carries the IOD attributes, source references and copied patient/study', () => {
    const ds = seg.ds;
    expect(ds.SOPClassUID).toBe(SEGMENTATION_SOP_CLASS_UID);
    expect(ds.Modality).toBe('SEG');
    expect(ds.SegmentationType).toBe('BINARY');
    expect([ds.BitsAllocated, ds.BitsStored, ds.HighBit]).toEqual([1, 1, 0]);
    expect([ds.Rows, ds.Columns]).toEqual([rows, cols]);
    expect(ds.ImageType).toEqual(['DERIVED', 'PRIMARY']);
    expect(ds.LossyImageCompression).toBe('00');
    expect(ds.ContentDate).toBe('20240506');
    expect(ds.ContentTime.startsWith('070809')).toBe(true);
    expect(ds.StudyInstanceUID).toBe(meta.patientStudy.StudyInstanceUID);
    expect(ds.PatientID).toBe(meta.patientStudy.PatientID);
    expect(ds.FrameOfReferenceUID).toBe(meta.frameOfReferenceUID);
    expect(ds.SeriesInstanceUID).not.toBe(meta.seriesInstanceUID);
    for (const uid of [ds.SeriesInstanceUID, ds.SOPInstanceUID]) expect(uid).toMatch(/^2\.25\.[1-9]\d*$/);
    const refSeries = asArray(ds.ReferencedSeriesSequence) as any[];
    expect(refSeries.map((s) => s.SeriesInstanceUID)).toEqual([meta.seriesInstanceUID]);
    const refs = (asArray(refSeries[0].ReferencedInstanceSequence) as any[]).map((r) => r.ReferencedSOPInstanceUID);
    expect(refs.sort()).toEqual(meta.slices.map((s) => s.sopInstanceUID).sort());
    const shared = asArray(ds.SharedFunctionalGroupsSequence)[0] as any;
    expect((asArray(shared.PlaneOrientationSequence)[0] as any).ImageOrientationPatient).toEqual(meta.imageOrientationPatient);
    const measures = asArray(shared.PixelMeasuresSequence)[0] as any;
    expect(measures.PixelSpacing).toEqual(meta.pixelSpacing);
    // Mean plane spacing along the normal: first to last slice over 19 gaps (≈ 7.0 mm here).
    const o = meta.imageOrientationPatient;
    const normal = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
    const last = meta.slices[meta.slices.length - 1].imagePositionPatient;
    const gap = dot([0, 1, 2].map((a) => last[a] - meta.slices[0].imagePositionPatient[a]), normal) / (meta.slices.length - 1);
    expect(measures.SpacingBetweenSlices).toBeCloseTo(gap, 4);
    expect(measures.SliceThickness).toBeCloseTo(gap, 4);
    const segments = asArray(ds.SegmentSequence) as any[];
    expect(segments.map((s) => [s.SegmentNumber, s.SegmentLabel, s.SegmentAlgorithmType])).toEqual([
      [1, 'Liver', 'AUTOMATIC'],
      [2, 'lesion candidate', 'AUTOMATIC'],
    ]);
    expect((asArray(segments[0].SegmentedPropertyTypeCodeSequence)[0] as any).CodeValue).toBe('10200004');
    expect(segments[0].RecommendedDisplayCIELabValue).toEqual(rgbToDicomLab([200, 100, 50]));
    expect((asArray(segments[1].SegmentationAlgorithmIdentificationSequence)[0] as any).AlgorithmVersion).toBe('1.2');
    expect((asArray(segments[1].SegmentationAlgorithmIdentificationSequence)[0] as any).AlgorithmParameters).toBe('model-sha256=ab12');
  });

  it('maps frames by SOP Instance UID, not by k, when the volume stacks slices in reverse', () => {
    const n = dims[0] * dims[1];
    const flipped = new Uint8Array(mask.length);
    for (let k = 0; k < dims[2]; k++) flipped.set(mask.subarray(k * n, (k + 1) * n), (dims[2] - 1 - k) * n);
    const revMeta: DicomSeriesMeta = { ...meta, slices: [...meta.slices].reverse() };
    const rev = labelVolume(flipped, revMeta);
    const revSeg = parseSeg(encodeDicomSeg(rev, classes));
    expect(differingVoxels(reconstruct(revSeg, revMeta, classes, dims), flipped)).toBe(0);
    // Same physical frames as the forward encoding: same sources, same order along the normal.
    const sources = (s: ParsedSeg) => asArray(s.ds.PerFrameFunctionalGroupsSequence).map((it: any) => frameSource(it).uid);
    expect(sources(revSeg)).toEqual(sources(seg));
  });
});

describe('encodeDicomSeg edge cases', () => {
  const meta = withValidUids(sourceMeta);
  const dims: Vec3 = [cols, rows, meta.slices.length];
  const classes: SegClass[] = [{ value: 1, name: 'LV' }];

  it('writes an all-empty label volume as a valid SEG with one empty frame of segment 1', () => {
    const empty = labelVolume(new Uint8Array(dims[0] * dims[1] * dims[2]), meta);
    const bytes = encodeDicomSeg(empty, classes);
    expect(dciodvfy(bytes, 'empty.dcm')).toEqual({ errors: [], warnings: [] });
    const seg = parseSeg(bytes);
    expect(seg.ds.NumberOfFrames).toBe(1);
    expect(seg.frames[0].every((v) => v === 0)).toBe(true);
    const item = asArray(seg.ds.PerFrameFunctionalGroupsSequence)[0] as any;
    expect((asArray(item.SegmentIdentificationSequence)[0] as any).ReferencedSegmentNumber).toBe(1);
    expect((asArray(seg.ds.SegmentSequence)[0] as any).SegmentedPropertyTypeCodeSequence.CodeValue).toBe('87878005');
  });

  it('puts i along columns and j along rows of a non-square frame', () => {
    const small: DicomSeriesMeta = { ...meta, slices: meta.slices.slice(0, 3) };
    const data = new Uint8Array(5 * 3 * 3);
    data[4 + 5 * (0 + 3 * 1)] = 1; // i = 4 (last column), j = 0 (first row), k = 1
    data[0 + 5 * (2 + 3 * 1)] = 1; // i = 0, j = 2 (last row), k = 1
    const vol = new Volume({ data, dims: [5, 3, 3], affine: scalingAffine([1, 1, 7]), meta: { kind: 'dicom-series', dicom: small } });
    const bytes = encodeDicomSeg(vol, classes);
    expect(dciodvfy(bytes, 'non-square.dcm')).toEqual({ errors: [], warnings: [] });
    const seg = parseSeg(bytes);
    expect([seg.ds.Rows, seg.ds.Columns, seg.ds.NumberOfFrames]).toEqual([3, 5, 1]);
    // DICOM stores a frame row by row: pixel (row r, column c) is at r * Columns + c.
    expect([...seg.frames[0]].flatMap((v, n) => (v ? [n] : []))).toEqual([4, 2 * 5 + 0]);
    expect(frameSource(asArray(seg.ds.PerFrameFunctionalGroupsSequence)[0]).uid).toBe(small.slices[1].sopInstanceUID);
  });

  it('references frames of a multi-frame source with ReferencedFrameNumber', () => {
    // An enhanced (multi-frame) MR: one instance whose frames are the slices.
    const mfUid = '1.2.826.0.1.3680043.8.498.12345';
    const mfMeta: DicomSeriesMeta = {
      ...meta,
      slices: meta.slices.map((s, k) => ({ ...s, sopClassUID: '1.2.840.10008.5.1.4.1.1.4.1', sopInstanceUID: mfUid, frameNumber: k + 1 })),
    };
    const data = new Uint8Array(dims[0] * dims[1] * dims[2]);
    const n = dims[0] * dims[1];
    for (const k of [2, 7, 8]) for (let p = 0; p < 500; p++) data[k * n + 3000 + p * 17] = 1;
    const vol = labelVolume(data, mfMeta);
    const bytes = encodeDicomSeg(vol, classes);
    expect(dciodvfy(bytes, 'multiframe.dcm')).toEqual({ errors: [], warnings: [] });
    const seg = parseSeg(bytes);
    const items = asArray(seg.ds.PerFrameFunctionalGroupsSequence) as any[];
    expect(items.map((it) => frameSource(it))).toEqual([3, 8, 9].map((frame) => ({ uid: mfUid, frame })));
    const refs = asArray((asArray(seg.ds.ReferencedSeriesSequence)[0] as any).ReferencedInstanceSequence);
    expect(refs.length).toBe(1);
    expect(differingVoxels(reconstruct(seg, mfMeta, classes, dims), data)).toBe(0);
  });

  it('rejects label volumes without DICOM metadata, unknown label values and bad classes', () => {
    const plain = new Volume({ data: new Uint8Array(8), dims: [2, 2, 2], affine: sourceVolume.affine, meta: { path: 'mask.nii.gz' } });
    expect(() => encodeDicomSeg(plain, classes)).toThrow(InputError);
    expect(() => encodeDicomSeg(plain, classes)).toThrow(/mask\.nii\.gz: .*no DICOM source metadata/);
    const data = new Uint8Array(dims[0] * dims[1] * dims[2]);
    data[12345] = 2;
    const vol = labelVolume(data, meta);
    expect(() => encodeDicomSeg(vol, classes)).toThrow(/label value 2 .*no segment class/);
    expect(() => encodeDicomSeg(vol, [])).toThrow(InputError);
    expect(() => encodeDicomSeg(vol, [{ value: 0, name: 'bg' }])).toThrow(/1–255/);
    expect(() => encodeDicomSeg(vol, [{ value: 2, name: 'a' }, { value: 2, name: 'b' }])).toThrow(/more than one/);
    const short = new Volume({ data: new Uint8Array(8), dims: [2, 2, 2], affine: sourceVolume.affine, meta: { kind: 'dicom-series', dicom: meta } });
    expect(() => encodeDicomSeg(short, classes)).toThrow(/2 slices but .* 20 source images/);
  });
});

describe('writeDicomSegFile', () => {
  it('writes the SEG atomically to a new folder, leaving no temporary file', async () => {
    const dir = join(tmp, 'out', 'nested');
    const data = new Uint8Array(sourceVolume.voxelCount);
    data[cols * rows * 4 + 1000] = 1;
    await writeDicomSegFile(join(dir, 'seg.dcm'), labelVolume(data), [{ value: 1, name: 'Liver' }]);
    expect(readdirSync(dir)).toEqual(['seg.dcm']);
    const seg = parseSeg(new Uint8Array(readFileSync(join(dir, 'seg.dcm'))));
    expect(seg.ds.SOPClassUID).toBe(SEGMENTATION_SOP_CLASS_UID);
    expect(frameSource(asArray(seg.ds.PerFrameFunctionalGroupsSequence)[0]).uid).toBe(sourceMeta.slices[4].sopInstanceUID);
    expect(seg.frames[0].indexOf(1)).toBe(1000);
  });
});

describe('rgbToDicomLab', () => {
  const decode = (v: number[]) => [(v[0] * 100) / 65535, (v[1] * 255) / 65535 - 128, (v[2] * 255) / 65535 - 128];

  it('maps white and black to the neutral axis and sRGB red to its D50 CIELab value', () => {
    expect(rgbToDicomLab([255, 255, 255])).toEqual([65535, 32896, 32896]);
    expect(rgbToDicomLab([0, 0, 0])).toEqual([0, 32896, 32896]);
    // sRGB red under D50 (Bradford): L* 54.29, a* 80.80, b* 69.89.
    const red = decode(rgbToDicomLab([255, 0, 0]));
    expect(red[0]).toBeCloseTo(54.29, 1);
    expect(red[1]).toBeCloseTo(80.8, 0);
    expect(red[2]).toBeCloseTo(69.89, 0);
  });
});

describe('newUid', () => {
  it('makes distinct valid 2.25 UIDs from version-4 UUIDs', () => {
    const uids = new Set(Array.from({ length: 500 }, () => newUid()));
    expect(uids.size).toBe(500);
    for (const uid of uids) {
      expect(isValidUid(uid)).toBe(true);
      const n = BigInt(uid.slice(5));
      expect(n < 1n << 128n).toBe(true);
      expect((n >> 76n) & 0xfn).toBe(4n);
    }
  });

  it('fills the room under a given root and rejects bad roots', () => {
    const root = '1.2.826.0.1.3680043.10.999';
    const uid = newUid(root);
    expect(uid.startsWith(`${root}.`)).toBe(true);
    expect(isValidUid(uid)).toBe(true);
    expect(uid.length).toBeGreaterThan(60);
    expect(() => newUid('1.02.3')).toThrow(InputError);
    expect(() => newUid(`1.2.${'3'.repeat(50)}`)).toThrow(/too long/);
    expect(isValidUid('1.2.3.')).toBe(false);
    expect(isValidUid(`1.${'2'.repeat(63)}`)).toBe(false);
  });
});
