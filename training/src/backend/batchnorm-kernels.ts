/**
 * Training-mode BatchNorm2d (+ optional LeakyReLU) as two kernels, forward and backward, for the
 * wasm and cpu backends.
 *
 * Written with tfjs ops, BatchNorm costs a training step more than its convolutions on the wasm
 * backend: per layer a dozen passes over the activation (sums by transposition, broadcasts, a
 * diagonal GEMM), each a separate kernel call. Here the forward pass reads x three times (sum,
 * centred sum of squares, normalise) and the backward pass reads dy, y and x twice; both use
 * wasm SIMD on the backend's own heap (c a multiple of 4; with the helper thread on both cores)
 * or plain loops otherwise. Per-channel sums are accumulated per block of rows in float32 and
 * across blocks in float64.
 *
 *   AlhvrBatchNormTrain     {x, gamma, beta} {slope, eps} → [y, mean, variance (biased), rstd]
 *   AlhvrBatchNormTrainGrad {dy, x, y, mean, rstd, gamma} {slope} → [dx, dGamma, dBeta]
 *
 * `slope` is the LeakyReLU slope applied after the affine step, 1 for none: y = max(v, slope·v).
 */
import { getKernel, registerKernel, util, type TensorInfo } from '@tensorflow/tfjs-core';
import { heapOffset, wasmInternals } from './wasm-internals.js';
import { loadWasmSimd, splitWithHelper, type WasmSimd } from './wasm-simd.js';
import type { HelperKernel } from './wasm-simd-wat.js';

export const BATCHNORM_TRAIN = 'AlhvrBatchNormTrain';
export const BATCHNORM_TRAIN_GRAD = 'AlhvrBatchNormTrainGrad';

/** Rows per float32 partial sum; the partials are added in float64. */
const BLOCK_ROWS = 4096;

/** Whether the active backend runs BatchNorm as the fused kernels above. */
export function hasFusedBatchNorm(backendName: string): boolean {
  return getKernel(BATCHNORM_TRAIN, backendName) !== undefined && getKernel(BATCHNORM_TRAIN_GRAD, backendName) !== undefined;
}

/**
 * The passes over [rows, c] data, on one memory: plain loops over Float32Arrays (cpu, and wasm
 * when c is not a multiple of 4) or the SIMD exports (on both threads when the helper runs).
 * Offsets are in floats from the start of `heap()`, per-channel vectors are Float32Array views
 * that the SIMD version reads in place. The sums are float32 per block of BLOCK_ROWS rows, block
 * b's into partials[b·c …]; the caller adds the blocks in order in float64, so splitting blocks
 * between threads never changes a bit.
 */
interface Passes {
  sumRows(x: number, rows: number, c: number, partials: Float32Array): void;
  sumSqCentered(x: number, rows: number, c: number, mean: Float32Array, partials: Float32Array): void;
  affineLeaky(x: number, out: number, rows: number, c: number, scale: Float32Array, shift: Float32Array, slope: number): void;
  gradSums(dy: number, y: number, x: number, rows: number, c: number, slope: number, mean: Float32Array, rstd: Float32Array, partialsDz: Float32Array, partialsDzx: Float32Array): void;
  gradInput(dy: number, y: number, x: number, out: number, rows: number, c: number, slope: number, a: Float32Array, b: Float32Array, cc: Float32Array): void;
}

const blockCount = (rows: number) => Math.ceil(rows / BLOCK_ROWS);

/** Runs `f(r0, n, b)` for every block b of rows. */
function forBlocks(rows: number, f: (r0: number, n: number, b: number) => void): void {
  for (let b = 0, r0 = 0; r0 < rows; b++, r0 += BLOCK_ROWS) f(r0, Math.min(BLOCK_ROWS, rows - r0), b);
}

function loopPasses(heap: () => Float32Array): Passes {
  return {
    sumRows(x, rows, c, partials) {
      const h = heap();
      partials.fill(0, 0, blockCount(rows) * c);
      forBlocks(rows, (r0, n, b) => {
        const acc = b * c;
        for (let r = 0, p = x + r0 * c; r < n; r++) for (let k = 0; k < c; k++, p++) partials[acc + k] += h[p];
      });
    },
    sumSqCentered(x, rows, c, mean, partials) {
      const h = heap();
      partials.fill(0, 0, blockCount(rows) * c);
      forBlocks(rows, (r0, n, b) => {
        const acc = b * c;
        for (let r = 0, p = x + r0 * c; r < n; r++) {
          for (let k = 0; k < c; k++, p++) {
            const d = h[p] - mean[k];
            partials[acc + k] += d * d;
          }
        }
      });
    },
    affineLeaky(x, out, rows, c, scale, shift, slope) {
      const h = heap();
      for (let r = 0, p = x, q = out; r < rows; r++) {
        for (let k = 0; k < c; k++, p++, q++) {
          const v = h[p] * scale[k] + shift[k];
          h[q] = Math.max(v, slope * v);
        }
      }
    },
    gradSums(dy, y, x, rows, c, slope, mean, rstd, partialsDz, partialsDzx) {
      const h = heap();
      partialsDz.fill(0, 0, blockCount(rows) * c);
      partialsDzx.fill(0, 0, blockCount(rows) * c);
      forBlocks(rows, (r0, n, b) => {
        const acc = b * c;
        for (let r = 0, o = r0 * c; r < n; r++) {
          for (let k = 0; k < c; k++, o++) {
            const dz = h[dy + o] * (h[y + o] > 0 ? 1 : slope);
            partialsDz[acc + k] += dz;
            partialsDzx[acc + k] += dz * (h[x + o] - mean[k]) * rstd[k];
          }
        }
      });
    },
    gradInput(dy, y, x, out, rows, c, slope, a, b, cc) {
      const h = heap();
      for (let r = 0, o = 0; r < rows; r++) {
        for (let k = 0; k < c; k++, o++) {
          const dz = h[dy + o] * (h[y + o] > 0 ? 1 : slope);
          h[out + o] = a[k] * dz + b[k] * h[x + o] + cc[k];
        }
      }
    },
  };
}

/**
 * Floats of a tensor from which a pass splits its work with the helper thread: below it the
 * handshake costs more than the second core gains (bench/results/batchnorm-threads.json: tensors
 * of 2^18 floats and less took longer with the helper, 2^19 and more 1.3–1.8× less).
 */
let helperMinFloats = 1 << 19;

/** Sets the helper threshold (benches compare both ways on every shape); returns the previous one. */
export function setBatchNormHelperMinFloats(floats: number): number {
  const before = helperMinFloats;
  helperMinFloats = floats;
  return before;
}

/** A [rows, c] pass of `count` units, split with the helper thread when the tensor is large enough. */
function split(simd: WasmSimd, floats: number, count: number, kernel: HelperKernel, args: number[], run: (from: number, to: number) => void): void {
  splitWithHelper(simd, count, kernel, args, run, { worthIt: floats >= helperMinFloats });
}

/** SIMD passes; per-channel vectors must be views on the same memory (byte offset = view.byteOffset). */
function simdPasses(simd: WasmSimd): Passes {
  const e = simd.exports;
  const at = (v: Float32Array) => v.byteOffset;
  const bits = new Int32Array(1);
  const f32 = new Float32Array(bits.buffer);
  const slopeBits = (slope: number) => {
    f32[0] = slope;
    return bits[0];
  };
  return {
    sumRows(x, rows, c, partials) {
      const args = [x * 4, rows, c, BLOCK_ROWS, at(partials)];
      split(simd, rows * c, blockCount(rows), 'sum_rows_blocks', args, (b0, b1) => e.sum_rows_blocks(x * 4, rows, c, BLOCK_ROWS, at(partials), b0, b1));
    },
    sumSqCentered(x, rows, c, mean, partials) {
      const args = [x * 4, rows, c, BLOCK_ROWS, at(mean), at(partials)];
      split(simd, rows * c, blockCount(rows), 'sum_sq_centered_blocks', args,
        (b0, b1) => e.sum_sq_centered_blocks(x * 4, rows, c, BLOCK_ROWS, at(mean), at(partials), b0, b1));
    },
    affineLeaky(x, out, rows, c, scale, shift, slope) {
      const args = [x * 4, out * 4, c, at(scale), at(shift), slopeBits(slope)];
      split(simd, rows * c, rows, 'affine_leaky_rows', args, (r0, r1) => e.affine_leaky_rows(x * 4, out * 4, c, at(scale), at(shift), slopeBits(slope), r0, r1));
    },
    gradSums(dy, y, x, rows, c, slope, mean, rstd, partialsDz, partialsDzx) {
      const args = [dy * 4, y * 4, x * 4, rows, c, BLOCK_ROWS, slopeBits(slope), at(mean), at(rstd), at(partialsDz), at(partialsDzx)];
      split(simd, rows * c, blockCount(rows), 'grad_sums_blocks', args,
        (b0, b1) => e.grad_sums_blocks(dy * 4, y * 4, x * 4, rows, c, BLOCK_ROWS, slopeBits(slope), at(mean), at(rstd), at(partialsDz), at(partialsDzx), b0, b1));
    },
    gradInput(dy, y, x, out, rows, c, slope, a, b, cc) {
      const args = [dy * 4, y * 4, x * 4, out * 4, c, slopeBits(slope), at(a), at(b), at(cc)];
      split(simd, rows * c, rows, 'grad_input_rows', args,
        (r0, r1) => e.grad_input_rows(dy * 4, y * 4, x * 4, out * 4, c, slopeBits(slope), at(a), at(b), at(cc), r0, r1));
    },
  };
}

/** Per-channel float32 vectors the passes read and write (7 × c floats), and two partial-sum areas of n floats. */
interface ChannelVectors {
  mean: Float32Array; rstd: Float32Array; scale: Float32Array; shift: Float32Array;
  a: Float32Array; b: Float32Array; cc: Float32Array;
  partials: Float32Array; partials2: Float32Array;
}

/** What a backend provides: where tensors live, how outputs are made, and the passes to use. */
interface BatchNormHost {
  /** Offset in floats of a tensor's data within heap(). */
  offset(t: TensorInfo): number;
  output(shape: number[]): TensorInfo;
  /** Per-channel vectors for c channels and partial sums of n floats (valid until the next call). */
  vectors(c: number, n: number): ChannelVectors;
  passes(c: number): Passes;
  /** Writes a small per-channel result as a new [c] tensor. */
  vectorOutput(values: Float32Array | Float64Array): TensorInfo;
  readVector(t: TensorInfo): Float32Array;
  /** Turns the call's outputs into the backend's tensors (a no-op where outputs already are). */
  finish(outs: TensorInfo[]): TensorInfo[];
}

/** The per-block partial sums added in block order, in float64. */
function addBlocks(partials: Float32Array, rows: number, c: number): Float64Array {
  const total = new Float64Array(c);
  for (let b = 0, n = blockCount(rows); b < n; b++) for (let k = 0; k < c; k++) total[k] += partials[b * c + k];
  return total;
}

function forward(host: BatchNormHost, x: TensorInfo, gamma: TensorInfo, beta: TensorInfo, slope: number, eps: number): TensorInfo[] {
  const c = x.shape[x.shape.length - 1];
  const rows = util.sizeFromShape(x.shape) / c;
  const g = Float64Array.from(host.readVector(gamma));
  const bt = Float64Array.from(host.readVector(beta));
  const y = host.output([...x.shape]);
  const passes = host.passes(c);
  const xo = host.offset(x);
  const v = host.vectors(c, blockCount(rows) * c);
  passes.sumRows(xo, rows, c, v.partials);
  const mean = addBlocks(v.partials, rows, c).map((s) => s / rows);
  v.mean.set(mean);
  passes.sumSqCentered(xo, rows, c, v.mean, v.partials);
  const variance = addBlocks(v.partials, rows, c).map((s) => s / rows);
  const rstd = variance.map((s) => 1 / Math.sqrt(s + eps));
  for (let k = 0; k < c; k++) {
    v.scale[k] = g[k] * rstd[k];
    v.shift[k] = bt[k] - mean[k] * g[k] * rstd[k];
  }
  passes.affineLeaky(host.offset(x), host.offset(y), rows, c, v.scale, v.shift, slope);
  return [y, host.vectorOutput(mean), host.vectorOutput(variance), host.vectorOutput(rstd)];
}

function backward(host: BatchNormHost, t: BackwardInputs, slope: number): TensorInfo[] {
  const c = t.x.shape[t.x.shape.length - 1];
  const rows = util.sizeFromShape(t.x.shape) / c;
  const mean = Float64Array.from(host.readVector(t.mean));
  const rstd = Float64Array.from(host.readVector(t.rstd));
  const g = Float64Array.from(host.readVector(t.gamma));
  const dx = host.output([...t.x.shape]);
  const passes = host.passes(c);
  const v = host.vectors(c, blockCount(rows) * c);
  v.mean.set(mean);
  v.rstd.set(rstd);
  const [dyo, yo, xo] = [host.offset(t.dy), host.offset(t.y), host.offset(t.x)];
  passes.gradSums(dyo, yo, xo, rows, c, slope, v.mean, v.rstd, v.partials, v.partials2);
  const dBeta = addBlocks(v.partials, rows, c);
  const dGamma = addBlocks(v.partials2, rows, c);
  for (let k = 0; k < c; k++) {
    const gr = g[k] * rstd[k];
    v.a[k] = gr;
    v.b[k] = (-gr * rstd[k] * dGamma[k]) / rows;
    v.cc[k] = (-gr * dBeta[k]) / rows + (gr * rstd[k] * mean[k] * dGamma[k]) / rows;
  }
  passes.gradInput(dyo, yo, xo, host.offset(dx), rows, c, slope, v.a, v.b, v.cc);
  return [dx, host.vectorOutput(dGamma), host.vectorOutput(dBeta)];
}

/** Floats of scratch for `viewsOn(…, c, n)`. */
const scratchFloats = (c: number, n: number) => 7 * c + 2 * n;

function viewsOn(buffer: ArrayBufferLike, byteOffset: number, c: number, n: number): ChannelVectors {
  const at = (i: number, length = c) => new Float32Array(buffer, byteOffset + i * c * 4, length);
  return {
    mean: at(0), rstd: at(1), scale: at(2), shift: at(3), a: at(4), b: at(5), cc: at(6),
    partials: new Float32Array(buffer, byteOffset + 7 * c * 4, n), partials2: new Float32Array(buffer, byteOffset + (7 * c + n) * 4, n),
  };
}

type BackwardInputs = Record<'dy' | 'x' | 'y' | 'mean' | 'rstd' | 'gamma', TensorInfo>;

/**
 * Registers both kernels for a backend. `hostFor` gives the host for one call; `floats` is the
 * most heap the call can need (hosts that copy tensors into a heap of their own size it by this).
 */
function register(backendName: string, hostFor: (backend: unknown, floats: number) => BatchNormHost): void {
  if (hasFusedBatchNorm(backendName)) return;
  const size = (t: unknown) => util.sizeFromShape((t as TensorInfo).shape);
  registerKernel({
    kernelName: BATCHNORM_TRAIN, backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const a = attrs as { slope: number; eps: number };
      const host = hostFor(backend, 2 * size(inputs.x));
      return host.finish(forward(host, inputs.x as TensorInfo, inputs.gamma as TensorInfo, inputs.beta as TensorInfo, a.slope, a.eps));
    },
  });
  registerKernel({
    kernelName: BATCHNORM_TRAIN_GRAD, backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const host = hostFor(backend, 4 * size(inputs.x));
      return host.finish(backward(host, inputs as BackwardInputs, (attrs as { slope: number }).slope));
    },
  });
}

// ---- cpu backend -------------------------------------------------------------------------------

interface CpuBackend {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: 'float32', values?: Float32Array): TensorInfo;
}

/**
 * On the cpu backend each tensor has its own array; the passes address one heap, so each call
 * gets a heap of `floats` floats into which its inputs are copied on first use and in which its
 * large outputs are laid out, then copied into real tensors by `finish`.
 */
function cpuHost(backend: unknown, floats: number): BatchNormHost {
  const b = backend as CpuBackend;
  const heap = new Float32Array(floats);
  const placed = new Map<object, number>();
  const pending = new Map<object, number>();
  let next = 0;
  const reserve = (n: number) => {
    const at = next;
    next += n;
    return at;
  };
  return {
    offset(t) {
      let at = placed.get(t.dataId) ?? pending.get(t.dataId);
      if (at === undefined) {
        const values = b.data.get(t.dataId).values;
        at = reserve(values.length);
        heap.set(values, at);
        placed.set(t.dataId, at);
      }
      return at;
    },
    output(shape) {
      const dataId = {};
      pending.set(dataId, reserve(util.sizeFromShape(shape)));
      return { dataId, shape, dtype: 'float32' };
    },
    vectors: (c, n) => viewsOn(new ArrayBuffer(scratchFloats(c, n) * 4), 0, c, n),
    passes: () => loopPasses(() => heap),
    vectorOutput: (values) => b.makeTensorInfo([values.length], 'float32', Float32Array.from(values)),
    readVector: (t) => b.data.get(t.dataId).values,
    finish: (outs) =>
      outs.map((t) => {
        const at = pending.get(t.dataId);
        return at === undefined ? t : b.makeTensorInfo(t.shape, 'float32', heap.slice(at, at + util.sizeFromShape(t.shape)));
      }),
  };
}

/** Registers the fused BatchNorm kernels for the cpu backend (plain loops). Idempotent. */
export function registerCpuBatchNormKernels(): void {
  register('cpu', cpuHost);
}

// ---- wasm backend ------------------------------------------------------------------------------

/**
 * Compiles the SIMD passes against the wasm backend's memory and registers both kernels for
 * 'wasm'. Call once the backend is initialised. Idempotent.
 */
export async function registerWasmBatchNormKernels(backend: object): Promise<void> {
  if (hasFusedBatchNorm('wasm')) return;
  const b = wasmInternals(backend);
  const simdKernels = await loadWasmSimd(backend);
  const { memory } = simdKernels;
  const simd = simdPasses(simdKernels);
  const heap = () => new Float32Array(memory.buffer);
  const loops = loopPasses(heap);
  let scratch = 0;
  let scratchSize = 0;
  const host: BatchNormHost = {
    offset: (t) => heapOffset(b, t) / 4,
    output: (shape) => b.makeOutput(shape, 'float32'),
    vectors: (c, n) => {
      const floats = scratchFloats(c, n);
      if (floats > scratchSize) {
        // Kept for the life of the backend: a few KiB, reused by every layer.
        if (scratchSize > 0) b.wasm._free(scratch);
        scratch = b.wasm._malloc(floats * 4) >>> 0;
        scratchSize = floats;
      }
      return viewsOn(memory.buffer, scratch, c, n);
    },
    passes: (c) => (c % 4 === 0 ? simd : loops),
    vectorOutput: (values) => {
      const out = b.makeOutput([values.length], 'float32');
      new Float32Array(memory.buffer, heapOffset(b, out), values.length).set(values);
      return out;
    },
    readVector: (t) => new Float32Array(memory.buffer, heapOffset(b, t), util.sizeFromShape(t.shape)).slice(),
    finish: (outs) => outs,
  };
  register('wasm', () => host);
}
