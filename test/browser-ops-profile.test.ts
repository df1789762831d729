// bench/browser-ops.ts's reading of ONNX Runtime's profile (the op table in bench/results/browser.json):
// a hand-made trace in ORT's format, summed per op and per run, and the convolutions' multiply-adds.
import { describe, expect, test } from 'vitest';
import { opFamily, summariseOrtProfile } from '../bench/browser-ops.js';

const kernel = (op: string, dur: number, inputs: Record<string, number[]>[] = [], outputs: Record<string, number[]>[] = []) => ({
  cat: 'Node',
  name: `${op}_1_kernel_time`,
  dur,
  ts: 0,
  ph: 'X',
  args: { op_name: op, input_type_shape: inputs, output_type_shape: outputs },
});
const run = (dur: number) => ({ cat: 'Session', name: 'model_run', dur, ts: 0, ph: 'X', args: {} });

describe('summariseOrtProfile', () => {
  test('sums kernel time per op type per run and counts the convolutions from their shapes', () => {
    const conv = kernel('FusedConv', 3000, [{ float: [2, 8, 16, 16] }, { float: [4, 8, 3, 3] }, { float: [4] }], [{ float: [2, 4, 16, 16] }]);
    const events = [conv, kernel('Resize', 500), run(5000), conv, kernel('Resize', 1500), kernel('Conv', 1000, [{ float: [2, 4, 16, 16] }, { float: [2, 4, 1, 1] }], [{ float: [2, 2, 16, 16] }]), run(7000)];
    // Lines the wasm build prints around the array (console output) do not matter.
    const profile = summariseOrtProfile(`noise\n${JSON.stringify(events)}\n`);
    expect(profile.runs).toBe(2);
    expect(profile.modelRunMs).toBeCloseTo(6, 10);
    expect(profile.kernelMsPerRun).toEqual({ FusedConv: 3, Resize: 1, Conv: 0.5 });
    // Two FusedConv: 2·4·16·16 outputs × 8·3·3 each; one 1×1 Conv: 2·2·16·16 × 4; per run of the two.
    expect(profile.convMacsPerRun).toBe((2 * 2048 * 72 + 1024 * 4) / 2);
  });

  test('NCHWc convolutions (reordered weights) leave the multiply-adds uncounted, and a trace without a run is refused', () => {
    const nchwc = kernel('NchwcConv', 100, [{ float: [1, 1, 16, 16, 8] }, { float: [8, 8, 3, 3] }], [{ float: [1, 1, 16, 16, 8] }]);
    expect(summariseOrtProfile(JSON.stringify([nchwc, run(200)])).convMacsPerRun).toBeUndefined();
    expect(() => summariseOrtProfile(JSON.stringify([nchwc]))).toThrow(/no model_run/);
  });
});

describe('opFamily', () => {
  test('puts every form of the convolution in one family and leaves other ops alone', () => {
    const families = new Set(['Conv', 'FusedConv', 'NchwcConv', 'ReorderInput', 'ReorderOutput'].map(opFamily));
    expect(families.size).toBe(1);
    expect(opFamily('Resize')).toBe('Resize');
  });
});
