import { afterAll, beforeAll, expect, test } from 'vitest';
import { DEFAULT_WIDTHS, type UNet } from '@alhvr/training';
import { checkParity, exportOnnx } from '@alhvr/export';
import { makeCard, makeStudent, useBackend } from './export-fixtures.js';

let a: UNet;
let b: UNet;
beforeAll(async () => {
  await useBackend();
  a = makeStudent(31, { widths: DEFAULT_WIDTHS });
  b = makeStudent(32, { widths: DEFAULT_WIDTHS });
});
afterAll(() => {
  a.dispose();
  b.dispose();
});

test('default widths at 256²: ≈1.81 M parameters per student and fp32 parity on one slice', async () => {
  const { onnx, summary } = exportOnnx([a, b], makeCard([256, 256]), { debugLogits: true });
  // The method spec quotes about 1.81 M trainable parameters per network.
  for (const n of summary.trainableParameters) expect(Math.abs(n - 1.81e6)).toBeLessThan(0.01e6);
  // Folding removes BatchNorm's γ and β: 2 per channel of the 18 BN layers of each student.
  const bnChannels = 2 * (16 + 32 + 64 + 128 + 256) + 2 * (128 + 64 + 32 + 16);
  expect(summary.parameters).toBe(summary.trainableParameters.reduce((s, n) => s + n - 2 * bnChannels, 0));
  expect(summary.fileBytes).toBeGreaterThan(4 * summary.parameters);
  const r = await checkParity([a, b], onnx, { slices: 1, batch: 1, backend: 'wasm' });
  expect(r.size).toEqual([256, 256]);
  expect(r.maxAbsLogits!).toBeLessThanOrEqual(1e-4);
  expect(r.maxAbsProbabilities).toBeLessThanOrEqual(1e-4);
  expect(r.argmaxAgreement).toBeGreaterThanOrEqual(0.9999);
  expect(r.regionMismatches).toBe(0);
  expect(r.pass).toBe(true);
});
