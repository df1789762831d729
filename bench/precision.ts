/**
 * Reduced-precision exports of the shipped model's run (issue 18): fp32, fp16 and int8 made from
 * the same checkpoints with the same calibrated card, then, on unseen phantoms, their Dice change
 * against fp32, label agreement with fp32, the confidence's calibration (ECE over predicted
 * foreground) and speed (ONNX Runtime session alone, and alhvr-segment end to end), all in one run.
 *
 *   npx tsx bench/precision.ts [--run DIR] [--test DIR] [--reps R] [--threads T]
 *
 * The run folder is only read: its best-a/best-b/latest checkpoints and config.json are copied
 * into bench/runs/precision/run first (the run may still be training). The card is calibrated
 * once on the shipped model's three calibration folders, as alhvr-export does, and the three
 * exports share it; int8's activation scales come from the same volumes.
 * This 2-core machine is shared with trainings: absolute slices/s move with the load, so speeds
 * are compared as same-run ratios against fp32 (repetitions interleaved, medians).
 * Writes bench/results/precision.json.
 */
import '@alhvr/inference/no-telemetry';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectedCalibrationError, type Volume } from '@alhvr/core';
import { readNiftiFile, writeFileAtomic } from '@alhvr/core/node';
import { openModelBytes, type SliceOutputKind } from '@alhvr/inference/node';
import { selectBackend } from '@alhvr/training';
import { calibrate, exportOnnx, exportOnnxInt8, loadRunForExport, modelInputSlices, readCalibrationCases, type ModelInputBatch } from '@alhvr/export';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const SOURCE_RUN = arg('run', '/work/runs/alhvr-default');
const TEST = arg('test', '/work/runs/test777');
const CALIBRATION = ['/work/runs/calib-s31', '/work/runs/calib-s32-shift0.3', '/work/runs/calib-s33-shift0.8'];
const REPS = Number(arg('reps', '3'));
const THREADS = Number(arg('threads', '2'));
const WORK = join(here, 'runs', 'precision');
const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
type P = (typeof PRECISIONS)[number];
const log = (m: string) => process.stderr.write(`${m}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d = 4) => Number(x.toFixed(d));

// 1. A frozen copy of the run's checkpoints.
const runCopy = join(WORK, 'run');
mkdirSync(runCopy, { recursive: true });
for (const f of ['best-a.ckpt', 'best-b.ckpt', 'latest.ckpt', 'config.json']) copyFileSync(join(SOURCE_RUN, f), join(runCopy, f));

// 2. One calibrated card, three exports.
await selectBackend('wasm', { threads: THREADS, log: () => {} });
const run = await loadRunForExport(runCopy);
const cases = [];
for (const root of CALIBRATION) for (const c of await readCalibrationCases(root)) cases.push({ ...c, id: `${basename(root)}/${c.id}` });
const calibrationName = CALIBRATION.map((r) => basename(r)).join('+');
log(`calibrating on ${cases.length} volumes (${calibrationName})`);
const calibrated = await calibrate(run.students, run.card, cases, { source: { kind: 'folder', name: calibrationName } });
const models = new Map<P, Uint8Array>();
models.set('fp32', exportOnnx(run.students, calibrated.card).onnx);
models.set('fp16', exportOnnx(run.students, calibrated.card, { precision: 'fp16' }).onnx);
const int8 = await exportOnnxInt8(run.students, calibrated.card, { volumes: cases.map((c) => c.image) }, { source: `folder ${calibrationName}`, cases: cases.length });
models.set('int8', int8.onnx);
for (const s of run.students) s.dispose();
const card = int8.card;
for (const p of PRECISIONS) await writeFileAtomic(join(WORK, `${p}.onnx`), models.get(p)!);
log(`exported ${PRECISIONS.map((p) => `${p} ${(models.get(p)!.length / 1e6).toFixed(2)} MB`).join(', ')}`);

// 3. The unseen phantoms' model inputs, for the session alone.
const images = readdirSync(join(TEST, 'imagesTr')).filter((f) => f.endsWith('.nii.gz')).sort();
const batches: ModelInputBatch[] = [];
for (const f of images) batches.push(...(await modelInputSlices((await readNiftiFile(join(TEST, 'imagesTr', f))) as Volume, card)));
const slices = batches.reduce((s, b) => s + b.n, 0);
log(`${images.length} test volumes, ${slices} slices`);
const FETCH: SliceOutputKind[] = ['label', 'confidence', 'probabilities', 'region', 'studentLabel'];

async function sessionSlicesPerSecond(p: P): Promise<number> {
  const { model } = await openModelBytes(models.get(p)!, `${p}.onnx`, { device: 'cpu', threads: THREADS });
  try {
    await model.run(batches[0].data, batches[0].n, batches[0].height, batches[0].width, FETCH); // warm-up
    const t0 = performance.now();
    for (const b of batches) await model.run(b.data, b.n, b.height, b.width, FETCH);
    return slices / ((performance.now() - t0) / 1000);
  } finally {
    await model.release();
  }
}

function segmentSlicesPerSecond(p: P, out: string): number {
  rmSync(out, { recursive: true, force: true });
  const t0 = performance.now();
  execFileSync(process.execPath, [join(repo, 'cli', 'bin', 'alhvr-segment.js'), join(TEST, 'imagesTr'), '--model', join(WORK, `${p}.onnx`), '--out', out, '--device', 'cpu', '--threads', String(THREADS), '--quiet'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return slices / ((performance.now() - t0) / 1000);
}

// 4. Speed, interleaved repetitions.
const speed = { session: new Map<P, number[]>(), segment: new Map<P, number[]>() };
for (const p of PRECISIONS) {
  speed.session.set(p, []);
  speed.segment.set(p, []);
}
const loadBefore = loadavg();
for (let r = 0; r < REPS; r++) {
  for (const p of PRECISIONS) speed.session.get(p)!.push(await sessionSlicesPerSecond(p));
  for (const p of PRECISIONS) speed.segment.get(p)!.push(segmentSlicesPerSecond(p, join(WORK, `seg-${p}`)));
  log(`rep ${r + 1}/${REPS}: session ${PRECISIONS.map((p) => `${p} ${speed.session.get(p)!.at(-1)!.toFixed(1)}`).join(', ')}; segment ${PRECISIONS.map((p) => `${p} ${speed.segment.get(p)!.at(-1)!.toFixed(1)}`).join(', ')} slices/s`);
}
const loadAfter = loadavg();

// 5. Accuracy: Dice by alhvr-eval, agreement and ECE from the written maps.
interface Dices { [caseId: string]: number }
function diceByCase(p: P): Dices {
  const json = execFileSync(process.execPath, [join(repo, 'cli', 'bin', 'alhvr-eval.js'), '--pred', join(WORK, `seg-${p}`), '--ref', join(TEST, 'labelsTr'), '--json', '--quiet'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const doc = JSON.parse(json) as { cases: { id: string; metrics: { dice: number }[] }[] };
  return Object.fromEntries(doc.cases.map((c) => [c.id, c.metrics.reduce((s, m) => s + m.dice, 0) / c.metrics.length]));
}
const caseFolders = readdirSync(join(WORK, 'seg-fp32')).filter((d) => existsSync(join(WORK, 'seg-fp32', d, 'mask.nii.gz'))).sort();
const truthFile = (folder: string) => join(TEST, 'labelsTr', `${folder.replace(/_0000$/, '')}.nii.gz`);
const fp32Labels = new Map<string, Uint8Array>();
for (const d of caseFolders) fp32Labels.set(d, (await readNiftiFile(join(WORK, 'seg-fp32', d, 'mask.nii.gz'))).data as Uint8Array);

const dice = new Map(PRECISIONS.map((p) => [p, diceByCase(p)]));
const results: Record<string, unknown> = {};
const eceOf = new Map<P, number>();
for (const p of PRECISIONS) {
  let agree = 0;
  let voxels = 0;
  const conf: number[] = [];
  const correct: number[] = [];
  for (const d of caseFolders) {
    const label = (await readNiftiFile(join(WORK, `seg-${p}`, d, 'mask.nii.gz'))).data as Uint8Array;
    const confidence = (await readNiftiFile(join(WORK, `seg-${p}`, d, 'confidence.nii.gz'))).data;
    const truth = (await readNiftiFile(truthFile(d))).data;
    const ref = fp32Labels.get(d)!;
    for (let i = 0; i < label.length; i++) {
      if (label[i] === ref[i]) agree++;
      if (label[i] !== 0) {
        conf.push(Number(confidence[i]));
        correct.push(label[i] === Number(truth[i]) ? 1 : 0);
      }
    }
    voxels += label.length;
  }
  const ece = expectedCalibrationError(Float32Array.from(conf), Uint8Array.from(correct));
  eceOf.set(p, ece);
  const changes = Object.entries(dice.get(p)!).map(([id, v]) => ({ id, change: v - dice.get('fp32')![id] }));
  const meanDice = Object.values(dice.get(p)!).reduce((s, v) => s + v, 0) / changes.length;
  const meanChange = changes.reduce((s, c) => s + c.change, 0) / changes.length;
  const worst = changes.reduce((w, c) => (c.change < w.change ? c : w), changes[0]);
  // The load moves between repetitions (2–3× here): compare within each repetition, then take the median.
  const paired = (m: Map<P, number[]>) => m.get(p)!.map((x, r) => round(x / m.get('fp32')![r], 3));
  const ratio = (m: Map<P, number[]>) => median(paired(m));
  const eceChange = ece - eceOf.get('fp32')!;
  const offered = p === 'fp32' || (-meanChange <= 0.005 && eceChange <= 0.01);
  results[p] = {
    fileMB: round(models.get(p)!.length / 1e6, 2),
    meanForegroundDice: round(meanDice),
    meanDiceChangeVsFp32: round(meanChange, 5),
    worstCaseDiceChangeVsFp32: { case: worst.id, change: round(worst.change, 5) },
    labelAgreementWithFp32: round(agree / voxels, 6),
    foregroundConfidenceECE: round(ece),
    eceChangeVsFp32: round(eceChange),
    sessionSlicesPerSecond: { median: round(median(speed.session.get(p)!), 1), reps: speed.session.get(p)!.map((x) => round(x, 1)), ratioToFp32PerRep: paired(speed.session), ratioToFp32: ratio(speed.session) },
    segmentSlicesPerSecond: { median: round(median(speed.segment.get(p)!), 1), reps: speed.segment.get(p)!.map((x) => round(x, 1)), ratioToFp32PerRep: paired(speed.segment), ratioToFp32: ratio(speed.segment) },
    offered,
  };
  log(`${p}: Dice ${meanDice.toFixed(4)} (Δ ${meanChange.toFixed(5)}, worst ${worst.change.toFixed(5)} ${worst.id}), agreement ${(100 * agree / voxels).toFixed(3)} %, ECE ${ece.toFixed(4)}, session ×${ratio(speed.session)}, segment ×${ratio(speed.segment)}${offered ? '' : ' — not offered'}`);
}

const doc = {
  what: 'fp32 / fp16 / int8 exports of one run with one calibrated card, scored on unseen phantoms (issue 18)',
  run: SOURCE_RUN,
  checkpoints: 'best-a.ckpt, best-b.ckpt (copied to bench/runs/precision/run at the start)',
  calibration: { folders: CALIBRATION.map((r) => basename(r)), volumes: cases.length, temperature: calibrated.calibration.temperature, gamma: calibrated.card.regions.gamma },
  int8: { scheme: 'QDQ: int8 weights per output channel (symmetric, ±63), uint8 activations per tensor (min-max), int32 bias; logits conv and heads float32', activationScales: card.precision?.activationScales },
  test: { folder: TEST, volumes: images.length, slices, seed: 777 },
  offeredRule: 'mean Dice loss vs fp32 ≤ 0.005 and foreground ECE no more than 0.01 above fp32',
  machine: { cpu: cpus()[0]?.model, cores: cpus().length, threads: THREADS, loadAverage1mBeforeAfter: [round(loadBefore[0], 2), round(loadAfter[0], 2)] },
  note: 'The machine runs two trainings alongside: compare the same-run ratios to fp32, not absolute slices/s. Session: ONNX Runtime alone on the pipeline\'s preprocessed slices (batch 8, the pipeline\'s outputs fetched). Segment: alhvr-segment on the folder end to end (process start, reading, writing every output).',
  reps: REPS,
  results,
  measuredAt: new Date().toISOString(),
};
mkdirSync(join(here, 'results'), { recursive: true });
await writeFileAtomic(join(here, 'results', 'precision.json'), `${JSON.stringify(doc, null, 2)}\n`);
log('wrote bench/results/precision.json');
