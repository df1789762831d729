import { decodeNifti, type Volume, type VoxelArray } from '@alhvr/core';
import { segmentVolume, type SegmentResult, type SegmentOptions } from '@alhvr/inference';
import type { ViewerModel } from './load-model.js';

export interface SegmentNiftiOptions extends Pick<SegmentOptions, 'batch' | 'gammaMode' | 'onProgress'> {
  /** File name for error messages. Default "image.nii". */
  path?: string;
  /** Which 3D volume of a 4D file to segment. Default 0. */
  volumeIndex?: number;
}

/** Segmentation of one NIfTI image, on the image's own voxel grid, plus the decoded image for display. */
export interface SegmentNiftiResult extends Omit<SegmentResult, 'probabilities'> {
  image: Volume<VoxelArray>;
}

/** Decode a .nii / .nii.gz file's bytes and segment it with a model from `loadModel`. */
export async function segmentNifti(bytes: Uint8Array, model: ViewerModel, opts: SegmentNiftiOptions = {}): Promise<SegmentNiftiResult> {
  const image = decodeNifti(bytes, { path: opts.path ?? 'image.nii', volumeIndex: opts.volumeIndex });
  const result = await segmentVolume(image, model.model, { batch: opts.batch, gammaMode: opts.gammaMode, onProgress: opts.onProgress });
  return { ...result, image };
}
