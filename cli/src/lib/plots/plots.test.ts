import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import type { ClassMetrics } from '@alhvr/core';
import type { ManifestEntry } from '@alhvr/inference/node';
import type { IterationRecord, ValidationRecord } from '@alhvr/training';
import { evalRows, evalSpec, type EvalCase } from './eval-distribution.js';
import { renderPlot } from './render.js';
import { summaryRows, summarySpec, SUMMARY_PLOT_SIZE, writeSummaryPlot } from './segment-summary.js';
import { MAX_POINTS, PROGRESS_PLOT_SIZE, progressSpec, writeProgressPlot } from './training-progress.js';

const tmp = mkdtempSync(join(tmpdir(), 'alhvr-plots-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Size from the PNG header itself (IHDR: width and height at bytes 16 and 20), then the decoded pixels. */
function inspect(png: Uint8Array) {
  const bytes = Buffer.from(png);
  expect(bytes.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect(bytes.toString('latin1', 12, 16)).toBe('IHDR');
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  const image = PNG.sync.read(bytes);
  expect([image.width, image.height]).toEqual([width, height]);
  let sum = 0;
  let sum2 = 0;
  let coloured = 0;
  const n = width * height;
  for (let p = 0; p < n; p++) {
    const [r, g, b] = [image.data[4 * p], image.data[4 * p + 1], image.data[4 * p + 2]];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    sum += y;
    sum2 += y * y;
    if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
  }
  const variance = sum2 / n - (sum / n) ** 2;
  return { width, height, variance, colouredFraction: coloured / n };
}

/** The height a width-only size gives: the chart's own aspect, read back from the SVG. */
function svgAspectHeight(svg: string, width: number): number {
  const [, w, h] = /viewBox="0 0 ([\d.]+) ([\d.]+)"/.exec(svg)!;
  return Math.round((width * Number(h)) / Number(w));
}

function entry(caseId: string, verdict: 'accept' | 'review' | 'reject' | 'failed', predictedDice: number | null, unreliability = 0.2): ManifestEntry {
  const base = { caseId, input: `${caseId}.nii.gz`, kind: 'nifti' as const, inputHash: 'h', modelHash: 'm', outputs: [], timingsMs: {}, finishedAt: '2026-01-01T00:00:00Z' };
  if (verdict === 'failed') return { ...base, status: 'failed', error: 'truncated' };
  return {
    ...base,
    status: 'ok',
    summary: { verdict, unreliability, predictedDice, foregroundMl: 100, foregroundMeanConfidence: 0.9, foregroundReliable: 0.8, foregroundUnstable: 0.1, foregroundUnreliable: 0.1 },
  };
}

describe('summary.png (alhvr-segment review queue)', () => {
  const queue = [entry('good', 'accept', 0.91), entry('broken', 'failed', null), entry('bad', 'reject', 0.3), entry('meh', 'review', 0.7)];

  it('lists the cases in summary.csv order with the predicted Dice, or 1 − unreliability when uncalibrated', () => {
    const rows = summaryRows(queue);
    expect(rows.map((r) => [r.caseId, r.verdict, r.value])).toEqual([
      ['broken', 'failed', null],
      ['bad', 'reject', 0.3],
      ['meh', 'review', 0.7],
      ['good', 'accept', 0.91],
    ]);
    const uncalibrated = summaryRows([entry('u', 'review', null, 0.35)]);
    expect(uncalibrated[0].value).toBeCloseTo(0.65, 12);
    expect(uncalibrated[0].measure).toBe('1 − unreliability');
    // The failed case leads the x axis too (a layered chart would otherwise put it last).
    const x = (summarySpec(queue) as any).encoding.x;
    expect(x.scale.domain).toEqual(['broken', 'bad', 'meh', 'good']);
  });

  it('is written atomically at its size, is not blank, shows the verdict colours and changes with the data', async () => {
    const dir = join(tmp, 'seg');
    mkdirSync(dir);
    writeFileSync(join(dir, 'manifest.jsonl'), `${queue.map((e) => JSON.stringify(e)).join('\n')}\n`);
    const path = await writeSummaryPlot(dir);
    const first = readFileSync(path);
    const a = inspect(first);
    expect([a.width, a.height]).toEqual([SUMMARY_PLOT_SIZE.width, SUMMARY_PLOT_SIZE.height]);
    expect(a.variance).toBeGreaterThan(100);
    // Red, amber and green bars are most of the coloured pixels: at least 2 % of the picture.
    expect(a.colouredFraction).toBeGreaterThan(0.02);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // Another verdict for one case: another picture.
    writeFileSync(join(dir, 'manifest.jsonl'), `${[...queue, entry('good', 'reject', 0.2)].map((e) => JSON.stringify(e)).join('\n')}\n`);
    await writeSummaryPlot(dir);
    expect(Buffer.compare(first, readFileSync(path))).not.toBe(0);
  });

  it('an empty queue still draws', async () => {
    const plot = await renderPlot(summarySpec([]), SUMMARY_PLOT_SIZE);
    expect(inspect(plot.png).width).toBe(SUMMARY_PLOT_SIZE.width);
  });
});

function iterations(n: number, scale = 1, start = 1): IterationRecord[] {
  return Array.from({ length: n }, (_, k) => {
    const it = start + k;
    const decay = scale / Math.sqrt(it);
    return {
      type: 'iteration',
      iteration: it,
      loss: 4 * decay,
      terms: { supA: decay, supB: 1.1 * decay, focusA: 0.5 * decay, focusB: 0.6 * decay, protoA: 2 * decay, protoB: 2.2 * decay },
      gamma: Math.min(0.95, 0.3 + it / 40),
      regions: { omega1: 0.6, omega2: 0.25, omega3: 0.15 },
      weight: 0.1 * Math.min(1, it / 20),
      lr: 0.01,
      stepMs: 800 + (it % 3) * 10,
      tensors: 100,
    };
  });
}

function validation(iteration: number, student: 'a' | 'b', meanDice: number, best: boolean): ValidationRecord {
  return { type: 'validation', iteration, student, meanDice, meanHd95Mm: 20 * (1 - meanDice), perClass: [], best };
}

describe('progress.png (alhvr-train)', () => {
  it('a run with a single validation draws every panel, at 1600 px wide and the chart’s own aspect, and progress.svg beside it', async () => {
    const run = join(tmp, 'run');
    mkdirSync(run);
    const records = [...iterations(20), validation(20, 'a', 0.62, true), validation(20, 'b', 0.58, true)];
    // The last line is half-written, as when the trainer appends while the picture is drawn.
    writeFileSync(join(run, 'metrics.jsonl'), `${records.map((r) => JSON.stringify(r)).join('\n')}\n{"type":"itera`);
    await writeProgressPlot(run, 'run');
    const png = readFileSync(join(run, 'progress.png'));
    const svg = readFileSync(join(run, 'progress.svg'), 'utf8');
    const p = inspect(png);
    expect(p.width).toBe(PROGRESS_PLOT_SIZE.width);
    expect(p.height).toBe(svgAspectHeight(svg, PROGRESS_PLOT_SIZE.width));
    expect(p.height).toBeGreaterThan(600);
    expect(p.variance).toBeGreaterThan(100);
    expect(svg).toContain('best A: Dice 0.620 @ 20');
    expect(svg).toContain('Ω3 unreliable');
    expect(readdirSync(run).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    // More training and a better student B: another picture.
    const more = [...records, ...iterations(20, 0.5, 21), validation(40, 'a', 0.6, false), validation(40, 'b', 0.7, true)];
    writeFileSync(join(run, 'metrics.jsonl'), `${more.map((r) => JSON.stringify(r)).join('\n')}\n`);
    await writeProgressPlot(run, 'run');
    expect(Buffer.compare(png, readFileSync(join(run, 'progress.png')))).not.toBe(0);
    const svg2 = readFileSync(join(run, 'progress.svg'), 'utf8');
    // The kept best of A is still the first validation; B's moved to the second.
    expect(svg2).toContain('best A: Dice 0.620 @ 20');
    expect(svg2).toContain('best B: Dice 0.700 @ 40');
  });

  it('bins a 30 000-iteration run to at most MAX_POINTS points per series, keeping the mean', () => {
    const its = iterations(30_000);
    const spec = progressSpec([...its, validation(30_000, 'a', 0.8, true), validation(30_000, 'b', 0.82, true)]) as any;
    const supervised = spec.concat[0];
    const a = supervised.data.values.filter((p: any) => p.series === 'student A');
    expect(a.length).toBeLessThanOrEqual(MAX_POINTS);
    expect(a.length).toBeGreaterThan(MAX_POINTS / 2);
    // Bins of 125 iterations: the first point is the mean of supA over iterations 1..125, placed at 125.
    const size = Math.ceil(30_000 / MAX_POINTS);
    const expected = its.slice(0, size).reduce((s, r) => s + r.terms.supA, 0) / size;
    expect(a[0].iteration).toBe(size);
    expect(a[0].value).toBeCloseTo(expected, 12);
    expect(supervised.title).toContain(`mean of each ${size} iterations`);
  });

  it('a supervised run has no unsupervised panels', () => {
    const its = iterations(5).map((r) => ({ ...r, terms: { ceA: 0.5, diceA: 0.4 } }));
    const spec = progressSpec([...its, validation(5, 'a', 0.5, true)]) as any;
    const titles = spec.concat.map((p: any) => p.title as string);
    expect(titles.some((t: string) => t.startsWith('Unsupervised'))).toBe(false);
    expect(spec.concat[0].data.values[0].value).toBeCloseTo(0.9, 12);
  });
});

function metrics(label: number, dice: number, hd95Mm: number): ClassMetrics {
  return { label, dice, hd95Mm } as ClassMetrics;
}

describe('alhvr-eval --plot', () => {
  const cases: EvalCase[] = Array.from({ length: 12 }, (_, k) => ({
    id: `case${k}`,
    metrics: [metrics(1, k === 11 ? 0.79 : 0.9 - 0.005 * k, 2 + k), metrics(2, k === 3 ? 0.4 : 0.85, k === 5 ? NaN : 3 + k)],
  }));

  it('names exactly the cases under the threshold, and leaves out an undefined HD95', () => {
    const rows = evalRows(cases, 0.8);
    expect(rows.filter((r) => r.named).map((r) => `${r.id}/${r.cls}`)).toEqual(['case3/class 2', 'case11/class 1']);
    expect(rows.find((r) => r.id === 'case5' && r.cls === 'class 2')!.hd95).toBeNull();
  });

  it('renders at its width, not blank, and differently for other scores', async () => {
    const a = await renderPlot(evalSpec(cases, 0.8), { width: 1400 });
    const pa = inspect(a.png);
    expect(pa.width).toBe(1400);
    expect(pa.height).toBe(svgAspectHeight(a.svg, 1400));
    expect(pa.variance).toBeGreaterThan(100);
    expect(a.svg).toContain('case3');
    expect(a.svg).not.toContain('>case4<');
    const worse = cases.map((c) => ({ ...c, metrics: c.metrics.map((m) => ({ ...m, dice: m.dice - 0.3 })) }));
    const b = await renderPlot(evalSpec(worse, 0.8), { width: 1400 });
    expect(Buffer.compare(Buffer.from(a.png), Buffer.from(b.png))).not.toBe(0);
  });
});

it('writes nothing when the run folder does not exist', async () => {
  await expect(writeProgressPlot(join(tmp, 'missing'))).rejects.toThrow(/ENOENT/);
  expect(existsSync(join(tmp, 'missing'))).toBe(false);
});
