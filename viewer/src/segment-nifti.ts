import { decodeNifti, type Volume, type VoxelArray } from '@alhvr/core';
import { assessCase, computeCaseStats, segmentVolume, type CaseStats, type SegmentResult, type SegmentOptions } from '@alhvr/inference';
import type { ViewerModel } from './load-model.js';

export interface SegmentNiftiOptions extends Pick<SegmentOptions, 'batch' | 'gammaMode' | 'onProgress' | 'tap'> {
  /** File name for error messages. Default "image.nii". */
  path?: string;
  /** Which 3D volume of a 4D file to segment. Default 0. */
  volumeIndex?: number;
}

/** Segmentation of one NIfTI image, on the image's own voxel grid, plus the decoded image for display. */
export interface SegmentNiftiResult extends Omit<SegmentResult, 'probabilities'> {
  image: Volume<VoxelArray>;
  /** Per-class volumes and confidences, the quality estimate and verdict: what alhvr-segment reports. */
  stats: CaseStats;
  assessment: ReturnType<typeof assessCase>;
}

/** The CLI's per-case report, computed by the same code: stats, signals, predicted Dice, verdict. */
export function assessResult(image: Volume<VoxelArray>, result: SegmentResult, model: ViewerModel): Pick<SegmentNiftiResult, 'stats' | 'assessment'> {
  const stats = computeCaseStats(result.label, result.confidence, result.region, model.card);
  const dicom = image.meta.dicom;
  const tags = dicom ? { modality: dicom.modality, bodyPart: dicom.bodyPartExamined } : undefined;
  return { stats, assessment: assessCase(stats, result.signals, model.card, { tags }) };
}

/** Decode a .nii / .nii.gz file's bytes and segment it with a model from `loadModel`. */
export async function segmentNifti(bytes: Uint8Array, model: ViewerModel, opts: SegmentNiftiOptions = {}): Promise<SegmentNiftiResult> {
  const image = decodeNifti(bytes, { path: opts.path ?? 'image.nii', volumeIndex: opts.volumeIndex });
  const result = await segmentVolume(image, model.model, { batch: opts.batch, gammaMode: opts.gammaMode, onProgress: opts.onProgress, tap: opts.tap });
  return { ...result, image, ...assessResult(image, result, model) };
}
