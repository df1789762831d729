/**
 * alhvr-train's RUN_DIR/progress.png (and .svg), after nnU-Net's progress.png: what a user
 * watches instead of metrics.jsonl. Drawn from metrics.jsonl itself, so a resumed run's picture
 * holds the whole run, and training never depends on the plotting packages.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import type { IterationRecord, ValidationRecord } from '@alhvr/training';
import { writePlot, type PlotSize } from './render.js';

export const PROGRESS_PNG = 'progress.png';
export const PROGRESS_SVG = 'progress.svg';
export const PROGRESS_PLOT_SIZE: PlotSize = { width: 1600 };
/**
 * Per-iteration series are averaged over bins so at most this many points are drawn: a
 * 30 000-iteration run stays readable (and quick to render) and a 20-iteration one is drawn raw.
 */
export const MAX_POINTS = 240;
/** Up to this many points per series each is drawn as a dot too (a short run's single values stay visible). */
const DOTTED_POINTS = 40;

type MetricsRecord = IterationRecord | ValidationRecord;

/**
 * metrics.jsonl as records. A line being appended while we read (the trainer goes on while the
 * picture is drawn) is incomplete: it is left out and drawn next time.
 */
export async function readMetricsFile(runDir: string): Promise<MetricsRecord[]> {
  const text = await readFile(join(runDir, 'metrics.jsonl'), 'utf8');
  const records: MetricsRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line) as MetricsRecord);
    } catch {
      /* partial last line */
    }
  }
  return records;
}

interface Point {
  iteration: number;
  series: string;
  value: number;
}

/** JSON writes NaN and Infinity as null: those points are gaps, not zeros. */
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Mean (or median, for step times, which a checkpoint or validation step spikes) of each bin of `size` iterations. */
function binned(its: IterationRecord[], size: number, series: Record<string, (r: IterationRecord) => number | undefined>, median = false): Point[] {
  const points: Point[] = [];
  for (const [name, get] of Object.entries(series)) {
    for (let start = 0; start < its.length; start += size) {
      const bin = its.slice(start, start + size);
      const values = bin.map(get).filter(finite);
      if (!values.length) continue;
      let value: number;
      if (median) {
        values.sort((a, b) => a - b);
        const m = values.length >> 1;
        value = values.length % 2 ? values[m] : (values[m - 1] + values[m]) / 2;
      } else value = values.reduce((a, b) => a + b, 0) / values.length;
      points.push({ iteration: bin[bin.length - 1].iteration, series: name, value });
    }
  }
  return points;
}

const sum = (...values: (number | undefined)[]) => (values.every(finite) ? values.reduce((a, b) => a! + b!, 0) : undefined);

/** One panel: a line per series; points too, so a series of one value (one validation) still shows. */
function linePanel(title: string, yTitle: string, values: Point[], xMax: number, extra: object[] = [], yScale: object = { zero: false }): object {
  const counts = new Map<string, number>();
  for (const p of values) counts.set(p.series, (counts.get(p.series) ?? 0) + 1);
  const perSeries = Math.max(0, ...counts.values());
  return {
    title,
    width: 680,
    height: 230,
    data: { values },
    layer: [
      {
        mark: { type: 'line', point: perSeries <= DOTTED_POINTS ? { size: 30 } : false, strokeWidth: 1.6 },
        encoding: {
          // Every panel spans the whole run so far, so panels line up and a single validation sits where it happened.
          x: { field: 'iteration', type: 'quantitative', title: 'iteration', scale: { domain: [0, Math.max(1, xMax)], nice: false } },
          y: { field: 'value', type: 'quantitative', title: yTitle, scale: yScale },
          color: { field: 'series', type: 'nominal', title: null, sort: null },
        },
      },
      ...extra,
    ],
  };
}

export function progressSpec(records: readonly MetricsRecord[], runName = ''): TopLevelSpec {
  const its = records.filter((r): r is IterationRecord => r.type === 'iteration');
  const vals = records.filter((r): r is ValidationRecord => r.type === 'validation');
  const size = Math.max(1, Math.ceil(its.length / MAX_POINTS));
  const binNote = size > 1 ? ` (mean of each ${size} iterations)` : '';
  const alhvr = its.some((r) => finite(r.terms.supA) || finite(r.terms.focusA));
  const xMax = Math.max(0, ...records.map((r) => r.iteration));
  const panel = (title: string, yTitle: string, values: Point[], extra: object[] = [], yScale?: object) => linePanel(title, yTitle, values, xMax, extra, yScale);
  const t = (k: string) => (r: IterationRecord) => r.terms[k];
  const panels: object[] = [];

  if (alhvr) {
    panels.push(panel(`Supervised loss (CE + Dice) per student${binNote}`, 'loss', binned(its, size, { 'student A': t('supA'), 'student B': t('supB') })));
    // Unweighted: the ramp weight has its own panel, and weighted terms would read as zero early on.
    panels.push(
      panel(`Unsupervised loss (DTCT focus + CG-CPCL prototype, unweighted) per student${binNote}`, 'loss', binned(its, size, {
        'student A': (r) => sum(r.terms.focusA, r.terms.protoA),
        'student B': (r) => sum(r.terms.focusB, r.terms.protoB),
      })),
    );
    panels.push(
      panel(`γ and region fractions of the unlabelled pixels${binNote}`, 'fraction', binned(its, size, {
        γ: (r) => r.gamma,
        'Ω1 reliable, stable': (r) => r.regions.omega1,
        'Ω2 unstable': (r) => r.regions.omega2,
        'Ω3 unreliable': (r) => r.regions.omega3,
      }), [], { domain: [0, 1] }),
    );
    panels.push(panel(`Ramp weight of the unsupervised terms${binNote}`, 'weight', binned(its, size, { 'ramp weight': (r) => r.weight }), [], { zero: true }));
  } else {
    panels.push(panel(`Supervised loss (CE + Dice)${binNote}`, 'loss', binned(its, size, { 'student A': (r) => sum(r.terms.ceA, r.terms.diceA) ?? r.loss })));
  }

  const student = (r: ValidationRecord) => `student ${r.student.toUpperCase()}`;
  // The kept best of each student: the last validation the trainer flagged best (strictly higher Dice).
  const keptBest = new Map<string, ValidationRecord>();
  for (const v of vals) if (v.best) keptBest.set(v.student, v);
  const bestMarks = (field: 'meanDice' | 'meanHd95Mm') => {
    const values = [...keptBest.values()]
      .filter((v) => finite(v[field]))
      .map((v) => ({ iteration: v.iteration, series: student(v), value: v[field], label: `best ${v.student.toUpperCase()}: Dice ${v.meanDice.toFixed(3)} @ ${v.iteration}` }));
    return [
      {
        data: { values },
        mark: { type: 'point', shape: 'circle', filled: false, size: 320, strokeWidth: 2.5 },
        encoding: { x: { field: 'iteration', type: 'quantitative' }, y: { field: 'value', type: 'quantitative' }, color: { field: 'series', type: 'nominal', sort: null } },
      },
      {
        data: { values },
        // Left of the circle: the best is usually the latest validation, at the right edge beside the legend.
        mark: { type: 'text', align: 'right', dx: -14, dy: -10, fontSize: 11, fontWeight: 'bold' },
        encoding: { x: { field: 'iteration', type: 'quantitative' }, y: { field: 'value', type: 'quantitative' }, text: { field: 'label' }, color: { field: 'series', type: 'nominal', sort: null } },
      },
    ];
  };
  const valPoints = (field: 'meanDice' | 'meanHd95Mm') => vals.filter((v) => finite(v[field])).map((v) => ({ iteration: v.iteration, series: student(v), value: v[field] }));
  panels.push(panel('Validation mean Dice per student (circled: the kept best)', 'mean Dice', valPoints('meanDice'), bestMarks('meanDice'), { domain: [0, 1] }));
  panels.push(panel('Validation mean HD95 per student (circled: at the kept best Dice)', 'HD95 (mm)', valPoints('meanHd95Mm'), bestMarks('meanHd95Mm'), { zero: true }));
  panels.push(panel(`Step time${size > 1 ? ` (median of each ${size} iterations)` : ''}`, 'ms per iteration', binned(its, size, { 'step time': (r) => r.stepMs }, true), [], { zero: true }));
  panels.push(panel(`Total loss${binNote}`, 'loss', binned(its, size, { loss: (r) => r.loss })));

  const last = its.at(-1);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Training progress${runName ? `: ${runName}` : ''}`,
      subtitle: `iteration ${last?.iteration ?? 0} · ${vals.length} validation record${vals.length === 1 ? '' : 's'}`,
    },
    concat: panels,
    columns: 2,
    // Each panel has its own series, so each its own colours and legend.
    resolve: { scale: { color: 'independent' } },
  } as TopLevelSpec;
}

/** Redraw RUN_DIR/progress.png and progress.svg from RUN_DIR/metrics.jsonl. */
export async function writeProgressPlot(runDir: string, runName = ''): Promise<void> {
  const records = await readMetricsFile(runDir);
  await writePlot(progressSpec(records, runName), PROGRESS_PLOT_SIZE, join(runDir, PROGRESS_PNG), join(runDir, PROGRESS_SVG));
}
