import { InputError, type ModelCard } from '@alhvr/core';
import { createSliceModel, readModelIdentity, type ModelIdentity, type OrtRuntime, type OrtSliceModel, type SliceModel } from '@alhvr/inference';
import * as ort from 'onnxruntime-web/wasm';

/** The runtime files a page must serve next to each other (copied from onnxruntime-web/dist). */
export const ORT_WASM_FILES = ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'] as const;
/**
 * ONNX Runtime's WebGPU build, served beside ORT_WASM_FILES: fetched only where the browser offers
 * a WebGPU adapter (a page that serves no WebGPU files runs on WebAssembly, saying why).
 */
export const ORT_WEBGPU_FILES = ['ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'] as const;

/** Where the model runs: WebGPU, or WebAssembly on the CPU. */
export type ExecutionProvider = 'webgpu' | 'wasm';

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
  /**
   * "auto" (default): WebGPU when `navigator.gpu` gives an adapter and the model opens on it,
   * WebAssembly otherwise (the model's `fallback` says why). "webgpu" fails instead of falling back.
   */
  executionProvider?: 'auto' | ExecutionProvider;
}

/** An ONNX ALHVR model opened in onnxruntime-web, ready for `segmentNifti` / inference's `segmentVolume`. */
export interface ViewerModel {
  readonly model: SliceModel;
  readonly card: ModelCard;
  readonly identity: ModelIdentity;
  /** WebAssembly threads the runtime actually uses. */
  readonly threads: number;
  /** The execution provider the session runs on. */
  readonly executionProvider: ExecutionProvider;
  /** Why WebGPU was not used when "auto" asked for it, in one line completing "WebGPU not used: …" (undefined when it was used, or not asked for). */
  readonly fallback?: string;
  release(): Promise<void>;
}

interface RuntimeSettings {
  threads: number;
  wasmBase: string;
}

// onnxruntime-web reads its env once, when the first session starts; later changes are ignored.
// The WebAssembly and the WebGPU builds are two modules with an env each: both get the same settings.
let runtimeSettings: RuntimeSettings | undefined;

type OrtEnv = typeof ort.env;

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
  runtimeSettings = wanted;
}

function applySettings(env: OrtEnv): void {
  env.wasm.numThreads = runtimeSettings!.threads;
  env.wasm.wasmPaths = runtimeSettings!.wasmBase;
}

/** The part of `navigator.gpu` the choice needs. */
interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

function oneLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0].trim() || 'unknown error';
}

/**
 * Why WebGPU cannot run here, in one line (it completes "WebGPU not used: …"), or undefined when
 * `gpu` (default: this context's `navigator.gpu`) gives an adapter.
 */
export async function webGpuUnavailable(gpu: GpuLike | undefined = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu): Promise<string | undefined> {
  if (!gpu || typeof gpu.requestAdapter !== 'function') return 'this browser offers no WebGPU';
  try {
    return (await gpu.requestAdapter()) ? undefined : 'WebGPU offers no adapter on this machine';
  } catch (e) {
    return `its adapter request failed: ${oneLine(e)}`;
  }
}

async function openOn(
  provider: ExecutionProvider,
  bytes: Uint8Array,
  source: string,
): Promise<{ model: OrtSliceModel; identity: ModelIdentity }> {
  // The WebGPU build (with its own wasm files) is imported only where it can run.
  const runtime = provider === 'webgpu' ? await import('onnxruntime-web/webgpu') : ort;
  applySettings(runtime.env);
  return createSliceModel(bytes, runtime as unknown as OrtRuntime, webSessionOptions(provider), source);
}

/** The session options the viewer opens a model with on `provider` (bench/browser-ops.ts profiles with them). */
export function webSessionOptions(provider: ExecutionProvider): { executionProviders: string[]; graphOptimizationLevel: 'all'; extra: Record<string, unknown> } {
  return {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    // Idle pool threads sleep instead of spinning, as inference's Node sessions do. Measured in
    // Chromium on this shared 2-core machine (batch 8, same run): two threads 380 → 309 ms/slice.
    // A spinning wasm thread holds a core the other thread (or the page) needs.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/**
 * Why this model cannot run on onnxruntime-web's WebGPU whatever the browser offers, or undefined.
 * A 3D model's up-convolutions are 3D ConvTranspose nodes, which the WebGPU provider rejects at
 * the first run ("Only Conv2d or Conv1d are supported"; onnxruntime issue 28356), after the
 * session has opened: so the choice is made from the card, before opening.
 */
export function webGpuCannotRun(card: Pick<ModelCard, 'dimensions'>): string | undefined {
  return card.dimensions === 3 ? "onnxruntime-web's WebGPU runs no 3D ConvTranspose, which this 3D model's decoder needs" : undefined;
}

/**
 * Open an exported ALHVR ONNX model (bytes of the .onnx file) on onnxruntime-web: on WebGPU when
 * the browser offers it and the model can run there, else on WebAssembly (see
 * LoadModelOptions.executionProvider).
 */
export async function loadModel(bytes: Uint8Array, opts: LoadModelOptions = {}): Promise<ViewerModel> {
  const source = opts.source ?? 'model.onnx';
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InputError('model is empty or not a byte array', source);
  const wanted = opts.executionProvider ?? 'auto';
  if (!['auto', 'webgpu', 'wasm'].includes(wanted)) throw new InputError(`executionProvider must be auto, webgpu or wasm (got ${String(wanted)})`);
  configureRuntime({ threads: resolveThreads(opts.numThreads), wasmBase: resolveWasmBase(opts.wasmBase) });
  let fallback: string | undefined;
  if (wanted !== 'wasm') {
    const problem = webGpuCannotRun((await readModelIdentity(bytes, source)).card) ?? (await webGpuUnavailable());
    if (!problem) {
      try {
        return viewerModel(await openOn('webgpu', bytes, source), 'webgpu');
      } catch (e) {
        if (wanted === 'webgpu') throw new InputError(`cannot open the model on WebGPU: ${oneLine(e)}`, source);
        fallback = `the model did not open on it (${oneLine(e)})`;
      }
    } else if (wanted === 'webgpu') {
      throw new InputError(`cannot open the model on WebGPU: ${problem}`, source);
    } else {
      fallback = problem;
    }
  }
  return viewerModel(await openOn('wasm', bytes, source), 'wasm', fallback);
}

function viewerModel(opened: { model: OrtSliceModel; identity: ModelIdentity }, executionProvider: ExecutionProvider, fallback?: string): ViewerModel {
  return {
    model: opened.model,
    card: opened.identity.card,
    identity: opened.identity,
    threads: runtimeSettings!.threads,
    executionProvider,
    fallback,
    release: () => opened.model.release(),
  };
}
