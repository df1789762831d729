/**
 * `Transpose` for the wasm backend when the permutation keeps the last axis in place (float32):
 * the output is then a sequence of whole last-axis runs of the input, each one copyWithin (a
 * native memmove) on the heap. The VNet's stride-2 down and up convolutions (vnet3d.ts) are 6-D
 * shuffles of this kind on every activation; tfjs-backend-wasm 4.22's generic kernel takes about
 * 100 ns per float on them (2·24³·… 3.5 M floats: 300–370 CPU ms, where an Add of the same size
 * takes 15–45 ms), a quarter of a 48³ training step. Other permutations keep the backend's kernel.
 */
import { Transpose, util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { heapOffset, nativeKernel, wasmHeapMemory, wasmInternals } from './wasm-internals.js';

/**
 * Shortest last axis (floats) we copy run by run; below, the per-run call costs more than the
 * backend's loop saves.
 */
const MIN_RUN_FLOATS = 8;

export const transposeKeepingLastAxisWasm: KernelFunc = (args) => {
  const { inputs, backend: b, attrs } = args;
  const x = inputs.x as TensorInfo;
  const perm = (attrs as unknown as { perm: number[] }).perm;
  const rank = x.shape.length;
  const L = x.shape[rank - 1];
  if (x.dtype !== 'float32' || rank < 3 || perm[rank - 1] !== rank - 1 || L < MIN_RUN_FLOATS || util.sizeFromShape(x.shape) === 0) {
    return nativeKernel(Transpose, args);
  }
  const backend = wasmInternals(b);
  const outer = rank - 1;
  const outShape = perm.map((p) => x.shape[p]);
  const out = backend.makeOutput(outShape, 'float32');
  // strides of the input in floats, taken in output axis order
  const inStrides = util.computeStrides(x.shape).concat(1);
  const step = perm.slice(0, outer).map((p) => inStrides[p]);
  const dims = outShape.slice(0, outer);
  const heap = new Float32Array(wasmHeapMemory(backend).buffer);
  const x0 = heapOffset(backend, x) / 4;
  let dst = heapOffset(backend, out) / 4;
  const idx = new Array<number>(outer).fill(0);
  const last = outer - 1;
  const innerN = dims[last];
  const innerStep = step[last];
  let base = x0;
  const runs = util.sizeFromShape(dims) / innerN;
  for (let r = 0; r < runs; r++) {
    let src = base;
    if (L >= 16) {
      for (let i = 0; i < innerN; i++, src += innerStep, dst += L) heap.copyWithin(dst, src, src + L);
    } else {
      for (let i = 0; i < innerN; i++, src += innerStep, dst += L) for (let e = 0; e < L; e++) heap[dst + e] = heap[src + e];
    }
    // odometer over the output's outer axes but the innermost one
    for (let a = last - 1; a >= 0; a--) {
      idx[a]++;
      base += step[a];
      if (idx[a] < dims[a]) break;
      base -= step[a] * dims[a];
      idx[a] = 0;
    }
  }
  return out;
};
