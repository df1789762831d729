/**
 * alhvr-segment's summary.png: the review queue at a glance. One bar per case in the order of
 * summary.csv (most suspect first), its height the predicted Dice (or 1 − unreliability for an
 * uncalibrated model), its colour the verdict; failed cases are crosses on the floor.
 */
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { VERDICT_COLORS, readManifest, summaryOrder, withLock, type LockOptions, type ManifestEntry } from '@alhvr/inference/node';
import { writePlot, type PlotSize } from './render.js';

export const SUMMARY_PNG = 'summary.png';
export const SUMMARY_PLOT_SIZE: PlotSize = { width: 1200, height: 560 };

/** The verdict colours of preview.png (inference's VERDICT_COLORS); failed in grey so it reads as "no result", not as a score. */
const VERDICTS = ['reject', 'review', 'accept', 'failed'] as const;
const hex = (c: readonly number[]) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const VERDICT_COLOURS = [hex(VERDICT_COLORS.reject), hex(VERDICT_COLORS.review), hex(VERDICT_COLORS.accept), '#555555'];
/** Up to this many cases every bar is labelled with its case id; beyond, labels would overlap. */
const NAMED_CASES = 60;

interface Row {
  rank: number;
  caseId: string;
  verdict: (typeof VERDICTS)[number];
  value: number | null;
  measure: string;
}

export function summaryRows(entries: Iterable<ManifestEntry>): Row[] {
  return [...entries].sort(summaryOrder).map((e, i) => {
    const s = e.status === 'ok' ? e.summary : undefined;
    if (!s) return { rank: i + 1, caseId: e.caseId, verdict: 'failed', value: null, measure: 'failed' };
    const calibrated = typeof s.predictedDice === 'number';
    return {
      rank: i + 1,
      caseId: e.caseId,
      verdict: s.verdict,
      value: calibrated ? s.predictedDice! : 1 - s.unreliability,
      measure: calibrated ? 'predicted Dice' : '1 − unreliability',
    };
  });
}

export function summarySpec(entries: Iterable<ManifestEntry>): TopLevelSpec {
  const rows = summaryRows(entries);
  const n = rows.length;
  const count = (v: Row['verdict']) => rows.filter((r) => r.verdict === v).length;
  const measures = new Set(rows.filter((r) => r.value !== null).map((r) => r.measure));
  const yTitle = measures.size === 1 ? [...measures][0] : 'predicted Dice (1 − unreliability where uncalibrated)';
  const named = n <= NAMED_CASES;
  // Past NAMED_CASES, about 20 evenly spaced ranks label the axis.
  const step = Math.max(1, Math.ceil(n / 20));
  // The domain is given, not derived: a layered chart unions its layers' values, which would
  // move the failed cases (drawn by the second layer) from the front of the queue to its end.
  const x = named
    ? { field: 'caseId', type: 'ordinal' as const, scale: { domain: rows.map((r) => r.caseId) }, title: 'case, in review order (most suspect first)', axis: { labelAngle: -50, labelLimit: 140 } }
    : {
        field: 'rank',
        type: 'ordinal' as const,
        scale: { domain: rows.map((r) => r.rank) },
        title: 'position in the review queue (most suspect first)',
        axis: { values: rows.filter((r) => (r.rank - 1) % step === 0).map((r) => r.rank), labelAngle: 0 },
      };
  const color = {
    field: 'verdict',
    type: 'nominal' as const,
    title: 'verdict',
    scale: { domain: [...VERDICTS], range: VERDICT_COLOURS },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Review queue: ${n} case${n === 1 ? '' : 's'}`,
      subtitle: `${count('reject')} reject · ${count('review')} review · ${count('accept')} accept · ${count('failed')} failed`,
    },
    width: 1000,
    height: 380,
    data: { values: rows },
    // An empty folder still gets a picture: its title says 0 cases.
    encoding: { x, color },
    layer: [
      {
        transform: [{ filter: 'datum.value !== null' }],
        mark: { type: 'bar', ...(n > 200 ? { binSpacing: 0 } : {}) },
        encoding: {
          y: { field: 'value', type: 'quantitative', title: yTitle, scale: { domain: [0, 1] } },
          tooltip: [{ field: 'caseId' }, { field: 'value', format: '.3f' }, { field: 'verdict' }],
        },
      },
      {
        transform: [{ filter: 'datum.value === null' }, { calculate: '0.03', as: 'floor' }],
        mark: { type: 'point', shape: 'cross', filled: true, size: n > 200 ? 30 : 140, angle: 45 },
        encoding: { y: { field: 'floor', type: 'quantitative', scale: { domain: [0, 1] } } },
      },
    ],
  } as TopLevelSpec;
}

/**
 * Redraw summary.png from the whole manifest (every shard's cases, like summary.csv), under the
 * manifest lock so the picture and summary.csv describe the same set of cases.
 */
export async function writeSummaryPlot(dir: string, lock: LockOptions = {}): Promise<string> {
  const path = join(dir, SUMMARY_PNG);
  await withLock(dir, async () => {
    const entries = await readManifest(dir);
    await writePlot(summarySpec(entries.values()), SUMMARY_PLOT_SIZE, path);
  }, lock);
  return path;
}
