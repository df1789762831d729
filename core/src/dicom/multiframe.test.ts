import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import dicomParser from 'dicom-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { daikonSeries } from '../../../test/fixtures.js';
import { maxAbsDiff4 } from '../geometry/affine.js';
import { parseDicomInstance } from './instance.js';
import { readDicomSeries } from './scan.js';
import { readDicomSeriesFromBytes } from './series.js';

const { DicomDict, DicomMetaDictionary } = (dcmjs as any).data;
const tmp = mkdtempSync(join(tmpdir(), 'alhvr-dicom-mf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const files = readdirSync(daikonSeries).filter((f) => f.endsWith('.dcm')).sort();

/** The 20 single-frame slices, read with dicom-parser directly: positions, orientation, pixels. */
function sourceSlices() {
  return files.map((f) => {
    const d = dicomParser.parseDicom(new Uint8Array(readFileSync(join(daikonSeries, f))));
    const nums = (tag: string) => d.string(tag)!.split('\\').map(Number);
    const el = d.elements.x7fe00010;
    const ds = {
      StudyInstanceUID: d.string('x0020000d'),
      PatientName: d.string('x00100010'),
      PatientID: d.string('x00100020'),
      FrameOfReferenceUID: d.string('x00200052'),
      Rows: d.uint16('x00280010'),
      Columns: d.uint16('x00280011'),
      PixelRepresentation: d.uint16('x00280103'),
      ImageOrientationPatient: nums('x00200037'),
      ImagePositionPatient: nums('x00200032'),
      PixelSpacing: nums('x00280030'),
      SliceThickness: Number(d.string('x00180050')),
    };
    return { ds, pixels: d.byteArray.slice(el.dataOffset, el.dataOffset + el.length) };
  });
}

/**
 * An Enhanced MR object holding the series as frames in a scrambled order, orientation and
 * spacing in the shared functional groups, one PlanePositionSequence per frame.
 */
function enhancedMr(slopes?: number[]): Uint8Array {
  const src = sourceSlices();
  const order = src.map((_, n) => (n * 7) % src.length); // 7 is coprime with 20: a permutation
  const first = src[0].ds;
  const frameBytes = src[0].pixels.length;
  const pixels = new Uint8Array(frameBytes * src.length);
  order.forEach((s, f) => pixels.set(src[s].pixels, f * frameBytes));
  const sopInstanceUID = '2.25.1234567890123456789';
  const dataset: Record<string, unknown> = {
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.4.1',
    SOPInstanceUID: sopInstanceUID,
    StudyInstanceUID: first.StudyInstanceUID,
    SeriesInstanceUID: '2.25.987654321',
    SeriesNumber: '99',
    Modality: 'MR',
    PatientName: first.PatientName,
    PatientID: first.PatientID,
    FrameOfReferenceUID: first.FrameOfReferenceUID ?? '2.25.55',
    Rows: first.Rows,
    Columns: first.Columns,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    BitsAllocated: 16,
    BitsStored: 16,
    HighBit: 15,
    PixelRepresentation: first.PixelRepresentation,
    NumberOfFrames: src.length,
    SharedFunctionalGroupsSequence: [
      {
        PlaneOrientationSequence: [{ ImageOrientationPatient: first.ImageOrientationPatient }],
        PixelMeasuresSequence: [{ PixelSpacing: first.PixelSpacing, SliceThickness: first.SliceThickness }],
        ...(slopes ? {} : { PixelValueTransformationSequence: [{ RescaleSlope: 1, RescaleIntercept: 0, RescaleType: 'US' }] }),
      },
    ],
    PerFrameFunctionalGroupsSequence: order.map((s, f) => ({
      PlanePositionSequence: [{ ImagePositionPatient: src[s].ds.ImagePositionPatient }],
      ...(slopes ? { PixelValueTransformationSequence: [{ RescaleSlope: slopes[f], RescaleIntercept: -5, RescaleType: 'US' }] } : {}),
    })),
    PixelData: [pixels.buffer],
    _vrMap: { PixelData: 'OW' },
  };
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: sopInstanceUID,
    TransferSyntaxUID: '1.2.840.10008.1.2.1',
    ImplementationClassUID: '2.25.1',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write());
}

describe('multi-frame enhanced images', () => {
  it('frames become slices: same voxels and affine as the single-frame series', async () => {
    const single = await readDicomSeries(daikonSeries);
    const path = join(tmp, 'enhanced.dcm');
    writeFileSync(path, enhancedMr());
    const inst = parseDicomInstance(new Uint8Array(readFileSync(path)), path);
    expect(inst.numberOfFrames).toBe(20);
    const multi = await readDicomSeries(path);
    expect(multi.dims).toEqual(single.dims);
    expect(maxAbsDiff4(multi.affine, single.affine)).toBeLessThan(1e-9);
    expect(Buffer.from(multi.data.buffer).equals(Buffer.from(single.data.buffer))).toBe(true);
    const refs = multi.meta.dicom!.slices;
    expect(refs.map((r) => r.imagePositionPatient)).toEqual(single.meta.dicom!.slices.map((r) => r.imagePositionPatient));
    // Frame f holds source slice (7f mod 20); the first slice along the normal is source slice 0, frame 1.
    expect(refs.every((r) => r.sopInstanceUID === '2.25.1234567890123456789' && r.frameNumber! >= 1)).toBe(true);
    expect(new Set(refs.map((r) => r.frameNumber)).size).toBe(20);
    expect(multi.meta.dicom!.fileCount).toBe(1);
    expect(multi.meta.dicom!.seriesNumber).toBe('99');
  });

  it('per-frame PixelValueTransformation rescales each frame', async () => {
    const single = await readDicomSeries(daikonSeries);
    const slopes = Array.from({ length: 20 }, (_, f) => 1 + (f % 3));
    const vol = await readDicomSeriesFromBytes([{ name: 'scaled.dcm', bytes: enhancedMr(slopes) }]);
    expect(vol.data).toBeInstanceOf(Float32Array);
    const plane = 256 * 256;
    for (const k of [0, 5, 19]) {
      const frame = vol.meta.dicom!.slices[k].frameNumber! - 1;
      for (const p of [100, 30000, 65000]) {
        expect(vol.data[k * plane + p]).toBe(single.data[k * plane + p] * slopes[frame] - 5);
      }
    }
  });
});
