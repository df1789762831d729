import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PYTHON } from '../../../test/support/python.js';
import { Volume } from '../volume.js';
import { scalingAffine, type Mat4 } from '../geometry/affine.js';
import { InputError } from '../errors.js';
import { Rng } from '../random.js';
import { meanMetrics, percentileLinear, segmentationMetrics, sliceMetrics } from './segmentation.js';
import { SquaredEdt } from './edt.js';

function labelVolume(dims: [number, number, number], affine: Mat4, fill: (i: number, j: number, k: number) => number): Volume<Uint8Array> {
  const data = new Uint8Array(dims[0] * dims[1] * dims[2]);
  let n = 0;
  for (let k = 0; k < dims[2]; k++) for (let j = 0; j < dims[1]; j++) for (let i = 0; i < dims[0]; i++) data[n++] = fill(i, j, k);
  return new Volume({ data, dims, affine });
}

const inBox = (lo: number[], hi: number[]) => (i: number, j: number, k: number) =>
  i >= lo[0] && i <= hi[0] && j >= lo[1] && j <= hi[1] && k >= lo[2] && k <= hi[2] ? 1 : 0;

describe('percentileLinear', () => {
  it('matches numpy linear interpolation', () => {
    // np.percentile([1, 2, 3, 4], 95) = 3 + 0.85 * (4 - 3)
    expect(percentileLinear([1, 2, 3, 4], 95)).toBeCloseTo(3.85, 12);
    expect(percentileLinear([5], 95)).toBe(5);
    expect(percentileLinear([0, 10], 50)).toBe(5);
  });
});

describe('SquaredEdt', () => {
  it('gives squared anisotropic distances to the nearest seed', () => {
    const dims: [number, number, number] = [4, 3, 2];
    const f = new Float64Array(24).fill(Infinity);
    f[0] = 0; // seed at (0,0,0)
    new SquaredEdt().transform(f, dims, [1, 2, 5]);
    // voxel (3,2,1): 3² + (2·2)² + 5² = 9 + 16 + 25
    expect(f[3 + 4 * (2 + 3 * 1)]).toBe(50);
    expect(f[1 + 4 * 1]).toBe(1 + 4);
  });

  it('leaves +Infinity when there is no seed', () => {
    const f = new Float64Array(8).fill(Infinity);
    new SquaredEdt().transform(f, [2, 2, 2], [1, 1, 1]);
    expect(Array.from(f).every((v) => v === Infinity)).toBe(true);
  });
});

describe('segmentationMetrics: hand-computed cases', () => {
  it('1D line with spacing 2 mm: every voxel is surface, hd95 interpolates', () => {
    const aff = scalingAffine([2, 1, 1]);
    const pred = labelVolume([10, 1, 1], aff, (i) => (i >= 2 && i <= 4 ? 1 : 0));
    const ref = labelVolume([10, 1, 1], aff, (i) => (i >= 3 && i <= 6 ? 1 : 0));
    const [m] = segmentationMetrics(pred, ref, [1]);
    // A = {2,3,4}, B = {3,4,5,6}; d(A→B) = [1,0,0], d(B→A) = [0,0,1,2] voxels.
    // Pooled sorted [0,0,0,0,1,1,2]: index 6·0.95 = 5.7 → 1 + 0.7·(2 − 1) = 1.7.
    expect(m.dice).toBeCloseTo(4 / 7, 12);
    expect(m.jaccard).toBeCloseTo(2 / 5, 12);
    expect(m.hd95Voxels).toBeCloseTo(1.7, 12);
    expect(m.hd95Mm).toBeCloseTo(3.4, 12);
    expect(m.asdVoxels).toBeCloseTo(1 / 3, 12);
    expect(m.asdMm).toBeCloseTo(2 / 3, 12);
    expect(m.assdVoxels).toBeCloseTo((1 / 3 + 3 / 4) / 2, 12);
    expect(m.assdMm).toBeCloseTo(1 / 3 + 3 / 4, 12);
    expect(m.predVoxels).toBe(3);
    expect(m.refVoxels).toBe(4);
  });

  it('2D square against a single pixel: directed ASD and pooled HD95 with spacing [2, 1]', () => {
    const w = 8;
    const h = 5;
    const pred = new Uint8Array(w * h);
    const ref = new Uint8Array(w * h);
    for (let y = 0; y <= 2; y++) for (let x = 0; x <= 2; x++) pred[x + w * y] = 3;
    ref[4 + w * 1] = 3;
    const [m] = sliceMetrics(pred, ref, w, h, [2, 1], [3]);
    // 4-neighbourhood surface of the 3×3 square: its 8 border pixels. Distances to (4,1) in mm:
    // columns x=0,1,2 → dx = 8,6,4 mm; rows y=0,2 → dy = 1 mm, y=1 → 0.
    const ab = [Math.sqrt(65), Math.sqrt(37), Math.sqrt(17), 8, 4, Math.sqrt(65), Math.sqrt(37), Math.sqrt(17)];
    const asdAB = ab.reduce((s, v) => s + v, 0) / 8;
    expect(m.asdMm).toBeCloseTo(asdAB, 12);
    expect(m.assdMm).toBeCloseTo((asdAB + 4) / 2, 12); // d(B→A) = [4]: (4,1) → (2,1)
    // Pooled sorted: 4,4,√17,√17,√37,√37,8,√65,√65; index 8·0.95 = 7.6 between two √65.
    expect(m.hd95Mm).toBeCloseTo(Math.sqrt(65), 12);
    const abVox = [Math.sqrt(17), Math.sqrt(10), Math.sqrt(5), 4, 2, Math.sqrt(17), Math.sqrt(10), Math.sqrt(5)];
    expect(m.asdVoxels).toBeCloseTo(abVox.reduce((s, v) => s + v, 0) / 8, 12);
    expect(m.hd95Voxels).toBeCloseTo(Math.sqrt(17), 12);
    expect(m.dice).toBe(0);

    // asd is directed: swapping the inputs gives d(ref→pred) = 4 mm only.
    const [swapped] = sliceMetrics(ref, pred, w, h, [2, 1], [3]);
    expect(swapped.asdMm).toBeCloseTo(4, 12);
    expect(swapped.assdMm).toBeCloseTo(m.assdMm, 12);
    expect(swapped.hd95Mm).toBeCloseTo(m.hd95Mm, 12);
  });

  it('3D boxes offset by one slice with spacing [1, 1, 5] mm read from an oblique affine', () => {
    // Rotate the in-plane axes by 30° so spacing must come from the affine's column norms.
    const c = Math.cos(Math.PI / 6);
    const s = Math.sin(Math.PI / 6);
    const aff: Mat4 = [
      [c, -s, 0, 10],
      [s, c, 0, -4],
      [0, 0, 5, 7],
      [0, 0, 0, 1],
    ];
    const pred = labelVolume([6, 6, 6], aff, inBox([1, 1, 1], [4, 4, 3]));
    const ref = labelVolume([6, 6, 6], aff, (i, j, k) => 2 * inBox([1, 1, 2], [4, 4, 4])(i, j, k));
    const refAs1 = labelVolume([6, 6, 6], aff, inBox([1, 1, 2], [4, 4, 4]));
    const [m] = segmentationMetrics(pred, refAs1, [1]);
    // 4×4×3 box: 44 surface voxels (4 interior). Rim columns (12): k=1 → 5 mm, k=2,3 → 0.
    // Interior columns (4): k=1 → 5 mm (to k=2), k=3 → 1 mm (to the rim in-plane), since the
    // reference's k=3 voxel there is interior. d(A→B): 16×5, 4×1, 24×0 → mean 84/44.
    expect(m.asdMm).toBeCloseTo(84 / 44, 12);
    expect(m.asdVoxels).toBeCloseTo(20 / 44, 12);
    expect(m.assdMm).toBeCloseTo(84 / 44, 12); // mirror-symmetric in k
    // Pooled 88 values: 48 zeros, 8 ones, 32 fives; index 87·0.95 = 82.65 → 5.
    expect(m.hd95Mm).toBeCloseTo(5, 12);
    expect(m.hd95Voxels).toBeCloseTo(1, 12);
    expect(m.dice).toBeCloseTo(2 / 3, 12);
    expect(m.jaccard).toBeCloseTo(0.5, 12);
    // Class values are matched exactly: class 1 in pred vs class 2 in ref are different classes.
    const [c1, c2] = segmentationMetrics(pred, ref, [1, 2]);
    expect(c1.refEmpty).toBe(true);
    expect(c2.predEmpty).toBe(true);
  });

  it('identical masks score perfectly', () => {
    const v = labelVolume([7, 6, 5], scalingAffine([1.5, 1.5, 8]), (i, j, k) => ((i + j + k) % 3 === 0 ? 2 : (i > 3 ? 1 : 0)));
    for (const m of segmentationMetrics(v, v, [1, 2])) {
      expect(m.dice).toBe(1);
      expect(m.jaccard).toBe(1);
      expect(m.hd95Mm).toBe(0);
      expect(m.asdMm).toBe(0);
      expect(m.assdVoxels).toBe(0);
    }
  });
});

describe('empty-mask policies', () => {
  const aff = scalingAffine([1, 1, 1]);
  const empty = labelVolume([4, 4, 2], aff, () => 0);
  const some = labelVolume([4, 4, 2], aff, inBox([1, 1, 0], [2, 2, 1]));

  it('flagged: both empty → perfect; one empty → 0 overlap and NaN distances', () => {
    const [both] = segmentationMetrics(empty, empty, [1]);
    expect(both).toMatchObject({ dice: 1, jaccard: 1, hd95Mm: 0, asdMm: 0, bothEmpty: true, predEmpty: false, refEmpty: false });
    const [missed] = segmentationMetrics(empty, some, [1]);
    expect(missed.dice).toBe(0);
    expect(missed.jaccard).toBe(0);
    expect(missed.hd95Mm).toBeNaN();
    expect(missed.asdVoxels).toBeNaN();
    expect(missed.predEmpty).toBe(true);
    const [spurious] = segmentationMetrics(some, empty, [1]);
    expect(spurious.refEmpty).toBe(true);
    expect(spurious.assdMm).toBeNaN();
    expect(spurious.dice).toBe(0);
  });

  it('released-code: a never-predicted class scores 0 on all four metrics', () => {
    const [missed] = segmentationMetrics(empty, some, [1], { emptyPolicy: 'released-code' });
    expect(missed).toMatchObject({ dice: 0, jaccard: 0, hd95Mm: 0, asdMm: 0, hd95Voxels: 0, asdVoxels: 0, predEmpty: true });
    const [both] = segmentationMetrics(empty, empty, [1], { emptyPolicy: 'released-code' });
    expect(both).toMatchObject({ dice: 0, jaccard: 0, hd95Mm: 0, asdMm: 0, bothEmpty: true });
    const [spurious] = segmentationMetrics(some, empty, [1], { emptyPolicy: 'released-code' });
    expect(spurious.hd95Mm).toBeNaN();
  });

  it('meanMetrics skips NaN values but counts the cases', () => {
    const good = segmentationMetrics(some, some, [1]);
    const missed = segmentationMetrics(empty, some, [1]);
    const summary = meanMetrics([good, missed, good]);
    const s = summary.perClass[0];
    expect(s.cases).toBe(3);
    expect(s.predEmpty).toBe(1);
    expect(s.stats.dice).toMatchObject({ mean: 2 / 3, count: 3, skipped: 0 });
    expect(s.stats.hd95Mm).toMatchObject({ mean: 0, count: 2, skipped: 1 });
    expect(s.stats.dice.std).toBeCloseTo(Math.sqrt(2 / 9), 12);
    expect(summary.mean.dice).toBeCloseTo(2 / 3, 12);
  });

  it('meanMetrics averages per-class means over classes', () => {
    const pred = labelVolume([6, 1, 1], aff, (i) => (i < 2 ? 1 : i < 4 ? 2 : 0));
    const ref = labelVolume([6, 1, 1], aff, (i) => (i < 2 ? 1 : i < 5 ? 2 : 0));
    const m = segmentationMetrics(pred, ref, [1, 2]);
    expect(m[1].dice).toBeCloseTo(4 / 5, 12);
    expect(meanMetrics([m]).mean.dice).toBeCloseTo((1 + 4 / 5) / 2, 12);
  });
});

describe('input checks', () => {
  it('rejects mismatched dims and spacing with an InputError', () => {
    const a = labelVolume([4, 4, 2], scalingAffine([1, 1, 1]), () => 0);
    const b = labelVolume([4, 4, 3], scalingAffine([1, 1, 1]), () => 0);
    const c = labelVolume([4, 4, 2], scalingAffine([1, 1, 2]), () => 0);
    expect(() => segmentationMetrics(a, b, [1])).toThrow(InputError);
    expect(() => segmentationMetrics(a, c, [1])).toThrow(/spacing/);
    expect(() => sliceMetrics([0, 1], [0, 1, 1], 2, 1, [1, 1], [1])).toThrow(InputError);
  });
});

/** Uniform [0, 1) draws from the project's seeded generator. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

/** Labels 0..2 from a few random overlapping ellipsoids, so surfaces are irregular. */
function randomBlobs(dims: [number, number, number], seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(dims[0] * dims[1] * dims[2]);
  for (let b = 0; b < 6; b++) {
    const label = 1 + (b % 2);
    const c = dims.map((d) => r() * d);
    const rad = dims.map((d) => 1 + r() * d * 0.35);
    let n = 0;
    for (let k = 0; k < dims[2]; k++) {
      for (let j = 0; j < dims[1]; j++) {
        for (let i = 0; i < dims[0]; i++, n++) {
          const q = ((i - c[0]) / rad[0]) ** 2 + ((j - c[1]) / rad[1]) ** 2 + ((k - c[2]) / rad[2]) ** 2;
          if (q < 1 && r() > 0.05) out[n] = label;
        }
      }
    }
  }
  return out;
}

// Independent reference: medpy's definitions written with scipy.ndimage (Debian python3-scipy).
const SCIPY_REFERENCE = `
import json, sys
import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure
cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    nx, ny, nz = c['dims']
    shape = (nz, ny, nx) if not c['planar'] else (ny, nx)
    sp = c['spacing']
    sampling = (sp[2], sp[1], sp[0]) if not c['planar'] else (sp[1], sp[0])
    pred = np.array(c['pred'], dtype=np.uint8).reshape(shape)
    ref = np.array(c['ref'], dtype=np.uint8).reshape(shape)
    res = []
    for label in c['classes']:
        a = pred == label
        b = ref == label
        st = generate_binary_structure(a.ndim, 1)
        def sd(x, y, s):
            xb = x ^ binary_erosion(x, structure=st, iterations=1)
            yb = y ^ binary_erosion(y, structure=st, iterations=1)
            return distance_transform_edt(~yb, sampling=s)[xb]
        row = {'dice': 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)),
               'jaccard': np.count_nonzero(a & b) / np.count_nonzero(a | b)}
        for unit, s in (('Mm', sampling), ('Voxels', None)):
            d1 = sd(a, b, s)
            d2 = sd(b, a, s)
            row['hd95' + unit] = float(np.percentile(np.hstack((d1, d2)), 95))
            row['asd' + unit] = float(d1.mean())
            row['assd' + unit] = float(np.mean((d1.mean(), d2.mean())))
        res.append(row)
    out.append(res)
print(json.dumps(out))
`;

describe('cross-check against scipy.ndimage (medpy definitions)', () => {
  it('agrees within 1e-6 on random blob masks, 3D anisotropic and 2D slices', () => {
    const cases: { dims: [number, number, number]; spacing: [number, number, number]; planar: boolean; pred: number[]; ref: number[]; classes: number[] }[] = [];
    const shapes: { dims: [number, number, number]; spacing: [number, number, number]; planar: boolean }[] = [
      { dims: [23, 19, 7], spacing: [1.37, 1.37, 5], planar: false },
      { dims: [16, 21, 9], spacing: [0.8, 1.6, 10], planar: false },
      { dims: [12, 12, 12], spacing: [1, 1, 1], planar: false },
      { dims: [40, 33, 1], spacing: [1.25, 0.7, 1], planar: true },
      { dims: [31, 29, 1], spacing: [1.5, 1.5, 1], planar: true },
    ];
    shapes.forEach((s, t) => {
      const pred = randomBlobs(s.dims, 100 + t);
      const ref = randomBlobs(s.dims, 200 + t);
      cases.push({ ...s, pred: Array.from(pred), ref: Array.from(ref), classes: [1, 2] });
    });
    const dir = mkdtempSync(join(tmpdir(), 'metrics-ref-'));
    try {
      const input = join(dir, 'cases.json');
      const script = join(dir, 'ref.py');
      writeFileSync(input, JSON.stringify(cases));
      writeFileSync(script, SCIPY_REFERENCE);
      const run = spawnSync(PYTHON, [script, input], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      const expected = JSON.parse(run.stdout) as Record<string, number>[][];
      let compared = 0;
      cases.forEach((c, t) => {
        const ours = c.planar
          ? sliceMetrics(c.pred, c.ref, c.dims[0], c.dims[1], [c.spacing[0], c.spacing[1]], c.classes)
          : segmentationMetrics(
              new Volume({ data: Uint8Array.from(c.pred), dims: c.dims, affine: scalingAffine(c.spacing) }),
              new Volume({ data: Uint8Array.from(c.ref), dims: c.dims, affine: scalingAffine(c.spacing) }),
              c.classes,
            );
        ours.forEach((m, ci) => {
          expect(m.predEmpty || m.refEmpty).toBe(false);
          for (const [key, value] of Object.entries(expected[t][ci])) {
            expect(Math.abs((m as unknown as Record<string, number>)[key] - value), `case ${t} class ${c.classes[ci]} ${key}`).toBeLessThan(1e-6);
            compared++;
          }
        });
      });
      expect(compared).toBe(5 * 2 * 8);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
