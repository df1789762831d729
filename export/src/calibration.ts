/**
 * Calibration at export: on labelled volumes the students did not train on, fit the temperature
 * of the students' softmax, choose γ of the region map, and fit the case-quality model and its
 * verdict thresholds. Everything is measured through the inference pipeline itself (the same
 * preprocessing, graph and signals a user's run will see), and the result goes into the card.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readNiftiFile } from '@alhvr/core/node';
import {
  applyLinear,
  InputError,
  betaQuantileMean,
  CLASS_QUALITY_FEATURES,
  CLASS_QUALITY_SIGNS,
  QUALITY_SIGNS,
  caseFeatures,
  classFeatures,
  expectedCalibrationError,
  fitLinear,
  logVolume,
  quantile,
  QUALITY_FEATURES,
  segmentationMetrics,
  volumeOutlier,
  type CaseSignals,
  type ModelCalibration,
  type QualityModel,
  type Volume,
  type VolumeReference,
} from '@alhvr/core';
import { caseSignals, computeCaseStats, openModelBytes, segmentVolume, voxelVolumeMm3, type SliceOutputs } from '@alhvr/inference/node';
import { sampleWindowVoxels, type VoxelSample } from './calibration-windows.js';
import { exportOnnx, type ExportCard } from './export-onnx.js';

export { sampleWindowVoxels, windowOrigins, WINDOW_SAMPLE_CAPACITY, type VoxelSample } from './calibration-windows.js';

export interface CalibrationCase {
  id: string;
  image: Volume;
  label: Volume<Uint8Array>;
}

/**
 * A calibration case read from disk when its turn comes and let go after: CT-sized volumes are
 * calibrated one at a time (each is read twice, once per pass, rather than all held at once).
 */
export interface CalibrationCaseFile {
  id: string;
  load(): Promise<{ image: Volume; label: Volume<Uint8Array> }>;
}

const openCase = async (c: CalibrationCase | CalibrationCaseFile): Promise<CalibrationCase> => ('load' in c ? { id: c.id, ...(await c.load()) } : c);

export interface CalibrationOptions {
  source: { kind: 'validation' | 'folder'; name: string };
  /** Share of correctly labelled foreground that region 1 must hold (γ's coverage rule). Default 0.9. */
  regionCoverage?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface CalibrationResult {
  card: ExportCard;
  calibration: ModelCalibration;
  /** Per calibration case: the signals and the true mean foreground Dice (for reports). */
  cases: { id: string; signals: CaseSignals; dice: number; predictedDice: number }[];
}

/** Ensemble of the two tempered softmaxes at one voxel; writes into `p`, returns the students' max probabilities. */
function ensemble(s: VoxelSample, v: number, invT: number, p: Float64Array, ea: Float64Array, eb: Float64Array): [number, number] {
  const C = s.classes;
  let ma = -Infinity;
  let mb = -Infinity;
  for (let c = 0; c < C; c++) {
    ma = Math.max(ma, s.logitsA[v * C + c] * invT);
    mb = Math.max(mb, s.logitsB[v * C + c] * invT);
  }
  let sa = 0;
  let sb = 0;
  for (let c = 0; c < C; c++) {
    ea[c] = Math.exp(s.logitsA[v * C + c] * invT - ma);
    eb[c] = Math.exp(s.logitsB[v * C + c] * invT - mb);
    sa += ea[c];
    sb += eb[c];
  }
  let ca = 0;
  let cb = 0;
  for (let c = 0; c < C; c++) {
    const pa = ea[c] / sa;
    const pb = eb[c] / sb;
    ca = Math.max(ca, pa);
    cb = Math.max(cb, pb);
    p[c] = (pa + pb) / 2;
  }
  return [ca, cb];
}

function negativeLogLikelihood(s: VoxelSample, invT: number): number {
  const p = new Float64Array(s.classes);
  const ea = new Float64Array(s.classes);
  const eb = new Float64Array(s.classes);
  let nll = 0;
  for (let v = 0; v < s.truth.length; v++) {
    ensemble(s, v, invT, p, ea, eb);
    nll -= Math.log(Math.max(p[s.truth[v]], 1e-12));
  }
  return nll / Math.max(1, s.truth.length);
}

/**
 * Temperature of least foreground calibration error: a log-spaced grid over [1/4, 10], refined
 * around its best point. (The NLL optimum, `fitTemperature`, was measured to raise foreground
 * ECE on the shipped model's calibration set — 0.18 → 0.24 — because a few confidently wrong
 * voxels of failed cases dominate the likelihood; ECE is what the confidence map promises.)
 */
export function fitTemperatureEce(s: VoxelSample): number {
  const grid = (lo: number, hi: number, steps: number) => Array.from({ length: steps }, (_, i) => Math.exp(Math.log(lo) + ((Math.log(hi) - Math.log(lo)) * i) / (steps - 1)));
  let best = 1;
  const eceAt = (sample: VoxelSample, T: number) => voxelFigures(sample, T).ece;
  let bestEce = eceAt(s, 1);
  for (const T of grid(0.25, 10, 33)) {
    const e = eceAt(s, T);
    if (e < bestEce) [best, bestEce] = [T, e];
  }
  for (const T of grid(best / 1.15, best * 1.15, 9)) {
    const e = eceAt(s, T);
    if (e < bestEce) [best, bestEce] = [T, e];
  }
  return best;
}

/** Temperature minimising the ensemble's NLL: golden-section search on log T in [1/20, 20]. */
export function fitTemperature(s: VoxelSample): number {
  const phi = (Math.sqrt(5) - 1) / 2;
  let lo = Math.log(0.05);
  let hi = Math.log(20);
  const f = (u: number) => negativeLogLikelihood(s, Math.exp(-u));
  let x1 = hi - phi * (hi - lo);
  let x2 = lo + phi * (hi - lo);
  let f1 = f(x1);
  let f2 = f(x2);
  for (let it = 0; it < 40; it++) {
    if (f1 < f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - phi * (hi - lo);
      f1 = f(x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + phi * (hi - lo);
      f2 = f(x2);
    }
  }
  return Math.exp((lo + hi) / 2);
}

/** Voxel-level figures at temperature T: ECE, the students' confidences, correctness. */
function voxelFigures(s: VoxelSample, T: number) {
  const n = s.truth.length;
  const conf = new Float32Array(n);
  const correct = new Uint8Array(n);
  const minStudent = new Float32Array(n);
  const meanStudent = new Float32Array(n);
  const truthFg = new Uint8Array(n);
  const p = new Float64Array(s.classes);
  const ea = new Float64Array(s.classes);
  const eb = new Float64Array(s.classes);
  for (let v = 0; v < n; v++) {
    const [ca, cb] = ensemble(s, v, 1 / T, p, ea, eb);
    let best = 0;
    for (let c = 1; c < s.classes; c++) if (p[c] > p[best]) best = c;
    conf[v] = p[best];
    correct[v] = best === s.truth[v] ? 1 : 0;
    minStudent[v] = Math.min(ca, cb);
    meanStudent[v] = (ca + cb) / 2;
    truthFg[v] = s.truth[v] !== 0 ? 1 : 0;
  }
  return { conf, correct, minStudent, meanStudent, truthFg, ece: expectedCalibrationError(conf, correct) };
}

/** Share of wrongly labelled voxels among those whose students put them in region 1, 2, 3. */
export function regionErrorRates(minStudent: Float32Array, maxStudentOf: (v: number) => number, correct: Uint8Array, gamma: number): [number, number, number] {
  const count = [0, 0, 0];
  const wrong = [0, 0, 0];
  for (let v = 0; v < correct.length; v++) {
    const above = (minStudent[v] > gamma ? 1 : 0) + (maxStudentOf(v) > gamma ? 1 : 0);
    const r = 2 - above;
    count[r]++;
    if (!correct[v]) wrong[r]++;
  }
  return [0, 1, 2].map((r) => (count[r] ? wrong[r] / count[r] : 0)) as [number, number, number];
}

/**
 * Verdict thresholds on the predicted Dice, chosen on the calibration cases: reject below the
 * lowest prediction of any case whose true Dice is ≥ 0.85 (so such a case was never rejected),
 * accept above the highest prediction of any case whose true Dice is < 0.7 (so none was accepted).
 */
export function chooseThresholds(predicted: number[], truth: number[]): { acceptDice: number; rejectDice: number } {
  const good = predicted.filter((_, i) => truth[i] >= 0.85);
  const poor = predicted.filter((_, i) => truth[i] < 0.7);
  const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
  const rejectDice = clamp(good.length ? Math.min(...good) - 0.02 : 0.5, 0.3, 0.7);
  const acceptDice = clamp(poor.length ? Math.max(...poor) + 0.02 : 0.8, rejectDice, 0.97);
  return { acceptDice: round(acceptDice), rejectDice: round(rejectDice) };
}

const round = (x: number, digits = 4) => Number(x.toFixed(digits));

function meanStd(values: number[]): [number, number] {
  const m = values.reduce((s, v) => s + v, 0) / values.length;
  return [m, Math.sqrt(values.reduce((s, v) => s + (v - m) ** 2, 0) / values.length)];
}

/**
 * Fit temperature, γ and the quality model on `cases`; returns the card to export with them. A 3D
 * card (`dimensions: 3`) is measured through the sliding window of `alhvr-segment`
 * (calibration-windows.ts); everything after the voxel gathering is the same code for both.
 */
export async function calibrate(students: readonly unknown[], card: ExportCard, cases: readonly (CalibrationCase | CalibrationCaseFile)[], opts: CalibrationOptions): Promise<CalibrationResult> {
  if (students.length !== 2) throw new Error('calibration needs the two-student ensemble');
  if (cases.length < 3) throw new Error(`calibration needs at least 3 labelled volumes, got ${cases.length}`);
  const foreground = card.classes.map((c) => c.value).filter((v) => v !== 0);
  const C = card.classes.length;

  // 1. Raw logits of both students at model resolution, with the reference resized alike.
  const raw = exportOnnx(students, { ...card, calibration: undefined }, { debugLogits: true });
  const rawModel = await openModelBytes(raw.onnx, 'calibration model', { device: 'cpu' });
  const roi: VoxelSample = { classes: C, logitsA: [], logitsB: [], truth: [] };
  const uniform: VoxelSample = { classes: C, logitsA: [], logitsB: [], truth: [] };
  let pixel = 0;
  // Per case, each foreground class's reference volume (mL), for the quality model's volume check.
  const referenceMl: Map<number, number>[] = [];
  try {
    for (const [i, entry] of cases.entries()) {
      opts.signal?.throwIfAborted();
      const c = await openCase(entry);
      const mm3 = voxelVolumeMm3(c.label.affine);
      referenceMl.push(new Map(foreground.map((value) => {
        let n = 0;
        for (const l of c.label.data) if (l === value) n++;
        return [value, (n * mm3) / 1000];
      })));
      if (card.dimensions === 3) {
        await sampleWindowVoxels(c.image, c.label, rawModel.model, { roi, uniform }, { seed: i + 1, signal: opts.signal });
        opts.onProgress?.('voxels', i + 1, cases.length);
        continue;
      }
      await segmentVolume(c.image, rawModel.model, {
        tap: {
          fetch: ['logitsA', 'logitsB'],
          reference: c.label,
          onBatch(out: SliceOutputs, ref, count, plane) {
            const la = out.logitsA as Float32Array;
            const lb = out.logitsB as Float32Array;
            for (let b = 0; b < count; b++) {
              for (let q = 0; q < plane; q++, pixel++) {
                const argmax = (l: Float32Array) => {
                  let best = 0;
                  for (let k = 1; k < C; k++) if (l[(b * C + k) * plane + q] > l[(b * C + best) * plane + q]) best = k;
                  return best;
                };
                const truth = ref![b * plane + q];
                const inRoi = truth !== 0 || argmax(la) !== 0 || argmax(lb) !== 0;
                // Every 8th pixel of the whole volume for the β rule; every foreground pixel for the rest.
                for (const [sample, take] of [[roi, inRoi], [uniform, pixel % 8 === 0]] as const) {
                  if (!take) continue;
                  for (let k = 0; k < C; k++) {
                    sample.logitsA.push(la[(b * C + k) * plane + q]);
                    sample.logitsB.push(lb[(b * C + k) * plane + q]);
                  }
                  sample.truth.push(truth);
                }
              }
            }
          },
        },
      });
      opts.onProgress?.('voxels', i + 1, cases.length);
    }
  } finally {
    await rawModel.model.release();
  }

  // 2. Temperature, then γ on the tempered students.
  const temperature = round(fitTemperatureEce(roi), 4);
  const before = voxelFigures(roi, 1);
  const after = voxelFigures(roi, temperature);
  const coverage = opts.regionCoverage ?? 0.9;
  const correctFg = after.minStudent.filter((_, v) => after.correct[v] === 1 && after.truthFg[v] === 1);
  const betaGamma = round(betaQuantileMean(voxelFigures(uniform, temperature).meanStudent, card.regions.beta), 4);
  // A model that labels no foreground voxel correctly has nothing to cover: fall back to the β rule.
  const coverageRule = correctFg.length > 0;
  const gamma = coverageRule ? round(Math.min(0.9999, quantile(correctFg, 1 - coverage)), 4) : betaGamma;
  const maxStudent = (v: number) => 2 * after.meanStudent[v] - after.minStudent[v];
  const errorRates = regionErrorRates(after.minStudent, maxStudent, after.correct, gamma).map((r) => round(r)) as [number, number, number];

  // 3. The calibrated graph, run as users will run it, gives each case's signals and Dice.
  const volumes: VolumeReference[] = foreground.map((value) => {
    const logs = referenceMl.map((ml) => logVolume(ml.get(value)!));
    const [logMean, logStd] = meanStd(logs);
    return { value, logMean: round(logMean), logStd: round(logStd) };
  });
  const tempered: ExportCard = { ...card, regions: { ...card.regions, gamma, gammaSource: 'calibrated' }, calibration: placeholderCalibration(temperature) };
  const model = await openModelBytes(exportOnnx(students, tempered).onnx, 'calibrated model', { device: 'cpu' });
  const measured: { id: string; signals: CaseSignals; dice: number; classDice: Map<number, number> }[] = [];
  try {
    for (const [i, entry] of cases.entries()) {
      opts.signal?.throwIfAborted();
      const c = await openCase(entry);
      const result = await segmentVolume(c.image, model.model, { signal: opts.signal });
      const stats = computeCaseStats(result.label, result.confidence, result.region, model.identity.card);
      const signals = caseSignals(stats, result.signals);
      const metrics = segmentationMetrics(result.label, c.label, foreground);
      const classDice = new Map(metrics.map((m) => [m.label, m.dice]));
      measured.push({ id: c.id, signals, dice: metrics.reduce((s, m) => s + m.dice, 0) / metrics.length, classDice });
      opts.onProgress?.('cases', i + 1, cases.length);
    }
  } finally {
    await model.model.release();
  }

  // 4. Quality model, domain ranges and thresholds.
  const caseRows = measured.map((m) => caseFeatures(m.signals, volumes));
  const caseModel = fitLinear([...QUALITY_FEATURES], caseRows, measured.map((m) => m.dice), 1, QUALITY_SIGNS);
  const classRows: number[][] = [];
  const classTargets: number[] = [];
  for (const m of measured) {
    for (const cls of m.signals.classes) {
      if (cls.value === 0) continue;
      classRows.push(classFeatures(cls));
      classTargets.push(m.classDice.get(cls.value) ?? 0);
    }
  }
  const perClass = fitLinear([...CLASS_QUALITY_FEATURES], classRows, classTargets, 1, CLASS_QUALITY_SIGNS);
  const range = (values: number[], floor: number): [number, number] => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const margin = Math.max(0.5 * (hi - lo), floor);
    return [round(lo - margin), round(hi + margin)];
  };
  const intensity = {
    mean: range(measured.map((m) => m.signals.intensity.mean), 0.02),
    std: range(measured.map((m) => m.signals.intensity.std), 0.02),
    negativeFraction: [0, round(Math.max(...measured.map((m) => m.signals.intensity.negativeFraction)) + 0.01)] as [number, number],
  };
  const outliers = measured.map((m) => volumeOutlier(m.signals, volumes)).sort((a, b) => a - b);
  const maxVolumeOutlier = round(Math.max(4, 1.5 * outliers[Math.floor(0.95 * (outliers.length - 1))]), 2);
  const partial: Omit<QualityModel, 'acceptDice' | 'rejectDice'> = {
    case: roundModel(caseModel),
    perClass: roundModel(perClass),
    volumes,
    intensity,
    maxVolumeOutlier,
  };
  const predicted = caseRows.map((row) => applyLinear(partial.case, row));
  const thresholds = chooseThresholds(predicted, measured.map((m) => m.dice));
  const calibration: ModelCalibration = {
    source: { ...opts.source, cases: cases.length, ids: cases.map((c) => c.id) },
    temperature,
    gammaRule: coverageRule
      ? `${Math.round(coverage * 100)} % of correctly labelled foreground voxels in region 1 (quantile of the lower student confidence)`
      : 'β rule over the calibration volumes (no foreground voxel was labelled correctly)',
    betaRuleGamma: betaGamma,
    ece: { before: round(before.ece), after: round(after.ece) },
    regionErrorRates: errorRates,
    quality: { ...partial, ...thresholds },
  };
  return {
    card: { ...card, regions: { ...card.regions, gamma, gammaSource: 'calibrated' }, calibration },
    calibration,
    cases: measured.map((m, i) => ({ id: m.id, signals: m.signals, dice: m.dice, predictedDice: predicted[i] })),
  };
}

function roundModel<T extends { mean: number[]; scale: number[]; weights: number[]; intercept: number }>(m: T): T {
  return { ...m, mean: m.mean.map((v) => round(v, 6)), scale: m.scale.map((v) => round(v, 6)), weights: m.weights.map((v) => round(v, 6)), intercept: round(m.intercept, 6) };
}

/** A card-valid calibration block carrying only the temperature, for the intermediate graph. */
function placeholderCalibration(temperature: number): ModelCalibration {
  const zero = { features: [], mean: [], scale: [], weights: [], intercept: 0 };
  return {
    source: { kind: 'folder', name: 'pending', cases: 0, ids: [] },
    temperature,
    gammaRule: 'pending',
    betaRuleGamma: 0,
    ece: { before: 0, after: 0 },
    regionErrorRates: [0, 0, 0],
    quality: { case: zero, perClass: zero, volumes: [], intensity: { mean: [0, 1], std: [0, 1], negativeFraction: [0, 1] }, acceptDice: 1, rejectDice: 0, maxVolumeOutlier: 10 },
  };
}

/**
 * Labelled volumes of an nnU-Net raw layout (imagesTr/ID_0000.nii.gz with labelsTr/ID.nii.gz):
 * every labelled case of the folder, or only `ids`, each read when it is loaded.
 */
export async function calibrationCaseFiles(root: string, ids?: readonly string[]): Promise<CalibrationCaseFile[]> {
  let labels: string[];
  try {
    labels = (await readdir(join(root, 'labelsTr'))).filter((f) => /\.nii(\.gz)?$/.test(f)).sort();
  } catch {
    throw new InputError('calibration data needs labelsTr/ and imagesTr/ (nnU-Net raw layout)', root);
  }
  const wanted = ids ? new Set(ids) : undefined;
  const cases: CalibrationCaseFile[] = [];
  for (const file of labels) {
    const id = file.replace(/\.nii(\.gz)?$/, '');
    if (wanted && !wanted.has(id)) continue;
    const ending = file.slice(id.length);
    cases.push({
      id,
      async load() {
        const label = await readNiftiFile(join(root, 'labelsTr', file));
        const image = await readNiftiFile(join(root, 'imagesTr', `${id}_0000${ending}`));
        const labelData = label.data instanceof Uint8Array ? label.data : Uint8Array.from(label.data as ArrayLike<number>);
        return { image, label: label.withData(labelData) };
      },
    });
  }
  if (wanted && cases.length !== wanted.size) throw new InputError(`calibration: found ${cases.length} of the ${wanted.size} listed cases`, root);
  return cases;
}

/** Every case of `calibrationCaseFiles`, read into memory (2D slices, int8 activation ranges). */
export async function readCalibrationCases(root: string, ids?: readonly string[]): Promise<CalibrationCase[]> {
  const cases: CalibrationCase[] = [];
  for (const c of await calibrationCaseFiles(root, ids)) cases.push({ id: c.id, ...(await c.load()) });
  return cases;
}
