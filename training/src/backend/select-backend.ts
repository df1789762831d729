/**
 * The one place that decides which TensorFlow.js backend training runs on. Everything else imports
 * `@tensorflow/tfjs-core` and trusts that this has been awaited first.
 *
 * Auto order: tfjs-node-gpu → tfjs-node → wasm → cpu. The native packages are optional: they
 * download libtensorflow at install time, so they are loaded with `import()` of a computed
 * specifier and are never a build-time dependency.
 */
import * as tf from '@tensorflow/tfjs-core';
import { installWasmTrainingKernels } from './wasm-training-kernels.js';
import { registerCpuBatchNormKernels } from './batchnorm-kernels.js';
import { wasmInternals } from './wasm-internals.js';

export type BackendChoice = 'auto' | 'tensorflow' | 'tensorflow-gpu' | 'wasm' | 'cpu';

export interface SelectBackendOptions {
  /** Threads for the wasm backend's XNNPACK pool (default 2, at most 8). Ignored by other backends. */
  threads?: number;
  /** Where the one-line "what was chosen" message goes (default console.log). */
  log?: (msg: string) => void;
}

export interface SelectedBackend {
  /** tfjs backend name as `tf.getBackend()` reports it: 'tensorflow', 'wasm' or 'cpu'. */
  name: string;
  threads: number;
  description: string;
  /** The tfjs-core namespace the backend was registered with; use it (or import tfjs-core). */
  tf: typeof tf;
}

export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'tensorflow-gpu', 'wasm', 'cpu'];

const NATIVE_PACKAGES = {
  'tensorflow-gpu': 'tfjs-node-gpu',
  tensorflow: 'tfjs-node',
} as const;

/** Thrown when a backend that was asked for by name cannot be used. */
export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
}

/**
 * The one TensorFlow.js version our patches (PATCHES.md beside this file) were written and tested
 * against. They replace tfjs-backend-wasm kernels and read private fields of tfjs-core and
 * tfjs-backend-wasm, so any other version is refused at start-up instead of training on silently
 * different internals. The @tensorflow/* dependencies in package.json are pinned to it (a test
 * keeps the two equal).
 */
export const SUPPORTED_TFJS_VERSION = '4.22.0';

/** A TensorFlow.js package of another version than SUPPORTED_TFJS_VERSION is loaded (never falls through to another backend). */
export class UnsupportedTfjsVersionError extends BackendUnavailableError {
  override name = 'UnsupportedTfjsVersionError';
}

/** Throws UnsupportedTfjsVersionError unless `version` of `pkg` is SUPPORTED_TFJS_VERSION. */
export function assertSupportedTfjs(pkg: string, version: string): void {
  if (version === SUPPORTED_TFJS_VERSION) return;
  throw new UnsupportedTfjsVersionError(
    `${pkg} ${version} is installed, but this toolkit supports only ${SUPPORTED_TFJS_VERSION}: it replaces tfjs-backend-wasm ` +
      `kernels and reads TensorFlow.js internals of that version (training/src/backend/PATCHES.md); ` +
      `install the pinned version with \`npm ci\` (or \`npm i ${pkg}@${SUPPORTED_TFJS_VERSION}\`)`,
  );
}

const DEFAULT_WASM_THREADS = 2;
/** tfjs-backend-wasm's emscripten build pre-spawns 8 pthread workers; XNNPACK cannot use more. */
const MAX_WASM_THREADS = 8;

/**
 * Registers tfjs's gradient functions. tfjs-core's Node entry (`tf-core.node.js`) ships none: they
 * live only as extension-less ESM files under `dist/gradients/` that Node cannot load, and the one
 * Node-loadable copy is inside the `@tensorflow/tfjs` bundle, which registers them into the shared
 * tfjs-core registry on import. Without this every `tf.grad` fails with "gradient function not
 * found". Idempotent.
 */
export async function ensureGradientsRegistered(): Promise<void> {
  if (tf.getGradient('Conv2D') === undefined) await import('@tensorflow/tfjs');
  if (tf.getGradient('Conv2D') === undefined) {
    throw new BackendUnavailableError('@tensorflow/tfjs loaded but registered no gradients (is it using a different @tensorflow/tfjs-core copy?)');
  }
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

function isModuleNotFound(err: unknown, pkg: string): boolean {
  const e = err as { code?: string; message?: string };
  return (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') && (e.message ?? '').includes(pkg);
}

async function loadNative(choice: 'tensorflow' | 'tensorflow-gpu'): Promise<boolean> {
  const pkg = NATIVE_PACKAGES[choice];
  // Computed so TypeScript and bundlers do not try to resolve an optional native package.
  const specifier = ['@tensorflow', pkg].join('/');
  try {
    await import(specifier);
    return true;
  } catch (err) {
    if (isModuleNotFound(err, `@tensorflow/${pkg}`)) return false;
    throw new BackendUnavailableError(`@tensorflow/${pkg} is installed but failed to load: ${(err as Error).message}`);
  }
}

function missingNativeMessage(choice: 'tensorflow' | 'tensorflow-gpu'): string {
  const pkg = `@tensorflow/${NATIVE_PACKAGES[choice]}`;
  return `${pkg} is not installed; install it with \`npm i ${pkg}\` (needs network access to download libtensorflow)`;
}

async function useNative(choice: 'tensorflow' | 'tensorflow-gpu'): Promise<SelectedBackend | null> {
  if (!(await loadNative(choice))) return null;
  if (!(await tf.setBackend('tensorflow'))) throw new BackendUnavailableError(`@tensorflow/${NATIVE_PACKAGES[choice]} loaded but its backend failed to initialise`);
  // libtensorflow sizes its own intra-op pool from the machine; we do not control it from here.
  const threads = isNode ? (await import('node:os')).availableParallelism() : 1;
  const description = choice === 'tensorflow-gpu'
    ? 'TensorFlow native (libtensorflow with CUDA, via @tensorflow/tfjs-node-gpu)'
    : 'TensorFlow native (libtensorflow CPU, via @tensorflow/tfjs-node)';
  return { name: 'tensorflow', threads, description, tf };
}

async function useWasm(threadsWanted: number): Promise<SelectedBackend> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  assertSupportedTfjs('@tensorflow/tfjs-backend-wasm', wasm.version_wasm);
  const alreadyUp = tf.engine().registry['wasm'] !== undefined;
  if (!alreadyUp) {
    wasm.setThreadsCount(threadsWanted);
    const init = () => tf.setBackend('wasm');
    const ok = isNode && threadsWanted > 1
      ? await (await import('./wasm-threads-node.js')).withNodeWasmThreads(
        threadsWanted, (on) => tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', on), init)
      : await init();
    if (!ok) throw new BackendUnavailableError('the TensorFlow.js wasm backend failed to initialise');
    if (isNode) (await import('./wasm-threads-node.js')).unrefWasmWorkers(wasmInternals(tf.backend()).wasm);
  } else if (!(await tf.setBackend('wasm'))) {
    throw new BackendUnavailableError('the TensorFlow.js wasm backend failed to initialise');
  }
  await installWasmTrainingKernels(tf.backend());
  const threads = wasm.getThreadsCount();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const description = `TensorFlow.js WebAssembly (XNNPACK${simd ? ', SIMD' : ''}, ${threads} thread${threads === 1 ? '' : 's'})`;
  return { name: 'wasm', threads, description, tf };
}

async function useCpu(): Promise<SelectedBackend> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailableError('the TensorFlow.js cpu backend failed to initialise');
  registerCpuBatchNormKernels();
  return { name: 'cpu', threads: 1, description: 'TensorFlow.js plain JavaScript (slow; for tests and fallback)', tf };
}

/**
 * Chooses, initialises and activates a backend, logs one line saying which and with how many
 * threads, and returns the tfjs-core namespace to use. Refuses any TensorFlow.js version but
 * SUPPORTED_TFJS_VERSION. Also registers all gradients, and for
 * `wasm` the missing training kernels.
 * Asking for tensorflow / tensorflow-gpu by name when the package is missing throws
 * BackendUnavailableError with the install command.
 *
 * The wasm thread count is fixed the first time the wasm backend starts in a process; later calls
 * report the count actually in use.
 */
export async function selectBackend(choice: BackendChoice = 'auto', opts: SelectBackendOptions = {}): Promise<SelectedBackend> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new BackendUnavailableError(`unknown backend "${String(choice)}"; choose one of ${BACKEND_CHOICES.join(', ')}`);
  }
  const log = opts.log ?? ((m: string) => console.log(m));
  const threadsWanted = opts.threads ?? DEFAULT_WASM_THREADS;
  if (!Number.isInteger(threadsWanted) || threadsWanted < 1 || threadsWanted > MAX_WASM_THREADS) {
    throw new BackendUnavailableError(`threads must be an integer from 1 to ${MAX_WASM_THREADS}, got ${threadsWanted}`);
  }

  assertSupportedTfjs('@tensorflow/tfjs-core', tf.version_core);
  await ensureGradientsRegistered();
  let chosen: SelectedBackend | null = null;
  const skipped: string[] = [];
  if (choice === 'tensorflow' || choice === 'tensorflow-gpu') {
    chosen = await useNative(choice);
    if (chosen === null) throw new BackendUnavailableError(missingNativeMessage(choice));
  } else if (choice === 'auto') {
    for (const native of ['tensorflow-gpu', 'tensorflow'] as const) {
      chosen = await useNative(native);
      if (chosen !== null) break;
      skipped.push(`@tensorflow/${NATIVE_PACKAGES[native]} not installed`);
    }
    if (chosen === null) {
      try {
        chosen = await useWasm(threadsWanted);
      } catch (err) {
        if (err instanceof UnsupportedTfjsVersionError) throw err;
        skipped.push(`wasm failed: ${(err as Error).message}`);
      }
    }
    chosen ??= await useCpu();
  } else if (choice === 'wasm') {
    chosen = await useWasm(threadsWanted);
  } else {
    chosen = await useCpu();
  }

  const why = choice === 'auto' && skipped.length > 0 ? ` (auto; ${skipped.join(', ')})` : choice === 'auto' ? ' (auto)' : '';
  log(`TensorFlow.js backend: ${chosen.name}, ${chosen.threads} thread${chosen.threads === 1 ? '' : 's'} — ${chosen.description}${why}`);
  return chosen;
}
