// Messages between the page and the segmentation worker (segment-worker.ts ↔ worker-client.ts).
import type { DicomBytesFile, ModelCard } from '@alhvr/core';
import type { ModelIdentity, SliceOutputKind } from '@alhvr/inference';
import type { CaseMaps } from './case-files.js';
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

/**
 * What a worker needs to make a study's map files (mask, confidence, region NIfTI, DICOM SEG) after
 * the result has gone to the page: copies of the maps at the model card's γ, and the model.
 */
export interface CaseFilesJob {
  /** The files to make, each of CASE_FILE_NAMES but report.json (which comes with the result). */
  names: string[];
  maps: CaseMaps;
  identity: ModelIdentity;
}

export type WorkerRequest =
  | { type: 'open'; id: number; bytes: Uint8Array; source: string; numThreads?: number; executionProvider?: 'auto' | ExecutionProvider }
  | { type: 'segment'; id: number; input: SegmentInput }
  | { type: 'regions'; id: number; gamma: number }
  /**
   * The channel between the segmentation worker and the case-file worker (another instance of
   * the same script): the first sends its jobs on it ("send"), the second takes them from it
   * ("receive"), so the maps' copies never pass through the page's thread.
   */
  | { type: 'case-files-port'; id: number; role: 'send' | 'receive'; port: MessagePort }
  /**
   * Make a study's map files (sent on the case-files port; `id` is the segment request's): a
   * 'case-file' reply to the page per file (fast ones first), then 'case-files-done'.
   */
  | { type: 'case-files'; id: number; job: CaseFilesJob }
  /**
   * For tests: while held, 'case-files' jobs wait before their first file, so a test can see the
   * page between a result and its downloads without timing anything. Answered at once, out of turn.
   */
  | { type: 'hold-case-files'; id: number; hold: boolean };

export type WorkerReply =
  | { type: 'opened'; id: number; info: OpenedModelInfo }
  | { type: 'progress'; id: number; done: number; total: number }
  | {
      type: 'segmented';
      id: number;
      result: SegmentNiftiResult;
      displayWindow: [number, number];
      /** Epoch milliseconds (performance.timeOrigin + now) at which the pipeline returned in the worker. */
      segmentedAt: number;
      /** The case folder's file names, in alhvr-segment's order. */
      fileNames: string[];
      /** Files made with the result (report.json: it is small), by name; the case-file worker makes the others. */
      ready: Record<string, Uint8Array>;
    }
  | { type: 'case-file'; id: number; name: string; bytes: Uint8Array }
  | { type: 'case-file-failed'; id: number; name: string; message: string }
  | { type: 'case-files-done'; id: number }
  | { type: 'regions'; id: number; region: Uint8Array }
  | { type: 'failed'; id: number; message: string };
