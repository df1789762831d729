/**
 * A second thread for our SIMD kernels (Node, threaded wasm backend only). The kernels run on the
 * calling thread while XNNPACK's pool sits idle, so a filter gradient by our kernel used one core
 * of two. Here a worker instantiates the very same module against the backend's shared memory and
 * takes part of the blocks: every block is still computed whole by one thread, so the result is
 * bit for bit the one-thread result.
 *
 * The handshake is a shared Int32Array: the caller writes the job, sets GO and wakes the worker,
 * computes its own part, then sleeps on DONE. No message passing per call (a postMessage round trip
 * costs more than a small layer's whole gradient).
 */
import { Worker } from 'node:worker_threads';
import { FILTER_GRADIENT_BLOCKS } from './wasm-simd-wat.js';

/** Slots of the control array. */
const GO = 0;
const DONE = 1;
const ARGS = 2;
const ARG_COUNT = 12;
/** DONE values. */
const RUNNING = 0;
const FINISHED = 1;
const FAILED = 2;
/** A helper that has not answered in this long is dead (its thread crashed): the caller stops waiting and says so. */
const WAIT_LIMIT_MS = 120_000;

// Plain JavaScript evaluated in the worker: the blocks of a job it was given, by the same kernel
// the caller runs on the others (dw_3x3_RxC in wasm-simd-wat.ts).
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { memory, bytes, control } = workerData;
const kernels = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports;
for (;;) {
  Atomics.wait(control, ${GO}, 0);
  Atomics.store(control, ${GO}, 0);
  try {
    const [block, ...args] = control.subarray(${ARGS}, ${ARGS + ARG_COUNT});
    kernels[${JSON.stringify(FILTER_GRADIENT_BLOCKS.map(([r, c]) => `dw_3x3_${r}x${c}`))}[block]](...args);
    Atomics.store(control, ${DONE}, ${FINISHED});
  } catch {
    Atomics.store(control, ${DONE}, ${FAILED});
  }
  Atomics.notify(control, ${DONE});
}
`;

/** A 3×3 filter gradient as dw_3x3_RxC takes it (byte offsets into the shared heap; image rows per chunk). */
export interface FilterGradientJob {
  /** Index into FILTER_GRADIENT_BLOCKS: which dw_3x3_RxC runs. */
  block: number;
  x: number; dy: number; rows: number; h: number; w: number; cin: number; cout: number; out: number; chunkRows: number;
}

export interface SimdHelper {
  /**
   * 3×3 filter-gradient blocks [from, to) of a job (see WORKER_SOURCE) on the helper thread; returns
   * at once. `finish` waits for them.
   */
  startFilterGradient(args: FilterGradientJob, from: number, to: number): void;
  finish(): void;
}

/** Starts the helper for a module (its binary) instantiated on `memory`, which must be shared. */
export function startSimdHelper(memory: WebAssembly.Memory, bytes: Uint8Array): SimdHelper {
  const control = new Int32Array(new SharedArrayBuffer(4 * (ARGS + ARG_COUNT)));
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { memory, bytes, control } });
  // It waits for work forever; it must not keep the process alive.
  worker.unref();
  return {
    startFilterGradient(a, from, to) {
      control.set([a.block, a.x, a.dy, a.rows, a.h, a.w, a.cin, a.cout, a.out, from, to, a.chunkRows], ARGS);
      Atomics.store(control, DONE, RUNNING);
      Atomics.store(control, GO, 1);
      Atomics.notify(control, GO);
    },
    finish() {
      const woke = Atomics.wait(control, DONE, RUNNING, WAIT_LIMIT_MS);
      const state = Atomics.load(control, DONE);
      if (woke === 'timed-out' && state === RUNNING) throw new Error('wasm SIMD helper thread did not answer (it has stopped)');
      if (state === FAILED) throw new Error('wasm SIMD helper thread failed on a filter gradient');
    },
  };
}
