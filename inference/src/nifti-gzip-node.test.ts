import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError, Volume, encodeNifti, scalingAffine } from '@alhvr/core';
import { readNiftiFile } from '@alhvr/core/node';
import { writeNiftiGzip } from './nifti-gzip-node.js';

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
});
