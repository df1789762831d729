import { VOXEL_ARRAY_TYPES, type VoxelArray, type VoxelDatatype } from '@alhvr/core';

export type StorageDatatype = VoxelDatatype;

const INTEGER_RANGES: [StorageDatatype, number, number][] = [
  ['uint8', 0, 255],
  ['int8', -128, 127],
  ['int16', -32768, 32767],
  ['uint16', 0, 65535],
  ['int32', -2147483648, 2147483647],
  ['uint32', 0, 4294967295],
];

const CONSTRUCTORS: Record<StorageDatatype, new (n: number) => VoxelArray> = VOXEL_ARRAY_TYPES;

export function datatypeOfArray(data: VoxelArray): StorageDatatype {
  const name = data.constructor.name.replace(/Array$/, '').toLowerCase();
  return name as StorageDatatype;
}

function fitsInteger(dt: StorageDatatype, lo: number, hi: number): boolean {
  const range = INTEGER_RANGES.find(([name]) => name === dt);
  return range !== undefined && lo >= range[1] && hi <= range[2];
}

/**
 * The storage type that holds every value of `data` exactly: the source's own integer type
 * when the values still fit it (a uint8 label map stays uint8), else int16, then uint16 (what
 * scanners store), then 32-bit integers; non-integral values stay float32 when every value
 * survives the round trip to float32 (true for float32 sources and for rescaled 16-bit
 * data), else float64.
 */
export function exactDatatype(data: ArrayLike<number>, sourceDatatype?: string): StorageDatatype {
  let lo = Infinity;
  let hi = -Infinity;
  let integral = true;
  let float32Exact = true;
  const f32 = new Float32Array(1);
  for (let n = 0; n < data.length; n++) {
    const v = data[n];
    if (integral && !Number.isInteger(v)) integral = false;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    if (float32Exact) {
      f32[0] = v;
      if (f32[0] !== v && !Number.isNaN(v)) float32Exact = false;
    }
    if (!integral && !float32Exact) break;
  }
  if (data.length === 0) return 'uint8';
  if (integral) {
    if (sourceDatatype && fitsInteger(sourceDatatype as StorageDatatype, lo, hi)) return sourceDatatype as StorageDatatype;
    for (const dt of ['int16', 'uint16', 'int32', 'uint32'] as const) if (fitsInteger(dt, lo, hi)) return dt;
  }
  return float32Exact ? 'float32' : 'float64';
}

/** `data` in an array of type `dt` (the same array when it already has that type). */
export function toDatatype(data: VoxelArray, dt: StorageDatatype): VoxelArray {
  if (datatypeOfArray(data) === dt) return data;
  const out = new CONSTRUCTORS[dt](data.length);
  out.set(data);
  return out;
}
