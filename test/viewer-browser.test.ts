// The viewer demo in headless Debian Chromium: segmentation in the page (onnxruntime-web, wasm,
// two threads) must equal inference's Node pipeline (onnxruntime-node), and the canvas must show it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { decodeNifti, encodeNifti, generatePhantomCase, type ModelCard } from '@alhvr/core';
import { assessCase, canonicalGrid, computeCaseStats, gatherPlane, type SegmentResult } from '@alhvr/inference';
import { readDicomSeries } from '@alhvr/core/node';
import { daikonSeries } from './fixtures.js';
import { exportOnnx } from '@alhvr/export';
import { buildDemo } from '../viewer/scripts/build-demo.mjs';
import { REGION_COLORS } from '../viewer/src/slice-renderer.js';
import {
  MODEL_SIZE,
  TIE,
  PAGE_BASE64,
  RESET_SEGMENTATION_WATCH,
  TieRecorder,
  WATCH_SEGMENTATION,
  fromBase64,
  openViewerPage,
  pageMaps,
  segmentInNode,
  unexplainedMismatches,
  waitForPageState,
  type ViewerPage,
} from './viewer-harness.js';
import { CLASSES, makeCard, makeStudent, useBackend } from './export-fixtures.js';
import { cliPath } from './cli-harness.js';
import { CASE_FILES } from '../inference/src/outputs.js';
import { CASE_FILE_NAMES } from '../viewer/src/case-files.js';
import { decodeDicomSeg, dicomSegToLabelVolume } from '@alhvr/core';

/** The case folder alhvr-segment writes for `input` with the test model (one thread, no preview). */
function runCli(input: string, out: string): string {
  execFileSync(process.execPath, [cliPath('alhvr-segment'), input, '--model', join(dir, 'model.onnx'), '--out', out, '--threads', '1', '--device', 'cpu', '--no-preview', '--quiet'], {
    timeout: 120_000,
  });
  const cases = readdirSync(out, { withFileTypes: true }).filter((e) => e.isDirectory());
  expect(cases.length).toBe(1);
  return join(out, cases[0].name);
}

/** The page's download links once all are made, each fetched through its own href (what the user's click saves). */
async function pageDownloads(): Promise<Record<string, Uint8Array>> {
  await page.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('downloads')!.dataset.state ?? ''), undefined, { timeout: 60_000 });
  expect(await page.getAttribute('#downloads', 'data-state')).toBe('ready');
  const got = (await page.evaluate(`(async () => {
    const b64 = ${PAGE_BASE64};
    const out = {};
    for (const a of document.querySelectorAll('#downloads a[data-file]')) out[a.dataset.file] = b64(new Uint8Array(await (await fetch(a.href)).arrayBuffer()));
    return out;
  })()`)) as Record<string, string>;
  return Object.fromEntries(Object.entries(got).map(([k, v]) => [k, fromBase64(v)]));
}

let dir: string;
let viewer: ViewerPage;
let context: BrowserContext;
let page: Page;
let origin: string;
let niftiBytes: Uint8Array;
let modelBytes: Buffer;
let nodeResult: SegmentResult;
let recorder: TieRecorder;
let nodeCard: ModelCard;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-viewer-'));
  const site = join(dir, 'site');
  const bare = join(dir, 'bare');
  const modelPath = join(dir, 'model.onnx');

  await useBackend();
  const [a, b] = [makeStudent(21), makeStudent(22)];
  const card = { ...makeCard(MODEL_SIZE, 0.5), name: 'viewer-test' };
  writeFileSync(modelPath, exportOnnx([a, b], card).onnx);
  a.dispose();
  b.dispose();
  await buildDemo({ outDir: site, model: modelPath });
  await buildDemo({ outDir: bare, model: null, compress: false });
  modelBytes = readFileSync(modelPath);

  niftiBytes = encodeNifti(generatePhantomCase({ seed: 7, index: 2 }).image);
  const vol = decodeNifti(niftiBytes, { path: 'phantom.nii.gz' });
  const node = await segmentInNode(modelPath, vol, { batch: 4, wrap: (m) => (recorder = new TieRecorder(m, vol)) });
  nodeResult = node.result;
  nodeCard = node.card;

  viewer = await openViewerPage(dir, '/site/index.html?threads=2');
  ({ context, page, origin } = viewer);
}, 240_000);

afterAll(async () => {
  await viewer?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const waitForState = (states: string[]) => waitForPageState(page, states, viewer.console, 30_000);

describe('viewer demo in Chromium', () => {
  test('opens the bundled model on two wasm threads from its own origin', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('ready');
    expect(await page.evaluate('crossOriginIsolated')).toBe(true);
    expect(await page.evaluate('alhvrDemo.model.threads')).toBe(2);
    expect(await page.textContent('#model-info')).toContain('viewer-test');
    // The build leaves gzip copies next to the files, for servers that send them pre-compressed.
    const wasm = join(dir, 'site', 'ort-wasm-simd-threaded.wasm');
    expect(Buffer.compare(gunzipSync(readFileSync(`${wasm}.gz`)), readFileSync(wasm))).toBe(0);
    // The bundled model is announced as a demonstration on synthetic phantoms.
    expect(await page.isVisible('#demo-banner')).toBe(true);
    expect(await page.textContent('#demo-banner')).toContain('synthetic cardiac phantoms');
  });

  test('a file that is not NIfTI gives a one-line error naming it', async () => {
    await page.setInputFiles('#nifti-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image at all, just text') });
    await page.waitForFunction(() => document.body.dataset.state === 'error');
    const message = (await page.textContent('#status'))!;
    expect(message).toContain('notes.txt');
    expect(message).not.toContain('\n');
  });

  test('labels, regions and confidence in the page equal the Node pipeline (onnxruntime-node); the result shows before its downloads are made', async () => {
    // The worker holds the case files back (a test hook), so the page's state in between is seen without timing.
    await page.evaluate('alhvrDemo.holdDownloads(true)');
    await page.setInputFiles('#nifti-file', { name: 'phantom.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(niftiBytes) });
    await waitForState(['segmented', 'error']);
    // Shown: verdict, slice view, NiiVue study; the map downloads say "preparing…", report.json is ready.
    expect(await page.locator('#verdict').count()).toBe(1);
    expect(await page.isDisabled('#slice')).toBe(false);
    expect(await page.evaluate('alhvrDemo.studyView.nv.volumes.length')).toBe(4);
    expect(await page.getAttribute('#downloads', 'data-state')).toBe('preparing');
    const links = (await page.$$eval('#downloads a[data-file]', (as) => as.map((a) => [a.dataset.file, a.dataset.state, a.hasAttribute('href'), a.textContent]))) as [string, string, boolean, string][];
    expect(links).toEqual([
      ['mask.nii.gz', 'preparing', false, 'mask.nii.gz (preparing…)'],
      ['confidence.nii.gz', 'preparing', false, 'confidence.nii.gz (preparing…)'],
      ['region.nii.gz', 'preparing', false, 'region.nii.gz (preparing…)'],
      ['report.json', 'ready', true, 'report.json'],
    ]);
    await page.evaluate('alhvrDemo.holdDownloads(false)');
    await page.waitForFunction(() => document.getElementById('downloads')!.dataset.state === 'ready', undefined, { timeout: 60_000 });
    expect(await page.$$eval('#downloads a[data-file]', (as) => as.every((a) => a.hasAttribute('href') && a.dataset.state === 'ready'))).toBe(true);
    const got = (await page.evaluate(`(() => {
      const b64 = ${PAGE_BASE64};
      const r = alhvrDemo.result;
      return { label: b64(r.label.data), region: b64(r.region.data), confidence: b64(r.confidence.data), dims: r.label.dims };
    })()`)) as { label: string; region: string; confidence: string; dims: number[] };
    const label = fromBase64(got.label);
    const region = fromBase64(got.region);
    const confBytes = fromBase64(got.confidence);
    const confidence = new Float32Array(confBytes.buffer, confBytes.byteOffset, confBytes.byteLength / 4);

    expect(got.dims).toEqual(nodeResult.label.dims);
    // The comparison means something only if the model makes several decisions here.
    expect(new Set(nodeResult.label.data).size).toBeGreaterThanOrEqual(3);
    expect(new Set(nodeResult.region!.data)).toEqual(new Set([1, 2, 3]));

    expect(label.length).toBe(nodeResult.label.data.length);
    expect(unexplainedMismatches(label, nodeResult.label.data, recorder.labelMargin)).toEqual([]);
    expect(unexplainedMismatches(region, nodeResult.region!.data, recorder.regionMargin)).toEqual([]);
    let maxDiff = 0;
    for (let i = 0; i < confidence.length; i++) maxDiff = Math.max(maxDiff, Math.abs(confidence[i] - nodeResult.confidence.data[i]));
    expect(confidence.length).toBe(nodeResult.confidence.data.length);
    expect(maxDiff).toBeLessThanOrEqual(TIE);

    // The page reports what alhvr-segment would: the same stats, signals and verdict.
    const nodeStats = computeCaseStats(nodeResult.label, nodeResult.confidence, nodeResult.region, nodeCard);
    const nodeAssessment = assessCase(nodeStats, nodeResult.signals, nodeCard);
    const pageAssessment = (await page.evaluate('alhvrDemo.result.assessment')) as typeof nodeAssessment;
    expect(pageAssessment.triage.verdict).toBe(nodeAssessment.triage.verdict);
    expect(pageAssessment.triage.reasons.length).toBe(nodeAssessment.triage.reasons.length);
    expect(pageAssessment.signals.agreement!).toBeCloseTo(nodeAssessment.signals.agreement!, 3);
    expect(await page.getAttribute('#verdict', 'data-verdict')).toBe(nodeAssessment.triage.verdict);
    expect(await page.textContent('#verdict')).toContain(`Verdict: ${nodeAssessment.triage.verdict}`);
  });

  test('downloads: the NIfTI maps and report.json equal what alhvr-segment writes for the same file and model', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    for (const key of ['mask', 'confidence', 'region', 'seg', 'report'] as const) expect(CASE_FILE_NAMES[key]).toBe(CASE_FILES[key]);
    const input = join(dir, 'phantom.nii.gz');
    writeFileSync(input, niftiBytes);
    const cli = runCli(input, join(dir, 'cli-nifti'));
    const files = await pageDownloads();
    expect(Object.keys(files).sort()).toEqual(['confidence.nii.gz', 'mask.nii.gz', 'region.nii.gz', 'report.json']);
    const nifti = (name: string) => ({ web: gunzipSync(files[name]), cli: gunzipSync(readFileSync(join(cli, name))) });
    for (const name of ['mask.nii.gz', 'confidence.nii.gz', 'region.nii.gz']) {
      const { web, cli: node } = nifti(name);
      expect(web.length, name).toBe(node.length);
      // Header and extension flag byte for byte (geometry, datatype, description), except
      // cal_max/cal_min (bytes 124–131): the data's range, equal within the tie tolerance.
      const header = (b: Buffer) => Buffer.concat([b.subarray(0, 124), b.subarray(132, 352)]);
      expect(Buffer.compare(header(web), header(node)), name).toBe(0);
      for (const at of [124, 128]) expect(Math.abs(web.readFloatLE(at) - node.readFloatLE(at)), name).toBeLessThanOrEqual(TIE);
    }
    const mask = nifti('mask.nii.gz');
    expect(unexplainedMismatches(mask.web.subarray(352), mask.cli.subarray(352), recorder.labelMargin)).toEqual([]);
    const region = nifti('region.nii.gz');
    expect(unexplainedMismatches(region.web.subarray(352), region.cli.subarray(352), recorder.regionMargin)).toEqual([]);
    const conf = nifti('confidence.nii.gz');
    const floats = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset + 352, b.byteOffset + b.length));
    const [cw, cn] = [floats(conf.web), floats(conf.cli)];
    let maxDiff = 0;
    for (let i = 0; i < cn.length; i++) maxDiff = Math.max(maxDiff, Math.abs(cw[i] - cn[i]));
    expect(maxDiff).toBeLessThanOrEqual(TIE);

    // Made after the result, the files are byte for byte what the page made before (core's encodeNifti
    // of its own maps with alhvr-segment's header; the CLI's gzip differs only in compression level).
    const maps = await pageMaps(page);
    const cliEncoded = {
      'mask.nii.gz': encodeNifti(nodeResult.label.withData(maps.label), { datatype: 'uint8', description: 'alhvr mask viewer-test' }),
      'confidence.nii.gz': encodeNifti(nodeResult.confidence.withData(maps.confidence), { datatype: 'float32', description: 'alhvr confidence viewer-test' }),
      'region.nii.gz': encodeNifti(nodeResult.region!.withData(maps.region), { datatype: 'uint8', description: 'alhvr region viewer-test' }),
    };
    for (const [name, bytes] of Object.entries(cliEncoded)) expect(Buffer.compare(Buffer.from(files[name]), Buffer.from(bytes)), name).toBe(0);

    const web = JSON.parse(new TextDecoder().decode(files['report.json']));
    const node = JSON.parse(readFileSync(join(cli, 'report.json'), 'utf8'));
    expect(Object.keys(web).sort()).toEqual(Object.keys(node).sort());
    for (const key of ['toolkit', 'model', 'geometry', 'warnings']) expect(web[key], key).toEqual(node[key]);
    expect(web.gamma.mode).toBe(node.gamma.mode);
    expect(web.gamma.value).toBeCloseTo(node.gamma.value, 4);
    expect(web.triage).toEqual(node.triage);
    expect(web.stats.classes.map((c: { voxels: number }) => c.voxels)).toEqual(node.stats.classes.map((c: { voxels: number }) => c.voxels));
    expect(web.stats.foreground.meanConfidence).toBeCloseTo(node.stats.foreground.meanConfidence, 4);
    expect(web.unreliability).toBeCloseTo(node.unreliability, 4);
    expect(web.signals.agreement).toBeCloseTo(node.signals.agreement, 3);
    expect(web.device.used).toBe('browser-wasm');
  }, 180_000);

  test('segmentation runs in a worker: progress per model call, cancel stops it, the main thread never blocks 100 ms', async () => {
    // The main thread's long tasks from the page taking the file to the worker's result (see WATCH_SEGMENTATION).
    await page.evaluate(WATCH_SEGMENTATION);
    const file = { name: 'phantom.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(niftiBytes) };

    // Cancel (in the page, so no run can finish first) as soon as the first progress shows: the
    // page returns to "ready".
    await page.evaluate(`(() => {
      const status = document.getElementById('status');
      const watch = new MutationObserver(() => {
        if (!/slice \\d+ of \\d+/.test(status.textContent)) return;
        window.__cancelVisible = !document.getElementById('cancel').hidden;
        watch.disconnect();
        document.getElementById('cancel').click();
      });
      watch.observe(status, { childList: true, characterData: true, subtree: true });
    })()`);
    await page.setInputFiles('#nifti-file', file);
    await waitForState(['ready', 'segmented']);
    expect(await page.textContent('#status')).toBe('Segmentation cancelled.');
    expect(await page.evaluate('window.__cancelVisible')).toBe(true);

    // The replaced worker reopens the model and segments the same file to the same labels.
    await page.evaluate(RESET_SEGMENTATION_WATCH);
    await page.setInputFiles('#nifti-file', file);
    await waitForState(['segmented', 'error']);
    const label = fromBase64((await page.evaluate(`(${PAGE_BASE64})(alhvrDemo.result.label.data)`)) as string);
    expect(unexplainedMismatches(label, nodeResult.label.data, recorder.labelMargin)).toEqual([]);
    const statuses = (await page.evaluate('window.__statuses')) as string[];
    const slices = nodeResult.slices;
    const progress = statuses.map((t) => /slice (\d+) of (\d+)/.exec(t)).filter((m) => m !== null);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((m) => Number(m[2]) === slices)).toBe(true);
    expect(Number(progress.at(-1)![1])).toBe(slices);
    expect(await page.isVisible('#cancel')).toBe(false);
    expect(await page.textContent('#runtime-info')).toMatch(/WebAssembly, 2 threads/);
    expect((await page.evaluate('window.__longest')) as number).toBeLessThan(100);
  });

  test('NiiVue shows the study: each label painted in its class colour where the label map has it (cursor readout of the voxel under the pixel), window presets', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    await page.waitForFunction(() => (globalThis as any).alhvrDemo.studyView?.nv.volumes.length === 4);
    await page.click('input[name="layout"][value="axial"]');
    // Layer uploads run in tasks of their own: wait until the view has every change drawn.
    const drawn = () => page.evaluate('alhvrDemo.studyView.whenDrawn()');
    await drawn();
    // The canvas' pixels, read in the same task as the draw (a WebGL buffer is cleared after compositing).
    const grab = `(() => {
      const nv = alhvrDemo.studyView.nv;
      nv.drawScene();
      const c = document.createElement('canvas');
      c.width = nv.canvas.width;
      c.height = nv.canvas.height;
      const g = c.getContext('2d');
      g.drawImage(nv.canvas, 0, 0);
      return { w: c.width, h: c.height, px: (${PAGE_BASE64})(g.getImageData(0, 0, c.width, c.height).data) };
    })()`;
    const [di, dj, dk] = nodeResult.label.dims;
    const labelData = nodeResult.label.data;
    await page.evaluate(`alhvrDemo.studyView.moveTo([${Math.floor(di / 2)}, ${Math.floor(dj / 2)}, ${Math.floor(dk / 2)}])`);
    const withLabels = (await page.evaluate(grab)) as { w: number; h: number; px: string };
    await page.click('#show-label');
    await drawn();
    const without = (await page.evaluate(grab)) as { w: number; h: number; px: string };
    await page.click('#show-label');
    await drawn();
    const a = fromBase64(withLabels.px);
    const b = fromBase64(without.px);
    const { w, h } = withLabels;
    // Pixels in the middle of 9×9 patches of one overlay colour, spread over the view; clicking each
    // makes NiiVue read out the voxel under it, whose label's colour the overlay must have blended
    // in at the overlay's opacity (0.5) over the grey of the image alone.
    const samples: [number, number][] = [];
    for (let y = 8; y < h - 8; y += 6) {
      for (let x = 8; x < w - 8; x += 6) {
        const q = 4 * (y * w + x);
        if (Math.abs(a[q] - b[q]) + Math.abs(a[q + 1] - b[q + 1]) + Math.abs(a[q + 2] - b[q + 2]) < 12) continue;
        let alike = true;
        for (let dy = -4; dy <= 4 && alike; dy++) {
          for (let dx = -4; dx <= 4 && alike; dx++) {
            const r = 4 * ((y + dy) * w + x + dx);
            alike = Math.abs(a[r] - a[q]) + Math.abs(a[r + 1] - a[q + 1]) + Math.abs(a[r + 2] - a[q + 2]) < 12;
          }
        }
        if (alike) samples.push([x, y]);
      }
    }
    expect(samples.length).toBeGreaterThan(5);
    const picked = samples.filter((_, n) => n % Math.max(1, Math.floor(samples.length / 8)) === 0).slice(0, 8);
    const box = (await page.locator('#study-view').boundingBox())!;
    const scale = box.width / w;
    const seen = new Set<number>();
    for (const [x, y] of picked) {
      await page.mouse.click(box.x + (x + 0.5) * scale, box.y + (y + 0.5) * scale);
      const text = (await page.textContent('#readout'))!;
      const voxel = /voxel (\d+), (\d+), (\d+)/.exec(text);
      expect(voxel, text).not.toBeNull();
      const index = (Number(voxel![3]) * dj + Number(voxel![2])) * di + Number(voxel![1]);
      const value = labelData[index];
      const cls = CLASSES.find((c) => c.value === value)!;
      expect(value, `pixel ${x},${y}: ${text}`).toBeGreaterThan(0);
      expect(text).toContain(` · ${cls.name} · `);
      const q = 4 * (y * w + x);
      const expected = cls.color.map((c, n) => b[q + n] + (c - b[q + n]) * 0.5);
      expect(Math.max(...expected.map((e, n) => Math.abs(e - a[q + n]))), `pixel ${x},${y} colour vs ${cls.name}`).toBeLessThan(12);
      const confidence = Number(/confidence ([\d.]+)/.exec(text)![1]);
      expect(confidence).toBeCloseTo(nodeResult.confidence.data[index], 2);
      seen.add(value);
    }
    expect(seen.size).toBeGreaterThanOrEqual(1);
    // Window presets: "narrow" halves the auto window around its centre.
    await page.click('button[data-window="auto"]');
    const auto = (await page.evaluate('alhvrDemo.studyView.window')) as [number, number];
    await page.click('button[data-window="narrow"]');
    const narrow = (await page.evaluate('alhvrDemo.studyView.window')) as [number, number];
    expect(narrow[1] - narrow[0]).toBeCloseTo((auto[1] - auto[0]) / 2, 6);
    expect(narrow[0] + narrow[1]).toBeCloseTo(auto[0] + auto[1], 6);
    await page.click('input[name="layout"][value="multiplanar"]');
  });

  test('the region-threshold slider recomputes regions from the kept student confidences, as the pipeline would at that γ', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    expect(await page.isDisabled('#gamma')).toBe(false);
    const regionNow = async () => fromBase64((await page.evaluate(`(${PAGE_BASE64})(alhvrDemo.result.region.data)`)) as string);
    // The pipeline's own per-volume γ (β-quantile rule) gives an independent region map at another γ.
    const vol = decodeNifti(niftiBytes, { path: 'phantom.nii.gz' });
    const perVolume = (await segmentInNode(join(dir, 'model.onnx'), vol, { batch: 4, gammaMode: 'volume' })).result;
    const g = perVolume.gamma!.value;
    expect(Math.abs(g - nodeCard.regions.gamma)).toBeGreaterThan(0.01);
    await page.evaluate(`alhvrDemo.setRegionThreshold(${g})`);
    const atG = await regionNow();
    let differ = 0;
    for (let i = 0; i < atG.length; i++) if (atG[i] !== perVolume.region!.data[i]) differ++;
    let changed = 0;
    for (let i = 0; i < atG.length; i++) if (atG[i] !== nodeResult.region!.data[i]) changed++;
    expect(changed).toBeGreaterThan(0); // the threshold matters here
    expect(differ).toBeLessThanOrEqual(Math.ceil(atG.length * 1e-4)); // only confidences within 1e-5 of γ may flip
    // Through the slider itself: γ 0 makes every voxel "both confident", γ 1 none.
    const slide = async (value: string) => {
      await page.$eval('#gamma', (el, v) => {
        (el as HTMLInputElement).value = v;
        el.dispatchEvent(new Event('input'));
      }, value);
      await page.waitForFunction((v) => document.getElementById('gamma-value')!.textContent === Number(v).toFixed(2), value);
      return regionNow();
    };
    expect(new Set(await slide('0'))).toEqual(new Set([1]));
    expect(new Set(await slide('1'))).toEqual(new Set([3]));
    // Back at the card's γ: the pipeline's region map again.
    await page.evaluate(`alhvrDemo.setRegionThreshold(${nodeCard.regions.gamma})`);
    expect(unexplainedMismatches(await regionNow(), nodeResult.region!.data, recorder.regionMargin)).toEqual([]);
  }, 120_000);

  test('the canvas shows the chosen slice: grey image, and each label / region in its colour', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    const grid = canonicalGrid(nodeResult.label.dims, nodeResult.orientation);
    const [w, h, slices] = grid.dims;
    // The slice with the most background and foreground both, so every check covers many pixels.
    const plane = new Uint8Array(w * h);
    let best = 0;
    let bestScore = -1;
    for (let k = 0; k < slices; k++) {
      gatherPlane(grid, nodeResult.label.data, k, plane);
      const fg = plane.reduce((s, v) => s + (v > 0 ? 1 : 0), 0);
      if (Math.min(fg, plane.length - fg) > bestScore) [best, bestScore] = [k, Math.min(fg, plane.length - fg)];
    }
    expect(bestScore).toBeGreaterThan(100);

    const shot = async (overlay: string) => {
      const r = (await page.evaluate(`(() => {
        const s = document.getElementById('slice');
        s.value = '${best}';
        s.dispatchEvent(new Event('input'));
        document.querySelector('input[name="overlay"][value="${overlay}"]').click();
        const c = document.getElementById('view');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const b64 = ${PAGE_BASE64};
        return { size: [c.width, c.height, alhvrDemo.slice], pixels: b64(px), label: b64(alhvrDemo.result.label.data), region: b64(alhvrDemo.result.region.data) };
      })()`)) as { size: number[]; pixels: string; label: string; region: string };
      expect(r.size).toEqual([w, h, best]);
      return { px: fromBase64(r.pixels), label: fromBase64(r.label), region: fromBase64(r.region) };
    };
    // Radiological display: canonical i (towards patient right) runs leftwards, j (anterior) upwards.
    const at = (i: number, j: number) => 4 * ((h - 1 - j) * w + (w - 1 - i));

    // No overlay: every pixel grey, brighter wherever the image is brighter.
    const plain = await shot('none');
    const intensity = new Float32Array(w * h);
    gatherPlane(grid, decodeNifti(niftiBytes).data, best, intensity);
    const order = Array.from(intensity.keys()).sort((a, b) => intensity[a] - intensity[b]);
    const greys = new Set<number>();
    let previous = -1;
    let nonMonotone = 0;
    for (const p of order) {
      const q = at(p % w, Math.floor(p / w));
      const [r, g, b] = [plain.px[q], plain.px[q + 1], plain.px[q + 2]];
      expect(r === g && g === b).toBe(true);
      if (r < previous) nonMonotone++;
      previous = Math.max(previous, r);
      greys.add(r);
    }
    expect(nonMonotone).toBe(0);
    expect(greys.size).toBeGreaterThan(50);

    // Overlays: the page's own maps (they differ from Node's only at ties) decide each pixel's colour.
    const palettes = {
      label: new Map(CLASSES.filter((c) => c.value !== 0).map((c) => [c.value, c.color as readonly number[]])),
      region: new Map(Object.entries(REGION_COLORS).map(([v, c]) => [Number(v), c as readonly number[]])),
    };
    for (const overlay of ['label', 'region'] as const) {
      const s = await shot(overlay);
      gatherPlane(grid, s[overlay], best, plane);
      const wrong: string[] = [];
      let painted = 0;
      for (let p = 0; p < w * h; p++) {
        const q = at(p % w, Math.floor(p / w));
        const [r, g, b] = [s.px[q], s.px[q + 1], s.px[q + 2]];
        const grey = plain.px[q];
        const c = palettes[overlay].get(plane[p]);
        // Half-opacity blend of the pixel's grey with the colour (±1 for rounding).
        const expected = c ? c.map((v) => (grey + v) / 2) : [grey, grey, grey];
        if (Math.max(Math.abs(r - expected[0]), Math.abs(g - expected[1]), Math.abs(b - expected[2])) > 1) {
          wrong.push(`${overlay} (${p % w},${Math.floor(p / w)}) value ${plane[p]} drawn as ${r},${g},${b}, expected ${expected.join(',')}`);
        }
        if (c) painted++;
      }
      expect(wrong.slice(0, 10)).toEqual([]);
      expect(painted).toBeGreaterThan(100);
    }
  });

  test('a page built without a model asks for one, opens the .onnx the user picks and segments the phantom sample', async () => {
    const other = await context.newPage();
    try {
      await other.goto(`${origin}/bare/index.html?threads=1`);
      await other.waitForFunction(() => document.body.dataset.state === 'no-model');
      await other.setInputFiles('#model-file', { name: 'picked.onnx', mimeType: 'application/octet-stream', buffer: modelBytes });
      await other.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''));
      expect(await other.textContent('#status')).toContain('Model ready');
      expect(await other.isVisible('#demo-banner')).toBe(false);
      expect(await other.textContent('#model-info')).toMatch(/^picked\.onnx: viewer-test .* 1 thread\)$/);
      await other.click('#sample');
      await other.waitForFunction(() => ['segmented', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 30_000 });
      expect(await other.textContent('#status')).toBe('Segmented phantom-sample.nii.gz.');
      const dims = generatePhantomCase({ seed: 1, index: 0 }).image.dims;
      expect(await other.evaluate('alhvrDemo.result.label.dims')).toEqual(dims);
      expect(await other.textContent('#summary')).toContain(`phantom-sample.nii.gz: ${dims.join('×')} voxels`);
    } finally {
      await other.close();
    }
  }, 120_000);

  test('the files of a DICOM series, in any order and with a stray non-DICOM file, segment as in the Node pipeline', async () => {
    const vol = await readDicomSeries([daikonSeries]);
    let ties!: TieRecorder;
    const { result: node } = await segmentInNode(join(dir, 'model.onnx'), vol, { batch: 4, wrap: (m) => (ties = new TieRecorder(m, vol)) });
    expect(new Set(node.label.data).size).toBeGreaterThanOrEqual(2);

    const names = readdirSync(daikonSeries).sort().reverse();
    const files = [
      ...names.map((n) => ({ name: n, mimeType: 'application/dicom', buffer: readFileSync(join(daikonSeries, n)) })),
      { name: 'README.txt', mimeType: 'text/plain', buffer: Buffer.from('exported by a PACS') },
    ];
    await page.setInputFiles('#dicom-files', files);
    await waitForState(['segmented', 'error']);
    expect(await page.textContent('#status')).toBe(`Segmented DICOM series (${names.length + 1} files).`);
    const got = (await page.evaluate(`(() => {
      const b64 = ${PAGE_BASE64};
      const r = alhvrDemo.result;
      return { label: b64(r.label.data), region: b64(r.region.data), dims: r.label.dims, affine: r.image.affine };
    })()`)) as { label: string; region: string; dims: number[]; affine: number[][] };
    expect(got.dims).toEqual([...vol.dims]);
    const want = vol.affine.flat();
    got.affine.flat().forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    expect(unexplainedMismatches(fromBase64(got.label), node.label.data, ties.labelMargin)).toEqual([]);
    expect(unexplainedMismatches(fromBase64(got.region), node.region!.data, ties.regionMargin)).toEqual([]);

    // The DICOM SEG download places the same labels on the series as alhvr-segment's seg.dcm.
    const downloads = await pageDownloads();
    expect(Object.keys(downloads).sort()).toEqual(['confidence.nii.gz', 'mask.nii.gz', 'region.nii.gz', 'report.json', 'seg.dcm']);
    const series = join(dir, 'series');
    mkdirSync(series);
    for (const n of names) writeFileSync(join(series, n), readFileSync(join(daikonSeries, n)));
    const cli = runCli(series, join(dir, 'cli-dicom'));
    const webSeg = decodeDicomSeg(downloads['seg.dcm'], 'page seg.dcm');
    const cliSeg = decodeDicomSeg(readFileSync(join(cli, 'seg.dcm')), 'cli seg.dcm');
    expect(webSeg.segments.map((g) => [g.number, g.label])).toEqual(cliSeg.segments.map((g) => [g.number, g.label]));
    const webLabels = dicomSegToLabelVolume(webSeg, vol, nodeCard.classes, 'page seg.dcm');
    const cliLabels = dicomSegToLabelVolume(cliSeg, vol, nodeCard.classes, 'cli seg.dcm');
    expect(unexplainedMismatches(webLabels.data, cliLabels.data, ties.labelMargin)).toEqual([]);
    expect(unexplainedMismatches(webLabels.data, node.label.data, ties.labelMargin)).toEqual([]);
    const report = JSON.parse(new TextDecoder().decode(downloads['report.json']));
    const cliReport = JSON.parse(readFileSync(join(cli, 'report.json'), 'utf8'));
    expect(report.series.seriesInstanceUID).toBe(cliReport.series.seriesInstanceUID);
    expect(report.triage.verdict).toBe(cliReport.triage.verdict);
    expect(await page.getAttribute('#verdict', 'data-verdict')).toBe(cliReport.triage.verdict);
  }, 240_000);

  test('a file that fails after a study clears that study and says why in one line', async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    expect(await page.locator('#downloads a').count()).toBeGreaterThan(0);
    await page.setInputFiles('#nifti-file', { name: 'truncated.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(niftiBytes.subarray(0, 200)) });
    await page.waitForFunction(() => document.body.dataset.state === 'error');
    const message = (await page.textContent('#status'))!;
    expect(message).toContain('truncated.nii.gz');
    expect(message).not.toContain('\n');
    expect(await page.evaluate('alhvrDemo.result')).toBeUndefined();
    expect(await page.textContent('#summary')).toBe('');
    expect(await page.locator('#downloads a').count()).toBe(0);
    expect(await page.evaluate('alhvrDemo.studyView.nv.volumes.length')).toBe(0);
    expect(await page.isDisabled('#slice')).toBe(true);
  });

  test('a NIfTI file dropped on the page is segmented like a picked one', async () => {
    await page.evaluate(`(async () => {
      const bytes = Uint8Array.from(atob('${Buffer.from(niftiBytes).toString('base64')}'), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], 'dropped.nii.gz', { type: 'application/gzip' }));
      document.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    })()`);
    // The page was in "error" (the test before); wait for this file's own outcome.
    await page.waitForFunction(
      () => ['segmented', 'error'].includes(document.body.dataset.state ?? '') && document.getElementById('status')!.textContent!.includes('dropped.nii.gz'),
      undefined,
      { timeout: 60_000 },
    );
    expect(await page.textContent('#status')).toBe('Segmented dropped.nii.gz.');
    const label = fromBase64((await page.evaluate(`(${PAGE_BASE64})(alhvrDemo.result.label.data)`)) as string);
    expect(unexplainedMismatches(label, nodeResult.label.data, recorder.labelMargin)).toEqual([]);
  }, 120_000);

  test("a second file opened while the first's downloads are being made gets its own downloads only", async () => {
    const second = encodeNifti(generatePhantomCase({ seed: 8, index: 1 }).image);
    await page.evaluate('alhvrDemo.holdDownloads(true)');
    await page.setInputFiles('#nifti-file', { name: 'first.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(niftiBytes) });
    await page.waitForFunction(() => document.getElementById('status')!.textContent === 'Segmented first.nii.gz.', undefined, { timeout: 60_000 });
    expect(await page.getAttribute('#downloads', 'data-state')).toBe('preparing');
    // What the first study's links go through from here on, as the second file replaces it.
    await page.evaluate(`(() => {
      window.__firstLinks = [];
      for (const a of document.querySelectorAll('#downloads a[data-file]')) {
        new MutationObserver(() => window.__firstLinks.push(a.dataset.file + ': ' + a.textContent)).observe(a, { childList: true, characterData: true, subtree: true });
      }
    })()`);
    await page.setInputFiles('#nifti-file', { name: 'second.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(second) });
    await page.waitForFunction(() => document.getElementById('status')!.textContent === 'Segmented second.nii.gz.', undefined, { timeout: 60_000 });
    // The first study's unmade files were dropped when the second segmentation started.
    expect(await page.evaluate('window.__firstLinks')).toEqual([
      'mask.nii.gz: mask.nii.gz (not made: another file was opened)',
      'confidence.nii.gz: confidence.nii.gz (not made: another file was opened)',
      'region.nii.gz: region.nii.gz (not made: another file was opened)',
    ]);
    expect(await page.getAttribute('#downloads', 'data-state')).toBe('preparing');
    await page.evaluate('alhvrDemo.holdDownloads(false)');
    const files = await pageDownloads();
    expect(Object.keys(files).sort()).toEqual(['confidence.nii.gz', 'mask.nii.gz', 'region.nii.gz', 'report.json']);
    expect(await page.$$eval('#downloads a[data-file]', (as) => as.map((a) => (a as HTMLAnchorElement).download))).toEqual(
      ['mask.nii.gz', 'confidence.nii.gz', 'region.nii.gz', 'report.json'].map((n) => `second_${n}`),
    );
    expect(JSON.parse(new TextDecoder().decode(files['report.json'])).input).toBe('second.nii.gz');
    // The mask is the second study's, as shown (its own dims and labels), not the first's.
    const maps = await pageMaps(page);
    const secondVol = decodeNifti(second, { path: 'second.nii.gz' });
    expect(await page.evaluate('alhvrDemo.result.label.dims')).toEqual([...secondVol.dims]);
    const mask = gunzipSync(files['mask.nii.gz']);
    expect(Buffer.compare(mask.subarray(352), Buffer.from(maps.label))).toBe(0);
    expect([mask.readInt16LE(42), mask.readInt16LE(44), mask.readInt16LE(46)]).toEqual([...secondVol.dims]);
  }, 120_000);
});
