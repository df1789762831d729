import type { Volume } from '@alhvr/core';

/** A slice of a training case: case id and slice index along the canonical slice axis. */
export interface SliceRef {
  caseId: string;
  slice: number;
}

/** A held-out volume scored slice-wise during training. */
export interface ValidationVolume {
  id: string;
  /** The normalised image in the canonical orientation (slices along k), with its geometry. */
  image: Volume<Float32Array>;
  /** Its labels, on the same grid. */
  label: Volume<Uint8Array>;
}

export interface DatasetClass {
  value: number;
  name: string;
}

/**
 * What the trainer needs from any data layout: slice lists for the labeled and unlabeled pools,
 * a positioned slice read into caller-owned buffers (so a dataset larger than memory streams),
 * and the validation volumes.
 */
export interface SliceDataset {
  readonly format: 'nnunet' | 'acdc-h5';
  readonly classes: DatasetClass[];
  readonly labeled: SliceRef[];
  readonly unlabeled: SliceRef[];
  readonly validationIds: string[];
  /** Largest width × height of any slice, to size reusable buffers. */
  readonly maxSliceVoxels: number;
  /** sha256 over the file names, sizes and the labeled/unlabeled/validation split. */
  readonly fingerprint: string;
  /** Read one normalised slice into `image` (and its labels into `label` when labeled). */
  readSlice(ref: SliceRef, image: Float32Array, label: Uint8Array | null): { width: number; height: number };
  readValidation(id: string): Promise<ValidationVolume>;
  /**
   * The source image file of a case, where the layout has one per case (nnU-Net): lets
   * pseudo-labels keep their images out of the unlabeled pool and off labelled/validation cases.
   */
  sourcePath?(caseId: string): string | undefined;
  close(): Promise<void>;
}
