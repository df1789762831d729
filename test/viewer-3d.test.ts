// A 3D model (VNet students, card dimensions 3) in the viewer demo, in headless Debian Chromium:
// the worker segments an abdominal CT phantom by sliding window as alhvr-segment does, on
// WebAssembly, and the page reports, shows and offers for download the same results.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import {
  ALHVR_3D_RECIPE_PREPROCESSING,
  applyIntensityMap,
  decodeDicomSeg,
  decodeNifti,
  dicomSegToLabelVolume,
  encodeCtSeries,
  encodeNifti,
  generateAbdomenCtCase,
  intensityMap,
  readDicomSeriesFromBytes,
  resampledDims,
  resampleGrid,
  type Dims3,
  type ModelCard,
  type Volume,
  type VoxelArray,
} from '@alhvr/core';
import { assessCase, computeCaseStats, type SegmentResult } from '@alhvr/inference';
import { openModelFile, type OpenedModel } from '@alhvr/inference/node';
import { exportOnnx, type ExportCard } from '@alhvr/export';
import { slidingWindowInference } from '../inference/src/sliding-window.js';
import { buildDemo } from '../viewer/scripts/build-demo.mjs';
import {
  PAGE_BASE64,
  RESET_SEGMENTATION_WATCH,
  TIE,
  WATCH_SEGMENTATION,
  fromBase64,
  openViewerPage,
  pageMaps,
  segmentInNode,
  unexplainedMismatches,
  waitForPageState,
  type ViewerPage,
} from './viewer-harness.js';
import { runCli } from './cli-harness.js';
import { useBackend } from './export-fixtures.js';
import { CT_CLASSES, makeVNet } from './vnet3d-fixtures.js';

const PATCH = 32;
/** Coarser than the phantom's 0.81 × 0.81 × 2 mm: the page resamples, runs 3 × 3 × 1 windows and carries the maps back. */
const TARGET: [number, number, number] = [1.2, 1.2, 2.5];
const GAMMA = 0.6;

let dir: string;
let modelPath: string;
let opened: OpenedModel;
let card: ModelCard;
let viewer: ViewerPage;
let context: BrowserContext;
let page: Page;
let origin: string;
let niftiBytes: Uint8Array;
let dicomFiles: { name: string; bytes: Uint8Array }[];

/** The Node pipeline's result, its progress, and per source voxel how near its label and region came to a tie. */
interface NodeReference {
  result: SegmentResult;
  progress: [number, number][];
  labelMargin: Float32Array;
  regionMargin: Float32Array;
}

/**
 * segmentVolume with onnxruntime-node, and the decision margins of the same computation redone
 * here (resample, normalise, slide, average; top-1 − top-2 and min |student confidence − γ| on
 * the model grid) carried back as labels are (card labelBack). The redone labels must equal the
 * pipeline's, or the margins would describe something else.
 */
async function nodeReference(vol: Volume<VoxelArray>): Promise<NodeReference> {
  const { result, progress } = await segmentInNode(modelPath, vol);
  const grid = resampledDims(vol.dims, vol.spacing, TARGET);
  const voxels = grid[0] * grid[1] * grid[2];
  const image = resampleGrid(vol.data, vol.dims, grid, card.resize.image, new Float32Array(voxels));
  applyIntensityMap(intensityMap(image, card.normalisation), image, image);
  const classes = CT_CLASSES.length;
  const patch: Dims3 = [PATCH, PATCH, PATCH];
  const stacked = new Float32Array((classes + 2) * PATCH ** 3);
  const sw = await slidingWindowInference(
    image,
    grid,
    async (window) => {
      const out = await opened.model.runPatches!(window, 1, patch, ['probabilities', 'studentConfidence']);
      stacked.set(out.probabilities as Float32Array, 0);
      stacked.set(out.studentConfidence as Float32Array, classes * PATCH ** 3);
      return stacked;
    },
    { patch, numClasses: classes, outputs: 'probabilities', extraChannels: 2 },
  );
  const labels = new Uint8Array(voxels);
  const labelGrid = new Float32Array(voxels);
  const regionGrid = new Float32Array(voxels);
  for (let v = 0; v < voxels; v++) {
    let [top1, top2, best] = [-Infinity, -Infinity, 0];
    for (let c = 0; c < classes; c++) {
      const p = sw.probabilities[c][v];
      if (p > top1) [top1, top2, best] = [p, top1, c];
      else if (p > top2) top2 = p;
    }
    labels[v] = best;
    labelGrid[v] = top1 - top2;
    regionGrid[v] = Math.min(Math.abs(sw.extra[0][v] - GAMMA), Math.abs(sw.extra[1][v] - GAMMA));
  }
  const back = <T extends Uint8Array | Float32Array>(src: ArrayLike<number>, out: T) => resampleGrid(src, grid, vol.dims, card.resize.labelBack, out);
  expect(Buffer.compare(Buffer.from(back(labels, new Uint8Array(vol.voxelCount))), Buffer.from(result.label.data))).toBe(0);
  return { result, progress, labelMargin: back(labelGrid, new Float32Array(vol.voxelCount)), regionMargin: back(regionGrid, new Float32Array(vol.voxelCount)) };
}

let niftiRef: NodeReference;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-viewer-3d-'));
  await useBackend();
  const [a, b] = [makeVNet(31), makeVNet(32)];
  const exportCard: ExportCard = {
    name: 'ct-viewer-test',
    description: 'Tiny 3D test model (random weights, not trained).',
    classes: CT_CLASSES,
    dimensions: 3,
    input: { size: [PATCH, PATCH, PATCH], sliceAxis: 'largest-spacing' },
    targetSpacing: TARGET,
    normalisation: { kind: 'zscore-volume' },
    resize: ALHVR_3D_RECIPE_PREPROCESSING.resize,
    regions: { gamma: GAMMA, beta: 0.7, gammaSource: 'training-final' },
    training: { method: 'alhvr', iterations: 3 },
  };
  modelPath = join(dir, 'model.onnx');
  writeFileSync(modelPath, exportOnnx([a, b], exportCard).onnx);
  a.dispose();
  b.dispose();
  await buildDemo({ outDir: join(dir, 'site'), model: modelPath, compress: false });

  const ct = generateAbdomenCtCase({ seed: 5, index: 0, matrix: 96 });
  niftiBytes = encodeNifti(ct.image, { datatype: 'int16' });
  dicomFiles = encodeCtSeries(ct.image, { uidSeed: 77, patientId: 'viewer-3d', seriesDescription: 'ALHVR abdomen CT phantom' }).map((bytes, k) => ({
    name: `IM${String(k + 1).padStart(4, '0')}.dcm`,
    bytes,
  }));
  opened = await openModelFile(modelPath, { device: 'cpu', threads: 1 });
  card = opened.identity.card;
  niftiRef = await nodeReference(decodeNifti(niftiBytes, { path: 'ct.nii.gz' }));

  viewer = await openViewerPage(dir, '/site/index.html?threads=2');
  ({ context, page, origin } = viewer);
}, 240_000);

afterAll(async () => {
  await viewer?.close();
  await opened?.model.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const waitForState = (p: Page, states: string[]) => waitForPageState(p, states, viewer.console);

/** Labels and regions equal Node's except at ties; confidence within TIE; the verdict is Node's. */
async function expectNodeResult(ref: NodeReference, tags?: { modality?: string; bodyPart?: string }): Promise<void> {
  const maps = await pageMaps(page);
  const node = ref.result;
  expect(maps.dims).toEqual([...node.label.dims]);
  // The comparison means something only if the model makes several decisions here.
  expect(new Set(node.label.data).size).toBeGreaterThanOrEqual(3);
  expect(new Set(node.region!.data).size).toBeGreaterThanOrEqual(2);
  expect(unexplainedMismatches(maps.label, node.label.data, ref.labelMargin)).toEqual([]);
  expect(unexplainedMismatches(maps.region, node.region!.data, ref.regionMargin)).toEqual([]);
  let maxDiff = 0;
  for (let i = 0; i < node.confidence.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(maps.confidence[i] - node.confidence.data[i]));
  expect(maps.confidence.length).toBe(node.confidence.data.length);
  expect(maxDiff).toBeLessThanOrEqual(TIE);
  const assessment = assessCase(computeCaseStats(node.label, node.confidence, node.region, card), node.signals, card, { tags });
  const pageAssessment = (await page.evaluate('alhvrDemo.result.assessment')) as typeof assessment;
  expect(pageAssessment.triage).toEqual(assessment.triage);
  expect(await page.getAttribute('#verdict', 'data-verdict')).toBe(assessment.triage.verdict);
}

describe('a 3D model in the viewer demo', () => {
  test('the model line says 3D (patch, spacing); WebGPU is skipped with the reason, and refused in one line when insisted on', async () => {
    expect(await page.textContent('#model-info')).toContain('3D: windows of 32×32×32 voxels at 1.2×1.2×2.5 mm');
    expect(await page.evaluate('alhvrDemo.model.backend')).toBe('wasm');
    expect(await page.textContent('#runtime-info')).toMatch(/WebAssembly, 2 threads.*WebGPU not used: onnxruntime-web's WebGPU runs no 3D ConvTranspose/);
    expect(await page.textContent('#demo-banner')).toContain('synthetic abdominal CT phantoms');
    const other = await context.newPage();
    try {
      await other.goto(`${origin}/site/index.html?threads=1&ep=webgpu`);
      await other.waitForFunction(() => document.body.dataset.state === 'error');
      const message = (await other.textContent('#status'))!;
      expect(message).toMatch(/model\.onnx.*cannot open the model on WebGPU: onnxruntime-web's WebGPU runs no 3D ConvTranspose/);
      expect(message).not.toContain('\n');
    } finally {
      await other.close();
    }
  });

  test('a CT NIfTI in a worker: progress per window, cancel, then labels, confidence and verdict as the Node pipeline; the main thread never blocks 100 ms', async () => {
    const windows = niftiRef.result.windows!;
    expect(windows).toBe(9);
    expect(niftiRef.progress.at(-1)).toEqual([windows, windows]);
    await page.evaluate(WATCH_SEGMENTATION);
    await page.evaluate(`(() => {
      // Cancel (in the page, so no run can finish first) at the first window's progress.
      const status = document.getElementById('status');
      const watch = new MutationObserver(() => {
        if (!/window \\d+ of \\d+/.test(status.textContent)) return;
        watch.disconnect();
        document.getElementById('cancel').click();
      });
      watch.observe(status, { childList: true, characterData: true, subtree: true });
    })()`);
    const file = { name: 'ct.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(niftiBytes) };
    await page.setInputFiles('#nifti-file', file);
    await waitForState(page, ['ready', 'segmented']);
    expect(await page.textContent('#status')).toBe('Segmentation cancelled.');

    await page.evaluate(RESET_SEGMENTATION_WATCH);
    // Case files held back (a test hook): the study must show while its downloads are still being made.
    await page.evaluate('alhvrDemo.holdDownloads(true)');
    await page.setInputFiles('#nifti-file', file);
    await waitForState(page, ['segmented']);
    expect(await page.textContent('#verdict')).toContain('Verdict: ');
    expect(await page.getAttribute('#downloads', 'data-state')).toBe('preparing');
    expect(await page.$$eval('#downloads a[data-file]', (as) => as.map((a) => `${a.dataset.file} ${a.dataset.state}`))).toEqual([
      'mask.nii.gz preparing',
      'confidence.nii.gz preparing',
      'region.nii.gz preparing',
      'report.json ready',
    ]);
    await page.evaluate('alhvrDemo.holdDownloads(false)');
    const statuses = (await page.evaluate('window.__statuses')) as string[];
    const progress = statuses.map((t) => /window (\d+) of (\d+)/.exec(t)).filter((m) => m !== null);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((m) => Number(m[2]) === windows)).toBe(true);
    expect(Number(progress.at(-1)![1])).toBe(windows);
    expect(statuses.some((t) => /slice \d+ of/.test(t))).toBe(false);
    await expectNodeResult(niftiRef);
    expect((await page.evaluate('window.__longest')) as number).toBeLessThan(100);
    expect(await page.textContent('#summary')).toContain(`9 windows of 32×32×32 on the model grid ${niftiRef.result.modelGrid!.join('×')} (1.2×1.2×2.5 mm)`);
    // Shown as a 2D study is: NiiVue holds the image and its three overlays on the image grid, and
    // the slice view steps through the largest-spacing axis (k: 2 mm against 0.81 mm in plane).
    await page.waitForFunction(() => (globalThis as any).alhvrDemo.studyView?.nv.volumes.length === 4);
    expect(await page.evaluate('alhvrDemo.studyView.nv.volumes[1].hdr.dims.slice(1, 4)')).toEqual([...niftiRef.result.label.dims]);
    const [di, dj, dk] = niftiRef.result.label.dims;
    expect(await page.evaluate("[document.getElementById('view').width, document.getElementById('view').height, Number(document.getElementById('slice').max) + 1]")).toEqual([di, dj, dk]);
  }, 180_000);

  test("the γ slider is disabled with its reason (no wrong maps), and the worker refuses a new threshold for a 3D study", async () => {
    expect(await page.evaluate('document.body.dataset.state')).toBe('segmented');
    expect(await page.isDisabled('#gamma')).toBe(true);
    expect(await page.textContent('#gamma-note')).toContain("3D models keep the card's γ");
    expect(await page.textContent('#gamma-value')).toBe(GAMMA.toFixed(2));
    const refused = (await page.evaluate('alhvrDemo.setRegionThreshold(0.3).then(() => "done", (e) => e.message)')) as string;
    expect(refused).toContain("3D models keep the card's γ");
    // The region map shown is still the pipeline's at the card's γ.
    const maps = await pageMaps(page);
    expect(unexplainedMismatches(maps.region, niftiRef.result.region!.data, niftiRef.regionMargin)).toEqual([]);
  });

  test('downloads: the maps and report.json (with its sliding-window record) equal what alhvr-segment writes', async () => {
    const input = join(dir, 'ct.nii.gz');
    writeFileSync(input, niftiBytes);
    const out = join(dir, 'cli');
    const r = await runCli('alhvr-segment', [input, '--model', modelPath, '--out', out, '--threads', '1', '--device', 'cpu', '--no-preview', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const [caseDir] = readdirSync(out, { withFileTypes: true }).filter((e) => e.isDirectory());
    const cli = join(out, caseDir.name);
    // The maps' files are made after the result is shown: wait until every link can be saved.
    await page.waitForFunction(() => ['ready', 'failed'].includes(document.getElementById('downloads')!.dataset.state ?? ''), undefined, { timeout: 60_000 });
    expect(await page.getAttribute('#downloads', 'data-state')).toBe('ready');
    const got = (await page.evaluate(`(async () => {
      const b64 = ${PAGE_BASE64};
      const out = {};
      for (const a of document.querySelectorAll('#downloads a[data-file]')) out[a.dataset.file] = b64(new Uint8Array(await (await fetch(a.href)).arrayBuffer()));
      return out;
    })()`)) as Record<string, string>;
    const files = Object.fromEntries(Object.entries(got).map(([k, v]) => [k, fromBase64(v)]));
    expect(Object.keys(files).sort()).toEqual(['confidence.nii.gz', 'mask.nii.gz', 'region.nii.gz', 'report.json']);
    for (const name of ['mask.nii.gz', 'region.nii.gz']) {
      const [web, node] = [gunzipSync(files[name]), gunzipSync(readFileSync(join(cli, name)))];
      expect(web.length, name).toBe(node.length);
      // Headers byte for byte but cal_max/cal_min (bytes 124–131); voxels equal but at ties.
      const header = (b: Buffer) => Buffer.concat([b.subarray(0, 124), b.subarray(132, 352)]);
      expect(Buffer.compare(header(web), header(node)), name).toBe(0);
      const margin = name === 'mask.nii.gz' ? niftiRef.labelMargin : niftiRef.regionMargin;
      expect(unexplainedMismatches(web.subarray(352), node.subarray(352), margin)).toEqual([]);
    }
    const web = JSON.parse(new TextDecoder().decode(files['report.json']));
    const node = JSON.parse(readFileSync(join(cli, 'report.json'), 'utf8'));
    expect(Object.keys(web).sort()).toEqual(Object.keys(node).sort());
    for (const key of ['toolkit', 'model', 'geometry', 'warnings', 'slidingWindow', 'gamma', 'triage']) expect(web[key], key).toEqual(node[key]);
    expect(web.slidingWindow).toEqual({ windows: 9, patch: [32, 32, 32], targetSpacingMm: TARGET, modelGrid: niftiRef.result.modelGrid, weighting: 'uniform' });
    expect(web.stats.foreground.meanConfidence).toBeCloseTo(node.stats.foreground.meanConfidence, 4);
    expect(web.device.used).toBe('browser-wasm');
  }, 120_000);

  test('a CT DICOM series (rescale slope/intercept) segments on its own grid as the Node pipeline reads and segments it', async () => {
    const vol = await readDicomSeriesFromBytes(dicomFiles, { path: 'series' });
    const ref = await nodeReference(vol);
    await page.setInputFiles(
      '#dicom-files',
      [...dicomFiles].reverse().map((f) => ({ name: f.name, mimeType: 'application/dicom', buffer: Buffer.from(f.bytes) })),
    );
    await page.waitForFunction(
      () => ['segmented', 'error'].includes(document.body.dataset.state ?? '') && document.getElementById('status')!.textContent!.includes('DICOM'),
      undefined,
      { timeout: 60_000 },
    );
    await waitForState(page, ['segmented']);
    const dicom = vol.meta.dicom!;
    expect(dicom.modality).toBe('CT');
    await expectNodeResult(ref, { modality: dicom.modality, bodyPart: dicom.bodyPartExamined });
    expect(await page.evaluate('Object.keys(alhvrDemo.result.files).sort()')).toEqual(['confidence.nii.gz', 'mask.nii.gz', 'region.nii.gz', 'report.json', 'seg.dcm']);
    // The DICOM SEG, made after the result, places the page's labels on the series.
    const seg = fromBase64((await page.evaluate(`alhvrDemo.result.files['seg.dcm'].then(${PAGE_BASE64})`)) as string);
    const labels = dicomSegToLabelVolume(decodeDicomSeg(seg, 'page seg.dcm'), vol, card.classes, 'page seg.dcm');
    expect(Buffer.compare(Buffer.from(labels.data), Buffer.from((await pageMaps(page)).label))).toBe(0);
  }, 120_000);

  test("the sample button gives a 3D model the phantom it is for: an abdominal CT (128² matrix), not a cardiac stack", async () => {
    await page.click('#sample');
    await page.waitForFunction(() => ['segmented', 'error'].includes(document.body.dataset.state ?? '') && document.getElementById('status')!.textContent!.includes('phantom-sample'), undefined, {
      timeout: 60_000,
    });
    expect(await page.textContent('#status')).toBe('Segmented phantom-sample.nii.gz.');
    const ct = generateAbdomenCtCase({ seed: 1, index: 0, matrix: 128 }).image;
    expect(await page.evaluate('alhvrDemo.result.image.dims')).toEqual([...ct.dims]);
    const image = (await page.evaluate(`(${PAGE_BASE64})(alhvrDemo.result.image.data)`)) as string;
    expect(Buffer.compare(Buffer.from(fromBase64(image)), Buffer.from(ct.data.buffer, ct.data.byteOffset, ct.data.byteLength))).toBe(0);
  }, 90_000);
});
