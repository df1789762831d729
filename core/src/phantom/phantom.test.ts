import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePhantomCase, type PhantomCase } from './cardiac.js';
import { phantomCaseId, writePhantomDataset } from './dataset.js';
import { readNiftiFile } from '../nifti/file.js';
import { InputError } from '../errors.js';

const SEED = 2024;
const CASES = 10;
let set: PhantomCase[] = [];

beforeAll(() => {
  set = Array.from({ length: CASES }, (_, index) => generatePhantomCase({ seed: SEED, index }));
});

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Best Dice over all thresholds T of the classifier "intensity > T" (a 1024-bin sweep). */
function bestThresholdDice(img: Float32Array, target: (n: number) => boolean): number {
  const [pos, neg] = histograms(img, target, 1024);
  let total = 0;
  for (const v of pos) total += v;
  let tp = 0;
  let fp = 0;
  let best = 0;
  for (let b = pos.length - 1; b >= 0; b--) {
    tp += pos[b];
    fp += neg[b];
    best = Math.max(best, (2 * tp) / (tp + fp + total));
  }
  return best;
}

/** Best Dice over all intensity windows [lo, hi] (256 bins), the most a global window can do. */
function bestWindowDice(img: Float32Array, target: (n: number) => boolean): number {
  const [pos, neg] = histograms(img, target, 256);
  let total = 0;
  for (const v of pos) total += v;
  let best = 0;
  for (let a = 0; a < pos.length; a++) {
    let tp = 0;
    let fp = 0;
    for (let b = a; b < pos.length; b++) {
      tp += pos[b];
      fp += neg[b];
      best = Math.max(best, (2 * tp) / (tp + fp + total));
    }
  }
  return best;
}

function histograms(img: Float32Array, target: (n: number) => boolean, bins: number): [Float64Array, Float64Array] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of img) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const pos = new Float64Array(bins);
  const neg = new Float64Array(bins);
  for (let n = 0; n < img.length; n++) {
    const b = Math.min(bins - 1, Math.floor(((img[n] - lo) / (hi - lo)) * bins));
    if (target(n)) pos[b]++;
    else neg[b]++;
  }
  return [pos, neg];
}

describe('generatePhantomCase', () => {
  it('is deterministic in (seed, index) and differs between seeds and indices', () => {
    const again = generatePhantomCase({ seed: SEED, index: 0 });
    expect(bytesOf(again.image.data).equals(bytesOf(set[0].image.data))).toBe(true);
    expect(bytesOf(again.label.data).equals(bytesOf(set[0].label.data))).toBe(true);
    expect(again.image.affine).toEqual(set[0].image.affine);
    const otherSeed = generatePhantomCase({ seed: SEED + 1, index: 0 });
    expect(otherSeed.image.data.length === set[0].image.data.length && bytesOf(otherSeed.image.data).equals(bytesOf(set[0].image.data))).toBe(false);
    expect(otherSeed.image.affine).not.toEqual(set[0].image.affine);
    expect(set[1].image.affine).not.toEqual(set[0].image.affine);
  });

  it('rejects a non-integer seed or a negative index', () => {
    expect(() => generatePhantomCase({ seed: 1.5, index: 0 })).toThrow(InputError);
    expect(() => generatePhantomCase({ seed: 1, index: -1 })).toThrow(InputError);
  });

  it('has short-axis geometry in range with an oblique affine shared by image and label', () => {
    for (const { image, label } of set) {
      const [nx, ny, nz] = image.dims;
      expect(nz).toBeGreaterThanOrEqual(8);
      expect(nz).toBeLessThanOrEqual(12);
      for (const n of [nx, ny]) {
        expect(n).toBeGreaterThanOrEqual(160);
        expect(n).toBeLessThanOrEqual(224);
      }
      const [sx, sy, sz] = image.spacing;
      for (const s of [sx, sy]) {
        expect(s).toBeGreaterThanOrEqual(1.2 - 1e-9);
        expect(s).toBeLessThanOrEqual(1.8 + 1e-9);
      }
      expect(sz).toBeGreaterThanOrEqual(5 - 1e-9);
      expect(sz).toBeLessThanOrEqual(10 + 1e-9);
      expect(label.dims).toEqual(image.dims);
      expect(label.affine).toEqual(image.affine);
      expect(image.meta.kind).toBe('generated');
      // Oblique: every index axis has a sizeable component off its nearest RAS axis.
      for (let c = 0; c < 3; c++) {
        const col = [0, 1, 2].map((r) => Math.abs(image.affine[r][c]) / image.spacing[c]);
        expect(Math.max(...col)).toBeLessThan(0.9999);
      }
      expect(image.data.every(Number.isFinite)).toBe(true);
    }
  });

  it('has all four labels in the mid slices, LV enclosed by myocardium, RV against myocardium', () => {
    for (const [c, { label }] of set.entries()) {
      const [nx, ny, nz] = label.dims;
      const d = label.data;
      const plane = nx * ny;
      const mid = Math.floor(nz / 2);
      for (const k of [mid - 1, mid]) {
        const present = new Set(d.subarray(k * plane, (k + 1) * plane));
        expect([...present].sort(), `case ${c} slice ${k}`).toEqual([0, 1, 2, 3]);
      }
      let lvBreaches = 0;
      for (let k = 0; k < nz; k++) {
        let rvPixels = 0;
        let rvTouchingMyo = 0;
        for (let j = 1; j < ny - 1; j++) {
          for (let i = 1; i < nx - 1; i++) {
            const n = i + nx * j + plane * k;
            const nb = [d[n - 1], d[n + 1], d[n - nx], d[n + nx]];
            if (d[n] === 3 && nb.some((l) => l !== 3 && l !== 2)) lvBreaches++;
            if (d[n] === 1) {
              rvPixels++;
              if (nb.includes(2)) rvTouchingMyo++;
            }
          }
        }
        if (rvPixels > 0) expect(rvTouchingMyo, `case ${c} slice ${k}`).toBeGreaterThan(0);
      }
      expect(lvBreaches, `case ${c}`).toBe(0);
    }
  });

  it('has plausible structure volumes (mL) and a heart that is a small part of the field of view', () => {
    for (const [c, { label }] of set.entries()) {
      const counts = [0, 0, 0, 0];
      for (const l of label.data) counts[l]++;
      const [sx, sy, sz] = label.spacing;
      const ml = counts.map((n) => (n * sx * sy * sz) / 1000);
      expect(ml[3], `case ${c} LV`).toBeGreaterThan(30);
      expect(ml[3], `case ${c} LV`).toBeLessThan(350);
      expect(ml[2], `case ${c} Myo`).toBeGreaterThan(30);
      expect(ml[2], `case ${c} Myo`).toBeLessThan(300);
      expect(ml[1], `case ${c} RV`).toBeGreaterThan(15);
      expect(ml[1], `case ${c} RV`).toBeLessThan(350);
      const heartFraction = (counts[1] + counts[2] + counts[3]) / label.data.length;
      expect(heartFraction).toBeGreaterThan(0.01);
      expect(heartFraction).toBeLessThan(0.2);
    }
  });

  it('cannot be segmented by intensity alone: LV threshold Dice < 0.9, myocardium window Dice < 0.5', () => {
    for (const [c, { image, label }] of set.entries()) {
      const lv = bestThresholdDice(image.data, (n) => label.data[n] === 3);
      const myo = bestWindowDice(image.data, (n) => label.data[n] === 2);
      expect(lv, `case ${c} LV`).toBeLessThan(0.9);
      expect(myo, `case ${c} Myo`).toBeLessThan(0.5);
      // Sanity of the measure itself: the LV is brighter than average, so some threshold helps.
      expect(lv, `case ${c} LV`).toBeGreaterThan(0.02);
    }
  });

  it('varies contrast between cases (LV blood / myocardium ratio)', () => {
    const ratios = set.map(({ image, label }) => {
      let lv = 0;
      let nl = 0;
      let myo = 0;
      let nm = 0;
      for (let n = 0; n < label.data.length; n++) {
        if (label.data[n] === 3) {
          lv += image.data[n];
          nl++;
        } else if (label.data[n] === 2) {
          myo += image.data[n];
          nm++;
        }
      }
      return lv / nl / (myo / nm);
    });
    for (const r of ratios) expect(r).toBeGreaterThan(1.3);
    expect(Math.max(...ratios) - Math.min(...ratios)).toBeGreaterThan(0.3);
  });
});

describe('writePhantomDataset', () => {
  it('writes the nnU-Net raw layout, readable back with the same voxels and geometry', async () => {
    const root = await mkdtemp(join(tmpdir(), 'phantom-ds-'));
    try {
      const dir = join(root, 'Dataset900_Phantom');
      const progress: [number, number][] = [];
      await writePhantomDataset(dir, { cases: 2, seed: SEED, onProgress: (done, total) => progress.push([done, total]) });
      expect(progress).toEqual([
        [1, 2],
        [2, 2],
      ]);
      expect((await readdir(root)).sort()).toEqual(['Dataset900_Phantom']); // no staging left
      expect((await readdir(dir)).sort()).toEqual(['dataset.json', 'imagesTr', 'labelsTr']);
      expect((await readdir(join(dir, 'imagesTr'))).sort()).toEqual(['phantom_000_0000.nii.gz', 'phantom_001_0000.nii.gz']);
      expect((await readdir(join(dir, 'labelsTr'))).sort()).toEqual(['phantom_000.nii.gz', 'phantom_001.nii.gz']);
      const json = JSON.parse(await readFile(join(dir, 'dataset.json'), 'utf8'));
      expect(json).toMatchObject({
        channel_names: { '0': 'MRI' },
        labels: { background: 0, RV: 1, Myo: 2, LV: 3 },
        numTraining: 2,
        file_ending: '.nii.gz',
        seed: SEED,
      });
      expect(typeof json.description).toBe('string');

      for (let index = 0; index < 2; index++) {
        const id = phantomCaseId(index, 2);
        const image = await readNiftiFile(join(dir, 'imagesTr', `${id}_0000.nii.gz`));
        const label = await readNiftiFile(join(dir, 'labelsTr', `${id}.nii.gz`));
        const expected = set[index];
        expect(image.dims).toEqual(expected.image.dims);
        expect(label.dims).toEqual(expected.label.dims);
        for (let r = 0; r < 4; r++) {
          for (let c = 0; c < 4; c++) {
            expect(image.affine[r][c]).toBeCloseTo(expected.image.affine[r][c], 4);
            expect(label.affine[r][c]).toBeCloseTo(expected.image.affine[r][c], 4);
          }
        }
        expect(Array.from(image.data)).toEqual(Array.from(expected.image.data));
        expect(Array.from(label.data)).toEqual(Array.from(expected.label.data));
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('refuses a non-empty output folder and bad counts, leaving the folder as it was', async () => {
    const root = await mkdtemp(join(tmpdir(), 'phantom-ds-'));
    try {
      const dir = join(root, 'busy');
      await mkdir(dir);
      await writeFile(join(dir, 'keep.txt'), 'x');
      await expect(writePhantomDataset(dir, { cases: 1, seed: 1 })).rejects.toThrow(/not empty/);
      expect(await readdir(dir)).toEqual(['keep.txt']);
      await expect(writePhantomDataset(join(root, 'x'), { cases: 0, seed: 1 })).rejects.toThrow(InputError);
      expect((await readdir(root)).sort()).toEqual(['busy']);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('names cases with at least three digits', () => {
    expect(phantomCaseId(7, 10)).toBe('phantom_007');
    expect(phantomCaseId(12, 1500)).toBe('phantom_0012');
  });
});

describe('acquisition shift (--shift)', () => {
  /** Contrast-to-noise of LV blood against myocardium: |mean difference| / pooled std. */
  function lvMyoCnr(c: PhantomCase): number {
    const groups = [3, 2].map((value) => {
      const v: number[] = [];
      c.label.data.forEach((l, n) => {
        if (l === value) v.push(c.image.data[n]);
      });
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      return { mean, variance: v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length };
    });
    return Math.abs(groups[0].mean - groups[1].mean) / Math.sqrt((groups[0].variance + groups[1].variance) / 2);
  }

  it('keeps anatomy, labels and geometry, and lowers the blood–myocardium contrast-to-noise as severity grows', () => {
    for (const index of [0, 1, 2]) {
      const base = generatePhantomCase({ seed: SEED, index });
      const mild = generatePhantomCase({ seed: SEED, index, shift: 0.5 });
      const strong = generatePhantomCase({ seed: SEED, index, shift: 1 });
      expect(bytesOf(mild.label.data).equals(bytesOf(base.label.data))).toBe(true);
      expect(bytesOf(strong.label.data).equals(bytesOf(base.label.data))).toBe(true);
      expect(strong.image.affine).toEqual(base.image.affine);
      expect(bytesOf(strong.image.data).equals(bytesOf(base.image.data))).toBe(false);
      const [c0, c1, c2] = [base, mild, strong].map(lvMyoCnr);
      expect(c1).toBeLessThan(c0);
      expect(c2).toBeLessThan(c1);
    }
  });

  it('severity 0 is the in-domain phantom bit for bit; out-of-range severities are refused', () => {
    const base = generatePhantomCase({ seed: SEED, index: 4 });
    const zero = generatePhantomCase({ seed: SEED, index: 4, shift: 0 });
    expect(bytesOf(zero.image.data).equals(bytesOf(base.image.data))).toBe(true);
    expect(() => generatePhantomCase({ seed: SEED, index: 4, shift: -0.1 })).toThrow(InputError);
    expect(() => generatePhantomCase({ seed: SEED, index: 4, shift: 3 })).toThrow(/shift severity/);
  });
});
