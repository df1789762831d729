import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { daikonSeries } from '../../../test/fixtures.js';
import { PYTHON } from '../../../test/support/python.js';
import { Volume } from '../volume.js';
import { readDicomSeries } from './scan.js';
import { encodeDicomSeg, type SegClass } from './seg-write.js';
import { decodeDicomSeg, dicomSegToLabelVolume } from './seg-read.js';

dcmjs.log.setLevel('error');

const source = await readDicomSeries(daikonSeries);
const [cols, rows, slices] = source.dims;
const size = cols * rows;
const classes: SegClass[] = [
  { value: 1, name: 'RV' },
  { value: 2, name: 'Myo' },
  { value: 3, name: 'LV' },
];
// A box of each class on a few slices (class 3 only on slice 7), the rest background.
const mask = new Uint8Array(size * slices);
for (let k = 4; k < 12; k++) {
  for (let j = 50; j < 120; j++) {
    for (let i = 60; i < 150; i++) mask[i + cols * (j + rows * k)] = i < 90 ? 1 : i < 120 ? 2 : k === 7 ? 3 : 0;
  }
}
const bytes = encodeDicomSeg(source.withData(mask) as Volume<Uint8Array>, classes);
const differing = (a: Uint8Array, b: Uint8Array) => a.reduce((n, v, p) => n + (v !== b[p] ? 1 : 0), 0);

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'seg-read-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Run a pydicom script on our SEG (argv[1]) writing argv[2]; returns its stdout. */
function pydicom(script: string, out: string): string {
  const file = join(tmp, 'ours.dcm');
  writeFileSync(file, bytes);
  const r = spawnSync(PYTHON, ['-c', script, file, out], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

describe('DICOM SEG reader', () => {
  it('reads back what our writer wrote, voxel for voxel, on the source series', () => {
    const seg = decodeDicomSeg(bytes);
    expect(seg.segments).toEqual(classes.map((c, n) => ({ number: n + 1, label: c.name })));
    expect([seg.columns, seg.rows]).toEqual([cols, rows]);
    const labels = dicomSegToLabelVolume(seg, source, [{ value: 0, name: 'background' }, ...classes]);
    expect(labels.dims).toEqual(source.dims);
    expect(labels.affine).toEqual(source.affine);
    expect(differing(labels.data, mask)).toBe(0);
    expect(labels.data.filter((v) => v === 3).length).toBe(30 * 70);
  });

  it("decodes each frame as pydicom's own unpacking does", () => {
    const out = join(tmp, 'frames.u8');
    const info = JSON.parse(
      pydicom(
        `
import sys, json, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns).astype('uint8').tofile(sys.argv[2])
print(json.dumps([int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in ds.PerFrameFunctionalGroupsSequence]))
`,
        out,
      ),
    ) as number[];
    const theirs = new Uint8Array(readFileSync(out));
    const seg = decodeDicomSeg(bytes);
    expect(seg.frames.map((f) => f.segment)).toEqual(info);
    const ours = new Uint8Array(seg.frames.length * size);
    seg.frames.forEach((f, n) => ours.set(f.pixels, n * size));
    expect(ours.length).toBe(theirs.length);
    expect(differing(ours, theirs)).toBe(0);
  });

  it('places frames by position when a tool (here pydicom) writes them without source references, labels in other case', () => {
    const out = join(tmp, 'edited.dcm');
    pydicom(
      `
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
for f in ds.PerFrameFunctionalGroupsSequence:
    del f.DerivationImageSequence
for s in ds.SegmentSequence:
    s.SegmentLabel = ' ' + s.SegmentLabel.upper()
ds.save_as(sys.argv[2])
`,
      out,
    );
    const seg = decodeDicomSeg(new Uint8Array(readFileSync(out)), out);
    expect(seg.frames.every((f) => f.sopInstanceUID === undefined && f.position !== undefined)).toBe(true);
    const labels = dicomSegToLabelVolume(seg, source, classes, out);
    expect(differing(labels.data, mask)).toBe(0);
  });

  it('refuses, in one line, segments that are not classes, another grid, another frame of reference, a non-SEG file', () => {
    const seg = decodeDicomSeg(bytes);
    const oneLine = (fn: () => unknown, pattern: RegExp) => {
      let message = '';
      try {
        fn();
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(pattern);
      expect(message).not.toContain('\n');
    };
    oneLine(() => dicomSegToLabelVolume(seg, source, classes.slice(0, 2), 'c.seg.dcm'), /^c\.seg\.dcm: .*segment 3 "LV" is not one of the classes \(RV, Myo\)$/);
    const meta = source.meta.dicom!;
    const otherFrame = new Volume({ data: source.data, dims: source.dims, affine: source.affine, meta: { ...source.meta, dicom: { ...meta, frameOfReferenceUID: '1.2.3' } } });
    oneLine(() => dicomSegToLabelVolume(seg, otherFrame, classes), /FrameOfReferenceUID differs/);
    const shifted = { ...meta, slices: meta.slices.map((s) => ({ ...s, imagePositionPatient: [s.imagePositionPatient[0] + 1, s.imagePositionPatient[1], s.imagePositionPatient[2]] as [number, number, number] })) };
    const moved = new Volume({ data: source.data, dims: source.dims, affine: source.affine, meta: { ...source.meta, dicom: shifted } });
    oneLine(() => dicomSegToLabelVolume(seg, moved, classes), /frame 1 lies at \[.*\], its source image at/);
    const smaller = new Volume({ data: new Uint8Array((cols - 1) * rows * slices), dims: [cols - 1, rows, slices], affine: source.affine, meta: source.meta });
    oneLine(() => dicomSegToLabelVolume(seg, smaller, classes), new RegExp(`frames are ${cols}×${rows} pixels, its source series' images ${cols - 1}×${rows}$`));
    const mr = join(tmp, 'mr.dcm');
    pydicom(`
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.SOPClassUID = '1.2.840.10008.5.1.4.1.1.4'
ds.save_as(sys.argv[2])
`, mr);
    oneLine(() => decodeDicomSeg(new Uint8Array(readFileSync(mr)), 'mr.dcm'), /^mr\.dcm: not a DICOM Segmentation \(SOP class 1\.2\.840\.10008\.5\.1\.4\.1\.1\.4\)$/);
    oneLine(() => decodeDicomSeg(new Uint8Array(64), 'x.dcm'), /^x\.dcm: not a readable DICOM file/);
  });
});
