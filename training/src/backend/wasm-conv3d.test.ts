import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from './select-backend.js';
import {
  setConv3dChunkFloats, setConv3dFilterGradientPath, setConv3dForwardPath, type Conv3dFilterGradientPath, type Conv3dForwardPath,
} from './wasm-conv3d.js';
import { nativeKernel } from './wasm-internals.js';

/**
 * The wasm Conv3D / Conv3DBackpropFilterV2 replacements against the reference `cpu` backend
 * (plain JS loops), on the inputs vnet3d.ts `sameConv` gives them, and the cases they hand back
 * to tfjs-backend-wasm's own kernels.
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

const size = (shape: number[]) => shape.reduce((p, n) => p * n, 1);

/** max |got − ref| ≤ 1e-4 · max |ref|: relative to the output's scale. */
function expectClose(got: Float32Array, ref: Float32Array, what: string): void {
  expect(got.length, what).toBe(ref.length);
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(ref[i]));
    maxDiff = Math.max(maxDiff, Math.abs(got[i] - ref[i]));
  }
  expect(maxAbs, `${what}: the reference is all zero, the test would prove nothing`).toBeGreaterThan(0);
  expect(maxDiff / maxAbs, what).toBeLessThanOrEqual(1e-4);
}

async function on(backend: 'cpu' | 'wasm', f: () => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(backend);
  const t = tf.tidy(f);
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

/** Runs `f` with a per-chunk budget of `floats` (forcing depth chunking), then restores the default. */
async function withChunkFloats<T>(floats: number | null, f: () => Promise<T>): Promise<T> {
  if (floats === null) return f();
  const previous = setConv3dChunkFloats(floats);
  try {
    return await f();
  } finally {
    setConv3dChunkFloats(previous);
  }
}

async function withPath<T>(path: Conv3dFilterGradientPath, f: () => Promise<T>): Promise<T> {
  const previous = setConv3dFilterGradientPath(path);
  try {
    return await f();
  } finally {
    setConv3dFilterGradientPath(previous);
  }
}

async function withForwardPath<T>(path: Conv3dForwardPath, f: () => Promise<T>): Promise<T> {
  const previous = setConv3dForwardPath(path);
  try {
    return await f();
  } finally {
    setConv3dForwardPath(previous);
  }
}

interface Case { b: number; d: number; h: number; w: number; ci: number; co: number; k: number; chunk: number | null }

// chunk: floats per chunk, small enough to split the depth into one or a few planes per chunk,
// with chunks that span the end of one batch entry and the start of the next.
const cases: Case[] = [
  { b: 1, d: 5, h: 7, w: 6, ci: 1, co: 1, k: 3, chunk: null },
  { b: 2, d: 7, h: 6, w: 5, ci: 3, co: 4, k: 3, chunk: null },
  { b: 2, d: 7, h: 6, w: 5, ci: 3, co: 4, k: 3, chunk: 8_000 },
  { b: 2, d: 9, h: 5, w: 7, ci: 8, co: 16, k: 3, chunk: 60_000 },
  { b: 1, d: 6, h: 5, w: 9, ci: 16, co: 8, k: 3, chunk: 30_000 },
  { b: 2, d: 5, h: 3, w: 4, ci: 5, co: 7, k: 1, chunk: null },
  { b: 2, d: 5, h: 3, w: 4, ci: 5, co: 7, k: 1, chunk: 100 },
  { b: 1, d: 7, h: 7, w: 7, ci: 2, co: 3, k: 5, chunk: 20_000 },
  { b: 2, d: 3, h: 3, w: 3, ci: 32, co: 24, k: 3, chunk: null },
];

const label = (c: Case) =>
  `${c.k}³, x [${c.b},${c.d},${c.h},${c.w},${c.ci}] → ${c.co}${c.chunk === null ? '' : `, chunks of ${c.chunk} floats`}`;

function inputs(c: Case, seed: number) {
  const r = rng(seed);
  const xShape = [c.b, c.d, c.h, c.w, c.ci];
  const fShape = [c.k, c.k, c.k, c.ci, c.co];
  const yShape = [c.b, c.d, c.h, c.w, c.co];
  return {
    xShape, fShape, yShape,
    x: randomArray(size(xShape), r), f: randomArray(size(fShape), r), dy: randomArray(size(yShape), r),
  };
}

beforeAll(async () => {
  await selectBackend('wasm', { threads: 2, log: () => {} });
});

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('wasm Conv3D (stride 1, same) matches the cpu backend', () => {
  for (const c of cases) {
    for (const fpath of ['im2col', 'taps'] as const) {
      it(`forward, ${fpath} path, ${label(c)}`, async () => {
        const v = inputs(c, c.b * 100 + c.ci * 10 + c.co);
        const run = () => tf.conv3d(tf.tensor5d(v.x, v.xShape as never), tf.tensor5d(v.f, v.fShape as never), 1, 'same');
        const ref = await on('cpu', run);
        const got = await withForwardPath(fpath, () => withChunkFloats(c.chunk, () => on('wasm', run)));
        expectClose(got, ref, 'conv3d');
      });

      it(`input gradient as sameConv takes it (conv3d of dy with the flipped filter), ${fpath} path, ${label(c)}`, async () => {
        const v = inputs(c, c.b * 200 + c.ci * 10 + c.co);
        // Reference: tfjs' own gradient of conv3d with respect to x, on cpu.
        await tf.setBackend('cpu');
        const ref = tf.tidy(() => tf.grad((x: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv3d(x as tf.Tensor5D, tf.tensor5d(v.f, v.fShape as never), 1, 'same'), tf.tensor(v.dy, v.yShape))))(
          tf.tensor(v.x, v.xShape)).dataSync() as Float32Array);
        const got = await withForwardPath(fpath, () => withChunkFloats(c.chunk, () => on('wasm', () => {
          const adjoint = tf.transpose(tf.reverse(tf.tensor5d(v.f, v.fShape as never), [0, 1, 2]), [0, 1, 2, 4, 3]) as tf.Tensor5D;
          return tf.conv3d(tf.tensor5d(v.dy, v.yShape as never), adjoint, 1, 'same');
        })));
        expectClose(got, ref, 'dx');
      });
    }

    for (const path of ['gemm', 'simd', 'auto'] as const) {
      it(`filter gradient, ${path} path, ${label(c)}`, async () => {
        const v = inputs(c, c.b * 300 + c.ci * 10 + c.co);
        const run = () => tf.engine().runKernel('Conv3DBackpropFilterV2',
          { x: tf.tensor(v.x, v.xShape), dy: tf.tensor(v.dy, v.yShape) },
          { strides: 1, pad: 'same', filterShape: v.fShape } as never) as tf.Tensor;
        const ref = await on('cpu', run);
        const got = await withPath(path, () => withChunkFloats(c.chunk, () => on('wasm', run)));
        expectClose(got, ref, `dW ${path}`);
      });
    }
  }
});

describe('cases the VNet does not use go to the backend\'s own kernels', () => {
  const fallbacks: { stride: number; pad: 'same' | 'valid'; k: number; dilation?: number }[] = [
    { stride: 2, pad: 'same', k: 3 },
    { stride: 1, pad: 'valid', k: 3 },
    { stride: 1, pad: 'same', k: 2 },
  ];
  for (const fb of fallbacks) {
    it(`stride ${fb.stride}, pad ${fb.pad}, ${fb.k}³: forward and filter gradient are the backend's own answers`, async () => {
      const r = rng(5 + fb.stride * 7 + fb.k);
      const xShape = [2, 6, 5, 7, 3];
      const fShape = [fb.k, fb.k, fb.k, 3, 4];
      const x = randomArray(size(xShape), r);
      const f = randomArray(size(fShape), r);
      await tf.setBackend('wasm');
      const xt = tf.tensor(x, xShape);
      const ft = tf.tensor(f, fShape);
      const attrs = { strides: [fb.stride, fb.stride, fb.stride], pad: fb.pad, dilations: [1, 1, 1], dataFormat: 'NDHWC' };
      const ours = tf.engine().runKernel('Conv3D', { x: xt, filter: ft }, attrs as never) as tf.Tensor;
      const backend = tf.backend();
      const theirsInfo = nativeKernel('Conv3D', { inputs: { x: xt, filter: ft }, backend, attrs: attrs as never }) as tf.TensorInfo;
      const theirs = tf.engine().makeTensorFromTensorInfo(theirsInfo);
      expect(ours.shape).toEqual(theirs.shape);
      expect(Array.from(await ours.data())).toEqual(Array.from(await theirs.data()));

      const dy = tf.randomNormal(ours.shape, 0, 1, 'float32', 3);
      const dwAttrs = { strides: attrs.strides, pad: fb.pad, filterShape: fShape };
      const dwOurs = tf.engine().runKernel('Conv3DBackpropFilterV2', { x: xt, dy }, dwAttrs as never) as tf.Tensor;
      const dwTheirs = tf.engine().makeTensorFromTensorInfo(
        nativeKernel('Conv3DBackpropFilterV2', { inputs: { x: xt, dy }, backend, attrs: dwAttrs as never }) as tf.TensorInfo);
      expect(Array.from(await dwOurs.data())).toEqual(Array.from(await dwTheirs.data()));
      tf.dispose([xt, ft, ours, theirs, dy, dwOurs, dwTheirs]);
    });
  }
});

describe('the fast kernels free what they make', () => {
  for (const chunk of [null, 8_000]) {
    for (const [path, fpath] of [['gemm', 'im2col'], ['simd', 'taps']] as const) {
      it(`no tensor or heap buffer is left behind (${fpath} forward, ${path} filter gradient${chunk === null ? '' : ', chunked'})`, async () => {
        await tf.setBackend('wasm');
        const backend = tf.backend() as unknown as { numDataIds(): number };
        const x = tf.randomNormal([2, 7, 6, 5, 8], 0, 1, 'float32', 1);
        const f = tf.randomNormal([3, 3, 3, 8, 8], 0, 1, 'float32', 2);
        const dy = tf.randomNormal([2, 7, 6, 5, 8], 0, 1, 'float32', 3);
        await withForwardPath(fpath, () => withPath(path, () => withChunkFloats(chunk, async () => {
          const ids = backend.numDataIds();
          const tensors = tf.memory().numTensors;
          const y = tf.conv3d(x as tf.Tensor5D, f as tf.Tensor5D, 1, 'same');
          const dw = tf.engine().runKernel('Conv3DBackpropFilterV2', { x, dy }, { strides: 1, pad: 'same', filterShape: [3, 3, 3, 8, 8] } as never) as tf.Tensor;
          expect(backend.numDataIds()).toBe(ids + 2);
          expect(tf.memory().numTensors).toBe(tensors + 2);
          tf.dispose([y, dw]);
          expect(backend.numDataIds()).toBe(ids);
        })));
        tf.dispose([x, f, dy]);
      });
    }
  }
});
