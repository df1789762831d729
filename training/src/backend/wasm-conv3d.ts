/**
 * `Conv3D` and `Conv3DBackpropFilterV2` for the wasm backend, for the one case the VNet trains
 * with (vnet3d.ts `sameConv`): NDHWC float32, stride 1, dilation 1, odd cubic kernel, 'same'
 * zero padding. tfjs-backend-wasm 4.22 runs both as direct C loops (minutes per 3D training
 * step); here they are XNNPACK matrix products on shifted views of a zero-padded copy of the
 * input, chunked along depth so the temporaries stay bounded. Every other case goes to the
 * backend's own kernel (kept by `replaceWasmKernel`). The input gradient needs no kernel of its
 * own: `sameConv` computes it as a forward Conv3D with the flipped filter.
 *
 * Layout shared by both kernels. The volume is cut into segments (one batch entry, a run of
 * depth planes). A segment of dc output planes is laid out as a zero-padded slab of dc + 2p
 * planes of Hp × Wp voxels (p = (k − 1) / 2, Hp = H + 2p, Wp = W + 2p). On that grid, output
 * voxel j (anchored at the slab's corner) sees, through tap (kd, kh, kw), slab voxel
 * j + kd·Hp·Wp + kh·Wp + kw: every tap is a fixed shift. Segments of one chunk are stacked
 * plane after plane, so a chunk is one grid too.
 */
import { Conv3D, Conv3DBackpropFilterV2, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import {
  aliasTensor, cKernels, disposeAlias, heapOffset, idOf, nativeKernel, shapeBytes, wasmHeapMemory, wasmInternals, type WasmBackendInternals,
} from './wasm-internals.js';
import { wasmSimdOf } from './wasm-simd.js';

/**
 * Floats of temporaries (padded slab, im2col rows or transposed slab, dy on the grid, XNNPACK's
 * packed copy) one chunk may take: 2^24 floats = 64 MiB, small next to the 4 GB heap and the
 * activations a 48³ training step keeps, large enough that a chunk's GEMM is long.
 */
const DEFAULT_CHUNK_FLOATS = 1 << 24;
let chunkFloats = DEFAULT_CHUNK_FLOATS;

/**
 * Sets the per-chunk temporary budget (floats) and returns the previous one. Tests shrink it to
 * force depth chunking on small volumes; nothing else should need to.
 */
export function setConv3dChunkFloats(floats: number): number {
  const previous = chunkFloats;
  chunkFloats = floats;
  return previous;
}

/**
 * Up to this many input and output channels the filter gradient runs on our SIMD kernel
 * (one pass per tap and 4×8 channel block, accumulators in registers); above, 27 XNNPACK GEMMs
 * win. Measured on the recipe's layers by bench/conv3d-kernels.ts, as for 2D (wasm-conv-filter-gradient.ts).
 */
const SIMD_DW_MAX_CHANNELS = 16;

/** Which filter-gradient algorithm runs; 'auto' picks per shape. Tests and the bench pin each one. */
export type Conv3dFilterGradientPath = 'auto' | 'simd' | 'gemm';
let filterGradientPath: Conv3dFilterGradientPath = 'auto';

/** Pins the filter-gradient algorithm (tests, bench) and returns the previous choice. */
export function setConv3dFilterGradientPath(path: Conv3dFilterGradientPath): Conv3dFilterGradientPath {
  const previous = filterGradientPath;
  filterGradientPath = path;
  return previous;
}

/**
 * From this run length (floats) on, an im2col run is copied by copyWithin; shorter runs (1 to 4
 * input channels) by a plain loop, which beats the call's overhead there (measured at 48³: Cin 1
 * loop 9 ms vs copyWithin 16 ms per 1.2 M floats; Cin 8 46 vs 28 ms; Cin 32 106 vs 25 ms).
 */
const COPY_WITHIN_MIN_FLOATS = 16;

/** Shape of one stride-1 'same' convolution, and its padded grid. */
interface Geometry {
  B: number; D: number; H: number; W: number; Cin: number; Cout: number;
  /** Kernel side (odd). */
  k: number;
  /** Padding on each side: (k − 1) / 2. */
  p: number;
  Hp: number; Wp: number;
  /** Voxels per padded plane, Hp·Wp. */
  plane: number;
  /** Largest tap shift, (k − 1)·(plane + Wp + 1) voxels. */
  maxShift: number;
}

/** One batch entry's output planes [d0, d0 + dc), laid out as dc + 2p padded planes. */
interface Segment { b: number; d0: number; dc: number }

interface Chunk {
  segments: Segment[];
  /** Padded planes of the chunk's grid, Σ (dc + 2p). */
  planes: number;
  /** Output voxels, Σ dc·H·W. */
  outVoxels: number;
  /** Index of the chunk's first output voxel in [B, D, H, W]: segments follow each other in that order. */
  firstVoxel: number;
}

function geometry(xShape: number[], k: number, cout: number): Geometry {
  const [B, D, H, W, Cin] = xShape;
  const p = (k - 1) / 2;
  const Hp = H + 2 * p;
  const Wp = W + 2 * p;
  const plane = Hp * Wp;
  return { B, D, H, W, Cin, Cout: cout, k, p, Hp, Wp, plane, maxShift: (k - 1) * (plane + Wp + 1) };
}

/**
 * Cuts [B, D] into chunks of at most `maxPlanes` padded planes (never fewer than one output
 * plane per segment), greedily in output order.
 */
function planChunks(g: Geometry, maxPlanes: number): Chunk[] {
  const chunks: Chunk[] = [];
  const limit = Math.max(maxPlanes, 2 * g.p + 1);
  let cur: Chunk = { segments: [], planes: 0, outVoxels: 0, firstVoxel: 0 };
  for (let b = 0; b < g.B; b++) {
    for (let d0 = 0; d0 < g.D;) {
      const room = limit - cur.planes - 2 * g.p;
      if (room < 1) {
        chunks.push(cur);
        cur = { segments: [], planes: 0, outVoxels: 0, firstVoxel: (b * g.D + d0) * g.H * g.W };
        continue;
      }
      const dc = Math.min(g.D - d0, room);
      cur.segments.push({ b, d0, dc });
      cur.planes += dc + 2 * g.p;
      cur.outVoxels += dc * g.H * g.W;
      d0 += dc;
    }
  }
  if (cur.segments.length > 0) chunks.push(cur);
  return chunks;
}

/**
 * Writes the chunk's zero-padded input slab [planes·plane (+ tail), Cin] into `slab`: each
 * segment's planes d0 − p … d0 + dc + p − 1 of x, zero outside the volume and in the border.
 */
function fillSlab(g: Geometry, xv: Float32Array, slab: Float32Array, chunk: Chunk): void {
  const { D, H, W, Cin, p, Wp, plane } = g;
  slab.fill(0);
  const rowFloats = W * Cin;
  let base = 0;
  for (const { b, d0, dc } of chunk.segments) {
    for (let s = 0; s < dc + 2 * p; s++) {
      const d = d0 - p + s;
      if (d >= 0 && d < D) {
        for (let h = 0; h < H; h++) {
          const src = ((b * D + d) * H + h) * rowFloats;
          slab.set(xv.subarray(src, src + rowFloats), (base + s * plane + (h + p) * Wp + p) * Cin);
        }
      }
    }
    base += (dc + 2 * p) * plane;
  }
}

/** Byte-free shift of tap (kd, kh, kw) on the padded grid, in voxels. */
const tapShift = (g: Geometry, kd: number, kh: number, kw: number): number => kd * g.plane + kh * g.Wp + kw;

/** The attributes the fast path needs, or null when the backend's own kernel must run. */
function fastCase(
  x: TensorInfo, other: TensorInfo, filterShape: number[], strides: unknown, pad: unknown, dilations: unknown, dataFormat: unknown,
): number | null {
  const ones = (v: unknown) => v === undefined || v === null || v === 1 || (Array.isArray(v) && v.every((e) => e === 1));
  const [kd, kh, kw] = filterShape;
  const ok = x.dtype === 'float32' && other.dtype === 'float32' && x.shape.length === 5 && filterShape.length === 5 &&
    ones(strides) && ones(dilations) && pad === 'same' && (dataFormat === undefined || dataFormat === 'NDHWC') &&
    kd === kh && kh === kw && kd % 2 === 1;
  return ok ? kd : null;
}

/**
 * Forward: per chunk, the im2col rows of the chunk's output voxels [voxels, k³·Cin] (row j is
 * the k² runs of k·Cin contiguous slab floats its taps read: neighbouring kw taps are
 * neighbouring voxels) and one XNNPACK GEMM against the filter [k³·Cin, Cout], written straight
 * into the output rows. The filter is one alias for the whole call, so XNNPACK packs it once.
 */
function conv3dIm2col(backend: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, g: Geometry): TensorInfo {
  const { H, W, Cin, Cout, k, p, Wp, plane } = g;
  const rowLen = k * k * k * Cin;
  const runLen = k * Cin;
  const out = backend.makeOutput([g.B, g.D, H, W, Cout], 'float32');
  const perPlane = plane * Cin + H * W * (rowLen + Cout);
  const chunks = planChunks(g, Math.floor(chunkFloats / perPlane));
  const maxPlanes = Math.max(...chunks.map((c) => c.planes));
  const maxRows = Math.max(...chunks.map((c) => c.outVoxels));
  // Slab and rows both on the heap, so a run is one copyWithin (a native memmove) on one view.
  const slab = backend.makeOutput([maxPlanes * plane * Cin + g.maxShift * Cin], 'float32');
  const cols = backend.makeOutput([maxRows * rowLen], 'float32');
  const { matMul } = cKernels(backend);
  const weights = aliasTensor(backend, filter, 0, [1, rowLen, Cout]);
  const slab0 = heapOffset(backend, slab) / 4;
  const cols0 = heapOffset(backend, cols) / 4;
  for (const chunk of chunks) {
    fillSlab(g, backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(slab), chunk);
    // one view of the whole heap, re-made per chunk: an allocation may have replaced its buffer
    const heap = new Float32Array(wasmHeapMemory(backend).buffer);
    let j = 0;
    let base = 0;
    for (const { dc } of chunk.segments) {
      for (let od = 0; od < dc; od++) {
        for (let oh = 0; oh < H; oh++) {
          for (let ow = 0; ow < W; ow++, j++) {
            const voxel = base + od * plane + oh * Wp + ow;
            let dst = cols0 + j * rowLen;
            for (let kd = 0; kd < k; kd++) {
              for (let kh = 0; kh < k; kh++) {
                const src = slab0 + (voxel + kd * plane + kh * Wp) * Cin;
                if (runLen >= COPY_WITHIN_MIN_FLOATS) heap.copyWithin(dst, src, src + runLen);
                else for (let e = 0; e < runLen; e++) heap[dst + e] = heap[src + e];
                dst += runLen;
              }
            }
          }
        }
      }
      base += (dc + 2 * p) * plane;
    }
    const rows = chunk.outVoxels;
    const a = aliasTensor(backend, cols, 0, [1, rows, rowLen]);
    const o = aliasTensor(backend, out, chunk.firstVoxel * Cout, [1, rows, Cout]);
    matMul(idOf(backend, a), shapeBytes([1, rows, rowLen]), 3, idOf(backend, weights), shapeBytes([1, rowLen, Cout]), 3, false, false, idOf(backend, o));
    disposeAlias(backend, a);
    disposeAlias(backend, o);
  }
  // disposing the alias also drops the XNNPACK weights packed under its id
  disposeAlias(backend, weights);
  backend.disposeData(cols.dataId);
  backend.disposeData(slab.dataId);
  return out;
}

/**
 * Forward for few output channels (the input gradient of the first layer, 8 → 1):
 * the im2col copy of k³·Cin floats per voxel would cost more than the product. Instead each tap
 * is one GEMM of the shifted slab view [G, Cin] (nothing copied) with the tap's [Cin, Cout]
 * filter, summed over the chunk's whole grid (k³ passes over G·Cout floats, few when Cout is
 * small); the valid rows are then copied into the output.
 */
function conv3dShiftedTaps(backend: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, g: Geometry): TensorInfo {
  const { H, W, Cin, Cout, k, p, Wp, plane } = g;
  const out = backend.makeOutput([g.B, g.D, H, W, Cout], 'float32');
  const chunks = planChunks(g, Math.floor(chunkFloats / (plane * (Cin + 2 * Cout))));
  const maxGrid = Math.max(...chunks.map((c) => c.planes)) * plane;
  const slab = backend.makeOutput([(maxGrid + g.maxShift) * Cin], 'float32');
  const acc = backend.makeOutput([maxGrid * Cout], 'float32');
  const partial = backend.makeOutput([maxGrid * Cout], 'float32');
  const { matMul } = cKernels(backend);
  const [acc0, partial0, out0] = [acc, partial, out].map((t) => heapOffset(backend, t) / 4);
  for (const chunk of chunks) {
    const G = chunk.planes * plane;
    fillSlab(g, backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(slab), chunk);
    for (let kd = 0, t = 0; kd < k; kd++) {
      for (let kh = 0; kh < k; kh++) {
        for (let kw = 0; kw < k; kw++, t++) {
          const a = aliasTensor(backend, slab, tapShift(g, kd, kh, kw) * Cin, [1, G, Cin]);
          // a fresh weights id per tap and chunk: XNNPACK caches what it packed under the id
          const w = aliasTensor(backend, filter, t * Cin * Cout, [1, Cin, Cout]);
          const o = aliasTensor(backend, t === 0 ? acc : partial, 0, [1, G, Cout]);
          matMul(idOf(backend, a), shapeBytes([1, G, Cin]), 3, idOf(backend, w), shapeBytes([1, Cin, Cout]), 3, false, false, idOf(backend, o));
          for (const alias of [a, w, o]) disposeAlias(backend, alias);
          if (t > 0) {
            const heap = new Float32Array(wasmHeapMemory(backend).buffer);
            for (let i = 0, n = G * Cout; i < n; i++) heap[acc0 + i] += heap[partial0 + i];
          }
        }
      }
    }
    const heap = new Float32Array(wasmHeapMemory(backend).buffer);
    let dst = out0 + chunk.firstVoxel * Cout;
    let base = 0;
    for (const { dc } of chunk.segments) {
      for (let od = 0; od < dc; od++) {
        for (let oh = 0; oh < H; oh++, dst += W * Cout) {
          const src = acc0 + (base + od * plane + oh * Wp) * Cout;
          heap.copyWithin(dst, src, src + W * Cout);
        }
      }
      base += (dc + 2 * p) * plane;
    }
  }
  for (const t of [slab, acc, partial]) backend.disposeData(t.dataId);
  return out;
}

/**
 * The shifted-taps forward runs when Cout ≤ Cin / 8. Measured at 2×48³, one thread, CPU ms
 * (median of 4, loaded machine): 8 → 1 taps 113 vs im2col 160; 16 → 8 taps 315 vs 224;
 * 32 → 8 taps 327 vs 273. XNNPACK's output tiles are 8 channels wide, so each tap's GEMM costs
 * the same for Cout 1 to 8, and only a narrow output saves the im2col copy.
 */
const TAPS_MAX_COUT_SHARE = 8;

/** Which forward algorithm runs; 'auto' picks per shape. Tests and the bench pin each one. */
export type Conv3dForwardPath = 'auto' | 'im2col' | 'taps';
let forwardPath: Conv3dForwardPath = 'auto';

/** Pins the forward algorithm (tests, bench) and returns the previous choice. */
export function setConv3dForwardPath(path: Conv3dForwardPath): Conv3dForwardPath {
  const previous = forwardPath;
  forwardPath = path;
  return previous;
}

function conv3dSame(backend: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, k: number): TensorInfo {
  const g = geometry(x.shape, k, filter.shape[4]);
  const taps = forwardPath === 'taps' || (forwardPath === 'auto' && g.Cout * TAPS_MAX_COUT_SHARE <= g.Cin);
  return taps ? conv3dShiftedTaps(backend, x, filter, g) : conv3dIm2col(backend, x, filter, g);
}

/** dy of the chunk's output voxels on its grid [planes·plane, Cout], zero on the grid's padding. */
function fillDyGrid(g: Geometry, dyv: Float32Array, grid: Float32Array, chunk: Chunk): void {
  const { D, H, W, Cout, p, Wp, plane } = g;
  grid.fill(0);
  const rowFloats = W * Cout;
  let base = 0;
  for (const { b, d0, dc } of chunk.segments) {
    for (let od = 0; od < dc; od++) {
      for (let oh = 0; oh < H; oh++) {
        const src = ((b * D + d0 + od) * H + oh) * rowFloats;
        grid.set(dyv.subarray(src, src + rowFloats), (base + od * plane + oh * Wp) * Cout);
      }
    }
    base += (dc + 2 * p) * plane;
  }
}

/**
 * Filter gradient: dW[t] = Σ_j slab[j + shift_t]ᵀ · dy_grid[j] over every chunk's grid voxels
 * (dy is zero on the grid's padding, so those voxels add nothing).
 *
 * GEMM path: the slab is transposed once per chunk to [Cin, G] (C Transpose); tap t's operand
 * [Cin, G] starts shift_t floats into it. Its rows run into the next channel's row for their
 * last shift_t columns, but those are grid voxels in the last segment's padding, where dy is
 * zero (a zeroed tail keeps the last row finite), so each tap is one GEMM on a view with
 * nothing copied, dy [G, Cout] shared by the 27 products (packed once per chunk).
 * SIMD path (channels in 4s and 8s): per tap and 4×8 channel block one pass over the row-major
 * slab and dy (wasm-simd-wat.ts `dw_tap_4x8`, as for 2D), no packing, one thread.
 * The first chunk writes dW directly; later chunks write a partial that is added in.
 */
function conv3dFilterGradientSame(backend: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, k: number): TensorInfo {
  const g = geometry(x.shape, k, dy.shape[4]);
  const { Cin, Cout, plane } = g;
  const taps = k * k * k;
  const simd = wasmSimdOf(backend);
  const simdApplies = simd !== undefined && Cin % 4 === 0 && Cout % 8 === 0;
  const simdPays = Cin <= SIMD_DW_MAX_CHANNELS && Cout <= SIMD_DW_MAX_CHANNELS;
  const useSimd = simdApplies && (filterGradientPath === 'simd' || (filterGradientPath === 'auto' && simdPays));
  // slab + its transpose (GEMM) + dy grid + XNNPACK's packed dy
  const perPlane = plane * (useSimd ? Cin + Cout : 2 * Cin + 2 * Cout);
  const chunks = planChunks(g, Math.floor(chunkFloats / perPlane));
  const maxGrid = Math.max(...chunks.map((c) => c.planes)) * plane;
  const tail = g.maxShift + 1;
  const out = backend.makeOutput([k, k, k, Cin, Cout], 'float32');
  const partial = chunks.length > 1 ? backend.makeOutput([taps * Cin * Cout], 'float32') : null;
  const slab = backend.makeOutput([(maxGrid + tail) * Cin], 'float32');
  const slabT = useSimd ? null : backend.makeOutput([maxGrid * Cin + tail], 'float32');
  const dyGrid = backend.makeOutput([maxGrid * Cout], 'float32');
  const { matMul, transpose } = cKernels(backend);
  chunks.forEach((chunk, n) => {
    const G = chunk.planes * plane;
    // views are re-made per chunk: an allocation may have grown (replaced) the heap's buffer
    fillSlab(g, backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(slab), chunk);
    fillDyGrid(g, backend.typedArrayFromHeap(dy), backend.typedArrayFromHeap(dyGrid), chunk);
    const target = n === 0 ? out : partial!;
    if (useSimd) {
      const [xo, dyo, to] = [heapOffset(backend, slab), heapOffset(backend, dyGrid), heapOffset(backend, target)];
      for (let kd = 0, t = 0; kd < k; kd++) {
        for (let kh = 0; kh < k; kh++) {
          for (let kw = 0; kw < k; kw++, t++) {
            const shift = tapShift(g, kd, kh, kw);
            for (let ci = 0; ci < Cin; ci += 4) {
              for (let co = 0; co < Cout; co += 8) {
                simd!.exports.dw_tap_4x8(xo + (shift * Cin + ci) * 4, dyo + co * 4, G, Cin, Cout, to + ((t * Cin + ci) * Cout + co) * 4);
              }
            }
          }
        }
      }
    } else {
      const slabRows = aliasTensor(backend, slab, 0, [G, Cin]);
      const slabCols = aliasTensor(backend, slabT!, 0, [Cin, G]);
      transpose(idOf(backend, slabRows), shapeBytes([G, Cin]), 2, 0 /* float32 */, idOf(backend, slabCols), shapeBytes([1, 0]), 2);
      disposeAlias(backend, slabRows);
      disposeAlias(backend, slabCols);
      backend.typedArrayFromHeap(slabT!).fill(0, G * Cin, G * Cin + tail);
      // a fresh id per chunk: XNNPACK caches the packed weights (here dy) under the id
      const dyChunk = aliasTensor(backend, dyGrid, 0, [1, G, Cout]);
      for (let kd = 0, t = 0; kd < k; kd++) {
        for (let kh = 0; kh < k; kh++) {
          for (let kw = 0; kw < k; kw++, t++) {
            const a = aliasTensor(backend, slabT!, tapShift(g, kd, kh, kw), [1, Cin, G]);
            const o = aliasTensor(backend, target, t * Cin * Cout, [1, Cin, Cout]);
            matMul(idOf(backend, a), shapeBytes([1, Cin, G]), 3, idOf(backend, dyChunk), shapeBytes([1, G, Cout]), 3, false, false, idOf(backend, o));
            disposeAlias(backend, a);
            disposeAlias(backend, o);
          }
        }
      }
      disposeAlias(backend, dyChunk);
    }
    if (n > 0) {
      const acc = backend.typedArrayFromHeap(out);
      const pv = backend.typedArrayFromHeap(partial!);
      for (let i = 0; i < acc.length; i++) acc[i] += pv[i];
    }
  });
  for (const t of [partial, slab, slabT, dyGrid]) if (t !== null) backend.disposeData(t.dataId);
  return out;
}

/** Replaces the wasm Conv3D (see replaceWasmKernel); the backend's own runs every case but the VNet's. */
export const conv3dWasm: KernelFunc = (args) => {
  const { inputs, backend: b, attrs } = args;
  const x = inputs.x as TensorInfo;
  const filter = inputs.filter as TensorInfo;
  const a = attrs as unknown as { strides: unknown; pad: unknown; dilations: unknown; dataFormat?: unknown };
  const k = fastCase(x, filter, filter.shape, a.strides, a.pad, a.dilations, a.dataFormat);
  if (k === null || filter.shape[3] !== x.shape[4]) return nativeKernel(Conv3D, args);
  return conv3dSame(wasmInternals(b), x, filter, k);
};

/** Replaces the wasm Conv3DBackpropFilterV2; the backend's own runs every case but the VNet's. */
export const conv3dBackpropFilterWasm: KernelFunc = (args) => {
  const { inputs, backend: b, attrs } = args;
  const x = inputs.x as TensorInfo;
  const dy = inputs.dy as TensorInfo;
  const a = attrs as unknown as { strides: unknown; pad: unknown; filterShape: number[] };
  const k = fastCase(x, dy, a.filterShape, a.strides, a.pad, undefined, undefined);
  const shapesAgree = k !== null && a.filterShape[3] === x.shape[4] && a.filterShape[4] === dy.shape[4] &&
    dy.shape.slice(0, 4).every((n, i) => n === x.shape[i]);
  if (!shapesAgree) return nativeKernel(Conv3DBackpropFilterV2, args);
  return conv3dFilterGradientSame(wasmInternals(b), x, dy, k);
};
