import { afterAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, selectBackend } from './select-backend.js';

describe('selectBackend', () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('names the missing native package and how to install it when asked for it by name', async () => {
    // @tensorflow/tfjs-node cannot be installed in this environment (no libtensorflow download).
    await expect(selectBackend('tensorflow', { log: () => {} })).rejects.toThrow(
      '@tensorflow/tfjs-node is not installed; install it with `npm i @tensorflow/tfjs-node` (needs network access to download libtensorflow)');
    await expect(selectBackend('tensorflow-gpu', { log: () => {} })).rejects.toThrow(BackendUnavailableError);
  });

  it('auto falls through the missing native packages to wasm with 2 threads and says so', async () => {
    const lines: string[] = [];
    const chosen = await selectBackend('auto', { log: (m) => lines.push(m) });
    expect(chosen.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(chosen.threads).toBe(2);
    expect(chosen.tf).toBe(tf);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('wasm, 2 threads');
    expect(lines[0]).toContain('@tensorflow/tfjs-node not installed');
    // gradients and the missing wasm kernel are in place: a conv filter gradient works
    const g = tf.grad((w: tf.Tensor) => tf.sum(tf.conv2d(tf.ones([1, 3, 3, 1]) as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid')))(
      tf.zeros([3, 3, 1, 1]));
    expect(Array.from(g.dataSync())).toEqual(new Array(9).fill(1));
  });

  it('switches to cpu on request and reports one thread', async () => {
    const lines: string[] = [];
    const chosen = await selectBackend('cpu', { log: (m) => lines.push(m) });
    expect(chosen).toMatchObject({ name: 'cpu', threads: 1 });
    expect(tf.getBackend()).toBe('cpu');
    expect(lines[0]).toMatch(/^TensorFlow\.js backend: cpu, 1 thread /);
  });

  it('rejects an unknown backend and a bad thread count', async () => {
    await expect(selectBackend('gpu' as never, { log: () => {} })).rejects.toThrow('unknown backend "gpu"');
    await expect(selectBackend('wasm', { threads: 0, log: () => {} })).rejects.toThrow('threads must be an integer from 1 to 8');
  });
});
