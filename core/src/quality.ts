/**
 * Trust-signal maths shared by export (calibration), inference (per-case triage) and the
 * viewer: region γ rules, expected calibration error, the per-case signals, the small linear
 * quality model that predicts a case's Dice from them, and the verdict rule. Plain arrays only.
 */

/** Region ids of the ALHVR region map. */
export const REGION = { reliable: 1, unstable: 2, unreliable: 3 } as const;

/** The method's β rule: mean of the lowest ⌊β·M⌋ of M values (M ≥ 1). Sorts `values` in place. */
export function betaQuantileMean(values: Float32Array, beta: number): number {
  values.sort();
  const m = Math.max(1, Math.floor(beta * values.length));
  let sum = 0;
  for (let n = 0; n < m; n++) sum += values[n];
  return sum / m;
}

/** The q-quantile (0–1, nearest rank) of `values`; sorts in place. */
export function quantile(values: Float32Array, q: number): number {
  if (values.length === 0) return NaN;
  values.sort();
  return values[Math.min(values.length - 1, Math.max(0, Math.floor(q * values.length)))];
}

/** Expected calibration error over `bins` equal-width confidence bins: Σ |acc − conf| · share. */
export function expectedCalibrationError(confidence: Float32Array, correct: Uint8Array, bins = 15): number {
  const count = new Float64Array(bins);
  const confSum = new Float64Array(bins);
  const hits = new Float64Array(bins);
  for (let n = 0; n < confidence.length; n++) {
    const b = Math.min(bins - 1, Math.floor(confidence[n] * bins));
    count[b]++;
    confSum[b] += confidence[n];
    hits[b] += correct[n];
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (count[b] > 0) ece += Math.abs(hits[b] - confSum[b]) / confidence.length;
  return ece;
}

/** Spearman rank correlation (average ranks for ties). */
export function spearman(x: readonly number[], y: readonly number[]): number {
  const rank = (v: readonly number[]) => {
    const order = v.map((value, i) => ({ value, i })).sort((a, b) => a.value - b.value);
    const r = new Array<number>(v.length);
    for (let s = 0; s < order.length; ) {
      let e = s;
      while (e + 1 < order.length && order[e + 1].value === order[s].value) e++;
      for (let k = s; k <= e; k++) r[order[k].i] = (s + e) / 2;
      s = e + 1;
    }
    return r;
  };
  const rx = rank(x);
  const ry = rank(y);
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const mx = mean(rx);
  const my = mean(ry);
  let num = 0;
  let dx = 0;
  let dy = 0;
  for (let i = 0; i < rx.length; i++) {
    num += (rx[i] - mx) * (ry[i] - my);
    dx += (rx[i] - mx) ** 2;
    dy += (ry[i] - my) ** 2;
  }
  return dx > 0 && dy > 0 ? num / Math.sqrt(dx * dy) : 0;
}

/** AUROC of `score` for detecting the positives (higher score = more likely positive). */
export function auroc(score: readonly number[], positive: readonly boolean[]): number {
  let pos = 0;
  let neg = 0;
  let wins = 0;
  for (let i = 0; i < score.length; i++) {
    if (!positive[i]) continue;
    pos++;
    for (let j = 0; j < score.length; j++) {
      if (positive[j]) continue;
      if (score[i] > score[j]) wins++;
      else if (score[i] === score[j]) wins += 0.5;
    }
  }
  for (const p of positive) if (!p) neg++;
  return pos > 0 && neg > 0 ? wins / (pos * neg) : NaN;
}

/**
 * Area under the risk–coverage curve: cases accepted in order of decreasing `confidence`; risk
 * at coverage k/n is the mean of `risk` (here 1 − Dice) over the k accepted. Lower is better.
 */
export function aurc(confidence: readonly number[], risk: readonly number[]): number {
  const order = confidence.map((c, i) => ({ c, r: risk[i] })).sort((a, b) => b.c - a.c);
  let sum = 0;
  let area = 0;
  order.forEach((o, k) => {
    sum += o.r;
    area += sum / (k + 1);
  });
  return order.length ? area / order.length : NaN;
}

/** Per-class signals of one segmented case, from the pipeline's outputs alone (no reference). */
export interface ClassSignals {
  value: number;
  /** Predicted volume of the class. */
  volumeMl: number;
  /** Dice between the two students' own labels for this class (1 when both predict nothing). */
  agreement: number | null;
  /** Mean ensemble confidence over the class's predicted voxels (null when absent). */
  meanConfidence: number | null;
  /** Share of the class's predicted voxels in region 1 (null when absent or one student). */
  reliable: number | null;
}

/**
 * Reference-free signals of a case: what the quality model and the domain check read. Every
 * field is computed by inference on the case's own grid, identically at calibration time.
 */
export interface CaseSignals {
  classes: ClassSignals[];
  /** Mean of the foreground classes' student agreement (null for one-student models). */
  agreement: number | null;
  /** Lowest foreground class agreement. */
  minAgreement: number | null;
  foregroundMeanConfidence: number;
  /** Share of predicted foreground in region 1, 2, 3 (null for one-student models). */
  foregroundRegions: [number, number, number] | null;
  /** Mean normalised entropy (0–1) of the ensemble probabilities over predicted foreground. */
  foregroundEntropy: number;
  /** Statistics of the normalised image the model saw (for the domain check). */
  intensity: { mean: number; std: number; negativeFraction: number };
}

/** How the calibration set's classes were distributed: log-volume mean and std per class. */
export interface VolumeReference {
  value: number;
  logMean: number;
  logStd: number;
}

/** Predicted volumes are compared as log(1 + mL) so that an absent class is a finite outlier. */
export const logVolume = (ml: number) => Math.log1p(Math.max(0, ml));

/** Largest |z| over foreground classes of the predicted log-volume against the reference. */
export function volumeOutlier(signals: CaseSignals, reference: readonly VolumeReference[]): number {
  let worst = 0;
  for (const ref of reference) {
    const cls = signals.classes.find((c) => c.value === ref.value);
    if (!cls) continue;
    const z = Math.abs(logVolume(cls.volumeMl) - ref.logMean) / Math.max(ref.logStd, 0.05);
    worst = Math.max(worst, z);
  }
  return Math.min(worst, 10);
}

/** Feature names of the case-quality model, in the order of its weights. */
export const QUALITY_FEATURES = ['agreement', 'minAgreement', 'foregroundMeanConfidence', 'foregroundReliable', 'foregroundEntropy', 'volumeOutlier'] as const;
export type QualityFeature = (typeof QUALITY_FEATURES)[number];
/** Per-class model features (pooled over classes). */
export const CLASS_QUALITY_FEATURES = ['agreement', 'meanConfidence', 'reliable'] as const;

/** A linear model on standardised features, clipped to [0, 1]: y = b + Σ wᵢ (xᵢ − μᵢ)/σᵢ. */
export interface LinearModel {
  features: string[];
  mean: number[];
  scale: number[];
  weights: number[];
  intercept: number;
}

export function caseFeatures(signals: CaseSignals, reference: readonly VolumeReference[]): number[] {
  const regions = signals.foregroundRegions;
  const values: Record<QualityFeature, number> = {
    agreement: signals.agreement ?? 0,
    minAgreement: signals.minAgreement ?? 0,
    foregroundMeanConfidence: signals.foregroundMeanConfidence,
    foregroundReliable: regions ? regions[0] : 0,
    foregroundEntropy: signals.foregroundEntropy,
    volumeOutlier: volumeOutlier(signals, reference),
  };
  return QUALITY_FEATURES.map((f) => values[f]);
}

export function classFeatures(c: ClassSignals): number[] {
  return [c.agreement ?? 0, c.meanConfidence ?? 0, c.reliable ?? 0];
}

/** Standardised features are clipped to ±4: a case far outside the calibration data must not extrapolate a line. */
const Z_LIMIT = 4;

export function applyLinear(model: LinearModel, x: readonly number[]): number {
  let y = model.intercept;
  for (let i = 0; i < model.weights.length; i++) {
    const z = (x[i] - model.mean[i]) / model.scale[i];
    y += model.weights[i] * Math.min(Z_LIMIT, Math.max(-Z_LIMIT, z));
  }
  return Math.min(1, Math.max(0, y));
}

/** Expected sign of each case-quality weight: more agreement, confidence, region 1 → better; more entropy, odder volumes → worse. */
export const QUALITY_SIGNS = [1, 1, 1, 1, -1, -1];
export const CLASS_QUALITY_SIGNS = [1, 1, 1];

/**
 * Ridge least squares on standardised features (λ on the weights, not the intercept). With
 * `signs`, a weight whose sign contradicts its expected one (+1 / −1; 0 = free) is set to zero
 * and the rest refitted, until all agree: the fit stays monotone in each signal, so it cannot
 * reward, say, disagreement between the students because of a few calibration cases.
 */
export function fitLinear(features: string[], rows: readonly number[][], targets: readonly number[], lambda = 1, signs?: readonly number[]): LinearModel {
  const n = rows.length;
  if (n === 0) throw new Error('quality model: no calibration cases');
  // Features nearly constant over the calibration cases get a floor, so they cannot blow up out of sample.
  const mean = features.map((_, j) => rows.reduce((s, r) => s + r[j], 0) / n);
  const scale = features.map((_, j) => Math.max(0.01, Math.sqrt(rows.reduce((s, r) => s + (r[j] - mean[j]) ** 2, 0) / n)));
  const active = features.map(() => true);
  for (;;) {
    const weights = ridgeWeights(rows, targets, mean, scale, active, lambda);
    const wrong = signs ? weights.findIndex((w, j) => active[j] && signs[j] !== 0 && w * signs[j] < 0) : -1;
    if (wrong < 0) return { features, mean, scale, weights, intercept: targets.reduce((s, v) => s + v, 0) / n };
    active[wrong] = false;
  }
}

function ridgeWeights(rows: readonly number[][], targets: readonly number[], mean: number[], scale: number[], active: boolean[], lambda: number): number[] {
  const n = rows.length;
  const d = mean.length;
  const ty = targets.reduce((s, v) => s + v, 0) / n;
  // Normal equations (ZᵀZ + λI) w = Zᵀ(y − ȳ), solved by Gaussian elimination with pivoting.
  const a = Array.from({ length: d }, (_, i) => Array.from({ length: d + 1 }, (_, j) => (j === i ? lambda : 0)));
  for (let r = 0; r < n; r++) {
    const z = rows[r].map((v, j) => (active[j] ? (v - mean[j]) / scale[j] : 0));
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) a[i][j] += z[i] * z[j];
      a[i][d] += z[i] * (targets[r] - ty);
    }
  }
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    for (let r = 0; r < d; r++) {
      if (r === c || a[c][c] === 0) continue;
      const f = a[r][c] / a[c][c];
      for (let j = c; j <= d; j++) a[r][j] -= f * a[c][j];
    }
  }
  return a.map((row, i) => (row[i] === 0 ? 0 : row[d] / row[i]));
}

/** The calibrated trust model a card carries (all numbers, fitted at export). */
export interface QualityModel {
  /** Predicts the case's mean foreground Dice. */
  case: LinearModel;
  /** Predicts one class's Dice from that class's signals. */
  perClass: LinearModel;
  volumes: VolumeReference[];
  /** Range of each normalised-intensity statistic over the calibration images, with a margin. */
  intensity: { mean: [number, number]; std: [number, number]; negativeFraction: [number, number] };
  /** Verdict thresholds on the predicted Dice. */
  acceptDice: number;
  rejectDice: number;
  /** Largest volume z-score still in the model's domain. */
  maxVolumeOutlier: number;
}

export interface QualityEstimate {
  predictedDice: number;
  perClass: { value: number; predictedDice: number }[];
  volumeOutlier: number;
  /** Reasons the input looks unlike the calibration data (empty when it looks alike). */
  outOfDomain: string[];
}

export function estimateQuality(signals: CaseSignals, model: QualityModel): QualityEstimate {
  const outlier = volumeOutlier(signals, model.volumes);
  const outOfDomain: string[] = [];
  for (const key of ['mean', 'std', 'negativeFraction'] as const) {
    const [lo, hi] = model.intensity[key];
    const v = signals.intensity[key];
    if (v < lo || v > hi) outOfDomain.push(`image intensity ${key} ${v.toFixed(3)} outside the calibration range [${lo.toFixed(3)}, ${hi.toFixed(3)}]`);
  }
  if (signals.classes.every((c) => c.value === 0 || c.volumeMl === 0)) {
    outOfDomain.push('none of the model\'s structures was found');
  } else if (outlier > model.maxVolumeOutlier) {
    outOfDomain.push(`predicted structure volumes unlike the calibration data (|z| ${outlier.toFixed(1)} > ${model.maxVolumeOutlier})`);
  }
  return {
    predictedDice: applyLinear(model.case, caseFeatures(signals, model.volumes)),
    perClass: signals.classes.filter((c) => c.value !== 0).map((c) => ({ value: c.value, predictedDice: applyLinear(model.perClass, classFeatures(c)) })),
    volumeOutlier: outlier,
    outOfDomain,
  };
}
