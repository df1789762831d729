/**
 * The private parts of tfjs-backend-wasm (pinned version, see PATCHES.md) that our kernels and
 * start-up patches use, typed once, and the helpers every wasm kernel family shares. A leaf: it
 * imports nothing of ours, and every kernel file imports it.
 */
import { getKernel, registerKernel, unregisterKernel, util, type KernelConfig, type KernelFunc, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';

/** The emscripten module of tfjs-backend-wasm (`backend.wasm`). */
export interface EmscriptenModule {
  cwrap(name: string, ret: null, args: string[]): (...a: unknown[]) => void;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  /** The linear memory: a Module field in the threaded build, exported by the plain one. */
  wasmMemory?: WebAssembly.Memory;
  asm?: { memory?: WebAssembly.Memory };
  /** The threaded build's pthread pool. */
  PThread?: { unusedWorkers: { unref?: () => void }[]; runningWorkers: { unref?: () => void }[] };
}

/** tfjs-backend-wasm's BackendWasm, with the members that are not in its public types. */
export interface WasmBackendInternals {
  dataIdMap: {
    get(dataId: object): { id: number; memoryOffset: number; refCount: number } | undefined;
    set(dataId: object, v: { id: number; memoryOffset: number; shape: number[]; dtype: string; refCount: number }): void;
    delete(dataId: object): void;
  };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: 'float32' | 'bool'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  /** A view of the tensor's values: Float32Array for float32, Uint8Array for bool. */
  typedArrayFromHeap(t: TensorInfo & { dtype: 'bool' }): Uint8Array;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
  incRef(dataId: object): void;
  wasm: EmscriptenModule;
}

/** The backend object a kernel is handed (or `tf.backend()` on wasm), seen through its internals. */
export function wasmInternals(backend: unknown): WasmBackendInternals {
  return backend as WasmBackendInternals;
}

/** The emscripten module's linear memory. */
export function wasmHeapMemory(backend: WasmBackendInternals): WebAssembly.Memory {
  const memory = backend.wasm.wasmMemory ?? backend.wasm.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) throw new Error('tfjs-backend-wasm: cannot find the module memory');
  return memory;
}

export const shapeBytes = (shape: number[]): Uint8Array => new Uint8Array(new Int32Array(shape).buffer);

/** Byte offset of a tensor's data on the wasm heap. */
export function heapOffset(backend: WasmBackendInternals, t: TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (d === undefined) throw new Error('wasm training kernels: tensor is not on the wasm backend');
  return d.memoryOffset;
}

/**
 * A tensor id that points into the middle of another tensor's wasm memory, so a contiguous slice of
 * dy can be handed to the C matmul without copying. A fresh id per use matters: the C side caches
 * the packed XNNPACK weights under the weights' tensor id and drops them when that id is disposed.
 */
export function aliasTensor(backend: WasmBackendInternals, base: TensorInfo, offsetFloats: number, shape: number[]): TensorInfo {
  const baseData = backend.dataIdMap.get(base.dataId);
  if (baseData === undefined) throw new Error('wasm training kernels: input tensor is not on the wasm backend');
  const id = backend.dataIdNextNumber++;
  const dataId = { id };
  const memoryOffset = baseData.memoryOffset + offsetFloats * 4;
  backend.dataIdMap.set(dataId, { id, memoryOffset, shape, dtype: 'float32', refCount: 1 });
  backend.wasm.tfjs.registerTensor(id, util.sizeFromShape(shape), memoryOffset);
  return { dataId, shape, dtype: 'float32' };
}

export function disposeAlias(backend: WasmBackendInternals, t: TensorInfo): void {
  const d = backend.dataIdMap.get(t.dataId);
  if (d === undefined) return;
  backend.wasm.tfjs.disposeData(d.id); // never free(): the memory belongs to the base tensor
  backend.dataIdMap.delete(t.dataId);
}

export function idOf(backend: WasmBackendInternals, t: TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (d === undefined) throw new Error('wasm training kernels: tensor is not on the wasm backend');
  return d.id;
}

/** Calls another wasm kernel's implementation directly (as the backend's own kernels do). */
export function runKernel(name: string, inputs: Record<string, TensorInfo>, backend: object, attrs: NamedAttrMap): TensorInfo {
  const k = getKernel(name, 'wasm');
  if (k === undefined) throw new Error(`wasm backend has no ${name} kernel`);
  return k.kernelFunc({ inputs, backend: backend as never, attrs }) as TensorInfo;
}

export type MatMulFn = (
  aId: number, aShape: Uint8Array, aRank: number, bId: number, bShape: Uint8Array, bRank: number,
  transposeA: boolean, transposeB: boolean, outId: number,
) => void;
export type TransposeFn = (xId: number, xShape: Uint8Array, rank: number, dtype: number, outId: number, perm: Uint8Array, permLength: number) => void;

interface CEntries {
  matMul: MatMulFn;
  transpose: TransposeFn;
}
const cEntries = new WeakMap<object, CEntries>();

/** The backend's C kernels our kernels call on tensor ids ('BatchMatMul' runs on XNNPACK), cwrapped once per backend. */
export function cKernels(backend: WasmBackendInternals): CEntries {
  let c = cEntries.get(backend);
  if (c === undefined) {
    c = {
      matMul: backend.wasm.cwrap('BatchMatMul', null, [
        'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number',
      ]) as unknown as MatMulFn,
      transpose: backend.wasm.cwrap('Transpose', null, ['number', 'array', 'number', 'number', 'number', 'array', 'number']) as unknown as TransposeFn,
    };
    cEntries.set(backend, c);
  }
  return c;
}

/** Our kernel functions, so that replacing one of ours never records it as the backend's own. */
const ours = new WeakSet<KernelFunc>();
/** The backend's own kernels that ours replaced, by kernel name. */
const natives = new Map<string, KernelConfig>();

/**
 * Makes `kernelFunc` the wasm backend's kernel `name`, keeping the backend's own config (and its
 * setupFunc, which cwraps the C entry the fallback calls) for `nativeKernel`. Idempotent; safe
 * before or after the backend is initialised (kernels are looked up per call). A kernel the
 * backend lacks is added when `mayBeMissing`, otherwise that is an error.
 */
export function replaceWasmKernel(name: string, kernelFunc: KernelFunc, mayBeMissing = false): void {
  ours.add(kernelFunc);
  const current = getKernel(name, 'wasm');
  if (current?.kernelFunc === kernelFunc) return;
  if (current === undefined) {
    if (!mayBeMissing) throw new Error(`tfjs-backend-wasm has no ${name} kernel; is @tensorflow/tfjs-backend-wasm loaded?`);
    registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
    return;
  }
  if (!ours.has(current.kernelFunc)) natives.set(name, current);
  unregisterKernel(name, 'wasm');
  registerKernel({ ...current, kernelFunc });
}

/** Runs the backend's own kernel that `replaceWasmKernel` kept, for the cases ours does not take. */
export function nativeKernel(name: string, args: Parameters<KernelFunc>[0]): TensorInfo | TensorInfo[] {
  const k = natives.get(name);
  if (k === undefined) throw new Error(`wasm ${name}: the backend's own kernel was not kept`);
  return k.kernelFunc(args) as TensorInfo | TensorInfo[];
}
