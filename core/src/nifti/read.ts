import { InputError } from '../errors.js';
import { type Mat4, type Vec3, spacingFromAffine } from '../geometry/affine.js';
import { type Dims3, type VoxelArray, VOXEL_ARRAY_TYPES, Volume } from '../volume.js';
import { datatypeByCode, type NiftiDatatype } from './datatypes.js';
import { isGzip, inflateRange, maxInflatedSize } from './gzip.js';
import { type RawNiftiHeader, parseRawHeader } from './header.js';
import { type AffineSource, headerAffine, spatialUnitScale } from './orientation.js';

/** What `alhvr-info` shows about a NIfTI/Analyze header, without reading voxels. */
export interface NiftiHeaderInfo {
  path?: string;
  version: 1 | 2;
  /** 'single' (.nii), 'pair' (.hdr/.img with NIfTI magic) or 'analyze' (Analyze 7.5 .hdr/.img). */
  layout: 'single' | 'pair' | 'analyze';
  gzip: boolean;
  byteOrder: 'little' | 'big';
  /** dim[1..dim[0]]: spatial dims, then time/other dims. */
  dims: number[];
  /** First three dims (1 where the file has fewer). */
  spatialDims: Dims3;
  /** Number of 3D volumes (product of dims 4 and up). */
  volumes: number;
  datatype: string;
  datatypeCode: number;
  bitpix: number;
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  /** Whether scl_slope/scl_inter change the stored values (slope not 0/NaN and not the identity). */
  scaled: boolean;
  /** Voxel→RAS+ mm. */
  affine: Mat4;
  affineSource: AffineSource;
  spacing: Vec3;
  pixdim: number[];
  sformCode: number;
  qformCode: number;
  xyztUnits: number;
  spatialUnit: string;
  intentCode: number;
  intentName: string;
  description: string;
  calMin: number;
  calMax: number;
  hasExtension: boolean;
  warnings: string[];
}

export interface DecodeNiftiOptions {
  /** Which 3D volume of a 4D/5D file to read (default 0). */
  volumeIndex?: number;
  /** Read every volume into Volume.frames instead of one. */
  allFrames?: boolean;
  /** File name used in error messages and meta.path. */
  path?: string;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Largest dimension any writer produces (NIfTI-1 stores int16; NIfTI-2 files beyond this are not images we can hold). */
const MAX_DIM = 2 ** 31 - 1;

interface ParsedHeader {
  raw: RawNiftiHeader;
  info: NiftiHeaderInfo;
  datatype: NiftiDatatype;
  voxels: number;
}

function validateDims(raw: RawNiftiHeader, label?: string): number[] {
  const ndim = raw.dim[0];
  if (!Number.isInteger(ndim) || ndim < 1 || ndim > 7) {
    throw new InputError(`invalid dim[0] = ${ndim} (must be 1..7)`, label);
  }
  const dims = raw.dim.slice(1, ndim + 1);
  dims.forEach((d, n) => {
    if (!Number.isInteger(d) || d < 1 || d > MAX_DIM) {
      throw new InputError(`invalid dim[${n + 1}] = ${d} (must be a positive size)`, label);
    }
  });
  return dims;
}

function interpretHeader(prefix: Uint8Array, gzip: boolean, label?: string): ParsedHeader {
  const raw = parseRawHeader(prefix, label);
  const warnings: string[] = [];
  const dims = validateDims(raw, label);
  const spatialDims: Dims3 = [dims[0], dims[1] ?? 1, dims[2] ?? 1];
  const volumes = dims.slice(3).reduce((a, b) => a * b, 1);
  const datatype = datatypeByCode(raw.datatypeCode);
  if (!datatype) throw new InputError(`unknown datatype code ${raw.datatypeCode}`, label);
  if (datatype.scalar && raw.bitpix !== datatype.bytes * 8) {
    warnings.push(`bitpix ${raw.bitpix} disagrees with datatype ${datatype.name}; using the datatype`);
  }
  const voxOffset = raw.voxOffset;
  if (!Number.isInteger(voxOffset) || voxOffset < 0) {
    throw new InputError(`invalid vox_offset ${voxOffset}`, label);
  }
  if (raw.layout === 'single' && voxOffset < raw.headerSize) {
    throw new InputError(`invalid vox_offset ${voxOffset}: the image data would overlap the ${raw.headerSize}-byte header`, label);
  }
  const scaled = Number.isFinite(raw.sclSlope) && raw.sclSlope !== 0 && !(raw.sclSlope === 1 && raw.sclInter === 0);
  const { affine, source } = headerAffine(raw, warnings);
  const info: NiftiHeaderInfo = {
    path: label,
    version: raw.version,
    layout: raw.layout,
    gzip,
    byteOrder: raw.littleEndian ? 'little' : 'big',
    dims,
    spatialDims,
    volumes,
    datatype: datatype.name,
    datatypeCode: datatype.code,
    bitpix: raw.bitpix,
    voxOffset,
    sclSlope: raw.sclSlope,
    sclInter: raw.sclInter,
    scaled,
    affine,
    affineSource: source,
    spacing: spacingFromAffine(affine),
    pixdim: raw.pixdim,
    sformCode: raw.sformCode,
    qformCode: raw.qformCode,
    xyztUnits: raw.xyztUnits,
    spatialUnit: spatialUnitScale(raw.xyztUnits)?.name ?? 'unknown',
    intentCode: raw.intentCode,
    intentName: raw.intentName,
    description: raw.description,
    calMin: raw.calMin,
    calMax: raw.calMax,
    hasExtension: raw.hasExtension,
    warnings,
  };
  return { raw, info, datatype, voxels: spatialDims[0] * spatialDims[1] * spatialDims[2] };
}

/** Enough leading bytes (decompressed) to parse either header version plus the extension flag. */
function headerPrefix(bytes: Uint8Array, label?: string): Uint8Array {
  return isGzip(bytes) ? inflateRange(bytes, 0, 544, label, true) : bytes.subarray(0, 544);
}

/** Header of a .nii / .nii.gz / .hdr(.gz) file, without reading or allocating voxel data. */
export function decodeNiftiHeader(bytes: Uint8Array, path?: string): NiftiHeaderInfo {
  return interpretHeader(headerPrefix(bytes, path), isGzip(bytes), path).info;
}

/** Bytes [start, start+length) of a (possibly gzipped) file, checked against what the file can hold. */
function byteRange(bytes: Uint8Array, start: number, length: number, label?: string): { data: Uint8Array; owned: boolean } {
  const end = start + length;
  if (isGzip(bytes)) {
    if (end > maxInflatedSize(bytes.length)) {
      throw new InputError(
        `header claims ${end} bytes of image, more than a ${bytes.length}-byte gzip file can hold (corrupt header?)`,
        label,
      );
    }
    return { data: inflateRange(bytes, start, length, label), owned: true };
  }
  if (end > bytes.length) {
    throw new InputError(`truncated: the header needs ${end} bytes but the file has ${bytes.length}`, label);
  }
  return { data: bytes.subarray(start, end), owned: false };
}

function swapBytesInPlace(bytes: Uint8Array, width: number): void {
  for (let n = 0; n + width <= bytes.length; n += width) {
    for (let a = n, b = n + width - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

type TypedCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): VoxelArray };

const NATIVE: Record<string, TypedCtor> = VOXEL_ARRAY_TYPES;

/** Voxel values from raw bytes in file byte order, scaled when the header says so. */
function decodeValues(
  range: { data: Uint8Array; owned: boolean },
  dt: NiftiDatatype,
  count: number,
  littleEndian: boolean,
  scaling: { slope: number; inter: number } | null,
  warnings: string[],
): VoxelArray {
  // An owned, aligned buffer of exactly the data can be byte-swapped in place and viewed without copying.
  let bytes = range.data;
  if (!range.owned || bytes.byteOffset % dt.bytes !== 0) bytes = bytes.slice();
  if (littleEndian !== HOST_LITTLE_ENDIAN && dt.bytes > 1) swapBytesInPlace(bytes, dt.bytes);
  let values: VoxelArray | BigInt64Array | BigUint64Array;
  if (dt.name === 'int64') values = new BigInt64Array(bytes.buffer, bytes.byteOffset, count);
  else if (dt.name === 'uint64') values = new BigUint64Array(bytes.buffer, bytes.byteOffset, count);
  else values = new NATIVE[dt.name](bytes.buffer, bytes.byteOffset, count);

  if (values instanceof BigInt64Array || values instanceof BigUint64Array) {
    const out = new Float64Array(count);
    let inexact = 0;
    for (let n = 0; n < count; n++) {
      const v = Number(values[n]);
      if (Math.abs(v) > Number.MAX_SAFE_INTEGER) inexact++;
      out[n] = v;
    }
    if (inexact > 0) {
      warnings.push(`${inexact} ${dt.name} values exceed 2^53 and were rounded when converted to float64`);
    }
    values = out;
  }
  if (!scaling) return values;
  const out = dt.name === 'float64' || dt.name === 'int64' || dt.name === 'uint64' ? new Float64Array(count) : new Float32Array(count);
  const { slope, inter } = scaling;
  for (let n = 0; n < count; n++) out[n] = values[n] * slope + inter;
  return out;
}

function buildVolume(
  header: ParsedHeader,
  dataSource: Uint8Array,
  opts: DecodeNiftiOptions,
): Volume {
  const label = opts.path;
  const { raw, info, datatype, voxels } = header;
  if (!datatype.scalar) {
    throw new InputError(`unsupported datatype ${datatype.name} (code ${datatype.code}); only scalar voxel types can be read`, label);
  }
  const warnings = [...info.warnings];
  const allFrames = opts.allFrames ?? false;
  const volumeIndex = opts.volumeIndex ?? 0;
  if (allFrames && volumeIndex !== 0) throw new InputError('volumeIndex and allFrames cannot be combined', label);
  if (!Number.isInteger(volumeIndex) || volumeIndex < 0 || volumeIndex >= info.volumes) {
    throw new InputError(`volume index ${volumeIndex} is out of range: the file has ${info.volumes} volume(s)`, label);
  }
  if (info.volumes > 1 && !allFrames) {
    warnings.push(`${info.dims.length}D file with ${info.volumes} volumes; using volume ${volumeIndex}`);
  }
  const frames = allFrames ? info.volumes : 1;
  const volumeBytes = voxels * datatype.bytes;
  const count = voxels * frames;
  const range = byteRange(dataSource, info.voxOffset + volumeIndex * volumeBytes, count * datatype.bytes, label);
  let sclInter = raw.sclInter;
  if (info.scaled && !Number.isFinite(sclInter)) {
    warnings.push(`scl_inter ${sclInter} is not a number; using 0`);
    sclInter = 0;
  }
  const scaling = info.scaled ? { slope: raw.sclSlope, inter: sclInter } : null;
  let data: VoxelArray;
  try {
    data = decodeValues(range, datatype, count, raw.littleEndian, scaling, warnings);
  } catch (err) {
    if (err instanceof RangeError) throw new InputError(`image too large to load (${count} values)`, label);
    throw err;
  }
  return new Volume({
    data,
    dims: info.spatialDims,
    affine: info.affine,
    frames,
    meta: {
      kind: 'nifti',
      path: label,
      sourceDatatype: datatype.name,
      description: raw.description || undefined,
      warnings,
      nifti: { sformCode: raw.sformCode, qformCode: raw.qformCode, intentCode: raw.intentCode, xyztUnits: raw.xyztUnits },
    },
  });
}

/** Decode a single-file NIfTI-1/NIfTI-2 image (.nii, or .nii.gz detected by its gzip magic). */
export function decodeNifti(bytes: Uint8Array, opts: DecodeNiftiOptions = {}): Volume {
  const header = interpretHeader(headerPrefix(bytes, opts.path), isGzip(bytes), opts.path);
  if (header.raw.layout !== 'single') {
    throw new InputError('this is the header of a .hdr/.img pair; its image data is in the matching .img file', opts.path);
  }
  return buildVolume(header, bytes, opts);
}

/** Decode a .hdr/.img pair (NIfTI "ni1"/"ni2" or Analyze 7.5); each part may be gzipped. */
export function decodeNiftiPair(hdr: Uint8Array, img: Uint8Array, opts: DecodeNiftiOptions = {}): Volume {
  const header = interpretHeader(headerPrefix(hdr, opts.path), isGzip(hdr), opts.path);
  return buildVolume(header, img, opts);
}
