import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { selectBackend } from './select-backend.js';
import { guardStepMemory, isWasmOutOfMemory, WasmOutOfMemoryError } from './out-of-memory.js';

const SHAPE = { batchLabeled: 8, batchUnlabeled: 8, patch: 256, widths: [16, 32, 64, 128, 256] };

describe('running out of wasm memory', () => {
  test('an allocation beyond 4 GB throws instead of wrapping around, and the backend keeps working', async () => {
    await selectBackend('wasm', { threads: 1, log: () => {} });
    const before = tf.memory().numTensors;
    // 4.4 GB: without the guard tfjs passes this size to malloc, where it wraps to ~100 MB.
    expect(() => tf.zeros([1_100_000_000])).toThrow(WasmOutOfMemoryError);
    expect(tf.memory().numTensors).toBe(before);
    const t = tf.range(0, 1000);
    expect(tf.sum(t).dataSync()[0]).toBe(499500);
    t.dispose();
  });

  test('a training step that runs out becomes an error naming the configuration and what to change', async () => {
    await selectBackend('wasm', { threads: 1, log: () => {} });
    let caught: unknown;
    try {
      guardStepMemory('wasm', SHAPE, () => tf.zeros([1_100_000_000]));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InputError);
    const message = (caught as Error).message;
    expect(message).toContain('batch 8+8, patch 256², widths 16,32,64,128,256');
    expect(message).toContain('4 GB');
    expect(message).toMatch(/--batch.*--patch.*--widths/);
  });

  test('other failures pass through unchanged, and other backends are left alone', () => {
    const plain = new Error('label 7 outside the class list');
    expect(() => guardStepMemory('wasm', SHAPE, () => { throw plain; })).toThrow(plain);
    const oom = new WasmOutOfMemoryError(2 ** 31);
    expect(() => guardStepMemory('tensorflow', SHAPE, () => { throw oom; })).toThrow(oom);
  });

  test('recognises the runtime aborts emscripten raises when the heap is exhausted inside a kernel', () => {
    expect(isWasmOutOfMemory(new WebAssembly.RuntimeError('Aborted(). Build with -sASSERTIONS for more info.'))).toBe(true);
    expect(isWasmOutOfMemory(new WebAssembly.RuntimeError('memory access out of bounds'))).toBe(true);
    expect(isWasmOutOfMemory(new WebAssembly.RuntimeError('unreachable'))).toBe(false);
    expect(isWasmOutOfMemory(new Error('Aborted()'))).toBe(false);
  });
});
