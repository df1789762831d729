/**
 * ONNX Runtime session options for the segmentation model, compared in one run: the product's
 * options (inference/src/device.ts) against variants, each session fed the same batches in turn,
 * repeated with the order rotated (this machine is shared: only same-run ratios mean anything).
 *
 *   npx tsx bench/segment-session-options.ts MODEL.onnx [--slices 48] [--case-slices 10] [--reps 3] [--threads 2] [--batch 8] [--results NAME]
 *
 * The slices go in as alhvr-segment feeds a folder: case by case (--case-slices each), in batches
 * of --batch and each case's remainder, so a pass meets the shapes a run meets. The first two
 * passes of each variant are recorded apart (warmUpSeconds): the first run of a shape allocates,
 * and with a memory pattern the second allocates again.
 *
 * Writes bench/results/segment-session-options.json (or --results NAME).
 */
import '@alhvr/inference/no-telemetry';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '@alhvr/core/node';
import { createSliceModel, type OrtRuntime, type SliceOutputKind } from '../inference/src/index.js';
import { sessionOptionsFor } from '../inference/src/device.js';
import { ort } from '../inference/src/ort-node.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const modelPath = process.argv[2];
const slices = arg('slices', 48);
const reps = arg('reps', 3);
const threads = arg('threads', 2);
const batch = arg('batch', 8);
const caseSlices = arg('case-slices', 10);
const resultsIndex = process.argv.indexOf('--results');
const resultsName = resultsIndex >= 0 ? process.argv[resultsIndex + 1] : 'segment-session-options.json';
const here = dirname(fileURLToPath(import.meta.url));
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

const product = sessionOptionsFor('cpu', { threads });
const variants: Record<string, object> = {
  product,
  'parallel students (executionMode parallel, 2 inter-op × 1 intra-op)': { ...product, executionMode: 'parallel', interOpNumThreads: 2, intraOpNumThreads: 1 },
  'graph optimisation extended (no layout transformer)': { ...product, graphOptimizationLevel: 'extended' },
  'memory pattern (the product before 2026-12-05)': { ...product, enableMemPattern: true },
  'no CPU arena': { ...product, enableCpuMemArena: false },
};

const bytes = new Uint8Array(readFileSync(modelPath));
const opened = [];
for (const [name, options] of Object.entries(variants)) opened.push({ name, ...(await createSliceModel(bytes, ort as unknown as OrtRuntime, options, modelPath)) });
const [mw, mh] = opened[0].identity.card.input.size;
const plane = mw * mh;
const input = new Float32Array(slices * plane);
for (let n = 0; n < input.length; n++) input[n] = Math.sin(n / 97) + ((n * 2654435761) % 1000) / 1000 - 0.5;
const fetch: SliceOutputKind[] = ['label', 'confidence', 'probabilities', 'region', 'studentLabel'].filter((k) => opened[0].model.available.has(k as SliceOutputKind)) as SliceOutputKind[];

async function pass(model: (typeof opened)[number]['model']): Promise<{ seconds: number; labels: Uint8Array }> {
  const labels = new Uint8Array(slices * plane);
  const t = performance.now();
  for (let s = 0; s < slices; ) {
    const caseEnd = Math.min(slices, s - (s % caseSlices) + caseSlices);
    const count = Math.min(batch, caseEnd - s);
    const out = await model.run(input.subarray(s * plane, (s + count) * plane), count, mh, mw, fetch);
    labels.set(out.label!, s * plane);
    s += count;
  }
  return { seconds: (performance.now() - t) / 1000, labels };
}

const seconds: Record<string, number[]> = Object.fromEntries(opened.map((o) => [o.name, []]));
const warmUpSeconds: Record<string, number[]> = {};
const sameLabels: Record<string, boolean> = {};
let reference: Uint8Array | undefined;
for (const o of opened) {
  const first = await pass(o.model); // warm-up, and the labels each variant gives
  warmUpSeconds[o.name] = [first.seconds, (await pass(o.model)).seconds];
  reference ??= first.labels;
  sameLabels[o.name] = Buffer.from(first.labels).equals(Buffer.from(reference));
}
for (let r = 0; r < reps; r++) {
  for (let m = 0; m < opened.length; m++) {
    const o = opened[(m + r) % opened.length];
    seconds[o.name].push((await pass(o.model)).seconds);
  }
  process.stderr.write(`rep ${r + 1}/${reps}: ${opened.map((o) => `${(slices / seconds[o.name][r]).toFixed(2)}`).join(' ')} slices/s\n`);
}
const base = median(seconds.product);
const result = {
  model: modelPath.split('/').pop(),
  size: [mw, mh],
  slices,
  batch,
  caseSlices,
  threads,
  reps,
  loadavg: loadavg(),
  note: process.env.BENCH_NOTE ?? 'same-run ratios only',
  variants: Object.fromEntries(
    opened.map((o) => [o.name, { medianSlicesPerSec: slices / median(seconds[o.name]), speedVsProduct: base / median(seconds[o.name]), sameLabelsAsProduct: sameLabels[o.name], warmUpSeconds: warmUpSeconds[o.name], seconds: seconds[o.name] }]),
  ),
  createdAt: new Date().toISOString(),
};
for (const o of opened) await o.model.release();
await writeFileAtomic(join(here, 'results', resultsName), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(result.variants, (k, v) => (k === 'seconds' ? undefined : v), 2)}\n`);
