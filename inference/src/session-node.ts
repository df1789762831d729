import { readFile } from 'node:fs/promises';
import { InputError } from '@alhvr/core';
import { ort, ortRuntime } from './ort-node.js';
import { workerOrtRuntime } from './ort-node-worker.js';
import { planDevice, sessionOptionsFor, type Device, type DeviceRequest } from './device.js';
import { createSliceModel, type ModelIdentity, type OrtRuntime, type OrtSliceModel } from './session.js';

export interface OpenModelOptions {
  device?: DeviceRequest;
  threads?: number;
}

export interface OpenedModel {
  model: OrtSliceModel;
  identity: ModelIdentity;
  /** Provider the session actually runs on. */
  device: Device;
  /** How the device was chosen (and why CUDA was skipped, if it was). */
  deviceNote: string;
  /** How to get CUDA when `auto` ran on CPU; print it where a GPU is visible, or when verbose. */
  cudaHint?: string;
  gpuVisible: boolean;
}

/** Load an ONNX segmentation model from a file with the requested execution provider. */
export async function openModelFile(path: string, opts: OpenModelOptions = {}): Promise<OpenedModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new InputError(`cannot read model (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, path);
  }
  return openModelBytes(bytes, path, opts);
}

/** Open a model held in memory (an export being calibrated, say); `path` names it in messages. */
export async function openModelBytes(bytes: Uint8Array, path: string, opts: OpenModelOptions = {}): Promise<OpenedModel> {
  const plan = planDevice(opts.device ?? 'auto');
  let lastError: unknown;
  for (const device of plan.candidates) {
    try {
      const opened = await createSliceModel(bytes, sessionRuntime(), sessionOptionsFor(device, opts), path);
      const fellBack = device !== plan.candidates[0];
      const note = fellBack ? `${plan.note}; CUDA session failed (${firstLine(lastError)}), using CPU` : plan.note;
      return { ...opened, device, deviceNote: note, cudaHint: plan.cudaHint, gpuVisible: plan.gpuVisible };
    } catch (err) {
      // Card and contract errors are the model's fault, not the provider's: no fallback.
      if (device === 'cpu' || plan.requested !== 'auto' || isCardError(err)) throw err;
      lastError = err;
    }
  }
  throw lastError;
}

/**
 * Native sessions run in a worker thread (ort-node-worker.ts) so the pipeline's own work overlaps
 * the model; ALHVR_ORT_WORKER=0 runs them on the calling thread (to compare, or to rule it out).
 * The WebAssembly fallback already computes off the calling thread.
 */
function sessionRuntime(): OrtRuntime {
  if (ortRuntime === 'onnxruntime-node' && process.env.ALHVR_ORT_WORKER !== '0') return workerOrtRuntime('onnxruntime-node');
  return ort as unknown as OrtRuntime;
}

function firstLine(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

function isCardError(err: unknown): boolean {
  return err instanceof InputError && !/ONNX Runtime could not load/.test(err.message);
}
