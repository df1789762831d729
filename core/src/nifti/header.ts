import { InputError } from '../errors.js';

/** The NIfTI-1 / NIfTI-2 / Analyze 7.5 header fields this toolkit uses, as stored (no interpretation). */
export interface RawNiftiHeader {
  version: 1 | 2;
  /** 'single' = header and data in one file (n+1/n+2); 'pair' = .hdr/.img (ni1/ni2); 'analyze' = no NIfTI magic. */
  layout: 'single' | 'pair' | 'analyze';
  littleEndian: boolean;
  headerSize: 348 | 540;
  /** dim[0..7]. */
  dim: number[];
  datatypeCode: number;
  bitpix: number;
  /** pixdim[0..7]. */
  pixdim: number[];
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  calMin: number;
  calMax: number;
  xyztUnits: number;
  intentCode: number;
  intentName: string;
  qformCode: number;
  sformCode: number;
  quatern: [number, number, number];
  qoffset: [number, number, number];
  /** srow_x, srow_y, srow_z. */
  srow: number[][];
  description: string;
  /** extension[0] of the 4 bytes after the header, when those bytes were available. */
  hasExtension: boolean;
}

function text(bytes: Uint8Array, offset: number, length: number): string {
  let s = '';
  for (let n = offset; n < offset + length; n++) {
    const b = bytes[n];
    if (b === 0) break;
    // Headers are ASCII by the standard; anything else is shown as '?' rather than guessed at.
    s += b >= 32 && b < 127 ? String.fromCharCode(b) : '?';
  }
  return s.trim();
}

function magicAt(bytes: Uint8Array, offset: number): string {
  return String.fromCharCode(bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]);
}

/** Header size and byte order from sizeof_hdr, which is 348 (NIfTI-1/Analyze) or 540 (NIfTI-2). */
export function detectHeader(bytes: Uint8Array, label?: string): { headerSize: 348 | 540; littleEndian: boolean } {
  if (bytes.length < 4) throw new InputError(`not a NIfTI file (${bytes.length} bytes, too short for a header)`, label);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const littleEndian of [true, false]) {
    const size = dv.getInt32(0, littleEndian);
    if (size === 348 || size === 540) return { headerSize: size, littleEndian };
  }
  throw new InputError('not a NIfTI file (sizeof_hdr is neither 348 nor 540 in either byte order)', label);
}

function safeInt64(dv: DataView, offset: number, le: boolean, field: string, label?: string): number {
  const v = dv.getBigInt64(offset, le);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new InputError(`header field ${field} = ${v} is out of range`, label);
  }
  return Number(v);
}

/** Parse the fixed header at the start of `bytes` (decompressed). */
export function parseRawHeader(bytes: Uint8Array, label?: string): RawNiftiHeader {
  const { headerSize, littleEndian: le } = detectHeader(bytes, label);
  if (bytes.length < headerSize) {
    throw new InputError(`truncated NIfTI header (${bytes.length} of ${headerSize} bytes)`, label);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hasExtension = bytes.length >= headerSize + 4 && bytes[headerSize] !== 0;
  if (headerSize === 348) {
    const magic = magicAt(bytes, 344);
    const layout = magic === 'n+1\0' ? 'single' : magic === 'ni1\0' ? 'pair' : 'analyze';
    const f32 = (o: number) => dv.getFloat32(o, le);
    const i16 = (o: number) => dv.getInt16(o, le);
    const isNifti = layout !== 'analyze';
    return {
      version: 1,
      layout,
      littleEndian: le,
      headerSize,
      dim: Array.from({ length: 8 }, (_, n) => i16(40 + 2 * n)),
      datatypeCode: i16(70),
      bitpix: i16(72),
      pixdim: Array.from({ length: 8 }, (_, n) => f32(76 + 4 * n)),
      voxOffset: f32(108),
      sclSlope: isNifti ? f32(112) : 0,
      sclInter: isNifti ? f32(116) : 0,
      calMax: f32(124),
      calMin: f32(128),
      xyztUnits: isNifti ? bytes[123] : 0,
      intentCode: isNifti ? i16(68) : 0,
      intentName: isNifti ? text(bytes, 328, 16) : '',
      // Analyze 7.5 keeps other fields (originator, ...) where NIfTI has its orientation.
      qformCode: isNifti ? i16(252) : 0,
      sformCode: isNifti ? i16(254) : 0,
      quatern: [f32(256), f32(260), f32(264)],
      qoffset: [f32(268), f32(272), f32(276)],
      srow: [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => f32(280 + 16 * r + 4 * c))),
      description: text(bytes, 148, 80),
      hasExtension,
    };
  }
  const magic = magicAt(bytes, 4);
  if (magic !== 'n+2\0' && magic !== 'ni2\0') {
    throw new InputError('not a NIfTI-2 file (sizeof_hdr is 540 but the magic is not "n+2"/"ni2")', label);
  }
  const f64 = (o: number) => dv.getFloat64(o, le);
  const i32 = (o: number) => dv.getInt32(o, le);
  return {
    version: 2,
    layout: magic === 'n+2\0' ? 'single' : 'pair',
    littleEndian: le,
    headerSize,
    dim: Array.from({ length: 8 }, (_, n) => safeInt64(dv, 16 + 8 * n, le, `dim[${n}]`, label)),
    datatypeCode: dv.getInt16(12, le),
    bitpix: dv.getInt16(14, le),
    pixdim: Array.from({ length: 8 }, (_, n) => f64(104 + 8 * n)),
    voxOffset: safeInt64(dv, 168, le, 'vox_offset', label),
    sclSlope: f64(176),
    sclInter: f64(184),
    calMax: f64(192),
    calMin: f64(200),
    xyztUnits: i32(500),
    intentCode: i32(504),
    intentName: text(bytes, 508, 16),
    qformCode: i32(344),
    sformCode: i32(348),
    quatern: [f64(352), f64(360), f64(368)],
    qoffset: [f64(376), f64(384), f64(392)],
    srow: [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => f64(400 + 32 * r + 8 * c))),
    description: text(bytes, 240, 80),
    hasExtension,
  };
}
