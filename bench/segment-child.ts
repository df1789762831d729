/**
 * One measurement of bench/segment.ts, in its own process so its peak RSS is its own.
 *
 *   npx tsx bench/segment-child.ts ort MODEL SLICES.f32 N H W THREADS BATCH [LABELS_OUT.u8]
 *     ONNX Runtime alone: the product's session (openModelFile, same options) on the
 *     preprocessed slices, batches of BATCH, the outputs the product writes (label, confidence,
 *     region; the pipeline also fetches probabilities and student labels); its warm-up run
 *     (the first, not in `seconds`) is reported as warmUpSeconds.
 *   npx tsx bench/segment-child.ts e2e MODEL INPUT_LIST.json OUT_DIR THREADS BATCH [--save-probabilities]
 *     alhvr-segment end to end (runSegmentation: read, preprocess, both students, maps back,
 *     every NIfTI output, preview with the CLI's text rasterizer as alhvr-segment passes it, report,
 *     manifest), timed from "model loaded" to the end. (Before 2026-12-04 late evening the preview
 *     was the montage alone: about 60 ms of CPU per case less than the CLI spends.)
 *     With SEGMENT_BENCH_INFERENCE=/path/to/dist/node.js, that build's runSegmentation; with
 *     SEGMENT_BENCH_NO_PREVIEW=1, without preview.png (what the preview costs). Both modes report
 *     cpuSeconds: the process's CPU time, all threads, over the timed span.
 *
 * Prints one JSON line.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as inference from '@alhvr/inference/node';
import type { CaseSource, SliceOutputKind } from '@alhvr/inference/node';
import { rasterizeSvgLayer } from '../cli/src/lib/plots/render.js';

// SEGMENT_BENCH_INFERENCE: another build of inference's Node entry (an earlier commit's), so one
// bench run compares before and after a change under the same load.
const { openModelFile, runSegmentation } = (process.env.SEGMENT_BENCH_INFERENCE ? await import(process.env.SEGMENT_BENCH_INFERENCE) : inference) as typeof inference;

const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

async function ortAlone(args: string[]): Promise<object> {
  const [model, slicesPath, n, h, w, threads, batch, labelsOut] = args;
  const [N, H, W, B] = [Number(n), Number(h), Number(w), Number(batch)];
  const raw = readFileSync(slicesPath);
  const slices = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const t0 = performance.now();
  const opened = await openModelFile(model, { device: 'cpu', threads: Number(threads) });
  const loadMs = performance.now() - t0;
  const fetch: SliceOutputKind[] = ['label', 'confidence', 'region'];
  const labels = new Uint8Array(N * H * W);
  // Warm-up, as PyTorch's is (timed apart: the product's first batch pays it).
  const tw = performance.now();
  await opened.model.run(slices, Math.min(B, N), H, W, fetch);
  const warmUpSeconds = (performance.now() - tw) / 1000;
  const t1 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let s = 0; s < N; s += B) {
    const count = Math.min(B, N - s);
    const out = await opened.model.run(slices.subarray(s * H * W), count, H, W, fetch);
    labels.set(out.label!, s * H * W);
  }
  const seconds = (performance.now() - t1) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (labelsOut) writeFileSync(labelsOut, labels);
  await opened.model.release();
  return { slices: N, seconds, slicesPerSec: N / seconds, warmUpSeconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, sessionLoadMs: loadMs, peakRssMb: peakRssMb() };
}

async function endToEnd(args: string[]): Promise<object> {
  const [model, listPath, outDir, threads, batch, flag] = args;
  const sources = JSON.parse(readFileSync(listPath, 'utf8')) as CaseSource[];
  const t0 = performance.now();
  let loaded = 0;
  let cpuAtLoad = process.cpuUsage();
  let slices = 0;
  const run = await runSegmentation(sources, {
    output: outDir,
    model,
    device: 'cpu',
    threads: Number(threads),
    batch: Number(batch),
    formats: new Set(['nifti']),
    saveProbabilities: flag === '--save-probabilities',
    preview: process.env.SEGMENT_BENCH_NO_PREVIEW === '1' ? false : undefined,
    // as alhvr-segment does: the header, slice numbers and legend drawn by the CLI's rasterizer
    previewRasterizer: rasterizeSvgLayer,
    onStart: () => {
      loaded = performance.now();
      cpuAtLoad = process.cpuUsage();
    },
    onSlices: (_id, done, total) => {
      if (done === total) slices += total;
    },
  });
  const end = performance.now();
  const cpu = process.cpuUsage(cpuAtLoad);
  if (run.failed) throw new Error(`${run.failed} case(s) failed: ${run.entries.find((e) => e.status === 'failed')?.error}`);
  const seconds = (end - loaded) / 1000;
  const phases: Record<string, number> = {};
  for (const e of run.entries) for (const [k, v] of Object.entries(e.timingsMs)) phases[k] = (phases[k] ?? 0) + v;
  return { cases: run.entries.length, slices, seconds, slicesPerSec: slices / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, modelLoadMs: loaded - t0, phasesMs: phases, peakRssMb: peakRssMb() };
}

const [mode, ...rest] = process.argv.slice(2);
const result = mode === 'ort' ? await ortAlone(rest) : mode === 'e2e' ? await endToEnd(rest) : undefined;
if (!result) throw new Error(`unknown mode ${mode}`);
process.stdout.write(`${JSON.stringify(result)}\n`);
