/**
 * The convolutions of one U-Net training step, layer by layer: forward, input gradient (dX) and
 * filter gradient (dW) on the TensorFlow.js wasm backend (XNNPACK, SIMD128, with the training
 * kernels from training/src/backend) next to PyTorch's (bench/conv-kernels-torch.py) in the same
 * run. It separates what the wasm backend can reach at all (forward, which is XNNPACK's own code)
 * from what our kernels add (dW), and so bounds how close a whole training step can get.
 *
 *   npx tsx bench/conv-kernels.ts [--batch 2] [--size 256] [--widths 16,32,64,128,256] [--reps 5] [--threads 2] [--out conv-kernels]
 *
 * Writes bench/results/<out>.json.
 */
import { execFileSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { PYTHON } from '../test/support/python.js';
import { installWasmTrainingKernels, type FilterGradientPath } from '../training/src/backend/wasm-training-kernels.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const batch = Number(arg('batch', '2'));
const size = Number(arg('size', '256'));
const widths = arg('widths', '16,32,64,128,256').split(',').map(Number);
const reps = Number(arg('reps', '5'));
const threads = Number(arg('threads', '2'));
const here = dirname(fileURLToPath(import.meta.url));

/** The distinct 3×3 convolutions of the U-Net: [B, H, W, Cin, Cout] and how often each occurs. */
function unetConvs(): { shape: number[]; count: number }[] {
  const convs = new Map<string, { shape: number[]; count: number }>();
  const add = (shape: number[]) => {
    const key = shape.join('x');
    const e = convs.get(key) ?? { shape, count: 0 };
    e.count++;
    convs.set(key, e);
  };
  widths.forEach((w, i) => {
    const s = size >> i;
    add([batch, s, s, i === 0 ? 1 : widths[i - 1], w]);
    add([batch, s, s, w, w]);
  });
  for (let i = 3; i >= 0; i--) {
    const s = size >> i;
    add([batch, s, s, 2 * widths[i], widths[i]]);
    add([batch, s, s, widths[i], widths[i]]);
  }
  return [...convs.values()];
}

function medianMs(fn: () => tf.Tensor): number {
  fn().dispose();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    const out = fn();
    out.dataSync();
    times.push(performance.now() - t);
    out.dispose();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

await selectBackend('wasm', { threads, log: (m) => console.error(m) });
const layers = unetConvs();
const wasmBackend = tf.findBackend('wasm')!;
type LayerTimes = { fwdMs: number; dxMs: number; dwMs: Record<FilterGradientPath, number> };
const wasm: LayerTimes[] = [];
for (const { shape: [b, h, w, cin, cout] } of layers) {
  const x = tf.randomNormal([b, h, w, cin]) as tf.Tensor4D;
  const f = tf.randomNormal([3, 3, cin, cout]) as tf.Tensor4D;
  const dy = tf.randomNormal([b, h, w, cout]) as tf.Tensor4D;
  const dW = async (path: FilterGradientPath) => {
    await installWasmTrainingKernels(wasmBackend, { filterGradientPath: path });
    return medianMs(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy },
      { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, cin, cout] } as never) as tf.Tensor);
  };
  const fwdMs = medianMs(() => tf.conv2d(x, f, 1, 'same'));
  const dxMs = medianMs(() => tf.conv2dTranspose(dy, f, [b, h, w, cin], 1, 'same'));
  const dwMs = { auto: await dW('auto'), simd: cin % 4 === 0 && cout % 8 === 0 ? await dW('simd') : NaN, gemm9: await dW('gemm9'), taps: await dW('taps'), im2col: await dW('im2col') };
  wasm.push({ fwdMs, dxMs, dwMs });
  await installWasmTrainingKernels(wasmBackend);
  tf.dispose([x, f, dy]);
}
const torchOut = JSON.parse(execFileSync(PYTHON, [join(here, 'conv-kernels-torch.py'), String(threads), String(reps),
  JSON.stringify(layers.map((l) => l.shape))], { encoding: 'utf8' })) as { torch: string; layers: { fwd_ms: number; dx_ms: number; dw_ms: number }[] };

const rows = layers.map((l, i) => {
  const t = torchOut.layers[i];
  const flop = 2 * l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3] * l.shape[4] * 9;
  return {
    shape: l.shape, countPerNetwork: l.count,
    wasm: wasm[i], torch: { fwdMs: t.fwd_ms, dxMs: t.dx_ms, dwMs: t.dw_ms },
    gflops: { wasmFwd: flop / wasm[i].fwdMs / 1e6, torchFwd: flop / t.fwd_ms / 1e6 },
    ratio: { fwd: wasm[i].fwdMs / t.fwd_ms, dx: wasm[i].dxMs / t.dx_ms, dw: wasm[i].dwMs.auto / t.dw_ms },
  };
});
const total = (pick: (r: (typeof rows)[number]) => number) => rows.reduce((s, r) => s + r.countPerNetwork * pick(r), 0);
const totals = {
  wasm: { fwdMs: total((r) => r.wasm.fwdMs), dxMs: total((r) => r.wasm.dxMs), dwMs: total((r) => r.wasm.dwMs.auto) },
  torch: { fwdMs: total((r) => r.torch.fwdMs), dxMs: total((r) => r.torch.dxMs), dwMs: total((r) => r.torch.dwMs) },
};
const ratio = {
  fwd: totals.wasm.fwdMs / totals.torch.fwdMs,
  dx: totals.wasm.dxMs / totals.torch.dxMs,
  dw: totals.wasm.dwMs / totals.torch.dwMs,
  all: (totals.wasm.fwdMs + totals.wasm.dxMs + totals.wasm.dwMs) / (totals.torch.fwdMs + totals.torch.dxMs + totals.torch.dwMs),
};
for (const r of rows) {
  console.error(`${r.shape.join('x').padEnd(18)} ×${r.countPerNetwork}  fwd ${r.wasm.fwdMs.toFixed(1)}/${r.torch.fwdMs.toFixed(1)} ms` +
    ` (${r.ratio.fwd.toFixed(1)}×)  dX ${r.wasm.dxMs.toFixed(1)}/${r.torch.dxMs.toFixed(1)} (${r.ratio.dx.toFixed(1)}×)` +
    `  dW ${r.wasm.dwMs.auto.toFixed(1)}/${r.torch.dwMs.toFixed(1)} (${r.ratio.dw.toFixed(1)}×; simd ${r.wasm.dwMs.simd.toFixed(1)}, gemm9 ${r.wasm.dwMs.gemm9.toFixed(1)}, taps ${r.wasm.dwMs.taps.toFixed(1)}, im2col ${r.wasm.dwMs.im2col.toFixed(1)})`);
}
console.error(`one network's 3×3 convs, wasm / torch: fwd ${ratio.fwd.toFixed(2)}×, dX ${ratio.dx.toFixed(2)}×, dW ${ratio.dw.toFixed(2)}×, all ${ratio.all.toFixed(2)}×`);
const result = { date: new Date().toISOString(), node: process.version, torch: torchOut.torch, threads, batch, size, widths, reps,
  loadavg: (await import('node:os')).loadavg(), totals, ratio, layers: rows };
const path = join(here, 'results', `${arg('out', 'conv-kernels')}.json`);
writeFileSync(`${path}.tmp`, JSON.stringify(result, null, 2) + '\n');
renameSync(`${path}.tmp`, path);
process.exit(0);
