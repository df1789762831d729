import { describe, expect, it } from 'vitest';
import { daikonData } from '../../../test/fixtures.js';
import { scanDicom } from './scan.js';

// Scanning reads only the start of each file; whatever the prefix length, the result must be the
// same as reading whole files (a prefix that stops inside the header falls back to the whole file).
describe('scanDicom header prefix', () => {
  it('gives the same series and skipped files for any prefix length', async () => {
    const whole = await scanDicom([daikonData], { headerPrefixBytes: Number.MAX_SAFE_INTEGER });
    expect(whole.series.length).toBeGreaterThan(3);
    for (const prefix of [16, 700, 4096, 256 * 1024]) {
      const r = await scanDicom([daikonData], { headerPrefixBytes: prefix });
      expect(JSON.stringify(r), `prefix ${prefix}`).toBe(JSON.stringify(whole));
    }
  });
});
