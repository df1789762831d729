/**
 * A reduced-precision 3D model against the fp32 model it was exported from (issue 17's file size,
 * issue 18's offering rule): both run by `alhvr-segment` on the same unseen volumes, then per case
 * the Dice change (alhvr-eval), label and region agreement with fp32, the verdicts, the
 * foreground confidence's ECE, and each model's segment wall time in this run.
 *
 *   npx tsx bench/precision-3d.ts --fp32 A.onnx --variant B.onnx --test DIR --out bench/results/F.json
 *
 * DIR is an nnU-Net raw folder (imagesTr + labelsTr) no choice for either model looked at.
 * Offered (the rule of bench/precision.ts): mean Dice loss ≤ 0.005 and foreground ECE no more
 * than 0.01 above fp32.
 */
import '@alhvr/inference/no-telemetry';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectedCalibrationError } from '@alhvr/core';
import { readNiftiFile, writeFileAtomic } from '@alhvr/core/node';
import { readOnnxModelCard } from '@alhvr/export';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const arg = (name: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || !process.argv[i + 1]) throw new Error(`bench/precision-3d.ts: --${name} is required`);
  return process.argv[i + 1];
};
const MODELS = { fp32: arg('fp32'), variant: arg('variant') };
const TEST = arg('test');
const OUT = arg('out');
const WORK = join(here, 'runs', 'precision-3d');
const log = (m: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const round = (x: number, d = 4) => Math.round(x * 10 ** d) / 10 ** d;
type Which = keyof typeof MODELS;

const wall = new Map<Which, number>();
const load = new Map<Which, number[]>();
for (const which of ['fp32', 'variant'] as const) {
  const out = join(WORK, which);
  rmSync(out, { recursive: true, force: true });
  log(`segmenting ${TEST}/imagesTr with ${which} (${MODELS[which]})`);
  const before = loadavg()[0];
  const t0 = performance.now();
  execFileSync(process.execPath, [join(repo, 'cli', 'bin', 'alhvr-segment.js'), join(TEST, 'imagesTr'), '--model', MODELS[which], '--out', out, '--quiet'], { stdio: ['ignore', 'ignore', 'inherit'] });
  wall.set(which, (performance.now() - t0) / 1000);
  load.set(which, [before, loadavg()[0]]);
}

function diceByCase(which: Which): Map<string, number> {
  const json = execFileSync(process.execPath, [join(repo, 'cli', 'bin', 'alhvr-eval.js'), '--pred', join(WORK, which), '--ref', join(TEST, 'labelsTr'), '--json', '--quiet'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const doc = JSON.parse(json) as { cases: { id: string; metrics: { dice: number }[] }[] };
  return new Map(doc.cases.map((c) => [c.id, c.metrics.reduce((s, m) => s + m.dice, 0) / c.metrics.length]));
}
const verdict = (which: Which, folder: string): string => (JSON.parse(readFileSync(join(WORK, which, folder, 'report.json'), 'utf8')) as { triage: { verdict: string } }).triage.verdict;

const folders = readdirSync(join(WORK, 'fp32')).filter((d) => existsSync(join(WORK, 'fp32', d, 'mask.nii.gz'))).sort();
const truthFile = (folder: string) => join(TEST, 'labelsTr', `${folder.replace(/_0000$/, '')}.nii.gz`);
const dice = { fp32: diceByCase('fp32'), variant: diceByCase('variant') };
const conf = { fp32: [] as number[], variant: [] as number[] };
const correct = { fp32: [] as number[], variant: [] as number[] };
let voxels = 0;
let labelsAgree = 0;
let regionsAgree = 0;
let maxConfidenceChange = 0;
const verdictChanges: { case: string; fp32: string; variant: string }[] = [];
for (const d of folders) {
  const truth = (await readNiftiFile(truthFile(d))).data;
  const maps = {} as Record<Which, { label: Uint8Array; region: Uint8Array; confidence: ArrayLike<number> }>;
  for (const which of ['fp32', 'variant'] as const) {
    const read = async (name: string) => (await readNiftiFile(join(WORK, which, d, `${name}.nii.gz`))).data;
    maps[which] = { label: (await read('mask')) as Uint8Array, region: (await read('region')) as Uint8Array, confidence: await read('confidence') };
    const { label, confidence } = maps[which];
    for (let i = 0; i < label.length; i++) {
      if (label[i] !== 0) {
        conf[which].push(Number(confidence[i]));
        correct[which].push(label[i] === Number(truth[i]) ? 1 : 0);
      }
    }
  }
  const a = maps.fp32;
  const b = maps.variant;
  for (let i = 0; i < a.label.length; i++) {
    if (a.label[i] === b.label[i]) labelsAgree++;
    if (a.region[i] === b.region[i]) regionsAgree++;
    maxConfidenceChange = Math.max(maxConfidenceChange, Math.abs(Number(a.confidence[i]) - Number(b.confidence[i])));
  }
  voxels += a.label.length;
  const [va, vb] = [verdict('fp32', d), verdict('variant', d)];
  if (va !== vb) verdictChanges.push({ case: d, fp32: va, variant: vb });
}

const ece = { fp32: expectedCalibrationError(Float32Array.from(conf.fp32), Uint8Array.from(correct.fp32)), variant: expectedCalibrationError(Float32Array.from(conf.variant), Uint8Array.from(correct.variant)) };
const ids = [...dice.fp32.keys()];
const changes = ids.map((id) => ({ id, change: dice.variant.get(id)! - dice.fp32.get(id)! }));
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const meanChange = mean(changes.map((c) => c.change));
const worst = changes.reduce((w, c) => (c.change < w.change ? c : w), changes[0]);
const offered = -meanChange <= 0.005 && ece.variant - ece.fp32 <= 0.01;
const describe = (which: Which) => {
  const card = readOnnxModelCard(readFileSync(MODELS[which]));
  return {
    file: basename(MODELS[which]),
    fileMB: round(statSync(MODELS[which]).size / 1e6, 2),
    precision: card.precision?.network ?? 'fp32',
    meanDice: round(mean([...dice[which].values()])),
    foregroundConfidenceECE: round(ece[which]),
    segmentWallSeconds: round(wall.get(which)!, 1),
    loadAverageBeforeAfter: load.get(which)!.map((x) => round(x, 2)),
  };
};
const doc = {
  what: 'a reduced-precision 3D model against its fp32 export, both run by alhvr-segment on the same unseen volumes',
  test: { folder: TEST, volumes: folders.length },
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown' },
  fp32: describe('fp32'),
  variant: describe('variant'),
  meanDiceChange: round(meanChange, 5),
  worstCaseDiceChange: { case: worst.id, change: round(worst.change, 5) },
  labelAgreement: round(labelsAgree / voxels, 6),
  regionAgreement: round(regionsAgree / voxels, 6),
  maxConfidenceChange: round(maxConfidenceChange, 5),
  eceChange: round(ece.variant - ece.fp32, 5),
  verdictChanges,
  offeredRule: 'mean Dice loss vs fp32 ≤ 0.005 and foreground ECE no more than 0.01 above fp32',
  offered,
  createdAt: new Date().toISOString(),
};
await writeFileAtomic(OUT, `${JSON.stringify(doc, null, 1)}\n`);
log(`variant: Dice change ${meanChange.toFixed(5)} (worst ${worst.change.toFixed(5)} ${worst.id}), labels agree ${(100 * labelsAgree / voxels).toFixed(4)} %, regions ${(100 * regionsAgree / voxels).toFixed(4)} %, ECE ${ece.fp32.toFixed(4)} → ${ece.variant.toFixed(4)}, verdicts changed ${verdictChanges.length}; ${offered ? 'offered' : 'not offered'}; wrote ${OUT}`);
