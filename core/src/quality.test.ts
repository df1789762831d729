import { describe, expect, it } from 'vitest';
import {
  applyLinear,
  aurc,
  auroc,
  betaQuantileMean,
  estimateQuality,
  expectedCalibrationError,
  fitLinear,
  logVolume,
  quantile,
  spearman,
  volumeOutlier,
  type CaseSignals,
  type QualityModel,
} from './quality.js';

describe('rank and risk statistics', () => {
  it('spearman: 1 for a monotone relation, −1 reversed, average ranks for ties', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 35, 100])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    // scipy.stats.spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138
    expect(spearman([1, 2, 2, 3], [1, 3, 2, 4])).toBeCloseTo(0.9486832980505138, 12);
  });

  it('auroc counts pairs (ties half) and aurc averages the selective risk', () => {
    expect(auroc([0.9, 0.8, 0.3, 0.1], [true, true, false, false])).toBe(1);
    expect(auroc([0.1, 0.8, 0.3, 0.9], [true, true, false, false])).toBe(0.25);
    expect(auroc([0.5, 0.5], [true, false])).toBe(0.5);
    // Accept in order 0.9 (risk 0), 0.5 (risk 1): selective risks 0 and 0.5 → area 0.25.
    expect(aurc([0.5, 0.9], [1, 0])).toBeCloseTo(0.25, 12);
    expect(aurc([0.9, 0.5], [1, 0])).toBeCloseTo(0.75, 12);
  });

  it('β rule, quantile and ECE on hand-computed values', () => {
    expect(betaQuantileMean(Float32Array.from([0.9, 0.1, 0.5, 0.3, 0.7]), 0.4)).toBeCloseTo(0.2, 6);
    expect(quantile(Float32Array.from([5, 1, 4, 2, 3]), 0.2)).toBe(2);
    // Two bins used: conf 0.95 right twice (gap 0.05), conf 0.55 right once of two (gap 0.05).
    const ece = expectedCalibrationError(Float32Array.from([0.95, 0.95, 0.55, 0.55]), Uint8Array.from([1, 1, 1, 0]), 10);
    expect(ece).toBeCloseTo(0.05, 6);
  });
});

describe('linear quality model', () => {
  it('recovers an exact linear relation (small ridge) and clips predictions to [0, 1]', () => {
    const rows = [[0, 1], [1, 0], [2, 3], [3, 1], [4, 4], [5, 2]];
    const y = rows.map(([a, b]) => 0.1 + 0.05 * a + 0.02 * b);
    const m = fitLinear(['a', 'b'], rows, y, 1e-9);
    rows.forEach((r, i) => expect(applyLinear(m, r)).toBeCloseTo(y[i], 6));
    expect(applyLinear({ ...m, intercept: 2 }, rows[0])).toBe(1);
    expect(applyLinear({ ...m, intercept: -1 }, rows[0])).toBe(0);
  });

  it('sign constraints drop a feature whose fitted weight contradicts its expected sign', () => {
    // y rises with a, and b is anti-correlated noise: unconstrained b gets a negative weight.
    const rows = [[0, 3], [1, 1], [2, 2], [3, 0], [4, 1], [5, -1]];
    const y = [0.1, 0.25, 0.3, 0.5, 0.55, 0.75];
    expect(fitLinear(['a', 'b'], rows, y, 1e-6).weights[1]).toBeLessThan(0);
    const constrained = fitLinear(['a', 'b'], rows, y, 1e-6, [1, 1]);
    expect(constrained.weights[1]).toBe(0);
    expect(constrained.weights[0]).toBeGreaterThan(0);
  });

  it('a standardised feature far outside the calibration data is clipped, not extrapolated', () => {
    const m = { features: ['x'], mean: [0.5], scale: [0.01], weights: [0.1], intercept: 0.5 };
    expect(applyLinear(m, [0.9])).toBeCloseTo(0.9, 12); // z = 40 → 4
    expect(applyLinear(m, [-10])).toBeCloseTo(0.1, 12);
  });

  it('ridge shrinks the weights towards zero', () => {
    const rows = [[0], [1], [2], [3]];
    const y = [0, 1, 2, 3];
    const loose = fitLinear(['x'], rows, y, 1e-9);
    const tight = fitLinear(['x'], rows, y, 100);
    expect(Math.abs(tight.weights[0])).toBeLessThan(Math.abs(loose.weights[0]) / 10);
  });
});

describe('estimateQuality', () => {
  const signals = (overrides: Partial<CaseSignals> = {}, rvMl = 100): CaseSignals => ({
    classes: [
      { value: 0, volumeMl: 1000, agreement: 1, meanConfidence: 0.99, reliable: 0.99 },
      { value: 1, volumeMl: rvMl, agreement: 0.9, meanConfidence: 0.9, reliable: 0.8 },
    ],
    agreement: 0.9,
    minAgreement: 0.9,
    foregroundMeanConfidence: 0.9,
    foregroundRegions: [0.8, 0.15, 0.05],
    foregroundEntropy: 0.2,
    intensity: { mean: 0.2, std: 0.15, negativeFraction: 0 },
    ...overrides,
  });
  const flat = { features: [], mean: [], scale: [], weights: [], intercept: 0.8 };
  const model: QualityModel = {
    case: { features: ['agreement'], mean: [0.8], scale: [0.1], weights: [0.1], intercept: 0.8 },
    perClass: { ...flat, features: ['agreement', 'meanConfidence', 'reliable'], mean: [0, 0, 0], scale: [1, 1, 1], weights: [0, 0, 0] },
    volumes: [{ value: 1, logMean: logVolume(100), logStd: 0.3 }],
    intensity: { mean: [0.1, 0.3], std: [0.05, 0.3], negativeFraction: [0, 0.01] },
    acceptDice: 0.85,
    rejectDice: 0.7,
    maxVolumeOutlier: 4,
  };

  it('a case like the calibration data is in domain', () => {
    const q = estimateQuality(signals(), model);
    expect(q.outOfDomain).toEqual([]);
    expect(q.volumeOutlier).toBeCloseTo(0, 9);
    expect(q.perClass).toEqual([{ value: 1, predictedDice: 0.8 }]);
  });

  it('a CT-like image, a noise-like image and an implausible volume are each flagged', () => {
    expect(estimateQuality(signals({ intensity: { mean: 0.2, std: 0.15, negativeFraction: 0.4 } }), model).outOfDomain.join()).toMatch(/negativeFraction/);
    expect(estimateQuality(signals({ intensity: { mean: 0.5, std: 0.29, negativeFraction: 0 } }), model).outOfDomain.join()).toMatch(/mean/);
    const tiny = signals({}, 1.2);
    expect(volumeOutlier(tiny, model.volumes)).toBeGreaterThan(4);
    expect(estimateQuality(tiny, model).outOfDomain.join()).toMatch(/volumes/);
    expect(estimateQuality(signals({}, 0), model).outOfDomain).toEqual(["none of the model's structures was found"]);
  });
});
