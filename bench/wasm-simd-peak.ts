/**
 * How fast wasm SIMD can multiply and add on this machine at all: a loop whose twelve f32x4
 * accumulators never leave registers (acc += a·b, no memory traffic), on one thread and on two
 * at once (worker threads), as separate multiply and add (what our kernels and XNNPACK's wasm
 * build use) and as the relaxed-SIMD fused multiply-add (Node 20 only behind
 * --experimental-wasm-relaxed-simd; run in a child with that flag). This is the ceiling for any
 * convolution written for wasm SIMD128 here; bench/alhvr-step-profile.ts reports what the
 * training step's convolutions reach.
 *
 *   npx tsx bench/wasm-simd-peak.ts
 *
 * Writes bench/results/wasm-simd-peak.json.
 */
import { spawnSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import wabtInit from 'wabt';

const ACCUMULATORS = 12;
const ITERATIONS = 50_000_000;

function moduleText(fused: boolean): string {
  const accs = [...Array(ACCUMULATORS).keys()];
  const step = (i: number) => (fused
    ? `(local.set $a${i} (f32x4.relaxed_madd (local.get $x) (local.get $y) (local.get $a${i})))`
    : `(local.set $a${i} (f32x4.add (local.get $a${i}) (f32x4.mul (local.get $x) (local.get $y))))`);
  return `(module
  (func (export "run") (param $n i32) (result f32)
    (local $x v128) (local $y v128) ${accs.map((i) => `(local $a${i} v128)`).join(' ')}
    (local.set $x (f32x4.splat (f32.const 0.999)))
    (local.set $y (f32x4.splat (f32.const 0.001)))
    (loop $l
      ${accs.map(step).join('\n      ')}
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (f32x4.extract_lane 0 ${accs.slice(1).reduce((e, i) => `(f32x4.add ${e} (local.get $a${i}))`, '(local.get $a0)')})))`;
}

async function binary(fused: boolean): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat('peak.wat', moduleText(fused), { simd: true, relaxed_simd: true });
  try {
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const run = new WebAssembly.Instance(new WebAssembly.Module(workerData.bytes)).exports.run;
// V8 runs a wasm function in its baseline tier until enough calls have run, and a running call
// never switches: warm up with many short calls, give the optimising compiler time, then time.
for (let i = 0; i < 200; i++) run(10000);
setTimeout(() => {
  for (let i = 0; i < 200; i++) run(10000);
  const t = performance.now();
  run(workerData.iterations);
  parentPort.postMessage(performance.now() - t);
}, 200);
`;

/** GFLOP/s of `threads` copies of the loop running at once (each its own worker), summed. */
async function measure(bytes: Uint8Array, threads: number): Promise<number> {
  const ms = await Promise.all([...Array(threads)].map(() => new Promise<number>((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: { bytes, iterations: ITERATIONS } });
    w.once('message', (v: number) => { resolve(v); void w.terminate(); });
    w.once('error', reject);
  })));
  const flops = 2 * 4 * ACCUMULATORS * ITERATIONS;
  return ms.reduce((sum, t) => sum + flops / t / 1e6, 0);
}

async function child(fused: boolean): Promise<void> {
  const bytes = await binary(fused);
  const runs: { oneThread: number; twoThreads: number }[] = [];
  for (let i = 0; i < 3; i++) runs.push({ oneThread: await measure(bytes, 1), twoThreads: await measure(bytes, 2) });
  console.log(JSON.stringify(runs));
}

const here = dirname(fileURLToPath(import.meta.url));
if (process.argv[2] === '--child') {
  await child(process.argv[3] === 'fused');
} else {
  const results: Record<string, unknown> = {};
  for (const kind of ['multiply-add', 'fused'] as const) {
    const flags = kind === 'fused' ? ['--experimental-wasm-relaxed-simd'] : [];
    const r = spawnSync(process.execPath, [...flags, ...process.execArgv, fileURLToPath(import.meta.url), '--child', kind], { encoding: 'utf8' });
    if (r.status !== 0) {
      results[kind] = { error: (r.stderr.split('\n').find((l) => l.includes('Error')) ?? `exit ${r.status}`).trim() };
      continue;
    }
    const runs = JSON.parse(r.stdout.trim().split('\n').pop()!) as { oneThread: number; twoThreads: number }[];
    const best = (k: 'oneThread' | 'twoThreads') => Math.max(...runs.map((x) => x[k]));
    results[kind] = { gflopsOneThread: best('oneThread'), gflopsTwoThreads: best('twoThreads'), runs };
    console.error(`${kind}: ${best('oneThread').toFixed(1)} GFLOP/s on one thread, ${best('twoThreads').toFixed(1)} on two (best of 3)`);
  }
  const out = join(here, 'results', 'wasm-simd-peak.json');
  writeFileSync(`${out}.tmp`, `${JSON.stringify({
    date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, loadavg: loadavg(),
    what: `${ACCUMULATORS} f32x4 accumulators in registers, ${ITERATIONS} iterations, 8 flops per accumulator and iteration`, ...results,
  }, null, 2)}\n`);
  renameSync(`${out}.tmp`, out);
  console.error(`wrote ${out}`);
}
