/**
 * The 3D half of calibration's voxel gathering. A 3D model is calibrated on what its sliding
 * window sees: each calibration volume goes through inference's own `segmentVolume` (resampling
 * to the card's spacing, normalisation, window placement exactly as `alhvr-segment`), with the
 * model wrapped so that every window also returns both students' raw logits. Each window voxel
 * is one observation of the per-window softmax the temperature scales (T sits in the graph,
 * before the windows are averaged), paired with the reference label resampled to the model grid
 * by the card's label rule, as training saw its labels.
 *
 * Memory stays bounded on CT-sized volumes: observations go into fixed-size reservoirs per case
 * (uniformly random, seeded, so a calibration is reproducible), never into whole-volume logits.
 */
import {
  defaultWindowStride,
  InputError,
  resampledDims,
  resampleGrid,
  Rng,
  windowPadBefore,
  windowStartsAlong,
  type Dims3,
  type Volume,
} from '@alhvr/core';
import { segmentVolume, type SliceModel, type SliceOutputKind, type SliceOutputs } from '@alhvr/inference/node';

/** Voxels gathered at model resolution: logits of both students (class-fastest rows) and the reference label. */
export interface VoxelSample {
  classes: number;
  logitsA: number[];
  logitsB: number[];
  truth: number[];
}

/** Observations kept per 3D calibration case in each sample (region of interest, uniform). */
export const WINDOW_SAMPLE_CAPACITY = 60_000;

/** A fixed number of voxel observations chosen uniformly at random from a stream (Algorithm R). */
class VoxelReservoir {
  private readonly logits: Float32Array;
  private readonly truth: Uint8Array;
  private seen = 0;

  constructor(
    private readonly classes: number,
    private readonly capacity: number,
    private readonly rng: Rng,
  ) {
    this.logits = new Float32Array(capacity * 2 * classes);
    this.truth = new Uint8Array(capacity);
  }

  /** Offer the voxel at `v` of two class-slowest logit blocks of `plane` voxels. */
  offer(la: Float32Array, lb: Float32Array, v: number, plane: number, truth: number): void {
    let slot = this.seen++;
    if (slot >= this.capacity) {
      slot = Math.floor(this.rng.next() * this.seen);
      if (slot >= this.capacity) return;
    }
    const C = this.classes;
    const row = slot * 2 * C;
    for (let c = 0; c < C; c++) {
      this.logits[row + c] = la[c * plane + v];
      this.logits[row + C + c] = lb[c * plane + v];
    }
    this.truth[slot] = truth;
  }

  appendTo(sample: VoxelSample): void {
    const C = this.classes;
    const kept = Math.min(this.seen, this.capacity);
    for (let s = 0; s < kept; s++) {
      for (let c = 0; c < C; c++) {
        sample.logitsA.push(this.logits[s * 2 * C + c]);
        sample.logitsB.push(this.logits[s * 2 * C + C + c]);
      }
      sample.truth.push(this.truth[s]);
    }
  }
}

/**
 * Window origins on the model grid in the order `slidingWindowInference` visits them (k, then
 * j, then i fastest), at its default stride; the origin may be negative where a side is padded.
 */
export function windowOrigins(grid: Dims3, patch: Dims3): Dims3[] {
  const starts = [0, 1, 2].map((a) => windowStartsAlong(grid[a], patch[a], defaultWindowStride(patch[a])).map((s) => s - windowPadBefore(grid[a], patch[a])));
  const origins: Dims3[] = [];
  for (const z of starts[2]) for (const y of starts[1]) for (const x of starts[0]) origins.push([x, y, z]);
  return origins;
}

export interface WindowSampleOptions {
  /** Observations kept per case in each sample (default WINDOW_SAMPLE_CAPACITY). */
  capacity?: number;
  /** Seed of the reservoirs' draws (one stream per case). */
  seed: number;
  signal?: AbortSignal;
}

/**
 * Run `model` (a debug-logits 3D graph: `logitsA`/`logitsB` outputs) over `image` as
 * `alhvr-segment` does and add the case's window voxels to `roi` (voxels the reference or either
 * student labels foreground) and `uniform` (every 8th voxel observation, for the β rule).
 */
export async function sampleWindowVoxels(
  image: Volume,
  label: Volume<Uint8Array>,
  model: SliceModel,
  samples: { roi: VoxelSample; uniform: VoxelSample },
  opts: WindowSampleOptions,
): Promise<void> {
  const card = model.card;
  const source = label.meta.path;
  if (card.dimensions !== 3 || !card.targetSpacing) throw new Error('sampleWindowVoxels: the model is not a 3D model');
  if (!model.available.has('logitsA') || !model.available.has('logitsB')) throw new Error('sampleWindowVoxels: the model has no logits outputs (export it with debugLogits)');
  if (label.dims.some((d, a) => d !== image.dims[a]) || label.frames !== 1) throw new InputError('reference label does not match the image grid', source);
  const C = card.classes.length;
  const patch = card.input.size as Dims3;
  const patchVoxels = patch[0] * patch[1] * patch[2];
  // The reference on the model grid, as the pipeline resamples the image (same grid rule).
  const grid = resampledDims(image.dims, image.spacing, card.targetSpacing);
  const labelRule = card.resize.label ?? { interpolation: 'nearest' as const, alignment: card.resize.image.alignment };
  const reference = resampleGrid(label.data, label.dims as Dims3, grid, labelRule, new Uint8Array(grid[0] * grid[1] * grid[2]));
  const origins = windowOrigins(grid, patch);
  const rng = new Rng(opts.seed);
  const roi = new VoxelReservoir(C, opts.capacity ?? WINDOW_SAMPLE_CAPACITY, rng.fork(1));
  const uniform = new VoxelReservoir(C, opts.capacity ?? WINDOW_SAMPLE_CAPACITY, rng.fork(2));
  let window = 0;
  let observed = 0;

  const argmax = (l: Float32Array, v: number) => {
    let best = 0;
    for (let c = 1; c < C; c++) if (l[c * patchVoxels + v] > l[best * patchVoxels + v]) best = c;
    return best;
  };
  const observe = (la: Float32Array, lb: Float32Array) => {
    const origin = origins[window++];
    if (!origin) throw new Error(`calibration: the pipeline ran more windows than the ${origins.length} placed on the ${grid.join('×')} grid`);
    const [ox, oy, oz] = origin;
    // Only the part of the window inside the volume (padding is never accumulated either).
    for (let c = Math.max(0, -oz); c < Math.min(patch[2], grid[2] - oz); c++) {
      for (let b = Math.max(0, -oy); b < Math.min(patch[1], grid[1] - oy); b++) {
        const row = (c * patch[1] + b) * patch[0];
        const gridRow = ((oz + c) * grid[1] + (oy + b)) * grid[0] + ox;
        for (let a = Math.max(0, -ox); a < Math.min(patch[0], grid[0] - ox); a++) {
          const v = row + a;
          const truth = reference[gridRow + a];
          if (truth !== 0 || argmax(la, v) !== 0 || argmax(lb, v) !== 0) roi.offer(la, lb, v, patchVoxels, truth);
          if (observed++ % 8 === 0) uniform.offer(la, lb, v, patchVoxels, truth);
        }
      }
    }
  };

  const tapped: SliceModel = {
    card,
    available: model.available,
    run: (batch, n, height, width, fetch) => model.run(batch, n, height, width, fetch),
    async runPatches(batch, n, size, fetch): Promise<SliceOutputs> {
      if (n !== 1 || size.some((s, a) => s !== patch[a])) throw new Error(`calibration: expected one ${patch.join('×')} window per call, got ${n} of ${size.join('×')}`);
      const out = await model.runPatches!(batch, n, size, [...fetch, 'logitsA', 'logitsB'] as SliceOutputKind[]);
      observe(out.logitsA as Float32Array, out.logitsB as Float32Array);
      return out;
    },
  };
  let total = -1;
  await segmentVolume(image, tapped, { signal: opts.signal, onProgress: (_done, all) => (total = all) });
  // The pipeline places its windows itself; these origins must be the same ones, or labels would pair with the wrong logits.
  if (total !== origins.length || window !== origins.length) {
    throw new Error(`calibration: the pipeline ran ${window} of ${total} windows, the calibration placed ${origins.length}; window placement disagrees`);
  }
  roi.appendTo(samples.roi);
  uniform.appendTo(samples.uniform);
}
