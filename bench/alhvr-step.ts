/**
 * One full ALHVR training iteration — two students (encoder, clean decoder, perturbed auxiliary
 * decoder), the ALHVR objective, one backward pass, both SGD steps — on the TensorFlow.js wasm
 * backend exactly as `alhvr-train` runs it, next to the same iteration in PyTorch
 * (bench/alhvr-step-torch.py) in the same run, PyTorch both with glibc's malloc and with jemalloc
 * keeping its pages (its fastest setting on these machines; ratios are against the faster). Rounds
 * alternate the three so that a noisy neighbour slows all alike; figures are medians over every
 * timed step of every round.
 *
 *   npx tsx bench/alhvr-step.ts [--rounds 3] [--steps 3] [--only recipe|method-1+1|published] [--compare-direct]
 *
 * --compare-direct adds, in every round, the wasm step with the direct convolution kernels only
 * (no Winograd), recorded as `wasmDirect`.
 *
 * Each measurement runs in its own child process, so peak RSS belongs to it alone and a wasm run
 * that exhausts the 4 GB heap is recorded as not fitting instead of ending the benchmark.
 * Writes bench/results/alhvr-step.json.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../core/src/index.js';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { leanVariableGrads } from '../training/src/backend/lean-gradients.js';
import { guardStepMemory } from '../training/src/backend/out-of-memory.js';
import { setWinogradMinChannels } from '../training/src/backend/wasm-conv2d.js';
import { UNet } from '../training/src/model/unet.js';
import { alhvrLoss } from '../training/src/losses/alhvr.js';
import { Sgd } from '../training/src/sgd.js';
import { PYTHON } from '../test/support/python.js';

interface Config { name: string; key: string; bl: number; bu: number; size: number; widths: number[] }
const CONFIGS: Config[] = [
  { key: 'recipe', name: 'CPU recipe (models/recipes): 4+4, 128², widths 8…128', bl: 4, bu: 4, size: 128, widths: [8, 16, 32, 64, 128] },
  { key: 'method-1+1', name: 'method widths at 1+1, 256²', bl: 1, bu: 1, size: 256, widths: [16, 32, 64, 128, 256] },
  { key: 'published', name: 'published recipe: 8+8, 256², widths 16…256', bl: 8, bu: 8, size: 256, widths: [16, 32, 64, 128, 256] },
];
const THREADS = 2;
const here = dirname(fileURLToPath(import.meta.url));

interface Timing { times: number[]; peakRssMB: number; loss: number }

async function child(cfg: Config, steps: number, direct: boolean): Promise<void> {
  const backend = await selectBackend('wasm', { threads: THREADS, log: (m) => console.error(m) });
  if (direct) setWinogradMinChannels(Infinity);
  const rng = new Rng(1);
  const nets = [new UNet({ numClasses: 4, widths: cfg.widths }, rng, 'a'), new UNet({ numClasses: 4, widths: cfg.widths }, rng, 'b')];
  const sgds = [new Sgd(0.01, 0.9, 1e-4), new Sgd(0.01, 0.9, 1e-4)];
  const x = tf.randomUniform([cfg.bl + cfg.bu, cfg.size, cfg.size, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
  const y = tf.randomUniform([cfg.bl, cfg.size, cfg.size], 0, 4, 'int32', 6) as tf.Tensor3D;
  const vars = nets.flatMap((n) => n.params.trainableVariables());
  const step = (): number => {
    const { value, grads } = guardStepMemory(backend.name, { batchLabeled: cfg.bl, batchUnlabeled: cfg.bu, patch: cfg.size, widths: cfg.widths }, () =>
      leanVariableGrads(() => {
        const [oa, ob] = nets.map((n) => n.forward(x, { training: true, rng }));
        const { loss, ...rest } = alhvrLoss(
          { logits: oa.logits, logitsAux: oa.logitsAux!, fea: oa.fea, feaAux: oa.feaAux! },
          { logits: ob.logits, logitsAux: ob.logitsAux!, fea: ob.fea, feaAux: ob.feaAux! },
          y, { labeledCount: cfg.bl, iteration: 100 });
        tf.dispose(Object.values(rest).filter((v): v is tf.Tensor => v instanceof tf.Tensor));
        return loss;
      }, vars));
    nets.forEach((n, i) => {
      const own = new Set(n.params.trainableVariables().map((v) => v.name));
      const mine: Record<string, tf.Tensor> = {};
      for (const [name, v] of n.params.variables) if (own.has(v.name) && grads[v.name]) mine[name] = grads[v.name];
      sgds[i].step(n.params.variables, mine);
    });
    const loss = value.dataSync()[0];
    tf.dispose([value, ...Object.values(grads)]);
    return loss;
  };
  step(); // warm-up: XNNPACK operators, heap growth
  const times: number[] = [];
  let loss = NaN;
  for (let i = 0; i < steps; i++) {
    const t = performance.now();
    loss = step();
    times.push(performance.now() - t);
  }
  const out: Timing = { times, peakRssMB: process.resourceUsage().maxRSS / 1024, loss };
  console.log(JSON.stringify(out));
  process.exit(0);
}

function runWasm(cfg: Config, steps: number, direct = false): Timing | { error: string } {
  const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', cfg.key, String(steps), ...(direct ? ['direct'] : [])], {
    encoding: 'utf8', maxBuffer: 1 << 26,
  });
  if (r.status !== 0) {
    const line = r.stderr.split('\n').find((l) => /InputError|needs more than|Error:/.test(l)) ?? `exit ${r.status}`;
    return { error: line.trim().slice(0, 400) };
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Timing;
}

const JEMALLOC = { LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', MALLOC_CONF: 'dirty_decay_ms:-1,muzzy_decay_ms:-1' };

function runTorch(cfg: Config, steps: number, jemalloc = false): Timing {
  const out = execFileSync(PYTHON, [join(here, 'alhvr-step-torch.py'), String(cfg.bl), String(cfg.bu), String(cfg.size),
    cfg.widths.join(','), String(steps), String(THREADS)], { encoding: 'utf8', maxBuffer: 1 << 24, env: jemalloc ? { ...process.env, ...JEMALLOC } : process.env });
  return JSON.parse(out.trim().split('\n').pop()!) as Timing;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(CONFIGS.find((c) => c.key === argv[1])!, Number(argv[2]), argv[3] === 'direct');
  const opt = (name: string, fallback: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : fallback);
  const rounds = Number(opt('rounds', '3'));
  const steps = Number(opt('steps', '3'));
  const only = opt('only', '');
  const compareDirect = argv.includes('--compare-direct');
  const results: unknown[] = [];
  for (const cfg of CONFIGS) {
    if (only && cfg.key !== only) continue;
    console.error(`\n== ${cfg.name}`);
    const torch: Timing[] = [];
    const torchJemalloc: Timing[] = [];
    const wasm: Timing[] = [];
    const wasmDirect: Timing[] = [];
    let wasmError: string | undefined;
    // The published batch is slow in PyTorch too (tens of seconds per step): one round, one step.
    const [r, s] = cfg.key === 'published' ? [1, 1] : [rounds, steps];
    for (let i = 0; i < r; i++) {
      torch.push(runTorch(cfg, s));
      torchJemalloc.push(runTorch(cfg, s, true));
      if (wasmError) continue;
      const w = runWasm(cfg, s);
      if ('error' in w) wasmError = w.error;
      else wasm.push(w);
      const d = compareDirect && !('error' in w) ? runWasm(cfg, s, true) : undefined;
      if (d !== undefined && !('error' in d)) wasmDirect.push(d);
      console.error(`round ${i + 1}: torch ${median(torch[i].times).toFixed(0)} ms, jemalloc ${median(torchJemalloc[i].times).toFixed(0)} ms, wasm ${'error' in w ? 'did not fit' : `${median(w.times).toFixed(0)} ms`}` +
        (d === undefined ? '' : `, wasm direct ${'error' in d ? 'did not fit' : `${median(d.times).toFixed(0)} ms`}`));
    }
    const glibcMs = median(torch.flatMap((t) => t.times));
    const jemallocMs = median(torchJemalloc.flatMap((t) => t.times));
    const torchMs = Math.min(glibcMs, jemallocMs);
    const row: Record<string, unknown> = {
      config: cfg,
      torch: { msPerStep: glibcMs, peakRssMB: Math.max(...torch.map((t) => t.peakRssMB)), times: torch.flatMap((t) => t.times) },
      torchJemalloc: { msPerStep: jemallocMs, peakRssMB: Math.max(...torchJemalloc.map((t) => t.peakRssMB)), times: torchJemalloc.flatMap((t) => t.times) },
      torchBest: jemallocMs <= glibcMs ? 'jemalloc' : 'glibc',
    };
    if (wasm.length > 0) {
      const wasmMs = median(wasm.flatMap((t) => t.times));
      row.wasm = { msPerStep: wasmMs, peakRssMB: Math.max(...wasm.map((t) => t.peakRssMB)), times: wasm.flatMap((t) => t.times), ratioVsTorch: wasmMs / torchMs };
      console.error(`median: torch ${glibcMs.toFixed(0)} ms (glibc) / ${jemallocMs.toFixed(0)} ms (jemalloc), wasm ${wasmMs.toFixed(0)} ms → wasm/best torch ${(wasmMs / torchMs).toFixed(2)}×`);
      if (wasmDirect.length > 0) {
        const directMs = median(wasmDirect.flatMap((t) => t.times));
        row.wasmDirect = { msPerStep: directMs, peakRssMB: Math.max(...wasmDirect.map((t) => t.peakRssMB)), times: wasmDirect.flatMap((t) => t.times), ratioVsTorch: directMs / torchMs };
        console.error(`direct kernels only: wasm ${directMs.toFixed(0)} ms → ${(directMs / torchMs).toFixed(2)}×`);
      }
    } else {
      row.wasm = { fits: false, error: wasmError };
      console.error(`median: torch ${torchMs.toFixed(0)} ms; wasm: ${wasmError}`);
    }
    results.push(row);
  }
  const file = join(here, 'results', only ? `alhvr-step-${only}.json` : 'alhvr-step.json');
  const meta = { date: new Date().toISOString(), node: process.version, threads: THREADS, loadavg: loadavg(), ratio: 'wasm.ratioVsTorch is against the faster PyTorch (torchBest) of the same rounds' };
  writeFileSync(`${file}.tmp`, JSON.stringify({ ...meta, results }, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
  console.error(`wrote ${file}`);
}

await main();
