/**
 * `Conv2D` and `FusedConv2D` (bias, no activation) on the wasm backend for the U-Net's cases —
 * stride 1, dilation 1, NHWC float32, output channels in 4s, and either 3×3 with one pixel of zero
 * padding on each side or 1×1 without — by our SIMD kernels (conv3x3_C, conv1x1_C in
 * wasm-simd-wat.ts); everything else keeps the backend's own kernel. Conv2DBackpropInput reaches
 * them too, as the convolution of dy with the flipped filter (wasm-conv-input-gradient.ts).
 *
 * XNNPACK packs the filter into its own layout whenever it meets a filter tensor it has not seen,
 * which in training is every call (the weights change each step, the input gradient's flipped
 * filter is new each time). Ours reads the filter where it lies, keeps 4 pixels × 8 output
 * channels of sums in registers over all taps and input channels, and gives the same bits as
 * XNNPACK (same order of the sums, started from the bias).
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
 * out = x ⋆ filter + bias (bias zero when absent) by conv3x3_C or conv1x1_C; with the helper
 * thread the second half of the output rows (or pixels) runs there.
 */
export function convolve(backend: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, bias: TensorInfo | undefined,
  info: backend_util.Conv2DInfo): TensorInfo {
  const simd = wasmSimdOf(backend);
  if (simd === undefined) throw new Error('wasm convolution: the SIMD kernels are not loaded');
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: Cin, outChannels: Cout } = info;
  const out = backend.makeOutput([B, H, W, Cout], 'float32');
  let zeros: TensorInfo | undefined;
  if (bias === undefined) {
    zeros = backend.makeOutput([Cout], 'float32');
    backend.typedArrayFromHeap(zeros).fill(0);
  }
  const block = Cout % 8 === 0 ? 8 : 4;
  const [x0, w0, b0, o0] = [heapOffset(backend, x), heapOffset(backend, filter), heapOffset(backend, bias ?? zeros!), heapOffset(backend, out)];
  // 3×3 in rows of the image (the kernel finds each row's edges), 1×1 in pixels
  const [kernel, args, units] = info.filterHeight === 3
    ? [`conv3x3_${block}` as const, [x0, w0, b0, o0, H, W, Cin, Cout], B * H]
    : [`conv1x1_${block}` as const, [x0, w0, b0, o0, Cin, Cout], B * H * W];
  splitWithHelper(simd, units, kernel, args, (from, to) => (simd.exports[kernel] as (...a: number[]) => void)(...args, from, to));
  if (zeros !== undefined) backend.disposeData(zeros.dataId);
  return out;
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
