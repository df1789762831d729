/**
 * What segmenting a volume takes and gives, in 2D (pipeline.ts) and 3D (pipeline-3d.ts) alike;
 * its own module so that the two pipelines share it without importing each other.
 */
import type { Orientation, Volume } from '@alhvr/core';
import type { SliceOutputKind, SliceOutputs } from './session.js';

/** Where the region map's γ comes from: the model card, or the β-quantile rule on this volume. */
export type GammaMode = 'model' | 'volume';

export interface SegmentOptions {
  /** Slices per model call. Default 8. */
  batch?: number;
  /** Keep the C-frame probability volume (float32, C × the input's size). */
  saveProbabilities?: boolean;
  gammaMode?: GammaMode;
  /** Called after each batch of slices (2D) or each window (3D) with (done, total). */
  onProgress?: (slicesDone: number, slicesTotal: number) => void;
  /** 3D models: nnU-Net's Gaussian window weighting instead of the released uniform average. */
  gaussian?: boolean;
  /** 3D models: stops between windows. */
  signal?: AbortSignal;
  /** Calibration access to the model-resolution outputs (and a reference label resized alike). */
  tap?: ModelResolutionTap;
}

/**
 * Receives each batch's raw model outputs at model resolution. `reference`, when given, is a
 * label volume on the input's grid; its planes arrive resized to the model size (nearest).
 */
export interface ModelResolutionTap {
  fetch: SliceOutputKind[];
  reference?: Volume<Uint8Array>;
  onBatch(out: SliceOutputs, reference: Uint8Array | undefined, count: number, planeSize: number): void;
}

/** Raw ingredients of the reference-free case signals, gathered while segmenting. */
export interface PipelineSignals {
  /** Per class value (index): voxels student A labels c, B labels c, both do; two-student models with a student_label output. */
  studentOverlap?: { a: Float64Array; b: Float64Array; both: Float64Array };
  /** Sum and count of the normalised entropy of the ensemble probabilities over predicted foreground (model resolution). */
  foregroundEntropySum: number;
  foregroundEntropyCount: number;
  /** Of the normalised image the model saw (source grid), and the share of raw values below 0. */
  intensity: { mean: number; std: number; negativeFraction: number };
}

export interface SegmentTimings {
  preprocessMs: number;
  inferenceMs: number;
  postprocessMs: number;
}

export interface GammaUsed {
  value: number;
  mode: GammaMode;
  /** β of the per-volume rule (mode "volume"). */
  beta?: number;
}

/** Model outputs on the input's own voxel grid: dims, affine and metadata equal the input's. */
export interface SegmentResult {
  label: Volume<Uint8Array>;
  confidence: Volume<Float32Array>;
  /** 1 = both students confident, 2 = exactly one, 3 = neither; two-student models only. */
  region?: Volume<Uint8Array>;
  /** One frame per class, only with `saveProbabilities`. */
  probabilities?: Volume<Float32Array>;
  gamma?: GammaUsed;
  signals: PipelineSignals;
  orientation: Orientation;
  slices: number;
  /** 3D models: sliding windows run, and the model grid [x, y, z] at the card's target spacing. */
  windows?: number;
  modelGrid?: [number, number, number];
  timings: SegmentTimings;
}
