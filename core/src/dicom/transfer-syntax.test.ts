import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjsCodecs from 'dcmjs-codecs';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daikonData, daikonSeries } from '../../../test/fixtures.js';
import { PYTHON } from '../../../test/support/python.js';
import { InputError } from '../errors.js';
import { type DicomInstance, type StoredFrame, parseDicomInstance } from './instance.js';

const load = (path: string) => parseDicomInstance(new Uint8Array(readFileSync(path)), path);
const file = (name: string) => join(daikonData, name);

// Independent reference: pydicom (Debian package python3-pydicom, with python3-pil for the JPEG
// baseline and JPEG 2000 files). It writes each requested frame as little-endian int32.
const PYDICOM_SCRIPT = `
import sys, numpy as np, pydicom
out = sys.argv[1]
for spec in sys.argv[2:]:
    path, frames = spec.split('|')
    a = pydicom.dcmread(path).pixel_array
    for f in frames.split(','):
        f = int(f)
        arr = a[f] if a.ndim == 3 else a
        arr.astype('<i4').tofile(f"{out}/{path.split('/')[-1]}.{f}.i32")
`;

const REFERENCE_FRAMES: Record<string, number[]> = {
  'explicit_little.dcm': [0, 15],
  'implicit_little.dcm': [0],
  'explicit_big.dcm': [0],
  'deflated.dcm': [0],
  'rle.dcm': [0],
  'jpeg_2000.dcm': [0],
  'jpeg_baseline_8bit.dcm': [0, 95],
};

let refDir: string;
beforeAll(() => {
  refDir = mkdtempSync(join(tmpdir(), 'alhvr-pydicom-'));
  const specs = Object.entries(REFERENCE_FRAMES).map(([name, frames]) => `${file(name)}|${frames.join(',')}`);
  execFileSync(PYTHON, ['-c', PYDICOM_SCRIPT, refDir, ...specs], { stdio: ['ignore', 'ignore', 'pipe'] });
});
afterAll(() => rmSync(refDir, { recursive: true, force: true }));

function reference(name: string, frame: number): Int32Array {
  const b = readFileSync(join(refDir, `${name}.${frame}.i32`));
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let n = 0; n < a.length; n++) d = Math.max(d, Math.abs(a[n] - b[n]));
  return d;
}

function nonConstant(f: StoredFrame): boolean {
  return f.some((v) => v !== f[0]);
}

describe('transfer syntaxes decode like pydicom', () => {
  const exact = ['explicit_little.dcm', 'implicit_little.dcm', 'explicit_big.dcm', 'deflated.dcm', 'rle.dcm'];
  for (const name of exact) {
    it(`${name}: identical stored values`, async () => {
      const inst = load(file(name));
      for (const f of REFERENCE_FRAMES[name]) {
        const ours = await inst.decodeFrame(f);
        expect(nonConstant(ours)).toBe(true);
        expect(maxAbsDiff(ours, reference(name, f))).toBe(0);
      }
    });
  }

  // Lossy codecs: two JPEG implementations may round the inverse DCT/wavelet differently.
  for (const name of ['jpeg_2000.dcm', 'jpeg_baseline_8bit.dcm']) {
    it(`${name}: within ±2 of pydicom/Pillow`, async () => {
      const inst = load(file(name));
      for (const f of REFERENCE_FRAMES[name]) {
        const ours = await inst.decodeFrame(f);
        expect(nonConstant(ours)).toBe(true);
        expect(maxAbsDiff(ours, reference(name, f))).toBeLessThanOrEqual(2);
      }
    });
  }
});

describe('lossless JPEG variants against a second implementation', () => {
  // pydicom cannot decode these without extra plugins; dcmjs-codecs' libjpeg-turbo/CharLS build is
  // a decoder build independent of jpeg-lossless-decoder-js and the Cornerstone CharLS wasm.
  async function viaDcmjsCodecs(path: string, inst: DicomInstance): Promise<Uint8Array> {
    const { NativeCodecs, Context } = dcmjsCodecs;
    if (!NativeCodecs.isInitialized()) await NativeCodecs.initializeAsync();
    const ds = dicomParser.parseDicom(new Uint8Array(readFileSync(path)));
    const el = ds.elements.x7fe00010;
    const encoded = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, el.fragments!.length);
    const l = inst.layout;
    const ctx = new Context({
      width: l.columns,
      height: l.rows,
      bitsAllocated: l.bitsAllocated,
      bitsStored: l.bitsStored,
      samplesPerPixel: 1,
      pixelRepresentation: l.pixelRepresentation,
      planarConfiguration: 0,
      photometricInterpretation: l.photometricInterpretation,
      encodedBuffer: encoded,
    });
    const out = inst.transferSyntaxUID.startsWith('1.2.840.10008.1.2.4.8')
      ? NativeCodecs.decodeJpegLs(ctx)
      : NativeCodecs.decodeJpeg(ctx, { convertColorspaceToRgb: false });
    return out.getDecodedBuffer()!;
  }
  for (const name of ['jpeg_lossless_sel1.dcm', 'jpeg_ls.dcm']) {
    it(`${name}: identical to a second decoder`, async () => {
      const inst = load(file(name));
      const bytes = await viaDcmjsCodecs(file(name), inst);
      const ref = inst.layout.pixelRepresentation === 1
        ? new Int16Array(bytes.slice().buffer)
        : new Uint16Array(bytes.slice().buffer);
      const ours = await inst.decodeFrame(0);
      expect(nonConstant(ours)).toBe(true);
      expect(maxAbsDiff(ours, ref)).toBe(0);
    });
  }
});

describe('the same image in different syntaxes', () => {
  it('explicit_big.dcm is slice brain_013 of the volume series, pixel for pixel', async () => {
    const big = load(file('explicit_big.dcm'));
    const little = load(join(daikonSeries, 'brain_013.dcm'));
    expect(big.seriesInstanceUID).toBe(little.seriesInstanceUID);
    expect(big.frames[0].imagePositionPatient).toEqual(little.frames[0].imagePositionPatient);
    expect(big.transferSyntaxUID).toBe('1.2.840.10008.1.2.2');
    expect(little.transferSyntaxUID).toBe('1.2.840.10008.1.2.1');
    expect(maxAbsDiff(await big.decodeFrame(0), await little.decodeFrame(0))).toBe(0);
  });

  it('rle.dcm (lossless) and jpeg_2000.dcm (lossy 4.91) hold the same CT image', async () => {
    const rle = load(file('rle.dcm'));
    const j2k = load(file('jpeg_2000.dcm'));
    expect(j2k.layout).toEqual(rle.layout);
    expect(j2k.frames[0]).toEqual(rle.frames[0]);
    expect(j2k.frames[0].imagePositionPatient).toEqual(rle.frames[0].imagePositionPatient);
    const a = await rle.decodeFrame(0);
    const b = await j2k.decodeFrame(0);
    let sum = 0;
    for (let n = 0; n < a.length; n++) sum += Math.abs(a[n] - b[n]);
    // 7.5 kB for a 512×512 CT slice is heavy compression: close on average, not per pixel.
    expect(sum / a.length).toBeLessThan(40);
    expect(sum / a.length).toBeGreaterThan(0);
  });
});

describe('instance header fields', () => {
  it('reads geometry, rescale and bit layout', () => {
    const ls = load(file('jpeg_ls.dcm'));
    expect(ls.layout).toMatchObject({ rows: 1024, columns: 1024, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 0 });
    expect(ls.frames[0].rescaleSlope).toBeCloseTo(3.774114, 6);
    expect(ls.frames[0].imageOrientationPatient).toEqual([0.569486, 0.822001, 0, -0, 0, -1]);
    expect(ls.frames[0].pixelSpacing).toEqual([0.195313, 0.195313]);
    expect(ls.frames[0].spacingBetweenSlices).toBeCloseTo(6.6, 6);
  });

  it('a header-only parse refuses to decode', async () => {
    const b = new Uint8Array(readFileSync(file('implicit_little.dcm')));
    const inst = parseDicomInstance(b, 'x.dcm', { headerOnly: true });
    expect(inst.layout.rows).toBe(256);
    await expect(inst.decodeFrame(0)).rejects.toThrow(InputError);
  });

  it('non-DICOM bytes are an InputError', () => {
    expect(() => parseDicomInstance(new TextEncoder().encode('hello, not dicom'.repeat(20)), 'a.txt')).toThrow(InputError);
  });
});
