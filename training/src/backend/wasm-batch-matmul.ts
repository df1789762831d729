/**
 * BatchMatMul for the wasm backend that always runs on XNNPACK. tfjs-backend-wasm 4.22 only uses
 * its XNNPACK GEMM for un-transposed, batch-1 products and falls back to a naive triple loop
 * otherwise — which is every matmul gradient (they transpose) and every batched product (bilinear
 * resizing as two matrix products, prototype sums and cosines). Profiled on a small ALHVR step,
 * those loops took more time than all convolutions together. Here transposed operands are
 * materialised once with the (fast) Transpose kernel and each batch entry is one XNNPACK call on
 * views of the operands, written straight into the output.
 */
import { BatchMatMul, util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { aliasTensor, cKernels, disposeAlias, idOf, nativeKernel, runKernel, shapeBytes, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';

/** A [batch, rows, cols] operand, transposed into fresh memory when asked; `owned` says to free it. */
function asRowMajor(backend: WasmBackendInternals, t: TensorInfo, batch: number, transpose: boolean): { t: TensorInfo; owned: boolean } {
  const [r, c] = t.shape.slice(-2);
  if (!transpose) return { t, owned: false };
  const view = aliasTensor(backend, t, 0, [batch, r, c]);
  const out = runKernel('Transpose', { x: view }, backend, { perm: [0, 2, 1] });
  disposeAlias(backend, view);
  return { t: out, owned: true };
}

/** Replaces the wasm BatchMatMul (see replaceWasmKernel); the backend's own runs the cases that are already fast. */
export const fastBatchMatMul: KernelFunc = (args) => {
  const { inputs, backend: b, attrs } = args;
  const backend = wasmInternals(b);
  const a = inputs.a as TensorInfo;
  const bt = inputs.b as TensorInfo;
  const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
  const outerA = a.shape.slice(0, -2);
  const outerB = bt.shape.slice(0, -2);
  const batchA = util.sizeFromShape(outerA);
  const batchB = util.sizeFromShape(outerB);
  const simpleBroadcast = batchA === batchB ? util.arraysEqual(outerA, outerB) : batchA === 1 || batchB === 1;
  const alreadyFast = !transposeA && !transposeB && batchA === 1 && batchB === 1;
  if (a.dtype !== 'float32' || bt.dtype !== 'float32' || !simpleBroadcast || alreadyFast) {
    return nativeKernel(BatchMatMul, args);
  }
  const rA = a.shape.length;
  const rB = bt.shape.length;
  const M = transposeA ? a.shape[rA - 1] : a.shape[rA - 2];
  const K = transposeA ? a.shape[rA - 2] : a.shape[rA - 1];
  const KB = transposeB ? bt.shape[rB - 1] : bt.shape[rB - 2];
  const N = transposeB ? bt.shape[rB - 2] : bt.shape[rB - 1];
  if (K !== KB) throw new Error(`matMul: inner dimensions ${K} and ${KB} of shapes [${a.shape}] and [${bt.shape}] differ`);
  const batch = Math.max(batchA, batchB);
  const outShape = [...(batchA >= batchB ? outerA : outerB), M, N];

  const { matMul } = cKernels(backend);
  const left = asRowMajor(backend, a, batchA, transposeA);
  const right = asRowMajor(backend, bt, batchB, transposeB);
  const out = backend.makeOutput([batch, M, N], 'float32');
  // A broadcast right operand keeps one view, so XNNPACK packs it once for the whole batch.
  const sharedRight = batchB === 1 ? aliasTensor(backend, right.t, 0, [1, K, N]) : null;
  for (let i = 0; i < batch; i++) {
    const l = aliasTensor(backend, left.t, batchA === 1 ? 0 : i * M * K, [1, M, K]);
    const r = sharedRight ?? aliasTensor(backend, right.t, i * K * N, [1, K, N]);
    const o = aliasTensor(backend, out, i * M * N, [1, M, N]);
    matMul(idOf(backend, l), shapeBytes([1, M, K]), 3, idOf(backend, r), shapeBytes([1, K, N]), 3, false, false, idOf(backend, o));
    disposeAlias(backend, l);
    if (!sharedRight) disposeAlias(backend, r);
    disposeAlias(backend, o);
  }
  if (sharedRight) disposeAlias(backend, sharedRight);
  if (left.owned) backend.disposeData(left.t.dataId);
  if (right.owned) backend.disposeData(right.t.dataId);
  return { ...out, shape: outShape };
};
