import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@alhvr/core';
import { selectBackend } from './select-backend.js';
import { hasLinearResizeKernels, linearTaps, RESIZE_LINEAR, RESIZE_LINEAR_GRAD } from './wasm-resize-kernel.js';
import { bilinearWeights1d, resizeLinear, resizeLinearByProducts } from '../model/resize.js';
import { leanVariableGrads } from './lean-gradients.js';

// The two-tap kernels against the matrix products they replace (the products' weights are checked
// against PyTorch by model/unet.test.ts and test/train-3d-loss-oracle.test.ts), values and
// gradients, on both backends that have them.

function random(shape: number[], rng: Rng): tf.Tensor {
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * rng.next() - 1), shape);
}

function maxRelDiff(got: tf.Tensor, want: tf.Tensor): number {
  const g = got.dataSync();
  const w = want.dataSync();
  expect(g.length).toBe(w.length);
  let scale = 0;
  for (const v of w) scale = Math.max(scale, Math.abs(v));
  let d = 0;
  for (let i = 0; i < w.length; i++) d = Math.max(d, Math.abs(g[i] - w[i]));
  return d / Math.max(scale, 1e-12);
}

/** Value and input gradient of sum(resize(x) · dy), by one of the two implementations. */
function valueAndGrad(resize: typeof resizeLinear, x: tf.Tensor, size: number[], alignCorners: boolean, dy: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const y = resize(x, size, alignCorners);
  const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(resize(xi, size, alignCorners), dy)))(x);
  return [y, dx];
}

const cases: { shape: number[]; size: number[] }[] = [
  { shape: [2, 5, 7, 3], size: [10, 14] }, // up, C not a multiple of 4 (scalar tail)
  { shape: [2, 16, 9, 8], size: [7, 12] }, // down along H, up along W
  { shape: [1, 4, 4, 16], size: [16, 16] }, // the decoder's ×2 and ×4
  { shape: [3, 6, 5, 1], size: [6, 11] }, // one axis unchanged, one channel
  { shape: [2, 2, 3, 4, 3], size: [16, 8, 12] }, // trilinear, non-cubic
  { shape: [1, 6, 4, 5, 8], size: [3, 8, 5] }, // down, up, unchanged
  { shape: [2, 3, 3, 3, 5], size: [1, 7, 2] }, // to a single sample
];

describe.each(['wasm', 'cpu'] as const)('linear resize kernels on %s', (backend) => {
  for (const { shape, size } of cases) {
    for (const alignCorners of [true, false]) {
      it(`[${shape}] → [${size}], align_corners ${alignCorners}: values and gradient equal the matrix products`, async () => {
        await selectBackend(backend, { threads: 1, log: () => {} });
        expect(hasLinearResizeKernels(backend)).toBe(true);
        const rng = new Rng(shape.reduce((a, b) => a * 7 + b, 1));
        const x = random(shape, rng);
        const dy = random([shape[0], ...size, shape[shape.length - 1]], rng);
        const [y, dx] = valueAndGrad(resizeLinear, x, size, alignCorners, dy);
        const [yRef, dxRef] = valueAndGrad(resizeLinearByProducts, x, size, alignCorners, dy);
        expect(y.shape).toEqual(yRef.shape);
        expect(dx.shape).toEqual(shape);
        expect(maxRelDiff(y, yRef)).toBeLessThan(1e-6);
        expect(maxRelDiff(dx, dxRef)).toBeLessThan(1e-6);
        // The gradient is not trivially zero or the identity (so the comparison above means something).
        expect(tf.sum(tf.abs(dx)).dataSync()[0]).toBeGreaterThan(0.1);
        tf.dispose([x, dy, y, dx, yRef, dxRef]);
      });
    }
  }

  it('resizeLinear runs one kernel per call and no matrix product, forward and backward', async () => {
    await selectBackend(backend, { threads: 1, log: () => {} });
    const x = random([2, 4, 6, 8], new Rng(3));
    const forward = await tf.profile(() => resizeLinear(x, [8, 12], true));
    expect(forward.kernelNames).toEqual([RESIZE_LINEAR]);
    const backward = await tf.profile(() => tf.grad((xi: tf.Tensor) => tf.sum(resizeLinear(xi, [8, 12], true)))(x));
    expect(backward.kernelNames).toContain(RESIZE_LINEAR_GRAD);
    expect(backward.kernelNames).not.toContain('BatchMatMul');
    x.dispose();
  });

  it('leanVariableGrads sees the same gradient through the kernel as through the products', async () => {
    await selectBackend(backend, { threads: 1, log: () => {} });
    const rng = new Rng(11);
    const v = tf.variable(random([1, 3, 4, 5, 4], rng));
    const weights = random([1, 6, 8, 3, 4], rng);
    const loss = (resize: typeof resizeLinear) => () => tf.sum(tf.mul(tf.square(resize(v, [6, 8, 3], false)), weights)) as tf.Scalar;
    const ours = leanVariableGrads(loss(resizeLinear), [v]);
    const ref = tf.variableGrads(loss(resizeLinearByProducts), [v]);
    expect(maxRelDiff(ours.value, ref.value)).toBeLessThan(1e-6);
    expect(maxRelDiff(ours.grads[v.name], ref.grads[v.name])).toBeLessThan(1e-6);
    tf.dispose([v, weights, ours.value, ref.value, ...Object.values(ours.grads), ...Object.values(ref.grads)]);
  });

  it('no tensor or heap buffer is left behind', async () => {
    await selectBackend(backend, { threads: 1, log: () => {} });
    type Heap = { _malloc(bytes: number): number; _free(p: number): void };
    const b = tf.backend() as unknown as { numDataIds(): number; wasm?: Heap };
    const x = random([2, 3, 5, 6, 8], new Rng(4));
    // On wasm, every allocation made while the kernels run (their scratch, tensors) must be freed
    // once the results are disposed.
    const heap = b.wasm;
    const mallocDescriptor = heap && Object.getOwnPropertyDescriptor(heap, '_malloc');
    const free = heap?._free;
    const live = new Set<number>();
    let allocations = 0;
    if (heap && free) {
      const malloc = heap._malloc;
      Object.defineProperty(heap, '_malloc', {
        configurable: true,
        value: (bytes: number) => {
          const p = malloc(bytes);
          live.add(p);
          allocations++;
          return p;
        },
      });
      heap._free = (p: number) => { live.delete(p); free(p); };
    }
    try {
      const ids = b.numDataIds();
      const tensors = tf.memory().numTensors;
      const dx = tf.grad((xi: tf.Tensor) => tf.sum(resizeLinear(xi, [6, 10, 3], false)))(x);
      expect(b.numDataIds()).toBe(ids + 1);
      expect(tf.memory().numTensors).toBe(tensors + 1);
      dx.dispose();
      expect(b.numDataIds()).toBe(ids);
      if (heap) {
        expect(allocations).toBeGreaterThan(2);
        expect(live.size).toBe(0);
      }
    } finally {
      if (heap && free && mallocDescriptor) {
        Object.defineProperty(heap, '_malloc', mallocDescriptor);
        heap._free = free;
      }
    }
    x.dispose();
  });
});

describe('the taps', () => {
  it('give the weight matrix ATen uses: rows sum to 1, corners kept with align_corners', () => {
    for (const [n, m] of [[5, 10], [16, 7], [3, 3], [4, 1], [1, 6]]) {
      for (const alignCorners of [true, false]) {
        const w = bilinearWeights1d(n, m, alignCorners);
        for (let i = 0; i < m; i++) {
          let s = 0;
          for (let j = 0; j < n; j++) s += w[i * n + j];
          expect(s).toBeCloseTo(1, 6);
        }
        const t = linearTaps(n, m, alignCorners);
        if (alignCorners && m > 1) expect([t.i0[0], t.w0[0], t.i0[m - 1], t.w0[m - 1]]).toEqual([0, 1, n - 1, 1]);
      }
    }
    // align_corners false, 2 → 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the last sample)
    const t = linearTaps(2, 4, false);
    expect(Array.from(t.i0)).toEqual([0, 0, 0, 1]);
    expect(Array.from(t.w1)).toEqual([0, 0.25, 0.75, 0]);
  });
});
