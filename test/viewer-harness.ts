// Shared by the viewer's browser tests and benchmarks (test/viewer-browser.test.ts,
// test/viewer-3d.test.ts, bench/viewer-3d.ts, bench/browser.ts): a static server with cross-origin
// isolation, Chromium's flags, the demo page opened and watched (long tasks while segmenting), the
// Node pipeline's reference run, and the tie-aware comparison of the page's maps with it.
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { PlaneResizer, canonicalOrientation, type ModelCard, type Volume, type VoxelArray } from '@alhvr/core';
import {
  canonicalGrid,
  scatterPlane,
  segmentVolume,
  type CanonicalGrid,
  type SegmentOptions,
  type SegmentResult,
  type SliceModel,
  type SliceOutputKind,
  type SliceOutputs,
} from '@alhvr/inference';
import { openModelFile } from '@alhvr/inference/node';

/** Decision margin below which the page and Node may legitimately differ (float32 summation order). */
export const TIE = 1e-5;
/** Model input size of the test models (small, so a browser segments a volume in seconds). */
export const MODEL_SIZE: [number, number] = [64, 48];
// WebGL and compositing both run in the GPU process on SwiftShader, as a browser with a GPU does.
// With --disable-gpu the compositor is software and reads every WebGL frame back on the main
// thread: the first frame after NiiVue's uploads then blocks it 1.2–3 s (a CDP trace shows
// GLES2::ReadPixels waiting in LayerTreeHost::DoUpdateLayers), a stall a GPU-composited page never has.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
};

/** Static files from `root`; COOP/COEP make the page cross-origin isolated so wasm threads work. */
export function serveStatic(root: string, onRequest?: (path: string) => void): Promise<Server> {
  const server = createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    onRequest?.(urlPath);
    const path = resolve(root, '.' + urlPath);
    const send = (status: number, body: Uint8Array | string, type = 'text/plain') => {
      res.writeHead(status, { 'Content-Type': type, 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' });
      res.end(body);
    };
    if (!path.startsWith(root + sep)) return send(403, 'outside the served folder');
    readFile(path).then(
      (body) => send(200, body, CONTENT_TYPES[extname(path)] ?? 'application/octet-stream'),
      () => send(404, 'not found'),
    );
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

/**
 * Wraps the Node model and records, for every voxel, how close its label and region came to a
 * decision tie at model resolution (top-1 minus top-2 mean probability; min over students of
 * |confidence − γ|), carried back to the voxel exactly as the pipeline carries labels back.
 */
export class TieRecorder implements SliceModel {
  readonly card: ModelCard;
  readonly available: ReadonlySet<SliceOutputKind>;
  readonly labelMargin: Float32Array;
  readonly regionMargin: Float32Array;
  private readonly grid: CanonicalGrid;
  private readonly back: PlaneResizer;
  private nextSlice = 0;

  constructor(
    private readonly inner: SliceModel,
    vol: Volume<VoxelArray>,
  ) {
    this.card = inner.card;
    this.available = inner.available;
    this.grid = canonicalGrid(vol.dims, canonicalOrientation(vol.affine, this.card.input.sliceAxis));
    const [mw, mh] = this.card.input.size;
    this.back = new PlaneResizer(mw, mh, this.grid.dims[0], this.grid.dims[1], this.card.resize.labelBack);
    this.labelMargin = new Float32Array(vol.voxelCount);
    this.regionMargin = new Float32Array(vol.voxelCount);
  }

  async run(batch: Float32Array, n: number, height: number, width: number, fetch: readonly SliceOutputKind[]): Promise<SliceOutputs> {
    const out = await this.inner.run(batch, n, height, width, [...new Set<SliceOutputKind>([...fetch, 'probabilities', 'studentConfidence'])]);
    const plane = height * width;
    const classes = this.card.classes.length;
    const gamma = this.card.regions.gamma;
    const probs = out.probabilities as Float32Array;
    const student = out.studentConfidence as Float32Array;
    const labelPlane = new Float32Array(plane);
    const regionPlane = new Float32Array(plane);
    const backPlane = new Float32Array(this.grid.dims[0] * this.grid.dims[1]);
    for (let b = 0; b < n; b++) {
      for (let p = 0; p < plane; p++) {
        let top1 = -Infinity;
        let top2 = -Infinity;
        for (let c = 0; c < classes; c++) {
          const v = probs[(b * classes + c) * plane + p];
          if (v > top1) [top1, top2] = [v, top1];
          else if (v > top2) top2 = v;
        }
        labelPlane[p] = top1 - top2;
        regionPlane[p] = Math.min(Math.abs(student[2 * b * plane + p] - gamma), Math.abs(student[(2 * b + 1) * plane + p] - gamma));
      }
      const k = this.nextSlice + b;
      this.back.resize(labelPlane, 0, backPlane, 0);
      scatterPlane(this.grid, backPlane, k, this.labelMargin);
      this.back.resize(regionPlane, 0, backPlane, 0);
      scatterPlane(this.grid, backPlane, k, this.regionMargin);
    }
    this.nextSlice += n;
    return out;
  }
}

/** Voxels where the page and Node disagree although neither was within TIE of a decision boundary. */
export function unexplainedMismatches(page: Uint8Array, node: Uint8Array, margin: Float32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < node.length; i++) if (page[i] !== node[i] && !(margin[i] < TIE)) out.push(i);
  return out;
}

// Runs in the page (passed as source text so the test transpiler cannot inject helpers into it).
export const PAGE_BASE64 = `(a) => {
  const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s);
}`;
export const fromBase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));


/**
 * Page script (source text, for page.evaluate) that watches the main thread while the viewer
 * segments: `window.__longest` is the longest task from the page's first status change (the task
 * before it is Playwright handing the file to the page) until the worker's result arrives (the
 * page's "alhvr-segmented" mark; drawing the result afterwards is display, not segmentation), and
 * `window.__statuses` every status text shown meanwhile. Installs its observers once per page;
 * RESET_SEGMENTATION_WATCH starts a new count.
 */
export const WATCH_SEGMENTATION = `(() => {
  window.__longest = 0;
  window.__statuses = [];
  window.__since = Infinity;
  if (window.__watchingSegmentation) return;
  window.__watchingSegmentation = true;
  new PerformanceObserver((list) => {
    const done = performance.getEntriesByName('alhvr-segmented').at(-1)?.startTime ?? Infinity;
    for (const e of list.getEntries()) if (e.startTime >= window.__since && e.startTime < done) window.__longest = Math.max(window.__longest, e.duration);
  }).observe({ type: 'longtask' });
  new MutationObserver(() => {
    window.__since = Math.min(window.__since, performance.now());
    window.__statuses.push(document.getElementById('status').textContent);
  }).observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
})()`;

/** Page script: forget the last segmentation's tasks, statuses and mark (WATCH_SEGMENTATION must be installed). */
export const RESET_SEGMENTATION_WATCH = "window.__longest = 0; window.__statuses = []; window.__since = Infinity; performance.clearMarks('alhvr-segmented')";

/** What segmentInNode returns: the Node pipeline's result and what it took. */
export interface NodeSegmentation {
  result: SegmentResult;
  card: ModelCard;
  /** (done, total) after each model call. */
  progress: [number, number][];
  wallSeconds: number;
  /** CPU seconds of this process (user + system) over the segmentation. */
  cpuSeconds: number;
}

/**
 * The reference the viewer is compared with: segmentVolume (alhvr-segment's pipeline) on `vol`
 * with onnxruntime-node on the CPU, in a session of its own (released after). `wrap` puts a
 * recorder between the pipeline and the model (e.g. `(m) => new TieRecorder(m, vol)`).
 */
export async function segmentInNode(
  modelPath: string,
  vol: Volume<VoxelArray>,
  opts: Omit<SegmentOptions, 'onProgress'> & { threads?: number; wrap?: (model: SliceModel) => SliceModel } = {},
): Promise<NodeSegmentation> {
  const { threads = 1, wrap, ...segmentOptions } = opts;
  const opened = await openModelFile(modelPath, { device: 'cpu', threads });
  try {
    const progress: [number, number][] = [];
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const result = await segmentVolume(vol, wrap ? wrap(opened.model) : opened.model, { ...segmentOptions, onProgress: (done, total) => progress.push([done, total]) });
    const wallSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { result, card: opened.identity.card, progress, wallSeconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  } finally {
    await opened.model.release();
  }
}

/** The demo page in headless Chromium, served from `root` (cross-origin isolated), its console kept. */
export interface ViewerPage {
  server: Server;
  context: BrowserContext;
  page: Page;
  origin: string;
  /** The page's console messages and uncaught errors, for failure messages. */
  console: string[];
  close(): Promise<void>;
}

/**
 * Serve `root`, start Chromium (a fresh profile in `root`/profile; `args` added to CHROMIUM_ARGS),
 * open `path` (e.g. "/site/index.html?threads=2") and wait until the page is ready (or asks for a model); a page
 * error throws with its message.
 */
export async function openViewerPage(root: string, path: string, opts: { args?: string[] } = {}): Promise<ViewerPage> {
  const server = await serveStatic(root);
  const context = await chromium.launchPersistentContext(join(root, 'profile'), { executablePath: '/usr/bin/chromium', headless: true, args: [...CHROMIUM_ARGS, ...(opts.args ?? [])] });
  const page = context.pages()[0] ?? (await context.newPage());
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = async () => {
    await context.close();
    await new Promise((ok) => server.close(ok));
  };
  try {
    await page.goto(`${origin}${path}`);
    await waitForPageState(page, ['ready', 'no-model', 'error'], log, 240_000);
  } catch (err) {
    await close();
    throw err;
  }
  return { server, context, page, origin, console: log, close };
}

/** Wait until the page's state is one of `states` (or "error", which throws with the page's one-line message and its console). */
export async function waitForPageState(page: Page, states: string[], log: string[], timeout = 60_000): Promise<string> {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), states, { timeout });
  const state = (await page.evaluate('document.body.dataset.state')) as string;
  if (state === 'error') throw new Error(`page error: ${await page.textContent('#status')}\n${log.join('\n')}`);
  return state;
}

/** The maps of the page's current result (alhvrDemo.result), copied out of the page. */
export async function pageMaps(page: Page): Promise<{ label: Uint8Array; region: Uint8Array; confidence: Float32Array; dims: number[] }> {
  const got = (await page.evaluate(`(() => {
    const b64 = ${PAGE_BASE64};
    const r = alhvrDemo.result;
    return { label: b64(r.label.data), region: b64(r.region.data), confidence: b64(r.confidence.data), dims: r.label.dims };
  })()`)) as { label: string; region: string; confidence: string; dims: number[] };
  const c = fromBase64(got.confidence);
  return { label: fromBase64(got.label), region: fromBase64(got.region), confidence: new Float32Array(c.buffer, c.byteOffset, c.byteLength / 4), dims: got.dims };
}
