import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests run against the TypeScript sources, so a test run never depends on a stale build.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@alhvr\/core\/node$/, replacement: src('./core/src/node.ts') },
      { find: /^@alhvr\/core$/, replacement: src('./core/src/index.ts') },
      { find: /^@alhvr\/training$/, replacement: src('./training/src/index.ts') },
      { find: /^@alhvr\/export$/, replacement: src('./export/src/index.ts') },
      { find: /^@alhvr\/inference\/no-telemetry$/, replacement: src('./inference/src/no-telemetry.ts') },
      { find: /^@alhvr\/inference\/node$/, replacement: src('./inference/src/node.ts') },
      { find: /^@alhvr\/inference$/, replacement: src('./inference/src/index.ts') },
    ],
  },
  test: {
    include: ['{core,training,export,inference,cli,viewer}/src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    pool: 'forks',
    // Test workers load onnxruntime-node directly too (export parity): no telemetry from them either.
    env: { ORT_DISABLE_TELEMETRY: '1' },
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
