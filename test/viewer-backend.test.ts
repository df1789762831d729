// The viewer's choice of execution provider, in headless Debian Chromium (which has no usable
// WebGPU here): WebGPU when navigator.gpu gives an adapter and the model opens on it, WebAssembly
// otherwise, with the reason in one line on the page and in report.json.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type BrowserContext, type Page, type Worker } from 'playwright-core';
import { exportOnnx } from '@alhvr/export';
import { buildDemo } from '../viewer/scripts/build-demo.mjs';
import { makeCard, makeStudent, useBackend } from './export-fixtures.js';
import { CHROMIUM_ARGS, MODEL_SIZE, serveStatic } from './viewer-harness.js';

let dir: string;
let server: Server;
let context: BrowserContext;
let page: Page;
const served: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-viewer-backend-'));
  const modelPath = join(dir, 'model.onnx');
  await useBackend();
  const [a, b] = [makeStudent(41), makeStudent(42)];
  writeFileSync(modelPath, exportOnnx([a, b], { ...makeCard(MODEL_SIZE, 0.5), name: 'viewer-backend-test' }).onnx);
  a.dispose();
  b.dispose();
  await buildDemo({ outDir: join(dir, 'site'), model: modelPath, compress: false });
  server = await serveStatic(dir, (path) => served.push(path));
  context = await chromium.launchPersistentContext(join(dir, 'profile'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/site/index.html?threads=1`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 60_000 });
}, 300_000);

afterAll(async () => {
  await context?.close();
  await new Promise((ok) => (server ? server.close(ok) : ok(undefined)));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Opened {
  type: string;
  message?: string;
  info?: { backend: string; fallback?: string; threads: number };
}

/**
 * A fresh demo worker whose navigator.gpu is replaced (before anything runs in it) by `gpu`, a
 * function body evaluated in the worker; then it opens the bundled model with `executionProvider`.
 */
async function openWithGpu(gpu: string, executionProvider: string): Promise<Opened> {
  const started = page.waitForEvent('worker', (w: Worker) => w.url().endsWith('/site/worker.js'));
  await page.evaluate(`window.__epWorker = new Worker('worker.js', { type: 'module' })`);
  const worker = await started;
  await worker.evaluate(`Object.defineProperty(navigator, 'gpu', { configurable: true, value: (() => { ${gpu} })() })`);
  return (await page.evaluate(`(async () => {
    const model = new Uint8Array(await (await fetch('model.onnx')).arrayBuffer());
    const worker = window.__epWorker;
    const reply = await new Promise((resolve) => {
      worker.addEventListener('message', (e) => resolve(e.data), { once: true });
      worker.postMessage({ type: 'open', id: 1, bytes: model, source: 'model.onnx', numThreads: 1, executionProvider: ${JSON.stringify(executionProvider)} });
    });
    worker.terminate();
    return reply;
  })()`)) as Opened;
}

describe('execution provider', () => {
  test('this browser has no usable WebGPU: the page runs on WebAssembly and says why, in the page and in report.json', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('ready');
    const probe = (await page.evaluate(`(async () => {
      if (!navigator.gpu) return 'none';
      try { return (await navigator.gpu.requestAdapter()) ? 'adapter' : 'null'; } catch { return 'threw'; }
    })()`)) as string;
    // The assertions below hold only where WebGPU is really unusable, as on this machine.
    expect(probe).not.toBe('adapter');
    expect(await page.getAttribute('#runtime-info', 'data-backend')).toBe('wasm');
    const info = (await page.textContent('#runtime-info'))!;
    expect(info).toMatch(/^ONNX Runtime Web in a worker: WebAssembly, 1 thread — WebGPU not used: (this browser offers no WebGPU|WebGPU offers no adapter on this machine|its adapter request failed: .+); model opened in \d+ ms\.$/);
    expect(info).not.toContain('\n');
    // WebGPU's runtime files were never fetched for it.
    expect(served.some((p) => p.includes('asyncify'))).toBe(false);

    await page.click('#sample');
    await page.waitForFunction(() => ['segmented', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 60_000 });
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    const report = JSON.parse(
      (await page.evaluate(`(async () => new TextDecoder().decode(await (await fetch(document.querySelector('#downloads a[data-file="report.json"]').href)).arrayBuffer()))()`)) as string,
    );
    expect(report.device.used).toBe('browser-wasm');
    const reason = / — WebGPU not used: (.+); model opened/.exec(info)![1];
    expect(report.device.note).toBe(`onnxruntime-web (wasm) in a Web Worker; WebGPU not used: ${reason}`);
  }, 120_000);

  test('navigator.gpu absent: WebAssembly, "this browser offers no WebGPU"', async () => {
    const r = await openWithGpu('return undefined;', 'auto');
    expect(r.type, r.message).toBe('opened');
    expect(r.info).toMatchObject({ backend: 'wasm', fallback: 'this browser offers no WebGPU', threads: 1 });
  }, 60_000);

  test('navigator.gpu present but its adapter request fails: WebAssembly, the failure in one line', async () => {
    const r = await openWithGpu("return { requestAdapter: async () => { throw new Error('GPU process crashed\\nsecond line'); } };", 'auto');
    expect(r.type, r.message).toBe('opened');
    expect(r.info).toMatchObject({ backend: 'wasm', fallback: 'its adapter request failed: GPU process crashed' });
  }, 60_000);

  test('an adapter that cannot give a device: the WebGPU session fails, the model opens on WebAssembly and says so', async () => {
    const before = served.length;
    const r = await openWithGpu(
      "const adapter = { features: new Set(), limits: {}, info: {}, requestAdapterInfo: async () => ({}), requestDevice: async () => { throw new Error('device lost'); } };" +
        'return { requestAdapter: async () => adapter, getPreferredCanvasFormat: () => "rgba8unorm" };',
      'auto',
    );
    expect(r.type, r.message).toBe('opened');
    expect(r.info!.backend).toBe('wasm');
    expect(r.info!.fallback).toMatch(/^the model did not open on it \(.+\)$/);
    expect(r.info!.fallback).not.toContain('\n');
    // It did try: ONNX Runtime's WebGPU build was fetched from the demo folder.
    expect(served.slice(before)).toContain('/site/ort-wasm-simd-threaded.asyncify.wasm');
  }, 90_000);

  test('WebGPU asked for explicitly where there is none: a one-line error, no silent fallback', async () => {
    const r = await openWithGpu('return undefined;', 'webgpu');
    expect(r.type).toBe('failed');
    expect(r.message).toBe('model.onnx: cannot open the model on WebGPU: this browser offers no WebGPU');
  }, 60_000);
});
