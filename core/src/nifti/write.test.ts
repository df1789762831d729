import { gunzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import { type Mat4, maxAbsDiff4, multiply4 } from '../geometry/affine.js';
import { type VoxelArray, Volume } from '../volume.js';
import { decodeNifti, decodeNiftiHeader } from './read.js';
import { encodeNifti } from './write.js';

/** Rotation about a unit axis (Rodrigues), scaled per column and translated: oblique, shear-free. */
function obliqueAffine(spacing: [number, number, number], flipK: boolean): Mat4 {
  const [x, y, z] = [0.3, -0.5, 0.81].map((v, _, a) => v / Math.hypot(...a));
  const t = 0.7;
  const [c, s, C] = [Math.cos(t), Math.sin(t), 1 - Math.cos(t)];
  const r = [
    [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
    [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
    [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
  ];
  const scale = [spacing[0], spacing[1], flipK ? -spacing[2] : spacing[2]];
  return multiply4(
    [
      [...r[0], -91.25],
      [...r[1], 126.5],
      [...r[2], -72.125],
      [0, 0, 0, 1],
    ],
    [
      [scale[0], 0, 0, 0],
      [0, scale[1], 0, 0],
      [0, 0, scale[2], 0],
      [0, 0, 0, 1],
    ],
  );
}

const dims: [number, number, number] = [7, 5, 4];
const voxels = dims[0] * dims[1] * dims[2];

function volumeOf(data: VoxelArray, affine: Mat4, frames = 1): Volume {
  return new Volume({ data, dims, affine, frames });
}

/** Header with sform_code set to 0, so a reader must fall back to the qform. */
function qformOnly(bytes: Uint8Array): Uint8Array {
  const raw = bytes[0] === 0x1f ? gunzipSync(bytes) : bytes.slice();
  new DataView(raw.buffer).setInt16(254, 0, true);
  return raw;
}

const f32 = (m: Mat4) => m.map((row) => row.map(Math.fround));

describe('encodeNifti round trip', () => {
  const affines = {
    oblique: obliqueAffine([0.8, 1.2, 2.5], false),
    'left-handed oblique': obliqueAffine([0.8, 1.2, 2.5], true),
    'flipped axis-aligned': [
      [-1.5, 0, 0, 90],
      [0, 1.5, 0, -126],
      [0, 0, 3, -72],
      [0, 0, 0, 1],
    ],
  };
  const datasets: [string, () => VoxelArray][] = [
    ['uint8', () => Uint8Array.from({ length: voxels }, (_, n) => (n * 37) % 256)],
    ['int16', () => Int16Array.from({ length: voxels }, (_, n) => ((n * 4099) % 65536) - 32768)],
    ['float32', () => Float32Array.from({ length: voxels }, (_, n) => Math.sin(n) * 1e4)],
    ['float64', () => Float64Array.from({ length: voxels }, (_, n) => Math.sin(n) * 1e-3)],
  ];

  for (const [affineName, affine] of Object.entries(affines)) {
    for (const [typeName, make] of datasets) {
      it(`${typeName} with a ${affineName} affine: data exact, sform exact, qform within 1e-5`, () => {
        const data = make();
        const bytes = encodeNifti(volumeOf(data, affine));
        const back = decodeNifti(bytes);
        expect(back.data).toBeInstanceOf(data.constructor);
        expect(Array.from(back.data)).toEqual(Array.from(data));
        expect(back.dims).toEqual(dims);
        expect(back.affine).toEqual(f32(affine));
        const info = decodeNiftiHeader(bytes);
        expect(info.affineSource).toBe('sform');
        expect(info.sformCode).toBe(1);
        expect(info.qformCode).toBe(1);
        expect(info.xyztUnits).toBe(10);
        expect(info.datatype).toBe(typeName);
        const viaQform = decodeNifti(qformOnly(bytes));
        expect(decodeNiftiHeader(qformOnly(bytes)).affineSource).toBe('qform');
        expect(maxAbsDiff4(viaQform.affine, affine)).toBeLessThan(1e-5);
        expect(Math.sign(info.pixdim[0])).toBe(affineName === 'oblique' ? 1 : -1);
      });
    }
  }

  it('writes and reads back a 4D float32 volume', () => {
    const data = Float32Array.from({ length: voxels * 3 }, (_, n) => n / 7);
    const bytes = encodeNifti(volumeOf(data, affines.oblique, 3));
    const info = decodeNiftiHeader(bytes);
    expect(info.dims).toEqual([7, 5, 4, 3]);
    const back = decodeNifti(bytes, { allFrames: true });
    expect(back.frames).toBe(3);
    expect(Array.from(back.data)).toEqual(Array.from(data));
    const second = decodeNifti(bytes, { volumeIndex: 1 });
    expect(Array.from(second.data)).toEqual(Array.from(data.subarray(voxels, 2 * voxels)));
    expect(second.meta.warnings).toContain('4D file with 3 volumes; using volume 1');
  });

  it('keeps the source sform code, and writes description and cal_min/cal_max', () => {
    const data = Uint8Array.from({ length: voxels }, (_, n) => n % 4);
    const vol = new Volume({ data, dims, affine: affines.oblique, meta: { nifti: { sformCode: 4, qformCode: 0 } } });
    const raw = encodeNifti(vol, { gzip: false, description: 'labels from model X' });
    const info = decodeNiftiHeader(raw);
    expect([info.sformCode, info.qformCode]).toEqual([4, 4]);
    expect(info.description).toBe('labels from model X');
    expect([info.calMin, info.calMax]).toEqual([0, 3]);
    expect(info.gzip).toBe(false);
    expect(raw.length).toBe(352 + voxels);
    expect(decodeNiftiHeader(encodeNifti(vol)).gzip).toBe(true);
  });

  it('converts to a requested datatype only when every value fits exactly', () => {
    const labels = Float32Array.from({ length: voxels }, (_, n) => n % 3);
    const asUint8 = decodeNifti(encodeNifti(volumeOf(labels, affines.oblique), { datatype: 'uint8' }));
    expect(asUint8.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(asUint8.data)).toEqual(Array.from(labels));
    const fractional = labels.slice();
    fractional[5] = 2.5;
    expect(() => encodeNifti(volumeOf(fractional, affines.oblique), { datatype: 'uint8' })).toThrow(InputError);
    const big = Float32Array.from({ length: voxels }, () => 40000);
    expect(() => encodeNifti(volumeOf(big, affines.oblique), { datatype: 'int16' })).toThrow(/cannot store value 40000/);
  });
});
