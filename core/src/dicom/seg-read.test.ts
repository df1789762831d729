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
import { decodeDicomSeg, dicomSegToLabelVolume, readDicomSeg } from './seg-read.js';

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

/** Python helpers for the compressed and fractional SEGs below: frames unpacked, PackBits, RLE framing. */
const PY_FRAMES = `
import sys, numpy as np, pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless
ds = pydicom.dcmread(sys.argv[1])
n, rows, cols = int(ds.NumberOfFrames), ds.Rows, ds.Columns
bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder='little')[: n * rows * cols].reshape(n, rows * cols)

def packbits(data):
    out, i, size = bytearray(), 0, len(data)
    while i < size:
        j = i
        while j + 1 < size and data[j + 1] == data[i] and j - i < 127:
            j += 1
        if j > i:
            out += bytes([257 - (j - i + 1), data[i]])
            i = j + 1
            continue
        k = i
        while k < size and k - i < 128 and not (k + 1 < size and data[k + 1] == data[k]):
            k += 1
        out += bytes([k - i - 1]) + bytes(data[i:k])
        i = k
    return bytes(out)

def rle_frame(frame_bytes):
    segment = packbits(frame_bytes)
    header = np.zeros(16, '<u4')
    header[0], header[1] = 1, 64
    body = header.tobytes() + segment
    return body + (b'\\x00' if len(body) % 2 else b'')

def save_rle(frames):
    ds.PixelData = encapsulate([rle_frame(f) for f in frames], has_bot=True)
    ds['PixelData'].is_undefined_length = True
    ds['PixelData'].VR = 'OB'
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.save_as(sys.argv[2])
`;

describe('DICOM SEG reader: compressed and fractional SEGs', () => {
  const labelsOf = async (file: string) => dicomSegToLabelVolume(await readDicomSeg(new Uint8Array(readFileSync(file)), file), source, classes, file);

  it('reads a Deflated Explicit VR Little Endian SEG (pydicom writes it) with both readers', async () => {
    const out = join(tmp, 'deflated.dcm');
    pydicom(
      `
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
ds.save_as(sys.argv[2])
`,
      out,
    );
    const written = readFileSync(out);
    expect(written.includes(Buffer.from('1.2.840.10008.1.2.1.99'))).toBe(true);
    expect(written.length).toBeLessThan(bytes.length / 2);
    expect(differing((await labelsOf(out)).data, mask)).toBe(0);
    expect(differing(dicomSegToLabelVolume(decodeDicomSeg(new Uint8Array(written), out), source, classes).data, mask)).toBe(0);
  });

  it('reads an RLE Lossless BINARY SEG (each frame its own packed bits, PackBits-coded) voxel for voxel; the sync reader says to use readDicomSeg', async () => {
    const out = join(tmp, 'rle.dcm');
    pydicom(
      `${PY_FRAMES}
save_rle([np.packbits(f, bitorder='little').tobytes() for f in bits])
`,
      out,
    );
    expect(readFileSync(out).includes(Buffer.from('1.2.840.10008.1.2.5'))).toBe(true);
    expect(differing((await labelsOf(out)).data, mask)).toBe(0);
    expect(() => decodeDicomSeg(new Uint8Array(readFileSync(out)), 'rle.dcm')).toThrow(/^rle\.dcm: DICOM SEG frames are compressed \(RLE Lossless\); read it with readDicomSeg$/);
  });

  it('reads FRACTIONAL SEGs, uncompressed and RLE: a voxel is in its segment from half of MaximumFractionalValue on', async () => {
    // Occupancy out of 200: in-segment voxels 100 (exactly half) to 200, the rest 0 to 99.
    const fractional = `${PY_FRAMES}
rng = np.random.default_rng(7)
values = np.where(bits == 1, rng.integers(100, 201, bits.shape), rng.integers(0, 100, bits.shape)).astype(np.uint8)
ds.SegmentationType = 'FRACTIONAL'
ds.SegmentationFractionalType = 'PROBABILITY'
ds.MaximumFractionalValue = 200
ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
print(int((values == 100).sum()), int(((values > 0) & (values < 100)).sum()))
`;
    const plain = join(tmp, 'fractional.dcm');
    const [atHalf, belowHalf] = pydicom(`${fractional}\nds.PixelData = values.tobytes()\nds['PixelData'].VR = 'OB'\nds.save_as(sys.argv[2])\n`, plain).trim().split(' ').map(Number);
    // The threshold is tested at its edges: voxels at exactly half are in, nonzero ones below are out.
    expect(atHalf).toBeGreaterThan(0);
    expect(belowHalf).toBeGreaterThan(0);
    expect(differing((await labelsOf(plain)).data, mask)).toBe(0);
    const rle = join(tmp, 'fractional-rle.dcm');
    pydicom(`${fractional}\nsave_rle([f.tobytes() for f in values])\n`, rle);
    expect(differing((await labelsOf(rle)).data, mask)).toBe(0);
  });

  it('refuses a BINARY SEG in an image codec, naming the syntax in one line', async () => {
    const out = join(tmp, 'jpegls.dcm');
    pydicom(
      `
import sys, pydicom
from pydicom.encaps import encapsulate
ds = pydicom.dcmread(sys.argv[1])
ds.PixelData = encapsulate([b'\\xff\\xd8\\xff\\xd9'] * int(ds.NumberOfFrames))
ds['PixelData'].is_undefined_length = True
ds.file_meta.TransferSyntaxUID = '1.2.840.10008.1.2.4.80'
ds.save_as(sys.argv[2])
`,
      out,
    );
    await expect(readDicomSeg(new Uint8Array(readFileSync(out)), 'ls.dcm')).rejects.toThrow(/^ls\.dcm: BINARY DICOM SEG in JPEG-LS Lossless is not supported \(1-bit frames: uncompressed, deflated or RLE Lossless\)$/);
  });
});
