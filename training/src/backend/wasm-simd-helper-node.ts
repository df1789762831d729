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

/** Slots of the control array. */
const GO = 0;
const DONE = 1;
const ARGS = 2;
const ARG_COUNT = 9;
/** DONE values. */
const RUNNING = 0;
const FINISHED = 1;
const FAILED = 2;
/** A helper that has not answered in this long is dead (its thread crashed): the caller stops waiting and says so. */
const WAIT_LIMIT_MS = 120_000;

// Plain JavaScript evaluated in the worker. Block j of a job is (tap, input block, output block)
// in that order, as the caller enumerates them.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { memory, bytes, control } = workerData;
const dw = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports.dw_tap_4x8;
for (;;) {
  Atomics.wait(control, ${GO}, 0);
  Atomics.store(control, ${GO}, 0);
  try {
    const [x, dy, out, pixels, cin, cout, wp, from, to] = control.subarray(${ARGS}, ${ARGS + ARG_COUNT});
    const perTap = (cin / 4) * (cout / 8);
    for (let j = from; j < to; j++) {
      const tap = Math.floor(j / perTap);
      const ci = Math.floor((j % perTap) / (cout / 8)) * 4;
      const co = (j % (cout / 8)) * 8;
      const off = Math.floor(tap / 3) * wp + (tap % 3);
      dw(x + (off * cin + ci) * 4, dy + co * 4, pixels, cin, cout, out + ((tap * cin + ci) * cout + co) * 4);
    }
    Atomics.store(control, ${DONE}, ${FINISHED});
  } catch {
    Atomics.store(control, ${DONE}, ${FAILED});
  }
  Atomics.notify(control, ${DONE});
}
`;

export interface SimdHelper {
  /**
   * 3×3 filter-gradient blocks [from, to) of a job (see WORKER_SOURCE) on the helper thread; returns
   * at once. `finish` waits for them.
   */
  startFilterGradient(args: { x: number; dy: number; out: number; pixels: number; cin: number; cout: number; wp: number }, from: number, to: number): void;
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
      control.set([a.x, a.dy, a.out, a.pixels, a.cin, a.cout, a.wp, from, to], ARGS);
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
