/**
 * `Conv2DBackpropInput` (dx) for the wasm backend. tfjs-backend-wasm 4.22 has one, but as a direct
 * C loop; for stride 1 / dilation 1 (NHWC, float32) we compute it as a forward convolution of dy
 * with the spatially flipped, in/out-swapped filter, run by the backend's Conv2D kernel (ours for
 * the U-Net's 3×3 and 1×1 cases, wasm-conv2d.ts; XNNPACK otherwise). Other cases keep the
 * backend's own kernel.
 */
import { backend_util, Conv2DBackpropInput, util, type KernelFunc, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { nativeKernel, runKernel, wasmInternals } from './wasm-internals.js';

/** The backend's own kernel, for the cases the flipped-filter trick does not cover. */
const native = (args: Parameters<KernelFunc>[0]) => nativeKernel(Conv2DBackpropInput, args);

export const conv2DBackpropInputWasm: KernelFunc = (args) => {
  const { inputs, backend: b, attrs } = args;
  const backend = wasmInternals(b);
  const a = attrs as unknown as {
    strides: [number, number] | number; pad: 'same' | 'valid' | number | backend_util.ExplicitPadding;
    dataFormat: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; inputShape: [number, number, number, number];
  };
  const dy = inputs.dy as TensorInfo;
  const filter = inputs.filter as TensorInfo;
  const [sh, sw] = typeof a.strides === 'number' ? [a.strides, a.strides] : a.strides;
  if (sh !== 1 || sw !== 1 || a.dataFormat === 'NCHW' || dy.dtype !== 'float32') {
    return native(args);
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
    return native(args);
  }
  const dx = runKernel('Conv2D', { x: dy, filter: flipped }, b, {
    strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: a.dimRoundingMode ?? null,
  } as unknown as NamedAttrMap);
  // disposing the flipped filter also drops any XNNPACK operator cached under its id
  backend.disposeData(flipped.dataId);
  if (!util.arraysEqual(dx.shape, a.inputShape)) {
    backend.disposeData(dx.dataId);
    return native(args);
  }
  return dx;
};
