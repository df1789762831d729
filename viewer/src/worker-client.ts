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

/** Why a study's case file was not made: a new segmentation (or cancel) stopped the making. */
export class CaseFilesAbandoned extends Error {
  constructor() {
    super('not made: another file was opened');
    this.name = 'CaseFilesAbandoned';
  }
}

/** A segmentation from the worker, with the image's grey-level window (core's displayWindow rule). */
export interface WorkerSegmentation extends SegmentNiftiResult {
  displayWindow: [number, number];
  /** Epoch milliseconds (performance.timeOrigin + now) at which the pipeline returned in the worker. */
  segmentedAt: number;
  /**
   * The case folder alhvr-segment would write (mask/confidence/region NIfTI, seg.dcm for DICOM,
   * report.json), by file name in its order. Each resolves with the file's bytes once made:
   * report.json with the result, the maps afterwards in a second worker. A file rejects with its
   * one-line error, or with CaseFilesAbandoned when the next `segment` (or `cancel`) came first.
   */
  files: Record<string, Promise<Uint8Array>>;
}

/** A model opened in the worker: what the page needs to describe it. */
export interface WorkerModel extends RuntimeInfo {
  card: ModelCard;
  available: ReadonlySet<SliceOutputKind>;
  source: string;
  loadMs: number;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((ok, no) => ((resolve = ok), (reject = no)));
  // A caller may never look at a file: its rejection is then no unhandled-rejection report.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * One study's case files on the page's side. Files come from the case-file worker, which may
 * answer before the segmentation worker's result arrives (two channels, no common order): each
 * file's promise is made by whichever comes first, its request or its arrival.
 */
class CaseFilesJob {
  private readonly files = new Map<string, Deferred<Uint8Array>>();
  /** Set once no more files will come: why the missing ones are missing. */
  private ended?: () => Error;

  file(name: string): Deferred<Uint8Array> {
    let d = this.files.get(name);
    if (!d) {
      d = deferred<Uint8Array>();
      this.files.set(name, d);
      if (this.ended) d.reject(this.ended());
    }
    return d;
  }

  /** No more files: those not made reject with `why` (settled ones keep their value). */
  end(why: () => Error): void {
    this.ended ??= why;
    for (const d of this.files.values()) d.reject(why());
  }
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
  /** The worker that makes case files (another instance of the same script), started with the first segmentation. */
  private filesWorker?: Worker;
  /** Case files still to come, by segment request id. */
  private readonly filesJobs = new Map<number, CaseFilesJob>();
  private filesHeld = false;

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

  /**
   * Start the case-file worker, if none runs, with a channel from the segmentation worker to it:
   * jobs (the maps' copies) go from worker to worker, the files come to this page.
   */
  private ensureFilesWorker(): void {
    if (this.filesWorker) return;
    const worker = this.createWorker();
    worker.addEventListener('message', (e: MessageEvent<WorkerReply>) => this.receiveFile(e.data));
    worker.addEventListener('error', (e: ErrorEvent) => this.endFiles(() => new Error(`not made: the case-file worker failed (${e.message || 'could not start'})`)));
    if (this.filesHeld) worker.postMessage({ type: 'hold-case-files', id: 0, hold: true } satisfies WorkerRequest);
    const channel = new MessageChannel();
    worker.postMessage({ type: 'case-files-port', id: 0, role: 'receive', port: channel.port1 } satisfies WorkerRequest, [channel.port1]);
    this.worker.postMessage({ type: 'case-files-port', id: 0, role: 'send', port: channel.port2 } satisfies WorkerRequest, [channel.port2]);
    this.filesWorker = worker;
  }

  private receiveFile(reply: WorkerReply): void {
    const job = this.filesJobs.get(reply.id);
    if (!job) return;
    if (reply.type === 'case-file') job.file(reply.name).resolve(reply.bytes);
    else if (reply.type === 'case-file-failed') job.file(reply.name).reject(new Error(reply.message));
    else if (reply.type === 'case-files-done' || reply.type === 'failed') {
      const why = reply.type === 'failed' ? reply.message : 'not made';
      job.end(() => new Error(why));
      this.filesJobs.delete(reply.id);
    }
  }

  private endFiles(why: () => Error): void {
    for (const job of this.filesJobs.values()) job.end(why);
    this.filesJobs.clear();
  }

  /**
   * Stop making the case files still to come: the case-file worker ends (a file being compressed
   * stops now, not when done), those files reject with CaseFilesAbandoned, and nothing of them can
   * reach a later study.
   */
  private abandonFiles(): void {
    if (this.filesJobs.size === 0) return;
    this.filesWorker?.terminate();
    this.filesWorker = undefined;
    this.endFiles(() => new CaseFilesAbandoned());
  }

  /**
   * For tests: while held, case files wait before being made (the result is shown, its downloads
   * stay "preparing"), so a test can observe that state without timing anything.
   */
  holdCaseFiles(hold: boolean): void {
    this.filesHeld = hold;
    this.filesWorker?.postMessage({ type: 'hold-case-files', id: 0, hold } satisfies WorkerRequest);
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
    // A new study: the last one's unmade files are dropped and the CPU goes to this one.
    this.abandonFiles();
    if (!this.opened) await this.open(this.openedWith.bytes, this.openedWith.source, this.openedWith.numThreads, this.openedWith.executionProvider);
    // The input's bytes move to the worker (no copy); each buffer once, as transfer lists require.
    const buffers = new Set(input.kind === 'nifti' ? [input.bytes.buffer] : input.kind === 'dicom' ? input.files.map((f) => f.bytes.buffer) : []);
    const transfer = [...buffers].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    this.ensureFilesWorker();
    const id = this.nextId++;
    const job = new CaseFilesJob();
    this.filesJobs.set(id, job);
    let segmented: Extract<WorkerReply, { type: 'segmented' }>;
    try {
      segmented = (await this.send({ type: 'segment', id, input }, transfer, onProgress)) as Extract<WorkerReply, { type: 'segmented' }>;
    } catch (err) {
      // No result, no files (a cancel has already ended them).
      job.end(() => new CaseFilesAbandoned());
      this.filesJobs.delete(id);
      throw err;
    }
    const files: Record<string, Promise<Uint8Array>> = {};
    for (const name of segmented.fileNames) {
      const ready = segmented.ready[name];
      files[name] = ready ? Promise.resolve(ready) : job.file(name).promise;
    }
    return { ...reviveResult(segmented.result), displayWindow: segmented.displayWindow, segmentedAt: segmented.segmentedAt, files };
  }

  /** The last segmentation's region map at threshold γ, from the students' kept confidences (no model run). */
  async regionsAt(gamma: number): Promise<Uint8Array> {
    const reply = await this.send({ type: 'regions', id: this.nextId++, gamma }, []);
    return (reply as Extract<WorkerReply, { type: 'regions' }>).region;
  }

  /**
   * Stop whatever the worker is doing now: pending calls reject with SegmentationCancelled (and
   * unmade case files with CaseFilesAbandoned). The worker is replaced; the next `segment` reopens
   * the model first.
   */
  cancel(): void {
    this.abandonFiles();
    // The case-file worker's channel ends with this worker: the next segmentation starts another.
    this.filesWorker?.terminate();
    this.filesWorker = undefined;
    this.worker.terminate();
    this.failAll(new SegmentationCancelled());
    this.opened = undefined;
    this.worker = this.start();
  }

  terminate(): void {
    this.abandonFiles();
    this.filesWorker?.terminate();
    this.filesWorker = undefined;
    this.worker.terminate();
    this.failAll(new SegmentationCancelled());
  }
}

function toModel(info: OpenedModelInfo, source: string): WorkerModel {
  return { ...info, available: new Set(info.available), source };
}
