// The worker side of SegmentationWorker: opens the model and segments in a Web Worker, so the
// page's main thread only draws and answers the user while ONNX Runtime works.
import { displayWindow, encodeNifti, generatePhantomCase } from '@alhvr/core';
import { caseFiles } from './case-files.js';
import { loadModel, type ViewerModel } from './load-model.js';
import { segmentDicom } from './segment-dicom.js';
import { segmentNifti, type SegmentNiftiResult } from './segment-nifti.js';
import type { SegmentInput, WorkerReply, WorkerRequest } from './worker-protocol.js';

/** The part of a DedicatedWorkerGlobalScope this module uses. */
export interface WorkerScope {
  addEventListener(type: 'message', listener: (e: MessageEvent<WorkerRequest>) => void): void;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
}

/** Buffers behind the result's voxel arrays, each once (a transfer list must not repeat one). */
function resultBuffers(r: SegmentNiftiResult, files: Record<string, Uint8Array>): Transferable[] {
  const buffers = new Set<ArrayBufferLike>();
  for (const v of [r.image, r.label, r.confidence, r.region]) if (v) buffers.add(v.data.buffer);
  for (const bytes of Object.values(files)) buffers.add(bytes.buffer);
  return [...buffers].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
}

function segmentInput(input: SegmentInput, model: ViewerModel, onProgress: (done: number, total: number) => void): Promise<SegmentNiftiResult> {
  const opts = { path: input.name, onProgress };
  switch (input.kind) {
    case 'nifti':
      return segmentNifti(input.bytes, model, opts);
    case 'dicom':
      return segmentDicom(input.files, model, opts);
    case 'phantom':
      return segmentNifti(encodeNifti(generatePhantomCase({ seed: input.seed, index: input.index }).image), model, opts);
  }
}

/** Answer WorkerRequests on `scope` (the worker's global scope). */
export function serveSegmentation(scope: WorkerScope): void {
  let model: ViewerModel | undefined;
  // One request at a time, in order: a segmentation never sees a half-opened model.
  let queue: Promise<void> = Promise.resolve();

  async function handle(request: WorkerRequest): Promise<void> {
    try {
      if (request.type === 'open') {
        const t0 = performance.now();
        const opened = await loadModel(request.bytes, { numThreads: request.numThreads, source: request.source });
        await model?.release();
        model = opened;
        scope.postMessage({
          type: 'opened',
          id: request.id,
          info: {
            card: opened.card,
            available: [...opened.model.available],
            backend: 'wasm',
            threads: opened.threads,
            crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
            loadMs: performance.now() - t0,
          },
        });
        return;
      }
      if (!model) throw new Error('no model is open');
      const result = await segmentInput(request.input, model, (done, total) => scope.postMessage({ type: 'progress', id: request.id, done, total }));
      // The grey-level window and the case files (gzip, DICOM SEG) are done here, not on the page's thread.
      const files = caseFiles(result, model.identity, { backend: 'wasm', threads: model.threads }, request.input.name);
      const window = displayWindow(result.image.data);
      scope.postMessage({ type: 'segmented', id: request.id, result, displayWindow: window, files }, resultBuffers(result, files));
    } catch (err) {
      scope.postMessage({ type: 'failed', id: request.id, message: err instanceof Error ? err.message : String(err) });
    }
  }

  scope.addEventListener('message', (e) => {
    queue = queue.then(() => handle(e.data));
  });
}
