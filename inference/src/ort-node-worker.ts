// onnxruntime-node runs a session synchronously on the calling thread (its `run` is a
// setImmediate around a blocking native call). On the main thread that serialises everything
// else alhvr-segment does — reading and decoding the next case, statistics, previews, writing —
// behind every batch. This module runs the native session in a worker thread instead, so the
// main thread's work fills the cores while the model computes. ort-node.ts still owns which
// runtime is used and the telemetry guard; the worker loads the very package it loaded.
import './no-telemetry.js';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { OrtRuntime, OrtSession, OrtTensorLike } from './session.js';

interface WireTensor {
  type: string;
  data: Float32Array | Uint8Array | BigInt64Array | Int32Array;
  dims: number[];
}

type Request =
  | { kind: 'create'; bytes: Uint8Array; options: unknown }
  | { kind: 'run'; feeds: Record<string, WireTensor>; fetches?: readonly string[] }
  | { kind: 'release' };

type Reply = { id: number; error?: string; value?: unknown };

// Plain JavaScript evaluated in the worker, so it runs the same from the TypeScript sources
// (tests), the built package and tsx. Output buffers are transferred, not copied, when the
// runtime allows it (each output owns its buffer; duplicates would throw, so they are copied).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
if (process.env.ORT_DISABLE_TELEMETRY !== '1') throw new Error('telemetry guard missing in the ONNX Runtime worker');
let ort;
let session;
const wire = (t) => ({ type: t.type, data: t.data, dims: Array.from(t.dims) });
parentPort.on('message', async (msg) => {
  try {
    if (msg.kind === 'create') {
      ort = await import(workerData.ortUrl);
      session = await ort.InferenceSession.create(msg.bytes, msg.options);
      parentPort.postMessage({ id: msg.id, value: { inputNames: session.inputNames, outputNames: session.outputNames, outputMetadata: session.outputMetadata } });
    } else if (msg.kind === 'run') {
      const feeds = {};
      for (const [name, t] of Object.entries(msg.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      const results = await session.run(feeds, msg.fetches);
      const value = {};
      const transfer = new Set();
      for (const [name, t] of Object.entries(results)) {
        const w = wire(t);
        if (transfer.has(w.data.buffer)) w.data = w.data.slice();
        transfer.add(w.data.buffer);
        value[name] = w;
      }
      try {
        parentPort.postMessage({ id: msg.id, value }, [...transfer]);
      } catch {
        parentPort.postMessage({ id: msg.id, value });
      }
    } else if (msg.kind === 'release') {
      if (session) await session.release();
      session = undefined;
      parentPort.postMessage({ id: msg.id });
    }
  } catch (err) {
    parentPort.postMessage({ id: msg.id, error: err && err.message ? err.message : String(err) });
  }
});
`;

class WorkerSession implements OrtSession {
  inputNames: readonly string[] = [];
  outputNames: readonly string[] = [];
  outputMetadata?: readonly { name: string; isTensor: boolean; type?: string }[];
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  constructor(private readonly worker: Worker) {
    worker.on('message', (reply: Reply) => {
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      if (reply.error !== undefined) w.reject(new Error(reply.error));
      else w.resolve(reply.value);
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const w of this.waiting.values()) w.reject(this.failure);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the ONNX Runtime worker exited (code ${code})`)));
    // Idle, the worker must not keep the process alive (a caller that forgets release()).
    worker.unref();
  }

  call(req: Request, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    return this.callLive(req, transfer);
  }

  private callLive(req: Request, transfer: ArrayBuffer[] = []): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...req, id }, transfer);
    });
  }

  async run(feeds: Record<string, WireTensor>, fetches?: readonly string[]): Promise<Record<string, OrtTensorLike>> {
    const sent: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, t] of Object.entries(feeds)) {
      // The caller keeps its batch buffer (and may reuse it): send a copy of exactly the view.
      const data = t.data.slice();
      transfer.push(data.buffer as ArrayBuffer);
      sent[name] = { type: t.type, data, dims: [...t.dims] };
    }
    return (await this.call({ kind: 'run', feeds: sent, fetches }, transfer)) as Record<string, OrtTensorLike>;
  }

  async release(): Promise<void> {
    const live = !this.failure;
    this.failure ??= new Error('the ONNX Runtime session was released');
    if (live) await this.callLive({ kind: 'release' }).catch(() => undefined);
    await this.worker.terminate();
  }
}

/** A tensor as the worker protocol carries it; the worker builds the real one. */
class WireTensorValue implements WireTensor {
  readonly dims: number[];
  constructor(
    readonly type: 'float32',
    readonly data: Float32Array,
    dims: readonly number[],
  ) {
    this.dims = [...dims];
  }
}

/**
 * An `OrtRuntime` whose sessions live in a worker thread running onnxruntime-node; `packageName`
 * is the module ort-node.ts loaded, resolved here so the worker loads the same files.
 */
export function workerOrtRuntime(packageName: string): OrtRuntime {
  const ortUrl = pathToFileURL(createRequire(import.meta.url).resolve(packageName)).href;
  return {
    Tensor: WireTensorValue,
    InferenceSession: {
      async create(bytes: Uint8Array, options?: unknown): Promise<OrtSession> {
        const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortUrl }, env: { ...process.env, ORT_DISABLE_TELEMETRY: '1' } });
        const session = new WorkerSession(worker);
        try {
          const info = (await session.call({ kind: 'create', bytes: bytes.slice(), options })) as Pick<OrtSession, 'inputNames' | 'outputNames' | 'outputMetadata'>;
          session.inputNames = info.inputNames;
          session.outputNames = info.outputNames;
          session.outputMetadata = info.outputMetadata;
        } catch (err) {
          await worker.terminate();
          throw err;
        }
        return session;
      },
    },
  };
}
