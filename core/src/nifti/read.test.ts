import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { niftiData } from '../../../test/fixtures.js';
import { InputError } from '../errors.js';
import { maxAbsDiff4 } from '../geometry/affine.js';
import { decodeNifti, decodeNiftiHeader, decodeNiftiPair } from './read.js';

const bytes = (name: string) => new Uint8Array(readFileSync(join(niftiData, name)));

/** Index of the first differing value, or -1 (toEqual on million-element arrays is slow). */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let n = 0; n < a.length; n++) if (a[n] !== b[n]) return n;
  return -1;
}

function sum(data: ArrayLike<number>): number {
  let s = 0;
  for (let n = 0; n < data.length; n++) s += data[n];
  return s;
}

describe('decodeNifti on third-party files', () => {
  it('reads big- and little-endian copies of one image identically', () => {
    const big = decodeNifti(bytes('big.nii.gz'));
    const little = decodeNifti(bytes('little.nii.gz'));
    expect(decodeNiftiHeader(bytes('big.nii.gz')).byteOrder).toBe('big');
    expect(decodeNiftiHeader(bytes('little.nii.gz')).byteOrder).toBe('little');
    expect(big.dims).toEqual([64, 64, 21]);
    expect(big.data).toBeInstanceOf(Float32Array);
    expect(firstDifference(little.data, big.data)).toBe(-1);
    expect(maxAbsDiff4(big.affine, little.affine)).toBe(0);
    // A byte-order mistake turns image values into huge or denormal floats; the real data is not flat.
    const magnitudes = Array.from(big.data, Math.abs);
    expect(Math.max(...magnitudes)).toBeGreaterThan(1);
    expect(Math.max(...magnitudes)).toBeLessThan(1e5);
    expect(magnitudes.filter((v) => v > 0 && v < 1e-6)).toEqual([]);
  });

  it('reads the NIfTI-1 and NIfTI-2 avg152 files to the same image and affine', () => {
    const n1 = decodeNifti(bytes('avg152T1_LR_nifti.nii.gz'));
    const n2 = decodeNifti(bytes('avg152T1_LR_nifti2.nii.gz'));
    expect(decodeNiftiHeader(bytes('avg152T1_LR_nifti.nii.gz')).version).toBe(1);
    expect(decodeNiftiHeader(bytes('avg152T1_LR_nifti2.nii.gz')).version).toBe(2);
    expect(n1.dims).toEqual([91, 109, 91]);
    expect(n2.dims).toEqual(n1.dims);
    expect(firstDifference(n2.data, n1.data)).toBe(-1);
    expect(maxAbsDiff4(n1.affine, n2.affine)).toBeLessThan(1e-6);
    expect(n1.spacing).toEqual([2, 2, 2]);
    expect(sum(n1.data)).toBeGreaterThan(0);
  });

  it('reads .nii and .nii.gz of the same image identically', () => {
    const raw = decodeNifti(bytes('avg152T1_LR_nifti.nii'));
    const gz = decodeNifti(bytes('avg152T1_LR_nifti.nii.gz'));
    expect(firstDifference(raw.data, gz.data)).toBe(-1);
    expect(raw.data).toBeInstanceOf(Uint8Array);
    expect(raw.affine).toEqual(gz.affine);
    expect(raw.meta.sourceDatatype).toBe('uint8');
    expect(decodeNiftiHeader(bytes('avg152T1_LR_nifti.nii')).gzip).toBe(false);
    expect(decodeNiftiHeader(bytes('avg152T1_LR_nifti.nii.gz')).gzip).toBe(true);
  });

  it('reads a file with a header extension (data after vox_offset 736)', () => {
    const info = decodeNiftiHeader(bytes('with_extension.nii.gz'));
    expect(info.hasExtension).toBe(true);
    expect(info.voxOffset).toBe(736);
    expect(info.affineSource).toBe('sform');
    const vol = decodeNifti(bytes('with_extension.nii.gz'));
    expect(vol.dims).toEqual([161, 191, 151]);
    expect(vol.data.length).toBe(161 * 191 * 151);
    expect(vol.meta.warnings).toEqual([]);
  });

  it('rejects a file that is not NIfTI with an InputError naming it', () => {
    expect(() => decodeNifti(bytes('not-nifti.nii'), { path: 'not-nifti.nii' })).toThrow(InputError);
    expect(() => decodeNifti(bytes('not-nifti.nii'), { path: 'not-nifti.nii' })).toThrow(/^not-nifti\.nii: not a NIfTI file/);
    expect(() => decodeNifti(new Uint8Array(0))).toThrow(InputError);
  });

  it('selects one volume of a 5D file, warns, and can read all of them', () => {
    const file = bytes('5D_small.nii');
    const info = decodeNiftiHeader(file);
    expect(info.dims).toEqual([1, 2, 3, 1, 3]);
    expect(info.volumes).toBe(3);
    const all = decodeNifti(file, { allFrames: true });
    expect(all.frames).toBe(3);
    expect(all.data.length).toBe(18);
    for (let v = 0; v < 3; v++) {
      const one = decodeNifti(file, { volumeIndex: v });
      expect(one.frames).toBe(1);
      expect(one.meta.warnings).toContain(`5D file with 3 volumes; using volume ${v}`);
      expect(Array.from(one.data)).toEqual(Array.from(all.data.subarray(6 * v, 6 * v + 6)));
    }
    expect(decodeNifti(file).meta.warnings).toContain('5D file with 3 volumes; using volume 0');
    expect(() => decodeNifti(file, { volumeIndex: 3 })).toThrow(InputError);
    expect(() => decodeNifti(file, { volumeIndex: -1 })).toThrow(InputError);
    expect(() => decodeNifti(file, { volumeIndex: 0.5 })).toThrow(InputError);
  });

  it('applies scl_slope/scl_inter to uint8 data as float32', () => {
    // 5D_small stores uint8 with slope 0.0027581 and intercept 0.076919.
    const file = bytes('5D_small.nii');
    const vol = decodeNifti(file, { allFrames: true });
    expect(vol.data).toBeInstanceOf(Float32Array);
    expect(vol.meta.sourceDatatype).toBe('uint8');
    const dv = new DataView(file.buffer, file.byteOffset);
    const slope = dv.getFloat32(112, true);
    const inter = dv.getFloat32(116, true);
    for (let n = 0; n < 18; n++) expect(vol.data[n]).toBeCloseTo(file[352 + n] * slope + inter, 6);
  });

  it('reads a NIfTI-1 and a NIfTI-2 .hdr/.img pair, and refuses the header alone', () => {
    for (const stem of ['air', 'air2']) {
      const hdr = bytes(`${stem}.hdr.gz`);
      const vol = decodeNiftiPair(hdr, bytes(`${stem}.img.gz`));
      expect(vol.dims).toEqual([79, 67, 64]);
      expect(vol.data.length).toBe(79 * 67 * 64);
      expect(decodeNiftiHeader(hdr).layout).toBe('pair');
      expect(() => decodeNifti(hdr)).toThrow(/\.hdr\/\.img pair/);
    }
    const a = decodeNiftiPair(bytes('air.hdr.gz'), bytes('air.img.gz'));
    const b = decodeNiftiPair(bytes('air2.hdr.gz'), bytes('air2.img.gz'));
    expect(firstDifference(b.data, a.data)).toBe(-1);
    expect(maxAbsDiff4(a.affine, b.affine)).toBeLessThan(1e-5);
  });

  it('reads the header without decompressing the image', () => {
    // Only the first 16 KiB of the gzip stream: the header is there, the voxels are not.
    const head = bytes('with_extension.nii.gz').subarray(0, 16384);
    expect(decodeNiftiHeader(head).spatialDims).toEqual([161, 191, 151]);
    expect(() => decodeNifti(head)).toThrow(InputError);
  });
});

describe('decodeNifti header handling', () => {
  // An uncompressed copy of little.nii.gz to patch header fields in.
  const base = () => gunzipSync(bytes('little.nii.gz'));
  const patch = (f: (dv: DataView, b: Uint8Array) => void) => {
    const b = base();
    f(new DataView(b.buffer), b);
    return b;
  };

  it('converts an affine in metres or microns to millimetres', () => {
    const mm = decodeNifti(base());
    const metres = decodeNifti(patch((_, b) => (b[123] = (b[123] & ~7) | 1)));
    const microns = decodeNifti(patch((_, b) => (b[123] = (b[123] & ~7) | 3)));
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 4; c++) {
        expect(metres.affine[r][c]).toBeCloseTo(mm.affine[r][c] * 1000, 6);
        expect(microns.affine[r][c]).toBeCloseTo(mm.affine[r][c] / 1000, 9);
      }
    }
  });

  it('follows sform, then qform, then pixdim precedence', () => {
    // little.nii.gz has qform_code 1, sform_code 0.
    const q = decodeNiftiHeader(base());
    expect(q.affineSource).toBe('qform');
    const s = decodeNiftiHeader(
      patch((dv) => {
        dv.setInt16(254, 2, true);
        const srow = [
          [0, 0, 3, 10],
          [-2, 0, 0, 20],
          [0, 5, 0, 30],
        ];
        srow.forEach((row, r) => row.forEach((v, c) => dv.setFloat32(280 + 16 * r + 4 * c, v, true)));
      }),
    );
    expect(s.affineSource).toBe('sform');
    expect(s.affine).toEqual([
      [0, 0, 3, 10],
      [-2, 0, 0, 20],
      [0, 5, 0, 30],
      [0, 0, 0, 1],
    ]);
    expect(s.spacing).toEqual([2, 5, 3]);
    const p = decodeNiftiHeader(patch((dv) => dv.setInt16(252, 0, true)));
    expect(p.affineSource).toBe('pixdim');
    expect(p.affine).toEqual([
      [4, 0, 0, 0],
      [0, 4, 0, 0],
      [0, 0, 6, 0],
      [0, 0, 0, 1],
    ]);
  });

  it('rejects dims the file cannot hold before allocating, and bad header fields', () => {
    const huge = patch((dv) => dv.setInt16(42, 32767, true));
    expect(() => decodeNifti(huge)).toThrow(/truncated: the header needs/);
    expect(() => decodeNifti(patch((dv) => dv.setInt16(44, -5, true)))).toThrow(/invalid dim\[2\]/);
    expect(() => decodeNifti(patch((dv) => dv.setInt16(40, 9, true)))).toThrow(/invalid dim\[0\]/);
    expect(() => decodeNifti(patch((dv) => dv.setFloat32(108, 100, true)))).toThrow(/vox_offset/);
    expect(() => decodeNifti(patch((dv) => dv.setFloat32(108, 352.5, true)))).toThrow(/vox_offset/);
    expect(() => decodeNifti(patch((dv) => dv.setInt16(70, 32, true)))).toThrow(/unsupported datatype complex64/);
    expect(() => decodeNifti(patch((dv) => dv.setInt16(70, 128, true)))).toThrow(/unsupported datatype rgb24/);
    expect(() => decodeNifti(patch((dv) => dv.setInt16(70, 3, true)))).toThrow(/unknown datatype code 3/);
  });
});
