/**
 * Kernels the TensorFlow.js wasm backend needs for training a 2-D U-Net, built from the fast
 * XNNPACK paths the backend already has.
 *
 * - `Conv2DBackpropFilter` is missing from tfjs-backend-wasm 4.22 (tf.grad of a conv2d filter
 *   throws). Stride 1: our SIMD kernel for up to 16 channels, otherwise one XNNPACK GEMM per
 *   filter tap on shifted views of xᵀ; other strides: im2colᵀ(x) · dy per chunk of pixels.
 * - `Conv2DBackpropInput` exists but is a direct C loop; for stride 1 / dilation 1 we replace it
 *   with a forward convolution of dy with the spatially flipped, in/out-swapped filter, which
 *   runs through XNNPACK. Other strides keep the backend's own kernel.
 * - `MaxPoolGrad` exists but is wrong whenever a pooling window holds only negative values (it
 *   routes the gradient to the wrong element — its running maximum evidently does not start at
 *   −∞); after LeakyReLU that is most windows, so we replace it with a JS loop on the wasm heap.
 *
 * Only the BatchMatMul fast path of the wasm backend uses XNNPACK (no transposes, batch 1; every
 * other case is a naive triple loop), so the GEMMs here are laid out to hit exactly that path,
 * with dy as the "weights" operand.
 */
import {
  backend_util,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  getKernel,
  MaxPoolGrad,
  registerKernel,
  unregisterKernel,
  util,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { registerFastBatchMatMul } from './wasm-batch-matmul.js';
import { registerWasmLayoutKernels } from './wasm-layout-kernels.js';
import { wasmSimdOf, type WasmSimd } from './wasm-simd.js';

/** The parts of tfjs-backend-wasm's BackendWasm these kernels rely on (not in its public types). */
export interface WasmBackendInternals {
  dataIdMap: {
    get(dataId: object): { id: number; memoryOffset: number; refCount: number } | undefined;
    set(dataId: object, v: { id: number; memoryOffset: number; shape: number[]; dtype: string; refCount: number }): void;
    delete(dataId: object): void;
  };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...a: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
}

/**
 * Floats per im2col chunk. 2^21 floats = 8 MiB keeps the scratch buffer and one dy chunk's packed
 * copy inside a typical L2/L3 budget while leaving the GEMM long enough per call; the chunk size
 * in pixels is this divided by the number of filter taps (KH·KW·Cin).
 */
const IM2COL_CHUNK_FLOATS = 1 << 21;

/**
 * Where the SIMD dW kernel beats the nine-GEMM path (bench/conv-kernels.ts, U-Net layers at 8×128²
 * and 2×256²): up to 16 input and 16 output channels (1.2–1.5× faster; equal at 16→16 on 2×256²).
 * With more channels its passes over x multiply and fall out of cache, and the GEMMs, which use
 * both threads, win by up to 4×.
 */
const SIMD_DW_MAX_CHANNELS = 16;

type MatMulFn = (
  aId: number, aShape: Uint8Array, aRank: number, bId: number, bShape: Uint8Array, bRank: number,
  transposeA: boolean, transposeB: boolean, outId: number,
) => void;

/**
 * Per-backend state: the cwrapped XNNPACK matmul entry and one im2col scratch tensor that is kept
 * across calls (grown when a larger layer asks), because first touch of fresh pages is slow and a
 * training step calls this kernel ~20 times with the same few sizes.
 */
interface BackendState {
  matMul: MatMulFn;
  scratch: TensorInfo | null;
  scratchFloats: number;
}
const states = new WeakMap<object, BackendState>();

export function stateFor(backend: WasmBackendInternals): BackendState {
  let s = states.get(backend);
  if (s === undefined) {
    // 'BatchMatMul' is the C symbol tfjs-backend-wasm exports for its matmul kernel.
    const matMul = backend.wasm.cwrap('BatchMatMul', null, [
      'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number',
    ]) as unknown as MatMulFn;
    s = { matMul, scratch: null, scratchFloats: 0 };
    states.set(backend, s);
  }
  return s;
}

function scratchFor(backend: WasmBackendInternals, s: BackendState, floats: number): TensorInfo {
  if (s.scratch === null || s.scratchFloats < floats) {
    if (s.scratch !== null) backend.disposeData(s.scratch.dataId, true);
    s.scratch = backend.makeOutput([floats], 'float32');
    s.scratchFloats = floats;
  }
  return s.scratch;
}

/** Releases the kept im2col scratch buffer of a wasm backend (e.g. after training finishes). */
export function releaseWasmTrainingScratch(backend: object): void {
  const s = states.get(backend);
  if (s?.scratch) {
    (backend as WasmBackendInternals).disposeData(s.scratch.dataId, true);
    s.scratch = null;
    s.scratchFloats = 0;
  }
}

export const shapeBytes = (shape: number[]): Uint8Array => new Uint8Array(new Int32Array(shape).buffer);

/**
 * A tensor id that points into the middle of another tensor's wasm memory, so a contiguous slice of
 * dy can be handed to the C matmul without copying. A fresh id per use matters: the C side caches
 * the packed XNNPACK weights under the weights' tensor id and drops them when that id is disposed.
 */
export function aliasTensor(backend: WasmBackendInternals, base: TensorInfo, offsetFloats: number, shape: number[]): TensorInfo {
  const baseData = backend.dataIdMap.get(base.dataId);
  if (baseData === undefined) throw new Error('wasm training kernels: input tensor is not on the wasm backend');
  const id = backend.dataIdNextNumber++;
  const dataId = { id };
  const memoryOffset = baseData.memoryOffset + offsetFloats * 4;
  backend.dataIdMap.set(dataId, { id, memoryOffset, shape, dtype: 'float32', refCount: 1 });
  backend.wasm.tfjs.registerTensor(id, util.sizeFromShape(shape), memoryOffset);
  return { dataId, shape, dtype: 'float32' };
}

export function disposeAlias(backend: WasmBackendInternals, t: TensorInfo): void {
  const d = backend.dataIdMap.get(t.dataId);
  if (d === undefined) return;
  backend.wasm.tfjs.disposeData(d.id); // never free(): the memory belongs to the base tensor
  backend.dataIdMap.delete(t.dataId);
}

export function idOf(backend: WasmBackendInternals, t: TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (d === undefined) throw new Error('wasm training kernels: tensor is not on the wasm backend');
  return d.id;
}

/** Calls another wasm kernel's implementation directly (as the backend's own kernels do). */
export function runKernel(name: string, inputs: Record<string, TensorInfo>, backend: object, attrs: NamedAttrMap): TensorInfo {
  const k = getKernel(name, 'wasm');
  if (k === undefined) throw new Error(`wasm backend has no ${name} kernel`);
  return k.kernelFunc({ inputs, backend: backend as never, attrs }) as TensorInfo;
}

function toNhwc(t: TensorInfo, backend: object): TensorInfo {
  return runKernel('Transpose', { x: t }, backend, { perm: [0, 2, 3, 1] });
}

/**
 * One chunk of dW = colsᵀ-chunk [K, mc] · dy rows [m0, m0+mc) [mc, Cout]: the first chunk writes
 * `out` directly, later ones go through `partial` and are added in.
 */
function gemmChunk(
  backend: WasmBackendInternals,
  s: BackendState,
  cols: TensorInfo,
  dy: TensorInfo,
  c: { m0: number; mc: number; K: number; Cout: number },
  out: TensorInfo,
  partial: TensorInfo | null,
): void {
  const dyChunk = aliasTensor(backend, dy, c.m0 * c.Cout, [1, c.mc, c.Cout]);
  const target = c.m0 === 0 ? idOf(backend, out) : idOf(backend, partial!);
  s.matMul(idOf(backend, cols), shapeBytes([1, c.K, c.mc]), 3, idOf(backend, dyChunk), shapeBytes([1, c.mc, c.Cout]), 3, false, false, target);
  disposeAlias(backend, dyChunk);
  if (c.m0 !== 0) {
    const acc = backend.typedArrayFromHeap(out);
    const p = backend.typedArrayFromHeap({ ...partial!, shape: [c.K * c.Cout] });
    for (let i = 0; i < acc.length; i++) acc[i] += p[i];
  }
}

/**
 * Fills cols[k·mc + j] (k = (kh·KW + kw)·Cin + ci, j = pixel m0+j of the flattened [B, OH, OW]
 * output grid) with the input value that filter tap k sees at that pixel, 0 in the padding.
 */
function im2colTransposed(
  xv: Float32Array, cols: Float32Array, info: backend_util.Conv2DInfo, m0: number, mc: number,
): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, filterHeight: KH, filterWidth: KW,
    strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const ohw = OH * OW;
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const rowBase = (kh * KW + kw) * C;
      let j = 0;
      while (j < mc) {
        const m = m0 + j;
        const b = Math.floor(m / ohw);
        const rem = m - b * ohw;
        const oh = Math.floor(rem / OW);
        let ow = rem - oh * OW;
        const ih = oh * sh - pt + kh * dh;
        // one output row at a time: the source row is fixed, only iw moves
        const runEnd = Math.min(mc, j + (OW - ow));
        if (ih < 0 || ih >= H) {
          for (let c = 0; c < C; c++) cols.fill(0, (rowBase + c) * mc + j, (rowBase + c) * mc + runEnd);
          j = runEnd;
          continue;
        }
        const xRow = (b * H + ih) * W * C;
        for (; j < runEnd; j++, ow++) {
          const iw = ow * sw - pl + kw * dw;
          if (iw < 0 || iw >= W) {
            for (let c = 0; c < C; c++) cols[(rowBase + c) * mc + j] = 0;
          } else {
            const src = xRow + iw * C;
            for (let c = 0; c < C; c++) cols[(rowBase + c) * mc + j] = xv[src + c];
          }
        }
      }
    }
  }
}

/** The zero-padded pixel grid on which the stride-1 dW paths lay both x and dy. */
function paddedGrid(info: backend_util.Conv2DInfo): { Hp: number; Wp: number; pixels: number } {
  const { top, bottom, left, right } = info.padInfo;
  const Hp = info.inHeight + top + bottom;
  const Wp = info.inWidth + left + right;
  return { Hp, Wp, pixels: info.batchSize * Hp * Wp };
}

/** dy on that grid, zero outside the real output (dy itself when the grids coincide). */
function dyOnGrid(backend: WasmBackendInternals, dy: TensorInfo, info: backend_util.Conv2DInfo, Hp: number, Wp: number): TensorInfo {
  return Hp === info.outHeight && Wp === info.outWidth
    ? dy
    : runKernel('PadV2', { x: dy }, backend, { paddings: [[0, 0], [0, Hp - info.outHeight], [0, Wp - info.outWidth], [0, 0]], constantValue: 0 });
}

/**
 * Stride-1, dilation-1 dW with the im2col built by block copies instead of per-element JS.
 * Lay x (zero-padded) and dy on the same padded pixel grid [B, Hp, Wp]: output pixel
 * p = (b·Hp + oh)·Wp + ow sees, through tap (kh, kw), padded input pixel p + kh·Wp + kw. With dy
 * zero outside the real output grid (PadV2), tap t's im2col rows are contiguous ranges of the
 * transposed padded input xpadᵀ [Cin, L]: cols[t·Cin + ci, j] = xpadᵀ[ci, off_t + j]. So the
 * im2colᵀ chunk [KH·KW·Cin, mc] is KH·KW·Cin memcpy's (TypedArray.set), and one XNNPACK GEMM
 * against the dy chunk [mc, Cout] (one alias id, packed once per chunk) writes dW in its final
 * [KH, KW, Cin, Cout] layout. Pad and transpose run in C. One extra zero image at the end of xpad
 * keeps every tap's window inside the tensor.
 */
function backpropFilterByTaps(backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: B, inChannels: Cin, outChannels: Cout, filterHeight: KH, filterWidth: KW } = info;
  const { top: pt, bottom: pb, left: pl, right: pr } = info.padInfo;
  const { Hp, Wp, pixels: Mg } = paddedGrid(info);
  const K = KH * KW * Cin;
  const s = stateFor(backend);
  const extra = KH > 1 || KW > 1 ? 1 : 0;
  const L = (B + extra) * Hp * Wp;
  const xpad = runKernel('PadV2', { x }, backend, { paddings: [[0, extra], [pt, pb], [pl, pr], [0, 0]], constantValue: 0 });
  const xpadFlat = aliasTensor(backend, xpad, 0, [L, Cin]);
  const xT = runKernel('Transpose', { x: xpadFlat }, backend, { perm: [1, 0] });
  disposeAlias(backend, xpadFlat);
  backend.disposeData(xpad.dataId);
  const dyGrid = dyOnGrid(backend, dy, info, Hp, Wp);

  const out = backend.makeOutput([KH, KW, Cin, Cout], 'float32');
  const mcMax = Math.max(1, Math.min(Mg, Math.floor(IM2COL_CHUNK_FLOATS / K)));
  const scratch = scratchFor(backend, s, K * mcMax);
  const partial = Mg > mcMax ? backend.makeOutput([K * Cout], 'float32') : null;
  for (let m0 = 0; m0 < Mg; m0 += mcMax) {
    const mc = Math.min(mcMax, Mg - m0);
    // views are re-made each chunk: any allocation may grow (and so replace) the wasm heap buffer
    const xv = backend.typedArrayFromHeap(xT);
    const cols = backend.typedArrayFromHeap({ ...scratch, shape: [K * mc] });
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const off = kh * Wp + kw + m0;
        const row0 = (kh * KW + kw) * Cin;
        for (let ci = 0; ci < Cin; ci++) cols.set(xv.subarray(ci * L + off, ci * L + off + mc), (row0 + ci) * mc);
      }
    }
    gemmChunk(backend, s, scratch, dyGrid, { m0, mc, K, Cout }, out, partial);
  }
  if (partial !== null) backend.disposeData(partial.dataId);
  backend.disposeData(xT.dataId);
  if (dyGrid !== dy) backend.disposeData(dyGrid.dataId);
  return out;
}

/**
 * 3×3 stride-1 dW with our SIMD kernel (wasm-simd-wat.ts): x and dy on the same zero-padded
 * pixel grid as in the taps path, then per tap and per block of 4 input × 8 output channels one
 * pass over the pixels with the 8 accumulators in registers, writing dW in its final
 * [3, 3, Cin, Cout] layout. No im2col buffer, no GEMM packing; one thread.
 */
function backpropFilterSimd(backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, simd: WasmSimd): TensorInfo {
  const { inChannels: Cin, outChannels: Cout } = info;
  const { top: pt, bottom: pb, left: pl, right: pr } = info.padInfo;
  const { Wp, Hp, pixels } = paddedGrid(info);
  // One extra zero image keeps every tap's window inside xpad.
  const xpad = runKernel('PadV2', { x }, backend, { paddings: [[0, 1], [pt, pb], [pl, pr], [0, 0]], constantValue: 0 });
  const dyGrid = dyOnGrid(backend, dy, info, Hp, Wp);
  const out = backend.makeOutput([3, 3, Cin, Cout], 'float32');
  const at = (t: TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
  const [xo, dyo, oo] = [at(xpad), at(dyGrid), at(out)];
  for (let tap = 0; tap < 9; tap++) {
    const off = Math.floor(tap / 3) * Wp + (tap % 3);
    for (let ci = 0; ci < Cin; ci += 4) {
      for (let co = 0; co < Cout; co += 8) {
        simd.exports.dw_tap_4x8(xo + (off * Cin + ci) * 4, dyo + co * 4, pixels, Cin, Cout, oo + ((tap * Cin + ci) * Cout + co) * 4);
      }
    }
  }
  backend.disposeData(xpad.dataId);
  if (dyGrid !== dy) backend.disposeData(dyGrid.dataId);
  return out;
}

type TransposeFn = (xId: number, xShape: Uint8Array, rank: number, dtype: number, outId: number, perm: Uint8Array, permLength: number) => void;
const transposeFns = new WeakMap<object, TransposeFn>();

/**
 * Stride-1, dilation-1 dW as one GEMM per filter tap, with nothing copied per tap. x and dy lie
 * on the same padded pixel grid (see backpropFilterByTaps); x is transposed once to xᵀ [Cin, Mg].
 * Tap t's matrix [Cin, Mg] starts off_t floats into xᵀ: its rows run on into the next channel's
 * row for the last off_t columns, but those columns are output pixels in the grid's padding,
 * where dy is zero (a zeroed tail keeps the last row finite). dW_t = that matrix · dy [Mg, Cout],
 * written straight into dW. The nine GEMMs share dy as their weights operand, so XNNPACK packs
 * it once; every GEMM uses both threads.
 */
function backpropFilterNineGemms(backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const { inChannels: Cin, outChannels: Cout, filterHeight: KH, filterWidth: KW } = info;
  const { top: pt, bottom: pb, left: pl, right: pr } = info.padInfo;
  const { Hp, Wp, pixels: Mg } = paddedGrid(info);
  const tail = (KH - 1) * Wp + (KW - 1);
  const s = stateFor(backend);
  let transpose = transposeFns.get(backend);
  if (transpose === undefined) {
    transpose = backend.wasm.cwrap('Transpose', null, ['number', 'array', 'number', 'number', 'number', 'array', 'number']) as unknown as TransposeFn;
    transposeFns.set(backend, transpose);
  }
  const xpad = runKernel('PadV2', { x }, backend, { paddings: [[0, 0], [pt, pb], [pl, pr], [0, 0]], constantValue: 0 });
  const xT = backend.makeOutput([Cin * Mg + tail], 'float32');
  backend.typedArrayFromHeap(xT).fill(0, Cin * Mg);
  const xTMain = aliasTensor(backend, xT, 0, [Cin, Mg]);
  transpose(idOf(backend, xpad), shapeBytes([Mg, Cin]), 2, 0 /* float32 */, idOf(backend, xTMain), shapeBytes([1, 0]), 2);
  disposeAlias(backend, xTMain);
  backend.disposeData(xpad.dataId);
  const dyGrid = dyOnGrid(backend, dy, info, Hp, Wp);
  const out = backend.makeOutput([KH, KW, Cin, Cout], 'float32');
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const tap = kh * KW + kw;
      const a = aliasTensor(backend, xT, kh * Wp + kw, [1, Cin, Mg]);
      const o = aliasTensor(backend, out, tap * Cin * Cout, [1, Cin, Cout]);
      s.matMul(idOf(backend, a), shapeBytes([1, Cin, Mg]), 3, idOf(backend, dyGrid), shapeBytes([1, Mg, Cout]), 3, false, false, idOf(backend, o));
      disposeAlias(backend, a);
      disposeAlias(backend, o);
    }
  }
  backend.disposeData(xT.dataId);
  if (dyGrid !== dy) backend.disposeData(dyGrid.dataId);
  return out;
}

/** Which dW algorithm runs; 'auto' picks per shape (see conv2DBackpropFilterWasm). Tests pin each one. */
export type BackpropFilterPath = 'auto' | 'simd' | 'gemm9' | 'taps' | 'im2col';
let backpropFilterPath: BackpropFilterPath = 'auto';
export function setBackpropFilterPath(p: BackpropFilterPath): void {
  backpropFilterPath = p;
}

const conv2DBackpropFilterWasm: KernelFunc = ({ inputs, backend: b, attrs }) => {
  const backend = b as unknown as WasmBackendInternals;
  const a = attrs as unknown as {
    strides: [number, number] | number; pad: backend_util.PadInfo['type'] | number | backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: [number, number, number, number];
  };
  let x = inputs.x as TensorInfo;
  let dy = inputs.dy as TensorInfo;
  const channelsFirst = a.dataFormat === 'NCHW';
  if (channelsFirst) {
    x = toNhwc(x, b);
    dy = toNhwc(dy, b);
  }
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error('Conv2DBackpropFilter (wasm): float32 only');
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], a.filterShape, a.strides, 1, a.pad as never, a.dimRoundingMode, false, 'channelsLast');
  const out = filterGradient(backend, x, dy, info, a.filterShape);
  if (channelsFirst) {
    backend.disposeData(x.dataId);
    backend.disposeData(dy.dataId);
  }
  return out;
};

/** dW for NHWC x and dy by the path the shape (or a pinned `backpropFilterPath`) calls for. */
function filterGradient(
  backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, filterShape: [number, number, number, number],
): TensorInfo {
  const stride1 = info.strideHeight === 1 && info.strideWidth === 1 && info.dilationHeight === 1 && info.dilationWidth === 1;
  const simd = wasmSimdOf(backend);
  const simdApplies = simd !== undefined && stride1 && info.filterHeight === 3 && info.filterWidth === 3 &&
    info.inChannels % 4 === 0 && info.outChannels % 8 === 0;
  const simdPays = info.outChannels <= SIMD_DW_MAX_CHANNELS && info.inChannels <= SIMD_DW_MAX_CHANNELS;
  if (simdApplies && (backpropFilterPath === 'simd' || (backpropFilterPath === 'auto' && simdPays))) {
    return backpropFilterSimd(backend, x, dy, info, simd);
  }
  // Stride 1 beyond the SIMD kernel's range: the nine GEMMs beat the block-copy (taps) path on
  // every U-Net layer measured (up to 1.8×) and tie the per-element im2col on 8×8 planes. The
  // other two stay for strided convolutions (im2col) and for pinning in tests.
  if (stride1 && (backpropFilterPath === 'gemm9' || backpropFilterPath === 'auto')) return backpropFilterNineGemms(backend, x, dy, info);
  if (stride1 && backpropFilterPath === 'taps') return backpropFilterByTaps(backend, x, dy, info);
  return backpropFilterIm2col(backend, x, dy, info, filterShape);
}

/** Any stride or dilation: im2colᵀ built element by element per chunk of output pixels, one GEMM each. */
function backpropFilterIm2col(
  backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, filterShape: [number, number, number, number],
): TensorInfo {
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  const Cout = info.outChannels;
  const M = info.batchSize * info.outHeight * info.outWidth;
  const s = stateFor(backend);
  const out = backend.makeOutput([...filterShape], 'float32');
  const mcMax = Math.max(1, Math.min(M, Math.floor(IM2COL_CHUNK_FLOATS / K)));
  const scratch = scratchFor(backend, s, K * mcMax);
  const partial = M > mcMax ? backend.makeOutput([K * Cout], 'float32') : null;
  for (let m0 = 0; m0 < M; m0 += mcMax) {
    const mc = Math.min(mcMax, M - m0);
    // views are re-made each chunk: any allocation may grow (and so replace) the wasm heap buffer
    const xv = backend.typedArrayFromHeap(x);
    const cols = backend.typedArrayFromHeap({ ...scratch, shape: [K * mc] });
    im2colTransposed(xv, cols, info, m0, mc);
    gemmChunk(backend, s, scratch, dy, { m0, mc, K, Cout }, out, partial);
  }
  if (partial !== null) backend.disposeData(partial.dataId);
  return out;
}

/** The native wasm Conv2DBackpropInput, kept for the cases the flipped-filter trick does not cover. */
let nativeConv2DBackpropInput: KernelConfig | undefined;

const conv2DBackpropInputWasm: KernelFunc = (args) => {
  const { inputs, backend: b, attrs } = args;
  const backend = b as unknown as WasmBackendInternals;
  const a = attrs as unknown as {
    strides: [number, number] | number; pad: 'same' | 'valid' | number | backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; inputShape: [number, number, number, number];
  };
  const dy = inputs.dy as TensorInfo;
  const filter = inputs.filter as TensorInfo;
  const [sh, sw] = typeof a.strides === 'number' ? [a.strides, a.strides] : a.strides;
  if (sh !== 1 || sw !== 1 || a.dataFormat === 'NCHW' || dy.dtype !== 'float32') {
    return nativeConv2DBackpropInput!.kernelFunc(args);
  }
  const info = backend_util.computeConv2DInfo(
    a.inputShape, filter.shape as [number, number, number, number], 1, 1, a.pad as never, a.dimRoundingMode, false,
    'channelsLast');
  const { filterHeight: KH, filterWidth: KW, inChannels: Ci, outChannels: Co } = info;
  // dx = dy ⋆ W' with W'[kh,kw,co,ci] = W[KH-1-kh, KW-1-kw, ci, co] and the complementary padding.
  const flipped = backend.makeOutput([KH, KW, Co, Ci], 'float32');
  const wv = backend.typedArrayFromHeap(filter);
  const fv = backend.typedArrayFromHeap(flipped);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const src = ((KH - 1 - kh) * KW + (KW - 1 - kw)) * Ci * Co;
      const dst = (kh * KW + kw) * Co * Ci;
      for (let ci = 0; ci < Ci; ci++) {
        for (let co = 0; co < Co; co++) fv[dst + co * Ci + ci] = wv[src + ci * Co + co];
      }
    }
  }
  const p = info.padInfo;
  const pad: backend_util.ExplicitPadding = [[0, 0], [KH - 1 - p.top, KH - 1 - p.bottom], [KW - 1 - p.left, KW - 1 - p.right], [0, 0]];
  if (pad.some(([lo, hi]) => lo < 0 || hi < 0)) {
    backend.disposeData(flipped.dataId);
    return nativeConv2DBackpropInput!.kernelFunc(args);
  }
  const dx = runKernel('Conv2D', { x: dy, filter: flipped }, b, {
    strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: a.dimRoundingMode ?? null,
  } as unknown as NamedAttrMap);
  // disposing the flipped filter also drops the XNNPACK operator cached under its id
  backend.disposeData(flipped.dataId);
  if (!util.arraysEqual(dx.shape, a.inputShape)) {
    backend.disposeData(dx.dataId);
    return nativeConv2DBackpropInput!.kernelFunc(args);
  }
  return dx;
};

/**
 * dx[b, argmax of window, c] += dy[b, oh, ow, c], the first maximum winning ties (as the cpu
 * backend and PyTorch do); windows are scanned channel-vectorised to stay cache-friendly in NHWC.
 */
const maxPoolGradWasm: KernelFunc = ({ inputs, backend: b, attrs }) => {
  const backend = b as unknown as WasmBackendInternals;
  const dy = inputs.dy as TensorInfo;
  const input = inputs.input as TensorInfo;
  const a = attrs as unknown as {
    filterSize: [number, number] | number; strides: [number, number] | number; pad: 'same' | 'valid' | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const info = backend_util.computePool2DInfo(
    input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW,
    strideHeight: sh, strideWidth: sw, effectiveFilterHeight: KH, effectiveFilterWidth: KW } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const dx = backend.makeOutput([...input.shape], 'float32');
  const xv = backend.typedArrayFromHeap(input);
  const dyv = backend.typedArrayFromHeap(dy);
  const dxv = backend.typedArrayFromHeap(dx);
  dxv.fill(0);
  const best = new Float32Array(C);
  const where = new Int32Array(C);
  for (let bi = 0; bi < B; bi++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        best.fill(-Infinity);
        where.fill(-1);
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh - pt + kh;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * sw - pl + kw;
            if (iw < 0 || iw >= W) continue;
            const base = ((bi * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xv[base + c];
              if (where[c] < 0 || v > best[c]) {
                best[c] = v;
                where[c] = base + c;
              }
            }
          }
        }
        const o = ((bi * OH + oh) * OW + ow) * C;
        for (let c = 0; c < C; c++) if (where[c] >= 0) dxv[where[c]] += dyv[o + c];
      }
    }
  }
  return dx;
};

/**
 * Registers the training kernels for the 'wasm' backend. Idempotent; safe to call before or after
 * the backend is initialised (kernels are looked up per call).
 */
export function registerWasmTrainingKernels(): void {
  registerFastBatchMatMul();
  registerWasmLayoutKernels();
  if (getKernel(Conv2DBackpropFilter, 'wasm')?.kernelFunc !== conv2DBackpropFilterWasm) {
    if (getKernel(Conv2DBackpropFilter, 'wasm') !== undefined) unregisterKernel(Conv2DBackpropFilter, 'wasm');
    registerKernel({ kernelName: Conv2DBackpropFilter, backendName: 'wasm', kernelFunc: conv2DBackpropFilterWasm });
  }
  if (getKernel(MaxPoolGrad, 'wasm')?.kernelFunc !== maxPoolGradWasm) {
    if (getKernel(MaxPoolGrad, 'wasm') !== undefined) unregisterKernel(MaxPoolGrad, 'wasm');
    registerKernel({ kernelName: MaxPoolGrad, backendName: 'wasm', kernelFunc: maxPoolGradWasm });
  }
  const current = getKernel(Conv2DBackpropInput, 'wasm');
  if (current?.kernelFunc !== conv2DBackpropInputWasm) {
    if (current === undefined) throw new Error('tfjs-backend-wasm has no Conv2DBackpropInput kernel; is @tensorflow/tfjs-backend-wasm loaded?');
    nativeConv2DBackpropInput = current;
    unregisterKernel(Conv2DBackpropInput, 'wasm');
    // keep the native setupFunc: it cwraps the C entry the fallback path calls
    registerKernel({ ...current, kernelFunc: conv2DBackpropInputWasm });
  }
}
