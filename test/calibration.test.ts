// Calibration at export: temperature, γ, quality model, thresholds — and that the calibrated
// graph, the card and the per-case triage agree with one another.
import { beforeAll, describe, expect, test } from 'vitest';
import { generatePhantomCase, Rng, validateModelCard, type ModelCalibration } from '@alhvr/core';
import { calibrate, chooseThresholds, exportOnnx, fitTemperature, fitTemperatureEce, readOnnxModelCard, type CalibrationCase } from '@alhvr/export';
import { assessCase, computeCaseStats, openModelBytes, segmentVolume } from '@alhvr/inference/node';
import type { UNet } from '@alhvr/training';
import { makeCard, makeStudent, useBackend } from './export-fixtures.js';

describe('fitTemperature', () => {
  test('recovers the temperature that generated the labels', () => {
    const rng = new Rng(5);
    const C = 3;
    const T0 = 2.5;
    const sample = { classes: C, logitsA: [] as number[], logitsB: [] as number[], truth: [] as number[] };
    for (let v = 0; v < 20000; v++) {
      const z = Array.from({ length: C }, () => rng.normal() * 4);
      // Both students agree exactly, so the ensemble is softmax(z / T).
      sample.logitsA.push(...z);
      sample.logitsB.push(...z);
      const e = z.map((x) => Math.exp(x / T0));
      const sum = e.reduce((s, x) => s + x, 0);
      let u = rng.next() * sum;
      let y = 0;
      while (u > e[y] && y < C - 1) u -= e[y++];
      sample.truth.push(y);
    }
    expect(fitTemperature(sample)).toBeCloseTo(T0, 0);
    expect(Math.abs(fitTemperature(sample) - T0) / T0).toBeLessThan(0.08);
    // The calibration-error optimum lands there too (it is what the export uses).
    expect(Math.abs(fitTemperatureEce(sample) - T0) / T0).toBeLessThan(0.15);
  });
});

describe('chooseThresholds', () => {
  test('no case with Dice ≥ 0.85 falls below reject, no case below 0.7 reaches accept', () => {
    const predicted = [0.9, 0.82, 0.75, 0.6, 0.4];
    const truth = [0.92, 0.86, 0.65, 0.5, 0.2];
    const t = chooseThresholds(predicted, truth);
    expect(t.rejectDice).toBeCloseTo(0.7, 6); // 0.82 − 0.02, capped at 0.7
    expect(t.acceptDice).toBeCloseTo(0.77, 6); // 0.75 + 0.02
    predicted.forEach((p, i) => {
      if (truth[i] >= 0.85) expect(p).toBeGreaterThanOrEqual(t.rejectDice);
      if (truth[i] < 0.7) expect(p).toBeLessThan(t.acceptDice);
    });
  });
});

describe('calibrate (small networks, phantoms)', () => {
  let students: UNet[];
  let cases: CalibrationCase[];
  let calibration: ModelCalibration;
  let onnx: Uint8Array;

  beforeAll(async () => {
    await useBackend();
    students = [makeStudent(11, { calibrationSize: 64 }), makeStudent(12, { calibrationSize: 64 })];
    cases = [0, 1, 2, 3, 4].map((index) => {
      const { image, label } = generatePhantomCase({ seed: 404, index, shift: index === 4 ? 1 : 0 });
      return { id: `case${index}`, image, label };
    });
    const result = await calibrate(students, makeCard([64, 64]), cases, { source: { kind: 'folder', name: 'phantoms-404' } });
    calibration = result.calibration;
    onnx = exportOnnx(students, result.card).onnx;
  }, 120_000);

  test('the card validates and names its calibration data without paths', () => {
    const card = validateModelCard(JSON.parse(JSON.stringify(readOnnxModelCard(onnx))));
    expect(card.calibration?.source).toEqual({ kind: 'folder', name: 'phantoms-404', cases: 5, ids: ['case0', 'case1', 'case2', 'case3', 'case4'] });
    expect(card.regions.gammaSource).toBe('calibrated');
    expect(card.regions.gamma).toBeGreaterThan(0);
    expect(card.regions.gamma).toBeLessThan(1);
    expect(calibration.temperature).toBeGreaterThan(0);
    expect(calibration.quality.rejectDice).toBeLessThanOrEqual(calibration.quality.acceptDice);
    expect(calibration.quality.case.weights).toHaveLength(calibration.quality.case.features.length);
  });

  test('the graph applies the temperature: probabilities equal softmax(logits / T) of each student, averaged', async () => {
    const debug = exportOnnx(students, readOnnxModelCard(onnx) as never, { debugLogits: true }).onnx;
    const opened = await openModelBytes(debug, 'debug', { device: 'cpu' });
    const { image } = generatePhantomCase({ seed: 405, index: 0 });
    let maxError = 0;
    await segmentVolume(image, opened.model, {
      tap: {
        fetch: ['logitsA', 'logitsB', 'probabilities'],
        onBatch(out, _ref, count, plane) {
          const C = 4;
          const [la, lb, p] = [out.logitsA!, out.logitsB!, out.probabilities!] as Float32Array[];
          for (let q = 0; q < count * plane; q += 97) {
            const b = Math.floor(q / plane);
            const r = q - b * plane;
            const soft = (l: Float32Array) => {
              const e = Array.from({ length: C }, (_, c) => Math.exp(l[(b * C + c) * plane + r] / calibration.temperature));
              const s = e.reduce((x, y) => x + y, 0);
              return e.map((x) => x / s);
            };
            const [sa, sb] = [soft(la), soft(lb)];
            for (let c = 0; c < C; c++) maxError = Math.max(maxError, Math.abs((sa[c] + sb[c]) / 2 - p[(b * C + c) * plane + r]));
          }
        },
      },
    });
    await opened.model.release();
    expect(maxError).toBeLessThan(1e-5);
  });

  test('a segmented case gets a predicted Dice from the card and a verdict by its thresholds', async () => {
    const opened = await openModelBytes(onnx, 'calibrated', { device: 'cpu' });
    const { image } = generatePhantomCase({ seed: 405, index: 1 });
    const result = await segmentVolume(image, opened.model);
    await opened.model.release();
    const stats = computeCaseStats(result.label, result.confidence, result.region, opened.identity.card);
    const assessed = assessCase(stats, result.signals, opened.identity.card);
    expect(assessed.quality).not.toBeNull();
    const d = assessed.quality!.predictedDice;
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThanOrEqual(1);
    expect(assessed.signals.agreement).not.toBeNull();
    const q = calibration.quality;
    const expected = assessed.quality!.outOfDomain.length || d < q.rejectDice ? 'reject' : d < q.acceptDice ? 'review' : 'accept';
    expect(assessed.triage.verdict).toBe(expected);
    // The same case seen as a DICOM CT is refused by the card's intended use.
    const card = { ...opened.identity.card, intendedUse: { modality: 'MR', bodyPart: 'HEART', description: 'test' } };
    const ct = assessCase(stats, result.signals, card, { tags: { modality: 'CT' } });
    expect(ct.triage.verdict).toBe('reject');
    expect(ct.triage.reasons.join()).toMatch(/Modality CT is not the model's MR/);
  });
});
