/**
 * The 3×3 convolutions of one U-Net on the wasm backend, each layer by the direct kernels and by
 * Winograd F(2×2, 3×3) at several tile-group sizes, alternated in the same run: the forward
 * (conv3x3_C against wino3x3_C; the input gradient runs the same kernels) and the filter gradient
 * (dw_3x3_RxC against wino_dw_RxC). Times exclude reading the
 * result back (dataSync), whose fresh JavaScript pages would dominate the small layers.
 *
 *   npx tsx bench/winograd.ts [--size 256] [--batch 2] [--widths 16,32,64,128,256] [--group-kb 32,64,128] [--dw-group-kb 128,256,512] [--reps 15] [--out winograd-1+1]
 *
 * Writes bench/results/<out>.json.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { setWinogradGroupBytes, setWinogradMinChannels, WINOGRAD_MIN_CHANNELS } from '../training/src/backend/wasm-conv2d.js';
import { setWinogradGradientGroupBytes } from '../training/src/backend/wasm-conv-filter-gradient.js';
import { installWasmTrainingKernels } from '../training/src/backend/wasm-training-kernels.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const size = Number(arg('size', '256'));
const batch = Number(arg('batch', '2'));
const widths = arg('widths', '16,32,64,128,256').split(',').map(Number);
const groupKB = arg('group-kb', '32,64,128').split(',').map(Number);
const dwGroupKB = arg('dw-group-kb', '128,256,512').split(',').map(Number);
const reps = Number(arg('reps', '15'));
const here = dirname(fileURLToPath(import.meta.url));

await selectBackend('wasm', { threads: 2, log: () => {} });
const wasmBackend = tf.findBackend('wasm')!;
// encoder (two convolutions a level), then decoder (concatenated input, then one more)
const shapes: number[][] = [];
widths.forEach((w, i) => shapes.push([batch, size >> i, size >> i, i === 0 ? 1 : widths[i - 1], w], [batch, size >> i, size >> i, w, w]));
for (let i = widths.length - 2; i >= 0; i--) shapes.push([batch, size >> i, size >> i, 2 * widths[i], widths[i]], [batch, size >> i, size >> i, widths[i], widths[i]]);

function medianMs(fn: () => tf.Tensor): number {
  fn().dispose();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    const out = fn();
    times.push(performance.now() - t);
    out.dispose();
  }
  return times.sort((a, b) => a - b)[reps >> 1];
}

const layers = [];
for (const [b, h, w, cin, cout] of shapes) {
  const x = tf.randomNormal([b, h, w, cin]) as tf.Tensor4D;
  const filter = tf.randomNormal([3, 3, cin, cout]) as tf.Tensor4D;
  const conv = () => tf.conv2d(x, filter, 1, 'same');
  const gflop = (2 * b * h * w * cin * cout * 9) / 1e9;
  setWinogradMinChannels(Infinity);
  const direct = [medianMs(conv)];
  const winograd: Record<string, number> = {};
  setWinogradMinChannels(1);
  for (const kb of groupKB) {
    setWinogradGroupBytes(kb * 1024);
    winograd[`${kb}KB`] = medianMs(conv);
  }
  setWinogradGroupBytes();
  setWinogradMinChannels(Infinity);
  direct.push(medianMs(conv));
  setWinogradMinChannels();
  const dy = tf.randomNormal([b, h, w, cout]) as tf.Tensor4D;
  const dW = () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy },
    { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, cin, cout] } as never) as tf.Tensor;
  const dwDirect: number[] = [];
  const dwWinograd: Record<string, number> = {};
  if (cin % 4 === 0 && cout % 4 === 0) {
    await installWasmTrainingKernels(wasmBackend, { filterGradientPath: 'simd' });
    dwDirect.push(medianMs(dW));
    await installWasmTrainingKernels(wasmBackend, { filterGradientPath: 'winograd' });
    for (const kb of dwGroupKB) {
      setWinogradGradientGroupBytes(kb * 1024);
      dwWinograd[`${kb}KB`] = medianMs(dW);
    }
    setWinogradGradientGroupBytes();
    await installWasmTrainingKernels(wasmBackend, { filterGradientPath: 'simd' });
    dwDirect.push(medianMs(dW));
    await installWasmTrainingKernels(wasmBackend);
  }
  dy.dispose();
  const directMs = Math.min(...direct);
  const takesWinograd = cin % 4 === 0 && Math.min(cin, cout) >= WINOGRAD_MIN_CHANNELS;
  layers.push({ shape: [b, h, w, cin, cout], gflop, directMs: direct, directGflops: gflop / (directMs / 1e3), winogradMs: winograd,
    speedup: Object.fromEntries(Object.entries(winograd).map(([k, v]) => [k, directMs / v])), takesWinograd,
    filterGradient: { directMs: dwDirect, winogradMs: dwWinograd } });
  console.error(`${[b, h, w, cin, cout].join('×').padEnd(18)} direct ${direct.map((v) => v.toFixed(2)).join('/')} ms` +
    `  Winograd ${Object.entries(winograd).map(([k, v]) => `${k} ${v.toFixed(2)} (${(directMs / v).toFixed(2)}×)`).join('  ')}${takesWinograd ? '' : '  [stays direct]'}`);
  if (dwDirect.length > 0) {
    const best = Math.min(...dwDirect);
    console.error(`${''.padEnd(18)} dW direct ${dwDirect.map((v) => v.toFixed(2)).join('/')} ms  Winograd ${Object.entries(dwWinograd).map(([k, v]) => `${k} ${v.toFixed(2)} (${(best / v).toFixed(2)}×)`).join('  ')}`);
  }
  tf.dispose([x, filter]);
}
const sum = (pick: (l: (typeof layers)[number]) => number) => layers.reduce((s, l) => s + pick(l), 0);
const totals = {
  directMs: sum((l) => Math.min(...l.directMs)),
  winogradMs: Object.fromEntries(groupKB.map((kb) => [`${kb}KB`, sum((l) => l.winogradMs[`${kb}KB`])])),
  asShippedMs: sum((l) => (l.takesWinograd ? l.winogradMs['64KB'] ?? Math.min(...Object.values(l.winogradMs)) : Math.min(...l.directMs))),
  filterGradient: {
    directMs: sum((l) => (l.filterGradient.directMs.length ? Math.min(...l.filterGradient.directMs) : 0)),
    winogradMs: Object.fromEntries(dwGroupKB.map((kb) => [`${kb}KB`, sum((l) => l.filterGradient.winogradMs[`${kb}KB`] ?? 0)])),
    directOnWinogradLayersMs: sum((l) => (l.takesWinograd ? Math.min(...l.filterGradient.directMs) : 0)),
    winogradOnWinogradLayersMs: Object.fromEntries(dwGroupKB.map((kb) => [`${kb}KB`, sum((l) => (l.takesWinograd ? l.filterGradient.winogradMs[`${kb}KB`] : 0))])),
  },
};
console.error(`dW on the layers that take Winograd: direct ${totals.filterGradient.directOnWinogradLayersMs.toFixed(1)} ms, Winograd ${Object.entries(totals.filterGradient.winogradOnWinogradLayersMs).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
console.error(`totals: direct ${totals.directMs.toFixed(1)} ms, Winograd ${Object.entries(totals.winogradMs).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}, as shipped ${totals.asShippedMs.toFixed(1)}`);
const result = { date: new Date().toISOString(), node: process.version, threads: 2, batch, size, widths, reps, loadavg: (await import('node:os')).loadavg(), totals, layers };
const path = join(here, 'results', `${arg('out', `winograd-${size}`)}.json`);
writeFileSync(`${path}.tmp`, JSON.stringify(result, null, 2) + '\n');
renameSync(`${path}.tmp`, path);
process.exit(0);
