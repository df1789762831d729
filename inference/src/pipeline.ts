import {
  betaQuantileMean,
  InputError,
  PlaneResizer,
  Volume,
  canonicalOrientation,
  type ModelCard,
  type VoxelArray,
} from '@alhvr/core';
import { canonicalGrid, gatherPlane, scatterPlane, type CanonicalGrid } from './canonical-grid.js';
import { PlaneNormaliser } from './plane-normaliser.js';
import type { SliceModel, SliceOutputKind, SliceOutputs } from './session.js';
import { segmentVolume3d } from './pipeline-3d.js';

export type { GammaMode, SegmentOptions, ModelResolutionTap, PipelineSignals, SegmentTimings, GammaUsed, SegmentResult } from './segment-result.js';
import type { SegmentOptions, PipelineSignals, SegmentTimings, GammaUsed, SegmentResult } from './segment-result.js';

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
  return betaQuantileMean(mean, beta);
}

function regionPlane(student: Float32Array, offset: number, planeSize: number, gamma: number, out: Uint8Array): void {
  for (let p = 0; p < planeSize; p++) {
    const above = (student[offset + p] > gamma ? 1 : 0) + (student[offset + planeSize + p] > gamma ? 1 : 0);
    out[p] = 3 - above;
  }
}

const now = () => globalThis.performance.now();

// The per-voxel loops of segmentVolume live in small functions of their own: V8 optimises each
// once, where loops inside the long function were compiled on stack replacement and thrown away
// again at the first code after them not yet run, case after case (--trace-opt: segmentVolume
// compiled 10 times in an 8-case run). Each carries its running sums in and out unchanged, so
// the additions happen in the same order as before.

function tallyIntensities(normalised: Float32Array, raw: Float64Array, tally: Float64Array): void {
  let sum = tally[0];
  let sq = tally[1];
  let negatives = tally[2];
  for (let p = 0; p < normalised.length; p++) {
    const v = normalised[p];
    sum += v;
    sq += v * v;
    if (raw[p] < 0) negatives++;
  }
  tally[0] = sum;
  tally[1] = sq;
  tally[2] = negatives;
}

/** Adds each foreground pixel's normalised entropy to tally[0] and counts it in tally[1]. */
function tallyForegroundEntropy(probs: Float32Array, label: Uint8Array | Float32Array, count: number, plane: number, classes: number, tally: Float64Array): void {
  const logClasses = Math.log(classes);
  let sum = tally[0];
  let n = tally[1];
  for (let p = 0; p < count * plane; p++) {
    if (label[p] === 0) continue;
    const b = Math.floor(p / plane);
    const q = p - b * plane;
    let h = 0;
    for (let c = 0; c < classes; c++) {
      const pc = probs[(b * classes + c) * plane + q];
      if (pc > 0) h -= pc * Math.log(pc);
    }
    sum += h / logClasses;
    n++;
  }
  tally[0] = sum;
  tally[1] = n;
}

/** The same tally from the model's own entropy plane (the normalised entropy of each pixel). */
function tallyForegroundEntropyPlane(entropy: Float32Array, label: Uint8Array | Float32Array, pixels: number, tally: Float64Array): void {
  let sum = tally[0];
  let n = tally[1];
  for (let p = 0; p < pixels; p++) {
    if (label[p] === 0) continue;
    sum += entropy[p];
    n++;
  }
  tally[0] = sum;
  tally[1] = n;
}

function tallyOverlap(a: Uint8Array, b: Uint8Array, overlap: { a: Float64Array; b: Float64Array; both: Float64Array }): void {
  for (let p = 0; p < a.length; p++) {
    overlap.a[a[p]]++;
    overlap.b[b[p]]++;
    if (a[p] === b[p]) overlap.both[a[p]]++;
  }
}

/**
 * Segment one volume: canonical orientation per the card, per-volume normalisation, in-plane
 * resize to the model size, batched model calls, outputs resized back and written straight
 * into the input's voxel order. Only the batch buffers and the requested outputs are held.
 */
export async function segmentVolume(vol: Volume<VoxelArray>, model: SliceModel, opts: SegmentOptions = {}): Promise<SegmentResult> {
  // A 3D card's model runs by sliding window on the volume at its spacing; the result is the same shape.
  if (model.card.dimensions === 3) return segmentVolume3d(vol, model, opts);
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

  // A model with an entropy output saves fetching C probability planes per slice and taking their
  // logarithms here; the probabilities are then fetched only to be kept.
  const entropyInGraph = model.available.has('entropy');
  const fetch: SliceOutputKind[] = ['label', 'confidence', entropyInGraph ? 'entropy' : 'probabilities'];
  if (entropyInGraph && probabilities) fetch.push('probabilities');
  if (hasRegion && gammaMode === 'model') fetch.push('region');
  if (student) fetch.push('studentConfidence');
  const hasStudentLabel = model.available.has('studentLabel');
  if (hasStudentLabel) fetch.push('studentLabel');
  for (const kind of opts.tap?.fetch ?? []) if (!fetch.includes(kind)) fetch.push(kind);
  const tapRef = opts.tap?.reference;
  if (tapRef && (tapRef.dims.some((d, i) => d !== vol.dims[i]) || tapRef.frames !== 1)) throw new InputError('reference label does not match the image grid', tapRef.meta.path);
  // Reference labels go to the model grid as training's labels did (older cards: nearest, the image's alignment).
  const refToModel = new PlaneResizer(width, height, mw, mh, card.resize.label ?? { interpolation: 'nearest', alignment: card.resize.image.alignment });
  const refPlane = tapRef ? new Uint8Array(planeIn) : undefined;

  // Reference-free signals for the quality estimate.
  const overlap = hasStudentLabel ? { a: new Float64Array(256), b: new Float64Array(256), both: new Float64Array(256) } : undefined;
  const backA = new Uint8Array(planeIn);
  const backB = new Uint8Array(planeIn);
  // [sum, sum of squares, negatives] of the normalised intensities; [sum, count] of the foreground entropy.
  const intensityTally = new Float64Array(3);
  const entropyTally = new Float64Array(2);

  // Two batch buffers: while the model runs one batch, the next is prepared in the other, and the
  // batch before is mapped back while the next runs. Slices are prepared and mapped back in order,
  // so every running sum adds up exactly as one batch at a time would.
  const batchBufs = [0, 1].map(() => new Float32Array(Math.min(batch, slices) * planeModel));
  const refBatches = [0, 1].map(() => (tapRef ? new Uint8Array(Math.min(batch, slices) * planeModel) : undefined));
  const rawPlane = new Float64Array(planeIn);
  const sourcePlane = new Float32Array(planeIn);
  const backU8 = new Uint8Array(planeIn);
  const backF32 = new Float32Array(planeIn);
  const timings: SegmentTimings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
  timings.preprocessMs += now() - t0;

  const prepare = (k0: number, count: number, batchBuf: Float32Array, refBatch: Uint8Array | undefined) => {
    const tPre = now();
    for (let b = 0; b < count; b++) {
      gatherPlane(grid, vol.data, k0 + b, rawPlane);
      normaliser.apply(rawPlane, sourcePlane);
      tallyIntensities(sourcePlane, rawPlane, intensityTally);
      toModel.resize(sourcePlane, 0, batchBuf, b * planeModel);
      if (tapRef && refBatch && refPlane) {
        gatherPlane(grid, tapRef.data, k0 + b, refPlane);
        refToModel.resize(refPlane, 0, refBatch, b * planeModel);
      }
    }
    timings.preprocessMs += now() - tPre;
  };
  const mapBackBatch = (k0: number, count: number, out: SliceOutputs, refBatch: Uint8Array | undefined) => {
    const tPost = now();
    opts.tap?.onBatch(out, refBatch, count, planeModel);
    if (entropyInGraph) tallyForegroundEntropyPlane(out.entropy as Float32Array, out.label!, count * planeModel, entropyTally);
    else tallyForegroundEntropy(out.probabilities as Float32Array, out.label!, count, planeModel, classes, entropyTally);
    for (let b = 0; b < count; b++) {
      const k = k0 + b;
      const off = b * planeModel;
      if (overlap) {
        const sl = out.studentLabel!;
        labelBack.resize(sl, 2 * off, backA, 0);
        labelBack.resize(sl, 2 * off + planeModel, backB, 0);
        tallyOverlap(backA, backB, overlap);
      }
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
    timings.postprocessMs += now() - tPost;
  };
  const batches = Math.ceil(slices / batch);
  const countOf = (index: number) => Math.min(batch, slices - index * batch);
  const start = (index: number): Promise<SliceOutputs> => {
    const run = model.run(batchBufs[index % 2], countOf(index), mh, mw, fetch);
    // Awaited in the next round; until then a failure must not count as unhandled.
    run.catch(() => undefined);
    return run;
  };

  prepare(0, countOf(0), batchBufs[0], refBatches[0]);
  let running = start(0);
  for (let index = 0; index < batches; index++) {
    const k0 = index * batch;
    const count = countOf(index);
    const next = index + 1 < batches ? index + 1 : undefined;
    if (next !== undefined) prepare(next * batch, countOf(next), batchBufs[next % 2], refBatches[next % 2]);
    const tWait = now();
    const out = await running;
    timings.inferenceMs += now() - tWait;
    if (next !== undefined) running = start(next);
    mapBackBatch(k0, count, out, refBatches[index % 2]);
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

  const [intensitySum, intensitySq, negatives] = intensityTally;
  const mean = intensitySum / n;
  const signals: PipelineSignals = {
    studentOverlap: overlap,
    foregroundEntropySum: entropyTally[0],
    foregroundEntropyCount: entropyTally[1],
    intensity: { mean, std: Math.sqrt(Math.max(0, intensitySq / n - mean * mean)), negativeFraction: negatives / n },
  };
  return {
    label: vol.withData(label),
    confidence: vol.withData(confidence),
    region: region ? vol.withData(region) : undefined,
    probabilities: probabilities ? vol.withData(probabilities, classes) : undefined,
    gamma,
    signals,
    orientation,
    slices,
    timings,
  };
}
