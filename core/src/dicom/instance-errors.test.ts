import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { daikonSeries } from '../../../test/fixtures.js';
import { InputError } from '../errors.js';
import { parseDicomInstance } from './instance.js';

describe('parseDicomInstance errors', () => {
  it('names the file and says what the parser found wrong, for a truncated file', () => {
    const bytes = new Uint8Array(readFileSync(join(daikonSeries, 'brain_002.dcm')).subarray(0, 300));
    let error: unknown;
    try {
      parseDicomInstance(bytes, 'cut.dcm');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InputError);
    const message = (error as Error).message;
    expect(message.startsWith('cut.dcm: ')).toBe(true);
    expect(message).not.toContain('[object Object]');
    expect(message).toMatch(/position|length|truncat/i);
  });
});
