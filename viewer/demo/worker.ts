// The demo's segmentation worker: ONNX Runtime and the pipeline run here, off the page's main thread.
import { serveSegmentation, type WorkerScope } from '../src/segment-worker.js';

serveSegmentation(globalThis as unknown as WorkerScope);
