/**
 * The fused BatchNorm kernels (AlhvrBatchNormTrain and its gradient) on the wasm backend with and
 * without the helper thread, per U-Net activation shape at the CPU recipe (batch 8, 128², widths
 * 8…128), alternating the two four times; the median of 9 calls each time. The helper's size
 * threshold (HELPER_MIN_FLOATS in training/src/backend/batchnorm-kernels.ts) is lifted for this
 * run, so both columns are measured for every shape.
 *
 *   npx tsx bench/batchnorm-threads.ts
 *
 * Writes bench/results/batchnorm-threads.json.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../training/src/backend/select-backend.js';
import { wasmSimdOf } from '../training/src/backend/wasm-simd.js';
import { BATCHNORM_TRAIN, BATCHNORM_TRAIN_GRAD, setBatchNormHelperMinFloats } from '../training/src/backend/batchnorm-kernels.js';

await selectBackend('wasm', { threads: 2, log: () => {} });
const simd = wasmSimdOf(tf.backend())!;
const helper = simd.helper;
if (!helper) throw new Error('batchnorm-threads: no helper thread (needs the threaded wasm backend in Node)');
const threshold = setBatchNormHelperMinFloats(0);
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const rows: unknown[] = [];
for (const shape of [[8, 128, 128, 8], [8, 128, 128, 16], [8, 64, 64, 16], [8, 64, 64, 32], [8, 32, 32, 32], [8, 16, 16, 64], [8, 8, 8, 128]]) {
  const c = shape[3];
  const x = tf.randomNormal(shape, 0, 1, 'float32', 1);
  const dy = tf.randomNormal(shape, 0, 1, 'float32', 2);
  const gamma = tf.ones([c]);
  const beta = tf.zeros([c]);
  const ms = { helper: { forward: [] as number[], backward: [] as number[] }, alone: { forward: [] as number[], backward: [] as number[] } };
  for (const withHelper of [true, false, true, false, true, false, true, false]) {
    simd.helper = withHelper ? helper : undefined;
    const fwd: number[] = [];
    const bwd: number[] = [];
    for (let i = 0; i < 9; i++) {
      let t = performance.now();
      const outs = tf.engine().runKernel(BATCHNORM_TRAIN, { x, gamma, beta }, { slope: 0.01, eps: 1e-5 }) as tf.Tensor[];
      fwd.push(performance.now() - t);
      t = performance.now();
      const grads = tf.engine().runKernel(BATCHNORM_TRAIN_GRAD, { dy, x, y: outs[0], mean: outs[1], rstd: outs[3], gamma }, { slope: 0.01 }) as tf.Tensor[];
      bwd.push(performance.now() - t);
      tf.dispose([...outs, ...grads]);
    }
    const m = withHelper ? ms.helper : ms.alone;
    m.forward.push(median(fwd));
    m.backward.push(median(bwd));
  }
  simd.helper = helper;
  const row = {
    shape, floats: shape.reduce((a, b) => a * b, 1),
    helperMs: { forward: median(ms.helper.forward), backward: median(ms.helper.backward) },
    aloneMs: { forward: median(ms.alone.forward), backward: median(ms.alone.backward) },
    repetitions: ms,
  };
  console.error(`${shape.join('×')}: forward ${row.helperMs.forward.toFixed(3)} with the helper, ${row.aloneMs.forward.toFixed(3)} alone; backward ${row.helperMs.backward.toFixed(3)}, ${row.aloneMs.backward.toFixed(3)} ms`);
  rows.push(row);
  tf.dispose([x, dy, gamma, beta]);
}
setBatchNormHelperMinFloats(threshold);
const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'batchnorm-threads.json');
writeFileSync(`${out}.tmp`, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, threads: 2, loadavg: loadavg(), helperMinFloats: threshold, shapes: rows }, null, 2)}\n`);
renameSync(`${out}.tmp`, out);
console.error(`wrote ${out}`);
process.exit(0);
