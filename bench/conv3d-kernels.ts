/**
 * The 3×3×3 stride-1 'same' convolutions of the VNet at the CPU recipe
 * (models/recipes/alhvr-abdomen-ct.train.json: 48³ crops, widths 8–128), layer by layer:
 * forward, input gradient (as vnet3d.ts `sameConv` takes it: a forward Conv3D of dy with the
 * flipped filter) and filter gradient, on tfjs-backend-wasm's own kernels (direct C loops) and
 * on ours (training/src/backend/wasm-conv3d.ts); then one whole ALHVR training step of the two
 * VNet students (the trainer's Students and stepLoss) on the backend's own kernels, on our Conv3D
 * kernels alone, and with our Transpose too (wasm-transpose.ts: the down/up shuffles).
 *
 * CPU time is process.cpuUsage() (user + system of every thread of the process); with the
 * default --threads 1 it is one thread's work, comparable under any load. Wall time is printed
 * too. The background load average is recorded at the start and at the end.
 *
 * Then the same step in PyTorch (bench/conv3d-step-torch.py, Debian python3-torch, same
 * threads), with glibc malloc and with jemalloc preloaded, for the ratio.
 *
 *   npx tsx bench/conv3d-kernels.ts [--batch 2] [--patch 48] [--widths 8,16,32,64,128] [--reps 3]
 *     [--threads 1] [--step-reps 2] [--native-budget-s 60] [--phases layers,step,native-step,torch]
 *
 * The backend's own kernels take minutes at 48³: a native layer measurement stops repeating once
 * one run passed --native-budget-s, and the phases can be run separately (a phase not run keeps
 * its result from bench/results/conv3d-kernels.json, which is rewritten after every phase).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { Conv3D, Conv3DBackpropFilterV2, Transpose, type KernelFunc } from '@tensorflow/tfjs-core';
import { Rng } from '@alhvr/core';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { conv3dBackpropFilterWasm, conv3dWasm, setConv3dFilterGradientPath } from '../training/src/backend/wasm-conv3d.js';
import { nativeKernel, replaceWasmKernel } from '../training/src/backend/wasm-internals.js';
import { transposeKeepingLastAxisWasm } from '../training/src/backend/wasm-transpose.js';
import { resolveConfig } from '../training/src/config.js';
import { vnet3dConvLayers, vnet3dSpec } from '../training/src/model/vnet3d-spec.js';
import { stepLoss } from '../training/src/objective.js';
import { Students } from '../training/src/students.js';
import { PYTHON } from '../test/support/python.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const batch = Number(arg('batch', '2'));
const patch = Number(arg('patch', '48'));
const widths = arg('widths', '8,16,32,64,128').split(',').map(Number);
const reps = Number(arg('reps', '3'));
const threads = Number(arg('threads', '1'));
const stepReps = Number(arg('step-reps', '2'));
const phases = new Set(arg('phases', 'layers,step,native-step,torch').split(','));
const nativeBudgetMs = Number(arg('native-budget-s', '60')) * 1000;
const classes = 5; // background and the four AbdomenCT-1K organs
const here = dirname(fileURLToPath(import.meta.url));
const path = join(here, 'results', 'conv3d-kernels.json');
const configuration = { threads, batch, patch, widths, reps };
/** What an earlier run measured, kept for the phases this run skips (only at the same configuration). */
const previous = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> : {};
const sameConfiguration = JSON.stringify(previous.configuration) === JSON.stringify(configuration);
const result: Record<string, unknown> = {
  configuration,
  cpuTime: 'process.cpuUsage() user + system, all threads of the process (PyTorch: time.process_time)',
  ...(sameConfiguration ? previous : {}),
};
/** Writes the result so far (atomically), with the date, versions and load average of this phase. */
function save(phase: string, fields: Record<string, unknown>): void {
  Object.assign(result, fields);
  result.phases = { ...(result.phases as object), [phase]: { date: new Date().toISOString(), node: process.version, tfjs: tf.version_core, loadavg: loadavg() } };
  writeFileSync(`${path}.tmp`, JSON.stringify(result, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
}

interface Timing { cpuMs: number; wallMs: number; runs: number }

/** Median CPU and wall time of `fn` (its tensor read back), after one untimed run unless it is slow. */
function measure(fn: () => tf.Tensor | tf.TensorInfo, budgetMs = Infinity): Timing {
  const once = (): { cpuMs: number; wallMs: number } => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = fn();
    const t = out instanceof tf.Tensor ? out : tf.engine().makeTensorFromTensorInfo(out);
    t.dataSync();
    const wallMs = performance.now() - t0;
    const c = process.cpuUsage(c0);
    t.dispose();
    return { cpuMs: (c.user + c.system) / 1000, wallMs };
  };
  const first = once();
  if (first.wallMs > budgetMs) return { ...first, runs: 1 };
  const runs = Array.from({ length: reps }, once);
  const median = (k: 'cpuMs' | 'wallMs') => runs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  return { cpuMs: median('cpuMs'), wallMs: median('wallMs'), runs: reps };
}

/** The distinct 3³ convolutions of one VNet forward: [B, S, S, S, Cin, Cout] and how often each occurs. */
function vnetConvs(): { shape: number[]; count: number }[] {
  const spec = vnet3dSpec({ inChannels: 1, numClasses: classes, widths });
  const convs = new Map<string, { shape: number[]; count: number }>();
  const level = (name: string) => {
    const [part, n] = name.split('.');
    return part === 'enc' ? Number(n) : widths.length - 2 - Number(n);
  };
  for (const l of vnet3dConvLayers(spec)) {
    if (l.kind !== 'conv' || l.kernel !== 3) continue;
    const s = patch >> level(l.name);
    const shape = [batch, s, s, s, l.cin, l.cout];
    const key = shape.join('x');
    const e = convs.get(key) ?? { shape, count: 0 };
    e.count++;
    convs.set(key, e);
  }
  return [...convs.values()];
}

await selectBackend('wasm', { threads, log: (m) => console.error(m) });
const backend = tf.backend();
const nativeConv: KernelFunc = (args) => nativeKernel(Conv3D, args);
const nativeDw: KernelFunc = (args) => nativeKernel(Conv3DBackpropFilterV2, args);
const nativeTranspose: KernelFunc = (args) => nativeKernel(Transpose, args);
/** 'native': the backend's own Conv3D, filter gradient and Transpose; 'convs': ours but its Transpose; 'ours': all of ours. */
const useKernels = (which: 'native' | 'convs' | 'ours') => {
  replaceWasmKernel(Conv3D, which === 'native' ? nativeConv : conv3dWasm);
  replaceWasmKernel(Conv3DBackpropFilterV2, which === 'native' ? nativeDw : conv3dBackpropFilterWasm);
  replaceWasmKernel(Transpose, which === 'ours' ? transposeKeepingLastAxisWasm : nativeTranspose);
};

// ---- layer by layer --------------------------------------------------------------------------
type Op = 'fwd' | 'dx' | 'dw';
const rows: Record<string, unknown>[] = [];
for (const { shape, count } of phases.has('layers') ? vnetConvs() : []) {
  const [b, s, , , cin, cout] = shape;
  const x = tf.randomNormal([b, s, s, s, cin], 0, 1, 'float32', 1) as tf.Tensor5D;
  const f = tf.randomNormal([3, 3, 3, cin, cout], 0, 0.1, 'float32', 2) as tf.Tensor5D;
  const dy = tf.randomNormal([b, s, s, s, cout], 0, 1, 'float32', 3) as tf.Tensor5D;
  const adjoint = tf.transpose(tf.reverse(f, [0, 1, 2]), [0, 1, 2, 4, 3]) as tf.Tensor5D;
  const attrs = { strides: [1, 1, 1], pad: 'same', dilations: [1, 1, 1], dataFormat: 'NDHWC' };
  const dwAttrs = { strides: [1, 1, 1], pad: 'same', filterShape: [3, 3, 3, cin, cout] };
  const ops: Record<Op, (kernel: KernelFunc, dwKernel: KernelFunc) => tf.TensorInfo> = {
    fwd: (k) => k({ inputs: { x, filter: f }, backend, attrs: attrs as never }) as tf.TensorInfo,
    dx: (k) => k({ inputs: { x: dy, filter: adjoint }, backend, attrs: attrs as never }) as tf.TensorInfo,
    dw: (_, k) => k({ inputs: { x, dy }, backend, attrs: dwAttrs as never }) as tf.TensorInfo,
  };
  const row: Record<string, unknown> = { shape, countPerNetwork: count };
  const nat: Partial<Record<Op, Timing>> = {};
  const our: Partial<Record<Op, Timing>> = {};
  for (const op of ['fwd', 'dx', 'dw'] as Op[]) {
    our[op] = measure(() => ops[op](conv3dWasm, conv3dBackpropFilterWasm));
    nat[op] = measure(() => ops[op](nativeConv, nativeDw), nativeBudgetMs);
  }
  const dwPaths: Record<string, Timing | null> = {};
  for (const path of ['simd', 'gemm'] as const) {
    setConv3dFilterGradientPath(path);
    dwPaths[path] = path === 'simd' && (cin % 4 !== 0 || cout % 8 !== 0) ? null : measure(() => ops.dw(conv3dWasm, conv3dBackpropFilterWasm));
  }
  setConv3dFilterGradientPath('auto');
  row.native = nat;
  row.ours = our;
  row.oursDwByPath = dwPaths;
  row.speedupCpu = Object.fromEntries((['fwd', 'dx', 'dw'] as Op[]).map((op) => [op, nat[op]!.cpuMs / our[op]!.cpuMs]));
  rows.push(row);
  console.error(`${shape.join('x').padEnd(22)} ×${count}  ` + (['fwd', 'dx', 'dw'] as Op[]).map((op) =>
    `${op} ${nat[op]!.cpuMs.toFixed(0)}→${our[op]!.cpuMs.toFixed(1)} cpu ms (wall ${nat[op]!.wallMs.toFixed(0)}→${our[op]!.wallMs.toFixed(1)})`).join('  ') +
    `  dW simd ${dwPaths.simd?.cpuMs.toFixed(1) ?? '–'} gemm ${dwPaths.gemm?.cpuMs.toFixed(1)}`);
  tf.dispose([x, f, dy, adjoint]);
}
if (phases.has('layers')) {
  const total = (which: 'native' | 'ours', key: 'cpuMs' | 'wallMs') =>
    rows.reduce((sum, r) => sum + (r.countPerNetwork as number) *
      (['fwd', 'dx', 'dw'] as Op[]).reduce((t, op) => t + ((r[which] as Record<Op, Timing>)[op][key]), 0), 0);
  const layerTotals = {
    note: 'one network\'s 3³ convolutions, forward + input gradient + filter gradient, each layer × its count',
    native: { cpuMs: total('native', 'cpuMs'), wallMs: total('native', 'wallMs') },
    ours: { cpuMs: total('ours', 'cpuMs'), wallMs: total('ours', 'wallMs') },
  };
  console.error(`one network's 3³ convs (fwd + dX + dW): native ${(layerTotals.native.cpuMs / 1000).toFixed(1)} cpu s, ours ${(layerTotals.ours.cpuMs / 1000).toFixed(2)} cpu s`);
  save('layers', { layerTotals, layers: rows });
}

// ---- one ALHVR training step -------------------------------------------------------------------
const recipe = resolveConfig({
  data: '/nonexistent', out: '/nonexistent', network: 'vnet3d', method: 'alhvr', patch, widths,
  batchLabeled: batch, batchUnlabeled: batch, iterations: 2000, rampIterations: 2000,
});
const students = new Students({
  count: 2, network: 'vnet3d', net: { numClasses: classes, widths, dropout: recipe.dropout }, optimiser: recipe,
  init: [new Rng(1), new Rng(2)], forward: [new Rng(3), new Rng(4)],
});
const images = tf.randomNormal([2 * batch, patch, patch, patch, 1], 0, 1, 'float32', 7);
const labels = tf.randomUniform([batch, patch, patch, patch], 0, classes, 'int32', 8);
const stepBatch = { images, labels, labeledCount: batch };
function trainStep(): Timing {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const step = students.gradients(() => stepLoss(students.forward(images, true), stepBatch, 500, recipe));
  students.step(step.grads);
  step.loss.dataSync();
  tf.dispose([step.loss, ...Object.values(step.terms)]);
  const c = process.cpuUsage(c0);
  return { cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - t0, runs: 1 };
}
const stepTimes = (n: number): Timing => {
  const runs = Array.from({ length: n }, trainStep);
  const median = (k: 'cpuMs' | 'wallMs') => runs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  return { cpuMs: median('cpuMs'), wallMs: median('wallMs'), runs: n };
};
const stepWhat = `one ALHVR iteration of two VNet students (Students + stepLoss as the trainer runs them): forward with the auxiliary pass on ${2 * batch} crops of ${patch}³ (${batch} labelled), one backward pass, SGD step`;
const stepSpeedup = () => {
  const s = result.step as { ours?: Timing; oursConvsOnly?: Timing; native?: Timing } | undefined;
  return s?.native ? { ours: s.ours ? s.native.cpuMs / s.ours.cpuMs : null, oursConvsOnly: s.oursConvsOnly ? s.native.cpuMs / s.oursConvsOnly.cpuMs : null } : null;
};
if (phases.has('step')) {
  for (const which of ['convs', 'ours'] as const) {
    useKernels(which);
    trainStep(); // warm-up: first allocations, XNNPACK operator creation
    const t = stepTimes(stepReps);
    console.error(`ALHVR step (2 VNets, ${2 * batch}×${patch}³), ${which === 'ours' ? 'all our kernels' : 'our Conv3D kernels, the backend\'s Transpose'}: ${(t.cpuMs / 1000).toFixed(1)} cpu s, ${(t.wallMs / 1000).toFixed(1)} s wall`);
    result.step = { ...(result.step as object), what: stepWhat, [which === 'ours' ? 'ours' : 'oursConvsOnly']: t };
  }
  save('step', { step: { ...(result.step as object), speedupCpu: stepSpeedup() } });
}
if (phases.has('native-step')) {
  useKernels('native');
  const native = stepTimes(1);
  useKernels('ours');
  console.error(`ALHVR step, the backend's own Conv3D kernels: ${(native.cpuMs / 1000).toFixed(1)} cpu s, ${(native.wallMs / 1000).toFixed(1)} s wall`);
  result.step = { ...(result.step as object), what: stepWhat, native };
  save('native-step', { step: { ...(result.step as object), speedupCpu: stepSpeedup() } });
}
students.dispose();
tf.dispose([images, labels]);

// ---- the same step in PyTorch ------------------------------------------------------------------
if (phases.has('torch')) {
  const torchStep = (jemalloc: boolean) => {
    const env = { ...process.env, ...(jemalloc ? { LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', MALLOC_CONF: 'dirty_decay_ms:-1,muzzy_decay_ms:-1' } : {}) };
    const out = execFileSync(PYTHON, [join(here, 'conv3d-step-torch.py'), String(threads), String(stepReps), String(batch), String(patch), widths.join(','), String(classes)],
      { encoding: 'utf8', env });
    return JSON.parse(out) as { torch: string; allocator: string; cpuS: number; wallS: number };
  };
  const torch = { glibc: torchStep(false), jemalloc: torchStep(true) };
  const ours = (result.step as { ours?: Timing } | undefined)?.ours;
  console.error(`PyTorch step: ${torch.glibc.cpuS.toFixed(1)} cpu s (glibc malloc), ${torch.jemalloc.cpuS.toFixed(1)} cpu s (jemalloc)`);
  save('torch', {
    torch: {
      what: 'the same iteration in PyTorch (bench/conv3d-step-torch.py: the VNet with its auxiliary pass, a CE + consistency stand-in of the loss)',
      ...torch,
      oursOverTorchCpu: ours ? { glibc: ours.cpuMs / 1000 / torch.glibc.cpuS, jemalloc: ours.cpuMs / 1000 / torch.jemalloc.cpuS } : null,
    },
  });
}
process.exit(0);
