/**
 * alhvr-segment end to end against PyTorch running only the same two networks' forward pass on
 * the same preprocessed slices, plus ONNX Runtime's session alone, measured in one run with the
 * three measurements interleaved and repeated (this 2-core machine is shared: medians count).
 *
 *   npx tsx bench/segment.ts [--cases N] [--reps R] [--threads T] [--batch B] [--model-dir DIR] [--baseline DIST/node.js]
 *   npx tsx bench/segment.ts --model models/alhvr-default.onnx --results segment-shipped.json
 *
 * --baseline: also run end to end with another build of inference's Node entry (e.g. an earlier
 * commit's inference/src compiled elsewhere) in every repetition, for a same-run before/after.
 *
 * Model: the default-width ALHVR U-Net pair exported by bench/segment-model.ts (random weights
 * with calibrated BatchNorm statistics; speed does not depend on the values), or --model (e.g. the
 * shipped 128² model). PyTorch evaluates that very ONNX graph (bench/onnx_torch.py).
 * Input: N synthetic cardiac MR phantoms (generatePhantomCase: oblique, ~160–224² × 8–12
 * slices, float32 .nii.gz), resized to the model's 256² by the pipeline.
 * PyTorch (Debian python3-torch) runs with set_num_threads(T), eval, no_grad, batch B over the
 * concatenated slices (full batches: its most favourable case), twice: with glibc's malloc and
 * with jemalloc keeping its pages (LD_PRELOAD=libjemalloc.so.2,
 * MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1), its fastest setting here; our ratios are
 * against the faster of the two in the same repetition. Only same-run ratios mean anything on a
 * shared machine: absolute slices/s move with the load.
 * Writes bench/results/segment.json, or --results NAME (the previous run's medians kept under "earlier").
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PYTHON } from '../test/support/python.js';
import { generatePhantomCase, type VoxelArray, type Volume } from '@alhvr/core';
import { readNiftiFile, writeFileAtomic, writeNiftiFile } from '@alhvr/core/node';
import { readModelIdentity, segmentVolume, type SliceModel, type SliceOutputKind, type SliceOutputs } from '@alhvr/inference';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const TSX = join(repo, 'node_modules', '.bin', 'tsx');

function arg(name: string, fallback: number): number;
function arg(name: string, fallback: string): string;
function arg(name: string, fallback: number | string): number | string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  return typeof fallback === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

const loadAtStart = loadavg();
const cases = arg('cases', 16);
const reps = arg('reps', 3);
const threads = arg('threads', 2);
const batch = arg('batch', 8);
const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-segment-'));
const modelDir = arg('model-dir', join(dir, 'model'));
const baseline = arg('baseline', '');
const modelArg = arg('model', '');
const resultsName = arg('results', 'segment.json');

/** Records the slices segmentVolume feeds the model, so the references see exactly those. */
class RecordingModel implements SliceModel {
  readonly available: ReadonlySet<SliceOutputKind> = new Set(['probabilities', 'label', 'confidence', 'region', 'studentConfidence']);
  readonly slices: Float32Array[] = [];
  constructor(readonly card: SliceModel['card']) {}
  async run(batchBuf: Float32Array, n: number, height: number, width: number, fetch: readonly SliceOutputKind[]): Promise<SliceOutputs> {
    const plane = height * width;
    for (let b = 0; b < n; b++) this.slices.push(batchBuf.slice(b * plane, (b + 1) * plane));
    const out: SliceOutputs = {};
    for (const k of fetch) {
      const per = k === 'probabilities' ? this.card.classes.length : k === 'studentConfidence' ? 2 : 1;
      out[k] = k === 'label' || k === 'region' ? new Uint8Array(n * plane).fill(k === 'region' ? 1 : 0) : new Float32Array(n * per * plane).fill(0.9);
    }
    return out;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';
if (!existsSync(JEMALLOC)) throw new Error(`${JEMALLOC} is missing: apt-get install libjemalloc2`);

function runJson(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): any {
  const out = execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'], env });
  return JSON.parse(out.trim().split('\n').pop()!);
}

try {
  const model = modelArg || join(modelDir, 'alhvr-unet.onnx');
  if (!modelArg && !existsSync(model)) execFileSync(TSX, [join(here, 'segment-model.ts'), modelDir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const { card } = await readModelIdentity(new Uint8Array(readFileSync(model)), model);
  const [mw, mh] = card.input.size;

  // Inputs as the CLI would find them.
  const inputDir = join(dir, 'input');
  mkdirSync(inputDir);
  const sources = [];
  const recorder = new RecordingModel(card);
  let inputVoxels = 0;
  for (let index = 0; index < cases; index++) {
    const path = join(inputDir, `phantom_${String(index).padStart(3, '0')}.nii.gz`);
    await writeNiftiFile(path, generatePhantomCase({ seed: 7, index }).image);
    sources.push({ kind: 'nifti', path });
    const vol: Volume<VoxelArray> = await readNiftiFile(path);
    inputVoxels += vol.voxelCount;
    await segmentVolume(vol, recorder, { batch });
  }
  const slices = recorder.slices.length;
  const slicesPath = join(dir, 'slices.f32');
  const all = new Float32Array(slices * mw * mh);
  recorder.slices.forEach((s, n) => all.set(s, n * mw * mh));
  writeFileSync(slicesPath, new Uint8Array(all.buffer));
  const listPath = join(dir, 'sources.json');
  writeFileSync(listPath, JSON.stringify(sources));

  const torchArgs = (r: number) => [join(here, 'segment-torch.py'), model, slicesPath, String(slices), String(mh), String(mw), '--batch', String(batch), '--threads', String(threads), ...(r === 0 ? ['--labels', join(dir, 'torch.u8')] : [])];
  const measure = {
    torch: (r: number) => runJson(PYTHON, torchArgs(r)),
    torchJemalloc: (r: number) =>
      runJson(PYTHON, torchArgs(r), { ...process.env, LD_PRELOAD: JEMALLOC, MALLOC_CONF: 'dirty_decay_ms:-1,muzzy_decay_ms:-1' }),
    // The session as onnxruntime-node gives it: on the calling thread, nothing else to do.
    ort: (r: number) =>
      runJson(TSX, [join(here, 'segment-child.ts'), 'ort', model, slicesPath, String(slices), String(mh), String(mw), String(threads), String(batch), ...(r === 0 ? [join(dir, 'ort.u8')] : [])], { ...process.env, ALHVR_ORT_WORKER: '0' }),
    e2e: () => {
      const out = join(dir, 'out');
      rmSync(out, { recursive: true, force: true });
      return runJson(TSX, [join(here, 'segment-child.ts'), 'e2e', model, listPath, out, String(threads), String(batch)]);
    },
    // The product with its session on the main thread (before the worker), for a same-run before/after.
    e2eMainThread: () => {
      const out = join(dir, 'out-main-thread');
      rmSync(out, { recursive: true, force: true });
      return runJson(TSX, [join(here, 'segment-child.ts'), 'e2e', model, listPath, out, String(threads), String(batch)], { ...process.env, ALHVR_ORT_WORKER: '0' });
    },
    e2eBaseline: () => {
      const out = join(dir, 'out-baseline');
      rmSync(out, { recursive: true, force: true });
      const env = { ...process.env, SEGMENT_BENCH_INFERENCE: baseline };
      return runJson(TSX, [join(here, 'segment-child.ts'), 'e2e', model, listPath, out, String(threads), String(batch)], env);
    },
  };
  const order: (keyof typeof measure)[] = ['torch', 'ort', 'torchJemalloc', 'e2e', 'e2eMainThread', ...(baseline ? (['e2eBaseline'] as const) : [])];
  const runs: Record<string, any[]> = { torch: [], torchJemalloc: [], ort: [], e2e: [], e2eMainThread: [], e2eBaseline: [] };
  const ratios: { e2e: number[]; ort: number[]; e2eVsOrt: number[]; jemallocVsGlibc: number[]; e2eVsBaseline: number[]; e2eVsMainThread: number[] } = { e2e: [], ort: [], e2eVsOrt: [], jemallocVsGlibc: [], e2eVsBaseline: [], e2eVsMainThread: [] };
  for (let r = 0; r < reps; r++) {
    // Rotate the order so no measurement always follows the same neighbour.
    const rep: Record<string, any> = {};
    for (let m = 0; m < order.length; m++) {
      const which = order[(m + r) % order.length];
      rep[which] = measure[which](r);
      runs[which].push(rep[which]);
      process.stderr.write(`rep ${r + 1}/${reps} ${which}: ${(rep[which].slicesPerSec ?? rep[which].slices_per_s).toFixed(2)} slices/s\n`);
    }
    const torchBest = Math.max(rep.torch.slices_per_s, rep.torchJemalloc.slices_per_s);
    ratios.e2e.push(rep.e2e.slicesPerSec / torchBest);
    ratios.ort.push(rep.ort.slicesPerSec / torchBest);
    ratios.e2eVsOrt.push(rep.e2e.slicesPerSec / rep.ort.slicesPerSec);
    ratios.e2eVsMainThread.push(rep.e2e.slicesPerSec / rep.e2eMainThread.slicesPerSec);
    ratios.jemallocVsGlibc.push(rep.torchJemalloc.slices_per_s / rep.torch.slices_per_s);
    if (baseline) ratios.e2eVsBaseline.push(rep.e2e.slicesPerSec / rep.e2eBaseline.slicesPerSec);
  }
  const torchLabels = readFileSync(join(dir, 'torch.u8'));
  const ortLabels = readFileSync(join(dir, 'ort.u8'));
  let agree = 0;
  for (let p = 0; p < torchLabels.length; p++) if (torchLabels[p] === ortLabels[p]) agree++;

  const result = {
    model: modelArg
      ? `${modelArg}: ${card.description ?? 'ALHVR model'}, ${card.classes.length} classes, ${card.input.size.join('x')}`
      : `default-width ALHVR U-Net pair [16,32,64,128,256], 4 classes, ${card.input.size.join('x')}, exported by exportOnnx (bench/segment-model.ts: random weights, calibrated BN)`,
    pytorch: 'the same ONNX graph evaluated with PyTorch operators (bench/onnx_torch.py), eval, no_grad, batch over the concatenated slices',
    input: `${cases} phantom cases (generatePhantomCase seed 7), ${slices} slices, ${(inputVoxels / 1e6).toFixed(2)} M voxels, float32 .nii.gz`,
    threads,
    batch,
    reps,
    labelAgreementTorchVsOrt: agree / torchLabels.length,
    median: {
      pytorchForwardSlicesPerSec: median(runs.torch.map((x) => x.slices_per_s)),
      pytorchJemallocForwardSlicesPerSec: median(runs.torchJemalloc.map((x) => x.slices_per_s)),
      ortSessionSlicesPerSec: median(runs.ort.map((x) => x.slicesPerSec)),
      endToEndSlicesPerSec: median(runs.e2e.map((x) => x.slicesPerSec)),
      endToEndMainThreadSessionSlicesPerSec: median(runs.e2eMainThread.map((x) => x.slicesPerSec)),
      ratioEndToEndWorkerVsMainThreadSession: median(ratios.e2eVsMainThread),
      ratioEndToEndVsTorchForward: median(ratios.e2e),
      ratioOrtSessionVsTorchForward: median(ratios.ort),
      ratioEndToEndVsOrtSession: median(ratios.e2eVsOrt),
      ratioJemallocVsGlibcTorch: median(ratios.jemallocVsGlibc),
      ...(baseline
        ? {
            baselineEndToEndSlicesPerSec: median(runs.e2eBaseline.map((x) => x.slicesPerSec)),
            ratioEndToEndVsBaseline: median(ratios.e2eVsBaseline),
            baselineEndToEndPhasesMs: Object.fromEntries(Object.keys(runs.e2eBaseline[0].phasesMs).map((k) => [k, median(runs.e2eBaseline.map((x) => x.phasesMs[k]))])),
          }
        : {}),
      endToEndPhasesMs: Object.fromEntries(Object.keys(runs.e2e[0].phasesMs).map((k) => [k, median(runs.e2e.map((x) => x.phasesMs[k]))])),
      peakRssMb: {
        pytorch: median(runs.torch.map((x) => x.peak_rss_mb)),
        pytorchJemalloc: median(runs.torchJemalloc.map((x) => x.peak_rss_mb)),
        ortSession: median(runs.ort.map((x) => x.peakRssMb)),
        endToEnd: median(runs.e2e.map((x) => x.peakRssMb)),
      },
    },
    target: "end to end >= 1.3x PyTorch's faster forward-only slice throughput (glibc or jemalloc, same repetition) and >= 0.95x the ONNX Runtime session alone",
    variants: 'ortSession: onnxruntime-node on the calling thread (ALHVR_ORT_WORKER=0), the session alone; endToEnd: alhvr-segment as shipped (session in a worker thread); endToEndMainThreadSession: alhvr-segment with ALHVR_ORT_WORKER=0',
    note: 'ratios are per repetition (all measurements of a repetition run back to back, order rotated) then medians; absolute slices/s move with the load (loadavg), so only same-run ratios compare between runs',
    loadavg: { start: loadAtStart, end: loadavg() },
    label: process.env.SEGMENT_BENCH_LABEL,
    baseline: baseline || undefined,
    runs,
    node: process.version,
    createdAt: new Date().toISOString(),
  };
  const resultPath = join(repo, 'bench', 'results', resultsName);
  let earlier: unknown[] = [];
  if (existsSync(resultPath)) {
    const previous = JSON.parse(readFileSync(resultPath, 'utf8'));
    earlier = [...(previous.earlier ?? []), { label: previous.label, createdAt: previous.createdAt, median: previous.median }];
  }
  await writeFileAtomic(resultPath, `${JSON.stringify({ ...result, earlier }, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify({ ...result, runs: undefined }, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
