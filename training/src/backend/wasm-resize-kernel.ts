/**
 * Linear resizing of channels-last tensors ([B, H, W, C] bilinear, [B, D, H, W, C] trilinear)
 * with torch's align_corners rules, as a kernel pair of our own: forward and its adjoint.
 *
 * Written as matrix products with the dense [in, out] interpolation matrix (model/resize.ts,
 * which other backends still use), every output costs `in` multiply-adds where two suffice, plus
 * transposes, and the backward pass the same again; in an ALHVR step those products were most of
 * BatchMatMul's time. Here each spatial axis is one pass over the tensor viewed as
 * [outer, n, inner] — every output row w0·x[i0] + w1·x[i1], a contiguous run of `inner` floats —
 * and the gradient scatters each row back with the same two weights. The wasm version runs in
 * wasm SIMD on the backend's heap; the cpu version is plain loops.
 *
 *   AlhvrResizeLinear      {x}  {size, alignCorners, inputSize} → y [B, ...size, C]
 *   AlhvrResizeLinearGrad  {dy} {inputSize, alignCorners}        → dx [B, ...inputSize, C]
 *
 * (`inputSize`, the spatial sides of x, rides along on the forward call because a registered
 * gradient sees the attributes, not the inputs.)
 */
import { getGradient, getKernel, registerGradient, registerKernel, util, type KernelFunc, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import wabtInit from 'wabt';
import { heapOffset, wasmHeapMemory, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';
import { WASM_RESIZE_WAT } from './wasm-resize-kernel-wat.js';

export const RESIZE_LINEAR = 'AlhvrResizeLinear';
export const RESIZE_LINEAR_GRAD = 'AlhvrResizeLinearGrad';

/** The two taps of every output sample along one axis: out[i] = w0[i]·in[i0[i]] + w1[i]·in[i1[i]]. */
export interface LinearTaps {
  i0: Int32Array;
  i1: Int32Array;
  w0: Float32Array;
  w1: Float32Array;
}

/**
 * The taps of 1-D linear interpolation from inSize to outSize samples, following ATen's
 * upsample_linear source-index rule (align_corners true: corners map to corners; false: pixel
 * centres, source index clamped at 0). At the last input sample both taps fall on it; their
 * weights are merged into w0 (w1 = 0), so the dense matrix built from the taps and the kernels
 * use the very same numbers.
 */
export function linearTaps(inSize: number, outSize: number, alignCorners: boolean): LinearTaps {
  const taps = { i0: new Int32Array(outSize), i1: new Int32Array(outSize), w0: new Float32Array(outSize), w1: new Float32Array(outSize) };
  for (let i = 0; i < outSize; i++) {
    let src: number;
    if (alignCorners) {
      src = outSize > 1 ? (i * (inSize - 1)) / (outSize - 1) : 0;
    } else {
      src = Math.max(((i + 0.5) * inSize) / outSize - 0.5, 0);
    }
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const l1 = src - i0;
    taps.i0[i] = i0;
    if (i0 < inSize - 1) {
      taps.i1[i] = i0 + 1;
      taps.w0[i] = 1 - l1;
      taps.w1[i] = l1;
    } else {
      taps.i1[i] = i0;
      taps.w0[i] = Math.fround(Math.fround(1 - l1) + Math.fround(l1));
      taps.w1[i] = 0;
    }
  }
  return taps;
}

/** One axis of a resize: the tensor viewed as [outer, n, inner] becomes [outer, m, inner]. */
interface AxisPass {
  outer: number;
  n: number;
  m: number;
  inner: number;
  taps: LinearTaps;
}

/**
 * The forward passes from `shape` to the spatial sides `size`, one per axis whose side changes,
 * the most shrinking axis first (every pass costs the size of what it writes, so shrinking early
 * and growing late is cheapest). The adjoint runs the same passes in reverse.
 */
function resizePlan(shape: readonly number[], size: readonly number[], alignCorners: boolean): AxisPass[] {
  const current = [...shape];
  const axes = size.map((_, i) => i + 1).filter((a) => shape[a] !== size[a - 1]);
  axes.sort((a, b) => size[a - 1] / shape[a] - size[b - 1] / shape[b]);
  return axes.map((a) => {
    const pass: AxisPass = {
      outer: util.sizeFromShape(current.slice(0, a)),
      n: current[a],
      m: size[a - 1],
      inner: util.sizeFromShape(current.slice(a + 1)),
      taps: linearTaps(current[a], size[a - 1], alignCorners),
    };
    current[a] = size[a - 1];
    return pass;
  });
}

function checkedShapes(x: TensorInfo, size: readonly number[], what: string): number[] {
  if (x.dtype !== 'float32') throw new TypeError(`${what}: float32 only (got ${x.dtype})`);
  if (x.shape.length !== size.length + 2) throw new RangeError(`${what}: ${size.length} target sides for a rank-${x.shape.length} tensor`);
  return [x.shape[0], ...size, x.shape[x.shape.length - 1]];
}

// ---- cpu: plain loops ----------------------------------------------------------------------------

function lerpAxis(x: Float32Array, out: Float32Array, p: AxisPass): void {
  const { outer, n, m, inner, taps } = p;
  for (let o = 0, q = 0; o < outer; o++) {
    const slab = o * n * inner;
    for (let i = 0; i < m; i++) {
      const a = slab + taps.i0[i] * inner;
      const b = slab + taps.i1[i] * inner;
      const w0 = taps.w0[i];
      const w1 = taps.w1[i];
      for (let k = 0; k < inner; k++, q++) out[q] = w0 * x[a + k] + w1 * x[b + k];
    }
  }
}

/** dx (zeroed) += the adjoint of lerpAxis applied to dy. */
function lerpAxisAdjoint(dy: Float32Array, dx: Float32Array, p: AxisPass): void {
  const { outer, n, m, inner, taps } = p;
  for (let o = 0, q = 0; o < outer; o++) {
    const slab = o * n * inner;
    for (let i = 0; i < m; i++, q += inner) {
      const a = slab + taps.i0[i] * inner;
      const b = slab + taps.i1[i] * inner;
      const w0 = taps.w0[i];
      const w1 = taps.w1[i];
      for (let k = 0; k < inner; k++) dx[a + k] += w0 * dy[q + k];
      for (let k = 0; k < inner; k++) dx[b + k] += w1 * dy[q + k];
    }
  }
}

interface CpuBackend {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: 'float32', values?: Float32Array): TensorInfo;
}

function runCpu(backend: CpuBackend, x: TensorInfo, outShape: number[], passes: AxisPass[], adjoint: boolean): TensorInfo {
  let data = backend.data.get(x.dataId).values;
  if (passes.length === 0) data = data.slice();
  for (const p of passes) {
    if (adjoint) {
      const dx = new Float32Array(p.outer * p.n * p.inner);
      lerpAxisAdjoint(data, dx, p);
      data = dx;
    } else {
      const out = new Float32Array(p.outer * p.m * p.inner);
      lerpAxis(data, out, p);
      data = out;
    }
  }
  return backend.makeTensorInfo(outShape, 'float32', data);
}

// ---- wasm: SIMD on the backend's heap ------------------------------------------------------------

interface ResizeExports {
  lerp_axis(x: number, out: number, outer: number, slabInBytes: number, m: number, rowBytes: number, table: number): void;
  lerp_axis_adjoint(dy: number, dx: number, outer: number, slabInBytes: number, m: number, rowBytes: number, table: number): void;
}

const compiled = new WeakMap<object, { memory: WebAssembly.Memory; exports: ResizeExports }>();

async function loadResizeSimd(backend: object): Promise<{ memory: WebAssembly.Memory; exports: ResizeExports }> {
  const done = compiled.get(backend);
  if (done) return done;
  const memory = wasmHeapMemory(wasmInternals(backend));
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  const wabt = await wabtInit();
  const mod = wabt.parseWat('wasm-resize.wat', WASM_RESIZE_WAT.replace('__MEMORY__', shared ? '(memory 1 65536 shared)' : '(memory 1)'), { simd: true, threads: true });
  try {
    const { buffer } = mod.toBinary({});
    const { instance } = await WebAssembly.instantiate(new Uint8Array(buffer) as BufferSource, { env: { memory } });
    const simd = { memory, exports: instance.exports as unknown as ResizeExports };
    compiled.set(backend, simd);
    return simd;
  } finally {
    mod.destroy();
  }
}

/**
 * Runs the passes on the heap: every pass's taps as a table of 16-byte entries (see the WAT),
 * intermediates in two ping-pong buffers, all in one scratch allocation freed before returning.
 */
function runWasm(b: WasmBackendInternals, simd: { memory: WebAssembly.Memory; exports: ResizeExports }, x: TensorInfo,
  outShape: number[], passes: AxisPass[], adjoint: boolean): TensorInfo {
  const out = b.makeOutput(outShape, 'float32');
  const outAt = heapOffset(b, out);
  if (passes.length === 0) {
    new Float32Array(simd.memory.buffer, outAt, util.sizeFromShape(outShape)).set(b.typedArrayFromHeap(x));
    return out;
  }
  const written = (p: AxisPass) => p.outer * (adjoint ? p.n : p.m) * p.inner;
  const pingFloats = [0, 0];
  passes.slice(0, -1).forEach((p, j) => { pingFloats[j % 2] = Math.max(pingFloats[j % 2], written(p)); });
  const tableBytes = passes.reduce((s, p) => s + 16 * p.m, 0);
  const scratch = b.wasm._malloc(tableBytes + 4 * (pingFloats[0] + pingFloats[1])) >>> 0;
  try {
    const heapI32 = new Int32Array(simd.memory.buffer);
    const heapF32 = new Float32Array(simd.memory.buffer);
    const tables: number[] = [];
    let at = scratch;
    for (const p of passes) {
      tables.push(at);
      const rowBytes = 4 * p.inner;
      for (let i = 0, e = at / 4; i < p.m; i++, e += 4) {
        heapI32[e] = p.taps.i0[i] * rowBytes;
        heapI32[e + 1] = p.taps.i1[i] * rowBytes;
        heapF32[e + 2] = p.taps.w0[i];
        heapF32[e + 3] = p.taps.w1[i];
      }
      at += 16 * p.m;
    }
    const ping = [at, at + 4 * pingFloats[0]];
    let src = heapOffset(b, x);
    passes.forEach((p, j) => {
      const dst = j === passes.length - 1 ? outAt : ping[j % 2];
      const rowBytes = 4 * p.inner;
      if (adjoint) {
        heapF32.fill(0, dst / 4, dst / 4 + written(p));
        simd.exports.lerp_axis_adjoint(src, dst, p.outer, p.n * rowBytes, p.m, rowBytes, tables[j]);
      } else {
        simd.exports.lerp_axis(src, dst, p.outer, p.n * rowBytes, p.m, rowBytes, tables[j]);
      }
      src = dst;
    });
  } finally {
    b.wasm._free(scratch);
  }
  return out;
}

// ---- registration --------------------------------------------------------------------------------

interface ForwardAttrs { size: number[]; alignCorners: boolean; inputSize: number[] }
interface GradAttrs { inputSize: number[]; alignCorners: boolean }

type Runner = (backend: unknown, x: TensorInfo, outShape: number[], passes: AxisPass[], adjoint: boolean) => TensorInfo;

function kernelPair(run: Runner): [KernelFunc, KernelFunc] {
  const forward: KernelFunc = ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const { size, alignCorners } = attrs as unknown as ForwardAttrs;
    const outShape = checkedShapes(x, size, RESIZE_LINEAR);
    return run(backend, x, outShape, resizePlan(x.shape, size, alignCorners), false);
  };
  const gradient: KernelFunc = ({ inputs, backend, attrs }) => {
    const dy = inputs.dy as TensorInfo;
    const { inputSize, alignCorners } = attrs as unknown as GradAttrs;
    const dxShape = checkedShapes(dy, inputSize, RESIZE_LINEAR_GRAD);
    return run(backend, dy, dxShape, resizePlan(dxShape, dy.shape.slice(1, -1), alignCorners).reverse(), true);
  };
  return [forward, gradient];
}

function registerPair(backendName: string, run: Runner): void {
  if (hasLinearResizeKernels(backendName)) return;
  const [forward, gradient] = kernelPair(run);
  registerKernel({ kernelName: RESIZE_LINEAR, backendName, kernelFunc: forward });
  registerKernel({ kernelName: RESIZE_LINEAR_GRAD, backendName, kernelFunc: gradient });
}

/** Whether `backendName` runs linear resizing as the kernels above (else model/resize.ts uses matrix products). */
export function hasLinearResizeKernels(backendName: string): boolean {
  return getKernel(RESIZE_LINEAR, backendName) !== undefined && getKernel(RESIZE_LINEAR_GRAD, backendName) !== undefined;
}

/** The gradient of the forward kernel is the adjoint kernel (process-wide, every backend that has the pair). Idempotent. */
function registerResizeGradient(): void {
  if (getGradient(RESIZE_LINEAR) !== undefined) return;
  registerGradient({
    kernelName: RESIZE_LINEAR,
    gradFunc: (dy, _saved, attrs) => {
      const { inputSize, alignCorners } = attrs as unknown as ForwardAttrs;
      const gradAttrs: GradAttrs = { inputSize, alignCorners };
      return { x: () => tf.engine().runKernel(RESIZE_LINEAR_GRAD, { dy: dy as tf.Tensor }, gradAttrs as unknown as NamedAttrMap) as tf.Tensor };
    },
  });
}

/**
 * Registers the kernels for the cpu backend (plain loops) and the gradient. Needs no backend
 * instance (the registries are keyed by name), so resize.ts makes this call when it is loaded.
 * Idempotent.
 */
export function registerCpuResizeKernels(): void {
  registerResizeGradient();
  registerPair('cpu', (backend, x, outShape, passes, adjoint) => runCpu(backend as CpuBackend, x, outShape, passes, adjoint));
}

/**
 * Compiles the SIMD passes against an initialised wasm backend's memory (once per backend) and
 * registers the kernels for 'wasm'. Idempotent.
 */
export async function registerWasmResizeKernels(backend: object): Promise<void> {
  registerResizeGradient();
  await loadResizeSimd(backend);
  registerPair('wasm', (kernelBackend, x, outShape, passes, adjoint) => {
    const simd = compiled.get(kernelBackend as object);
    if (simd === undefined) throw new Error(`${RESIZE_LINEAR}: the SIMD passes were not compiled for this wasm backend`);
    return runWasm(wasmInternals(kernelBackend), simd, x, outShape, passes, adjoint);
  });
}
