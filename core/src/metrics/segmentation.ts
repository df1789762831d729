import { InputError } from '../errors.js';
import type { Volume } from '../volume.js';
import { SquaredEdt } from './edt.js';

/**
 * Segmentation metrics with medpy's definitions (medpy.metric.binary, releases 0.4/0.5):
 *
 * - surface of a mask = mask XOR binary_erosion(mask, face-connected structuring element),
 *   with voxels outside the array counting as background (scipy's border_value = 0), so a mask
 *   touching the array edge has surface there. 3D uses the 6-neighbourhood
 *   (generate_binary_structure(3, 1)); `sliceMetrics` uses the 4-neighbourhood of one slice.
 * - d(A→B) = for every surface voxel of A, the exact Euclidean distance (with voxel spacing) to
 *   the nearest surface voxel of B, i.e. distance_transform_edt(~surface(B), sampling)[surface(A)].
 * - hd95(pred, ref) = np.percentile(np.hstack((d(pred→ref), d(ref→pred))), 95): the 95th
 *   percentile of the POOLED directed distances (numpy's default linear interpolation), not the
 *   maximum of two directed percentiles.
 * - asd(pred, ref) = mean(d(pred→ref)): directed, from prediction to reference.
 * - assd = (asd(pred, ref) + asd(ref, pred)) / 2: the mean of the two directed means.
 *
 * Each distance is reported in millimetres (spacing from the volume's affine) and in voxels
 * (unit spacing, as the ALHVR released test script reports them).
 */

/**
 * How a class that is empty in the prediction and/or reference is scored.
 * - 'flagged' (default): both empty → Dice 1, Jaccard 1, distances 0 (`bothEmpty`); exactly one
 *   empty → Dice 0, Jaccard 0, distances NaN (`predEmpty` / `refEmpty`). `meanMetrics` skips the
 *   NaN values but counts the cases.
 * - 'released-code': as the ALHVR/SSL4MIS test script: a class the prediction never contains
 *   scores 0 for Dice, Jaccard, HD95 and ASD (also when the reference is empty too). A predicted
 *   class absent from the reference makes medpy raise; here it scores Dice 0, Jaccard 0 and NaN
 *   distances flagged `refEmpty`, as under 'flagged'.
 */
export type EmptyPolicy = 'flagged' | 'released-code';

export interface MetricsOptions {
  emptyPolicy?: EmptyPolicy;
  /** Reused scratch buffers, for callers that score many volumes in a loop. */
  workspace?: MetricsWorkspace;
}

export interface ClassMetrics {
  label: number;
  dice: number;
  jaccard: number;
  hd95Mm: number;
  asdMm: number;
  assdMm: number;
  hd95Voxels: number;
  asdVoxels: number;
  assdVoxels: number;
  predVoxels: number;
  refVoxels: number;
  bothEmpty: boolean;
  predEmpty: boolean;
  refEmpty: boolean;
}

export const METRIC_NAMES = [
  'dice',
  'jaccard',
  'hd95Mm',
  'asdMm',
  'assdMm',
  'hd95Voxels',
  'asdVoxels',
  'assdVoxels',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

type Spacing3 = readonly [number, number, number];

/** Scratch buffers that only grow, so repeated scoring touches no fresh memory pages. */
export class MetricsWorkspace {
  readonly edt = new SquaredEdt();
  a = new Uint8Array(0);
  b = new Uint8Array(0);
  field = new Float64Array(0);
  dist = new Float64Array(0);

  ensure(cropVoxels: number): void {
    if (this.a.length < cropVoxels) {
      this.a = new Uint8Array(cropVoxels);
      this.b = new Uint8Array(cropVoxels);
      this.field = new Float64Array(cropVoxels);
    }
  }

  ensureDist(n: number): void {
    if (this.dist.length < n) this.dist = new Float64Array(n);
  }
}

/**
 * Per-class metrics of a predicted label volume against a reference label volume (same dims;
 * spacing taken from the reference's affine and required to match the prediction's).
 */
export function segmentationMetrics(
  pred: Volume,
  ref: Volume,
  classes: readonly number[],
  opts: MetricsOptions = {},
): ClassMetrics[] {
  const name = pred.meta.path ?? ref.meta.path ?? 'segmentation';
  if (pred.frames !== 1 || ref.frames !== 1) throw new InputError('label volumes must have a single frame', name);
  if (pred.dims.some((d, a) => d !== ref.dims[a])) {
    throw new InputError(`prediction dims ${pred.dims.join('×')} differ from reference dims ${ref.dims.join('×')}`, name);
  }
  const spacing = ref.spacing;
  const ps = pred.spacing;
  if (ps.some((s, a) => Math.abs(s - spacing[a]) > 1e-3 * Math.max(1, spacing[a]))) {
    throw new InputError(
      `prediction spacing ${ps.map((s) => s.toFixed(4)).join('×')} differs from reference spacing ${spacing.map((s) => s.toFixed(4)).join('×')} mm`,
      name,
    );
  }
  return labelMetrics(pred.data, ref.data, pred.dims, spacing, false, classes, opts);
}

/**
 * Per-class metrics of one 2D slice (width × height, x fastest) with the 4-neighbourhood
 * surface, for slice-wise validation during training. `spacing` is [x, y] in mm.
 */
export function sliceMetrics(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  width: number,
  height: number,
  spacing: readonly [number, number],
  classes: readonly number[],
  opts: MetricsOptions = {},
): ClassMetrics[] {
  const n = width * height;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new InputError(`slice size ${width}×${height} is not a positive integer size`);
  }
  if (pred.length !== n || ref.length !== n) {
    throw new InputError(`slice arrays have ${pred.length} and ${ref.length} values, ${width}×${height} needs ${n}`);
  }
  return labelMetrics(pred, ref, [width, height, 1], [spacing[0], spacing[1], 1], true, classes, opts);
}

function labelMetrics(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  dims: readonly [number, number, number],
  spacing: Spacing3,
  planar: boolean,
  classes: readonly number[],
  opts: MetricsOptions,
): ClassMetrics[] {
  if (!spacing.every((s) => Number.isFinite(s) && s > 0)) {
    throw new InputError(`voxel spacing ${spacing.join('×')} must be positive`);
  }
  const ws = opts.workspace ?? new MetricsWorkspace();
  const policy = opts.emptyPolicy ?? 'flagged';
  if (policy !== 'flagged' && policy !== 'released-code') throw new InputError(`unknown empty-mask policy "${String(policy)}"`);
  return classes.map((c) => classMetrics(pred, ref, c, dims, spacing, planar, policy, ws));
}

function emptyResult(label: number, predVoxels: number, refVoxels: number, policy: EmptyPolicy): ClassMetrics {
  const bothEmpty = predVoxels === 0 && refVoxels === 0;
  const base = { label, predVoxels, refVoxels, bothEmpty, predEmpty: predVoxels === 0 && !bothEmpty, refEmpty: refVoxels === 0 && !bothEmpty };
  if (policy === 'released-code' && predVoxels === 0) {
    return { ...base, dice: 0, jaccard: 0, hd95Mm: 0, asdMm: 0, assdMm: 0, hd95Voxels: 0, asdVoxels: 0, assdVoxels: 0 };
  }
  if (bothEmpty) {
    return { ...base, dice: 1, jaccard: 1, hd95Mm: 0, asdMm: 0, assdMm: 0, hd95Voxels: 0, asdVoxels: 0, assdVoxels: 0 };
  }
  return { ...base, dice: 0, jaccard: 0, hd95Mm: NaN, asdMm: NaN, assdMm: NaN, hd95Voxels: NaN, asdVoxels: NaN, assdVoxels: NaN };
}

function classMetrics(
  pred: ArrayLike<number>,
  ref: ArrayLike<number>,
  label: number,
  dims: readonly [number, number, number],
  spacing: Spacing3,
  planar: boolean,
  policy: EmptyPolicy,
  ws: MetricsWorkspace,
): ClassMetrics {
  const [nx, ny, nz] = dims;
  let predVoxels = 0;
  let refVoxels = 0;
  let both = 0;
  let x0 = nx, y0 = ny, z0 = nz, x1 = -1, y1 = -1, z1 = -1;
  let n = 0;
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++, n++) {
        const p = pred[n] === label;
        const r = ref[n] === label;
        if (!p && !r) continue;
        if (p) predVoxels++;
        if (r) refVoxels++;
        if (p && r) both++;
        if (i < x0) x0 = i;
        if (i > x1) x1 = i;
        if (j < y0) y0 = j;
        if (j > y1) y1 = j;
        if (k < z0) z0 = k;
        if (k > z1) z1 = k;
      }
    }
  }
  if (predVoxels === 0 || refVoxels === 0) return emptyResult(label, predVoxels, refVoxels, policy);

  // Distances only involve voxels of the two masks, so the union's bounding box is an exact
  // domain; outside it both masks are background, as they are outside the array.
  const cd: [number, number, number] = [x1 - x0 + 1, y1 - y0 + 1, z1 - z0 + 1];
  const cn = cd[0] * cd[1] * cd[2];
  ws.ensure(cn);
  const a = ws.a;
  const b = ws.b;
  let m = 0;
  for (let k = z0; k <= z1; k++) {
    for (let j = y0; j <= y1; j++) {
      let src = x0 + nx * (j + ny * k);
      for (let i = x0; i <= x1; i++, m++, src++) {
        a[m] = pred[src] === label ? 1 : 0;
        b[m] = ref[src] === label ? 1 : 0;
      }
    }
  }
  const nSurfA = markSurface(a, cd, planar);
  const nSurfB = markSurface(b, cd, planar);

  ws.ensureDist(nSurfA + nSurfB);
  const mm = surfaceDistanceStats(ws, cd, spacing, nSurfA, nSurfB);
  const vox = surfaceDistanceStats(ws, cd, [1, 1, 1], nSurfA, nSurfB);
  return {
    label,
    dice: (2 * both) / (predVoxels + refVoxels),
    jaccard: both / (predVoxels + refVoxels - both),
    hd95Mm: mm.hd95,
    asdMm: mm.asd,
    assdMm: mm.assd,
    hd95Voxels: vox.hd95,
    asdVoxels: vox.asd,
    assdVoxels: vox.assd,
    predVoxels,
    refVoxels,
    bothEmpty: false,
    predEmpty: false,
    refEmpty: false,
  };
}

/**
 * Turn mask values 1 into 2 where the voxel is on the surface (some face neighbour is outside
 * the mask or outside the box); returns the number of surface voxels.
 */
function markSurface(mask: Uint8Array, dims: readonly [number, number, number], planar: boolean): number {
  const [nx, ny, nz] = dims;
  const sxy = nx * ny;
  let count = 0;
  let n = 0;
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++, n++) {
        if (mask[n] === 0) continue;
        const interior =
          i > 0 && mask[n - 1] !== 0 &&
          i < nx - 1 && mask[n + 1] !== 0 &&
          j > 0 && mask[n - nx] !== 0 &&
          j < ny - 1 && mask[n + nx] !== 0 &&
          (planar || (k > 0 && mask[n - sxy] !== 0 && k < nz - 1 && mask[n + sxy] !== 0));
        if (!interior) {
          mask[n] = 2;
          count++;
        }
      }
    }
  }
  return count;
}

/** d(A→B) and d(B→A) with the given spacing, written into ws.dist, and their summaries. */
function surfaceDistanceStats(
  ws: MetricsWorkspace,
  dims: readonly [number, number, number],
  spacing: Spacing3,
  nSurfA: number,
  nSurfB: number,
): { hd95: number; asd: number; assd: number } {
  const dist = ws.dist;
  const sumAB = directedDistances(ws, ws.b, ws.a, dims, spacing, dist, 0);
  const sumBA = directedDistances(ws, ws.a, ws.b, dims, spacing, dist, nSurfA);
  const pooled = dist.subarray(0, nSurfA + nSurfB);
  pooled.sort();
  const asd = sumAB / nSurfA;
  return { hd95: percentileLinear(pooled, 95), asd, assd: (asd + sumBA / nSurfB) / 2 };
}

/**
 * Distances from each surface voxel (value 2) of `from` to the nearest surface voxel of `to`,
 * written to out[at...]; returns their sum.
 */
function directedDistances(
  ws: MetricsWorkspace,
  to: Uint8Array,
  from: Uint8Array,
  dims: readonly [number, number, number],
  spacing: Spacing3,
  out: Float64Array,
  at: number,
): number {
  const n = dims[0] * dims[1] * dims[2];
  const f = ws.field.length === n ? ws.field : ws.field.subarray(0, n);
  for (let t = 0; t < n; t++) f[t] = to[t] === 2 ? 0 : Infinity;
  ws.edt.transform(f, dims, spacing);
  let sum = 0;
  let w = at;
  for (let t = 0; t < n; t++) {
    if (from[t] !== 2) continue;
    const d = Math.sqrt(f[t]);
    out[w++] = d;
    sum += d;
  }
  return sum;
}

/**
 * numpy.percentile(x, q) with the default 'linear' method on an ascending array: virtual index
 * (n − 1)·q/100, interpolated the way numpy's _lerp does (from the upper neighbour when the
 * fraction is ≥ 0.5) so results agree to the last bit in ordinary cases.
 */
export function percentileLinear(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = ((n - 1) * q) / 100;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  const t = pos - lo;
  const a = sorted[lo];
  const b = sorted[hi];
  const diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

export interface MetricStat {
  /** Mean over the cases whose value is finite. */
  mean: number;
  /** Population standard deviation (numpy's default ddof = 0) over the same cases. */
  std: number;
  /** Cases that contributed a value. */
  count: number;
  /** Cases skipped because the value was NaN (one mask empty under the 'flagged' policy). */
  skipped: number;
}

export interface ClassSummary {
  label: number;
  stats: Record<MetricName, MetricStat>;
  cases: number;
  bothEmpty: number;
  predEmpty: number;
  refEmpty: number;
}

export interface MetricsSummary {
  perClass: ClassSummary[];
  /**
   * Mean over classes of the per-class means (as the released script averages its per-class
   * table); classes whose metric has no finite value are left out of that mean.
   */
  mean: Record<MetricName, number>;
}

/** Aggregate per-case results (`cases[c]` = the ClassMetrics list of case c) per class. */
export function meanMetrics(cases: readonly (readonly ClassMetrics[])[]): MetricsSummary {
  const labels: number[] = [];
  for (const list of cases) for (const m of list) if (!labels.includes(m.label)) labels.push(m.label);
  const perClass = labels.map((label): ClassSummary => {
    const rows = cases.flatMap((list) => list.filter((m) => m.label === label));
    const stats = {} as Record<MetricName, MetricStat>;
    for (const name of METRIC_NAMES) stats[name] = summarize(rows.map((r) => r[name]));
    return {
      label,
      stats,
      cases: rows.length,
      bothEmpty: rows.filter((r) => r.bothEmpty).length,
      predEmpty: rows.filter((r) => r.predEmpty).length,
      refEmpty: rows.filter((r) => r.refEmpty).length,
    };
  });
  const mean = {} as Record<MetricName, number>;
  for (const name of METRIC_NAMES) {
    const means = perClass.map((c) => c.stats[name].mean).filter((v) => !Number.isNaN(v));
    mean[name] = means.length ? means.reduce((s, v) => s + v, 0) / means.length : NaN;
  }
  return { perClass, mean };
}

function summarize(values: number[]): MetricStat {
  const finite = values.filter((v) => !Number.isNaN(v));
  const count = finite.length;
  if (count === 0) return { mean: NaN, std: NaN, count: 0, skipped: values.length };
  const mean = finite.reduce((s, v) => s + v, 0) / count;
  const variance = finite.reduce((s, v) => s + (v - mean) ** 2, 0) / count;
  return { mean, std: Math.sqrt(variance), count, skipped: values.length - count };
}
