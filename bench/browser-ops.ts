/**
 * Where the viewer's per-slice model time goes, op by op: ONNX Runtime's own profiler on the same
 * model, the same batch of slices and the same thread count, in Chromium (onnxruntime-web's wasm
 * build in a dedicated worker, as the viewer runs it) and in onnxruntime-node, interleaved in one
 * run. Used by bench/browser.ts (its `ops` section); on its own, for trying session options:
 *
 *   npx tsx bench/browser-ops.ts [--threads 1] [--batch 8] [--runs 4] [--warmup 3] [--reps 2] [--model FILE]
 *                                [--web-options JSON] [--node-options JSON]
 *
 * CPU time is counted as well as wall time, because this 2-core machine is shared: Node's from
 * process.cpuUsage(), Chromium's from /proc (all of the browser's processes; the page idles while
 * its worker runs the model). ORT's profiler reports wall time per kernel: its per-op shares are
 * turned into CPU milliseconds by scaling with the run's CPU time (preemption spread evenly).
 * The profile covers every run of the session, warm-up included (onnxruntime-web cannot start
 * profiling later): only its shares are used, the times come from the timed runs.
 *
 * onnxruntime-web's wasm build prints its profile to the console (it has no file system): the
 * worker takes those lines from console.log while it ends profiling.
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { ort, sessionOptionsFor } from '@alhvr/inference/node';
import { webSessionOptions } from '../viewer/src/load-model.js';
import { CHROMIUM_ARGS, serveStatic } from '../test/viewer-harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');

/** All of the model's outputs: what the viewer and the CLI fetch, and more (same in both runtimes). */
export const OPS_FETCH = ['probabilities', 'label', 'confidence', 'region', 'student_confidence', 'student_label'];

/** The harness page's files, written into a served folder that already holds the ORT wasm files (the demo build). */
const OPS_HTML = '<!doctype html><meta charset="utf-8"><title>ORT ops</title><script type="module">window.opsReady = true;</script>';
const OPS_WORKER = `
import * as ort from './ort.wasm.min.mjs';
// ORT's wasm build prints its profile with console.log (Emscripten's stdout), bound when the
// runtime starts: the wrapper is installed first and keeps the lines while profiling ends.
const lines = [];
let capturing = false;
const log = console.log.bind(console);
console.log = (...args) => (capturing ? lines.push(args.join(' ')) : log(...args));
// The bench reads Chromium's CPU time at each mark, before the worker goes on.
let acknowledged;
const mark = (name) => new Promise((ok) => { acknowledged = ok; postMessage({ mark: name }); });
onmessage = async ({ data }) => {
  if (data.ack) return acknowledged();
  try {
    const { model, threads, batch, height, width, warmup, runs, options, profile, fetch, input } = data;
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = new URL('./', self.location.href).href;
    const session = await ort.InferenceSession.create(model, { ...options, enableProfiling: profile });
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', input, [batch, 1, height, width]) };
    const warmupMs = [];
    for (let r = 0; r < warmup; r++) {
      const t = performance.now();
      await session.run(feeds, fetch);
      warmupMs.push(performance.now() - t);
    }
    await mark('start');
    const t0 = performance.now();
    for (let r = 0; r < runs; r++) await session.run(feeds, fetch);
    const wallMs = performance.now() - t0;
    await mark('end');
    const outputs = await session.run(feeds, fetch);
    let profileText = '';
    if (profile) {
      capturing = true;
      session.endProfiling();
      capturing = false;
      profileText = lines.splice(0).join('\\n');
    }
    const probabilities = outputs.probabilities.data;
    await session.release();
    postMessage({ wallMs, warmupMs, profileText, probabilities });
  } catch (e) {
    postMessage({ error: String(e && e.message || e) });
  }
};
`;

/** Put the harness next to the demo's files in `site` (ort.wasm.min.mjs loads the ORT_WASM_FILES beside it). */
export function writeOpsHarness(site: string): void {
  const require = createRequire(import.meta.url);
  const dist = dirname(require.resolve('onnxruntime-web/wasm'));
  copyFileSync(join(dist, 'ort.wasm.min.mjs'), join(site, 'ort.wasm.min.mjs'));
  writeFileSync(join(site, 'ops.html'), OPS_HTML);
  writeFileSync(join(site, 'ops-worker.mjs'), OPS_WORKER);
}

/** CPU seconds (user + system) used so far by every process descended from this one (Chromium's). */
function childrenCpuSeconds(): number {
  const tick = 100; // USER_HZ on Linux
  const parents = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(name), Number(fields[1]));
      cpu.set(Number(name), (Number(fields[11]) + Number(fields[12])) / tick);
    } catch {
      // The process ended while the table was read.
    }
  }
  let total = 0;
  for (const [pid, seconds] of cpu) {
    for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) {
      if (p === process.pid) {
        total += seconds;
        break;
      }
    }
  }
  return total;
}

export interface OpsProfile {
  /** Per run of `batch` slices, summed over the runs ORT recorded: op type → kernel wall ms per run. */
  kernelMsPerRun: Record<string, number>;
  /** ORT's own model_run wall ms per run. */
  modelRunMs: number;
  runs: number;
  /**
   * Multiply-adds of the Conv kernels per run, from the shapes ORT logged (output elements ×
   * weight elements per output channel); counted where the weights keep ONNX's [M, C/g, kH, kW]
   * layout (the wasm build's Conv/FusedConv), undefined where they were reordered (NCHWc).
   */
  convMacsPerRun?: number;
}

/** Sum ORT's chrome-trace profile (the JSON array it writes) by op type, per model run. */
export function summariseOrtProfile(text: string): OpsProfile {
  type Shapes = Record<string, number[]>[];
  const events = JSON.parse(text.slice(text.indexOf('['), text.lastIndexOf(']') + 1)) as {
    cat: string;
    name: string;
    dur: number;
    args: { op_name?: string; input_type_shape?: Shapes; output_type_shape?: Shapes };
  }[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  if (runs.length === 0) throw new Error('the profile holds no model_run event');
  const kernelMsPerRun: Record<string, number> = {};
  let convMacs = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args.op_name) continue;
    kernelMsPerRun[e.args.op_name] = (kernelMsPerRun[e.args.op_name] ?? 0) + e.dur / 1000 / runs.length;
    if (/^(Conv|FusedConv|NchwcConv)$/.test(e.args.op_name)) {
      const weight = Object.values(e.args.input_type_shape?.[1] ?? {})[0];
      const output = Object.values(e.args.output_type_shape?.[0] ?? {})[0];
      const product = (xs: number[]) => xs.reduce((a, b) => a * b, 1);
      if (e.args.op_name === 'NchwcConv' || !weight || weight.length !== 4 || !output) convMacs = NaN;
      else convMacs += product(output) * product(weight.slice(1));
    }
  }
  const modelRunMs = runs.reduce((a, e) => a + e.dur, 0) / 1000 / runs.length;
  return { kernelMsPerRun, modelRunMs, runs: runs.length, convMacsPerRun: Number.isFinite(convMacs) ? convMacs / runs.length : undefined };
}

/**
 * Op families compared across the runtimes: the runtimes rewrite the graph differently (Node on
 * this AVX2 CPU turns Conv into NCHWc convolutions with Reorder nodes around them; the wasm build
 * fuses Conv + LeakyRelu into FusedConv), so the convolution's cost is all of these together.
 */
export function opFamily(op: string): string {
  if (/^(Conv|FusedConv|NchwcConv|ReorderInput|ReorderOutput|LeakyRelu)$/.test(op)) return 'Conv (+ fused LeakyRelu, NCHWc reorders)';
  return op;
}

export interface RuntimeSample {
  /** Chromium: each warm-up run's wall ms per slice (V8's tier-up shows here). */
  warmupWallMsPerSlice?: number[];
  wallMsPerSlice: number;
  cpuMsPerSlice: number;
  profile?: OpsProfile;
}

export interface OpsSetting {
  threads: number;
  batch: number;
  runs: number;
  /** Untimed runs first (default WARMUP_RUNS). */
  warmup?: number;
  /** Changes to the viewer's onnxruntime-web session options (webSessionOptions('wasm')). */
  webOptions?: Record<string, unknown>;
  /** Changes to inference's onnxruntime-node session options (sessionOptionsFor('cpu', { threads })). */
  nodeOptions?: Record<string, unknown>;
  profile: boolean;
}

const SIZE = 128;
/**
 * Untimed runs before the timed ones. V8 starts wasm functions on its baseline compiler and
 * recompiles the hot ones optimised in the background: the first runs in Chromium are slower
 * and the compiler's CPU would be counted as the model's.
 */
export const WARMUP_RUNS = 3;

/** Deterministic input in [0, 1): the kernels' time does not depend on the values. */
function inputFor(batch: number, height: number, width: number): Float32Array {
  const data = new Float32Array(batch * height * width);
  let s = 12345;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    data[i] = (s >>> 8) / 16777216;
  }
  return data;
}

export async function runNode(model: Uint8Array, setting: OpsSetting, height = SIZE, width = SIZE): Promise<RuntimeSample & { probabilities: Float32Array }> {
  const dir = mkdtempSync(join(tmpdir(), 'alhvr-ops-'));
  try {
    const options = { ...sessionOptionsFor('cpu', { threads: setting.threads }), ...setting.nodeOptions, enableProfiling: setting.profile, profileFilePrefix: join(dir, 'ort') };
    const session = await ort.InferenceSession.create(model, options);
    const input = inputFor(setting.batch, height, width);
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', input, [setting.batch, 1, height, width]) };
    for (let r = 0; r < (setting.warmup ?? WARMUP_RUNS); r++) await session.run(feeds, OPS_FETCH);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let r = 0; r < setting.runs; r++) await session.run(feeds, OPS_FETCH);
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const outputs = await session.run(feeds, OPS_FETCH);
    let profile: OpsProfile | undefined;
    if (setting.profile) {
      await session.endProfiling();
      profile = summariseOrtProfile(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8'));
    }
    await session.release();
    const slices = setting.runs * setting.batch;
    return { wallMsPerSlice: wall / slices, cpuMsPerSlice: (cpu.user + cpu.system) / 1000 / slices, profile, probabilities: outputs.probabilities.data as Float32Array };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runChromium(browser: Browser, origin: string, model: Uint8Array, setting: OpsSetting, height = SIZE, width = SIZE): Promise<RuntimeSample & { probabilities: Float32Array }> {
  const page = await browser.newPage();
  try {
    await page.goto(`${origin}/ops.html`);
    await page.waitForFunction('window.opsReady === true');
    if (!(await page.evaluate('crossOriginIsolated'))) throw new Error('the ops page is not cross-origin isolated');
    const message = {
      model: Array.from(model),
      threads: setting.threads,
      batch: setting.batch,
      height,
      width,
      runs: setting.runs,
      warmup: setting.warmup ?? WARMUP_RUNS,
      options: { ...webSessionOptions('wasm'), ...setting.webOptions },
      profile: setting.profile,
      fetch: OPS_FETCH,
      input: Array.from(inputFor(setting.batch, height, width)),
    };
    // Chromium's CPU time is read when the worker marks the start and the end of its timed runs.
    const cpuAt: Record<string, number> = {};
    await page.exposeFunction('cpuMark', (name: string) => {
      cpuAt[name] = childrenCpuSeconds();
    });
    const result = (await page.evaluate(
      `new Promise((ok, fail) => {
        const w = new Worker('./ops-worker.mjs', { type: 'module' });
        const m = ${JSON.stringify(message)};
        m.model = new Uint8Array(m.model);
        m.input = new Float32Array(m.input);
        w.onmessage = async ({ data }) => {
          if (data.mark) {
            await window.cpuMark(data.mark);
            return w.postMessage({ ack: true });
          }
          w.terminate();
          data.error ? fail(new Error(data.error)) : ok({ wallMs: data.wallMs, warmupMs: data.warmupMs, profileText: data.profileText, probabilities: Array.from(data.probabilities) });
        };
        w.onerror = (e) => fail(new Error(e.message));
        w.postMessage(m);
      })`,
    )) as { wallMs: number; warmupMs: number[]; profileText: string; probabilities: number[] };
    const slices = setting.runs * setting.batch;
    return {
      warmupWallMsPerSlice: result.warmupMs.map((ms) => ms / setting.batch),
      wallMsPerSlice: result.wallMs / slices,
      cpuMsPerSlice: ((cpuAt.end - cpuAt.start) * 1000) / slices,
      profile: setting.profile ? summariseOrtProfile(result.profileText) : undefined,
      probabilities: Float32Array.from(result.probabilities),
    };
  } finally {
    await page.close();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : NaN;
};

export interface OpsComparison {
  setting: Omit<OpsSetting, 'profile'>;
  node: { wallMsPerSlice: number; cpuMsPerSlice: number };
  chromium: { wallMsPerSlice: number; cpuMsPerSlice: number };
  chromiumOverNodeWall: number;
  chromiumOverNodeCpu: number;
  /** Largest |probability| difference between the two runtimes on the same batch. */
  maxProbabilityDifference: number;
  /** Top op families by Chromium's CPU time, with each runtime's CPU ms per slice and share. */
  ops?: { op: string; chromiumCpuMsPerSlice: number; nodeCpuMsPerSlice: number; chromiumShare: number; nodeShare: number; ratio: number }[];
  /** The convolutions' arithmetic per slice and the rate each runtime does it at (GFLOP per CPU second). */
  conv?: { gflopPerSlice: number; chromiumGflops: number; nodeGflops: number };
  /** Raw op types as each runtime ran them (kernel wall ms per run of `batch` slices). */
  rawOps?: { chromium: Record<string, number>; node: Record<string, number> };
  samples: { node: RuntimeSample[]; chromium: RuntimeSample[] };
}

/** CPU ms per slice per op family: the profile's shares of kernel time × the run's CPU time. */
function familyCpu(sample: RuntimeSample): Map<string, number> {
  const kernels = sample.profile!.kernelMsPerRun;
  const total = Object.values(kernels).reduce((a, b) => a + b, 0);
  const out = new Map<string, number>();
  for (const [op, ms] of Object.entries(kernels)) out.set(opFamily(op), (out.get(opFamily(op)) ?? 0) + (ms / total) * sample.cpuMsPerSlice);
  return out;
}

/** Node and Chromium interleaved `reps` times on one setting; the op table from the median-CPU repetition's profiles. */
export async function compareOps(browser: Browser, origin: string, model: Uint8Array, setting: OpsSetting, reps: number, log = (line: string) => process.stderr.write(`${line}\n`)): Promise<OpsComparison> {
  const node: (RuntimeSample & { probabilities: Float32Array })[] = [];
  const web: (RuntimeSample & { probabilities: Float32Array })[] = [];
  for (let rep = 0; rep < reps; rep++) {
    node.push(await runNode(model, setting));
    web.push(await runChromium(browser, origin, model, setting));
    log(
      `  ops t${setting.threads} b${setting.batch} rep ${rep + 1}/${reps}: node ${node.at(-1)!.cpuMsPerSlice.toFixed(1)} ms CPU (${node.at(-1)!.wallMsPerSlice.toFixed(1)} wall), ` +
        `chromium ${web.at(-1)!.cpuMsPerSlice.toFixed(1)} ms CPU (${web.at(-1)!.wallMsPerSlice.toFixed(1)} wall) per slice`,
    );
  }
  let maxDiff = 0;
  for (let i = 0; i < node[0].probabilities.length; i++) maxDiff = Math.max(maxDiff, Math.abs(node[0].probabilities[i] - web[0].probabilities[i]));
  const summary = (xs: RuntimeSample[]) => ({ wallMsPerSlice: median(xs.map((x) => x.wallMsPerSlice)), cpuMsPerSlice: median(xs.map((x) => x.cpuMsPerSlice)) });
  const nodeSummary = summary(node);
  const webSummary = summary(web);
  const strip = ({ warmupWallMsPerSlice, wallMsPerSlice, cpuMsPerSlice, profile }: RuntimeSample): RuntimeSample => ({ warmupWallMsPerSlice, wallMsPerSlice, cpuMsPerSlice, profile });
  const comparison: OpsComparison = {
    setting: { threads: setting.threads, batch: setting.batch, runs: setting.runs, warmup: setting.warmup ?? WARMUP_RUNS, webOptions: setting.webOptions, nodeOptions: setting.nodeOptions },
    node: nodeSummary,
    chromium: webSummary,
    chromiumOverNodeWall: webSummary.wallMsPerSlice / nodeSummary.wallMsPerSlice,
    chromiumOverNodeCpu: webSummary.cpuMsPerSlice / nodeSummary.cpuMsPerSlice,
    maxProbabilityDifference: maxDiff,
    samples: { node: node.map(strip), chromium: web.map(strip) },
  };
  if (setting.profile) {
    // Per-op CPU from each repetition, then the median per op.
    const webFamilies = web.map(familyCpu);
    const nodeFamilies = node.map(familyCpu);
    const names = new Set([...webFamilies.flatMap((m) => [...m.keys()]), ...nodeFamilies.flatMap((m) => [...m.keys()])]);
    const rows = [...names].map((op) => {
      const w = median(webFamilies.map((m) => m.get(op) ?? 0));
      const n = median(nodeFamilies.map((m) => m.get(op) ?? 0));
      return { op, chromiumCpuMsPerSlice: w, nodeCpuMsPerSlice: n, chromiumShare: w / webSummary.cpuMsPerSlice, nodeShare: n / nodeSummary.cpuMsPerSlice, ratio: w / n };
    });
    comparison.ops = rows.sort((a, b) => b.chromiumCpuMsPerSlice - a.chromiumCpuMsPerSlice).slice(0, 8);
    const macs = web[0].profile!.convMacsPerRun;
    const convRow = rows.find((r) => r.op === opFamily('Conv'));
    if (macs !== undefined && convRow) {
      const gflopPerSlice = (2 * macs) / setting.batch / 1e9;
      comparison.conv = { gflopPerSlice, chromiumGflops: gflopPerSlice / (convRow.chromiumCpuMsPerSlice / 1000), nodeGflops: gflopPerSlice / (convRow.nodeCpuMsPerSlice / 1000) };
    }
    comparison.rawOps = { chromium: web[0].profile!.kernelMsPerRun, node: node[0].profile!.kernelMsPerRun };
  }
  return comparison;
}

/** A served folder with the harness and ORT's wasm files (without building the whole demo). */
export function opsSite(): string {
  const site = mkdtempSync(join(tmpdir(), 'alhvr-ops-site-'));
  const require = createRequire(import.meta.url);
  const dist = dirname(require.resolve('onnxruntime-web/wasm'));
  for (const f of ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) copyFileSync(join(dist, f), join(site, f));
  writeOpsHarness(site);
  return site;
}

async function main(): Promise<void> {
  const arg = (name: string, fallback: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i < 0 ? fallback : process.argv[i + 1];
  };
  const model = readFileSync(resolve(arg('model', join(repo, 'models', 'alhvr-default.onnx'))));
  const threads = Number(arg('threads', '1'));
  const webOptions = JSON.parse(arg('web-options', '{}')) as Record<string, unknown>;
  const nodeOptions = JSON.parse(arg('node-options', '{}')) as Record<string, unknown>;
  const setting: OpsSetting = { threads, batch: Number(arg('batch', '8')), runs: Number(arg('runs', '4')), warmup: Number(arg('warmup', String(WARMUP_RUNS))), webOptions, nodeOptions, profile: !process.argv.includes('--no-profile') };
  const site = opsSite();
  const server = await serveStatic(site);
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  try {
    const result = await compareOps(browser, origin, model, setting, Number(arg('reps', '2')));
    console.log(JSON.stringify(result, (key, value) => (key === 'profile' || key === 'rawOps' ? undefined : value), 1));
  } finally {
    await browser.close();
    server.close();
    rmSync(site, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`bench/browser-ops: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
