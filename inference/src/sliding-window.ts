/**
 * Sliding-window inference for a 3D model: the volume is covered by overlapping patches, each
 * patch's class probabilities (softmax of the model's logits) are added into one float32
 * accumulator per class with a per-voxel weight, and the sums are divided by the accumulated
 * weight. Defaults follow the released ALHVR 3D test script (shared/docs/alhvr-method-3d.md §5):
 * stride ⅔ of the patch (64 of 96), windows per axis ⌈(S − P)/stride⌉ + 1 at min(stride·i, S − P),
 * sides smaller than the patch zero-padded symmetrically (⌊pad/2⌋ before), uniform weights.
 * `gaussian: true` weights each window as nnU-Net does (σ = ⅛ of the patch side, centred at
 * ⌊P/2⌋, normalised to 1 at the centre), so window borders count less.
 *
 * Memory is bounded by the output: one float32 volume per class plus one float32 weight volume
 * (and one per requested extra map); padding is never materialised (only the window buffers hold it). No TensorFlow.js here: the
 * model is any function from a window to class logits (an ONNX session, a test double).
 *
 * Layout: volumes are i fastest, then j, then k (the Volume order), channels slowest; a window
 * is the same order over the patch, i.e. [channel][k][j][i] = NCDHW with D = k, H = j, W = i.
 */

import { defaultWindowStride, windowPadBefore, windowStartsAlong } from '@alhvr/core';

export type Dims3 = [number, number, number];

/**
 * Outputs for one window: numClasses × patch voxels of class logits (or probabilities, see
 * `outputs`), then `extraChannels` × patch voxels of further maps, channel slowest. May be async
 * (ONNX sessions are). The next window is gathered while a call runs; an async model's next call
 * starts before this call's outputs are added up, so they must stay as returned until the next
 * call settles. The window a call is given is not written again before that call has settled.
 */
export type WindowModel = (window: Float32Array, patch: Dims3, place: WindowPlace) => Float32Array | Promise<Float32Array>;

/**
 * Where a window lies. `owned` is the box of window voxels [lo, hi) per axis (i, j, k) that this
 * window alone answers for: each volume voxel belongs to exactly one window (the one whose centre
 * is nearest along each axis), so per-voxel tallies over the owned boxes count every voxel once.
 */
export interface WindowPlace {
  /** Volume voxel of window voxel (0, 0, 0); negative where the volume is padded. */
  origin: Dims3;
  owned: { lo: Dims3; hi: Dims3 };
}

/**
 * Window voxels [lo, hi) along one axis owned by the window at `starts[w]` (padded coordinates):
 * from the midpoint with the previous window to the midpoint with the next, inside the volume.
 */
function ownedAlong(starts: number[], w: number, patch: number, pad: number, size: number): [number, number] {
  const from = w === 0 ? -Infinity : Math.floor((starts[w - 1] + starts[w] + patch) / 2);
  const to = w === starts.length - 1 ? Infinity : Math.floor((starts[w] + starts[w + 1] + patch) / 2);
  const origin = starts[w] - pad;
  const lo = Math.max(0, -origin, from - starts[w]);
  const hi = Math.min(patch, size - origin, to - starts[w]);
  return [lo, Math.max(lo, hi)];
}

export interface SlidingWindowOptions {
  /** Patch size along i, j, k. */
  patch: Dims3;
  /** Step between windows along i, j, k; default ⌊⅔·patch⌋ (the released 64 of 96), at least 1. */
  stride?: Dims3;
  numClasses: number;
  /** What the model's class channels hold: logits (softmax applied here; default) or probabilities (used as they are). */
  outputs?: 'logits' | 'probabilities';
  /**
   * Further per-voxel maps the model returns after the classes (e.g. each student's confidence),
   * averaged with the same window weights; each costs one more float32 accumulator volume.
   */
  extraChannels?: number;
  /** Input channels stored one after the other in `data` (default 1). */
  channels?: number;
  /** nnU-Net's Gaussian importance weighting instead of uniform weights (default false, as released). */
  gaussian?: boolean;
  /** Value of the padding where a side is smaller than the patch (default 0, as released). */
  padValue?: number;
  /** Called after each window with (windows done, windows in all). */
  onWindow?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface SlidingWindowResult {
  /** One probability volume per class on the input grid (averaged softmax). */
  probabilities: Float32Array[];
  /** One volume per extra channel, averaged alike (empty without `extraChannels`). */
  extra: Float32Array[];
  /** Windows run. */
  windows: number;
  /** Milliseconds spent waiting for the model (the rest of the call gathers and adds up windows). */
  waitMs: number;
}

/**
 * nnU-Net's importance map for a patch: separable Gaussian, σ = side/8, centre ⌊side/2⌋, maximum
 * 1, and any value that underflows to 0 raised to the smallest non-zero one (so no voxel of a
 * window is ignored).
 */
export function gaussianImportance(patch: Dims3): Float32Array {
  const axis = (p: number) => {
    const sigma = p / 8;
    const c = Math.floor(p / 2);
    return Array.from({ length: p }, (_, x) => Math.exp(-((x - c) ** 2) / (2 * sigma * sigma)));
  };
  const [gi, gj, gk] = patch.map(axis);
  const map = new Float32Array(patch[0] * patch[1] * patch[2]);
  let n = 0;
  let minPositive = Infinity;
  for (let k = 0; k < patch[2]; k++) {
    for (let j = 0; j < patch[1]; j++) {
      for (let i = 0; i < patch[0]; i++, n++) {
        map[n] = gi[i] * gj[j] * gk[k];
        if (map[n] > 0) minPositive = Math.min(minPositive, map[n]);
      }
    }
  }
  for (let m = 0; m < map.length; m++) if (map[m] === 0) map[m] = minPositive;
  return map;
}

/** Softmax over classes, per voxel, in place (class-slowest layout of `voxels` voxels). */
export function softmaxInPlace(values: Float32Array, numClasses: number, voxels: number): void {
  for (let v = 0; v < voxels; v++) {
    let max = -Infinity;
    for (let c = 0; c < numClasses; c++) max = Math.max(max, values[c * voxels + v]);
    let sum = 0;
    for (let c = 0; c < numClasses; c++) {
      const e = Math.exp(values[c * voxels + v] - max);
      values[c * voxels + v] = e;
      sum += e;
    }
    for (let c = 0; c < numClasses; c++) values[c * voxels + v] /= sum;
  }
}

function checkDims3(name: string, d: readonly number[]): void {
  if (d.length !== 3 || !d.every((x) => Number.isInteger(x) && x > 0)) throw new Error(`sliding window: ${name} must be three positive integers, got [${d}]`);
}

/** Runs `model` over every window of the volume `data` (dims i, j, k) and returns averaged class probabilities. */
export async function slidingWindowInference(data: Float32Array, dims: Dims3, model: WindowModel, opts: SlidingWindowOptions): Promise<SlidingWindowResult> {
  const { patch, numClasses } = opts;
  const channels = opts.channels ?? 1;
  const extraChannels = opts.extraChannels ?? 0;
  if (!(Number.isInteger(extraChannels) && extraChannels >= 0)) throw new Error(`sliding window: extraChannels must be a whole number, got ${extraChannels}`);
  const softmax = (opts.outputs ?? 'logits') === 'logits';
  checkDims3('dims', dims);
  checkDims3('patch', patch);
  // Window placement is core's (window-placement.ts), shared with training's 3D validation.
  const stride: Dims3 = opts.stride ?? [defaultWindowStride(patch[0]), defaultWindowStride(patch[1]), defaultWindowStride(patch[2])];
  checkDims3('stride', stride);
  if (!(Number.isInteger(numClasses) && numClasses >= 1)) throw new Error(`sliding window: numClasses must be a positive integer, got ${numClasses}`);
  const [nx, ny, nz] = dims;
  const voxels = nx * ny * nz;
  if (data.length !== voxels * channels) throw new Error(`sliding window: data has ${data.length} values, ${dims.join('×')}×${channels} needs ${voxels * channels}`);
  const [px, py, pz] = patch;
  const patchVoxels = px * py * pz;
  const pad = [windowPadBefore(nx, px), windowPadBefore(ny, py), windowPadBefore(nz, pz)];
  const starts = [windowStartsAlong(nx, px, stride[0]), windowStartsAlong(ny, py, stride[1]), windowStartsAlong(nz, pz, stride[2])];
  const total = starts[0].length * starts[1].length * starts[2].length;
  const importance = opts.gaussian ? gaussianImportance(patch) : undefined;
  const padValue = opts.padValue ?? 0;

  const probabilities = Array.from({ length: numClasses }, () => new Float32Array(voxels));
  const extra = Array.from({ length: extraChannels }, () => new Float32Array(voxels));
  // Classes then extras: every accumulated map is one float32 volume, weighted alike.
  const sums = [...probabilities, ...extra];
  const outChannels = numClasses + extraChannels;
  const weight = new Float32Array(voxels);
  // Two window buffers: the next window is gathered while the model runs on one, and a window's
  // outputs are added up while the model runs on the next. Windows are added in order, so every
  // voxel's sums are the same as one window at a time.
  const windowBufs = [0, 1].map(() => new Float32Array(patchVoxels * channels));
  const places: WindowPlace[] = [];
  for (let wk = 0; wk < starts[2].length; wk++) {
    for (let wj = 0; wj < starts[1].length; wj++) {
      for (let wi = 0; wi < starts[0].length; wi++) {
        // Window voxel (a, b, c) is padded-grid voxel (si + a, …), i.e. volume voxel (si + a − pad_i, …).
        const owned = [ownedAlong(starts[0], wi, px, pad[0], nx), ownedAlong(starts[1], wj, py, pad[1], ny), ownedAlong(starts[2], wk, pz, pad[2], nz)];
        places.push({
          origin: [starts[0][wi] - pad[0], starts[1][wj] - pad[1], starts[2][wk] - pad[2]],
          owned: { lo: [owned[0][0], owned[1][0], owned[2][0]], hi: [owned[0][1], owned[1][1], owned[2][1]] },
        });
      }
    }
  }
  const gather = (place: WindowPlace, window: Float32Array) => {
    const [ox, oy, oz] = place.origin;
    for (let ch = 0; ch < channels; ch++) {
      let w = ch * patchVoxels;
      for (let c = 0; c < pz; c++) {
        const z = oz + c;
        for (let b = 0; b < py; b++) {
          const y = oy + b;
          const inside = z >= 0 && z < nz && y >= 0 && y < ny;
          const row = ch * voxels + (z * ny + y) * nx;
          for (let a = 0; a < px; a++, w++) {
            const x = ox + a;
            window[w] = inside && x >= 0 && x < nx ? data[row + x] : padValue;
          }
        }
      }
    }
  };
  const accumulate = (place: WindowPlace, logits: Float32Array) => {
    if (logits.length !== outChannels * patchVoxels) {
      throw new Error(`sliding window: the model returned ${logits.length} values for a ${patch.join('×')} window, expected ${outChannels}×${patchVoxels}`);
    }
    let probs = logits;
    if (softmax) {
      probs = Float32Array.from(logits);
      softmaxInPlace(probs, numClasses, patchVoxels);
    }
    // Add the window's part inside the volume (padding is never accumulated).
    const [ox, oy, oz] = place.origin;
    const a0 = Math.max(0, -ox);
    const a1 = Math.min(px, nx - ox);
    const b0 = Math.max(0, -oy);
    const b1 = Math.min(py, ny - oy);
    const c0 = Math.max(0, -oz);
    const c1 = Math.min(pz, nz - oz);
    for (let c = c0; c < c1; c++) {
      for (let b = b0; b < b1; b++) {
        const src = (c * py + b) * px;
        const dst = ((oz + c) * ny + (oy + b)) * nx + ox;
        for (let a = a0; a < a1; a++) {
          const wv = importance ? importance[src + a] : 1;
          weight[dst + a] += wv;
          for (let k = 0; k < outChannels; k++) sums[k][dst + a] += wv * probs[k * patchVoxels + src + a];
        }
      }
    }
  };
  const start = (index: number): Float32Array | Promise<Float32Array> => {
    const run = model(windowBufs[index % 2], patch, places[index]);
    // Awaited in the next round; until then a failure must not count as unhandled.
    if (run instanceof Promise) run.catch(() => undefined);
    return run;
  };

  let waitMs = 0;
  opts.signal?.throwIfAborted();
  gather(places[0], windowBufs[0]);
  let running = start(0);
  for (let index = 0; index < total; index++) {
    const next = index + 1 < total ? index + 1 : undefined;
    if (next !== undefined) gather(places[next], windowBufs[next % 2]);
    const async = running instanceof Promise;
    const t = globalThis.performance.now();
    const logits = await running;
    waitMs += globalThis.performance.now() - t;
    // An async model computes the next window while this one is added up; a synchronous one
    // would compute it right here, so this window is added up first.
    const add = () => {
      accumulate(places[index], logits);
      opts.onWindow?.(index + 1, total);
    };
    if (!async) add();
    if (next !== undefined) {
      opts.signal?.throwIfAborted();
      running = start(next);
    }
    if (async) add();
  }
  for (let v = 0; v < voxels; v++) {
    const inv = 1 / weight[v];
    for (let k = 0; k < outChannels; k++) sums[k][v] *= inv;
  }
  return { probabilities, extra, windows: total, waitMs };
}

/** Per voxel the most probable class (first on ties) and its probability. */
export function argmaxClasses(probabilities: Float32Array[]): { labels: Uint8Array; confidence: Float32Array } {
  if (probabilities.length > 256) throw new Error(`argmaxClasses: ${probabilities.length} classes do not fit in 8-bit labels`);
  const voxels = probabilities[0].length;
  const labels = new Uint8Array(voxels);
  const confidence = new Float32Array(voxels);
  for (let v = 0; v < voxels; v++) {
    let best = 0;
    let bestP = probabilities[0][v];
    for (let k = 1; k < probabilities.length; k++) {
      if (probabilities[k][v] > bestP) {
        bestP = probabilities[k][v];
        best = k;
      }
    }
    labels[v] = best;
    confidence[v] = bestP;
  }
  return { labels, confidence };
}
