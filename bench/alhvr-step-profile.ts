/**
 * Profiles one full ALHVR training step (two students, forward of both branches, alhvrLoss,
 * backward) on the TensorFlow.js wasm backend: wall and process CPU time per step (median of N;
 * at --threads 1 the CPU time is the fair number on a loaded machine), time inside kernels,
 * kernel calls, per-kernel totals and peak wasm heap.
 *
 *   npx tsx bench/alhvr-step-profile.ts [--batch 4+4] [--size 128] [--widths 8,16,32,64,128] [--steps 5] [--threads 2]
 *                                       [--resize kernel|products|alternate] [--net unet2d|vnet3d] [--direct]
 *
 * --net vnet3d profiles the 3D step instead: two VNets on [bl+bu, size, size, size, 1] crops
 * (then give --size, e.g. 32 or 48, and the VNet's --widths, e.g. 4,8,16,32,64).
 * --resize products takes the two-tap resize kernels away, so resizing runs as the matrix
 * products other backends use: before/after of that kernel in one build. --resize alternate
 * times the steps in pairs, one of each, in one process (paired samples see the same load) and
 * prints the two medians and the median of the per-pair differences; the profiled step then runs
 * with the kernel.
 *
 * --direct runs every convolution by the direct kernels (no Winograd).
 *
 * PROFILE_SHAPES=Multiply,Add splits those kernels' time by input shapes.
 *
 * Prints a JSON summary on the last line (the human-readable table goes to stderr).
 */
import * as tf from '@tensorflow/tfjs-core';
import { getKernel } from '@tensorflow/tfjs-core';
import { Rng } from '../core/src/index.js';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { UNet } from '../training/src/model/unet.js';
import { VNet3d } from '../training/src/model/vnet3d.js';
import { alhvrLoss } from '../training/src/losses/alhvr.js';
import { leanVariableGrads } from '../training/src/backend/lean-gradients.js';
import { installWasmTrainingKernels, type FilterGradientPath } from '../training/src/backend/wasm-training-kernels.js';
import { setWinogradMinChannels } from '../training/src/backend/wasm-conv2d.js';
import { RESIZE_LINEAR } from '../training/src/backend/wasm-resize-kernel.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const [bl, bu] = arg('batch', '4+4').split('+').map(Number);
const size = Number(arg('size', '128'));
const widths = arg('widths', '8,16,32,64,128').split(',').map(Number);
const steps = Number(arg('steps', '5'));
const threads = Number(arg('threads', '2'));
const resize = arg('resize', 'kernel');
if (resize !== 'kernel' && resize !== 'products' && resize !== 'alternate') {
  throw new Error(`alhvr-step-profile: --resize ${resize} (expected kernel, products or alternate)`);
}
const net = arg('net', 'unet2d');
if (net !== 'unet2d' && net !== 'vnet3d') throw new Error(`alhvr-step-profile: --net ${net} (expected unet2d or vnet3d)`);

await selectBackend('wasm', { threads, log: (m) => console.error(m) });
// pin one dW algorithm to compare
if (process.argv.includes('--direct')) setWinogradMinChannels(Infinity);
if (process.env.DW_PATH) await installWasmTrainingKernels(tf.findBackend('wasm')!, { filterGradientPath: process.env.DW_PATH as FilterGradientPath });
const resizeKernel = getKernel(RESIZE_LINEAR, 'wasm')!;
/** Takes the resize kernel away (resizing then runs as matrix products) or puts it back. */
function useResizeKernel(on: boolean): void {
  const registered = getKernel(RESIZE_LINEAR, 'wasm') !== undefined;
  if (registered && !on) tf.unregisterKernel(RESIZE_LINEAR, 'wasm');
  if (!registered && on) tf.registerKernel(resizeKernel);
}
useResizeKernel(resize !== 'products');
const rng = new Rng(1);
const makeNet = (scope: string) => (net === 'vnet3d' ? new VNet3d({ numClasses: 4, widths, dropout: 0 }, rng, scope) : new UNet({ numClasses: 4, widths }, rng, scope));
const a = makeNet('a');
const b = makeNet('b');
const sides = net === 'vnet3d' ? [size, size, size] : [size, size];
const x = tf.randomUniform([bl + bu, ...sides, 1], 0, 1, 'float32', 5);
const y = tf.randomUniform([bl, ...sides], 0, 4, 'int32', 6);
type Forward = (input: tf.Tensor, opts: { training: true; rng: Rng }) => { logits: tf.Tensor; logitsAux?: tf.Tensor; fea: tf.Tensor; feaAux?: tf.Tensor };
const forwardA = a.forward.bind(a) as unknown as Forward;
const forwardB = b.forward.bind(b) as unknown as Forward;
const vars = [...a.params.trainableVariables(), ...b.params.trainableVariables()];

function step(): void {
  const { value, grads } = leanVariableGrads(() => {
    const oa = forwardA(x, { training: true, rng });
    const ob = forwardB(x, { training: true, rng });
    const terms = alhvrLoss(
      { logits: oa.logits, logitsAux: oa.logitsAux!, fea: oa.fea, feaAux: oa.feaAux! },
      { logits: ob.logits, logitsAux: ob.logitsAux!, fea: ob.fea, feaAux: ob.feaAux! },
      y, { labeledCount: bl, iteration: 100 });
    const { loss, ...rest } = terms;
    tf.dispose(Object.values(rest).filter((v): v is tf.Tensor => v instanceof tf.Tensor));
    return loss;
  }, vars);
  value.dataSync();
  tf.dispose([value, ...Object.values(grads)]);
}

step(); // warm-up: XNNPACK operator creation, heap growth
function timedStep(): { wallMs: number; cpuMs: number } {
  const t = performance.now();
  const cpu = process.cpuUsage();
  step();
  const used = process.cpuUsage(cpu);
  return { wallMs: performance.now() - t, cpuMs: (used.user + used.system) / 1000 };
}
const medianOf = (v: number[]) => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)];
const times: number[] = [];
const cpuTimes: number[] = [];
let paired: { kernelCpuMs: number[]; productsCpuMs: number[]; medianCpuMs: { kernel: number; products: number; difference: number } } | undefined;
if (resize === 'alternate') {
  useResizeKernel(false);
  step(); // warm-up of the products' path (weight matrices, XNNPACK operators)
  const kernelCpuMs: number[] = [];
  const productsCpuMs: number[] = [];
  for (let i = 0; i < steps; i++) {
    const order = i % 2 === 0 ? [true, false] : [false, true];
    for (const on of order) {
      useResizeKernel(on);
      const r = timedStep();
      (on ? kernelCpuMs : productsCpuMs).push(r.cpuMs);
      if (on) {
        times.push(r.wallMs);
        cpuTimes.push(r.cpuMs);
      }
    }
  }
  useResizeKernel(true);
  paired = {
    kernelCpuMs, productsCpuMs,
    medianCpuMs: { kernel: medianOf(kernelCpuMs), products: medianOf(productsCpuMs), difference: medianOf(kernelCpuMs.map((k, i) => k - productsCpuMs[i])) },
  };
  console.error(`paired CPU ms per step: kernel [${kernelCpuMs.map((t) => t.toFixed(0)).join(', ')}], products [${productsCpuMs.map((t) => t.toFixed(0)).join(', ')}]`);
  console.error(`  medians: kernel ${paired.medianCpuMs.kernel.toFixed(0)}, products ${paired.medianCpuMs.products.toFixed(0)}, per-pair difference ${paired.medianCpuMs.difference.toFixed(0)}`);
} else {
  for (let i = 0; i < steps; i++) {
    const r = timedStep();
    times.push(r.wallMs);
    cpuTimes.push(r.cpuMs);
  }
}
const median = medianOf(times);
const cpuMedian = medianOf(cpuTimes);

const tProf = performance.now();
const prof = await tf.profile(() => step());
const profWall = performance.now() - tProf;
const agg = new Map<string, { ms: number; calls: number }>();
let kernelMs = 0;
for (const k of prof.kernels) {
  const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  // customGrad nodes ("unnamed scope", "*__op") time their inner kernels, which are listed too
  if (k.name !== 'unnamed scope' && !k.name.endsWith('__op')) kernelMs += ms;
  const e = agg.get(k.name) ?? { ms: 0, calls: 0 };
  e.ms += ms;
  e.calls++;
  agg.set(k.name, e);
}
const kernels = [...agg].map(([name, v]) => ({ name, ms: Math.round(v.ms), calls: v.calls })).sort((p, q) => q.ms - p.ms);
// Convolution arithmetic: 2 flops per multiply-add, forward (its output pixels), input gradient
// (dy's pixels) and filter gradient (dy's pixels, the filter as its output) alike.
const convolutions: Record<string, { gflop: number; ms: number }> = {};
for (const k of prof.kernels) {
  const sizes = (sh: number[] | undefined) => (sh ?? []).reduce((a, b) => a * b, 1);
  let flops = 0;
  if (k.name === 'Conv2D' || k.name === 'FusedConv2D') flops = 2 * sizes(k.outputShapes[0]) / k.outputShapes[0]![3] * sizes(k.inputShapes[1]);
  else if (k.name === 'Conv2DBackpropInput') flops = 2 * sizes(k.inputShapes[0]) / k.inputShapes[0]![3] * sizes(k.inputShapes[1]);
  else if (k.name === 'Conv2DBackpropFilter') flops = 2 * sizes(k.inputShapes[1]) / k.inputShapes[1]![3] * sizes(k.outputShapes[0]);
  else continue;
  const e = convolutions[k.name] ?? { gflop: 0, ms: 0 };
  e.gflop += flops / 1e9;
  e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  convolutions[k.name] = e;
}
for (const [name, e] of Object.entries(convolutions)) console.error(`  ${name}: ${e.gflop.toFixed(2)} GFLOP in ${e.ms.toFixed(0)} ms, ${(e.gflop / e.ms * 1000).toFixed(1)} GFLOP/s`);
const heapMB = ((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length) / 2 ** 20;
console.error(`step wall ms: median ${median.toFixed(0)} of [${times.map((t) => t.toFixed(0)).join(', ')}]`);
console.error(`step CPU ms (all threads): median ${cpuMedian.toFixed(0)} of [${cpuTimes.map((t) => t.toFixed(0)).join(', ')}]`);
console.error(`profiled step: wall ${profWall.toFixed(0)} ms, in kernels ${kernelMs.toFixed(0)} ms, ${prof.kernels.length} kernel calls`);
console.error(`wasm heap ${heapMB.toFixed(0)} MiB, peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
for (const k of kernels.slice(0, 25)) console.error(`  ${k.name.padEnd(24)} ${String(k.ms).padStart(6)} ms  ${k.calls} calls`);
// PROFILE_SHAPES=Name1,Name2: those kernels' time split by input shapes (which calls to replace first)
const byShape = new Map<string, { ms: number; calls: number }>();
const shapeKernels = new Set((process.env.PROFILE_SHAPES ?? '').split(',').filter(Boolean));
for (const k of prof.kernels) {
  if (!shapeKernels.has(k.name)) continue;
  const key = `${k.name} ${k.inputShapes.map((sh) => `[${(sh ?? []).join(',')}]`).join(' ')}`;
  const e = byShape.get(key) ?? { ms: 0, calls: 0 };
  e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  e.calls++;
  byShape.set(key, e);
}
const shapes = [...byShape].map(([key, v]) => ({ key, ms: Math.round(v.ms * 10) / 10, calls: v.calls })).sort((p, q) => q.ms - p.ms);
for (const e of shapes.slice(0, 40)) console.error(`  ${e.key.padEnd(60)} ${e.ms.toFixed(1).padStart(7)} ms  ${e.calls} calls`);
console.log(JSON.stringify({ net, bl, bu, size, widths, threads, resize, medianMs: median, times, cpuMedianMs: cpuMedian, cpuTimes, paired, profWallMs: profWall, kernelMs,
  kernelCalls: prof.kernels.length, convolutions, wasmHeapMB: heapMB, peakRssMB: process.resourceUsage().maxRSS / 1024, kernels, ...(shapes.length > 0 ? { shapes } : {}) }));
process.exit(0);
