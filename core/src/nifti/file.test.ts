import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { niftiData } from '../../../test/fixtures.js';
import { InputError } from '../errors.js';
import { Volume } from '../volume.js';
import { readNiftiFile, readNiftiHeaderFile, writeNiftiFile } from './file.js';

const work = mkdtempSync(join(tmpdir(), 'alhvr-nifti-file-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const affine = [
  [-2, 0, 0, 90],
  [0, 2, 0, -126],
  [0, 0, 2, -72],
  [0, 0, 0, 1],
];

async function rejection(p: Promise<unknown>): Promise<InputError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  return err as InputError;
}

describe('readNiftiFile', () => {
  it('reads a .nii.gz with file metadata', async () => {
    const path = join(niftiData, 'avg152T1_LR_nifti.nii.gz');
    const vol = await readNiftiFile(path);
    expect(vol.meta.kind).toBe('nifti');
    expect(vol.meta.path).toBe(path);
    expect(vol.meta.sourceDatatype).toBe('uint8');
    expect(vol.dims).toEqual([91, 109, 91]);
  });

  it('reads a .hdr/.img pair given either file', async () => {
    const byHeader = await readNiftiFile(join(niftiData, 'air.hdr.gz'));
    const byImage = await readNiftiFile(join(niftiData, 'air.img.gz'));
    expect(byHeader.dims).toEqual([79, 67, 64]);
    expect(Buffer.from(byImage.data.buffer).equals(Buffer.from(byHeader.data.buffer))).toBe(true);
    copyFileSync(join(niftiData, 'air.hdr.gz'), join(work, 'lonely.hdr.gz'));
    const err = await rejection(readNiftiFile(join(work, 'lonely.hdr.gz')));
    expect(err.message).toContain('lonely.img.gz not found');
  });

  it('passes volume selection through', async () => {
    const vol = await readNiftiFile(join(niftiData, '5D_small.nii'), { volumeIndex: 2 });
    expect(vol.meta.warnings).toContain('5D file with 3 volumes; using volume 2');
    expect((await readNiftiFile(join(niftiData, '5D_small.nii'), { allFrames: true })).frames).toBe(3);
  });

  it('names the file in errors: missing, directory, truncated, corrupt', async () => {
    const missing = join(work, 'nope.nii.gz');
    expect((await rejection(readNiftiFile(missing))).message).toBe(`${missing}: file not found`);
    expect((await rejection(readNiftiFile(work))).message).toMatch(/is a directory/);
    const full = readFileSync(join(niftiData, 'avg152T1_LR_nifti.nii'));
    const truncated = join(work, 'truncated.nii');
    writeFileSync(truncated, full.subarray(0, 500_000));
    expect((await rejection(readNiftiFile(truncated))).message).toMatch(/truncated\.nii: truncated/);
    const gz = readFileSync(join(niftiData, 'little.nii.gz'));
    const truncatedGz = join(work, 'truncated.nii.gz');
    writeFileSync(truncatedGz, gz.subarray(0, gz.length / 2));
    expect((await rejection(readNiftiFile(truncatedGz))).message).toContain(truncatedGz);
    const corrupt = Buffer.from(gz);
    for (let n = 2000; n < 2100; n++) corrupt[n] ^= 0xa5;
    writeFileSync(join(work, 'corrupt.nii.gz'), corrupt);
    expect((await rejection(readNiftiFile(join(work, 'corrupt.nii.gz')))).path).toBe(join(work, 'corrupt.nii.gz'));
    const notNifti = join(niftiData, 'not-nifti.nii');
    expect((await rejection(readNiftiFile(notNifti))).message).toContain('not a NIfTI file');
  });
});

describe('readNiftiHeaderFile', () => {
  it('reads the header of .nii, .nii.gz and pair files', async () => {
    expect((await readNiftiHeaderFile(join(niftiData, 'with_extension.nii.gz'))).dims).toEqual([161, 191, 151, 1]);
    expect((await readNiftiHeaderFile(join(niftiData, 'big.nii.gz'))).byteOrder).toBe('big');
    const pair = await readNiftiHeaderFile(join(niftiData, 'air2.img.gz'));
    expect([pair.version, pair.layout]).toEqual([2, 'pair']);
    await rejection(readNiftiHeaderFile(join(work, 'missing.nii')));
  });
});

describe('writeNiftiFile', () => {
  const vol = new Volume({ data: Int16Array.from({ length: 60 }, (_, n) => n - 30), dims: [5, 4, 3], affine });

  it('writes gzip for .nii.gz and plain for .nii, readable back, leaving no temp file', async () => {
    const dir = join(work, 'out');
    await writeNiftiFile(join(dir, 'a.nii.gz'), vol);
    await writeNiftiFile(join(dir, 'b.nii'), vol);
    expect(readFileSync(join(dir, 'a.nii.gz')).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(readFileSync(join(dir, 'b.nii')).length).toBe(352 + 120);
    for (const name of ['a.nii.gz', 'b.nii']) {
      const back = await readNiftiFile(join(dir, name));
      expect(Array.from(back.data)).toEqual(Array.from(vol.data));
      expect(back.affine).toEqual(affine);
    }
    expect(readdirSync(dir).sort()).toEqual(['a.nii.gz', 'b.nii']);
  });

  it('leaves the target untouched and no temp file when encoding or writing fails', async () => {
    const dir = join(work, 'fail');
    mkdirSync(dir);
    const target = join(dir, 'labels.nii.gz');
    await writeNiftiFile(target, vol);
    const before = readFileSync(target);
    const err = await rejection(writeNiftiFile(target, vol, { datatype: 'uint8' }));
    expect(err.message).toMatch(/labels\.nii\.gz: cannot store value -30/);
    expect(readFileSync(target).equals(before)).toBe(true);
    // A directory where the file should go: the rename fails after the temp file was written.
    mkdirSync(join(dir, 'blocked.nii.gz'));
    await rejection(writeNiftiFile(join(dir, 'blocked.nii.gz'), vol));
    expect(readdirSync(dir).sort()).toEqual(['blocked.nii.gz', 'labels.nii.gz']);
    await rejection(writeNiftiFile(join(dir, 'labels.mha'), vol));
  });
});
