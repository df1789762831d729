// Messages between the page and the segmentation worker (segment-worker.ts ↔ worker-client.ts).
import type { DicomBytesFile, ModelCard } from '@alhvr/core';
import type { SliceOutputKind } from '@alhvr/inference';
import type { ExecutionProvider } from './load-model.js';
import type { SegmentNiftiResult } from './segment-nifti.js';

/**
 * Why the region threshold stays at the model's γ for a 3D model. Its region map is thresholded on
 * the students' confidences averaged over windows at the card's spacing, then carried back to the
 * image grid; the page holds neither, and thresholding the carried-back maps would differ from
 * what alhvr-segment writes at that γ.
 */
export const REGION_THRESHOLD_3D = "3D models keep the card's γ: the window-averaged student confidences stay in the pipeline";

/** What to segment: a NIfTI file's bytes, a DICOM series' files, or a generated phantom. */
export type SegmentInput =
  | { kind: 'nifti'; name: string; bytes: Uint8Array }
  | { kind: 'dicom'; name: string; files: DicomBytesFile[] }
  | { kind: 'phantom'; name: string; seed: number; index: number };

/** How the worker's ONNX Runtime runs, for the page to show. */
export interface RuntimeInfo {
  /** Execution provider: "webgpu", or "wasm" (WebAssembly on the CPU). */
  backend: ExecutionProvider;
  /** Why WebGPU was not used, completing "WebGPU not used: …" (absent when it was, or when wasm was asked for). */
  fallback?: string;
  threads: number;
  /** The page (and so the worker) is cross-origin isolated: wasm threads are possible. */
  crossOriginIsolated: boolean;
}

export interface OpenedModelInfo extends RuntimeInfo {
  card: ModelCard;
  available: SliceOutputKind[];
  /** Milliseconds from receiving the bytes to a session ready to run. */
  loadMs: number;
}

export type WorkerRequest =
  | { type: 'open'; id: number; bytes: Uint8Array; source: string; numThreads?: number; executionProvider?: 'auto' | ExecutionProvider }
  | { type: 'segment'; id: number; input: SegmentInput }
  | { type: 'regions'; id: number; gamma: number };

export type WorkerReply =
  | { type: 'opened'; id: number; info: OpenedModelInfo }
  | { type: 'progress'; id: number; done: number; total: number }
  | { type: 'segmented'; id: number; result: SegmentNiftiResult; displayWindow: [number, number]; files: Record<string, Uint8Array> }
  | { type: 'regions'; id: number; region: Uint8Array }
  | { type: 'failed'; id: number; message: string };
