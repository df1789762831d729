import {
  applyIntensityMap,
  betaQuantileMean,
  InputError,
  intensityMap,
  resampledDims,
  resampleGrid,
  type Dims3,
  type ModelCard,
  type Volume,
  type VoxelArray,
} from '@alhvr/core';
import type { GammaUsed, PipelineSignals, SegmentOptions, SegmentResult, SegmentTimings } from './segment-result.js';
import type { SliceModel, SliceOutputKind } from './session.js';
import { argmaxClasses, slidingWindowInference, type WindowPlace } from './sliding-window.js';

const now = () => globalThis.performance.now();

/**
 * Segment one volume with a 3D model (card `dimensions: 3`): the volume is resampled along its
 * own i, j, k axes to the card's target spacing (card image rule), normalised there (the card's
 * rule over the resampled volume, as training does), and covered by overlapping windows of the
 * card's patch (sliding-window.ts: stride ⅔ of the patch, uniform weights, or nnU-Net's Gaussian
 * with `gaussian`). The graph's averaged softmax and, for two-student models, each student's
 * confidence are averaged over the windows; label and confidence are their argmax and maximum,
 * the region map the card's rule on the averaged student confidences (γ from the card, or the
 * β-quantile rule on this volume). The maps then go back to the source grid (card labelBack for
 * label and region, mapBack for confidence and probabilities), so the result is what the 2D
 * pipeline returns and the same outputs code writes it.
 *
 * Memory at the target grid: the normalised volume, plus one float32 accumulator per class, one
 * per student confidence (two-student models) and one weight volume; no window is stored.
 */
export async function segmentVolume3d(vol: Volume<VoxelArray>, model: SliceModel, opts: SegmentOptions = {}): Promise<SegmentResult> {
  const card: ModelCard = model.card;
  const source = vol.meta.path;
  if (vol.frames !== 1) throw new InputError(`has ${vol.frames} frames; segmentation needs a single 3D volume`, source);
  if (!model.runPatches) throw new InputError('this model runtime cannot run 3D patches', source);
  if (opts.tap) throw new InputError('calibration taps are for 2D models; 3D models are not calibrated');
  const targetSpacing = card.targetSpacing;
  if (!targetSpacing || card.input.size.length !== 3) throw new InputError('model card is not a 3D card (dimensions 3, patch [x, y, z], targetSpacing)');
  const patch = card.input.size as Dims3;
  const gammaMode = opts.gammaMode ?? 'model';
  const two = model.available.has('region') && model.available.has('studentConfidence');
  if (gammaMode === 'volume' && !two) throw new InputError('--gamma-mode volume needs a two-student model with a "student_confidence" output');
  const classes = card.classes.length;
  const timings: SegmentTimings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
  const t0 = now();

  // To the model's grid: resample (image rule), then normalise the resampled volume.
  const sourceDims = vol.dims;
  const grid = resampledDims(sourceDims, vol.spacing, targetSpacing);
  const gridVoxels = grid[0] * grid[1] * grid[2];
  // `let`, so the model-grid volumes can be let go as soon as they are used (an async function's
  // locals live until it returns): at most the accumulators and the grid maps are held at once.
  let image: Float32Array | undefined = resampleGrid(vol.data, sourceDims, grid, card.resize.image, new Float32Array(gridVoxels));
  applyIntensityMap(intensityMap(image, card.normalisation), image, image);
  let sum = 0;
  let sumSq = 0;
  for (let v = 0; v < gridVoxels; v++) {
    sum += image[v];
    sumSq += image[v] * image[v];
  }
  let negatives = 0;
  for (let v = 0; v < vol.data.length; v++) if (vol.data[v] < 0) negatives++;
  timings.preprocessMs += now() - t0;

  // One window per call, as released; the graph returns probabilities (its softmax, averaged over
  // the students) and each student's confidence, stacked channel-slowest for the accumulator.
  // With a student_label output, how far the students agree is tallied per class over each
  // window's owned box (every model-grid voxel once, from the window nearest to it): the 2D
  // pipeline's studentOverlap, counted on the model grid instead of the source grid (the
  // agreement is a ratio of counts, so the grid only changes its resolution, not its meaning).
  const agree = two && model.available.has('studentLabel');
  const fetch: SliceOutputKind[] = two ? ['probabilities', 'studentConfidence', ...(agree ? (['studentLabel'] as const) : [])] : ['probabilities'];
  const overlap = agree ? { a: new Float64Array(256), b: new Float64Array(256), both: new Float64Array(256) } : undefined;
  const patchVoxels = patch[0] * patch[1] * patch[2];
  const stacked = new Float32Array((classes + (two ? 2 : 0)) * patchVoxels);
  // The shared `stacked` is written only once the call has settled, as slidingWindowInference asks.
  const windowModel = async (window: Float32Array, _patch: unknown, place: WindowPlace) => {
    const out = await model.runPatches!(window, 1, patch, fetch);
    stacked.set(out.probabilities as Float32Array, 0);
    if (two) stacked.set(out.studentConfidence as Float32Array, classes * patchVoxels);
    if (overlap) tallyStudentOverlap(out.studentLabel as Uint8Array, patch, place, overlap);
    return stacked;
  };
  const tWindows = now();
  const sw = await slidingWindowInference(image, grid, windowModel, {
    patch,
    numClasses: classes,
    outputs: 'probabilities',
    extraChannels: two ? 2 : 0,
    gaussian: opts.gaussian,
    signal: opts.signal,
    onWindow: (done, total) => opts.onProgress?.(done, total),
  });
  image = undefined;
  timings.inferenceMs += sw.waitMs;
  timings.preprocessMs += now() - tWindows - sw.waitMs; // window gathering and accumulation, beside the model's runs
  const tPost = now();

  const { labels, confidence } = argmaxClasses(sw.probabilities);
  const logClasses = Math.log(classes);
  let entropySum = 0;
  let entropyCount = 0;
  for (let v = 0; v < gridVoxels; v++) {
    if (labels[v] === 0) continue;
    let h = 0;
    for (let c = 0; c < classes; c++) {
      const p = sw.probabilities[c][v];
      if (p > 0) h -= p * Math.log(p);
    }
    entropySum += h / logClasses;
    entropyCount++;
  }

  let gamma: GammaUsed | undefined;
  let region: Uint8Array | undefined;
  if (two) {
    const [ca, cb] = sw.extra;
    if (gammaMode === 'volume') {
      // The training rule on this volume: the mean of the lowest ⌊β·M⌋ mean student confidences.
      const mean = new Float32Array(gridVoxels);
      for (let v = 0; v < gridVoxels; v++) mean[v] = (ca[v] + cb[v]) / 2;
      gamma = { value: betaQuantileMean(mean, card.regions.beta), mode: 'volume', beta: card.regions.beta };
    } else {
      gamma = { value: card.regions.gamma, mode: 'model' };
    }
    // The graph's rule, in float32 as the graph compares: 3 − #students above γ.
    const g = Math.fround(gamma.value);
    region = new Uint8Array(gridVoxels);
    for (let v = 0; v < gridVoxels; v++) region[v] = 3 - (ca[v] > g ? 1 : 0) - (cb[v] > g ? 1 : 0);
  }

  // Back to the source grid: the probabilities first, so their accumulators go before the maps are made.
  const n = vol.voxelCount;
  const back = <T extends { [k: number]: number; length: number }>(src: ArrayLike<number>, rule: ModelCard['resize']['mapBack'], out: T, offset = 0) =>
    resampleGrid(src, grid, sourceDims, rule, out, 0, offset);
  let probabilities: Float32Array | undefined;
  if (opts.saveProbabilities) {
    probabilities = new Float32Array(n * classes);
    sw.probabilities.forEach((p, c) => back(p, card.resize.mapBack, probabilities!, c * n));
  }
  sw.probabilities.length = 0;
  sw.extra.length = 0;
  const label = back(labels, card.resize.labelBack, new Uint8Array(n));
  const confidenceOut = back(confidence, card.resize.mapBack, new Float32Array(n));
  const regionOut = region ? back(region, card.resize.labelBack, new Uint8Array(n)) : undefined;
  timings.postprocessMs += now() - tPost;

  const mean = sum / gridVoxels;
  const signals: PipelineSignals = {
    studentOverlap: overlap,
    foregroundEntropySum: entropySum,
    foregroundEntropyCount: entropyCount,
    intensity: { mean, std: Math.sqrt(Math.max(0, sumSq / gridVoxels - mean * mean)), negativeFraction: negatives / n },
  };
  return {
    label: vol.withData(label),
    confidence: vol.withData(confidenceOut),
    region: regionOut ? vol.withData(regionOut) : undefined,
    probabilities: probabilities ? vol.withData(probabilities, classes) : undefined,
    gamma,
    signals,
    orientation: { perm: [0, 1, 2], flip: [false, false, false] },
    slices: sourceDims[2],
    windows: sw.windows,
    modelGrid: grid,
    timings,
  };
}

/** Add one window's student labels (student a's patch, then b's) over its owned box to the tallies. */
function tallyStudentOverlap(studentLabel: Uint8Array, patch: Dims3, place: WindowPlace, overlap: NonNullable<PipelineSignals['studentOverlap']>): void {
  const [px, py, pz] = patch;
  const second = px * py * pz;
  const { lo, hi } = place.owned;
  for (let c = lo[2]; c < hi[2]; c++) {
    for (let b = lo[1]; b < hi[1]; b++) {
      const row = (c * py + b) * px;
      for (let a = lo[0]; a < hi[0]; a++) {
        const la = studentLabel[row + a];
        const lb = studentLabel[second + row + a];
        overlap.a[la]++;
        overlap.b[lb]++;
        if (la === lb) overlap.both[la]++;
      }
    }
  }
}
