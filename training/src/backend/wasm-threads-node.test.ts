import { describe, expect, test } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { withNodeWasmThreads } from './wasm-threads-node.js';

describe('the start-up swaps for a threaded wasm backend in Node', () => {
  test('URL.createObjectURL and os.cpus are swapped only while the backend initialises, and put back after', async () => {
    const create = URL.createObjectURL;
    const cpus = os.cpus;
    const flags: boolean[] = [];
    const seen = await withNodeWasmThreads(3, (on) => flags.push(on), async () => ({
      cpus: os.cpus().length,
      worker: URL.createObjectURL(new Blob(['x'], { type: 'application/javascript' })),
      other: URL.createObjectURL(new Blob(['x'], { type: 'text/plain' })),
    }));
    expect(flags).toEqual([true]);
    expect(seen.cpus).toBe(6); // the C side sizes its pool at cores / 2
    expect(existsSync(seen.worker)).toBe(true); // a real file Node's worker_threads can start
    expect(readFileSync(seen.worker, 'utf8')).toContain('URL.createObjectURL=()=>');
    expect(seen.other).toMatch(/^blob:/); // anything but the worker script goes to the real one
    URL.revokeObjectURL(seen.other);
    expect(URL.createObjectURL).toBe(create);
    expect(os.cpus).toBe(cpus);
  });

  test('a failed initialisation puts them back too', async () => {
    const create = URL.createObjectURL;
    const cpus = os.cpus;
    await expect(withNodeWasmThreads(2, () => {}, () => Promise.reject(new Error('init failed')))).rejects.toThrow('init failed');
    expect(URL.createObjectURL).toBe(create);
    expect(os.cpus).toBe(cpus);
  });
});
