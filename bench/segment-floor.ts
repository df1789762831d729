/**
 * How close can `alhvr-segment` end to end come to the ONNX Runtime session alone on this
 * machine? An optimistic bound from three measurements, each timed with the process's CPU (all
 * threads) as well as the clock:
 *
 *   1. the session alone exactly as bench/segment.ts measures it (bench/segment-child.ts `ort`:
 *      the product's session, batches of the concatenated slices, one warm-up run not timed),
 *      plus that warm-up run itself (the product pays it: its first batch is the first run);
 *   2. the floor: what every case costs whatever the pipeline does — its input read, hashed and
 *      inflated (the product's readCaseInput and decode), and its three maps (mask, confidence,
 *      region) compressed and written as the product writes them (writeCaseOutputs, NIfTI only,
 *      no preview, no report), from the real model's result of that case;
 *      and the same with preview.png drawn as alhvr-segment draws it (a default output);
 *   3. the bound: on C cores the session alone leaves C·T − CPU of idle core time; the floor's CPU
 *      beyond that idle time must add to the clock at best spread over all C cores, so
 *      end to end ≥ T + max(0, floorCpu − idle) / C (+ the warm-up's extra clock), and the ratio
 *      end to end ÷ session alone is at most T / that. "At best": the floor's work would have to
 *      fill every idle moment of the session's threads perfectly.
 *
 *   npx tsx bench/segment-floor.ts [--cases N] [--model FILE] [--results NAME] [--reps R]
 *
 * Model: --model, or bench/segment-model.ts's wide benchmark model (as bench/segment.ts). Input:
 * the same phantom cases as bench/segment.ts (generatePhantomCase seed 7). Writes
 * bench/results/segment-floor.json (or --results).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatePhantomCase } from '@alhvr/core';
import { writeFileAtomic, writeNiftiFile } from '@alhvr/core/node';
import { openModelFile, readCaseInput, segmentVolume, writeCaseOutputs, writeCasePreview, type CaseSource, type SegmentResult, type SliceModel, type SliceOutputKind, type SliceOutputs } from '@alhvr/inference/node';

import { rasterizeSvgLayer } from '../cli/src/lib/plots/render.js';

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

const cases = arg('cases', 8);
const reps = arg('reps', 3);
const threads = 2;
const batch = 8;
const cores = cpus().length;
const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-floor-'));
const resultsName = arg('results', 'segment-floor.json');
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Keeps the slices segmentVolume feeds the model (as bench/segment.ts), and passes the call on. */
class Recording implements SliceModel {
  readonly slices: Float32Array[] = [];
  constructor(private readonly inner: SliceModel) {}
  get card() {
    return this.inner.card;
  }
  get available() {
    return this.inner.available;
  }
  run(buf: Float32Array, n: number, h: number, w: number, fetch: readonly SliceOutputKind[]): Promise<SliceOutputs> {
    for (let b = 0; b < n; b++) this.slices.push(buf.slice(b * h * w, (b + 1) * h * w));
    return this.inner.run(buf, n, h, w, fetch);
  }
}

try {
  const model = arg('model', '') || join(dir, 'model', 'alhvr-unet.onnx');
  if (!existsSync(model)) execFileSync(TSX, [join(here, 'segment-model.ts'), dirname(model)], { stdio: ['ignore', 'ignore', 'inherit'] });
  const opened = await openModelFile(model, { device: 'cpu', threads });
  const card = opened.identity.card;
  const [mw, mh] = card.input.size;
  const sources: CaseSource[] = [];
  const segmented: { source: CaseSource; result: SegmentResult }[] = [];
  const recorder = new Recording(opened.model);
  mkdirSync(join(dir, 'input'));
  for (let index = 0; index < cases; index++) {
    const path = join(dir, 'input', `phantom_${String(index).padStart(3, '0')}.nii.gz`);
    await writeNiftiFile(path, generatePhantomCase({ seed: 7, index }).image);
    const source: CaseSource = { kind: 'nifti', path };
    sources.push(source);
    const image = await (await readCaseInput(source)).decode();
    segmented.push({ source, result: await segmentVolume(image, recorder, { batch }) });
  }
  await opened.model.release();
  const slices = recorder.slices.length;
  const slicesPath = join(dir, 'slices.f32');
  const all = new Float32Array(slices * mw * mh);
  recorder.slices.forEach((s, n) => all.set(s, n * mw * mh));
  writeFileSync(slicesPath, new Uint8Array(all.buffer));

  const floorOnce = async (preview: boolean) => {
    const out = join(dir, 'out');
    rmSync(out, { recursive: true, force: true });
    const t = performance.now();
    const c = cpuNow();
    for (const [n, { source, result }] of segmented.entries()) {
      const image = await (await readCaseInput(source)).decode();
      const caseDir = join(out, `case${n}`);
      mkdirSync(caseDir, { recursive: true });
      await writeCaseOutputs(caseDir, image, result, card, { formats: new Set(['nifti']), preview: false, modelHash: opened.identity.modelHash });
      if (preview) await writeCasePreview(caseDir, image, result, card, { caseId: `case${n}`, verdict: 'review', reasons: ['bench'], predictedDice: 0.9, absentClasses: [] }, rasterizeSvgLayer);
    }
    return { seconds: (performance.now() - t) / 1000, cpuSeconds: cpuNow() - c };
  };
  // Warm: code compiled, files cached, as in a long run.
  await floorOnce(false);
  await floorOnce(true);
  const runs: { session: any; floor: { seconds: number; cpuSeconds: number }; floorWithPreview: { seconds: number; cpuSeconds: number } }[] = [];
  for (let r = 0; r < reps; r++) {
    const session = JSON.parse(
      execFileSync(TSX, [join(here, 'segment-child.ts'), 'ort', model, slicesPath, String(slices), String(mh), String(mw), String(threads), String(batch)], {
        encoding: 'utf8',
        env: { ...process.env, ALHVR_ORT_WORKER: '0' },
      })
        .trim()
        .split('\n')
        .pop()!,
    );
    runs.push({ session, floor: await floorOnce(false), floorWithPreview: await floorOnce(true) });
    process.stderr.write(
      `rep ${r + 1}/${reps}: session ${session.seconds.toFixed(2)} s, ${session.cpuSeconds.toFixed(2)} CPU-s (warm-up ${session.warmUpSeconds.toFixed(2)} s); floor ${runs[r].floor.cpuSeconds.toFixed(2)} CPU-s, with preview ${runs[r].floorWithPreview.cpuSeconds.toFixed(2)}\n`,
    );
  }
  const bound = (x: (typeof runs)[number], floorCpu: number, withWarmUp: boolean) => {
    const { seconds: T, cpuSeconds: C } = x.session;
    const idle = cores * T - C;
    const warmExtra = withWarmUp ? Math.max(0, x.session.warmUpSeconds - x.session.seconds / Math.ceil(slices / batch)) : 0;
    return T / (T + warmExtra + Math.max(0, floorCpu - idle) / cores);
  };
  const result = {
    model: arg('model', '') || 'wide benchmark model (bench/segment-model.ts)',
    input: `${cases} phantom cases (generatePhantomCase seed 7), ${slices} slices`,
    cores,
    threads,
    batch,
    reps,
    median: {
      sessionSeconds: median(runs.map((x) => x.session.seconds)),
      sessionCpuSeconds: median(runs.map((x) => x.session.cpuSeconds)),
      sessionIdleCoreSeconds: median(runs.map((x) => cores * x.session.seconds - x.session.cpuSeconds)),
      warmUpSeconds: median(runs.map((x) => x.session.warmUpSeconds)),
      floorCpuSeconds: median(runs.map((x) => x.floor.cpuSeconds)),
      floorCpuMsPerCase: (1000 * median(runs.map((x) => x.floor.cpuSeconds))) / cases,
      floorSeconds: median(runs.map((x) => x.floor.seconds)),
      floorWithPreviewCpuMsPerCase: (1000 * median(runs.map((x) => x.floorWithPreview.cpuSeconds))) / cases,
      boundSteadyState: median(runs.map((x) => bound(x, x.floor.cpuSeconds, false))),
      boundWithWarmUp: median(runs.map((x) => bound(x, x.floor.cpuSeconds, true))),
      boundWithPreviewSteadyState: median(runs.map((x) => bound(x, x.floorWithPreview.cpuSeconds, false))),
      boundWithPreviewWithWarmUp: median(runs.map((x) => bound(x, x.floorWithPreview.cpuSeconds, true))),
    },
    bound: 'end to end ÷ session alone ≤ T / (T + warm-up extra + max(0, floor CPU − (cores·T − session CPU)) / cores); steady state: without the warm-up extra (a long run)',
    floorWithPreview: 'the floor plus preview.png as alhvr-segment draws it (the CLI rasterizer)',
    floor: "each case's input read, hashed and inflated (readCaseInput, decode) and its mask, confidence and region .nii.gz compressed and written (writeCaseOutputs, NIfTI, no preview, no report, no statistics)",
    loadavg: loadavg(),
    runs,
    node: process.version,
    createdAt: new Date().toISOString(),
  };
  await writeFileAtomic(join(repo, 'bench', 'results', resultsName), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify({ ...result, runs: undefined }, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
