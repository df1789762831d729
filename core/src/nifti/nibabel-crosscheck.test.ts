// Cross-checks against nibabel, an independent NIfTI implementation (Debian package
// python3-nibabel, run with the system /usr/bin/python3 so a pyenv/venv python on PATH does not hide it).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { niftiData } from '../../../test/fixtures.js';
import { PYTHON } from '../../../test/support/python.js';
import { InputError } from '../errors.js';
import { type Mat4, maxAbsDiff4 } from '../geometry/affine.js';
import { Volume } from '../volume.js';
import { decodeNifti, decodeNiftiHeader, decodeNiftiPair } from './read.js';
import { encodeNifti } from './write.js';


// Reads: affine by the standard's precedence, qform affine, and per-volume sum + samples of the
// scaled data in NIfTI (Fortran) order. Writes: files of each dtype/byte order with data from a formula.
const SCRIPT = String.raw`
import json, sys
import numpy as np
import nibabel as nib

def formula(n, dtype):
    n = n.astype(np.float64)
    kind = np.dtype(dtype).kind
    if kind == 'f':
        return np.sin(n) * 1000.0
    v = (n * 7919) % 251
    if kind == 'i':
        v = v - 100
    if np.dtype(dtype).itemsize == 8:
        v = v * 2.0 ** 36
    return v

def read(task):
    img = nib.load(task['path'])
    hdr = img.header
    if int(hdr['sform_code']) > 0:
        best = hdr.get_sform()
    elif int(hdr['qform_code']) > 0:
        best = hdr.get_qform()
    else:
        best = np.diag(list(hdr.get_zooms()[:3]) + [1.0])
    data = np.asanyarray(img.dataobj).astype(np.float64)
    data = data.reshape(data.shape[:3] + (-1,), order='F')
    volumes = []
    for v in range(data.shape[3]):
        flat = data[..., v].ravel(order='F')
        picks = [int(k * (flat.size - 1) / 6) for k in range(7)]
        volumes.append({'sum': float(flat.sum()), 'picks': picks, 'values': [float(flat[p]) for p in picks],
                        'all': flat.tolist() if task.get('all') else None})
    return {'affine': best.tolist(), 'qform': hdr.get_qform().tolist(), 'shape': list(img.shape),
            'sform_code': int(hdr['sform_code']), 'qform_code': int(hdr['qform_code']), 'volumes': volumes}

def write(task):
    dtype = np.dtype(task['dtype']).newbyteorder(task['endian'])
    shape = task['shape']
    n = np.arange(int(np.prod(shape)))
    data = formula(n, task['dtype']).reshape(shape, order='F')
    if task['dtype'].startswith('complex'):
        data = data + 1j * data
    cls = nib.Nifti2Image if task.get('nifti2') else nib.Nifti1Image
    header = (nib.Nifti2Header if task.get('nifti2') else nib.Nifti1Header)(endianness=task['endian'])
    header.set_data_dtype(dtype)
    img = cls(data.astype(dtype), np.array(task['affine']), header=header)
    if 'slope' in task:
        # nibabel's own save recomputes scaling, so write its header and numpy's raw bytes directly.
        header.set_data_shape(shape)
        header.set_data_offset(544 if task.get('nifti2') else 352)
        header.set_sform(np.array(task['affine']), code=1)
        header.set_slope_inter(task['slope'], task['inter'])
        raw = ((data - task['inter']) / task['slope']).astype(dtype)
        with open(task['path'], 'wb') as f:
            header.write_to(f)
            f.write(b'\0' * (int(header.get_data_offset()) - f.tell()))
            f.write(raw.tobytes(order='F'))
        return {'ok': True}
    img.set_sform(np.array(task['affine']), code=1)
    nib.save(img, task['path'])
    return {'ok': True}

tasks = json.load(sys.stdin)
print(json.dumps([read(t) if t['op'] == 'read' else write(t) for t in tasks]))
`;

interface NibVolume {
  sum: number;
  picks: number[];
  values: number[];
  all: number[] | null;
}
interface NibRead {
  affine: Mat4;
  qform: Mat4;
  shape: number[];
  sform_code: number;
  qform_code: number;
  volumes: NibVolume[];
}

function nibabel<T>(tasks: object[]): T[] {
  const run = spawnSync(PYTHON, ['-c', SCRIPT], { input: JSON.stringify(tasks), encoding: 'utf8', maxBuffer: 1 << 28 });
  if (run.status !== 0) throw new Error(`nibabel reference failed (apt-get install python3-nibabel): ${run.stderr || run.error}`);
  return JSON.parse(run.stdout) as T[];
}

function sum(data: ArrayLike<number>): number {
  let s = 0;
  for (let n = 0; n < data.length; n++) s += data[n];
  return s;
}

const work = mkdtempSync(join(tmpdir(), 'alhvr-nifti-nib-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('our reader agrees with nibabel on third-party files', () => {
  const files = [
    'avg152T1_LR_nifti.nii',
    'avg152T1_LR_nifti.nii.gz',
    'avg152T1_LR_nifti2.nii.gz',
    'big.nii.gz',
    'little.nii.gz',
    'with_extension.nii.gz',
    '5D_small.nii',
    'air.hdr.gz',
    'air2.hdr.gz',
  ];
  const reference = nibabel<NibRead>(files.map((f) => ({ op: 'read', path: join(niftiData, f) })));

  files.forEach((file, index) => {
    it(file, () => {
      const ref = reference[index];
      const bytes = new Uint8Array(readFileSync(join(niftiData, file)));
      const decode = (volumeIndex: number) =>
        file.endsWith('.hdr.gz')
          ? decodeNiftiPair(bytes, new Uint8Array(readFileSync(join(niftiData, file.replace('.hdr', '.img')))), { volumeIndex })
          : decodeNifti(bytes, { volumeIndex });
      const info = decodeNiftiHeader(bytes);
      expect([info.sformCode, info.qformCode]).toEqual([ref.sform_code, ref.qform_code]);
      expect(info.dims).toEqual(ref.shape);
      ref.volumes.forEach((refVolume, v) => {
        const vol = decode(v);
        expect(maxAbsDiff4(vol.affine, ref.affine)).toBeLessThan(1e-4);
        expect(vol.data.length).toBe(vol.voxelCount);
        refVolume.picks.forEach((p, k) => expect(vol.data[p]).toBeCloseTo(refVolume.values[k], 4));
        const tolerance = info.scaled || info.datatype.startsWith('float') ? 1e-6 * Math.abs(refVolume.sum) + 1e-3 : 0;
        expect(Math.abs(sum(vol.data) - refVolume.sum)).toBeLessThanOrEqual(tolerance);
      });
      if (info.qformCode > 0 && info.layout === 'single') {
        // Our quaternion maths against nibabel's, independent of which transform wins.
        const raw = info.gzip ? gunzipSync(bytes) : bytes.slice();
        const dv = new DataView(raw.buffer);
        const little = info.byteOrder === 'little';
        if (info.version === 1) dv.setInt16(254, 0, little);
        else dv.setInt32(348, 0, little);
        const viaQform = decodeNiftiHeader(raw);
        expect(viaQform.affineSource).toBe('qform');
        expect(maxAbsDiff4(viaQform.affine, ref.qform)).toBeLessThan(1e-4);
      }
    });
  });
});

describe('our reader decodes every datatype and byte order nibabel writes', () => {
  const affine = [
    [-1.25, 0, 0, 30],
    [0, 1.5, 0.1, -20],
    [0, -0.1, 2, 10],
    [0, 0, 0, 1],
  ];
  const shape = [5, 4, 3];
  const dtypes = ['uint8', 'int8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', 'float64'];
  const cases = [
    ...dtypes.flatMap((dtype) => ['<', '>'].map((endian) => ({ dtype, endian }))),
    { dtype: 'int16', endian: '>', nifti2: true },
    { dtype: 'float64', endian: '<', nifti2: true },
    { dtype: 'int16', endian: '<', slope: 0.5, inter: -3 },
    { dtype: 'float64', endian: '>', slope: 2, inter: 1 },
  ].map((c, n) => ({ ...c, op: 'write', shape, affine, path: join(work, `case${n}.nii`) }));
  nibabel([...cases, { op: 'write', dtype: 'complex64', endian: '<', shape, affine, path: join(work, 'complex.nii') }]);
  const reference = nibabel<NibRead>(cases.map((c) => ({ op: 'read', path: c.path, all: true })));

  cases.forEach((c, index) => {
    const name = `${c.dtype} ${c.endian === '<' ? 'little' : 'big'} endian${c.nifti2 ? ' NIfTI-2' : ''}${c.slope ? ' scaled' : ''}`;
    it(name, () => {
      const bytes = new Uint8Array(readFileSync(c.path));
      const info = decodeNiftiHeader(bytes);
      expect(info.byteOrder).toBe(c.endian === '<' ? 'little' : 'big');
      expect(info.version).toBe(c.nifti2 ? 2 : 1);
      const vol = decodeNifti(bytes);
      expect(vol.meta.sourceDatatype).toBe(c.dtype);
      expect(maxAbsDiff4(vol.affine, affine)).toBeLessThan(1e-6);
      const expected = reference[index].volumes[0].all!;
      expect(vol.data.length).toBe(expected.length);
      const scaledFloat32 = c.slope !== undefined && c.dtype !== 'float64';
      for (let n = 0; n < expected.length; n++) {
        if (scaledFloat32) expect(vol.data[n]).toBe(Math.fround(expected[n]));
        else expect(vol.data[n]).toBe(expected[n]);
      }
      if (c.slope !== undefined) expect(vol.data).toBeInstanceOf(c.dtype === 'float64' ? Float64Array : Float32Array);
    });
  });

  it('complex64 is refused as an unsupported datatype', () => {
    const bytes = new Uint8Array(readFileSync(join(work, 'complex.nii')));
    expect(() => decodeNifti(bytes, { path: 'complex.nii' })).toThrow(InputError);
    expect(() => decodeNifti(bytes, { path: 'complex.nii' })).toThrow(/unsupported datatype complex64/);
  });
});

describe('nibabel reads the files we write', () => {
  // Oblique (rotation about an off-axis direction) and left-handed versions of one geometry.
  const t = 0.4;
  const rotation = [
    [Math.cos(t), -Math.sin(t), 0],
    [Math.sin(t) * Math.cos(0.3), Math.cos(t) * Math.cos(0.3), -Math.sin(0.3)],
    [Math.sin(t) * Math.sin(0.3), Math.cos(t) * Math.sin(0.3), Math.cos(0.3)],
  ];
  const make = (flip: boolean): Mat4 => {
    const spacing = [0.9, 1.1, flip ? -2.5 : 2.5];
    return [...rotation.map((row, r) => [...row.map((v, c) => v * spacing[c]), [-80.5, 110.25, -60][r]]), [0, 0, 0, 1]];
  };
  const dims: [number, number, number] = [6, 5, 4];
  const voxels = 120;
  const cases = [
    { name: 'uint8 oblique', flip: false, frames: 1, data: Uint8Array.from({ length: voxels }, (_, n) => (n * 11) % 256) },
    { name: 'int16 left-handed', flip: true, frames: 1, data: Int16Array.from({ length: voxels }, (_, n) => n * 257 - 15000) },
    { name: 'float32 left-handed', flip: true, frames: 1, data: Float32Array.from({ length: voxels }, (_, n) => Math.cos(n) * 3.5) },
    { name: 'float32 4D oblique', flip: false, frames: 2, data: Float32Array.from({ length: 2 * voxels }, (_, n) => n / 3) },
  ].map((c, n) => ({ ...c, affine: make(c.flip), path: join(work, `ours${n}.nii${n % 2 ? '.gz' : ''}`) }));
  for (const c of cases) {
    const bytes = encodeNifti(new Volume({ data: c.data, dims, affine: c.affine, frames: c.frames }), { gzip: c.path.endsWith('.gz') });
    writeFileSync(c.path, bytes);
  }
  const reference = nibabel<NibRead>(cases.map((c) => ({ op: 'read', path: c.path, all: true })));

  cases.forEach((c, index) => {
    it(c.name, () => {
      const ref = reference[index];
      expect(ref.shape).toEqual(c.frames > 1 ? [...dims, c.frames] : dims);
      expect(maxAbsDiff4(ref.affine, c.affine.map((row) => row.map(Math.fround)))).toBe(0);
      expect(maxAbsDiff4(ref.qform, c.affine)).toBeLessThan(1e-5);
      expect([ref.sform_code, ref.qform_code]).toEqual([1, 1]);
      const values = ref.volumes.flatMap((v) => v.all!);
      expect(values).toEqual(Array.from(c.data));
    });
  });
});
