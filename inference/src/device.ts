import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-common';
import { InputError } from '@alhvr/core';
import { announceOrtFallback, ort, ortFallbackReason, ortRuntime, ORT_NODE_INSTALL_HINT } from './ort-node.js';

/** What the user asks for with `--device`. */
export type DeviceRequest = 'auto' | 'cuda' | 'cpu';
export type Device = 'cuda' | 'cpu';

export const DEVICE_REQUESTS: readonly DeviceRequest[] = ['auto', 'cuda', 'cpu'];

const require = createRequire(import.meta.url);
/** onnxruntime-node's folder; undefined when the optional package is not installed (see ort-node.ts). */
const ortPackageDir = ((): string | undefined => {
  try {
    return dirname(require.resolve('onnxruntime-node/package.json'));
  } catch {
    return undefined;
  }
})();

/**
 * onnxruntime-node ships the CPU provider only; the CUDA provider's shared libraries come from
 * its install script, which the repository's package.json denies (`allowScripts`) so installs
 * stay offline. This runs that script for CUDA 12 (the variable is read by its
 * install-utils.js `parseInstallFlag`); it works whatever npm's script policy is.
 */
export const CUDA_INSTALL_COMMAND = ortPackageDir
  ? `ONNXRUNTIME_NODE_INSTALL=cuda12 node ${join(ortPackageDir, 'script', 'install.js')}`
  : 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node';

export interface DevicePlan {
  requested: DeviceRequest;
  /** Providers to try, in order; the session falls back along this list only for `auto`. */
  candidates: Device[];
  /** Why CUDA is or is not among the candidates, for the report. */
  note: string;
  /**
   * How to get CUDA, for `auto` runs on CPU: worth saying (once) only where a GPU is visible,
   * otherwise only with --verbose; users who never asked for CUDA need not hear about it.
   */
  cudaHint?: string;
  gpuVisible: boolean;
}

/** Folder holding onnxruntime-node's native binding for this platform. */
function ortBinaryFolder(): string {
  return join(ortPackageDir ?? '', 'bin', 'napi-v6', process.platform, process.arch);
}

/**
 * Whether the CUDA execution provider can be loaded: the binding must have been built with it
 * (`listSupportedBackends`) and, when it is not bundled, its provider library must be on disk.
 * CUDA/cuDNN themselves are only checked when a session is created.
 */
export function cudaProviderInstalled(): boolean {
  if (ortRuntime !== 'onnxruntime-node' || !ort.listSupportedBackends) return false;
  const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (!cuda) return false;
  if (cuda.bundled) return true;
  return existsSync(join(ortBinaryFolder(), 'libonnxruntime_providers_cuda.so'));
}

export function parseDeviceRequest(value: string): DeviceRequest {
  if ((DEVICE_REQUESTS as readonly string[]).includes(value)) return value as DeviceRequest;
  throw new InputError(`--device must be one of ${DEVICE_REQUESTS.join(', ')} (got "${value}")`);
}

/** Device files an NVIDIA driver creates (Linux, WSL): a GPU CUDA could use is present. */
const GPU_MARKERS = ['/dev/nvidia0', '/proc/driver/nvidia/version', '/dev/dxg'];

export function gpuVisible(): boolean {
  return GPU_MARKERS.some((p) => existsSync(p));
}

/** Decide which providers to try. `cuda` without the provider installed is an input error. */
export function planDevice(requested: DeviceRequest, cudaInstalled = cudaProviderInstalled(), gpu = gpuVisible()): DevicePlan {
  announceOrtFallback();
  const wasm = ortRuntime === 'onnxruntime-web';
  if (wasm && requested === 'cuda') {
    throw new InputError(`--device cuda: ONNX Runtime runs its WebAssembly build (${ortFallbackReason}); for CUDA install onnxruntime-node with its CUDA provider: ${CUDA_INSTALL_COMMAND}`);
  }
  if (wasm) return { requested, candidates: ['cpu'], note: `onnxruntime-web (WebAssembly) on CPU: ${ORT_NODE_INSTALL_HINT}`, gpuVisible: gpu };
  if (requested === 'cpu') return { requested, candidates: ['cpu'], note: 'CPU requested', gpuVisible: gpu };
  if (requested === 'cuda') {
    if (!cudaInstalled) {
      throw new InputError(`--device cuda: the ONNX Runtime CUDA provider is not installed; install it with: ${CUDA_INSTALL_COMMAND}`);
    }
    return { requested, candidates: ['cuda'], note: 'CUDA requested', gpuVisible: gpu };
  }
  if (cudaInstalled) return { requested, candidates: ['cuda', 'cpu'], note: 'CUDA provider installed', gpuVisible: gpu };
  return {
    requested,
    candidates: ['cpu'],
    note: gpu ? 'a GPU is visible but the CUDA provider is not installed' : 'no GPU visible',
    cudaHint: `to use the GPU, install the CUDA provider: ${CUDA_INSTALL_COMMAND}`,
    gpuVisible: gpu,
  };
}

export interface ThreadOptions {
  /** Intra-op threads; undefined lets ONNX Runtime choose (one per physical core). */
  threads?: number;
}

/** Session options for one provider. */
export function sessionOptionsFor(device: Device, opts: ThreadOptions = {}): InferenceSession.SessionOptions {
  const options: InferenceSession.SessionOptions = {
    executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    graphOptimizationLevel: 'all',
    // Idle pool threads sleep instead of spinning. Measured on a shared 2-core machine: as fast
    // when the cores are free, ~1.5× faster when other work (ours: writing the previous case's
    // outputs; or other jobs) takes a core, because a spinning pool stalls on a preempted thread.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    // No memory pattern. With it, the second run of each input shape allocates one planned block
    // beside the arena's chunks from the first: a second warm-up in fresh pages (~12 µs each on
    // these VMs) for every batch shape a run meets (a full batch and each case's remainder), and
    // both held at once. Measured on the 256² benchmark model: one warm-up run instead of two,
    // peak RSS 617 MB against 847 end to end, the same speed once warm (bench/results/segment-session-options.json).
    enableMemPattern: false,
  };
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new InputError(`--threads must be a positive integer (got ${opts.threads})`);
    options.intraOpNumThreads = opts.threads;
    options.interOpNumThreads = 1;
  }
  return options;
}
