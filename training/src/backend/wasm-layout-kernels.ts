/**
 * Operations that a U-Net training step runs hundreds of times and that tfjs-backend-wasm 4.22
 * does slowly, written as plain loops over the wasm heap (or no work at all):
 *
 * - `Identity` (what `tf.clone` runs, and so what saves every tensor a gradient needs): the
 *   backend copies the data; every other backend shares the buffer and counts references. A
 *   copy per saved activation doubles the memory of a training step's tape.
 * - `Sum` over every axis but the last (per-channel sums): the backend transposes the whole
 *   tensor so the reduced axes come last, then sums. One pass that accumulates rows into a [C]
 *   vector reads the data once and writes nothing big.
 * - `Concat` along the last axis (decoder skip connections) and `SplitV` along the last axis (its
 *   gradient): the backend copies one run of C floats per pixel with `subarray().set()` (or a
 *   Slice per piece), which for C = 8…64 costs far more in call overhead than in copying. Ours
 *   copies the runs with wasm SIMD (copy_rows) when C is a multiple of 4.
 *
 * - `Multiply` of a tensor by one that is broadcast along its last axis only (a [..., 1] mask
 *   or weight over [..., C] class maps, in the losses) or along every axis but the last (a [C]
 *   vector): the backend's broadcasting loop computes an index per element and took 5–10 ns per
 *   element (2.5 ms for [4,128,128,1] by [4,128,128,4], where the same-shape product takes 0.12);
 *   also one value of shape [1, …, 1] over a tensor (a full reduction's gradient). With C in 4s
 *   the product runs in wasm SIMD (mul_broadcast), large ones on both threads.
 *
 * - `Less`, `LessEqual`, `Greater`, `GreaterEqual` against one value per sample ([N, …] against
 *   [N, 1, …, 1]) or against one value: the same broadcasting loop, at 16 ms for the largest
 *   feature-dropout mask of a CPU-recipe step.
 *
 * Every other case (other axes, other dtypes) goes to the backend's own kernel, kept when these
 * are registered.
 */
import { util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { heapOffset, nativeKernel as fallback, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';
import { splitWithHelper, wasmSimdOf } from './wasm-simd.js';

/** Where a tensor's floats live on the heap; re-read after any allocation (the heap may grow). */
function floats(backend: WasmBackendInternals, t: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t);
}

const channelSum: KernelFunc = (args) => {
  const { inputs, attrs } = args;
  const backend = wasmInternals(args.backend);
  const x = inputs.x as TensorInfo;
  const rank = x.shape.length;
  const axes = util.parseAxisParam((attrs as { axis: number | number[] }).axis, x.shape).sort((a, b) => a - b);
  const leading = rank >= 2 && axes.length === rank - 1 && axes.every((a, i) => a === i);
  if (x.dtype !== 'float32' || !leading) return fallback('Sum', args);
  const c = x.shape[rank - 1];
  const rows = util.sizeFromShape(x.shape) / c;
  const keepDims = (attrs as { keepDims?: boolean }).keepDims === true;
  const out = backend.makeOutput(keepDims ? [...Array<number>(rank - 1).fill(1), c] : [c], 'float32');
  const xv = floats(backend, x);
  floats(backend, out).set(c % 8 === 0 ? columnSums8(xv, c) : columnSums(xv, rows, c));
  return out;
};

/** Σ over rows of x [rows, c], per column, in double precision, rows in order. */
function columnSums(xv: Float32Array, rows: number, c: number): Float64Array {
  const acc = new Float64Array(c);
  for (let r = 0, p = 0; r < rows; r++) for (let k = 0; k < c; k++, p++) acc[k] += xv[p];
  return acc;
}

/**
 * The same sums (the same additions in the same order, so the same bits) for c a multiple of 8:
 * eight columns at a time in locals, which V8 keeps in registers, where `acc[k] +=` loads and
 * stores memory per element; 4–5× faster on 8×128²×8 to ×32 (bias gradients), although each
 * block of eight is a pass over x.
 */
function columnSums8(xv: Float32Array, c: number): Float64Array {
  const acc = new Float64Array(c);
  const n = xv.length;
  for (let k0 = 0; k0 < c; k0 += 8) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (let p = k0; p < n; p += c) {
      a0 += xv[p];
      a1 += xv[p + 1];
      a2 += xv[p + 2];
      a3 += xv[p + 3];
      a4 += xv[p + 4];
      a5 += xv[p + 5];
      a6 += xv[p + 6];
      a7 += xv[p + 7];
    }
    acc.set([a0, a1, a2, a3, a4, a5, a6, a7], k0);
  }
  return acc;
}

const lastAxisConcat: KernelFunc = (args) => {
  const { inputs, attrs } = args;
  const backend = wasmInternals(args.backend);
  const xs = inputs as unknown as TensorInfo[];
  const rank = xs[0].shape.length;
  const axis = util.parseAxisParam((attrs as { axis: number }).axis, xs[0].shape)[0];
  if (axis !== rank - 1 || xs.length < 2 || xs.some((t) => t.dtype !== 'float32' || util.sizeFromShape(t.shape) === 0)) {
    return fallback('Concat', args);
  }
  const widths = xs.map((t) => t.shape[rank - 1]);
  const total = widths.reduce((s, w) => s + w, 0);
  const rows = util.sizeFromShape(xs[0].shape) / widths[0];
  const out = backend.makeOutput([...xs[0].shape.slice(0, -1), total], 'float32');
  let offset = 0;
  for (let i = 0; i < xs.length; i++) {
    copyRows(backend, xs[i], 0, widths[i], out, offset, total, rows, widths[i]);
    offset += widths[i];
  }
  return out;
};

/**
 * rows × w floats from `src` (row stride srcStride, starting srcOffset floats in) to `dst` (row
 * stride dstStride, starting dstOffset in): with the SIMD kernel when w is a multiple of 4 (every
 * U-Net width) and it is loaded, otherwise element by element.
 */
export function copyRows(
  backend: WasmBackendInternals, src: TensorInfo, srcOffset: number, srcStride: number,
  dst: TensorInfo, dstOffset: number, dstStride: number, rows: number, w: number,
): void {
  const simd = wasmSimdOf(backend);
  if (simd !== undefined && w % 4 === 0) {
    simd.exports.copy_rows(heapOffset(backend, src) + srcOffset * 4, heapOffset(backend, dst) + dstOffset * 4, rows, w * 4, srcStride * 4, dstStride * 4);
    return;
  }
  const sv = floats(backend, src);
  const dv = floats(backend, dst);
  for (let r = 0; r < rows; r++) {
    let p = r * srcStride + srcOffset;
    let q = r * dstStride + dstOffset;
    for (let k = 0; k < w; k++) dv[q++] = sv[p++];
  }
}

const lastAxisSplit: KernelFunc = (args) => {
  const { inputs, attrs } = args;
  const backend = wasmInternals(args.backend);
  const x = inputs.x as TensorInfo;
  const rank = x.shape.length;
  const a = attrs as { numOrSizeSplits: number | number[]; axis: number };
  const axis = util.parseAxisParam(a.axis, x.shape)[0];
  const total = x.shape[rank - 1];
  const sizes = typeof a.numOrSizeSplits === 'number'
    ? Array<number>(a.numOrSizeSplits).fill(total / a.numOrSizeSplits)
    : a.numOrSizeSplits;
  if (axis !== rank - 1 || x.dtype !== 'float32' || sizes.some((s) => !Number.isInteger(s) || s <= 0) ||
    sizes.reduce((s, w) => s + w, 0) !== total) {
    return fallback('SplitV', args);
  }
  const rows = util.sizeFromShape(x.shape) / total;
  const outs = sizes.map((w) => backend.makeOutput([...x.shape.slice(0, -1), w], 'float32'));
  let offset = 0;
  sizes.forEach((w, i) => {
    copyRows(backend, x, offset, total, outs[i], 0, w, rows, w);
    offset += w;
  });
  return outs;
};

/**
 * How `small` broadcasts against `big` (whose shape is the product's): 'scalar' when it is one value
 * of rank ≥ 1 (a rank-0 scalar the backend's own kernel multiplies fast), 'rows' when it is big's
 * shape with the last axis 1, 'channels' when it is [1, …, 1, C] with big's last axis C; otherwise null.
 */
function lastAxisBroadcast(big: number[], small: number[]): 'rows' | 'channels' | 'scalar' | null {
  const rank = big.length;
  const c = big[rank - 1];
  if (rank < 1 || small.length > rank) return null;
  if (small.length >= 1 && small.every((d) => d === 1)) return 'scalar';
  if (c <= 1) return null;
  if (small.length === rank && small[rank - 1] === 1 && small.slice(0, -1).every((d, i) => d === big[i])) return 'rows';
  if (small.length >= 1 && small[small.length - 1] === c && small.slice(0, -1).every((d) => d === 1)) return 'channels';
  return null;
}

/** Floats of a product from which the SIMD multiply shares its rows with the helper thread. */
const HELPER_MIN_FLOATS = 1 << 19;

const broadcastMultiply: KernelFunc = (args) => {
  const backend = wasmInternals(args.backend);
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback('Multiply', args);
  const aBig = a.shape.length > b.shape.length || (a.shape.length === b.shape.length && util.sizeFromShape(a.shape) >= util.sizeFromShape(b.shape));
  const [big, small] = aBig ? [a, b] : [b, a];
  const kind = lastAxisBroadcast(big.shape, small.shape);
  if (kind === null || util.sizeFromShape(big.shape) === 0) return fallback('Multiply', args);
  const c = big.shape[big.shape.length - 1];
  const rows = util.sizeFromShape(big.shape) / c;
  const out = backend.makeOutput([...big.shape], 'float32');
  const simd = wasmSimdOf(backend);
  if (kind !== 'scalar' && c % 4 === 0 && simd !== undefined) {
    // SIMD, the second half of the rows on the helper thread for large tensors (same products either way)
    const args = [heapOffset(backend, big), heapOffset(backend, small), heapOffset(backend, out), c, kind === 'rows' ? 1 : 0] as const;
    splitWithHelper(simd, rows, 'mul_broadcast', args, (from, to) => simd.exports.mul_broadcast(...args, from, to),
      { worthIt: rows * c >= HELPER_MIN_FLOATS });
    return out;
  }
  const [bv, sv, ov] = [floats(backend, big), floats(backend, small), floats(backend, out)];
  if (kind === 'scalar') {
    const s = sv[0];
    for (let p = 0; p < ov.length; p++) ov[p] = bv[p] * s;
  } else if (kind === 'rows') {
    for (let r = 0, p = 0; r < rows; r++) {
      const s = sv[r];
      for (let k = 0; k < c; k++, p++) ov[p] = bv[p] * s;
    }
  } else {
    for (let r = 0, p = 0; r < rows; r++) for (let k = 0; k < c; k++, p++) ov[p] = bv[p] * sv[k];
  }
  return out;
};

type Comparison = 'Less' | 'LessEqual' | 'Greater' | 'GreaterEqual';

type CompareLoop = (bv: Float32Array, sv: Float32Array, ov: Uint8Array, n: number, block: number) => void;

/** ov[p] = bv[p] OP sv[sample of p], one loop per operator so each keeps its comparison inline. */
const COMPARE_LOOPS: Record<Comparison, CompareLoop> = {
  Less: (bv, sv, ov, n, block) => {
    for (let s = 0, p = 0; s < n; s++) for (const t = sv[s], e = p + block; p < e; p++) ov[p] = bv[p] < t ? 1 : 0;
  },
  LessEqual: (bv, sv, ov, n, block) => {
    for (let s = 0, p = 0; s < n; s++) for (const t = sv[s], e = p + block; p < e; p++) ov[p] = bv[p] <= t ? 1 : 0;
  },
  Greater: (bv, sv, ov, n, block) => {
    for (let s = 0, p = 0; s < n; s++) for (const t = sv[s], e = p + block; p < e; p++) ov[p] = bv[p] > t ? 1 : 0;
  },
  GreaterEqual: (bv, sv, ov, n, block) => {
    for (let s = 0, p = 0; s < n; s++) for (const t = sv[s], e = p + block; p < e; p++) ov[p] = bv[p] >= t ? 1 : 0;
  },
};

/** t OP x is x MIRROR t (also for NaN, which compares false either way). */
const MIRROR: Record<Comparison, Comparison> = { Less: 'Greater', LessEqual: 'GreaterEqual', Greater: 'Less', GreaterEqual: 'LessEqual' };

/**
 * A comparison of a float32 tensor against one value per sample ([N, …] against [N, 1, …, 1], the
 * feature-dropout mask: each pixel's channel mean against its sample's threshold) or against one
 * value ([] or [1, …, 1], the dropout mask u ≥ p), either operand first. The backend's
 * broadcasting loop took 16 ms for [8,128,128,1] < [8,1,1,1] and 3.8 ms for [8,64,64,16] ≥ p;
 * one pass over each sample's block takes a fraction of a millisecond. Same comparison (NaN
 * compares false), same bool output.
 */
function perSampleComparison(name: Comparison): KernelFunc {
  return (args) => {
    const backend = wasmInternals(args.backend);
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    // How many leading samples `small` has one value each for, against `big`; 0 when it does not fit.
    const samples = (big: TensorInfo, small: TensorInfo): number => {
      if (util.sizeFromShape(big.shape) === 0 || big.shape.length === 0 || small.shape.length > big.shape.length) return 0;
      if (small.shape.every((d) => d === 1)) return util.sizeFromShape(big.shape) > 1 ? 1 : 0;
      const perSample = small.shape.length === big.shape.length && small.shape[0] === big.shape[0] && small.shape.slice(1).every((d) => d === 1);
      return perSample && big.shape.slice(1).some((d) => d !== 1) ? big.shape[0] : 0;
    };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(name, args);
    const nA = samples(a, b);
    const nB = nA === 0 ? samples(b, a) : 0;
    if (nA === 0 && nB === 0) return fallback(name, args);
    const [big, small, n] = nA > 0 ? [a, b, nA] : [b, a, nB];
    const out = backend.makeOutput([...big.shape], 'bool');
    const [bv, sv] = [floats(backend, big), floats(backend, small)];
    COMPARE_LOOPS[nA > 0 ? name : MIRROR[name]](bv, sv, backend.typedArrayFromHeap({ ...out, dtype: 'bool' }), n, util.sizeFromShape(big.shape) / n);
    return out;
  };
}

const sharedIdentity: KernelFunc = (args) => {
  const x = args.inputs.x as TensorInfo;
  if (x.dtype === 'string') return fallback('Identity', args);
  wasmInternals(args.backend).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
};

/** The kernels of this family by name, each replacing the backend's own (kept for the other cases). */
export const LAYOUT_KERNELS: readonly (readonly [string, KernelFunc])[] = [
  ['Identity', sharedIdentity], ['Sum', channelSum], ['Concat', lastAxisConcat], ['SplitV', lastAxisSplit], ['Multiply', broadcastMultiply],
  ...(['Less', 'LessEqual', 'Greater', 'GreaterEqual'] as const).map((name) => [name, perSampleComparison(name)] as const),
];
