import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from './select-backend.js';
import { wasmSimdOf } from './wasm-simd.js';
import { setWinogradGroupBytes, setWinogradMinChannels } from './wasm-conv2d.js';

/** Our 3×3 / 1×1 convolution kernels on wasm against the cpu backend's convolution, from the same inputs. */

function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

interface Case { b: number; h: number; w: number; ci: number; co: number; k: 1 | 3; stride?: number; activation?: 'relu' }

/** The case's convolution (fused with a bias when `withBias`) on `backend`, its output values. */
async function convOn(backend: 'cpu' | 'wasm', c: Case, withBias: boolean): Promise<Float32Array> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor4d(values(c.b * c.h * c.w * c.ci, 1 + c.ci), [c.b, c.h, c.w, c.ci]);
    const filter = tf.tensor4d(values(c.k * c.k * c.ci * c.co, 2 + c.co), [c.k, c.k, c.ci, c.co]);
    const bias = withBias ? tf.tensor1d(values(c.co, 3)) : undefined;
    const pad = c.k === 3 ? 'same' : 'valid';
    const y = withBias || c.activation
      ? tf.fused.conv2d({ x, filter, strides: c.stride ?? 1, pad, bias, activation: c.activation ?? 'linear' })
      : tf.conv2d(x, filter, c.stride ?? 1, pad);
    return y.dataSync() as Float32Array;
  });
}

function expectClose(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
  }
  expect(scale, `${what}: an all-zero reference proves nothing`).toBeGreaterThan(0);
  expect(diff / scale, what).toBeLessThanOrEqual(1e-5);
}

beforeAll(async () => {
  await selectBackend('wasm', { threads: 2, log: () => {} });
});
afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('wasm convolution kernels (3×3 same, 1×1) match the cpu backend', () => {
  const cases: Case[] = [
    // row widths 1 to 11: edge columns alone, no 4-pixel group, one group, groups and single pixels
    { b: 1, h: 1, w: 1, ci: 8, co: 8, k: 3 },
    { b: 2, h: 2, w: 2, ci: 4, co: 4, k: 3 },
    { b: 1, h: 5, w: 5, ci: 5, co: 12, k: 3 },
    { b: 2, h: 3, w: 6, ci: 1, co: 8, k: 3 },
    { b: 1, h: 4, w: 7, ci: 3, co: 4, k: 3 },
    { b: 2, h: 9, w: 11, ci: 16, co: 16, k: 3 },
    // Winograd F(2×2, 3×3) (16 or more channels each way): odd and even sides, one-pixel rows and
    // columns, output channels in 8s and in 4s
    { b: 2, h: 8, w: 6, ci: 16, co: 32, k: 3 },
    { b: 1, h: 1, w: 9, ci: 20, co: 16, k: 3 },
    { b: 3, h: 7, w: 1, ci: 16, co: 20, k: 3 },
    { b: 1, h: 2, w: 3, ci: 64, co: 16, k: 3 },
    { b: 3, h: 7, w: 10, ci: 12, co: 24, k: 3 },
    // 4 output channels: groups of 4 pixels and single ones in a wider row
    { b: 2, h: 5, w: 12, ci: 8, co: 4, k: 3 },
    // 1×1 (the decoder's channel reductions); pixel counts off multiples of 4
    { b: 2, h: 3, w: 5, ci: 7, co: 8, k: 1 },
    { b: 1, h: 1, w: 3, ci: 16, co: 4, k: 1 },
    { b: 1, h: 3, w: 7, ci: 8, co: 4, k: 1 },
    // the backend's own kernel: output channels not in 4s, stride 2, an activation
    { b: 2, h: 6, w: 7, ci: 4, co: 6, k: 3 },
    { b: 2, h: 8, w: 8, ci: 4, co: 8, k: 3, stride: 2 },
    { b: 1, h: 6, w: 6, ci: 4, co: 8, k: 3, activation: 'relu' },
  ];
  for (const c of cases) {
    for (const withBias of [false, true]) {
      const name = `${c.k}×${c.k}${c.stride ? ` stride ${c.stride}` : ''}${c.activation ? ` ${c.activation}` : ''} x [${c.b},${c.h},${c.w},${c.ci}] → ${c.co}${withBias ? ' + bias' : ''}`;
      it(name, async () => {
        expectClose(await convOn('wasm', c, withBias), await convOn('cpu', c, withBias), name);
      });
    }
  }

  // The input gradient runs as the convolution of dy with the flipped filter, so through these kernels.
  for (const c of [{ b: 2, h: 5, w: 9, ci: 8, co: 4 }, { b: 1, h: 6, w: 6, ci: 4, co: 12 }, { b: 2, h: 5, w: 6, ci: 16, co: 24 }]) {
    it(`input gradient of a 3×3 convolution, x [${c.b},${c.h},${c.w},${c.ci}] → ${c.co}`, async () => {
      const grad = async (backend: 'cpu' | 'wasm') => {
        await tf.setBackend(backend);
        return tf.tidy(() => {
          const x = tf.tensor4d(values(c.b * c.h * c.w * c.ci, 5), [c.b, c.h, c.w, c.ci]);
          const filter = tf.tensor4d(values(9 * c.ci * c.co, 6), [3, 3, c.ci, c.co]);
          const weights = tf.tensor4d(values(c.b * c.h * c.w * c.co, 7), [c.b, c.h, c.w, c.co]);
          return tf.grad((xt: tf.Tensor4D) => tf.sum(tf.mul(tf.conv2d(xt, filter, 1, 'same'), weights)))(x).dataSync() as Float32Array;
        });
      };
      expectClose(await grad('wasm'), await grad('cpu'), 'dx');
    });
  }

  it('takes the Winograd path from 16 channels each way, in groups of tiles of any size', async () => {
    const c: Case = { b: 2, h: 11, w: 13, ci: 16, co: 24, k: 3 };
    const want = await convOn('cpu', c, true);
    const byWinograd = await convOn('wasm', c, true);
    setWinogradMinChannels(Infinity);
    let direct: Float32Array;
    try {
      direct = await convOn('wasm', c, true);
    } finally {
      setWinogradMinChannels();
    }
    expectClose(direct, want, 'direct');
    expectClose(byWinograd, want, 'Winograd');
    // a different order of operations: the bits differ from the direct kernel's somewhere
    expect(byWinograd.some((v, i) => v !== direct[i]), 'the Winograd path ran').toBe(true);
    // the smallest groups (4 tiles; 2·6·7 = 84 tiles, so many groups on both threads) give the same bits
    setWinogradGroupBytes(1);
    try {
      expect(Array.from(await convOn('wasm', c, true))).toEqual(Array.from(byWinograd));
      const odd: Case = { ...c, h: 5, w: 5 }; // 2·3·3 = 18 tiles: four groups of 4 and one of 2
      expectClose(await convOn('wasm', odd, false), await convOn('cpu', odd, false), 'small groups');
    } finally {
      setWinogradGroupBytes();
    }
  });

  it('ALHVR_WASM_WINOGRAD=0 keeps every convolution on the direct kernels', async () => {
    vi.stubEnv('ALHVR_WASM_WINOGRAD', '0');
    vi.resetModules();
    try {
      const fresh = await import('./wasm-conv2d.js');
      expect(fresh.takesWinograd(64, 64)).toBe(false);
      fresh.setWinogradMinChannels();
      expect(fresh.takesWinograd(64, 64), 'the default it returns to').toBe(false);
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
    const fresh = await import('./wasm-conv2d.js');
    expect(fresh.takesWinograd(64, 64)).toBe(true);
  });

  it('gives the same bits with its helper thread as on one thread, and leaves no buffer behind', async () => {
    await tf.setBackend('wasm');
    const simd = wasmSimdOf(tf.backend())!;
    expect(simd.helper, 'a threaded wasm backend in Node starts the helper').toBeDefined();
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.tensor4d(values(3 * 13 * 17 * 12, 8), [3, 13, 17, 12]);
    const filter3 = tf.tensor4d(values(9 * 12 * 16, 9), [3, 3, 12, 16]);
    const x16 = tf.tensor4d(values(2 * 9 * 15 * 16, 12), [2, 9, 15, 16]);
    const filterWinograd = tf.tensor4d(values(9 * 16 * 16, 13), [3, 3, 16, 16]);
    const filter1 = tf.tensor4d(values(12 * 8, 10), [1, 1, 12, 8]);
    const bias = tf.tensor1d(values(16, 11));
    const run = () => {
      const before = backend.numDataIds();
      const y3 = tf.fused.conv2d({ x, filter: filter3, strides: 1, pad: 'same', bias });
      const y1 = tf.conv2d(x, filter1, 1, 'valid');
      const yw = tf.fused.conv2d({ x: x16, filter: filterWinograd, strides: 1, pad: 'same', bias });
      expect(backend.numDataIds()).toBe(before + 3);
      const out = [Array.from(y3.dataSync()), Array.from(y1.dataSync()), Array.from(yw.dataSync())];
      tf.dispose([y3, y1, yw]);
      return out;
    };
    const both = run();
    const helper = simd.helper;
    simd.helper = undefined;
    try {
      expect(run()).toEqual(both);
    } finally {
      simd.helper = helper;
    }
    tf.dispose([x, filter3, filter1, bias, x16, filterWinograd]);
  });
});
