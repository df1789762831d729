// Seeded mutations of real NIfTI files: every case must decode to a consistent Volume or throw
// InputError, without allocating memory in proportion to what a corrupt header claims.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { InputError, Rng, Volume, decodeNifti, decodeNiftiHeader, isFiniteMat4 } from '@alhvr/core';
import { niftiData } from './fixtures.js';

interface Case {
  name: string;
  bytes: Uint8Array;
  allFrames?: boolean;
}

const file = (name: string) => new Uint8Array(readFileSync(join(niftiData, name)));
const plain = (name: string) => (name.endsWith('.gz') ? gunzipSync(file(name)) : file(name));

// Uncompressed sources with their header layout: NIfTI-1 little/big endian, NIfTI-2, 5D scaled.
const sources = [
  { name: 'little', bytes: plain('little.nii.gz') },
  { name: 'big', bytes: plain('big.nii.gz') },
  { name: 'nifti2', bytes: plain('avg152T1_LR_nifti2.nii.gz') },
  { name: '5D', bytes: plain('5D_small.nii') },
  { name: 'avg152', bytes: plain('avg152T1_LR_nifti.nii') },
];

function littleEndian(bytes: Uint8Array): boolean {
  const size = new DataView(bytes.buffer, bytes.byteOffset).getInt32(0, true);
  return size === 348 || size === 540;
}

type Field = (dv: DataView, le: boolean, v2: boolean) => void;

/** Header fields set to hostile values, in either header version. */
const fieldMutations: [string, Field][] = [
  ['dim1=max', (dv, le, v2) => (v2 ? dv.setBigInt64(24, 2n ** 31n - 1n, le) : dv.setInt16(42, 32767, le))],
  ['dim1..3=max', (dv, le, v2) => [1, 2, 3].forEach((n) => (v2 ? dv.setBigInt64(16 + 8 * n, 2n ** 31n - 1n, le) : dv.setInt16(40 + 2 * n, 32767, le)))],
  ['dim1=2^62', (dv, le, v2) => (v2 ? dv.setBigInt64(24, 2n ** 62n, le) : dv.setInt16(42, -32768, le))],
  ['dim2=-1', (dv, le, v2) => (v2 ? dv.setBigInt64(32, -1n, le) : dv.setInt16(44, -1, le))],
  ['dim3=0', (dv, le, v2) => (v2 ? dv.setBigInt64(40, 0n, le) : dv.setInt16(46, 0, le))],
  ['dim0=0', (dv, le, v2) => (v2 ? dv.setBigInt64(16, 0n, le) : dv.setInt16(40, 0, le))],
  ['dim0=8', (dv, le, v2) => (v2 ? dv.setBigInt64(16, 8n, le) : dv.setInt16(40, 8, le))],
  ['dim0=7,dims=huge', (dv, le, v2) => [0, 4, 5, 6, 7].forEach((n) => (v2 ? dv.setBigInt64(16 + 8 * n, n ? 30000n : 7n, le) : dv.setInt16(40 + 2 * n, n ? 30000 : 7, le)))],
  ['dim4=1000', (dv, le, v2) => (v2 ? (dv.setBigInt64(16, 4n, le), dv.setBigInt64(48, 1000n, le)) : (dv.setInt16(40, 4, le), dv.setInt16(48, 1000, le)))],
  ['vox_offset=-1', (dv, le, v2) => (v2 ? dv.setBigInt64(168, -1n, le) : dv.setFloat32(108, -1, le))],
  ['vox_offset=1e30', (dv, le, v2) => (v2 ? dv.setBigInt64(168, 2n ** 60n, le) : dv.setFloat32(108, 1e30, le))],
  ['vox_offset=NaN', (dv, le, v2) => (v2 ? dv.setBigInt64(168, 2n ** 31n, le) : dv.setFloat32(108, NaN, le))],
  ['vox_offset=10', (dv, le, v2) => (v2 ? dv.setBigInt64(168, 10n, le) : dv.setFloat32(108, 10, le))],
  ['vox_offset=end', (dv, le, v2) => (v2 ? dv.setBigInt64(168, BigInt(dv.byteLength - 8), le) : dv.setFloat32(108, dv.byteLength - 8, le))],
  ['vox_offset=352.5', (dv, le, v2) => (v2 ? dv.setBigInt64(168, 545n, le) : dv.setFloat32(108, 352.5, le))],
  ['datatype=complex', (dv, le, v2) => dv.setInt16(v2 ? 12 : 70, 32, le)],
  ['datatype=rgb', (dv, le, v2) => dv.setInt16(v2 ? 12 : 70, 128, le)],
  ['datatype=float64', (dv, le, v2) => dv.setInt16(v2 ? 12 : 70, 64, le)],
  ['datatype=int64', (dv, le, v2) => dv.setInt16(v2 ? 12 : 70, 1024, le)],
  ['datatype=binary', (dv, le, v2) => dv.setInt16(v2 ? 12 : 70, 1, le)],
  ['datatype=unknown', (dv, le, v2) => dv.setInt16(v2 ? 12 : 70, 9999, le)],
  ['bitpix=3', (dv, le, v2) => dv.setInt16(v2 ? 14 : 72, 3, le)],
  ['pixdim=NaN', (dv, le, v2) => [1, 2, 3].forEach((n) => (v2 ? dv.setFloat64(104 + 8 * n, NaN, le) : dv.setFloat32(76 + 4 * n, NaN, le)))],
  ['pixdim=0', (dv, le, v2) => [1, 2, 3].forEach((n) => (v2 ? dv.setFloat64(104 + 8 * n, 0, le) : dv.setFloat32(76 + 4 * n, 0, le)))],
  ['pixdim=-inf', (dv, le, v2) => (v2 ? dv.setFloat64(112, -Infinity, le) : dv.setFloat32(80, -Infinity, le))],
  ['scl_slope=inf', (dv, le, v2) => (v2 ? dv.setFloat64(176, Infinity, le) : dv.setFloat32(112, Infinity, le))],
  ['scl_inter=NaN,slope=2', (dv, le, v2) => (v2 ? (dv.setFloat64(176, 2, le), dv.setFloat64(184, NaN, le)) : (dv.setFloat32(112, 2, le), dv.setFloat32(116, NaN, le)))],
  ['sform=NaN', (dv, le, v2) => (v2 ? (dv.setInt32(348, 1, le), dv.setFloat64(400, NaN, le)) : (dv.setInt16(254, 1, le), dv.setFloat32(280, NaN, le)))],
  ['sform=zero', (dv, le, v2) => { if (v2) dv.setInt32(348, 2, le); else dv.setInt16(254, 2, le); for (let n = 0; n < 12; n++) { if (v2) dv.setFloat64(400 + 8 * n, 0, le); else dv.setFloat32(280 + 4 * n, 0, le); } }],
  ['sform=1e38 m', (dv, le, v2) => (v2 ? (dv.setInt32(348, 1, le), dv.setFloat64(400, 1e308, le), dv.setInt32(500, 1, le)) : (dv.setInt16(254, 1, le), dv.setFloat32(280, 1e38, le), dv.setUint8(123, 1)))],
  ['qform=huge quaternion', (dv, le, v2) => (v2 ? (dv.setInt32(348, 0, le), dv.setInt32(344, 1, le), dv.setFloat64(352, 1e300, le)) : (dv.setInt16(254, 0, le), dv.setInt16(252, 1, le), dv.setFloat32(256, 1e30, le)))],
  ['qform=NaN', (dv, le, v2) => (v2 ? (dv.setInt32(348, 0, le), dv.setInt32(344, 1, le), dv.setFloat64(360, NaN, le)) : (dv.setInt16(254, 0, le), dv.setInt16(252, 1, le), dv.setFloat32(260, NaN, le)))],
  ['codes=-7', (dv, le, v2) => (v2 ? (dv.setInt32(348, -7, le), dv.setInt32(344, -7, le)) : (dv.setInt16(254, -7, le), dv.setInt16(252, -7, le)))],
  ['xyzt_units=255', (dv, le, v2) => (v2 ? dv.setInt32(500, 255, le) : dv.setUint8(123, 255))],
  ['magic=garbage', (dv, _le, v2) => dv.setUint32(v2 ? 4 : 344, 0xdeadbeef)],
  ['sizeof_hdr=349', (dv, le) => dv.setInt32(0, 349, le)],
];

function buildCases(): Case[] {
  const rng = new Rng(20240611);
  const cases: Case[] = [];
  const pick = <T>(xs: T[]) => xs[rng.int(0, xs.length - 1)];

  // Hostile field values in every header flavour, stored plain and gzipped.
  for (const source of sources.slice(0, 4)) {
    const v2 = source.name === 'nifti2';
    for (const [field, mutate] of fieldMutations) {
      const bytes = source.bytes.slice();
      mutate(new DataView(bytes.buffer), littleEndian(source.bytes), v2);
      cases.push({ name: `${source.name} ${field}`, bytes });
      if (!v2 && cases.length % 2 === 0) cases.push({ name: `${source.name} ${field} gz`, bytes: gzipSync(bytes, { level: 1 }) });
    }
  }
  // Random byte flips in the header (and extension flag).
  for (let n = 0; n < 60; n++) {
    const source = pick(sources);
    const bytes = source.bytes.slice();
    const headerEnd = littleEndian(bytes) ? new DataView(bytes.buffer).getInt32(0, true) : 348;
    const flips = rng.int(1, 4);
    for (let f = 0; f < flips; f++) bytes[rng.int(0, Math.min(headerEnd + 3, bytes.length - 1))] ^= 1 << rng.int(0, 7);
    cases.push({ name: `${source.name} header flips #${n}`, bytes, allFrames: n % 5 === 0 });
  }
  // Random byte flips in the voxel data: must still decode.
  for (let n = 0; n < 15; n++) {
    const source = pick(sources);
    const bytes = source.bytes.slice();
    for (let f = 0; f < 8; f++) bytes[rng.int(552, bytes.length - 1)] ^= rng.int(1, 255);
    cases.push({ name: `${source.name} data flips #${n}`, bytes });
  }
  // Truncations of plain files at many lengths, including around the header boundaries.
  for (const source of sources.slice(0, 4)) {
    const lengths = [0, 1, 3, 4, 100, 347, 348, 351, 352, 539, 540, 544, source.bytes.length - 1];
    for (let n = 0; n < 5; n++) lengths.push(rng.int(0, source.bytes.length - 1));
    for (const length of lengths) cases.push({ name: `${source.name} truncated to ${length}`, bytes: source.bytes.slice(0, length) });
  }
  // Truncated and corrupted gzip streams of the original compressed files.
  for (const name of ['little.nii.gz', 'big.nii.gz', 'avg152T1_LR_nifti2.nii.gz', 'with_extension.nii.gz']) {
    const gz = file(name);
    for (const length of [2, 10, 20, 100, 1000, rng.int(1000, gz.length - 1), rng.int(1000, gz.length - 1), gz.length - 4, gz.length - 1]) {
      cases.push({ name: `${name} truncated to ${length}`, bytes: gz.slice(0, length) });
    }
    for (let n = 0; n < 6; n++) {
      const bytes = gz.slice();
      const at = n < 2 ? rng.int(2, 20) : rng.int(20, gz.length - 1);
      for (let f = 0; f < 3; f++) bytes[Math.min(at + f, gz.length - 1)] ^= rng.int(1, 255);
      cases.push({ name: `${name} stream flips #${n} at ${at}`, bytes });
    }
  }
  return cases;
}

/**
 * A valid uint8 header (10×10×10 unless told) followed by 512 MiB of zeros: one gzip member holding the header
 * and 1 MiB of zeros, then the same 1 MiB member repeated (gzip allows concatenated members).
 */
function gzipBomb(dims: [number, number, number] = [10, 10, 10]): Uint8Array {
  const first = new Uint8Array(352 + (1 << 20));
  const dv = new DataView(first.buffer);
  dv.setInt32(0, 348, true);
  [3, ...dims, 1, 1, 1, 1].forEach((d, n) => dv.setInt16(40 + 2 * n, d, true));
  dv.setInt16(70, 2, true);
  dv.setInt16(72, 8, true);
  [1, 1, 1, 1].forEach((p, n) => dv.setFloat32(76 + 4 * n, p, true));
  dv.setFloat32(108, 352, true);
  first.set([0x6e, 0x2b, 0x31, 0], 344);
  const head = gzipSync(first, { level: 9 });
  const member = gzipSync(new Uint8Array(1 << 20), { level: 9 });
  const out = new Uint8Array(head.length + 511 * member.length);
  out.set(head);
  for (let n = 0; n < 511; n++) out.set(member, head.length + n * member.length);
  return out;
}

describe('NIfTI decoding under hostile input', () => {
  it('every mutated file decodes consistently or throws InputError, without runaway allocation', () => {
    const cases = buildCases();
    expect(cases.length).toBeGreaterThanOrEqual(280);
    const unexpected: string[] = [];
    let decoded = 0;
    let rejected = 0;
    let worstJump = 0;
    for (const c of cases) {
      const before = process.memoryUsage().arrayBuffers;
      for (const attempt of ['header', 'volume'] as const) {
        try {
          if (attempt === 'header') {
            const info = decodeNiftiHeader(c.bytes);
            if (!isFiniteMat4(info.affine) || info.spatialDims.some((d) => !(d >= 1))) unexpected.push(`${c.name}: bad header info`);
          } else {
            const vol = decodeNifti(c.bytes, { allFrames: c.allFrames });
            const expected = vol.dims[0] * vol.dims[1] * vol.dims[2] * vol.frames;
            if (!(vol instanceof Volume) || vol.data.length !== expected || !isFiniteMat4(vol.affine)) {
              unexpected.push(`${c.name}: inconsistent volume`);
            }
            decoded++;
          }
        } catch (err) {
          if (!(err instanceof InputError)) unexpected.push(`${c.name} (${attempt}): ${String(err)}`);
          else if (attempt === 'volume') rejected++;
        }
        worstJump = Math.max(worstJump, process.memoryUsage().arrayBuffers - before);
      }
    }
    expect(unexpected).toEqual([]);
    // The mutations must exercise both outcomes, or the test proves nothing.
    expect(decoded).toBeGreaterThan(40);
    expect(rejected).toBeGreaterThan(100);
    expect(worstJump).toBeLessThan(512 * 2 ** 20);
    // Voxel flips never break a file: those cases all decode.
    for (const c of cases.filter((x) => x.name.includes('data flips'))) expect(() => decodeNifti(c.bytes)).not.toThrow();
  });

  it('stops inflating a gzip bomb at the size the header implies', () => {
    const bomb = gzipBomb();
    expect(bomb.length).toBeLessThan(2 ** 20);
    const before = process.memoryUsage().arrayBuffers;
    const vol = decodeNifti(bomb);
    expect(vol.dims).toEqual([10, 10, 10]);
    expect(vol.data.length).toBe(1000);
    // The same stream behind a header claiming 256³ voxels really yields them: members are followed.
    const honest = decodeNifti(gzipBomb([256, 256, 256]));
    expect(honest.data.length).toBe(256 ** 3);
    expect(honest.data.every((v) => v === 0)).toBe(true);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 2 ** 20);
  });
});
