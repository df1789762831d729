/**
 * alhvr-eval --plot: per-class Dice and HD95 over cases as box plots with every case drawn on
 * top, and the cases under a Dice threshold named, so the bad cases are found without the CSV.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { ClassMetrics } from '@alhvr/core';
import { writePlot, type PlotSize } from './render.js';

export const EVAL_PLOT_SIZE: PlotSize = { width: 1400 };
export const DEFAULT_PLOT_THRESHOLD = 0.7;
/** Per class at most this many low cases are named (the lowest); more would overlap into a smear. */
const NAMED_PER_CLASS = 12;

export interface EvalCase {
  id: string;
  metrics: readonly ClassMetrics[];
}

interface Row {
  id: string;
  cls: string;
  dice: number;
  hd95: number | null;
  /** Fixed sideways offset so coincident values do not hide each other; derived from the case, so a render is reproducible. */
  jitter: number;
  low: boolean;
  named: boolean;
}

function jitterOf(id: string): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  // Avalanche (murmur3's finaliser): ids differing in one last digit would otherwise land side by side.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return ((h >>> 0) / 2 ** 32 - 0.5) * 0.5;
}

export function evalRows(cases: readonly EvalCase[], threshold: number): Row[] {
  const rows: Row[] = cases.flatMap((c) =>
    c.metrics.map((m) => ({
      id: c.id,
      cls: `class ${m.label}`,
      dice: m.dice,
      hd95: Number.isFinite(m.hd95Mm) ? m.hd95Mm : null,
      jitter: jitterOf(c.id),
      low: m.dice < threshold,
      named: false,
    })),
  );
  const byClass = new Map<string, Row[]>();
  for (const r of rows) if (r.low) byClass.set(r.cls, [...(byClass.get(r.cls) ?? []), r]);
  for (const low of byClass.values()) for (const r of low.sort((a, b) => a.dice - b.dice).slice(0, NAMED_PER_CLASS)) r.named = true;
  return rows;
}

export function evalSpec(cases: readonly EvalCase[], threshold = DEFAULT_PLOT_THRESHOLD): TopLevelSpec {
  const rows = evalRows(cases, threshold);
  const classes = [...new Set(rows.map((r) => r.cls))].sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)));
  const low = rows.filter((r) => r.low);
  const unnamed = low.length - low.filter((r) => r.named).length;
  const noHd = rows.filter((r) => r.hd95 === null).length;
  const x = { field: 'cls', type: 'nominal' as const, title: null, scale: { domain: classes, paddingInner: 0.3 }, axis: { labelAngle: 0 } };
  const xOffset = { field: 'jitter', type: 'quantitative' as const, scale: { domain: [-0.5, 0.5] } };
  const colour = {
    field: 'status',
    type: 'nominal' as const,
    title: null,
    scale: { domain: [`Dice ≥ ${threshold}`, `Dice < ${threshold}`], range: ['#4c78a8', '#d62728'] },
  };
  const status = { calculate: `datum.low ? 'Dice < ${threshold}' : 'Dice ≥ ${threshold}'`, as: 'status' };
  const panel = (field: 'dice' | 'hd95', title: string, yTitle: string, extra: object[]) => ({
    title,
    width: 560,
    height: 420,
    transform: [{ filter: `datum.${field} !== null` }, status],
    layer: [
      {
        mark: { type: 'boxplot', extent: 1.5, size: 44, opacity: 0.35, outliers: false, median: { color: 'black' } },
        encoding: { x, y: { field, type: 'quantitative', title: yTitle, ...(field === 'dice' ? { scale: { domain: [0, 1] } } : {}) } },
      },
      {
        mark: { type: 'point', filled: true, size: 46, opacity: 0.85 },
        encoding: { x, xOffset, y: { field, type: 'quantitative' }, color: colour, tooltip: [{ field: 'id' }, { field }] },
      },
      ...extra,
    ],
  });
  const names = (field: 'dice' | 'hd95') => ({
    transform: [{ filter: 'datum.named' }],
    mark: { type: 'text', align: 'left', dx: 7, fontSize: 10, color: '#b01515' },
    encoding: { x, xOffset, y: { field, type: 'quantitative' }, text: { field: 'id' } },
  });
  const subtitle = [
    `${cases.length} case${cases.length === 1 ? '' : 's'}; ${low.length} case–class pair${low.length === 1 ? '' : 's'} with Dice < ${threshold} (named${unnamed ? `; ${unnamed} more not named` : ''})`,
    ...(noHd ? [`${noHd} pair${noHd === 1 ? '' : 's'} without HD95 (a mask empty) left out of the HD95 panel`] : []),
  ];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Evaluation: distribution over cases per class', subtitle },
    data: { values: rows },
    hconcat: [
      panel('dice', 'Dice', 'Dice', [
        { data: { values: [{ t: threshold }] }, mark: { type: 'rule', strokeDash: [5, 4], color: '#d62728' }, encoding: { y: { field: 't', type: 'quantitative' } } },
        names('dice'),
      ]),
      panel('hd95', 'HD95', 'HD95 (mm)', [names('hd95')]),
    ],
  } as TopLevelSpec;
}

export async function writeEvalPlot(path: string, cases: readonly EvalCase[], threshold = DEFAULT_PLOT_THRESHOLD): Promise<void> {
  await writePlot(evalSpec(cases, threshold), EVAL_PLOT_SIZE, path);
}
