import { gzipSync } from 'fflate';
import { InputError } from '../errors.js';
import { isFiniteMat4 } from '../geometry/affine.js';
import { type Volume, type VoxelArray, intensityRange } from '../volume.js';
import { datatypeByName } from './datatypes.js';
import { affineToQform } from './orientation.js';

export type NiftiWriteDatatype = 'uint8' | 'int16' | 'float32' | 'float64';

export interface EncodeNiftiOptions {
  /** Stored voxel type; default follows the data's typed array. Integer targets must hold every value exactly. */
  datatype?: NiftiWriteDatatype;
  /** gzip the output (.nii.gz); default true. */
  gzip?: boolean;
  /** descrip field (79 ASCII characters kept); default meta.description or the toolkit name. */
  description?: string;
}

const HEADER_SIZE = 348;
const VOX_OFFSET = 352;
const NIFTI_UNITS_MM = 2;
const NIFTI_UNITS_SEC = 8;
/** sform/qform code used when the source had none: 1 = scanner anatomical. */
const DEFAULT_XFORM_CODE = 1;

const TYPED_NAMES: [new (n: number) => VoxelArray, string][] = [
  [Uint8Array, 'uint8'],
  [Int8Array, 'int8'],
  [Int16Array, 'int16'],
  [Uint16Array, 'uint16'],
  [Int32Array, 'int32'],
  [Uint32Array, 'uint32'],
  [Float32Array, 'float32'],
  [Float64Array, 'float64'],
];

function datatypeOf(data: VoxelArray): string {
  const hit = TYPED_NAMES.find(([ctor]) => data instanceof ctor);
  if (!hit) throw new Error('unsupported voxel array type');
  return hit[1];
}

/** `data` as the target type; integer targets refuse values they would change. */
function convert(data: VoxelArray, target: string): VoxelArray {
  if (datatypeOf(data) === target) return data;
  const ctor = TYPED_NAMES.find(([, name]) => name === target)![0];
  const out = new ctor(data.length);
  if (target === 'uint8' || target === 'int16') {
    const [lo, hi] = target === 'uint8' ? [0, 255] : [-32768, 32767];
    for (let n = 0; n < data.length; n++) {
      const v = data[n];
      if (!(Number.isInteger(v) && v >= lo && v <= hi)) {
        throw new InputError(`cannot store value ${v} (voxel ${n}) exactly as ${target}`);
      }
      out[n] = v;
    }
    return out;
  }
  out.set(data);
  return out;
}

function writeAscii(bytes: Uint8Array, offset: number, maxLength: number, s: string): void {
  for (let n = 0; n < Math.min(s.length, maxLength - 1); n++) {
    const c = s.charCodeAt(n);
    bytes[offset + n] = c >= 32 && c < 127 ? c : 63; // '?'
  }
}

function positiveCode(code: number | undefined): number | undefined {
  return code !== undefined && Number.isInteger(code) && code > 0 ? code : undefined;
}

/** An uncompressed NIfTI-1 single file in two parts: the 352-byte header and the voxel bytes. */
export interface NiftiParts {
  header: Uint8Array;
  /** Little-endian voxel bytes; a view of the volume's own data when no conversion is needed. */
  voxels: Uint8Array;
}

/**
 * NIfTI-1 single file (little endian): the affine goes into the sform verbatim and into the
 * nearest qform (same code), so readers that only know the qform agree to float32 precision.
 * Split in header and voxels so a writer can compress or stream them without first copying
 * the voxels behind the header.
 */
export function encodeNiftiParts(vol: Volume, opts: Omit<EncodeNiftiOptions, 'gzip'> = {}): NiftiParts {
  if (!isFiniteMat4(vol.affine)) throw new InputError('cannot write a volume whose affine is not finite');
  const target = opts.datatype ?? datatypeOf(vol.data);
  const dt = datatypeByName(target);
  if (!dt) throw new InputError(`cannot write datatype ${target}`);
  const data = convert(vol.data, target);
  const dataBytes = data.length * dt.bytes;
  const out = new Uint8Array(VOX_OFFSET);
  const dv = new DataView(out.buffer);
  const [nx, ny, nz] = vol.dims;
  const frames = vol.frames;

  const xformCode =
    positiveCode(vol.meta.nifti?.sformCode) ?? positiveCode(vol.meta.nifti?.qformCode) ?? DEFAULT_XFORM_CODE;
  const qform = affineToQform(vol.affine);

  dv.setInt32(0, HEADER_SIZE, true);
  [frames > 1 ? 4 : 3, nx, ny, nz, frames, 1, 1, 1].forEach((d, n) => dv.setInt16(40 + 2 * n, d, true));
  dv.setInt16(68, vol.meta.nifti?.intentCode ?? 0, true);
  dv.setInt16(70, dt.code, true);
  dv.setInt16(72, dt.bytes * 8, true);
  const spacing = vol.spacing;
  [qform?.qfac ?? 1, spacing[0], spacing[1], spacing[2], 1, 1, 1, 1].forEach((p, n) => dv.setFloat32(76 + 4 * n, p, true));
  dv.setFloat32(108, VOX_OFFSET, true);
  dv.setFloat32(112, 1, true); // scl_slope 1, scl_inter 0: values are stored as they are
  dv.setFloat32(116, 0, true);
  out[123] = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
  const [lo, hi] = intensityRange(data);
  dv.setFloat32(124, Number.isFinite(hi) ? hi : 0, true);
  dv.setFloat32(128, Number.isFinite(lo) ? lo : 0, true);
  writeAscii(out, 148, 80, opts.description ?? vol.meta.description ?? 'ALHVR Toolkit');
  dv.setInt16(252, qform ? xformCode : 0, true);
  dv.setInt16(254, xformCode, true);
  if (qform) {
    qform.quatern.forEach((v, n) => dv.setFloat32(256 + 4 * n, v, true));
    qform.qoffset.forEach((v, n) => dv.setFloat32(268 + 4 * n, v, true));
  }
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) dv.setFloat32(280 + 16 * r + 4 * c, vol.affine[r][c], true);
  writeAscii(out, 344, 4, 'n+1');
  // Bytes 348..351 stay zero: no header extension.

  const payload = new Uint8Array(data.buffer, data.byteOffset, dataBytes);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return { header: out, voxels: payload };
  const swapped = new Uint8Array(dataBytes);
  for (let n = 0; n < dataBytes; n += dt.bytes) {
    for (let b = 0; b < dt.bytes; b++) swapped[n + b] = payload[n + dt.bytes - 1 - b];
  }
  return { header: out, voxels: swapped };
}

/** NIfTI-1 single file bytes (see encodeNiftiParts), gzipped unless `gzip: false`. */
export function encodeNifti(vol: Volume, opts: EncodeNiftiOptions = {}): Uint8Array {
  const { header, voxels } = encodeNiftiParts(vol, opts);
  const out = new Uint8Array(header.length + voxels.length);
  out.set(header, 0);
  out.set(voxels, header.length);
  return opts.gzip === false ? out : gzipSync(out, { level: 6, mtime: 0 }); // mtime 0: the same volume always gives the same bytes
}
