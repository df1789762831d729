/**
 * Peak memory and time of the 3D sliding window alone (inference/src/sliding-window.ts) on a
 * CT-sized volume, with a cheap pointwise stand-in for the network so the window bookkeeping is
 * what is measured: 512×512×300 float32 input, 96³ patches at stride 64 (the released setting),
 * 5 classes (background + the four AbdomenCT-1K organs), uniform and Gaussian weighting, each
 * in its own process. The floor it should stay near is input + one float32 volume per class +
 * one weight volume; nnU-Net's predictor additionally holds a padded copy, a float16/32
 * accumulator per class and a count map on the device.
 *
 *   npx tsx bench/sliding-window-memory.ts [--slices 300] [--classes 5]
 *
 * Writes bench/results/sliding-window-memory.json.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { slidingWindowInference, type Dims3 } from '../inference/src/sliding-window.js';

const here = dirname(fileURLToPath(import.meta.url));
const argOf = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const slices = Number(argOf('slices', '300'));
const classes = Number(argOf('classes', '5'));
const PATCH: Dims3 = [96, 96, 96];
const MB = 1024 * 1024;

if (process.argv.includes('--child')) {
  const gaussian = argOf('child', 'uniform') === 'gaussian';
  const dims: Dims3 = [512, 512, slices];
  const data = new Float32Array(dims[0] * dims[1] * dims[2]);
  for (let n = 0; n < data.length; n++) data[n] = Math.sin(n / 977);
  const baselineMb = process.resourceUsage().maxRSS / 1024;
  // Pointwise logits: class c gets c·v, so the work per voxel is the softmax and accumulation only.
  const model = (window: Float32Array) => {
    const out = new Float32Array(classes * window.length);
    for (let c = 1; c < classes; c++) for (let n = 0; n < window.length; n++) out[c * window.length + n] = c * window[n];
    return out;
  };
  const start = performance.now();
  const result = await slidingWindowInference(data, dims, model, { patch: PATCH, numClasses: classes, gaussian });
  const seconds = (performance.now() - start) / 1000;
  process.stdout.write(
    `${JSON.stringify({ windows: result.windows, seconds, peakRssMb: process.resourceUsage().maxRSS / 1024, rssAfterInputMb: baselineMb })}\n`,
  );
} else {
  const runs: Record<string, unknown> = {};
  for (const mode of ['uniform', 'gaussian']) {
    const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', mode, '--slices', String(slices), '--classes', String(classes)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    runs[mode] = JSON.parse(out.trim().split('\n').pop()!);
    process.stderr.write(`${mode}: ${JSON.stringify(runs[mode])}\n`);
  }
  const voxels = 512 * 512 * slices;
  const result = {
    input: `512x512x${slices} float32 (in memory), patch 96^3, stride 64, ${classes} classes, pointwise stand-in model`,
    voxels,
    floorMb: {
      input: (4 * voxels) / MB,
      classAccumulators: (4 * voxels * classes) / MB,
      weightVolume: (4 * voxels) / MB,
    },
    runs,
    node: process.version,
    date: new Date().toISOString(),
  };
  const file = join(here, 'results', 'sliding-window-memory.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  process.stderr.write(`wrote ${file}\n`);
}
