/**
 * Turns the wasm backend's way of running out of memory into an error a user can act on.
 *
 * tfjs-backend-wasm allocates every tensor with malloc inside one WebAssembly.Memory capped at
 * 4 GB. When that is exhausted the emscripten runtime aborts: the step dies with a bare
 * `RuntimeError: Aborted()` or `memory access out of bounds` from deep inside a kernel, and the
 * module is unusable afterwards. Nothing in that message says "memory" or what to change.
 */
import { InputError } from '@alhvr/core';
import type { EmscriptenModule } from './wasm-internals.js';

const WASM_OOM = /Aborted\(|memory access out of bounds|WebAssembly\.Memory|Cannot enlarge memory|Array buffer allocation failed/;

/** wasm32 addresses: one allocation can never exceed this (the heap's own cap is just below it). */
const WASM_ADDRESS_SPACE = 2 ** 32;

/** An allocation on the wasm heap failed (raised by the guard below instead of a null pointer). */
export class WasmOutOfMemoryError extends RangeError {
  constructor(readonly bytes: number) {
    super(`the wasm heap cannot hold another ${(bytes / 2 ** 20).toFixed(0)} MiB (WebAssembly.Memory is capped at 4 GB)`);
    this.name = 'WasmOutOfMemoryError';
  }
}

/** The module with our mark that the guard is in place. */
type EmscriptenHeap = Pick<EmscriptenModule, '_malloc'> & { alhvrMallocGuard?: true };

/**
 * Makes a failed allocation throw. tfjs-backend-wasm stores tensors at whatever `_malloc`
 * returns without checking it: a failed malloc returns 0 and the tensor's bytes are then
 * written over the start of the heap, and a request of 4 GB or more wraps around to a small
 * size. Either way training would go on with corrupted memory. Idempotent.
 */
export function guardWasmMalloc(wasmModule: EmscriptenModule): void {
  const heap = wasmModule as EmscriptenHeap;
  if (heap.alhvrMallocGuard) return;
  // emscripten's `_malloc` is a stub that, on first call, assigns the raw export over itself;
  // so the guard is an accessor that keeps any such assignment as the function it wraps.
  let malloc = heap._malloc;
  const guarded = (bytes: number): number => {
    if (bytes >= WASM_ADDRESS_SPACE) throw new WasmOutOfMemoryError(bytes);
    const ptr = malloc(bytes);
    if (ptr === 0 && bytes > 0) throw new WasmOutOfMemoryError(bytes);
    return ptr;
  };
  Object.defineProperty(heap, '_malloc', {
    configurable: true,
    get: () => guarded,
    set: (fn: (bytes: number) => number) => {
      malloc = fn;
    },
  });
  heap.alhvrMallocGuard = true;
}

export function isWasmOutOfMemory(err: unknown): boolean {
  if (err instanceof WasmOutOfMemoryError) return true;
  const isWasmError = typeof WebAssembly !== 'undefined' && err instanceof WebAssembly.RuntimeError;
  return (isWasmError || err instanceof RangeError) && WASM_OOM.test((err as Error).message);
}

export interface StepShape {
  batchLabeled: number;
  batchUnlabeled: number;
  patch: number;
  widths: readonly number[];
}

/** The error to raise instead, naming the configuration that did not fit and what to try. */
export function wasmOutOfMemoryError(shape: StepShape, cause: unknown): InputError {
  const batch = shape.batchUnlabeled > 0 ? `${shape.batchLabeled}+${shape.batchUnlabeled}` : String(shape.batchLabeled);
  const err = new InputError(
    `one training step at batch ${batch}, patch ${shape.patch}², widths ${shape.widths.join(',')} needs more than the ` +
      `4 GB the wasm backend can address; use a smaller --batch, --patch or --widths (models/recipes/ holds a CPU recipe), ` +
      `or install @tensorflow/tfjs-node (or -gpu) where libtensorflow can be downloaded`,
  );
  (err as Error & { cause?: unknown }).cause = cause;
  return err;
}

/** Runs one training step; on the wasm backend an allocation failure becomes `wasmOutOfMemoryError`. */
export function guardStepMemory<T>(backendName: string, shape: StepShape, step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (backendName === 'wasm' && isWasmOutOfMemory(err)) throw wasmOutOfMemoryError(shape, err);
    throw err;
  }
}
