// The worker side of SegmentationWorker: opens the model and segments in a Web Worker, so the
// page's main thread only draws and answers the user while ONNX Runtime works.
import { displayWindow, encodeNifti, generateAbdomenCtCase, generatePhantomCase, PlaneResizer, Volume, type ModelCard, type VoxelArray } from '@alhvr/core';
import { canonicalGrid, scatterPlane, type ModelResolutionTap, type SliceOutputs } from '@alhvr/inference';
import { CASE_FILE_NAMES, caseFileNames, caseMapFile, caseReportFile, type CaseMaps } from './case-files.js';
import { loadModel, type ViewerModel } from './load-model.js';
import { segmentDicom } from './segment-dicom.js';
import { segmentNifti, type SegmentNiftiResult } from './segment-nifti.js';
import { REGION_THRESHOLD_3D, type CaseFilesJob, type SegmentInput, type WorkerReply, type WorkerRequest } from './worker-protocol.js';

/** The part of a DedicatedWorkerGlobalScope this module uses. */
export interface WorkerScope {
  addEventListener(type: 'message', listener: (e: MessageEvent<WorkerRequest>) => void): void;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
}

/** Buffers behind the given arrays, each once (a transfer list must not repeat one). */
function transferList(arrays: (ArrayBufferView | undefined)[]): Transferable[] {
  const buffers = new Set<ArrayBufferLike>();
  for (const a of arrays) if (a) buffers.add(a.buffer);
  return [...buffers].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
}

/** The voxel arrays of a job's maps (for its transfer list). */
const caseMapArrays = (maps: CaseMaps): ArrayBufferView[] => [maps.label.data, maps.confidence.data, ...(maps.region ? [maps.region.data] : [])];

/** A map's own copy: the page gets the result's arrays, the case files are made from these. */
const copyOf = <T extends Uint8Array | Float32Array>(v: Volume<T>): Volume<T> => v.withData(v.data.slice() as T);

/**
 * The order a job makes its files in: the small uint8 maps first, so they can be saved while the
 * float32 confidence map (most of the gzip time: 24 s of CPU for a 512×512×300 CT) is compressed.
 */
const MAKE_ORDER = [CASE_FILE_NAMES.mask, CASE_FILE_NAMES.region, CASE_FILE_NAMES.seg, CASE_FILE_NAMES.confidence];

/** Structured cloning keeps a Volume's fields but not its class (spacing, voxelCount): give them back. */
const revive = <T extends VoxelArray>(v: Volume<T>): Volume<T> => new Volume<T>(v);

/** The two students' confidences of the last study at model resolution: what a new region threshold needs. */
interface StudentConfidences {
  /** Per slice: student A's plane, then student B's. */
  planes: Float32Array[];
  planeSize: number;
}

/** Keeps each batch's student confidences (a tap: the pipeline's own outputs, no second model run). */
function studentTap(kept: StudentConfidences): ModelResolutionTap {
  return {
    fetch: ['studentConfidence'],
    onBatch(out: SliceOutputs, _reference, count, planeSize) {
      kept.planeSize = planeSize;
      const student = out.studentConfidence as Float32Array;
      for (let b = 0; b < count; b++) kept.planes.push(student.slice(2 * b * planeSize, 2 * (b + 1) * planeSize));
    },
  };
}

/**
 * The region map at threshold γ on the image's grid, by the pipeline's rule (3 − the number of
 * students whose confidence exceeds γ) and its carrying back of model-resolution maps.
 */
export function regionsAt(gamma: number, kept: StudentConfidences, result: SegmentNiftiResult, card: ModelCard): Uint8Array {
  const grid = canonicalGrid(result.image.dims, result.orientation);
  const [width, height] = grid.dims;
  const [mw, mh] = card.input.size;
  const back = new PlaneResizer(mw, mh, width, height, card.resize.labelBack);
  const modelPlane = new Uint8Array(kept.planeSize);
  const sourcePlane = new Uint8Array(width * height);
  const region = new Uint8Array(result.image.voxelCount);
  kept.planes.forEach((student, k) => {
    for (let p = 0; p < kept.planeSize; p++) modelPlane[p] = 3 - (student[p] > gamma ? 1 : 0) - (student[kept.planeSize + p] > gamma ? 1 : 0);
    back.resize(modelPlane, 0, sourcePlane, 0);
    scatterPlane(grid, sourcePlane, k, region);
  });
  return region;
}

function segmentInput(input: SegmentInput, model: ViewerModel, onProgress: (done: number, total: number) => void, tap?: ModelResolutionTap): Promise<SegmentNiftiResult> {
  const opts = { path: input.name, onProgress, tap };
  switch (input.kind) {
    case 'nifti':
      return segmentNifti(input.bytes, model, opts);
    case 'dicom':
      return segmentDicom(input.files, model, opts);
    case 'phantom': {
      // The phantom the model is for: a cardiac MR stack for 2D models, an abdominal CT for 3D
      // ones (a 128² matrix: a sample that takes seconds, not a 512² scan).
      const image = model.card.dimensions === 3 ? generateAbdomenCtCase({ seed: input.seed, index: input.index, matrix: 128 }).image : generatePhantomCase({ seed: input.seed, index: input.index }).image;
      return segmentNifti(encodeNifti(image), model, opts);
    }
  }
}

/** Answer WorkerRequests on `scope` (the worker's global scope). */
export function serveSegmentation(scope: WorkerScope): void {
  let model: ViewerModel | undefined;
  // The last study, for new region thresholds (its voxel arrays went to the page; geometry stays valid).
  let last: { result: SegmentNiftiResult; students: StudentConfidences; card: ModelCard } | undefined;
  // One request at a time, in order: a segmentation never sees a half-opened model.
  let queue: Promise<void> = Promise.resolve();
  // Where this worker sends case-file jobs (set by the page; without one, no map files are made).
  let filesPort: MessagePort | undefined;

  async function handle(request: WorkerRequest): Promise<void> {
    try {
      if (request.type === 'open') {
        const t0 = performance.now();
        const opened = await loadModel(request.bytes, { numThreads: request.numThreads, source: request.source, executionProvider: request.executionProvider });
        await model?.release();
        model = opened;
        scope.postMessage({
          type: 'opened',
          id: request.id,
          info: {
            card: opened.card,
            available: [...opened.model.available],
            backend: opened.executionProvider,
            fallback: opened.fallback,
            threads: opened.threads,
            crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
            loadMs: performance.now() - t0,
          },
        });
        return;
      }
      if (request.type === 'regions') {
        if (model && model.card.dimensions === 3) throw new Error(REGION_THRESHOLD_3D);
        if (!last) throw new Error('no study with two students to threshold');
        if (!(request.gamma >= 0 && request.gamma <= 1)) throw new Error(`region threshold must be in [0, 1] (got ${request.gamma})`);
        const region = regionsAt(request.gamma, last.students, last.result, last.card);
        scope.postMessage({ type: 'regions', id: request.id, region }, [region.buffer]);
        return;
      }
      if (request.type === 'case-files') {
        await held;
        makeCaseFiles(request.id, request.job);
        return;
      }
      if (request.type === 'hold-case-files') return; // answered out of turn, below
      if (request.type === 'case-files-port') {
        if (request.role === 'send') filesPort = request.port;
        else request.port.onmessage = (e: MessageEvent<WorkerRequest>) => receive(e.data);
        return;
      }
      if (!model) throw new Error('no model is open');
      last = undefined;
      const students: StudentConfidences = { planes: [], planeSize: 0 };
      // A 3D model's student confidences are window averages on its own grid, which the pipeline
      // does not hand out: no tap (segmentVolume3d refuses one), and no new thresholds after.
      const tap = model.card.dimensions !== 3 && model.model.available.has('studentConfidence') ? studentTap(students) : undefined;
      const result = await segmentInput(request.input, model, (done, total) => scope.postMessage({ type: 'progress', id: request.id, done, total }), tap);
      if (tap) last = { result, students, card: model.card };
      const segmentedAt = performance.timeOrigin + performance.now();
      // The result goes to the page now; the map files (gzip, DICOM SEG) are made afterwards from
      // copies, by the case-file worker (sent on its port, not through the page), so this worker
      // stays free for a new threshold or file. Only report.json, which is small, comes with the result.
      const device = { backend: model.executionProvider, threads: model.threads, fallback: model.fallback };
      const fileNames = caseFileNames(result);
      const report = caseReportFile(result, model.identity, device, request.input.name);
      const maps: CaseMaps = { label: copyOf(result.label), confidence: copyOf(result.confidence), region: result.region && copyOf(result.region) };
      const job: CaseFilesJob = { names: fileNames.filter((n) => n !== CASE_FILE_NAMES.report), maps, identity: model.identity };
      // The grey-level window is done here too, not on the page's thread.
      const window = displayWindow(result.image.data);
      const arrays = [result.image.data, result.label.data, result.confidence.data, result.region?.data, report];
      scope.postMessage({ type: 'segmented', id: request.id, result, displayWindow: window, segmentedAt, fileNames, ready: { [CASE_FILE_NAMES.report]: report } }, transferList(arrays));
      filesPort?.postMessage({ type: 'case-files', id: request.id, job } satisfies WorkerRequest, transferList(caseMapArrays(maps)));
    } catch (err) {
      scope.postMessage({ type: 'failed', id: request.id, message: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Each file of a job as soon as it is made; a file that fails says why and the others still come. */
  function makeCaseFiles(id: number, job: CaseFilesJob): void {
    const maps: CaseMaps = { label: revive(job.maps.label), confidence: revive(job.maps.confidence), region: job.maps.region && revive(job.maps.region) };
    for (const name of MAKE_ORDER) {
      if (!job.names.includes(name)) continue;
      try {
        const bytes = caseMapFile(name, maps, job.identity);
        scope.postMessage({ type: 'case-file', id, name, bytes }, [bytes.buffer as ArrayBuffer]);
      } catch (err) {
        scope.postMessage({ type: 'case-file-failed', id, name, message: err instanceof Error ? err.message : String(err) });
      }
    }
    scope.postMessage({ type: 'case-files-done', id });
  }

  // While a test holds case files, jobs wait here before their first file.
  let held: Promise<void> = Promise.resolve();
  let release: (() => void) | undefined;

  function receive(request: WorkerRequest): void {
    if (request.type === 'hold-case-files') {
      if (request.hold && !release) held = new Promise<void>((ok) => (release = ok));
      if (!request.hold) {
        release?.();
        release = undefined;
      }
      return;
    }
    queue = queue.then(() => handle(request));
  }

  scope.addEventListener('message', (e) => receive(e.data));
}
