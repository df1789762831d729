import { type Mat4, type Vec3, intensityRange, transferSyntaxName } from '@alhvr/core';
import { readDicomSeries, readNiftiFile, readNiftiHeaderFile } from '@alhvr/core/node';
import { datatypeOfArray } from './exact-datatype.js';
import { type ImageSource, seriesFolder } from './inputs.js';

/** What `alhvr-info` reports about one image; the JSON output is an array of these. */
export interface ImageInfo {
  path: string;
  kind: 'nifti' | 'dicom-series';
  id: string;
  dims: [number, number, number];
  spacing: Vec3;
  affine: Mat4;
  /** Voxel type as stored in the source, before any rescaling. */
  datatype: string;
  /** Minimum and maximum voxel value after rescaling, over every volume of a 4D file. */
  range: [number, number];
  warnings: string[];
  nifti?: {
    version: 1 | 2;
    layout: 'single' | 'pair' | 'analyze';
    gzip: boolean;
    /** Every dim of the file (dim[1..dim[0]]). */
    allDims: number[];
    volumes: number;
    affineSource: string;
    sformCode: number;
    qformCode: number;
    sclSlope: number;
    sclInter: number;
    description: string;
  };
  seriesUID?: string;
  /** Equals seriesUID unless one UID held several geometries and had to be split. */
  seriesId?: string;
  seriesNumber?: string;
  seriesDescription?: string;
  modality?: string;
  fileCount?: number;
  transferSyntaxes?: { uid: string; name: string }[];
}

async function niftiInfo(source: ImageSource & { kind: 'nifti' }): Promise<ImageInfo> {
  const header = await readNiftiHeaderFile(source.path);
  // Every volume, so the range describes the whole file rather than its first volume.
  const vol = await readNiftiFile(source.path, { allFrames: true });
  return {
    path: source.path,
    kind: 'nifti',
    id: source.id,
    dims: [vol.dims[0], vol.dims[1], vol.dims[2]],
    spacing: vol.spacing,
    affine: vol.affine,
    datatype: header.datatype,
    range: intensityRange(vol.data),
    warnings: [...vol.meta.warnings],
    nifti: {
      version: header.version,
      layout: header.layout,
      gzip: header.gzip,
      allDims: header.dims,
      volumes: header.volumes,
      affineSource: header.affineSource,
      sformCode: header.sformCode,
      qformCode: header.qformCode,
      sclSlope: header.sclSlope,
      sclInter: header.sclInter,
      description: header.description,
    },
  };
}

async function dicomInfo(source: ImageSource & { kind: 'dicom-series' }): Promise<ImageInfo> {
  const { series } = source;
  const vol = await readDicomSeries(series.files, { seriesUID: series.id });
  const dicom = vol.meta.dicom;
  return {
    path: series.files.length === 1 ? series.files[0] : seriesFolder(series),
    kind: 'dicom-series',
    id: source.id,
    dims: [vol.dims[0], vol.dims[1], vol.dims[2]],
    spacing: vol.spacing,
    affine: vol.affine,
    datatype: vol.meta.sourceDatatype ?? datatypeOfArray(vol.data),
    range: intensityRange(vol.data),
    warnings: [...vol.meta.warnings],
    seriesUID: series.seriesInstanceUID,
    seriesId: series.id,
    seriesNumber: series.number,
    seriesDescription: series.description,
    modality: series.modality,
    fileCount: dicom?.fileCount ?? series.files.length,
    transferSyntaxes: (dicom?.transferSyntaxUIDs ?? series.transferSyntaxUIDs).map((uid) => ({ uid, name: transferSyntaxName(uid) })),
  };
}

/** Read one image in full (the intensity range needs every voxel) and describe it. */
export function imageInfo(source: ImageSource): Promise<ImageInfo> {
  return source.kind === 'nifti' ? niftiInfo(source) : dicomInfo(source);
}
