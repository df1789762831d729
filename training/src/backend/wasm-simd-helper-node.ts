/**
 * A second thread for our SIMD kernels (Node, threaded wasm backend only). The kernels run on the
 * calling thread while XNNPACK's pool sits idle, so a convolution or filter gradient by our kernel
 * used one core of two. Here a worker instantiates the very same module against the backend's
 * shared memory and takes part of the work (blocks of a filter gradient, rows of a convolution):
 * every part is still computed whole by one thread, so the result is bit for bit the one-thread
 * result.
 *
 * The handshake is a shared Int32Array: the caller writes the job, sets GO and wakes the worker,
 * computes its own part, then sleeps on DONE. No message passing per call (a postMessage round trip
 * costs more than a small layer's whole gradient).
 */
import { Worker } from 'node:worker_threads';
import { HELPER_KERNELS, type HelperKernel } from './wasm-simd-wat.js';

/** Slots of the control array. */
const GO = 0;
const DONE = 1;
const ARGS = 2;
/** The kernel's index in HELPER_KERNELS, then its arguments. */
const ARG_COUNT = 16;
/** DONE values. */
const RUNNING = 0;
const FINISHED = 1;
const FAILED = 2;
/** A helper that has not answered in this long is dead (its thread crashed): the caller stops waiting and says so. */
const WAIT_LIMIT_MS = 120_000;

// Plain JavaScript evaluated in the worker: the part of a job it was given, by the same kernel
// the caller runs on the rest.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { memory, bytes, control } = workerData;
const exports = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports;
const kernels = ${JSON.stringify(HELPER_KERNELS)}.map((name) => exports[name]);
for (;;) {
  Atomics.wait(control, ${GO}, 0);
  Atomics.store(control, ${GO}, 0);
  try {
    const [kernel, ...args] = control.subarray(${ARGS}, ${ARGS + ARG_COUNT});
    kernels[kernel](...args);
    Atomics.store(control, ${DONE}, ${FINISHED});
  } catch {
    Atomics.store(control, ${DONE}, ${FAILED});
  }
  Atomics.notify(control, ${DONE});
}
`;

export interface SimdHelper {
  /** Runs `kernel` (one of HELPER_KERNELS) with `args` on the helper thread; returns at once. `finish` waits for it. */
  start(kernel: HelperKernel, args: number[]): void;
  finish(): void;
}

/** Starts the helper for a module (its binary) instantiated on `memory`, which must be shared. */
export function startSimdHelper(memory: WebAssembly.Memory, bytes: Uint8Array): SimdHelper {
  const control = new Int32Array(new SharedArrayBuffer(4 * (ARGS + ARG_COUNT)));
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { memory, bytes, control } });
  // It waits for work forever; it must not keep the process alive.
  worker.unref();
  return {
    start(kernel, args) {
      if (args.length >= ARG_COUNT) throw new Error(`wasm SIMD helper: ${kernel} takes at most ${ARG_COUNT - 1} arguments`);
      control.set([HELPER_KERNELS.indexOf(kernel), ...args], ARGS);
      Atomics.store(control, DONE, RUNNING);
      Atomics.store(control, GO, 1);
      Atomics.notify(control, GO);
    },
    finish() {
      const woke = Atomics.wait(control, DONE, RUNNING, WAIT_LIMIT_MS);
      const state = Atomics.load(control, DONE);
      if (woke === 'timed-out' && state === RUNNING) throw new Error('wasm SIMD helper thread did not answer (it has stopped)');
      if (state === FAILED) throw new Error('wasm SIMD helper thread failed on its part of a kernel');
    },
  };
}
