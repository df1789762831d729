import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '@alhvr/core';
import { createProgress, etaSeconds, formatDuration, formatProgressBar, formatProgressLine } from '../cli/src/lib/progress.js';
import { exactDatatype } from '../cli/src/lib/exact-datatype.js';
import { sanitiseCaseId, uniqueCaseIds } from '@alhvr/inference/node';
import { errorLine, exitCodeFor, UsageError, CancelledError } from '../cli/src/lib/run-command.js';
import { expandInputs } from '../cli/src/lib/inputs.js';
import { daikonData, daikonSeries, niftiData } from './fixtures.js';

describe('progress', () => {
  it('formats durations the way the ETA shows them', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(65)).toBe('1m05s');
    expect(formatDuration(3600 + 4 * 60 + 10)).toBe('1h04m');
    expect(formatDuration(NaN)).toBe('--');
  });

  it('estimates the time left from the average rate so far', () => {
    // 12 of 40 in 24 s → 2 s each → 28 left → 56 s.
    expect(etaSeconds({ done: 12, total: 40, elapsedMs: 24_000 })).toBeCloseTo(56, 9);
    expect(formatProgressLine({ done: 12, total: 40, elapsedMs: 24_000 })).toBe('[12/40] 30% ETA 56s');
    expect(formatProgressLine({ done: 40, total: 40, elapsedMs: 65_000 }, 'cases')).toBe('cases [40/40] 100% done in 1m05s');
  });

  it('leaves resumed work out of the rate', () => {
    // Resumed at 900 of 1200; 10 more in 20 s → 2 s each → 290 left → 580 s, not 6 s.
    expect(etaSeconds({ done: 910, total: 1200, elapsedMs: 20_000, initial: 900 })).toBeCloseTo(580, 9);
    let t = 0;
    const lines: string[] = [];
    const p = createProgress({ total: 1200, initial: 900, stream: { write: (s: string) => lines.push(s) }, now: () => t, lineIntervalMs: 0 });
    t = 20_000;
    p.update(910);
    expect(lines.at(-1)).toBe('[910/1200] 75% ETA 9m40s\n');
  });

  it('draws a bar that fits the terminal width and fills in proportion', () => {
    const bar = formatProgressBar({ done: 10, total: 40, elapsedMs: 5_000 }, 60, 'cases');
    expect(bar.length).toBeLessThanOrEqual(60);
    const inside = /\[([#-]+)\]/.exec(bar)![1];
    expect(inside.split('#').length - 1).toBe(Math.round(inside.length / 4));
    expect(bar).toContain('10/40 25% 2.0/s ETA 15s');
  });

  it('throttles plain lines and always prints the final state', () => {
    let t = 0;
    const lines: string[] = [];
    const p = createProgress({ total: 100, stream: { write: (s: string) => lines.push(s) }, now: () => t, lineIntervalMs: 1000 });
    for (let n = 0; n < 100; n++) {
      t += 50; // 100 ticks over 5 s: at most one line per second plus the final one
      p.tick();
    }
    p.finish();
    expect(lines.length).toBeLessThanOrEqual(7);
    expect(lines.at(-1)).toBe('[100/100] 100% done in 5s\n');
    expect(lines.every((l) => l.endsWith('\n') && !l.includes('\r'))).toBe(true);
  });

  it('redraws one line on a TTY and prints nothing when quiet', () => {
    let t = 0;
    const out: string[] = [];
    const p = createProgress({ total: 3, stream: { write: (s: string) => out.push(s), isTTY: true, columns: 80 }, now: () => (t += 500) });
    p.tick();
    p.tick();
    p.tick();
    p.finish();
    expect(out.filter((s) => s.startsWith('\r')).length).toBeGreaterThanOrEqual(2);
    expect(out.at(-1)).toBe('\n');
    const silent: string[] = [];
    const q = createProgress({ total: 3, quiet: true, stream: { write: (s: string) => silent.push(s), isTTY: true } });
    q.tick();
    q.finish();
    expect(silent).toEqual([]);
  });
});

describe('exact output datatype', () => {
  it('keeps a fitting integer source type and narrows integral floats', () => {
    expect(exactDatatype(new Uint8Array([0, 3, 255]), 'uint8')).toBe('uint8');
    expect(exactDatatype(new Float32Array([-1024, 3071]), 'float32')).toBe('int16');
    expect(exactDatatype(new Float32Array([0, 60000]))).toBe('uint16');
    expect(exactDatatype(new Float64Array([-1, 70000]))).toBe('int32');
    expect(exactDatatype(new Int16Array([-5, 5]), 'uint16')).toBe('int16');
  });

  it('uses float32 only when every value survives it', () => {
    expect(exactDatatype(new Float32Array([0.5, 1.25]))).toBe('float32');
    expect(exactDatatype(new Float64Array([0.1]))).toBe('float64');
    expect(exactDatatype(new Float32Array([NaN, 1]))).toBe('float32');
  });
});

// Output names come from the case ids every command shares (inference's case-id.ts).
describe('file names from series', () => {
  it('strips separators, parent references and hidden-file dots', () => {
    for (const evil of ['../../etc/passwd', 'a/b\\c', '..', '.hidden', 'T1 / post-contrast: 3mm']) {
      const name = sanitiseCaseId(evil);
      expect(name).not.toMatch(/[\\/]/);
      expect(name).not.toContain('..');
      expect(name.startsWith('.')).toBe(false);
      expect(name.length).toBeGreaterThan(0);
    }
    expect(sanitiseCaseId('T1 / post-contrast: 3mm')).toBe('T1_post-contrast_3mm');
  });

  it('tells duplicates apart deterministically, ignoring case', () => {
    const items = ['a', 'A', 'b', 'a'].map((stem, n) => ({ stem, key: `/input/${n}` }));
    const ids = uniqueCaseIds(items);
    expect(new Set(ids.map((id) => id.toLowerCase())).size).toBe(4);
    expect(ids[2]).toBe('b');
    expect(uniqueCaseIds([...items].reverse())).toEqual([...ids].reverse());
  });
});

describe('error lines', () => {
  it('is one line with the command name, and maps exit codes', () => {
    expect(errorLine('alhvr-info', new InputError('bad header', '/x/y.nii'))).toBe('alhvr-info: error: /x/y.nii: bad header');
    expect(errorLine('alhvr-info', new Error('first\nsecond'))).toBe('alhvr-info: error: first');
    expect(exitCodeFor(new InputError('x'))).toBe(1);
    expect(exitCodeFor(new UsageError('x'))).toBe(2);
    expect(exitCodeFor(new CancelledError())).toBe(130);
  });
});

describe('expandInputs', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-inputs-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('finds NIfTI files and DICOM series under a folder, with stable unique ids, and reports other files', async () => {
    mkdirSync(join(tmp, 'a'));
    mkdirSync(join(tmp, 'b'));
    copyFileSync(join(niftiData, 'little.nii.gz'), join(tmp, 'a', 'scan.nii.gz'));
    copyFileSync(join(niftiData, 'little.nii.gz'), join(tmp, 'b', 'scan.nii.gz'));
    copyFileSync(join(daikonData, 'implicit_little.dcm'), join(tmp, 'b', 'IM0001'));
    writeFileSync(join(tmp, 'notes.txt'), 'x');
    writeFileSync(join(tmp, '.hidden.tmp'), 'x');
    const first = await expandInputs([tmp]);
    const second = await expandInputs([tmp]);
    expect(first.sources.map((s) => s.id)).toEqual(second.sources.map((s) => s.id));
    expect(first.sources.map((s) => s.kind).sort()).toEqual(['dicom-series', 'nifti', 'nifti']);
    expect(new Set(first.sources.map((s) => s.id)).size).toBe(3);
    expect(first.sources.filter((s) => s.kind === 'nifti').map((s) => s.id)).toEqual(['a_scan', 'b_scan']);
    expect(first.skipped.map((s) => s.path)).toEqual([join(tmp, 'notes.txt')]);
  });

  it('treats the same image reached twice as one', async () => {
    const { sources } = await expandInputs([daikonSeries, daikonSeries]);
    expect(sources).toHaveLength(1);
  });
});
