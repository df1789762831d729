import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { daikonData, daikonSeries } from '../../../test/fixtures.js';
import { PYTHON } from '../../../test/support/python.js';
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
    expect(JSON.stringify(await scanDicom([daikonData])), 'default prefixes').toBe(JSON.stringify(whole));
  });

  it('finds a header longer than the first prefix (a 40 kB text element before the pixels)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'alhvr-long-header-'));
    try {
      const script = [
        'import sys, pydicom',
        'ds = pydicom.dcmread(sys.argv[1])',
        "ds.add_new((0x0040, 0xA160), 'UT', 'x' * 40000)",
        'ds.save_as(sys.argv[2], write_like_original=True)',
      ].join('\n');
      execFileSync(PYTHON, ['-c', script, join(daikonSeries, 'brain_001.dcm'), join(dir, 'long.dcm')]);
      const whole = await scanDicom([dir], { headerPrefixBytes: Number.MAX_SAFE_INTEGER });
      expect(whole.series).toHaveLength(1);
      expect(whole.skipped).toEqual([]);
      expect(JSON.stringify(await scanDicom([dir]))).toBe(JSON.stringify(whole));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
