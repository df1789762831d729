import { readDicomSeriesFromBytes, type DicomBytesFile } from '@alhvr/core';
import { segmentVolume } from '@alhvr/inference';
import type { ViewerModel } from './load-model.js';
import { assessResult, type SegmentNiftiOptions, type SegmentNiftiResult } from './segment-nifti.js';

export interface SegmentDicomOptions extends Omit<SegmentNiftiOptions, 'volumeIndex'> {
  /** Which series, when the files hold several (SeriesInstanceUID or a scan summary's id). */
  seriesUID?: string;
}

/**
 * Assemble a DICOM series from its files' bytes (as a browser's file picker or drag-and-drop
 * gives them: any order, non-DICOM files skipped) and segment it on the series' own voxel grid.
 */
export async function segmentDicom(files: DicomBytesFile[], model: ViewerModel, opts: SegmentDicomOptions = {}): Promise<SegmentNiftiResult> {
  const image = await readDicomSeriesFromBytes(files, { path: opts.path ?? 'DICOM series', seriesUID: opts.seriesUID });
  const result = await segmentVolume(image, model.model, { batch: opts.batch, gammaMode: opts.gammaMode, onProgress: opts.onProgress, tap: opts.tap });
  return { ...result, image, ...assessResult(image, result, model) };
}
