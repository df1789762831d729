/**
 * Makes tfjs-backend-wasm's threaded SIMD build start under Node (tested on Node 20).
 *
 * Out of the box the wasm backend is single-threaded in Node, for three separate reasons:
 * 1. its `WASM_HAS_MULTITHREAD_SUPPORT` flag returns false whenever `IS_NODE` (tfjs issue #3830);
 * 2. the emscripten glue starts each pthread with `new Worker(locateFile('…worker.js'))`, and
 *    tfjs's locateFile answers with a `blob:` URL, which Node's worker_threads refuses
 *    (ERR_WORKER_PATH); the worker then loads the main glue from a Blob the same way;
 * 3. the C side caps the XNNPACK pool at `emscripten_num_logical_cores() / 2` (it assumes two
 *    hyper-threads per core), and in Node that is `os.cpus().length / 2` — 1 on a 2-core box.
 * Everything else the threaded build needs (SharedArrayBuffer, Atomics.wait on the main thread,
 * shared WebAssembly.Memory, a Node branch in the worker script) is present in Node 20.
 *
 * So, only while the backend initialises: the flag is forced on, `URL.createObjectURL` hands out
 * a real file holding the worker script (amended to load the glue from the package's own
 * `wasm-out/` file instead of a Blob), and `os.cpus()` reports 2×threads entries. The emscripten
 * build pre-spawns all 8 pool workers during initialisation, so nothing asks for a URL later.
 */
import { createHash } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import type { EmscriptenModule } from './wasm-internals.js';

const require = createRequire(import.meta.url);

function workerScriptPath(): string {
  const gluePath = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as {
    wasmWorkerContents: string;
  };
  // The contents hold "\n" inside string literals that must stay escapes (tfjs does the same).
  const script = wasmWorkerContents.replace(/\n/g, '\\n') +
    `;URL.createObjectURL=()=>${JSON.stringify(gluePath)};URL.revokeObjectURL=()=>{};\n`;
  const hash = createHash('sha256').update(script).digest('hex').slice(0, 16);
  const path = join(os.tmpdir(), `alhvr-tfjs-wasm-pthread-${hash}.cjs`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, script);
    renameSync(tmp, path); // another process may race us; both write identical bytes
  }
  return path;
}

/**
 * Patches the three things above for the duration of `init` and restores them afterwards.
 * `setFlag` sets the tfjs flag (so this module needs no tfjs import of its own).
 */
export async function withNodeWasmThreads<T>(threads: number, setFlag: (on: boolean) => void, init: () => Promise<T>): Promise<T> {
  const workerPath = workerScriptPath();
  const origCreate = URL.createObjectURL;
  const origCpus = os.cpus;
  URL.createObjectURL = (obj: Blob | MediaSource): string =>
    obj instanceof Blob && obj.type === 'application/javascript' ? workerPath : origCreate(obj as Blob);
  os.cpus = () => {
    const real = origCpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  };
  setFlag(true);
  try {
    return await init();
  } finally {
    URL.createObjectURL = origCreate;
    os.cpus = origCpus;
  }
}

/**
 * Lets the process exit while pool workers are alive: emscripten keeps its pthread workers
 * ref'ed, so without this a finished training script would hang instead of exiting.
 */
export function unrefWasmWorkers(wasmModule: EmscriptenModule): void {
  const pthread = wasmModule.PThread;
  if (!pthread) return;
  for (const w of [...pthread.unusedWorkers, ...pthread.runningWorkers]) w.unref?.();
}
