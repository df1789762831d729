/**
 * `Conv2DBackpropFilter` (dW) for the wasm backend, which tfjs-backend-wasm 4.22 lacks (tf.grad of
 * a conv2d filter throws). 3×3 'same' and 1×1 stride 1 (every U-Net convolution): our SIMD
 * kernels, by Winograd F(2×2, 3×3) where the forward goes that way (wasm-conv2d.ts: 3×3, 16 or
 * more channels each way) and the input has 32 channels or more; other stride-1 convolutions: one
 * XNNPACK GEMM per filter tap on shifted views of xᵀ; other strides: im2colᵀ(x) · dy per chunk of
 * pixels.
 *
 * Only the BatchMatMul fast path of the wasm backend uses XNNPACK (no transposes, batch 1; every
 * other case is a naive triple loop), so the GEMMs here are laid out to hit exactly that path,
 * with dy as the "weights" operand.
 */
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { aliasTensor, cKernels, disposeAlias, heapOffset, idOf, runKernel, shapeBytes, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';
import { copyRows } from './wasm-layout-kernels.js';
import { splitWithHelper, wasmSimdOf, type WasmSimd } from './wasm-simd.js';
import { FILTER_GRADIENT_BLOCKS } from './wasm-simd-wat.js';
import { takesWinograd, winogradTilesPerGroup } from './wasm-conv2d.js';
import { WINOGRAD_GRADIENT_BLOCKS } from './wasm-winograd-wat.js';

/**
 * Floats per im2col chunk. 2^21 floats = 8 MiB keeps the scratch buffer and one dy chunk's packed
 * copy inside a typical L2/L3 budget while leaving the GEMM long enough per call; the chunk size
 * in pixels is this divided by the number of filter taps (KH·KW·Cin). The scratch buffer is made
 * per call and freed at its end: malloc hands the same, already touched pages to the next call.
 */
const IM2COL_CHUNK_FLOATS = 1 << 21;

/**
 * Input floats per pixel chunk of the SIMD kernel: 32 KiB of x, which stays in the first-level
 * cache while every block of the chunk reads it (the chunk is at least 64 pixels).
 */
const DW_CHUNK_INPUT_FLOATS = 8192;

function toNhwc(t: TensorInfo, backend: object): TensorInfo {
  return runKernel('Transpose', { x: t }, backend, { perm: [0, 2, 3, 1] });
}

/**
 * dW [K, Cout] = colsᵀ [K, M] · dy [M, Cout], with colsᵀ built `fill`ed chunk by chunk of output
 * pixels into a scratch buffer made for this call: chunk [m0, m0+mc) is colsᵀ-chunk [K, mc] · dy
 * rows [m0, m0+mc) [mc, Cout]. The first chunk writes `out` directly, later ones go through a
 * partial product that is added in. `xs` is the tensor `fill` reads, handed to it as a fresh view.
 */
function im2colGemm(
  backend: WasmBackendInternals,
  xs: TensorInfo,
  dy: TensorInfo,
  c: { M: number; K: number; Cout: number; outShape: number[] },
  fill: (xv: Float32Array, cols: Float32Array, m0: number, mc: number) => void,
): TensorInfo {
  const { M, K, Cout } = c;
  const { matMul } = cKernels(backend);
  const out = backend.makeOutput([...c.outShape], 'float32');
  const mcMax = Math.max(1, Math.min(M, Math.floor(IM2COL_CHUNK_FLOATS / K)));
  const scratch = backend.makeOutput([K * mcMax], 'float32');
  const partial = M > mcMax ? backend.makeOutput([K * Cout], 'float32') : null;
  for (let m0 = 0; m0 < M; m0 += mcMax) {
    const mc = Math.min(mcMax, M - m0);
    // views are re-made each chunk: any allocation may grow (and so replace) the wasm heap buffer
    fill(backend.typedArrayFromHeap(xs), backend.typedArrayFromHeap({ ...scratch, shape: [K * mc] }), m0, mc);
    const dyChunk = aliasTensor(backend, dy, m0 * Cout, [1, mc, Cout]);
    const target = m0 === 0 ? idOf(backend, out) : idOf(backend, partial!);
    matMul(idOf(backend, scratch), shapeBytes([1, K, mc]), 3, idOf(backend, dyChunk), shapeBytes([1, mc, Cout]), 3, false, false, target);
    disposeAlias(backend, dyChunk);
    if (m0 !== 0) {
      const acc = backend.typedArrayFromHeap(out);
      const p = backend.typedArrayFromHeap({ ...partial!, shape: [K * Cout] });
      for (let i = 0; i < acc.length; i++) acc[i] += p[i];
    }
  }
  if (partial !== null) backend.disposeData(partial.dataId);
  backend.disposeData(scratch.dataId);
  return out;
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

/**
 * An NHWC tensor with zeros around its images ([before, after] images, rows and columns): a fresh
 * zeroed tensor and each input image's rows copied in (copyRows: wasm SIMD when a row's floats
 * are a multiple of 4). The backend's PadV2 took 5 ms for [8,128,128,8], longer than our
 * two-thread filter gradient of that layer.
 */
function zeroPadNhwc(backend: WasmBackendInternals, t: TensorInfo, pad: [[number, number], [number, number], [number, number]]): TensorInfo {
  const [B, H, W, C] = t.shape;
  const [Bp, Hp, Wp] = [B + pad[0][0] + pad[0][1], H + pad[1][0] + pad[1][1], W + pad[2][0] + pad[2][1]];
  const out = backend.makeOutput([Bp, Hp, Wp, C], 'float32');
  backend.typedArrayFromHeap(out).fill(0);
  for (let b = 0; b < B; b++) {
    copyRows(backend, t, b * H * W * C, W * C, out, (((b + pad[0][0]) * Hp + pad[1][0]) * Wp + pad[2][0]) * C, Wp * C, H, W * C);
  }
  return out;
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
    : zeroPadNhwc(backend, dy, [[0, 0], [0, Hp - info.outHeight], [0, Wp - info.outWidth]]);
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
  const extra = KH > 1 || KW > 1 ? 1 : 0;
  const L = (B + extra) * Hp * Wp;
  const xpad = zeroPadNhwc(backend, x, [[0, extra], [pt, pb], [pl, pr]]);
  const xpadFlat = aliasTensor(backend, xpad, 0, [L, Cin]);
  const xT = runKernel('Transpose', { x: xpadFlat }, backend, { perm: [1, 0] });
  disposeAlias(backend, xpadFlat);
  backend.disposeData(xpad.dataId);
  const dyGrid = dyOnGrid(backend, dy, info, Hp, Wp);

  const out = im2colGemm(backend, xT, dyGrid, { M: Mg, K, Cout, outShape: [KH, KW, Cin, Cout] }, (xv, cols, m0, mc) => {
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const off = kh * Wp + kw + m0;
        const row0 = (kh * KW + kw) * Cin;
        for (let ci = 0; ci < Cin; ci++) cols.set(xv.subarray(ci * L + off, ci * L + off + mc), (row0 + ci) * mc);
      }
    }
  });
  backend.disposeData(xT.dataId);
  if (dyGrid !== dy) backend.disposeData(dyGrid.dataId);
  return out;
}

/**
 * dW of a 3×3 'same' or a 1×1 stride-1 convolution with our SIMD kernels (dw_3x3_RxC,
 * dw_1x1_RxC in wasm-simd-wat.ts): per block of input × output channels and per tap, the
 * accumulators stay in registers while the kernel runs over the pixels whose tap input lies in
 * the image, chunk of rows by chunk of rows, writing dW in its final [K, K, Cin, Cout] layout. x and dy are read where they lie: no
 * padded copies, no im2col buffer, no GEMM packing; with the helper thread both cores.
 */
function backpropFilterSimd(
  backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, simd: WasmSimd, block: number,
): TensorInfo {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: Cin, outChannels: Cout, filterHeight: K } = info;
  const [r, c] = FILTER_GRADIENT_BLOCKS[block];
  const out = backend.makeOutput([K, K, Cin, Cout], 'float32');
  backend.typedArrayFromHeap(out).fill(0);
  const [x0, dy0, out0] = [heapOffset(backend, x), heapOffset(backend, dy), heapOffset(backend, out)];
  const [kernel, args] = K === 3
    ? [`dw_3x3_${r}x${c}` as const, [x0, dy0, B * H, H, W, Cin, Cout, out0]]
    : [`dw_1x1_${r}x${c}` as const, [x0, dy0, B * H, W, Cin, Cout, out0]];
  const chunkRows = Math.ceil(Math.max(64, DW_CHUNK_INPUT_FLOATS / Cin) / W);
  // Blocks are (tap, input block, output block); with the helper thread it takes the second half.
  const blocks = K * K * (Cin / r) * (Cout / c);
  splitWithHelper(simd, blocks, kernel, args, (from, to) => (simd.exports[kernel] as (...a: number[]) => void)(...args, from, to, chunkRows),
    { after: [chunkRows] });
  return out;
}

/**
 * Bytes of transformed input and dy per group of tiles of the Winograd filter gradient. Larger
 * than the forward's: every group adds into all 16·cin·cout sums, so fewer groups mean fewer
 * passes over them. Settable for benchmarks and tests.
 */
export const WINOGRAD_GRADIENT_GROUP_BYTES = 512 * 1024;

/**
 * The filter gradient goes by Winograd where the forward does and the input has at least this many
 * channels: with 16 its transforms cost more than they save on the large planes (0.7–0.9× on
 * 256² and 128² planes of 16 channels, bench/results/winograd-*.json).
 */
export const WINOGRAD_GRADIENT_MIN_INPUT_CHANNELS = 32;
let winogradGradientGroupBytes = WINOGRAD_GRADIENT_GROUP_BYTES;

export function setWinogradGradientGroupBytes(bytes = WINOGRAD_GRADIENT_GROUP_BYTES): void {
  winogradGradientGroupBytes = bytes;
}

/**
 * dW of a wide 3×3 'same' stride-1 convolution by Winograd F(2×2, 3×3) (wino_dw_RxC in
 * wasm-winograd-wat.ts): the tiles' transformed inputs times their transformed output gradients,
 * summed per element ξ of the 4×4 tile over all tiles, then Gᵀ · G. The tiles are summed in two
 * fixed halves (the helper thread takes the second), added at the end, so the bits do not depend
 * on the threads.
 */
function backpropFilterWinograd(backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, simd: WasmSimd): TensorInfo {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: Cin, outChannels: Cout } = info;
  const [r, c] = WINOGRAD_GRADIENT_BLOCKS.find(([r, c]) => Cin % r === 0 && Cout % c === 0)!;
  const out = backend.makeOutput([3, 3, Cin, Cout], 'float32');
  const tiles = B * Math.ceil(H / 2) * Math.ceil(W / 2);
  const perGroup = winogradTilesPerGroup(16 * (Cin + Cout), winogradGradientGroupBytes);
  const scratchFloats = 16 * perGroup * (Cin + Cout);
  const sums = backend.makeOutput([2, 16, Cin, Cout], 'float32');
  const scratch = backend.makeOutput([2, scratchFloats], 'float32');
  try {
    const [x0, dy0, sums0, s0] = [heapOffset(backend, x), heapOffset(backend, dy), heapOffset(backend, sums), heapOffset(backend, scratch)];
    const kernel = `wino_dw_${r}x${c}` as const;
    const args = [x0, dy0, sums0, H, W, Cin, Cout, tiles, perGroup];
    splitWithHelper(simd, 2, kernel, args, (from, to) => (simd.exports[kernel] as (...a: number[]) => void)(...args, from, to, s0),
      { after: [s0 + 4 * scratchFloats] });
    simd.exports.wino_filter_grad(sums0, sums0 + 4 * 16 * Cin * Cout, heapOffset(backend, out), Cin, Cout, 0, (Cin * Cout) / 4);
  } finally {
    backend.disposeData(sums.dataId);
    backend.disposeData(scratch.dataId);
  }
  return out;
}

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
  const { matMul, transpose } = cKernels(backend);
  const xpad = zeroPadNhwc(backend, x, [[0, 0], [pt, pb], [pl, pr]]);
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
      matMul(idOf(backend, a), shapeBytes([1, Cin, Mg]), 3, idOf(backend, dyGrid), shapeBytes([1, Mg, Cout]), 3, false, false, idOf(backend, o));
      disposeAlias(backend, a);
      disposeAlias(backend, o);
    }
  }
  backend.disposeData(xT.dataId);
  if (dyGrid !== dy) backend.disposeData(dyGrid.dataId);
  return out;
}

/** Which dW algorithm runs; 'auto' picks per shape (see `filterGradient`). Tests and benches pin each one. */
export type FilterGradientPath = 'auto' | 'winograd' | 'simd' | 'gemm9' | 'taps' | 'im2col';

const kernels = new Map<FilterGradientPath, KernelFunc>();

/** The Conv2DBackpropFilter kernel that computes dW by `path` (one function per path, so it can be registered and compared). */
export function conv2DBackpropFilterKernel(path: FilterGradientPath = 'auto'): KernelFunc {
  let k = kernels.get(path);
  if (k === undefined) {
    k = ({ inputs, backend: b, attrs }) => {
      const backend = wasmInternals(b);
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
      const out = filterGradient(backend, x, dy, info, a.filterShape, path);
      if (channelsFirst) {
        backend.disposeData(x.dataId);
        backend.disposeData(dy.dataId);
      }
      return out;
    };
    kernels.set(path, k);
  }
  return k;
}

/** dW for NHWC x and dy by the path the shape (or a pinned `path`) calls for. */
function filterGradient(
  backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, filterShape: [number, number, number, number],
  path: FilterGradientPath,
): TensorInfo {
  const stride1 = info.strideHeight === 1 && info.strideWidth === 1 && info.dilationHeight === 1 && info.dilationWidth === 1;
  const simd = wasmSimdOf(backend);
  const { top, bottom, left, right } = info.padInfo;
  const k = info.filterHeight;
  const samePadding = [top, bottom, left, right].every((p) => p === (k - 1) / 2);
  // the largest channel blocks that divide the channels
  const block = FILTER_GRADIENT_BLOCKS.findIndex(([r, c]) => info.inChannels % r === 0 && info.outChannels % c === 0);
  const winograd = (path === 'winograd' || (path === 'auto' && takesWinograd(info.inChannels, info.outChannels) && info.inChannels >= WINOGRAD_GRADIENT_MIN_INPUT_CHANNELS)) &&
    info.inChannels % 4 === 0 && info.outChannels % 4 === 0;
  if (simd !== undefined && stride1 && samePadding && k === 3 && info.filterWidth === 3 && winograd) {
    return backpropFilterWinograd(backend, x, dy, info, simd);
  }
  if (simd !== undefined && stride1 && samePadding && (k === 3 || k === 1) && info.filterWidth === k && block >= 0 &&
    (path === 'simd' || path === 'auto')) {
    return backpropFilterSimd(backend, x, dy, info, simd, block);
  }
  // Stride 1 beyond the SIMD kernel's range: the nine GEMMs beat the block-copy (taps) path on
  // every U-Net layer measured (up to 1.8×) and tie the per-element im2col on 8×8 planes. The
  // other two stay for strided convolutions (im2col) and for pinning in tests.
  if (stride1 && (path === 'gemm9' || path === 'auto')) return backpropFilterNineGemms(backend, x, dy, info);
  if (stride1 && path === 'taps') return backpropFilterByTaps(backend, x, dy, info);
  return backpropFilterIm2col(backend, x, dy, info, filterShape);
}

/** Any stride or dilation: im2colᵀ built element by element per chunk of output pixels, one GEMM each. */
function backpropFilterIm2col(
  backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo, filterShape: [number, number, number, number],
): TensorInfo {
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  const M = info.batchSize * info.outHeight * info.outWidth;
  return im2colGemm(backend, x, dy, { M, K, Cout: info.outChannels, outShape: filterShape },
    (xv, cols, m0, mc) => im2colTransposed(xv, cols, info, m0, mc));
}

