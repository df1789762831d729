/**
 * Linear resizing on the wasm backend, forward + backward, as the two-tap kernels
 * (training/src/backend/wasm-resize-kernel.ts) and as the matrix products they replaced, at the
 * shapes of an ALHVR step at the CPU recipe (U-Net decoder upsampling, align_corners true; the
 * prototype features' upsampling in cgcpcl, align_corners false) and of the 3D step.
 * Process CPU time per call (1 thread: the fair number on a loaded machine) and wall time, median
 * of interleaved repetitions.
 *
 *   npx tsx bench/resize-kernel.ts [--reps 7] [--threads 1]
 *
 * Writes bench/results/resize-kernel.json (atomically) and prints a table to stderr.
 */
import { renameSync, writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { resizeLinear, resizeLinearByProducts } from '../training/src/model/resize.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const reps = Number(arg('reps', '7'));
const threads = Number(arg('threads', '1'));

const cases: { what: string; shape: number[]; size: number[]; alignCorners: boolean }[] = [
  { what: 'U-Net up1 (4+4, 128², widths 8…128)', shape: [8, 8, 8, 64], size: [16, 16], alignCorners: true },
  { what: 'U-Net up2', shape: [8, 16, 16, 32], size: [32, 32], alignCorners: true },
  { what: 'U-Net up3', shape: [8, 32, 32, 16], size: [64, 64], alignCorners: true },
  { what: 'U-Net up4', shape: [8, 64, 64, 8], size: [128, 128], alignCorners: true },
  { what: 'cgcpcl prototype features 2D', shape: [8, 16, 16, 32], size: [128, 128], alignCorners: false },
  { what: 'cgcpcl prototype features 3D (2+2, 32³, widths 4…64)', shape: [4, 4, 4, 4, 32], size: [32, 32, 32], alignCorners: false },
];

await selectBackend('wasm', { threads, log: (m) => console.error(m) });

type Resize = typeof resizeLinear;
function once(resize: Resize, x: tf.Tensor, size: number[], alignCorners: boolean, dy: tf.Tensor): { cpuMs: number; wallMs: number } {
  const t = performance.now();
  const cpu = process.cpuUsage();
  const dx = tf.tidy(() => tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(resize(xi, size, alignCorners), dy)))(x));
  dx.dataSync();
  const used = process.cpuUsage(cpu);
  const wallMs = performance.now() - t;
  dx.dispose();
  return { cpuMs: (used.user + used.system) / 1000, wallMs };
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const rows = cases.map(({ what, shape, size, alignCorners }) => {
  const x = tf.randomNormal(shape, 0, 1, 'float32', 1);
  const dy = tf.randomNormal([shape[0], ...size, shape[shape.length - 1]], 0, 1, 'float32', 2);
  const runs = { kernel: [] as { cpuMs: number; wallMs: number }[], products: [] as { cpuMs: number; wallMs: number }[] };
  once(resizeLinear, x, size, alignCorners, dy);
  once(resizeLinearByProducts, x, size, alignCorners, dy);
  for (let r = 0; r < reps; r++) {
    runs.kernel.push(once(resizeLinear, x, size, alignCorners, dy));
    runs.products.push(once(resizeLinearByProducts, x, size, alignCorners, dy));
  }
  tf.dispose([x, dy]);
  const summary = (v: { cpuMs: number; wallMs: number }[]) => ({ cpuMs: median(v.map((e) => e.cpuMs)), wallMs: median(v.map((e) => e.wallMs)) });
  const row = { what, shape, size, alignCorners, kernel: summary(runs.kernel), products: summary(runs.products) };
  console.error(`${what.padEnd(52)} [${shape}] → [${size}]  CPU ms: kernel ${row.kernel.cpuMs.toFixed(1)}, products ${row.products.cpuMs.toFixed(1)}  (wall ${row.kernel.wallMs.toFixed(1)} / ${row.products.wallMs.toFixed(1)})`);
  return row;
});

const total = (k: 'kernel' | 'products') => rows.reduce((s, r) => s + r[k].cpuMs, 0);
const result = {
  what: 'linear resize forward + backward on wasm: two-tap kernels vs matrix products, median process CPU ms per call',
  threads, reps, date: new Date().toISOString(), rows,
  totalCpuMs: { kernel: total('kernel'), products: total('products') },
};
const out = new URL('./results/resize-kernel.json', import.meta.url);
const tmp = new URL(`./results/resize-kernel.json.${process.pid}.tmp`, import.meta.url);
writeFileSync(tmp, `${JSON.stringify(result, null, 2)}\n`);
renameSync(tmp, out);
console.error(`total CPU ms: kernel ${result.totalCpuMs.kernel.toFixed(1)}, products ${result.totalCpuMs.products.toFixed(1)}`);
process.exit(0);
