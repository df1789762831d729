/**
 * `Conv2D` and `FusedConv2D` (bias, no activation) on the wasm backend for the U-Net's cases —
 * stride 1, dilation 1, NHWC float32, output channels in 4s, and either 3×3 with one pixel of zero
 * padding on each side or 1×1 without — by our SIMD kernels; everything else keeps the backend's
 * own kernel. Conv2DBackpropInput reaches them too, as the convolution of dy with the flipped
 * filter (wasm-conv-input-gradient.ts).
 *
 * XNNPACK packs the filter into its own layout whenever it meets a filter tensor it has not seen,
 * which in training is every call (the weights change each step, the input gradient's flipped
 * filter is new each time). Ours read the filter where it lies. The direct kernels (conv3x3_C,
 * conv1x1_C in wasm-simd-wat.ts) keep 4 pixels × 8 output channels of sums in registers over all
 * taps and input channels and give the same bits as XNNPACK (same order of the sums, started from
 * the bias). 3×3 convolutions with 16 or more channels each way go by Winograd F(2×2, 3×3)
 * (wasm-winograd-wat.ts), 2.25× fewer multiplies: 1.3–2.5× faster on those layers
 * (bench/winograd.ts), with other rounding (within 1e-5 of the largest output in the tests).
 */
import { backend_util, Conv2D, FusedConv2D, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { heapOffset, nativeKernel, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';
import { splitWithHelper, wasmSimdOf } from './wasm-simd.js';

interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'same' | 'valid' | number | backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dilations: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  activation?: string;
}

/** The geometry of a convolution if our kernel takes it, else undefined. */
function ourCase(x: TensorInfo, filter: TensorInfo, a: ConvAttrs): backend_util.Conv2DInfo | undefined {
  if (a.dataFormat === 'NCHW' || x.dtype !== 'float32' || filter.dtype !== 'float32' || x.shape.length !== 4) return undefined;
  const dilations = typeof a.dilations === 'number' ? [a.dilations, a.dilations] : a.dilations ?? [1, 1];
  if (dilations[0] !== 1 || dilations[1] !== 1) return undefined;
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filter.shape as [number, number, number, number], a.strides, 1, a.pad as never,
    a.dimRoundingMode, false, 'channelsLast');
  const { top, bottom, left, right } = info.padInfo;
  const k = info.filterHeight;
  const padding = (k - 1) / 2;
  const ours = (k === 3 || k === 1) && info.filterWidth === k && info.strideHeight === 1 && info.strideWidth === 1 &&
    top === padding && bottom === padding && left === padding && right === padding && info.outChannels % 4 === 0 && info.inChannels > 0;
  return ours ? info : undefined;
}

/**
 * When a 3×3 convolution goes by Winograd F(2×2, 3×3) (wasm-winograd-wat.ts): input channels in 4s
 * and at least this many input and output channels, below which the transforms cost more than
 * the multiplies they save. Settable for benchmarks and tests.
 */
export const WINOGRAD_MIN_CHANNELS = 16;
/**
 * Bytes of transformed input and products per group of tiles, so that a group stays in cache
 * (64 KB was level with 32 KB and 128 KB, ahead of 256 KB, on the U-Net's layers: bench/winograd.ts).
 */
export const WINOGRAD_GROUP_BYTES = 64 * 1024;
/** `ALHVR_WASM_WINOGRAD=0` keeps every convolution on the direct kernels: to compare, or to rule Winograd out. */
const defaultMinChannels = typeof process !== 'undefined' && process.env?.ALHVR_WASM_WINOGRAD === '0' ? Infinity : WINOGRAD_MIN_CHANNELS;
let winogradMinChannels = defaultMinChannels;
let winogradGroupBytes = WINOGRAD_GROUP_BYTES;

export function setWinogradMinChannels(channels = defaultMinChannels): void {
  winogradMinChannels = channels;
}

export function setWinogradGroupBytes(bytes = WINOGRAD_GROUP_BYTES): void {
  winogradGroupBytes = bytes;
}

/** Whether a 3×3 'same' stride-1 convolution (and its input and filter gradients) of these channels goes by Winograd. */
export function takesWinograd(cin: number, cout: number): boolean {
  return cin % 4 === 0 && cout % 4 === 0 && Math.min(cin, cout) >= winogradMinChannels;
}

/** Tiles per group for the Winograd kernels: transformed tiles of `floatsPerTile` floats in `bytes`, in 4s. */
export function winogradTilesPerGroup(floatsPerTile: number, bytes = winogradGroupBytes): number {
  return Math.max(4, 4 * Math.floor(bytes / (4 * floatsPerTile) / 4));
}

/**
 * out = x ⋆ filter + bias (bias zero when absent) by conv3x3_C or conv1x1_C, or for wide enough
 * 3×3 ones by wino3x3_C; with the helper thread the second half of the output rows (pixels, tile
 * groups) runs there.
 */
export function convolve(backend: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, bias: TensorInfo | undefined,
  info: backend_util.Conv2DInfo): TensorInfo {
  const simd = wasmSimdOf(backend);
  if (simd === undefined) throw new Error('wasm convolution: the SIMD kernels are not loaded');
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: Cin, outChannels: Cout } = info;
  const out = backend.makeOutput([B, H, W, Cout], 'float32');
  const temporaries: TensorInfo[] = [];
  const temporary = (shape: number[]) => {
    const t = backend.makeOutput(shape, 'float32');
    temporaries.push(t);
    return t;
  };
  try {
    if (bias === undefined) {
      bias = temporary([Cout]);
      backend.typedArrayFromHeap(bias).fill(0);
    }
    const block = Cout % 8 === 0 ? 8 : 4;
    const [x0, w0, b0, o0] = [heapOffset(backend, x), heapOffset(backend, filter), heapOffset(backend, bias), heapOffset(backend, out)];
    if (info.filterHeight === 3 && takesWinograd(Cin, Cout)) {
      const u = temporary([16, Cin, Cout]);
      const u0 = heapOffset(backend, u);
      simd.exports.wino_filter(w0, u0, Cin, Cout, 0, (Cin * Cout) / 4);
      const tiles = B * Math.ceil(H / 2) * Math.ceil(W / 2);
      const perGroup = winogradTilesPerGroup(16 * (Cin + Cout));
      const groups = Math.ceil(tiles / perGroup);
      const scratchFloats = 16 * perGroup * (Cin + Cout) + Cout;
      const scratch = temporary([2, scratchFloats]);
      const s0 = heapOffset(backend, scratch);
      const kernel = `wino3x3_${block}` as const;
      const args = [x0, u0, b0, o0, H, W, Cin, Cout, tiles, perGroup];
      splitWithHelper(simd, groups, kernel, args, (from, to) => (simd.exports[kernel] as (...a: number[]) => void)(...args, from, to, s0),
        { after: [s0 + 4 * scratchFloats] });
      return out;
    }
    // 3×3 in rows of the image (the kernel finds each row's edges), 1×1 in pixels
    const [kernel, args, units] = info.filterHeight === 3
      ? [`conv3x3_${block}` as const, [x0, w0, b0, o0, H, W, Cin, Cout], B * H]
      : [`conv1x1_${block}` as const, [x0, w0, b0, o0, Cin, Cout], B * H * W];
    splitWithHelper(simd, units, kernel, args, (from, to) => (simd.exports[kernel] as (...a: number[]) => void)(...args, from, to));
    return out;
  } finally {
    for (const t of temporaries) backend.disposeData(t.dataId);
  }
}

export const conv2DWasm: KernelFunc = (args) => {
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const info = ourCase(x, filter, args.attrs as unknown as ConvAttrs);
  if (info === undefined || wasmSimdOf(args.backend) === undefined) return nativeKernel(Conv2D, args);
  return convolve(wasmInternals(args.backend), x, filter, undefined, info);
};

export const fusedConv2DWasm: KernelFunc = (args) => {
  const { x, filter, bias, preluActivationWeights } = args.inputs as { x: TensorInfo; filter: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo };
  const a = args.attrs as unknown as ConvAttrs;
  const linear = (a.activation ?? 'linear') === 'linear' && preluActivationWeights === undefined;
  const info = linear ? ourCase(x, filter, a) : undefined;
  const biasPerChannel = bias === undefined || (bias.dtype === 'float32' && bias.shape.length === 1 && bias.shape[0] === info?.outChannels);
  if (info === undefined || !biasPerChannel || wasmSimdOf(args.backend) === undefined) return nativeKernel(FusedConv2D, args);
  return convolve(wasmInternals(args.backend), x, filter, bias, info);
};
