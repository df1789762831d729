// The page side of the segmentation worker: same results as segmentNifti / segmentDicom, computed
// off the main thread, with progress and cancel. Imports no ONNX Runtime code itself.
import { Volume, type ModelCard, type VoxelArray } from '@alhvr/core';
import type { SliceOutputKind } from '@alhvr/inference';
import type { SegmentNiftiResult } from './segment-nifti.js';
import type { ExecutionProvider } from './load-model.js';
import type { OpenedModelInfo, RuntimeInfo, SegmentInput, WorkerReply, WorkerRequest } from './worker-protocol.js';

export type { SegmentInput, RuntimeInfo, OpenedModelInfo } from './worker-protocol.js';
export { REGION_THRESHOLD_3D } from './worker-protocol.js';

/** Rejection of a segmentation stopped by `cancel()`. */
export class SegmentationCancelled extends Error {
  constructor() {
    super('segmentation cancelled');
    this.name = 'SegmentationCancelled';
  }
}

/** A segmentation from the worker, with the image's grey-level window (core's displayWindow rule). */
export interface WorkerSegmentation extends SegmentNiftiResult {
  displayWindow: [number, number];
  /** The case folder alhvr-segment would write (mask/confidence/region NIfTI, seg.dcm for DICOM, report.json), by file name. */
  files: Record<string, Uint8Array>;
}

/** A model opened in the worker: what the page needs to describe it. */
export interface WorkerModel extends RuntimeInfo {
  card: ModelCard;
  available: ReadonlySet<SliceOutputKind>;
  source: string;
  loadMs: number;
}

interface Pending {
  resolve(reply: WorkerReply): void;
  reject(err: Error): void;
  onProgress?: (done: number, total: number) => void;
}

/** Structured cloning keeps a Volume's fields but not its class: give them back their methods. */
function reviveResult(r: SegmentNiftiResult): SegmentNiftiResult {
  const revive = <T extends VoxelArray>(v: Volume<T>) => new Volume<T>(v);
  return { ...r, image: revive(r.image), label: revive(r.label), confidence: revive(r.confidence), region: r.region && revive(r.region) };
}

/**
 * Runs the viewer's segmentation in a Web Worker. `createWorker` starts a worker whose script
 * calls `serveSegmentation(self)`; it is called again after `cancel()`, which ends the old one.
 */
export class SegmentationWorker {
  private worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private openedWith?: { bytes: Uint8Array; source: string; numThreads?: number; executionProvider?: 'auto' | ExecutionProvider };
  private opened?: WorkerModel;

  constructor(private readonly createWorker: () => Worker) {
    this.worker = this.start();
  }

  /** The open model, once `open` has resolved. */
  get model(): WorkerModel | undefined {
    return this.opened;
  }

  private start(): Worker {
    const worker = this.createWorker();
    worker.addEventListener('message', (e: MessageEvent<WorkerReply>) => this.receive(e.data));
    worker.addEventListener('error', (e: ErrorEvent) => this.failAll(new Error(`segmentation worker failed: ${e.message || 'could not start'}`)));
    return worker;
  }

  private receive(reply: WorkerReply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    if (reply.type === 'progress') {
      waiting.onProgress?.(reply.done, reply.total);
      return;
    }
    this.pending.delete(reply.id);
    if (reply.type === 'failed') waiting.reject(new Error(reply.message));
    else waiting.resolve(reply);
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private send(request: WorkerRequest, transfer: Transferable[], onProgress?: Pending['onProgress']): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject, onProgress });
      this.worker.postMessage(request, transfer);
    });
  }

  /** Open an exported ALHVR model (.onnx bytes) in the worker (`executionProvider`: see LoadModelOptions). */
  async open(bytes: Uint8Array, source: string, numThreads?: number, executionProvider?: 'auto' | ExecutionProvider): Promise<WorkerModel> {
    // The worker gets a copy: the page keeps the bytes to reopen the model after a cancel.
    const copy = bytes.slice();
    const reply = await this.send({ type: 'open', id: this.nextId++, bytes: copy, source, numThreads, executionProvider }, [copy.buffer]);
    const info = (reply as Extract<WorkerReply, { type: 'opened' }>).info;
    this.openedWith = { bytes, source, numThreads, executionProvider };
    this.opened = toModel(info, source);
    return this.opened;
  }

  /** Segment one input; `onProgress` gets (done, total) after each model call: slices for a 2D model, sliding windows for a 3D one. */
  async segment(input: SegmentInput, onProgress?: (done: number, total: number) => void): Promise<WorkerSegmentation> {
    if (!this.openedWith) throw new Error('Choose a model (.onnx) first.');
    if (!this.opened) await this.open(this.openedWith.bytes, this.openedWith.source, this.openedWith.numThreads, this.openedWith.executionProvider);
    // The input's bytes move to the worker (no copy); each buffer once, as transfer lists require.
    const buffers = new Set(input.kind === 'nifti' ? [input.bytes.buffer] : input.kind === 'dicom' ? input.files.map((f) => f.bytes.buffer) : []);
    const transfer = [...buffers].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    const reply = await this.send({ type: 'segment', id: this.nextId++, input }, transfer, onProgress);
    const segmented = reply as Extract<WorkerReply, { type: 'segmented' }>;
    return { ...reviveResult(segmented.result), displayWindow: segmented.displayWindow, files: segmented.files };
  }

  /** The last segmentation's region map at threshold γ, from the students' kept confidences (no model run). */
  async regionsAt(gamma: number): Promise<Uint8Array> {
    const reply = await this.send({ type: 'regions', id: this.nextId++, gamma }, []);
    return (reply as Extract<WorkerReply, { type: 'regions' }>).region;
  }

  /**
   * Stop whatever the worker is doing now: pending calls reject with SegmentationCancelled. The
   * worker is replaced; the next `segment` reopens the model first.
   */
  cancel(): void {
    this.worker.terminate();
    this.failAll(new SegmentationCancelled());
    this.opened = undefined;
    this.worker = this.start();
  }

  terminate(): void {
    this.worker.terminate();
    this.failAll(new SegmentationCancelled());
  }
}

function toModel(info: OpenedModelInfo, source: string): WorkerModel {
  return { ...info, available: new Set(info.available), source };
}
