import { describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { Rng } from '@alhvr/core';
import { PYTHON } from '../../test/support/python.js';
import { fromFloat16Bits, toFloat16Array, toFloat16Bits } from './float16.js';

describe('float16 conversion', () => {
  test('IEEE 754 binary16 patterns of landmark values', () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(65504)).toBe(0x7bff); // largest finite half
    expect(toFloat16Bits(65520)).toBe(0x7c00); // rounds up to +Inf
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toFloat16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(toFloat16Bits(1 / 3)).toBe(0x3555);
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even (down)
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(toFloat16Bits(-0)).toBe(0x8000);
    expect(toFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(toFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(toFloat16Bits(NaN) & 0x3ff).not.toBe(0);
    expect(fromFloat16Bits(0x3555)).toBeCloseTo(1 / 3, 3);
    expect(fromFloat16Bits(0x0001)).toBe(2 ** -24);
  });

  test('matches numpy float16 on random values across the range', () => {
    const rng = new Rng(5);
    const values = Float32Array.from({ length: 4000 }, () => (rng.next() < 0.5 ? -1 : 1) * 2 ** rng.uniform(-27, 17));
    const r = spawnSync(PYTHON, ['-c', 'import sys,numpy as np; a=np.frombuffer(sys.stdin.buffer.read(),dtype="<f4"); sys.stdout.buffer.write(a.astype(np.float16).view("<u2").tobytes())'], {
      input: Buffer.from(values.buffer),
      maxBuffer: 1 << 24,
    });
    expect(r.status, r.stderr?.toString()).toBe(0);
    const expected = new Uint16Array(new Uint8Array(r.stdout).buffer);
    const ours = toFloat16Array(values);
    let mismatches = 0;
    for (let i = 0; i < values.length; i++) if (ours[i] !== expected[i]) mismatches++;
    expect(mismatches).toBe(0);
  });
});
