import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from './select-backend.js';
import { installWasmTrainingKernels, type FilterGradientPath } from './wasm-training-kernels.js';
import { wasmSimdOf } from './wasm-simd.js';
import { setWinogradGradientGroupBytes } from './wasm-conv-filter-gradient.js';
import { BATCHNORM_TRAIN, BATCHNORM_TRAIN_GRAD } from './batchnorm-kernels.js';
import { BN_EPS, LEAKY_SLOPE } from '../model/unet-spec.js';

/**
 * Every gradient the U-Net training needs is computed twice, once on the reference `cpu` backend
 * (plain JS kernels, all present) and once on `wasm` with our kernels, from identical inputs.
 */

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function randomArray(n: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r();
  return a;
}

/** Evaluates `f` on the named backend and returns the gradient values for every input. */
async function gradsOn(
  backend: 'cpu' | 'wasm',
  inputs: { data: Float32Array; shape: number[] }[],
  f: (...xs: tf.Tensor[]) => tf.Scalar,
): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.data, i.shape));
    const gs = tf.grads(f)(xs);
    return gs.map((g) => g.dataSync() as Float32Array);
  });
}

/** max |a−b| ≤ 1e-4 · max |b| (relative to the gradient's scale, so tiny entries do not dominate). */
function expectClose(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < b.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(b[i]));
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  }
  expect(maxAbs, `${what}: reference gradient is all zero, the test would prove nothing`).toBeGreaterThan(0);
  expect(maxDiff / maxAbs, what).toBeLessThanOrEqual(1e-4);
}

async function compare(
  name: string,
  inputs: { data: Float32Array; shape: number[] }[],
  f: (...xs: tf.Tensor[]) => tf.Scalar,
): Promise<void> {
  const ref = await gradsOn('cpu', inputs, f);
  const got = await gradsOn('wasm', inputs, f);
  ref.forEach((r, i) => expectClose(got[i], r, `${name} d/dinput${i}`));
}

beforeAll(async () => {
  await selectBackend('wasm', { threads: 2, log: () => {} });
});

/** Runs `f` with the wasm dW kernel pinned to `path`, then puts the automatic choice back. */
async function withFilterGradientPath(path: FilterGradientPath, f: () => Promise<void>): Promise<void> {
  const wasm = tf.findBackend('wasm')!;
  await installWasmTrainingKernels(wasm, { filterGradientPath: path });
  try {
    await f();
  } finally {
    await installWasmTrainingKernels(wasm);
  }
}
afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('wasm training kernels match the cpu backend', () => {
  const convCases: { b: number; h: number; w: number; ci: number; co: number; k: number; stride: number; pad: 'same' | 'valid' }[] = [
    { b: 1, h: 5, w: 7, ci: 1, co: 1, k: 3, stride: 1, pad: 'same' },
    { b: 2, h: 9, w: 8, ci: 3, co: 5, k: 3, stride: 1, pad: 'same' },
    { b: 3, h: 16, w: 16, ci: 32, co: 16, k: 3, stride: 1, pad: 'same' },
    { b: 2, h: 12, w: 10, ci: 17, co: 32, k: 1, stride: 1, pad: 'same' },
    { b: 2, h: 11, w: 9, ci: 4, co: 6, k: 3, stride: 1, pad: 'valid' },
    { b: 2, h: 11, w: 9, ci: 4, co: 6, k: 3, stride: 2, pad: 'same' },
    { b: 1, h: 10, w: 13, ci: 2, co: 3, k: 5, stride: 2, pad: 'valid' },
  ];
  for (const c of convCases) {
    it(`conv2d ${c.k}×${c.k} stride ${c.stride} pad ${c.pad}, x [${c.b},${c.h},${c.w},${c.ci}] → ${c.co}`, async () => {
      const r = rng(c.b * 1000 + c.ci * 10 + c.co);
      const x = { data: randomArray(c.b * c.h * c.w * c.ci, r), shape: [c.b, c.h, c.w, c.ci] };
      const w = { data: randomArray(c.k * c.k * c.ci * c.co, r), shape: [c.k, c.k, c.ci, c.co] };
      const oh = c.pad === 'same' ? Math.ceil(c.h / c.stride) : Math.ceil((c.h - c.k + 1) / c.stride);
      const ow = c.pad === 'same' ? Math.ceil(c.w / c.stride) : Math.ceil((c.w - c.k + 1) / c.stride);
      const wy = randomArray(c.b * oh * ow * c.co, r);
      await compare('conv2d', [x, w], (xt, wt) =>
        tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, c.stride, c.pad), tf.tensor(wy, [c.b, oh, ow, c.co]))));
    });
  }

  it('conv2d filter gradient over more pixels than one im2col chunk (chunked accumulation)', async () => {
    // 2^21 floats per chunk / (3·3·32 taps) = 7281 pixels per chunk; 2×64×64 = 8192 pixels → 2 chunks.
    const r = rng(7);
    const x = { data: randomArray(2 * 64 * 64 * 32, r), shape: [2, 64, 64, 32] };
    const w = { data: randomArray(3 * 3 * 32 * 2, r), shape: [3, 3, 32, 2] };
    const wy = randomArray(2 * 64 * 64 * 2, r);
    await compare('conv2d chunked', [x, w], (xt, wt) =>
      tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'), tf.tensor(wy, [2, 64, 64, 2]))));
  });

  // The dW algorithms, pinned, on stride-1 shapes (the automatic choice only ever runs one of them).
  for (const path of ['gemm9', 'taps', 'im2col'] as const) {
    const cases = [
      { b: 2, h: 9, w: 8, ci: 3, co: 5, k: 3, pad: 'same' as const },
      { b: 2, h: 11, w: 9, ci: 4, co: 6, k: 3, pad: 'valid' as const },
      { b: 1, h: 7, w: 12, ci: 40, co: 3, k: 3, pad: 'same' as const },
      { b: 2, h: 6, w: 5, ci: 9, co: 7, k: 1, pad: 'same' as const },
      // 2^21 floats / (3·3·16) = 14563 pixels per chunk; the padded grid 2×98×98 = 19208 → 2 chunks
      { b: 2, h: 96, w: 96, ci: 16, co: 2, k: 3, pad: 'same' as const },
    ];
    for (const c of cases) {
      it(`conv2d filter gradient, ${path} path: ${c.k}×${c.k} pad ${c.pad}, x [${c.b},${c.h},${c.w},${c.ci}] → ${c.co}`, async () => {
        const r = rng(c.b * 31 + c.ci * 7 + c.co);
        const x = { data: randomArray(c.b * c.h * c.w * c.ci, r), shape: [c.b, c.h, c.w, c.ci] };
        const w = { data: randomArray(c.k * c.k * c.ci * c.co, r), shape: [c.k, c.k, c.ci, c.co] };
        const oh = c.pad === 'same' ? c.h : c.h - c.k + 1;
        const ow = c.pad === 'same' ? c.w : c.w - c.k + 1;
        const wy = randomArray(c.b * oh * ow * c.co, r);
        await withFilterGradientPath(path, () => compare(`conv2d ${path}`, [x, w], (xt, wt) =>
          tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, c.pad), tf.tensor(wy, [c.b, oh, ow, c.co])))));
      });
    }
  }

  it('every dW path frees what it made (the im2col scratch included): no buffer is left behind', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.randomNormal([2, 12, 10, 8]);
    const dy = tf.randomNormal([2, 12, 10, 8]);
    for (const path of ['auto', 'winograd', 'simd', 'gemm9', 'taps', 'im2col'] as const) {
      await withFilterGradientPath(path, async () => {
        const before = backend.numDataIds();
        const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy },
          { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 8, 8] } as never) as tf.Tensor;
        expect(backend.numDataIds(), path).toBe(before + 1);
        dw.dispose();
      });
    }
    tf.dispose([x, dy]);
  });

  // The SIMD dW kernel (3×3 'same'; blocks of 4 or 1 input × 8 or 4 output channels), pinned;
  // 'valid' falls back to the GEMMs.
  for (const c of [
    { b: 2, h: 9, w: 8, ci: 4, co: 8, pad: 'same' as const },
    { b: 2, h: 11, w: 9, ci: 8, co: 16, pad: 'valid' as const },
    { b: 1, h: 7, w: 12, ci: 40, co: 24, pad: 'same' as const },
    { b: 3, h: 32, w: 16, ci: 16, co: 8, pad: 'same' as const },
    // blocks 1×8 (the first layer), 4×4 (the 4-class head), 1×4
    { b: 2, h: 10, w: 7, ci: 1, co: 8, pad: 'same' as const },
    { b: 2, h: 9, w: 11, ci: 8, co: 4, pad: 'same' as const },
    { b: 1, h: 6, w: 5, ci: 3, co: 12, pad: 'same' as const },
    // chunks of rows: 2048 pixels / 24 columns = 86 rows, a chunk ending inside the second image
    { b: 2, h: 64, w: 24, ci: 4, co: 8, pad: 'same' as const },
    // 128 pixels / 20 columns = 7 rows a chunk, six chunks, every image row a tap row at some chunk's edge
    { b: 1, h: 40, w: 20, ci: 64, co: 8, pad: 'same' as const },
    // 1×1 (the decoder's channel reductions): blocks 4×8, 4×4, 1×8; several chunks (7 rows of 20)
    { b: 1, h: 40, w: 20, ci: 64, co: 8, pad: 'same' as const, k: 1 },
    { b: 2, h: 5, w: 7, ci: 12, co: 4, pad: 'same' as const, k: 1 },
    { b: 2, h: 3, w: 3, ci: 3, co: 16, pad: 'valid' as const, k: 1 },
  ]) {
    const k = c.k ?? 3;
    it(`conv2d filter gradient, simd path: ${k}×${k} pad ${c.pad}, x [${c.b},${c.h},${c.w},${c.ci}] → ${c.co}`, async () => {
      const r = rng(c.b * 13 + c.ci * 5 + c.co);
      const x = { data: randomArray(c.b * c.h * c.w * c.ci, r), shape: [c.b, c.h, c.w, c.ci] };
      const w = { data: randomArray(k * k * c.ci * c.co, r), shape: [k, k, c.ci, c.co] };
      const oh = c.pad === 'same' ? c.h : c.h - k + 1;
      const ow = c.pad === 'same' ? c.w : c.w - k + 1;
      const wy = randomArray(c.b * oh * ow * c.co, r);
      await withFilterGradientPath('simd', () => compare('conv2d simd', [x, w], (xt, wt) =>
        tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, c.pad), tf.tensor(wy, [c.b, oh, ow, c.co])))));
    });
  }

  // The Winograd dW kernel (3×3 'same', input channels in 4s, output channels in 8s or 4s), pinned.
  for (const c of [
    { b: 2, h: 8, w: 6, ci: 16, co: 16 },
    { b: 1, h: 9, w: 7, ci: 4, co: 12 },
    { b: 3, h: 1, w: 5, ci: 8, co: 8 },
    { b: 2, h: 5, w: 1, ci: 20, co: 24 },
    // one tile: one group, so the second half is empty (its sums zeroed)
    { b: 1, h: 2, w: 1, ci: 4, co: 8 },
    // 2·28·28 = 1568 tiles; 512 KB / (64·(32 + 16)) → 168 tiles a group: ten groups, five a half, the last one short
    { b: 2, h: 56, w: 55, ci: 32, co: 16 },
  ]) {
    it(`conv2d filter gradient, winograd path: 3×3 pad same, x [${c.b},${c.h},${c.w},${c.ci}] → ${c.co}`, async () => {
      const r = rng(c.b * 17 + c.ci * 3 + c.co);
      const x = { data: randomArray(c.b * c.h * c.w * c.ci, r), shape: [c.b, c.h, c.w, c.ci] };
      const w = { data: randomArray(9 * c.ci * c.co, r), shape: [3, 3, c.ci, c.co] };
      const wy = randomArray(c.b * c.h * c.w * c.co, r);
      await withFilterGradientPath('winograd', () => compare('conv2d winograd', [x, w], (xt, wt) =>
        tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'), tf.tensor(wy, [c.b, c.h, c.w, c.co])))));
    });
  }

  it('the Winograd filter gradient: automatic from 32 input and 16 output channels, the same bits on one thread and two, and in groups of any size', async () => {
    await tf.setBackend('wasm');
    const simd = wasmSimdOf(tf.backend())!;
    const dw = async (path: FilterGradientPath, x: tf.Tensor4D, dy: tf.Tensor4D) => {
      let values: number[] = [];
      await withFilterGradientPath(path, async () => {
        const t = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy },
          { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, x.shape[3], dy.shape[3]] } as never) as tf.Tensor;
        values = Array.from(await t.data());
        t.dispose();
      });
      return values;
    };
    // 16 input channels: the forward's Winograd, but the direct filter gradient
    const x16 = tf.randomNormal([2, 9, 8, 16], 0, 1, 'float32', 9);
    const dy16 = tf.randomNormal([2, 9, 8, 16], 0, 1, 'float32', 10);
    expect(await dw('auto', x16, dy16)).toEqual(await dw('simd', x16, dy16));
    const x = tf.randomNormal([2, 13, 11, 32], 0, 1, 'float32', 7);
    const dy = tf.randomNormal([2, 13, 11, 16], 0, 1, 'float32', 8);
    const both = await dw('winograd', x, dy);
    expect(await dw('auto', x, dy)).toEqual(both);
    const direct = await dw('simd', x, dy);
    expectClose(Float32Array.from(both), Float32Array.from(direct), 'Winograd against the direct kernel');
    expect(both.some((v, i) => v !== direct[i]), 'a different order of sums: the Winograd path ran').toBe(true);
    const helper = simd.helper;
    simd.helper = undefined;
    try {
      expect(await dw('winograd', x, dy)).toEqual(both);
    } finally {
      simd.helper = helper;
    }
    // 4 tiles a group (2·7·6 = 84 tiles: 21 groups) sums in another order, to the same values
    setWinogradGradientGroupBytes(1);
    try {
      expectClose(Float32Array.from(await dw('winograd', x, dy)), Float32Array.from(direct), 'small groups');
    } finally {
      setWinogradGradientGroupBytes();
    }
    tf.dispose([x, dy, x16, dy16]);
  });

  it('the SIMD filter gradient gives the same bits with its helper thread as on one thread', async () => {
    await tf.setBackend('wasm');
    const simd = wasmSimdOf(tf.backend())!;
    expect(simd.helper, 'a threaded wasm backend in Node starts the helper').toBeDefined();
    const x = tf.randomNormal([3, 17, 13, 12], 0, 1, 'float32', 5);
    const dy = tf.randomNormal([3, 17, 13, 16], 0, 1, 'float32', 6);
    const dw = async () => {
      let values: number[] = [];
      await withFilterGradientPath('simd', async () => {
        const t = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 12, 16] } as never) as tf.Tensor;
        values = Array.from(await t.data());
        t.dispose();
      });
      return values;
    };
    const both = await dw();
    const helper = simd.helper;
    simd.helper = undefined;
    try {
      expect(await dw()).toEqual(both);
    } finally {
      simd.helper = helper;
    }
    tf.dispose([x, dy]);
  });

  it('BatchNorm on two threads gives the bits of one thread over several row blocks, and matches tfjs ops', async () => {
    await tf.setBackend('wasm');
    const simd = wasmSimdOf(tf.backend())!;
    expect(simd.helper, 'a threaded wasm backend in Node starts the helper').toBeDefined();
    // 3 full blocks of 4096 rows and a short fourth, so the helper takes blocks 2 and 3
    const shape = [2, 6194, 1, 8];
    const r = rng(77);
    const x = tf.tensor(randomArray(2 * 6194 * 8, r).map((v) => v + 0.3), shape);
    const gamma = tf.tensor(randomArray(8, r).map((v) => 1 + v), [8]);
    const beta = tf.tensor(randomArray(8, r), [8]);
    const dy = tf.tensor(randomArray(2 * 6194 * 8, r), shape);
    const run = () => tf.tidy(() => {
      const [y, mean, variance, rstd] = tf.engine().runKernel(BATCHNORM_TRAIN, { x, gamma, beta }, { slope: LEAKY_SLOPE, eps: BN_EPS }) as tf.Tensor[];
      const grads = tf.engine().runKernel(BATCHNORM_TRAIN_GRAD, { dy, x, y, mean, rstd, gamma }, { slope: LEAKY_SLOPE }) as tf.Tensor[];
      return [y, mean, variance, ...grads].map((t) => Array.from(t.dataSync()));
    });
    const both = run();
    const helper = simd.helper;
    simd.helper = undefined;
    try {
      expect(run()).toEqual(both);
    } finally {
      simd.helper = helper;
    }
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    const want = tf.leakyRelu(tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, BN_EPS))), gamma), beta), LEAKY_SLOPE);
    expectClose(Float32Array.from(both[0]), want.dataSync() as Float32Array, 'y');
    expectClose(Float32Array.from(both[2]), variance.dataSync() as Float32Array, 'variance');
    tf.dispose([x, gamma, beta, dy, mean, variance, want]);
  });

  it('large broadcast products (2^19 floats, rows shared with the helper thread) are the exactly rounded products', async () => {
    await tf.setBackend('wasm');
    expect(wasmSimdOf(tf.backend())!.helper, 'a threaded wasm backend in Node starts the helper').toBeDefined();
    const r = rng(91);
    const x = randomArray(1024 * 512, r);
    for (const shape of [[1024, 1], [512]]) {
      const y = randomArray(shape[0], r);
      const got = tf.tidy(() => tf.mul(tf.tensor(x, [1024, 512]), tf.tensor(y, shape)).dataSync());
      const want = x.map((v, i) => Math.fround(v * y[shape.length === 1 ? i % 512 : Math.floor(i / 512)]));
      expect(Array.from(got)).toEqual(Array.from(want));
    }
  });

  // tfjs-backend-wasm 4.22's own MaxPoolGrad misroutes gradients in all-negative windows.
  for (const [k, s, pad] of [[2, 2, 'valid'], [3, 2, 'same'], [3, 1, 'same']] as const) {
    it(`maxPool ${k}×${k} stride ${s} pad ${pad} with mostly negative inputs`, async () => {
      const r = rng(11 + k * s);
      const x = { data: randomArray(2 * 10 * 12 * 5, r).map((v) => v - 0.4), shape: [2, 10, 12, 5] };
      const oh = pad === 'same' ? Math.ceil(10 / s) : Math.floor((10 - k) / s) + 1;
      const ow = pad === 'same' ? Math.ceil(12 / s) : Math.floor((12 - k) / s) + 1;
      const wy = randomArray(2 * oh * ow * 5, r);
      await compare('maxPool', [x], (xt) =>
        tf.sum(tf.mul(tf.maxPool(xt as tf.Tensor4D, k, s, pad), tf.tensor(wy, [2, oh, ow, 5]))));
    });
  }

  // The 2×2 stride-2 fast path: odd sides (a row and a column left out), 'same' on even sides, and ties.
  for (const c of [
    { h: 11, w: 9, pad: 'valid' as const, ties: false },
    { h: 8, w: 10, pad: 'same' as const, ties: false },
    { h: 9, w: 7, pad: 'same' as const, ties: false },
    { h: 10, w: 12, pad: 'valid' as const, ties: true },
  ]) {
    it(`maxPool 2×2 stride 2 pad ${c.pad} on ${c.h}×${c.w}${c.ties ? ', values with ties' : ''}`, async () => {
      const r = rng(c.h * 13 + c.w);
      const data = randomArray(2 * c.h * c.w * 8, r).map((v) => (c.ties ? Math.round(v * 3) / 3 : v - 0.2));
      const oh = c.pad === 'same' ? Math.ceil(c.h / 2) : Math.floor(c.h / 2);
      const ow = c.pad === 'same' ? Math.ceil(c.w / 2) : Math.floor(c.w / 2);
      const wy = randomArray(2 * oh * ow * 8, r);
      await compare('maxPool 2×2', [{ data, shape: [2, c.h, c.w, 8] }], (xt) =>
        tf.sum(tf.mul(tf.maxPool(xt as tf.Tensor4D, 2, 2, c.pad), tf.tensor(wy, [2, oh, ow, 8]))));
    });
  }

  it('a U-Net block: conv, batch-norm from moments, LeakyReLU, dropout mask, maxpool, 1×1 conv, bilinear ×2, concat, softmax CE', async () => {
    const r = rng(42);
    const B = 2, H = 16, W = 16, C = 8, K = 4;
    const x = { data: randomArray(B * H * W * 3, r), shape: [B, H, W, 3] };
    const w1 = { data: randomArray(3 * 3 * 3 * C, r), shape: [3, 3, 3, C] };
    const gamma = { data: randomArray(C, r).map((v) => 1 + v), shape: [C] };
    const beta = { data: randomArray(C, r), shape: [C] };
    const w2 = { data: randomArray(C * C, r), shape: [1, 1, C, C] };
    const w3 = { data: randomArray(3 * 3 * 2 * C * K, r), shape: [3, 3, 2 * C, K] };
    const keep = randomArray(B * H * W * C, r).map((v) => (v > -0.3 ? 1 / 0.8 : 0));
    const labels = new Int32Array(B * H * W).map((_, i) => (i * 7 + 3) % K);
    await compare('unet block', [x, w1, gamma, beta, w2, w3], (xt, w1t, gt, bt, w2t, w3t) => {
      const y = tf.conv2d(xt as tf.Tensor4D, w1t as tf.Tensor4D, 1, 'same');
      const { mean, variance } = tf.moments(y, [0, 1, 2]);
      const bn = tf.add(tf.mul(tf.div(tf.sub(y, mean), tf.sqrt(tf.add(variance, 1e-5))), gt), bt);
      const act = tf.mul(tf.leakyRelu(bn, 0.01), tf.tensor(keep, [B, H, W, C]));
      const down = tf.maxPool(act as tf.Tensor4D, 2, 2, 'valid');
      const reduced = tf.conv2d(down, w2t as tf.Tensor4D, 1, 'same');
      const up = tf.image.resizeBilinear(reduced, [H, W], true);
      const cat = tf.concat([act, up], 3) as tf.Tensor4D;
      const logits = tf.conv2d(cat, w3t as tf.Tensor4D, 1, 'same');
      const logp = tf.logSoftmax(logits);
      const onehot = tf.reshape(tf.oneHot(tf.tensor1d(labels, 'int32'), K), [B, H, W, K]);
      const ce = tf.neg(tf.mean(tf.sum(tf.mul(logp, onehot), -1)));
      const p = tf.softmax(logits);
      const ent = tf.neg(tf.mean(tf.sum(tf.mul(p, tf.log(tf.add(p, 1e-6))), -1)));
      const upHalf = tf.image.resizeBilinear(reduced, [H, W], false);
      return tf.add(tf.add(ce, ent), tf.mean(tf.square(upHalf))) as tf.Scalar;
    });
  });
});
