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
import { aliasTensor, cKernels, disposeAlias, heapOffset, idOf, nativeKernel, runKernel, shapeBytes, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';
import { wasmSimdOf, type WasmSimd } from './wasm-simd.js';

/** A [batch, rows, cols] operand, transposed into fresh memory when asked; `owned` says to free it. */
function asRowMajor(backend: WasmBackendInternals, t: TensorInfo, batch: number, transpose: boolean): { t: TensorInfo; owned: boolean } {
  const [r, c] = t.shape.slice(-2);
  if (!transpose) return { t, owned: false };
  const view = aliasTensor(backend, t, 0, [batch, r, c]);
  const out = runKernel('Transpose', { x: view }, backend, { perm: [0, 2, 1] });
  disposeAlias(backend, view);
  return { t: out, owned: true };
}

/** Rows summed over from which Aᵀ·B runs as pixel sums (below): the long-K products of the losses. */
const LONG_K = 1024;

/**
 * C = Aᵀ·B per batch entry, A [K, M] and B [K, N] with K long (CG-CPCL's prototype sums over every
 * pixel): the dW kernel's 4×8 blocks (dw_tap_4x8: out[i, j] = Σ_p x[p, i]·y[p, j], accumulators in
 * registers) instead of a transpose of A and a GEMM whose long K XNNPACK packs and streams per call
 * (17 ms for [4,16384,32]ᵀ·[4,16384,4]). With M a multiple of 4 and N of 8 the blocks write C; with
 * the roles swapped (N of 4, M of 8) they write Cᵀ, transposed after.
 */
function pixelSumProducts(
  backend: WasmBackendInternals, simd: WasmSimd, a: TensorInfo, b: TensorInfo, batch: number, M: number, K: number, N: number,
): TensorInfo {
  const direct = M % 4 === 0 && N % 8 === 0;
  const [x, y, rowsX, colsY] = direct ? [a, b, M, N] : [b, a, N, M];
  const out = backend.makeOutput([batch, M, N], 'float32');
  const target = direct ? out : backend.makeOutput([rowsX * colsY], 'float32');
  const [xo, yo] = [heapOffset(backend, x), heapOffset(backend, y)];
  for (let i = 0; i < batch; i++) {
    const to = direct ? heapOffset(backend, out) + i * M * N * 4 : heapOffset(backend, target);
    for (let r = 0; r < rowsX; r += 4) {
      for (let c = 0; c < colsY; c += 8) {
        simd.exports.dw_tap_4x8(xo + (i * K * rowsX + r) * 4, yo + (i * K * colsY + c) * 4, K, rowsX, colsY, to + (r * colsY + c) * 4);
      }
    }
    if (!direct) {
      const t = backend.typedArrayFromHeap(target);
      const o = backend.typedArrayFromHeap(out);
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) o[i * M * N + m * N + n] = t[n * M + m];
    }
  }
  if (!direct) backend.disposeData(target.dataId);
  return out;
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
  const simd = wasmSimdOf(backend);
  if (simd !== undefined && transposeA && !transposeB && batchA === batchB && K >= LONG_K && ((M % 4 === 0 && N % 8 === 0) || (N % 4 === 0 && M % 8 === 0))) {
    return { ...pixelSumProducts(backend, simd, a, bt, batch, M, K, N), shape: outShape };
  }

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
