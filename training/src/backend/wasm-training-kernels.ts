/**
 * Everything the TensorFlow.js wasm backend needs for training the 2-D U-Net and the 3-D VNet, installed by one call
 * (backend selection makes it). Each kernel family is its own file; what each replaces and why,
 * and which test guards it, is listed in PATCHES.md beside this file.
 *
 * - wasm-conv-filter-gradient.ts  Conv2DBackpropFilter (missing from tfjs-backend-wasm 4.22)
 * - wasm-conv2d.ts                Conv2D / FusedConv2D, 3×3 'same' stride 1, by our SIMD kernel
 * - wasm-conv-input-gradient.ts   Conv2DBackpropInput as a convolution with the flipped filter (stride 1)
 * - wasm-conv3d.ts                Conv3D and Conv3DBackpropFilterV2 through XNNPACK (the VNet's 'same' case)
 * - wasm-transpose.ts             Transpose by whole last-axis runs (the VNet's down/up shuffles)
 * - wasm-max-pool-grad.ts         MaxPoolGrad (the backend's is wrong on all-negative windows)
 * - wasm-batch-matmul.ts          BatchMatMul always on XNNPACK
 * - wasm-layout-kernels.ts        Identity, channel Sum, last-axis Concat / SplitV
 * - batchnorm-kernels.ts          fused BatchNorm(+LeakyReLU) forward and backward (SIMD)
 * - wasm-resize-kernel.ts         two-tap linear resizing (2D/3D) and its adjoint (SIMD)
 * - out-of-memory.ts              `_malloc` that throws instead of returning 0 or wrapping
 */
import { BatchMatMul, Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput, Conv3D, FusedConv2D, Conv3DBackpropFilterV2, MaxPoolGrad, Transpose } from '@tensorflow/tfjs-core';
import { registerWasmBatchNormKernels } from './batchnorm-kernels.js';
import { registerWasmResizeKernels } from './wasm-resize-kernel.js';
import { guardWasmMalloc } from './out-of-memory.js';
import { fastBatchMatMul } from './wasm-batch-matmul.js';
import { conv2DBackpropFilterKernel, type FilterGradientPath } from './wasm-conv-filter-gradient.js';
import { conv2DBackpropInputWasm } from './wasm-conv-input-gradient.js';
import { conv2DWasm, fusedConv2DWasm } from './wasm-conv2d.js';
import { conv3dBackpropFilterWasm, conv3dWasm } from './wasm-conv3d.js';
import { installReductionGradients } from './reduction-gradients.js';
import { replaceWasmKernel, wasmInternals } from './wasm-internals.js';
import { LAYOUT_KERNELS } from './wasm-layout-kernels.js';
import { transposeKeepingLastAxisWasm } from './wasm-transpose.js';
import { maxPoolGradWasm } from './wasm-max-pool-grad.js';
import { loadWasmSimd } from './wasm-simd.js';

export type { FilterGradientPath } from './wasm-conv-filter-gradient.js';

export interface WasmTrainingKernelOptions {
  /** The dW algorithm; 'auto' (the default) chooses per shape. Tests and benches pin each one to compare them. */
  filterGradientPath?: FilterGradientPath;
}

/**
 * Installs the training kernels and the allocation guard on an initialised wasm backend
 * (`tf.findBackend('wasm')`). Idempotent; a later call with another `filterGradientPath` swaps
 * only that kernel.
 */
export async function installWasmTrainingKernels(backend: object, opts: WasmTrainingKernelOptions = {}): Promise<void> {
  const internals = wasmInternals(backend);
  guardWasmMalloc(internals.wasm);
  replaceWasmKernel(BatchMatMul, fastBatchMatMul);
  for (const [name, kernelFunc] of LAYOUT_KERNELS) replaceWasmKernel(name, kernelFunc);
  replaceWasmKernel(Conv2DBackpropFilter, conv2DBackpropFilterKernel(opts.filterGradientPath ?? 'auto'), true);
  replaceWasmKernel(Conv2DBackpropInput, conv2DBackpropInputWasm);
  replaceWasmKernel(Conv2D, conv2DWasm);
  replaceWasmKernel(FusedConv2D, fusedConv2DWasm);
  replaceWasmKernel(Conv3D, conv3dWasm);
  replaceWasmKernel(Conv3DBackpropFilterV2, conv3dBackpropFilterWasm);
  replaceWasmKernel(Transpose, transposeKeepingLastAxisWasm);
  replaceWasmKernel(MaxPoolGrad, maxPoolGradWasm);
  await loadWasmSimd(backend);
  await registerWasmBatchNormKernels(backend);
  await registerWasmResizeKernels(backend);
  installReductionGradients();
}
