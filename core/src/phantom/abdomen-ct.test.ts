import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ABDOMEN_CT_LABELS,
  ABDOMEN_ORGANS,
  ABDOMEN_ORGAN_HU,
  CONTRAST_PHASES,
  type AbdomenCtCase,
  generateAbdomenCtCase,
} from './abdomen-ct.js';
import { encodeCtSeries } from './ct-dicom.js';
import { readDicomSeries } from '../dicom/scan.js';
import { applyAffine } from '../geometry/affine.js';

const SEED = 41;
const MATRIX = 160;
let cases: AbdomenCtCase[] = [];
let tmp: string;

beforeAll(() => {
  cases = Array.from({ length: 6 }, (_, index) => generateAbdomenCtCase({ seed: SEED, index, matrix: MATRIX }));
  tmp = mkdtempSync(join(tmpdir(), 'abdomen-ct-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Voxels of label `value` none of whose 4 in-plane neighbours has another label (away from partial volume). */
function interiorValues(c: AbdomenCtCase, value: number): number[] {
  const [nx, ny, nz] = c.label.dims;
  const out: number[] = [];
  const l = c.label.data;
  for (let k = 0; k < nz; k++) {
    for (let j = 2; j < ny - 2; j++) {
      for (let i = 2; i < nx - 2; i++) {
        const n = (k * ny + j) * nx + i;
        if (l[n] === value && l[n - 2] === value && l[n + 2] === value && l[n - 2 * nx] === value && l[n + 2 * nx] === value) out.push(c.image.data[n]);
      }
    }
  }
  return out;
}

/** Mean RAS position (mm) of the voxels of label `value`. */
function centroid(c: AbdomenCtCase, value: number): [number, number, number] {
  const [nx, ny] = c.label.dims;
  const sum = [0, 0, 0];
  let count = 0;
  c.label.data.forEach((v, n) => {
    if (v !== value) return;
    sum[0] += n % nx;
    sum[1] += Math.floor(n / nx) % ny;
    sum[2] += Math.floor(n / (nx * ny));
    count++;
  });
  const p = applyAffine(c.label.affine, [sum[0] / count, sum[1] / count, sum[2] / count]);
  return [p[0], p[1], p[2]];
}

describe('abdominal CT phantom', () => {
  it('has CT-like spacing, an axial grid and whole HU values in the CT range', () => {
    for (const c of cases) {
      const [sx, sy, sz] = c.image.spacing;
      expect(sx).toBeGreaterThanOrEqual(0.6);
      expect(sx).toBeLessThanOrEqual(0.9);
      expect(sy).toBeCloseTo(sx, 10);
      expect(sz).toBeGreaterThanOrEqual(1.5);
      expect(sz).toBeLessThanOrEqual(5);
      expect(c.image.dims.slice(0, 2)).toEqual([MATRIX, MATRIX]);
      let air = 0;
      for (const v of c.image.data) {
        if (!Number.isInteger(v) || v < -1024 || v > 3071) throw new Error(`bad HU ${v}`);
        if (v < -900) air++;
      }
      // Air around the body and bone inside it.
      expect(air).toBeGreaterThan(c.image.voxelCount * 0.1);
      expect(c.image.data.reduce((m, v) => Math.max(m, v), -Infinity)).toBeGreaterThan(500);
    }
    // Spacing, phase and slice count vary between cases.
    expect(new Set(cases.map((c) => c.image.spacing[2])).size).toBeGreaterThan(1);
    expect(new Set(cases.map((c) => c.image.dims[2])).size).toBeGreaterThan(1);
    expect(new Set(cases.map((c) => c.phase)).size).toBeGreaterThan(1);
  });

  it("each organ's voxels have its HU for the case's contrast phase", () => {
    for (const c of cases) {
      expect(CONTRAST_PHASES).toContain(c.phase);
      for (const organ of ABDOMEN_ORGANS) {
        const [lo, hi] = ABDOMEN_ORGAN_HU[c.phase][organ];
        expect(c.organHu[organ]).toBeGreaterThanOrEqual(lo);
        expect(c.organHu[organ]).toBeLessThanOrEqual(hi);
        const values = interiorValues(c, ABDOMEN_CT_LABELS[organ]);
        expect(values.length, `${organ} interior`).toBeGreaterThanOrEqual(5);
        // The median of noisy interior voxels sits on the drawn value: within 4 standard errors of
        // a median (1.25 σ/√n) plus 4 HU for the blur's reach from neighbouring tissue.
        const tolerance = (4 * 1.25 * c.noiseSigma) / Math.sqrt(values.length) + 4;
        expect(Math.abs(median(values) - c.organHu[organ]), `${organ} in case of phase ${c.phase}`).toBeLessThan(tolerance);
      }
    }
  });

  it('labels lie where the organs are: liver and right kidney on the right, spleen left, pancreas in between', () => {
    for (const c of cases) {
      const present = new Set(c.label.data);
      expect([...present].sort()).toEqual([0, 1, 2, 3, 4]);
      const liver = centroid(c, ABDOMEN_CT_LABELS.liver);
      const spleen = centroid(c, ABDOMEN_CT_LABELS.spleen);
      const pancreas = centroid(c, ABDOMEN_CT_LABELS.pancreas);
      // RAS +x is the patient's right: the liver lies right of the spleen.
      expect(liver[0]).toBeGreaterThan(spleen[0] + 20 * (MATRIX / 512));
      expect(pancreas[0]).toBeLessThan(liver[0]);
      expect(pancreas[0]).toBeGreaterThan(spleen[0]);
      // Spleen is posterior to the pancreas (RAS y grows anteriorly).
      expect(spleen[1]).toBeLessThan(pancreas[1]);
      // Two kidneys, one each side of the midline of the kidney voxels, with similar volumes.
      const [nx] = c.label.dims;
      const xs: number[] = [];
      c.label.data.forEach((v, n) => v === ABDOMEN_CT_LABELS.kidney && xs.push(n % nx));
      const mid = (Math.min(...xs) + Math.max(...xs)) / 2;
      const left = xs.filter((x) => x > mid).length;
      const right = xs.length - left;
      expect(Math.min(left, right) / Math.max(left, right)).toBeGreaterThan(0.4);
      // Volumes: the liver is the largest organ.
      const counts = [0, 0, 0, 0, 0];
      for (const v of c.label.data) counts[v]++;
      expect(counts[1]).toBeGreaterThan(Math.max(counts[2], counts[3], counts[4]));
    }
  });

  it('gives the same voxels for the same seed and case, different ones otherwise', () => {
    const again = generateAbdomenCtCase({ seed: SEED, index: 1, matrix: MATRIX });
    expect(Buffer.from(again.image.data.buffer).equals(Buffer.from(cases[1].image.data.buffer))).toBe(true);
    expect(Buffer.from(again.label.data.buffer).equals(Buffer.from(cases[1].label.data.buffer))).toBe(true);
    const other = generateAbdomenCtCase({ seed: SEED + 1, index: 1, matrix: MATRIX });
    expect(Buffer.from(other.image.data.buffer).equals(Buffer.from(cases[1].image.data.buffer))).toBe(false);
  });

  it('writes a DICOM CT series that our reader returns with the same HU and geometry, and dciodvfy accepts', async () => {
    const c = cases[0];
    const slices = encodeCtSeries(c.image, { uidSeed: 9, patientId: 'case0', seriesDescription: 'test', contrastAgent: 'contrast' });
    expect(slices).toHaveLength(c.image.dims[2]);
    const again = encodeCtSeries(c.image, { uidSeed: 9, patientId: 'case0', seriesDescription: 'test', contrastAgent: 'contrast' });
    again.forEach((bytes, k) => expect(Buffer.from(bytes).equals(Buffer.from(slices[k]))).toBe(true));
    const folder = join(tmp, 'series');
    mkdirSync(folder);
    // Written in reverse so the reader must order slices by position, not by file name.
    slices.forEach((bytes, k) => writeFileSync(join(folder, `s${String(slices.length - k).padStart(3, '0')}.dcm`), bytes));
    const vol = await readDicomSeries(folder);
    expect(vol.meta.dicom?.modality).toBe('CT');
    expect(vol.dims).toEqual(c.image.dims);
    for (let r = 0; r < 3; r++) for (let col = 0; col < 4; col++) expect(vol.affine[r][col]).toBeCloseTo(c.image.affine[r][col], 4);
    expect(vol.data.length).toBe(c.image.data.length);
    let maxDiff = 0;
    for (let n = 0; n < vol.data.length; n++) maxDiff = Math.max(maxDiff, Math.abs(vol.data[n] - c.image.data[n]));
    expect(maxDiff).toBe(0);

    const check = spawnSync('dciodvfy', [join(folder, 's001.dcm')], { encoding: 'utf8' });
    expect(check.error).toBeUndefined();
    const lines = `${check.stdout}\n${check.stderr}`.split('\n');
    expect(lines.filter((l) => l.startsWith('Error'))).toEqual([]);
    expect(`${check.stdout}${check.stderr}`).toMatch(/CTImage/);
  });
});

describe('CT phantom body size', () => {
  /** Per organ, its volume in mL (label voxels × voxel volume). */
  const organMl = (c: ReturnType<typeof generateAbdomenCtCase>) => {
    const [sx, sy, sz] = c.label.spacing;
    const counts = new Float64Array(5);
    for (const v of c.label.data) counts[v]++;
    return Array.from(counts.subarray(1), (n) => (n * sx * sy * sz) / 1000);
  };

  it("'adult' keeps the organs' volume at any matrix; 'fov' shrinks them with the field of view", () => {
    const adult64 = generateAbdomenCtCase({ seed: SEED, index: 2, matrix: 64, body: 'adult' });
    const adult128 = generateAbdomenCtCase({ seed: SEED, index: 2, matrix: 128, body: 'adult' });
    const fov64 = generateAbdomenCtCase({ seed: SEED, index: 2, matrix: 64 });
    const fov128 = generateAbdomenCtCase({ seed: SEED, index: 2, matrix: 128 });
    // Same draw: the adult case's pixel is the 512-matrix pixel, 512/matrix times the fov case's.
    expect(adult128.label.spacing[0]).toBeCloseTo(fov128.label.spacing[0] * 4, 9);
    expect(adult64.label.spacing[0]).toBeCloseTo(fov64.label.spacing[0] * 8, 9);
    const [a64, a128, f64, f128] = [adult64, adult128, fov64, fov128].map(organMl);
    for (let o = 0; o < 4; o++) {
      expect(a128[o]).toBeGreaterThan(0);
      // Adult: the same organ in mL at either matrix, up to the coarser grid's rounding.
      expect(Math.abs(a64[o] - a128[o]) / a128[o]).toBeLessThan(0.25);
      // fov: doubling the matrix doubles the body in each direction, so ≈ 8× the volume.
      expect(f128[o] / f64[o]).toBeGreaterThan(5);
      expect(f128[o] / f64[o]).toBeLessThan(11);
    }
    // An adult kidney holds tens of mL; the quarter-scale body's (matrix 128, fov) about 1–2.
    expect(a128[1]).toBeGreaterThan(20 * f128[1] / 8);
    expect(() => generateAbdomenCtCase({ seed: SEED, index: 0, matrix: 64, body: 'giant' as never })).toThrow(/body must be "fov" or "adult"/);
  });

  it('an acquisition shift keeps the anatomy and labels, lowers organ contrast and raises the noise; severity 0 is the in-domain case', () => {
    const base = cases[3];
    const same = generateAbdomenCtCase({ seed: SEED, index: 3, matrix: MATRIX, shift: 0 });
    expect(Buffer.from(same.image.data.buffer).equals(Buffer.from(base.image.data.buffer))).toBe(true);
    const shifted = generateAbdomenCtCase({ seed: SEED, index: 3, matrix: MATRIX, shift: 2 });
    expect(Buffer.from(shifted.label.data.buffer).equals(Buffer.from(base.label.data.buffer))).toBe(true);
    expect(shifted.phase).toBe(base.phase);
    expect(shifted.noiseSigma).toBeGreaterThan(1.9 * base.noiseSigma);
    // Liver against the visceral fat around it: the medians move closer together.
    const contrast = (c: AbdomenCtCase) => Math.abs(median(interiorValues(c, ABDOMEN_CT_LABELS.liver)) - median(interiorValues(c, 0).filter((v) => v > -200 && v < 0)));
    expect(contrast(shifted)).toBeLessThan(0.85 * contrast(base));
    expect(shifted.image.meta.description).toMatch(/shift 2$/);
    expect(() => generateAbdomenCtCase({ seed: SEED, index: 0, matrix: 64, shift: 3 })).toThrow(/shift severity must be in \[0, 2\]/);
  });
});
