// SegmentationWorker's bookkeeping of case files, with scripted workers (no browser, no model):
// the files a case-file worker sends reach the study they belong to, whichever of the result and
// the files comes first, and a study replaced by the next one never gets files again.
import { afterEach, describe, expect, test } from 'vitest';
import { Volume, type Mat4 } from '@alhvr/core';
import { CaseFilesAbandoned, SegmentationWorker } from './worker-client.js';
import type { WorkerReply, WorkerRequest } from './worker-protocol.js';

const IDENTITY: Mat4 = [
  [1, 0, 0, 0],
  [0, 1, 0, 0],
  [0, 0, 1, 0],
  [0, 0, 0, 1],
];

/** A Worker the test answers for: it records what the client sends and replies on demand. */
class ScriptedWorker {
  readonly sent: WorkerRequest[] = [];
  terminated = false;
  private readonly listeners: ((e: { data: WorkerReply }) => void)[] = [];

  addEventListener(type: string, listener: (e: { data: WorkerReply }) => void): void {
    if (type === 'message') this.listeners.push(listener);
  }

  postMessage(request: WorkerRequest): void {
    this.sent.push(request);
  }

  terminate(): void {
    this.terminated = true;
  }

  reply(data: WorkerReply): void {
    for (const l of this.listeners) l({ data });
  }

  last<T extends WorkerRequest['type']>(type: T): Extract<WorkerRequest, { type: T }> {
    const found = this.sent.filter((r) => r.type === type).at(-1);
    if (!found) throw new Error(`no ${type} request was sent`);
    return found as Extract<WorkerRequest, { type: T }>;
  }
}

const workers: ScriptedWorker[] = [];

afterEach(() => {
  // The channels' ports the client handed out: closed, so nothing keeps the test process alive.
  for (const w of workers.splice(0)) for (const r of w.sent) if (r.type === 'case-files-port') r.port.close();
});

async function openedClient(): Promise<{ client: SegmentationWorker; segmenter: ScriptedWorker }> {
  const client = new SegmentationWorker(() => {
    const w = new ScriptedWorker();
    workers.push(w);
    return w as unknown as Worker;
  });
  const segmenter = workers[0];
  const opening = client.open(new Uint8Array([1, 2, 3]), 'model.onnx');
  const card = { name: 'test', classes: [], input: { size: [1, 1] } };
  segmenter.reply({ type: 'opened', id: segmenter.last('open').id, info: { card, available: [], backend: 'wasm', threads: 1, crossOriginIsolated: false, loadMs: 1 } } as unknown as WorkerReply);
  await opening;
  return { client, segmenter };
}

/** A 'segmented' reply for request `id`: a one-voxel result whose mask and confidence come later. */
function segmentedReply(id: number, report: string): WorkerReply {
  const vol = <T extends Uint8Array | Float32Array>(data: T) => new Volume({ data, dims: [1, 1, 1], affine: IDENTITY });
  const result = { image: vol(new Float32Array(1)), label: vol(new Uint8Array(1)), confidence: vol(new Float32Array(1)) };
  return {
    type: 'segmented',
    id,
    result,
    displayWindow: [0, 1],
    segmentedAt: 0,
    fileNames: ['mask.nii.gz', 'confidence.nii.gz', 'report.json'],
    ready: { 'report.json': new TextEncoder().encode(report) },
  } as unknown as WorkerReply;
}

const bytes = (s: string) => new TextEncoder().encode(s);
const text = async (p: Promise<Uint8Array>) => new TextDecoder().decode(await p);

describe('SegmentationWorker case files', () => {
  test('a file that arrives before its result still resolves that result’s promise; report.json comes with the result', async () => {
    const { client, segmenter } = await openedClient();
    const segmenting = client.segment({ kind: 'phantom', name: 'a', seed: 1, index: 0 });
    const filesWorker = workers[1];
    // The segmentation worker was given the sending end of a channel to the case-file worker.
    expect(segmenter.last('case-files-port').role).toBe('send');
    expect(filesWorker.last('case-files-port').role).toBe('receive');
    const id = segmenter.last('segment').id;
    filesWorker.reply({ type: 'case-file', id, name: 'mask.nii.gz', bytes: bytes('mask of a') });
    segmenter.reply(segmentedReply(id, 'report of a'));
    const r = await segmenting;
    expect(Object.keys(r.files)).toEqual(['mask.nii.gz', 'confidence.nii.gz', 'report.json']);
    expect(await text(r.files['mask.nii.gz'])).toBe('mask of a');
    expect(await text(r.files['report.json'])).toBe('report of a');
    filesWorker.reply({ type: 'case-file-failed', id, name: 'confidence.nii.gz', message: 'disk full' });
    await expect(r.files['confidence.nii.gz']).rejects.toThrow('disk full');
  });

  test('the next segmentation stops the last study’s unmade files: they reject as abandoned, and nothing of it reaches the new study', async () => {
    const { client, segmenter } = await openedClient();
    const first = client.segment({ kind: 'phantom', name: 'a', seed: 1, index: 0 });
    const firstFiles = workers[1];
    const a = segmenter.last('segment').id;
    segmenter.reply(segmentedReply(a, 'report of a'));
    const ra = await first;
    firstFiles.reply({ type: 'case-file', id: a, name: 'mask.nii.gz', bytes: bytes('mask of a') });

    const second = client.segment({ kind: 'phantom', name: 'b', seed: 2, index: 0 });
    // The case-file worker making a's confidence ended; a new one (with a new channel) serves b.
    expect(firstFiles.terminated).toBe(true);
    expect(workers.length).toBe(3);
    const secondFiles = workers[2];
    expect(segmenter.sent.filter((r) => r.type === 'case-files-port').length).toBe(2);
    await expect(ra.files['confidence.nii.gz']).rejects.toBeInstanceOf(CaseFilesAbandoned);
    expect(await text(ra.files['mask.nii.gz'])).toBe('mask of a'); // made before: kept

    const b = segmenter.last('segment').id;
    // A late file of the old study, under its own id, goes nowhere.
    firstFiles.reply({ type: 'case-file', id: a, name: 'confidence.nii.gz', bytes: bytes('confidence of a') });
    segmenter.reply(segmentedReply(b, 'report of b'));
    const rb = await second;
    secondFiles.reply({ type: 'case-file', id: b, name: 'mask.nii.gz', bytes: bytes('mask of b') });
    secondFiles.reply({ type: 'case-file', id: b, name: 'confidence.nii.gz', bytes: bytes('confidence of b') });
    secondFiles.reply({ type: 'case-files-done', id: b });
    expect(await text(rb.files['mask.nii.gz'])).toBe('mask of b');
    expect(await text(rb.files['confidence.nii.gz'])).toBe('confidence of b');
    expect(await text(rb.files['report.json'])).toBe('report of b');
    await expect(ra.files['confidence.nii.gz']).rejects.toBeInstanceOf(CaseFilesAbandoned);
  });

  test('a job that ends without a file rejects it; a finished study does not make the next one restart the case-file worker', async () => {
    const { client, segmenter } = await openedClient();
    const first = client.segment({ kind: 'phantom', name: 'a', seed: 1, index: 0 });
    const filesWorker = workers[1];
    const a = segmenter.last('segment').id;
    filesWorker.reply({ type: 'case-file', id: a, name: 'mask.nii.gz', bytes: bytes('mask of a') });
    filesWorker.reply({ type: 'case-files-done', id: a });
    segmenter.reply(segmentedReply(a, 'report of a'));
    const ra = await first;
    expect(await text(ra.files['mask.nii.gz'])).toBe('mask of a');
    await expect(ra.files['confidence.nii.gz']).rejects.toThrow('not made');
    const second = client.segment({ kind: 'phantom', name: 'b', seed: 2, index: 0 });
    expect(filesWorker.terminated).toBe(false);
    expect(workers.length).toBe(2);
    segmenter.reply({ type: 'failed', id: segmenter.last('segment').id, message: 'b.nii.gz: not a NIfTI file' });
    await expect(second).rejects.toThrow('not a NIfTI file');
  });
});
