// The viewer on a real WebGPU device. Debian's Chromium ships SwiftShader's Vulkan driver, which
// gives headless Chromium a WebGPU adapter (the GPU API implemented on the CPU), so the page's
// WebGPU path — onnxruntime-web's WebGPU build, its shaders, the worker — runs end to end here
// as on a machine with a GPU, only slower. The result must equal the Node pipeline's up to the
// order in which GPU kernels sum.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeNifti, encodeNifti, generatePhantomCase, type Volume, type VoxelArray } from '@alhvr/core';
import type { SegmentResult } from '@alhvr/inference';
import { exportOnnx } from '@alhvr/export';
import { buildDemo } from '../viewer/scripts/build-demo.mjs';
import { MODEL_SIZE, TieRecorder, openViewerPage, pageMaps, segmentInNode, waitForPageState, type ViewerPage } from './viewer-harness.js';
import { makeCard, makeStudent, useBackend } from './export-fixtures.js';

/** Chromium's WebGPU on SwiftShader's Vulkan (CPU). */
const WEBGPU_ARGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];
/**
 * GPU kernels sum in another order than ONNX Runtime's CPU kernels (and may fuse multiply-adds),
 * so probabilities differ in their last digits: a voxel may change label or region only where the
 * Node pipeline's two best classes (or a student's confidence and γ) are closer than this.
 */
const GPU_TIE = 1e-4;

let dir: string;
let viewer: ViewerPage;
let niftiBytes: Uint8Array;
let vol: Volume<VoxelArray>;
let node: SegmentResult;
let ties: TieRecorder;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-viewer-webgpu-'));
  const modelPath = join(dir, 'model.onnx');
  await useBackend();
  const [a, b] = [makeStudent(21), makeStudent(22)];
  writeFileSync(modelPath, exportOnnx([a, b], { ...makeCard(MODEL_SIZE, 0.5), name: 'viewer-webgpu-test' }).onnx);
  a.dispose();
  b.dispose();
  await buildDemo({ outDir: join(dir, 'site'), model: modelPath, compress: false });
  niftiBytes = encodeNifti(generatePhantomCase({ seed: 7, index: 2 }).image);
  vol = decodeNifti(niftiBytes, { path: 'phantom.nii.gz' });
  node = (await segmentInNode(modelPath, vol, { batch: 4, wrap: (m) => (ties = new TieRecorder(m, vol)) })).result;
  viewer = await openViewerPage(dir, '/site/index.html?threads=1&ep=webgpu', { args: WEBGPU_ARGS });
}, 300_000);

afterAll(async () => {
  await viewer?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('viewer on WebGPU (SwiftShader)', () => {
  test('the page opens the model on WebGPU and says so', async () => {
    const { page } = viewer;
    expect(await page.evaluate('document.body.dataset.state')).toBe('ready');
    expect(await page.getAttribute('#runtime-info', 'data-backend')).toBe('webgpu');
    expect(await page.textContent('#runtime-info')).toMatch(/^ONNX Runtime Web in a worker: WebGPU/);
  });

  test('labels, regions and confidence equal the Node pipeline up to the GPU\'s summation order; report.json names WebGPU', async () => {
    const { page } = viewer;
    await page.setInputFiles('#nifti-file', { name: 'phantom.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from(niftiBytes) });
    await waitForPageState(page, ['segmented'], viewer.console, 240_000);
    const got = await pageMaps(page);
    expect(got.dims).toEqual(node.label.dims);
    // Only meaningful if the model decides several things on this phantom.
    expect(new Set(node.label.data).size).toBeGreaterThanOrEqual(3);
    expect(new Set(node.region!.data)).toEqual(new Set([1, 2, 3]));
    const unexplained = (mine: Uint8Array, theirs: Uint8Array, margin: Float32Array) => {
      let n = 0;
      for (let i = 0; i < theirs.length; i++) if (mine[i] !== theirs[i] && !(margin[i] < GPU_TIE)) n++;
      return n;
    };
    expect(unexplained(got.label, node.label.data, ties.labelMargin)).toBe(0);
    expect(unexplained(got.region, node.region!.data, ties.regionMargin)).toBe(0);
    let worst = 0;
    for (let i = 0; i < got.confidence.length; i++) worst = Math.max(worst, Math.abs(got.confidence[i] - node.confidence.data[i]));
    expect(worst).toBeLessThanOrEqual(GPU_TIE);

    await page.waitForFunction(() => document.getElementById('downloads')!.dataset.state === 'ready', undefined, { timeout: 120_000 });
    const report = JSON.parse(
      (await page.evaluate(`(async () => new TextDecoder().decode(await (await fetch(document.querySelector('#downloads a[data-file="report.json"]').href)).arrayBuffer()))()`)) as string,
    );
    expect(report.device.used).toBe('browser-webgpu');
    expect(report.device.note).toBe('onnxruntime-web (webgpu) in a Web Worker');
  }, 300_000);
});
