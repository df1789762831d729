/**
 * Does a calibrated 3D model's predicted Dice track its true Dice on CT phantoms it never saw?
 *
 *   npx tsx bench/calibration-3d.ts [--dir bench/runs/calibration-3d] [--out bench/results/calibration-3d.json] [--no-train]
 *
 * Fixed before the first run: a tiny two-student VNet (widths 4…32, 32³ crops at 1.6×1.6×3 mm,
 * 600 iterations, 6 labelled + 8 unlabeled phantoms of seed 2031, matrix 64) trained with
 * alhvr-train (resumed if stopped); calibrated by `calibrate` (as alhvr-export --calibration) on
 * 12 phantoms of seed 2032; tested on 12 phantoms of seed 2033. Per test case: the true mean
 * foreground Dice, the card's predicted Dice on the case's reference-free signals, those signals
 * one by one, and the verdict alhvr-segment gives. Also the foreground calibration error of the
 * confidence map on the test set at the fitted temperature and at T = 1. Resumable: data and the
 * training run are kept in --dir and not redone; --no-train measures the run as far as it got.
 *
 * The same measurement for a run trained elsewhere (e.g. the shipped CT model's):
 *   npx tsx bench/calibration-3d.ts --run RUN_DIR --calibration DIR [--calibration DIR …] --test DIR [--test DIR …] --out FILE
 * calibrates on the --calibration folders exactly as `alhvr-export --calibration` does and tests
 * on every --test folder (nnU-Net raw layouts; e.g. in-domain phantoms and `alhvr-phantom --shift`
 * ones), reporting each folder and all of them pooled, with how the verdicts split the cases the
 * model got wrong (true Dice below the accept threshold) from the rest; nothing is generated or
 * trained.
 */
// Before anything that may load onnxruntime-node (the export package does): nothing leaves the machine.
import '@alhvr/inference/no-telemetry';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { expectedCalibrationError, estimateQuality, segmentationMetrics, spearman } from '@alhvr/core';
import { calibrate, calibrationCaseFiles, exportOnnx, loadRunForExport } from '@alhvr/export';
import { assessCase, computeCaseStats, openModelBytes, segmentVolume } from '@alhvr/inference/node';
import { loadCheckpoint, selectBackend, type TrainState } from '@alhvr/training';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
}
const all = (name: string) => process.argv.flatMap((a, i) => (a === `--${name}` ? [process.argv[i + 1]] : []));
const dir = arg('dir', 'bench/runs/calibration-3d');
const givenRun = arg('run', '');
const outPath = arg('out', 'bench/results/calibration-3d.json');
const say = (m: string) => process.stderr.write(`${m}\n`);

const DATA = { train: { seed: 2031, cases: 16 }, calibration: { seed: 2032, cases: 12 }, test: { seed: 2033, cases: 12 } };
const TRAIN = {
  network: 'vnet3d',
  format: 'nnunet',
  method: 'alhvr',
  labeledCases: 6,
  valCases: 2,
  iterations: 600,
  rampIterations: 600,
  batch: '2+2',
  patch: 32,
  widths: [4, 8, 16, 32, 32],
  preprocessing: { targetSpacing: [1.6, 1.6, 3] },
  valEvery: 100,
  checkpointEvery: 25,
  seed: 5,
  backend: 'wasm',
};

/** Where a folder of phantoms came from, as its dataset.json says. */
function describeData(folder: string): Record<string, unknown> {
  const meta = JSON.parse(readFileSync(join(folder, 'dataset.json'), 'utf8')) as Record<string, unknown>;
  return { folder, name: meta.name, seed: meta.seed, matrix: meta.matrix, cases: meta.numTraining };
}

const cli = (command: string, args: string[]) => {
  const r = spawnSync('npx', [command, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.status})`);
};

/** Wall and one-thread CPU seconds of a phase. */
async function timed<T>(phases: Record<string, { wallS: number; cpuS: number }>, name: string, work: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const c = process.cpuUsage();
  const result = await work();
  const used = process.cpuUsage(c);
  phases[name] = { wallS: Number(((performance.now() - t) / 1000).toFixed(1)), cpuS: Number(((used.user + used.system) / 1e6).toFixed(1)) };
  return result;
}

const calibrationDirs = givenRun ? all('calibration') : [join(dir, 'calibration')];
const testDirs = givenRun ? all('test') : [join(dir, 'test')];
if (givenRun && (!calibrationDirs.length || !testDirs.length)) throw new Error('--run needs --calibration DIR (one or more) and --test DIR (one or more)');
const runDir = givenRun || join(dir, 'run');
const latest = join(runDir, 'latest.ckpt');
if (!givenRun) {
  mkdirSync(dir, { recursive: true });
  for (const [name, d] of Object.entries(DATA)) {
    if (!existsSync(join(dir, name, 'dataset.json'))) cli('alhvr-phantom', ['--kind', 'abdomen-ct', '--cases', String(d.cases), '--seed', String(d.seed), '--matrix', '64', '--out', join(dir, name), '--quiet']);
  }
  const done = existsSync(latest) && (await loadCheckpoint<TrainState>(latest)).state.iteration >= TRAIN.iterations;
  if (!done && !process.argv.includes('--no-train')) {
    writeFileSync(join(dir, 'train.json'), JSON.stringify(TRAIN, null, 2));
    say(`training ${runDir} (${existsSync(latest) ? 'resumed' : 'new'})`);
    cli('alhvr-train', ['--config', join(dir, 'train.json'), '--data', join(dir, 'train'), '--out', runDir, '--threads', '1', ...(existsSync(latest) ? ['--resume'] : [])]);
  }
}

const load = [loadavg()];
const phases: Record<string, { wallS: number; cpuS: number }> = {};
await selectBackend('wasm', { threads: 1, log: () => {} });
const run = await loadRunForExport(runDir);
const trainedIterations = (await loadCheckpoint<TrainState>(latest)).state.iteration;
const calibrated = await timed(phases, 'calibrate', async () =>
  calibrate(run.students, run.card, (await Promise.all(calibrationDirs.map((d) => calibrationCaseFiles(d)))).flat(), {
    source: { kind: 'folder', name: calibrationDirs.map((d) => d.split('/').at(-1)).join('+') },
    onProgress: (stage, n, total) => say(`calibration: ${stage} ${n}/${total}`),
  }),
);
const card = calibrated.card;
const quality = calibrated.calibration.quality;
const model = await openModelBytes(exportOnnx(run.students, card).onnx, 'calibrated', { device: 'cpu', threads: 1 });
const untempered = await openModelBytes(exportOnnx(run.students, { ...card, calibration: { ...calibrated.calibration, temperature: 1 } }).onnx, 'T=1', { device: 'cpu', threads: 1 });
run.students.forEach((s) => s.dispose());
load.push(loadavg());

const foreground = card.classes.map((c) => c.value).filter((v) => v !== 0);
const cases: Record<string, unknown>[] = [];
const ece = { tempered: { conf: [] as number[], correct: [] as number[] }, untempered: { conf: [] as number[], correct: [] as number[] } };
const setName = (folder: string) => folder.replace(/\/+$/, '').split('/').at(-1)!;
await timed(phases, 'test', async () => {
  for (const testDir of testDirs) for (const c of await calibrationCaseFiles(testDir)) {
    const { image, label } = await c.load();
    const result = await segmentVolume(image, model.model);
    const stats = computeCaseStats(result.label, result.confidence, result.region, model.identity.card);
    const assessed = assessCase(stats, result.signals, model.identity.card);
    const metrics = segmentationMetrics(result.label, label, foreground);
    const plain = await segmentVolume(image, untempered.model);
    for (const [r, sink] of [[result, ece.tempered], [plain, ece.untempered]] as const) {
      for (let v = 0; v < label.data.length; v++) {
        if (label.data[v] === 0 && r.label.data[v] === 0) continue;
        sink.conf.push(r.confidence.data[v]);
        sink.correct.push(r.label.data[v] === label.data[v] ? 1 : 0);
      }
    }
    const s = assessed.signals;
    cases.push({
      set: setName(testDir),
      id: c.id,
      dice: Number((metrics.reduce((x, m) => x + m.dice, 0) / metrics.length).toFixed(4)),
      classDice: Object.fromEntries(metrics.map((m) => [m.label, Number(m.dice.toFixed(4))])),
      predictedDice: Number(estimateQuality(s, quality).predictedDice.toFixed(4)),
      verdict: assessed.triage.verdict,
      verdictFrom: assessed.quality ? 'predicted Dice' : 'fixed triage thresholds (no student agreement in 3D)',
      signals: { foregroundMeanConfidence: s.foregroundMeanConfidence, foregroundReliable: s.foregroundRegions?.[0] ?? null, foregroundEntropy: s.foregroundEntropy, agreement: s.agreement },
    });
    say(`${setName(testDir)}/${c.id}: Dice ${(cases.at(-1) as { dice: number }).dice}, predicted ${(cases.at(-1) as { predictedDice: number }).predictedDice}, ${assessed.triage.verdict}`);
  }
});
await model.model.release();
await untempered.model.release();
load.push(loadavg());

const r3 = (x: number) => Number(x.toFixed(3));
/** Ranking, error and verdicts over a group of test cases. */
function summarise(group: Record<string, unknown>[]) {
  const col = (key: string) => group.map((c) => c[key] as number);
  const signal = (key: string) => group.map((c) => (c.signals as Record<string, number>)[key] ?? 0);
  const dice = col('dice');
  // A case the model got wrong: true Dice below the card's accept threshold.
  const wrong = group.filter((c) => (c.dice as number) < quality.acceptDice);
  const right = group.filter((c) => (c.dice as number) >= quality.acceptDice);
  return {
    cases: group.length,
    meanDice: r3(dice.reduce((s, v) => s + v, 0) / dice.length),
    worstDice: r3(Math.min(...dice)),
    spearman: {
      predictedDice: r3(spearman(col('predictedDice'), dice)),
      foregroundMeanConfidence: r3(spearman(signal('foregroundMeanConfidence'), dice)),
      foregroundReliable: r3(spearman(signal('foregroundReliable'), dice)),
      negativeForegroundEntropy: r3(spearman(signal('foregroundEntropy').map((x) => -x), dice)),
    },
    meanAbsError: r3(group.reduce((s, c) => s + Math.abs((c.predictedDice as number) - (c.dice as number)), 0) / group.length),
    verdicts: Object.fromEntries(['accept', 'review', 'reject'].map((v) => [v, group.filter((c) => c.verdict === v).length])),
    verdictsAgainstTruth: {
      rule: `wrong = true Dice < ${quality.acceptDice} (the card's accept threshold); flagged = review or reject`,
      wrong: wrong.length,
      wrongFlagged: wrong.filter((c) => c.verdict !== 'accept').length,
      wrongAccepted: wrong.filter((c) => c.verdict === 'accept').map((c) => `${c.set}/${c.id} (Dice ${c.dice}, predicted ${c.predictedDice})`),
      right: right.length,
      rightAccepted: right.filter((c) => c.verdict === 'accept').length,
      rightFlagged: right.filter((c) => c.verdict !== 'accept').map((c) => `${c.set}/${c.id} (Dice ${c.dice}, predicted ${c.predictedDice}, ${c.verdict})`),
    },
  };
}
const dice = cases.map((c) => c.dice as number);
const result = {
  what: 'Calibrated 3D (vnet3d) model: does the predicted Dice track the true Dice on unseen CT phantoms? (bench/calibration-3d.ts)',
  setup: givenRun
    ? { run: runDir, config: run.card.training, calibration: calibrationDirs.map(describeData), test: testDirs.map(describeData), trainedIterations, students: run.sources.map((f) => f.split('/').at(-1)) }
    : { data: DATA, matrix: 64, train: TRAIN, trainedIterations, students: run.sources.map((f) => f.split('/').at(-1)) },
  machine: { cpus: cpus().length, loadavg1: load.map((l) => r3(l[0])), note: 'load average (1 min) at the start, after calibration and after the test' },
  phases,
  calibration: {
    temperature: calibrated.calibration.temperature,
    gamma: card.regions.gamma,
    gammaRule: calibrated.calibration.gammaRule,
    eceFitSample: calibrated.calibration.ece,
    thresholds: { acceptDice: quality.acceptDice, rejectDice: quality.rejectDice },
    caseModel: quality.case,
    inSample: { spearman: r3(spearman(calibrated.cases.map((c) => c.predictedDice), calibrated.cases.map((c) => c.dice))), dice: calibrated.cases.map((c) => r3(c.dice)), predicted: calibrated.cases.map((c) => r3(c.predictedDice)) },
  },
  test: {
    ...summarise(cases),
    ...(testDirs.length > 1 ? { bySet: Object.fromEntries(testDirs.map((d) => [setName(d), summarise(cases.filter((c) => c.set === setName(d)))])) } : {}),
    foregroundEce: {
      fitted: r3(expectedCalibrationError(Float32Array.from(ece.tempered.conf), Uint8Array.from(ece.tempered.correct))),
      temperature1: r3(expectedCalibrationError(Float32Array.from(ece.untempered.conf), Uint8Array.from(ece.untempered.correct))),
    },
    perCase: cases,
  },
  // Spearman says nothing when the true Dice does not vary (e.g. a model that finds no organ).
  finding:
    new Set(dice).size < 2
      ? `degenerate: every test case has Dice ${dice[0]} (the model's best validation Dice is ${JSON.stringify(card.training.bestValidation ?? null)}), so there is nothing for the predicted Dice to track; train longer or wider before reading the Spearman`
      : 'see test.spearman',
  createdAt: new Date().toISOString(),
};
writeFileSync(outPath, `${JSON.stringify(result, null, 2)}\n`);
say(`Spearman predicted vs true Dice on ${cases.length} unseen phantoms: ${result.test.spearman.predictedDice}; wrote ${outPath}`);
