import { describe, expect, it } from 'vitest';
import { summaryCsv, type CaseSummary, type ManifestEntry } from './manifest.js';

const entry = (caseId: string, summary?: Partial<CaseSummary>, failed = false): ManifestEntry => ({
  caseId,
  input: `${caseId}.nii.gz`,
  kind: 'nifti',
  inputHash: 'h',
  modelHash: 'm',
  status: failed ? 'failed' : 'ok',
  error: failed ? 'unreadable' : undefined,
  outputs: [],
  timingsMs: {},
  summary: summary && { verdict: 'review', unreliability: 0.5, foregroundMl: 1, foregroundMeanConfidence: 0.9, foregroundReliable: 0.5, foregroundUnstable: 0.3, foregroundUnreliable: 0.2, ...summary },
  finishedAt: '2026-12-03T00:00:00Z',
});

describe('summary.csv review order', () => {
  it('failed first, then reject, review, accept; within a verdict the lowest predicted Dice first', () => {
    const csv = summaryCsv([
      entry('good', { verdict: 'accept', predictedDice: 0.91, agreement: 0.95 }),
      entry('better', { verdict: 'accept', predictedDice: 0.95, agreement: 0.97 }),
      entry('meh', { verdict: 'review', predictedDice: 0.8 }),
      entry('bad', { verdict: 'reject', predictedDice: 0.6, reasons: 'predicted Dice 0.600 < 0.700' }),
      entry('worse', { verdict: 'reject', predictedDice: 0.3 }),
      entry('broken', undefined, true),
    ]);
    const lines = csv.trim().split('\n');
    const header = lines[0].split(',');
    expect(header.slice(0, 5)).toEqual(['case_id', 'status', 'verdict', 'predicted_dice', 'agreement']);
    expect(header).toContain('reasons');
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(['broken', 'worse', 'bad', 'meh', 'good', 'better']);
    const bad = lines.find((l) => l.startsWith('bad,'))!.split(',');
    expect(bad[header.indexOf('predicted_dice')]).toBe('0.6');
    expect(bad[header.indexOf('reasons')]).toBe('predicted Dice 0.600 < 0.700');
  });

  it('uncalibrated models (no predicted Dice) still sort by unreliability within a verdict', () => {
    const csv = summaryCsv([entry('a', { verdict: 'review', unreliability: 0.2 }), entry('b', { verdict: 'review', unreliability: 0.9 })]);
    expect(csv.trim().split('\n').slice(1).map((l) => l.split(',')[0])).toEqual(['b', 'a']);
  });
});
