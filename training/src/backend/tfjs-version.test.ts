import { describe, expect, test, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { assertSupportedTfjs, selectBackend, SUPPORTED_TFJS_VERSION, UnsupportedTfjsVersionError } from './select-backend.js';

// This file's tfjs-core says it is another version; the patches must refuse to start on it.
vi.mock('@tensorflow/tfjs-core', async (importOriginal) => ({
  ...(await importOriginal<typeof import('@tensorflow/tfjs-core')>()),
  version_core: '4.23.0',
}));

const require = createRequire(import.meta.url);
const readJson = (url: URL) => JSON.parse(readFileSync(url, 'utf8')) as { version: string; dependencies?: Record<string, string> };

describe('the TensorFlow.js version the patches are written for', () => {
  test('an unknown tfjs-core version is refused at start-up, naming it, the supported one and the fix', async () => {
    for (const choice of ['auto', 'wasm', 'cpu'] as const) {
      const started = selectBackend(choice, { log: () => {} });
      await expect(started).rejects.toThrow(UnsupportedTfjsVersionError);
      await expect(started).rejects.toThrow(
        `@tensorflow/tfjs-core 4.23.0 is installed, but this toolkit supports only ${SUPPORTED_TFJS_VERSION}`);
      await expect(started).rejects.toThrow('npm ci');
    }
  });

  test('the supported version passes, any other is refused', () => {
    expect(() => assertSupportedTfjs('@tensorflow/tfjs-backend-wasm', SUPPORTED_TFJS_VERSION)).not.toThrow();
    for (const v of ['4.21.0', '4.22.1', '5.0.0']) {
      expect(() => assertSupportedTfjs('@tensorflow/tfjs-backend-wasm', v)).toThrow(`@tensorflow/tfjs-backend-wasm ${v} is installed`);
    }
  });

  test('every @tensorflow/* dependency is pinned to exactly that version, and that is what is installed', () => {
    const pinned: string[] = [];
    for (const pkg of ['training', 'export']) {
      const deps = readJson(new URL(`../../../${pkg}/package.json`, import.meta.url)).dependencies ?? {};
      for (const [name, range] of Object.entries(deps)) {
        if (!name.startsWith('@tensorflow/')) continue;
        expect(range, `${pkg}: ${name}`).toBe(SUPPORTED_TFJS_VERSION);
        expect(readJson(new URL(`file://${require.resolve(`${name}/package.json`)}`)).version, name).toBe(SUPPORTED_TFJS_VERSION);
        pinned.push(name);
      }
    }
    expect(new Set(pinned)).toEqual(new Set(['@tensorflow/tfjs', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-core']));
  });
});
