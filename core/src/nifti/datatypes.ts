/** NIfTI datatype codes (nifti1.h), with the ones this toolkit can turn into a Volume. */
export interface NiftiDatatype {
  code: number;
  name: string;
  /** Bytes per voxel. */
  bytes: number;
  /** Whether voxels map to one real number each (complex and RGB do not). */
  scalar: boolean;
}

const DATATYPES: NiftiDatatype[] = [
  { code: 2, name: 'uint8', bytes: 1, scalar: true },
  { code: 4, name: 'int16', bytes: 2, scalar: true },
  { code: 8, name: 'int32', bytes: 4, scalar: true },
  { code: 16, name: 'float32', bytes: 4, scalar: true },
  { code: 64, name: 'float64', bytes: 8, scalar: true },
  { code: 256, name: 'int8', bytes: 1, scalar: true },
  { code: 512, name: 'uint16', bytes: 2, scalar: true },
  { code: 768, name: 'uint32', bytes: 4, scalar: true },
  { code: 1024, name: 'int64', bytes: 8, scalar: true },
  { code: 1280, name: 'uint64', bytes: 8, scalar: true },
  // Known but not representable as one real number per voxel (or bit-packed).
  { code: 1, name: 'binary', bytes: 0, scalar: false },
  { code: 32, name: 'complex64', bytes: 8, scalar: false },
  { code: 128, name: 'rgb24', bytes: 3, scalar: false },
  { code: 1536, name: 'float128', bytes: 16, scalar: false },
  { code: 1792, name: 'complex128', bytes: 16, scalar: false },
  { code: 2048, name: 'complex256', bytes: 32, scalar: false },
  { code: 2304, name: 'rgba32', bytes: 4, scalar: false },
];

export function datatypeByCode(code: number): NiftiDatatype | undefined {
  return DATATYPES.find((d) => d.code === code);
}

export function datatypeByName(name: string): NiftiDatatype | undefined {
  return DATATYPES.find((d) => d.name === name);
}
