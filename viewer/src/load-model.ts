import { InputError, type ModelCard } from '@alhvr/core';
import { createSliceModel, type ModelIdentity, type OrtRuntime, type OrtSliceModel, type SliceModel } from '@alhvr/inference';
import * as ort from 'onnxruntime-web/wasm';

/** The runtime files a page must serve next to each other (copied from onnxruntime-web/dist). */
export const ORT_WASM_FILES = ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'] as const;

export interface LoadModelOptions {
  /**
   * WebAssembly threads for ONNX Runtime. More than one needs a cross-origin isolated page
   * (COOP/COEP headers); elsewhere the runtime runs on one thread and `threads` says so.
   * Default: half the logical cores, at most 4, when isolated; else 1.
   */
  numThreads?: number;
  /**
   * Folder URL (absolute, or relative to the page) holding ORT_WASM_FILES. Must be on the page's
   * own origin: the viewer never loads code from a CDN. Default: the page's own folder.
   */
  wasmBase?: string | URL;
  /** Names the model in error messages. Default "model.onnx". */
  source?: string;
}

/** An ONNX ALHVR model opened in onnxruntime-web, ready for `segmentNifti` / inference's `segmentVolume`. */
export interface ViewerModel {
  readonly model: SliceModel;
  readonly card: ModelCard;
  readonly identity: ModelIdentity;
  /** WebAssembly threads the runtime actually uses. */
  readonly threads: number;
  release(): Promise<void>;
}

interface RuntimeSettings {
  threads: number;
  wasmBase: string;
}

// onnxruntime-web reads its env once, when the first session starts; later changes are ignored.
let runtimeSettings: RuntimeSettings | undefined;

function pageLocation(): URL | undefined {
  const href = (globalThis as { location?: { href?: string } }).location?.href;
  return href ? new URL(href) : undefined;
}

function resolveWasmBase(base: string | URL | undefined): string {
  const page = pageLocation();
  let url: URL;
  try {
    url = new URL(String(base ?? './'), page);
  } catch {
    throw new InputError(`wasmBase "${String(base)}" is not a URL${page ? '' : ' (and there is no page to resolve it against)'}`);
  }
  if (page && url.origin !== page.origin) {
    throw new InputError(`wasmBase ${url.href} is not on this page's origin (${page.origin}); serve the ONNX Runtime files yourself`);
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url.href;
}

function resolveThreads(requested: number | undefined): number {
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  if (requested !== undefined && (!Number.isInteger(requested) || requested < 1)) {
    throw new InputError(`numThreads must be a positive integer (got ${requested})`);
  }
  if (!isolated) return 1;
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  return requested ?? Math.max(1, Math.min(4, Math.ceil(cores / 2)));
}

function configureRuntime(wanted: RuntimeSettings): void {
  if (runtimeSettings) {
    if (runtimeSettings.threads !== wanted.threads || runtimeSettings.wasmBase !== wanted.wasmBase) {
      throw new InputError(
        `ONNX Runtime is already running with ${runtimeSettings.threads} thread(s) from ${runtimeSettings.wasmBase}; ` +
          `reload the page to use ${wanted.threads} thread(s) from ${wanted.wasmBase}`,
      );
    }
    return;
  }
  ort.env.wasm.numThreads = wanted.threads;
  ort.env.wasm.wasmPaths = wanted.wasmBase;
  runtimeSettings = wanted;
}

/** Open an exported ALHVR ONNX model (bytes of the .onnx file) on onnxruntime-web's WebAssembly backend. */
export async function loadModel(bytes: Uint8Array, opts: LoadModelOptions = {}): Promise<ViewerModel> {
  const source = opts.source ?? 'model.onnx';
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InputError('model is empty or not a byte array', source);
  configureRuntime({ threads: resolveThreads(opts.numThreads), wasmBase: resolveWasmBase(opts.wasmBase) });
  const sessionOptions = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  const opened: { model: OrtSliceModel; identity: ModelIdentity } = await createSliceModel(
    bytes,
    ort as unknown as OrtRuntime,
    sessionOptions,
    source,
  );
  return {
    model: opened.model,
    card: opened.identity.card,
    identity: opened.identity,
    threads: runtimeSettings!.threads,
    release: () => opened.model.release(),
  };
}
