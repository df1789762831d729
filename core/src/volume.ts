import { type Mat4, type Vec3, cloneMat4, isFiniteMat4, spacingFromAffine } from './geometry/affine.js';

export type VoxelArray =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array;

export type Dims3 = [number, number, number];

/** The typed array behind each storage datatype name, for readers, writers and converters. */
export const VOXEL_ARRAY_TYPES = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

export type VoxelDatatype = keyof typeof VOXEL_ARRAY_TYPES;

/** Patient/study attributes copied verbatim into derived DICOM objects (DICOM keywords). */
export interface DicomPatientStudy {
  PatientName?: string;
  PatientID?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  StudyInstanceUID: string;
  StudyDate?: string;
  StudyTime?: string;
  StudyID?: string;
  AccessionNumber?: string;
  ReferringPhysicianName?: string;
  StudyDescription?: string;
}

/** One source image (instance, or frame of a multi-frame instance) behind slice k of a volume. */
export interface DicomSliceRef {
  sopClassUID: string;
  sopInstanceUID: string;
  /** 1-based frame number inside a multi-frame instance; absent for single-frame instances. */
  frameNumber?: number;
  /** ImagePositionPatient of this slice, LPS mm, as stored. */
  imagePositionPatient: Vec3;
  file?: string;
}

/** What a DICOM series reader knows beyond voxels and geometry. */
export interface DicomSeriesMeta {
  patientStudy: DicomPatientStudy;
  seriesInstanceUID: string;
  seriesNumber?: string;
  seriesDescription?: string;
  modality?: string;
  bodyPartExamined?: string;
  frameOfReferenceUID?: string;
  manufacturer?: string;
  /** ImageOrientationPatient (row direction cosines, then column), LPS, as stored. */
  imageOrientationPatient: [number, number, number, number, number, number];
  /** PixelSpacing as stored: [row spacing (between rows), column spacing (between columns)] mm. */
  pixelSpacing: [number, number];
  /** One entry per slice, in the volume's k order. */
  slices: DicomSliceRef[];
  transferSyntaxUIDs: string[];
  /** Distinct files that made up the series. */
  fileCount: number;
}

export interface VolumeMeta {
  kind: 'nifti' | 'dicom-series' | 'generated';
  /** File or folder the volume came from. */
  path?: string;
  /** Datatype as stored in the source (e.g. "int16", "uint8", "float32"), before rescaling. */
  sourceDatatype?: string;
  description?: string;
  /** Geometry or content issues a user should see (uneven spacing, 4D volume selection, ...). */
  warnings: string[];
  dicom?: DicomSeriesMeta;
  /** NIfTI header fields worth keeping when writing back (codes of the source). */
  nifti?: { sformCode: number; qformCode: number; intentCode?: number; xyztUnits?: number };
}

export interface VolumeInit<T extends VoxelArray> {
  data: T;
  dims: Dims3;
  affine: Mat4;
  /** Number of values per voxel, stored as the slowest axis (NIfTI's 4th dimension). Default 1. */
  frames?: number;
  meta?: Partial<VolumeMeta>;
}

/**
 * Voxels with their geometry. `data` is laid out with i fastest, then j, then k, then frame
 * (NIfTI/Fortran order). `affine` maps (i, j, k) to RAS+ mm; spacing is derived from it so the
 * two can never disagree.
 */
export class Volume<T extends VoxelArray = VoxelArray> {
  readonly data: T;
  readonly dims: Dims3;
  readonly affine: Mat4;
  readonly frames: number;
  readonly meta: VolumeMeta;

  constructor(init: VolumeInit<T>) {
    const { data, dims, affine } = init;
    const frames = init.frames ?? 1;
    if (dims.length !== 3 || !dims.every((d) => Number.isInteger(d) && d > 0)) {
      throw new Error(`invalid volume dims ${JSON.stringify(dims)}`);
    }
    if (!Number.isInteger(frames) || frames < 1) throw new Error(`invalid frame count ${frames}`);
    const expected = dims[0] * dims[1] * dims[2] * frames;
    if (data.length !== expected) {
      throw new Error(`volume data has ${data.length} values, dims ${dims.join('×')}×${frames} need ${expected}`);
    }
    if (!isFiniteMat4(affine)) throw new Error('volume affine must be a finite 4×4 matrix');
    this.data = data;
    this.dims = [dims[0], dims[1], dims[2]];
    this.affine = cloneMat4(affine);
    this.frames = frames;
    this.meta = { kind: 'generated', warnings: [], ...init.meta } as VolumeMeta;
    this.meta.warnings = [...(init.meta?.warnings ?? [])];
  }

  get spacing(): Vec3 {
    return spacingFromAffine(this.affine);
  }

  get voxelCount(): number {
    return this.dims[0] * this.dims[1] * this.dims[2];
  }

  /** Linear index of voxel (i, j, k) in frame f. */
  index(i: number, j: number, k: number, f = 0): number {
    return i + this.dims[0] * (j + this.dims[1] * (k + this.dims[2] * f));
  }

  /** A volume with the same geometry and metadata but other voxel values (e.g. a label map). */
  withData<U extends VoxelArray>(data: U, frames = 1): Volume<U> {
    return new Volume({ data, dims: this.dims, affine: this.affine, frames, meta: this.meta });
  }
}

/** Minimum and maximum of the finite values; [NaN, NaN] when there are none. */
export function intensityRange(data: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let n = 0; n < data.length; n++) {
    const v = data[n];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo === Infinity ? [NaN, NaN] : [lo, hi];
}
