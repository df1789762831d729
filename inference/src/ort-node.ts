// The one module that loads ONNX Runtime in Node, so the telemetry guard always runs before the
// native library loads (see no-telemetry.ts). Import `ort` from here, never from the package.
import './no-telemetry.js';
import type * as OrtCommon from 'onnxruntime-common';

/**
 * onnxruntime-node is an optional dependency of @alhvr/inference: on Linux x64 its install script
 * downloads the CUDA provider from NuGet, and where that host cannot be reached the script fails
 * and npm leaves the optional package out instead of failing the whole install. Then (or when the
 * native binding cannot load) the toolkit runs the same model on onnxruntime-web's WebAssembly
 * build in Node: same outputs, slower, CPU only; `announceOrtFallback` says so once on stderr.
 * `ALHVR_ORT_RUNTIME=web` forces that fallback (tests, or to compare).
 */
export type OrtNodeRuntime = 'onnxruntime-node' | 'onnxruntime-web';

/** The parts of both runtimes this package uses, plus onnxruntime-node's backend list. */
export type OrtNodeModule = typeof OrtCommon & {
  listSupportedBackends?: () => { name: string; bundled: boolean }[];
};

interface LoadedRuntime {
  ort: OrtNodeModule;
  runtime: OrtNodeRuntime;
  /** Why onnxruntime-node is not used (fallback only). */
  reason?: string;
}

async function loadRuntime(): Promise<LoadedRuntime> {
  let reason = 'ALHVR_ORT_RUNTIME=web';
  if (process.env.ALHVR_ORT_RUNTIME !== 'web') {
    try {
      return { ort: (await import('onnxruntime-node')) as OrtNodeModule, runtime: 'onnxruntime-node' };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      reason = code === 'ERR_MODULE_NOT_FOUND' ? 'onnxruntime-node is not installed' : `onnxruntime-node did not load (${(err as Error).message.split('\n')[0]})`;
    }
  }
  return { ort: (await import('onnxruntime-web')) as OrtNodeModule, runtime: 'onnxruntime-web', reason };
}

const loaded = await loadRuntime();

export const ort: OrtNodeModule = loaded.ort;
/** Which package `ort` is. */
export const ortRuntime: OrtNodeRuntime = loaded.runtime;
/** Why the WebAssembly fallback is in use (undefined on onnxruntime-node). */
export const ortFallbackReason: string | undefined = loaded.reason;

/** What to run for native speed when the fallback is in use. */
export const ORT_NODE_INSTALL_HINT =
  'for native ONNX Runtime (faster) install it without its CUDA download: ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node';

let announced = false;

/** Say once per process, on stderr, that the WebAssembly fallback is in use and why. */
export function announceOrtFallback(): void {
  if (ortRuntime === 'onnxruntime-node' || announced) return;
  announced = true;
  process.stderr.write(`note: ${loaded.reason}; running ONNX Runtime's WebAssembly build (onnxruntime-web, CPU); ${ORT_NODE_INSTALL_HINT}\n`);
}
