import { estimateQuality, InputError, TOOLKIT_VERSION, type CaseSignals, type Mat4, type ModelCard, type QualityEstimate, type Volume } from '@alhvr/core';
import type { GammaUsed, PipelineSignals } from './pipeline.js';

/** Fractions of a set of voxels in region 1 (both students confident), 2 (one) and 3 (neither). */
export interface RegionFractions {
  reliable: number;
  unstable: number;
  unreliable: number;
}

export interface ClassStats {
  value: number;
  name: string;
  voxels: number;
  volumeMl: number;
  /** Mean ensemble confidence over the class's voxels; null when the class is absent. */
  meanConfidence: number | null;
  regions: RegionFractions | null;
}

export interface CaseStats {
  voxelVolumeMm3: number;
  classes: ClassStats[];
  /** All non-background classes (every class whose value is not 0) together. */
  foreground: Omit<ClassStats, 'value' | 'name'>;
  meanConfidence: number;
}

/**
 * Triage rule: reject when the foreground is largely unreliable or unconfident, accept when it
 * is mostly reliable and confident, review otherwise (and always when nothing was found).
 */
export interface TriageThresholds {
  acceptReliableFraction: number;
  acceptMeanConfidence: number;
  rejectUnreliableFraction: number;
  rejectMeanConfidence: number;
}

export const DEFAULT_TRIAGE: TriageThresholds = {
  acceptReliableFraction: 0.9,
  acceptMeanConfidence: 0.85,
  rejectUnreliableFraction: 0.2,
  rejectMeanConfidence: 0.6,
};

export type Verdict = 'accept' | 'review' | 'reject';

export interface Triage {
  verdict: Verdict;
  reasons: string[];
  thresholds: TriageThresholds;
}

export function validateTriageThresholds(t: TriageThresholds): TriageThresholds {
  for (const [key, v] of Object.entries(t)) {
    if (!(typeof v === 'number' && v >= 0 && v <= 1)) throw new InputError(`triage threshold ${key} must be in [0, 1] (got ${v})`);
  }
  if (t.rejectMeanConfidence > t.acceptMeanConfidence) throw new InputError('triage: rejectMeanConfidence must not exceed acceptMeanConfidence');
  return t;
}

/** Volume of one voxel in mm³: |det| of the affine's linear part (exact for oblique grids too). */
export function voxelVolumeMm3(a: Mat4): number {
  return Math.abs(
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
      a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
      a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]),
  );
}

/**
 * Voxels, summed confidence and region counts per label value; returns the summed confidence of
 * all voxels. A function of its own so V8 optimises the loop once (inside computeCaseStats it was
 * recompiled case after case).
 */
function tallyByLabel(
  label: Uint8Array, confidence: Float32Array, region: Uint8Array | undefined,
  counts: Float64Array, confSum: Float64Array, regionCounts: Float64Array,
): number {
  let total = 0;
  for (let n = 0; n < label.length; n++) {
    const v = label[n];
    counts[v]++;
    confSum[v] += confidence[n];
    total += confidence[n];
    if (region) regionCounts[v * 4 + region[n]]++;
  }
  return total;
}

export function computeCaseStats(
  label: Volume<Uint8Array>,
  confidence: Volume<Float32Array>,
  region: Volume<Uint8Array> | undefined,
  card: ModelCard,
): CaseStats {
  const counts = new Float64Array(256);
  const confSum = new Float64Array(256);
  const regionCounts = new Float64Array(256 * 4);
  const l = label.data;
  const r = region?.data;
  const total = tallyByLabel(l, confidence.data, r, counts, confSum, regionCounts);
  const mm3 = voxelVolumeMm3(label.affine);
  const fractions = (voxels: number, sum: (reg: number) => number): RegionFractions | null =>
    r && voxels > 0 ? { reliable: sum(1) / voxels, unstable: sum(2) / voxels, unreliable: sum(3) / voxels } : null;
  const classes = card.classes.map((cls): ClassStats => {
    const v = cls.value;
    const voxels = counts[v];
    return {
      value: v,
      name: cls.name,
      voxels,
      volumeMl: (voxels * mm3) / 1000,
      meanConfidence: voxels > 0 ? confSum[v] / voxels : null,
      regions: fractions(voxels, (reg) => regionCounts[v * 4 + reg]),
    };
  });
  const fg = card.classes.filter((cls) => cls.value !== 0).map((cls) => cls.value);
  const fgVoxels = fg.reduce((s, v) => s + counts[v], 0);
  const fgConf = fg.reduce((s, v) => s + confSum[v], 0);
  return {
    voxelVolumeMm3: mm3,
    classes,
    foreground: {
      voxels: fgVoxels,
      volumeMl: (fgVoxels * mm3) / 1000,
      meanConfidence: fgVoxels > 0 ? fgConf / fgVoxels : null,
      regions: fractions(fgVoxels, (reg) => fg.reduce((s, v) => s + regionCounts[v * 4 + reg], 0)),
    },
    meanConfidence: l.length ? total / l.length : 0,
  };
}

/** The reference-free signals of a segmented case (core's CaseSignals) from its stats and the pipeline's tallies. */
export function caseSignals(stats: CaseStats, pipeline: PipelineSignals): CaseSignals {
  const overlap = pipeline.studentOverlap;
  const agreementOf = (v: number): number | null => {
    if (!overlap) return null;
    const sum = overlap.a[v] + overlap.b[v];
    return sum > 0 ? (2 * overlap.both[v]) / sum : 1;
  };
  const classes = stats.classes.map((c) => ({
    value: c.value,
    volumeMl: c.volumeMl,
    agreement: agreementOf(c.value),
    meanConfidence: c.meanConfidence,
    reliable: c.regions?.reliable ?? null,
  }));
  const fgAgreement = classes.filter((c) => c.value !== 0 && c.agreement !== null).map((c) => c.agreement!);
  const fg = stats.foreground;
  return {
    classes,
    agreement: fgAgreement.length ? fgAgreement.reduce((s, v) => s + v, 0) / fgAgreement.length : null,
    minAgreement: fgAgreement.length ? Math.min(...fgAgreement) : null,
    foregroundMeanConfidence: fg.meanConfidence ?? 0,
    foregroundRegions: fg.regions ? [fg.regions.reliable, fg.regions.unstable, fg.regions.unreliable] : null,
    foregroundEntropy: pipeline.foregroundEntropyCount > 0 ? pipeline.foregroundEntropySum / pipeline.foregroundEntropyCount : 1,
    intensity: pipeline.intensity,
  };
}

/** DICOM attributes the card's intended use is checked against (absent for NIfTI). */
export interface SourceTags {
  modality?: string;
  bodyPart?: string;
}

/** Reasons a case is outside what the model was made for: the card's intended use, then the calibrated domain check. */
export function intendedUseMismatch(card: ModelCard, tags: SourceTags | undefined): string[] {
  const use = card.intendedUse;
  if (!use || !tags) return [];
  const reasons: string[] = [];
  const norm = (s: string) => s.trim().toUpperCase();
  if (tags.modality && norm(tags.modality) !== norm(use.modality)) reasons.push(`DICOM Modality ${tags.modality} is not the model's ${use.modality}`);
  if (tags.bodyPart && norm(tags.bodyPart) !== norm(use.bodyPart)) reasons.push(`DICOM BodyPartExamined ${tags.bodyPart} is not the model's ${use.bodyPart}`);
  return reasons;
}

/** Triage of a calibrated model: out of domain or predicted Dice below the reject threshold → reject; at or above accept → accept. */
export function triageByQuality(estimate: QualityEstimate, domain: string[], thresholds: { acceptDice: number; rejectDice: number }): Triage & { predictedDice: number } {
  const reasons: string[] = [...domain, ...estimate.outOfDomain];
  const d = estimate.predictedDice;
  const base = { thresholds: DEFAULT_TRIAGE, predictedDice: d };
  if (reasons.length) return { verdict: 'reject', reasons: reasons.map((r) => `out of the model's domain: ${r}`), ...base };
  if (d < thresholds.rejectDice) return { verdict: 'reject', reasons: [`predicted Dice ${d.toFixed(3)} < ${thresholds.rejectDice.toFixed(3)}`], ...base };
  if (d < thresholds.acceptDice) return { verdict: 'review', reasons: [`predicted Dice ${d.toFixed(3)} < ${thresholds.acceptDice.toFixed(3)}`], ...base };
  return { verdict: 'accept', reasons: [], ...base };
}

/** The whole per-case trust assessment: calibrated quality estimate when the card has one, the older region/confidence rule otherwise. */
export function assessCase(
  stats: CaseStats,
  pipeline: PipelineSignals,
  card: ModelCard,
  opts: { thresholds?: TriageThresholds; dice?: { acceptDice?: number; rejectDice?: number }; tags?: SourceTags } = {},
): { signals: CaseSignals; quality: QualityEstimate | null; triage: Triage } {
  const signals = caseSignals(stats, pipeline);
  const model = card.calibration?.quality;
  const domain = intendedUseMismatch(card, opts.tags);
  if (!model || signals.agreement === null) {
    const triage = triageCase(stats, opts.thresholds);
    if (domain.length) return { signals, quality: null, triage: { ...triage, verdict: 'reject', reasons: [...domain.map((r) => `out of the model's domain: ${r}`), ...triage.reasons] } };
    return { signals, quality: null, triage };
  }
  const quality = estimateQuality(signals, model);
  const triage = triageByQuality(quality, domain, {
    acceptDice: opts.dice?.acceptDice ?? model.acceptDice,
    rejectDice: opts.dice?.rejectDice ?? model.rejectDice,
  });
  return { signals, quality, triage };
}

export function triageCase(stats: CaseStats, thresholds: TriageThresholds = DEFAULT_TRIAGE): Triage {
  const fg = stats.foreground;
  const reasons: string[] = [];
  if (fg.voxels === 0) return { verdict: 'review', reasons: ['no foreground voxels predicted'], thresholds };
  const conf = fg.meanConfidence ?? 0;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  if (fg.regions && fg.regions.unreliable > thresholds.rejectUnreliableFraction) {
    reasons.push(`${pct(fg.regions.unreliable)} of foreground unreliable (> ${pct(thresholds.rejectUnreliableFraction)})`);
  }
  if (conf < thresholds.rejectMeanConfidence) reasons.push(`foreground mean confidence ${conf.toFixed(3)} < ${thresholds.rejectMeanConfidence}`);
  if (reasons.length) return { verdict: 'reject', reasons, thresholds };
  if (fg.regions && fg.regions.reliable < thresholds.acceptReliableFraction) {
    reasons.push(`${pct(fg.regions.reliable)} of foreground reliable (< ${pct(thresholds.acceptReliableFraction)})`);
  }
  if (conf < thresholds.acceptMeanConfidence) reasons.push(`foreground mean confidence ${conf.toFixed(3)} < ${thresholds.acceptMeanConfidence}`);
  return { verdict: reasons.length ? 'review' : 'accept', reasons, thresholds };
}

/**
 * How much a case needs a human, for sorting the summary: the share of foreground voxels that
 * are not reliable (or 1 − mean confidence for single-student models); 1 when nothing was found.
 */
export function unreliabilityScore(stats: CaseStats): number {
  const fg = stats.foreground;
  if (fg.voxels === 0) return 1;
  return fg.regions ? 1 - fg.regions.reliable : 1 - (fg.meanConfidence ?? 0);
}

export interface CaseReport {
  caseId: string;
  input: string;
  /** For DICOM input: which series was segmented (two series of one folder stay apart). */
  series?: { seriesInstanceUID: string; seriesDescription?: string; modality?: string; bodyPartExamined?: string; folder: string };
  toolkit: { version: string };
  model: { name: string; cardHash: string; modelHash: string; classes: ModelCard['classes'] };
  device: { used: string; note: string; threads?: number };
  geometry: { dims: [number, number, number]; spacingMm: [number, number, number]; slices: number };
  /** 3D models: how the volume was covered (model grid at the card's target spacing, windows of the card's patch). */
  slidingWindow?: SlidingWindowRecord;
  gamma: GammaUsed | null;
  stats: CaseStats;
  unreliability: number;
  /** Reference-free signals and, for calibrated models, the predicted Dice (overall and per class). */
  signals: CaseSignals;
  quality: QualityEstimate | null;
  triage: Triage;
  timingsMs: Record<string, number>;
  warnings: string[];
  createdAt: string;
}


export interface SlidingWindowRecord {
  windows: number;
  patch: number[];
  targetSpacingMm: number[];
  modelGrid: [number, number, number];
  weighting: 'uniform' | 'gaussian';
}

/**
 * report.json of one segmented case, the same for alhvr-segment and the viewer: which input and
 * series, the model and device, geometry, γ, stats and the trust assessment.
 */
export function buildCaseReport(parts: {
  caseId: string;
  input: string;
  image: Volume;
  slices: number;
  gamma: GammaUsed | undefined;
  model: { card: ModelCard; cardHash: string; modelHash: string };
  device: CaseReport['device'];
  stats: CaseStats;
  assessment: { signals: CaseSignals; quality: QualityEstimate | null; triage: Triage };
  timingsMs: Record<string, number>;
  slidingWindow?: SlidingWindowRecord;
}): CaseReport {
  const { image, model, assessment } = parts;
  const dicom = image.meta.dicom;
  return {
    caseId: parts.caseId,
    input: parts.input,
    ...(dicom
      ? {
          series: {
            seriesInstanceUID: dicom.seriesInstanceUID,
            seriesDescription: dicom.seriesDescription,
            modality: dicom.modality,
            bodyPartExamined: dicom.bodyPartExamined,
            folder: parts.input,
          },
        }
      : {}),
    toolkit: { version: TOOLKIT_VERSION },
    model: { name: model.card.name, cardHash: model.cardHash, modelHash: model.modelHash, classes: model.card.classes },
    device: parts.device,
    geometry: { dims: image.dims, spacingMm: image.spacing, slices: parts.slices },
    ...(parts.slidingWindow ? { slidingWindow: parts.slidingWindow } : {}),
    gamma: parts.gamma ?? null,
    stats: parts.stats,
    unreliability: unreliabilityScore(parts.stats),
    signals: assessment.signals,
    quality: assessment.quality,
    triage: assessment.triage,
    timingsMs: parts.timingsMs,
    warnings: image.meta.warnings,
    createdAt: new Date().toISOString(),
  };
}
