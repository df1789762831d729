import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { constants as zlibConstants, crc32, gunzipSync, inflateRawSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError, Volume, encodeNifti, scalingAffine } from '@alhvr/core';
import { readNiftiFile } from '@alhvr/core/node';
import { deflateStrategyFor, OUTPUT_GZIP_LEVEL, writeNiftiGzip } from './nifti-gzip-node.js';

const dir = mkdtempSync(join(tmpdir(), 'alhvr-nifti-gzip-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function volume(): Volume<Float32Array> {
  const dims: [number, number, number] = [7, 5, 3];
  const data = Float32Array.from({ length: 105 }, (_, n) => Math.sin(n) * 3);
  return new Volume({ data, dims, affine: scalingAffine([1.5, 0.8, 4]) });
}

describe('writeNiftiGzip', () => {
  it('writes exactly the bytes of core encodeNifti, gzipped', async () => {
    const vol = volume();
    const path = join(dir, 'conf.nii.gz');
    await writeNiftiGzip(path, vol, { datatype: 'float32', description: 'alhvr confidence' });
    const expected = encodeNifti(vol, { datatype: 'float32', description: 'alhvr confidence', gzip: false });
    expect(new Uint8Array(gunzipSync(readFileSync(path)))).toEqual(expected);
    const back = await readNiftiFile(path);
    expect(Array.from(back.data)).toEqual(Array.from(vol.data));
    expect(back.dims).toEqual(vol.dims);
  });

  it('converts to uint8 and refuses values uint8 cannot hold, naming the file', async () => {
    const labels = volume().withData(Float32Array.from({ length: 105 }, (_, n) => n % 4));
    const path = join(dir, 'mask.nii.gz');
    await writeNiftiGzip(path, labels, { datatype: 'uint8' });
    const back = await readNiftiFile(path);
    expect(back.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(back.data)).toEqual(Array.from(labels.data));
    const bad = join(dir, 'bad.nii.gz');
    await expect(writeNiftiGzip(bad, volume(), { datatype: 'uint8' })).rejects.toThrow(InputError);
    await expect(writeNiftiGzip(bad, volume(), { datatype: 'uint8' })).rejects.toThrow(/bad\.nii\.gz/);
  });

  it('compresses a float map with few repeated strings by Huffman coding alone, one with repeated values with string matching', async () => {
    const n = 512 * 1024;
    // A confidence-like map: smooth with float noise in the low mantissa bits, as a network gives it.
    let seed = 12345;
    const noisy = Float32Array.from({ length: n }, (_, i) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return 0.6 + 0.39 * Math.sin(i / 3000) + (seed / 2 ** 32) * 1e-3;
    });
    // Mostly exact 1.0 with short bands of noise throughout: string matching compresses the ones.
    const repeats = Float32Array.from(noisy, (v, i) => (i % 4096 < 512 ? v : 1));
    const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    expect(await deflateStrategyFor(bytes(noisy), OUTPUT_GZIP_LEVEL)).toBe(zlibConstants.Z_HUFFMAN_ONLY);
    expect(await deflateStrategyFor(bytes(repeats), OUTPUT_GZIP_LEVEL)).toBe(zlibConstants.Z_DEFAULT_STRATEGY);
    expect(await deflateStrategyFor(bytes(noisy.subarray(0, 1000)), OUTPUT_GZIP_LEVEL)).toBe(zlibConstants.Z_DEFAULT_STRATEGY);

    // Either way the file holds exactly the voxels.
    const dims: [number, number, number] = [128, 64, 64];
    for (const data of [noisy, repeats]) {
      const vol = new Volume({ data, dims, affine: scalingAffine([1, 1, 1]) });
      const path = join(dir, 'float-map.nii.gz');
      await writeNiftiGzip(path, vol, { datatype: 'float32' });
      const expected = encodeNifti(vol, { datatype: 'float32', gzip: false });
      expect(new Uint8Array(gunzipSync(readFileSync(path)))).toEqual(expected);
    }
  });

  it('writes a large map as pieces compressed side by side, joined into one gzip member', async () => {
    const dims: [number, number, number] = [96, 80, 70];
    let seed = 7;
    const data = Float32Array.from({ length: dims[0] * dims[1] * dims[2] }, (_, i) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return i % 5000 < 2500 ? 1 : 0.5 + (seed / 2 ** 32) * 0.5;
    });
    const vol = new Volume({ data, dims, affine: scalingAffine([1, 1, 2]) });
    const expected = encodeNifti(vol, { datatype: 'float32', gzip: false });
    for (const pieceBytes of [64 * 1024, 1000 * 1000 + 3]) {
      const path = join(dir, `pieces-${pieceBytes}.nii.gz`);
      await writeNiftiGzip(path, vol, { datatype: 'float32', pieceBytes });
      const file = readFileSync(path);
      expect(new Uint8Array(gunzipSync(file))).toEqual(expected);
      // One member: the deflate stream after the 10-byte header holds every byte, and the trailer
      // carries the CRC and size of all of them.
      expect(Array.from(file.subarray(0, 4))).toEqual([0x1f, 0x8b, 8, 0]);
      expect(new Uint8Array(inflateRawSync(file.subarray(10, file.length - 8)))).toEqual(expected);
      expect(file.readUInt32LE(file.length - 8)).toBe(crc32(expected) >>> 0);
      expect(file.readUInt32LE(file.length - 4)).toBe(expected.length);
      execFileSync('gzip', ['-t', path]); // another implementation accepts it
      const back = await readNiftiFile(path);
      expect(back.data).toEqual(vol.data);
    }
  });
});
