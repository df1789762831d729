import {
  InputError,
  PlaneResizer,
  Volume,
  canonicalOrientation,
  type ModelCard,
  type Orientation,
  type VoxelArray,
} from '@alhvr/core';
import { canonicalGrid, gatherPlane, scatterPlane, type CanonicalGrid } from './canonical-grid.js';
import { PlaneNormaliser } from './plane-normaliser.js';
import type { SliceModel, SliceOutputKind, SliceOutputs } from './session.js';

/** Where the region map's γ comes from: the model card, or the β-quantile rule on this volume. */
export type GammaMode = 'model' | 'volume';

export interface SegmentOptions {
  /** Slices per model call. Default 8. */
  batch?: number;
  /** Keep the C-frame probability volume (float32, C × the input's size). */
  saveProbabilities?: boolean;
  gammaMode?: GammaMode;
  onProgress?: (slicesDone: number, slicesTotal: number) => void;
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
  orientation: Orientation;
  slices: number;
  timings: SegmentTimings;
}

/**
 * γ by the training rule applied to one volume: the mean of the lowest ⌊β·M⌋ values of the
 * students' mean confidence (cA + cB)/2 over all M model-resolution pixels.
 * `student` holds, per slice, the cA plane then the cB plane.
 */
export function volumeGamma(student: Float32Array, planeSize: number, beta: number): number {
  const slices = student.length / (2 * planeSize);
  const mean = new Float32Array(slices * planeSize);
  for (let s = 0; s < slices; s++) {
    const a = s * 2 * planeSize;
    for (let p = 0; p < planeSize; p++) mean[s * planeSize + p] = (student[a + p] + student[a + planeSize + p]) / 2;
  }
  mean.sort();
  const m = Math.max(1, Math.floor(beta * mean.length));
  let sum = 0;
  for (let n = 0; n < m; n++) sum += mean[n];
  return sum / m;
}

function regionPlane(student: Float32Array, offset: number, planeSize: number, gamma: number, out: Uint8Array): void {
  for (let p = 0; p < planeSize; p++) {
    const above = (student[offset + p] > gamma ? 1 : 0) + (student[offset + planeSize + p] > gamma ? 1 : 0);
    out[p] = 3 - above;
  }
}

const now = () => globalThis.performance.now();

/**
 * Segment one volume: canonical orientation per the card, per-volume normalisation, in-plane
 * resize to the model size, batched model calls, outputs resized back and written straight
 * into the input's voxel order. Only the batch buffers and the requested outputs are held.
 */
export async function segmentVolume(vol: Volume<VoxelArray>, model: SliceModel, opts: SegmentOptions = {}): Promise<SegmentResult> {
  const card: ModelCard = model.card;
  const source = vol.meta.path;
  if (vol.frames !== 1) throw new InputError(`has ${vol.frames} frames; segmentation needs a single 3D volume`, source);
  const batch = opts.batch ?? 8;
  if (!Number.isInteger(batch) || batch < 1) throw new InputError(`--batch must be a positive integer (got ${batch})`);
  const gammaMode = opts.gammaMode ?? 'model';
  const hasRegion = model.available.has('region');
  if (gammaMode === 'volume' && !model.available.has('studentConfidence')) {
    throw new InputError('--gamma-mode volume needs a two-student model with a "student_confidence" output');
  }
  const classes = card.classes.length;
  const t0 = now();

  const orientation = canonicalOrientation(vol.affine, card.input.sliceAxis);
  const grid: CanonicalGrid = canonicalGrid(vol.dims, orientation);
  const [width, height, slices] = grid.dims;
  const [mw, mh] = card.input.size;
  const planeIn = width * height;
  const planeModel = mw * mh;
  // The numbers of training's normaliseIntensities, made plane by plane (no float32 volume copy).
  const normaliser = new PlaneNormaliser(vol.data, card.normalisation);

  const toModel = new PlaneResizer(width, height, mw, mh, card.resize.image);
  const labelBack = new PlaneResizer(mw, mh, width, height, card.resize.labelBack);
  const mapBack = new PlaneResizer(mw, mh, width, height, card.resize.mapBack);

  const n = vol.voxelCount;
  const label = new Uint8Array(n);
  const confidence = new Float32Array(n);
  const region = hasRegion ? new Uint8Array(n) : undefined;
  const probabilities = opts.saveProbabilities ? new Float32Array(n * classes) : undefined;
  // The per-volume rule needs every slice's student confidences before any region is known.
  const student = gammaMode === 'volume' ? new Float32Array(slices * 2 * planeModel) : undefined;

  const fetch: SliceOutputKind[] = ['label', 'confidence'];
  if (hasRegion && gammaMode === 'model') fetch.push('region');
  if (student) fetch.push('studentConfidence');
  if (probabilities) fetch.push('probabilities');

  // Buffers reused by every batch.
  const batchBuf = new Float32Array(Math.min(batch, slices) * planeModel);
  const rawPlane = new Float64Array(planeIn);
  const sourcePlane = new Float32Array(planeIn);
  const backU8 = new Uint8Array(planeIn);
  const backF32 = new Float32Array(planeIn);
  const timings: SegmentTimings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
  timings.preprocessMs += now() - t0;

  for (let k0 = 0; k0 < slices; k0 += batch) {
    const count = Math.min(batch, slices - k0);
    const tPre = now();
    for (let b = 0; b < count; b++) {
      gatherPlane(grid, vol.data, k0 + b, rawPlane);
      normaliser.apply(rawPlane, sourcePlane);
      toModel.resize(sourcePlane, 0, batchBuf, b * planeModel);
    }
    const tRun = now();
    const out: SliceOutputs = await model.run(batchBuf, count, mh, mw, fetch);
    const tPost = now();
    for (let b = 0; b < count; b++) {
      const k = k0 + b;
      const off = b * planeModel;
      labelBack.resize(out.label!, off, backU8, 0);
      scatterPlane(grid, backU8, k, label);
      mapBack.resize(out.confidence!, off, backF32, 0);
      scatterPlane(grid, backF32, k, confidence);
      if (region && out.region) {
        labelBack.resize(out.region, off, backU8, 0);
        scatterPlane(grid, backU8, k, region);
      }
      if (student) student.set(out.studentConfidence!.subarray(b * 2 * planeModel, (b + 1) * 2 * planeModel), k * 2 * planeModel);
      if (probabilities) {
        for (let c = 0; c < classes; c++) {
          mapBack.resize(out.probabilities!, (b * classes + c) * planeModel, backF32, 0);
          scatterPlane(grid, backF32, k, probabilities, c * n);
        }
      }
    }
    const tEnd = now();
    timings.preprocessMs += tRun - tPre;
    timings.inferenceMs += tPost - tRun;
    timings.postprocessMs += tEnd - tPost;
    opts.onProgress?.(k0 + count, slices);
  }

  let gamma: GammaUsed | undefined = hasRegion ? { value: card.regions.gamma, mode: 'model' } : undefined;
  if (student && region) {
    const tPost = now();
    const value = volumeGamma(student, planeModel, card.regions.beta);
    gamma = { value, mode: 'volume', beta: card.regions.beta };
    const modelPlane = new Uint8Array(planeModel);
    for (let k = 0; k < slices; k++) {
      regionPlane(student, k * 2 * planeModel, planeModel, value, modelPlane);
      labelBack.resize(modelPlane, 0, backU8, 0);
      scatterPlane(grid, backU8, k, region);
    }
    timings.postprocessMs += now() - tPost;
  }

  return {
    label: vol.withData(label),
    confidence: vol.withData(confidence),
    region: region ? vol.withData(region) : undefined,
    probabilities: probabilities ? vol.withData(probabilities, classes) : undefined,
    gamma,
    orientation,
    slices,
    timings,
  };
}
