import { type Mat4, type Vec3, isFiniteMat4 } from '../geometry/affine.js';
import type { RawNiftiHeader } from './header.js';

export type AffineSource = 'sform' | 'qform' | 'pixdim';

/** NIfTI qform parameters: a unit quaternion (b, c, d; a ≥ 0 implied), offset, voxel size, handedness. */
export interface Qform {
  quatern: Vec3;
  qoffset: Vec3;
  pixdim: Vec3;
  /** +1 or −1: the sign applied to the third axis (stored in pixdim[0]). */
  qfac: 1 | -1;
}

type Mat3 = number[][];

function det3(m: Mat3): number {
  return (
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
  );
}

/** Inverse transpose of a 3×3 matrix (cofactor matrix / determinant). */
function invTranspose3(m: Mat3): Mat3 {
  const d = det3(m);
  const c = (r0: number, r1: number, c0: number, c1: number) => m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
  return [
    [c(1, 2, 1, 2) / d, -c(1, 2, 0, 2) / d, c(1, 2, 0, 1) / d],
    [-c(0, 2, 1, 2) / d, c(0, 2, 0, 2) / d, -c(0, 2, 0, 1) / d],
    [c(0, 1, 1, 2) / d, -c(0, 1, 0, 2) / d, c(0, 1, 0, 1) / d],
  ];
}

/**
 * Nearest orthogonal matrix (polar decomposition by Newton iteration X ← (X + X⁻ᵀ)/2), so an
 * affine with a little shear or float32 rounding still yields a proper rotation for the qform.
 */
function nearestOrthogonal(m: Mat3): Mat3 {
  let x = m.map((r) => r.slice());
  for (let iter = 0; iter < 100; iter++) {
    const it = invTranspose3(x);
    let change = 0;
    const next = x.map((row, r) =>
      row.map((v, c) => {
        const n = 0.5 * (v + it[r][c]);
        change = Math.max(change, Math.abs(n - v));
        return n;
      }),
    );
    x = next;
    if (change < 1e-15) break;
  }
  return x;
}

/** Rotation matrix of the unit quaternion (a, b, c, d). */
function quaternionMatrix(a: number, b: number, c: number, d: number): Mat3 {
  return [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
}

/** Voxel→world matrix from qform parameters (NIfTI method 2). */
export function qformToAffine(q: Qform): Mat4 {
  let [b, c, d] = q.quatern;
  const s = b * b + c * c + d * d;
  let a: number;
  if (1 - s < 1e-7) {
    // |(b,c,d)| ≈ 1: a is 0 and (b, c, d) is renormalised, as nifti1_io does.
    const norm = Math.sqrt(s);
    b /= norm;
    c /= norm;
    d /= norm;
    a = 0;
  } else {
    a = Math.sqrt(1 - s);
  }
  const r = quaternionMatrix(a, b, c, d);
  const scale = [q.pixdim[0], q.pixdim[1], q.pixdim[2] * q.qfac];
  return [
    [r[0][0] * scale[0], r[0][1] * scale[1], r[0][2] * scale[2], q.qoffset[0]],
    [r[1][0] * scale[0], r[1][1] * scale[1], r[1][2] * scale[2], q.qoffset[1]],
    [r[2][0] * scale[0], r[2][1] * scale[1], r[2][2] * scale[2], q.qoffset[2]],
    [0, 0, 0, 1],
  ];
}

/**
 * The qform closest to an affine: column lengths become pixdim, the orthogonalised direction
 * matrix becomes the quaternion, and a left-handed matrix gets qfac = −1. Undefined (returns
 * null) for a singular affine.
 */
export function affineToQform(m: Mat4): Qform | null {
  const cols = [0, 1, 2].map((c) => [m[0][c], m[1][c], m[2][c]]);
  const pixdim = cols.map((v) => Math.hypot(v[0], v[1], v[2])) as Vec3;
  if (!pixdim.every((p) => p > 0 && Number.isFinite(p))) return null;
  const unit: Mat3 = [0, 1, 2].map((r) => [0, 1, 2].map((c) => cols[c][r] / pixdim[c]));
  if (Math.abs(det3(unit)) < 1e-8) return null;
  const rot = nearestOrthogonal(unit);
  let qfac: 1 | -1 = 1;
  if (det3(rot) < 0) {
    qfac = -1;
    for (let r = 0; r < 3; r++) rot[r][2] = -rot[r][2];
  }
  const [b, c, d] = rotationToQuaternion(rot);
  return { quatern: [b, c, d], qoffset: [m[0][3], m[1][3], m[2][3]], pixdim, qfac };
}

/** (b, c, d) of the unit quaternion with a ≥ 0 for a proper rotation matrix. */
function rotationToQuaternion(r: Mat3): Vec3 {
  const trace = r[0][0] + r[1][1] + r[2][2];
  let a: number, b: number, c: number, d: number;
  // Divide by the largest of the four candidate components for numerical stability.
  if (trace > 0) {
    a = 0.5 * Math.sqrt(1 + trace);
    b = (r[2][1] - r[1][2]) / (4 * a);
    c = (r[0][2] - r[2][0]) / (4 * a);
    d = (r[1][0] - r[0][1]) / (4 * a);
  } else if (r[0][0] >= r[1][1] && r[0][0] >= r[2][2]) {
    b = 0.5 * Math.sqrt(1 + r[0][0] - r[1][1] - r[2][2]);
    a = (r[2][1] - r[1][2]) / (4 * b);
    c = (r[0][1] + r[1][0]) / (4 * b);
    d = (r[0][2] + r[2][0]) / (4 * b);
  } else if (r[1][1] >= r[2][2]) {
    c = 0.5 * Math.sqrt(1 - r[0][0] + r[1][1] - r[2][2]);
    a = (r[0][2] - r[2][0]) / (4 * c);
    b = (r[0][1] + r[1][0]) / (4 * c);
    d = (r[1][2] + r[2][1]) / (4 * c);
  } else {
    d = 0.5 * Math.sqrt(1 - r[0][0] - r[1][1] + r[2][2]);
    a = (r[1][0] - r[0][1]) / (4 * d);
    b = (r[0][2] + r[2][0]) / (4 * d);
    c = (r[1][2] + r[2][1]) / (4 * d);
  }
  return a < 0 ? [-b, -c, -d] : [b, c, d];
}

/** Millimetres per stored spatial unit (xyzt_units bits 0–2), or null for a code the standard does not define. */
export function spatialUnitScale(xyztUnits: number): { name: string; toMm: number } | null {
  switch (xyztUnits & 7) {
    case 0:
      return { name: 'unknown', toMm: 1 };
    case 1:
      return { name: 'm', toMm: 1000 };
    case 2:
      return { name: 'mm', toMm: 1 };
    case 3:
      return { name: 'um', toMm: 0.001 };
    default:
      return null;
  }
}

function usable(m: Mat4): boolean {
  if (!isFiniteMat4(m)) return false;
  const d = det3([0, 1, 2].map((r) => [m[r][0], m[r][1], m[r][2]]));
  return Number.isFinite(d) && d !== 0;
}

function positiveOrOne(v: number, name: string, warnings: string[]): number {
  if (Number.isFinite(v) && v > 0) return v;
  warnings.push(`${name} = ${v} is not a positive voxel size; using 1`);
  return 1;
}

/**
 * Voxel→RAS+ mm affine by the standard's precedence: sform if sform_code > 0, else qform if
 * qform_code > 0, else the pixdim-scaled diagonal (method 1). A stated transform that is not a
 * usable (finite, non-singular) matrix falls through to the next, with a warning.
 */
export function headerAffine(h: RawNiftiHeader, warnings: string[]): { affine: Mat4; source: AffineSource } {
  let unit = spatialUnitScale(h.xyztUnits);
  if (!unit) {
    warnings.push(`unknown spatial unit code ${h.xyztUnits & 7} in xyzt_units; assuming mm`);
    unit = { name: 'unknown', toMm: 1 };
  }
  const toMm = (m: Mat4): Mat4 => m.map((row, r) => (r < 3 ? row.map((v) => v * unit.toMm) : row.slice()));
  if (h.sformCode > 0) {
    const m = toMm([...h.srow.map((r) => r.slice()), [0, 0, 0, 1]]);
    if (usable(m)) return { affine: m, source: 'sform' };
    warnings.push(`sform (code ${h.sformCode}) is not a usable affine; ignoring it`);
  }
  if (h.qformCode > 0) {
    const qfac = h.pixdim[0] < 0 ? -1 : 1;
    const pix = [1, 2, 3].map((n) => positiveOrOne(h.pixdim[n], `pixdim[${n}]`, warnings)) as Vec3;
    const m = toMm(qformToAffine({ quatern: h.quatern, qoffset: h.qoffset, pixdim: pix, qfac }));
    if (usable(m)) return { affine: m, source: 'qform' };
    warnings.push(`qform (code ${h.qformCode}) is not a usable affine; ignoring it`);
  }
  const pix = [1, 2, 3].map((n) => positiveOrOne(h.pixdim[n] * unit.toMm, `pixdim[${n}]`, warnings));
  return {
    affine: [
      [pix[0], 0, 0, 0],
      [0, pix[1], 0, 0],
      [0, 0, pix[2], 0],
      [0, 0, 0, 1],
    ],
    source: 'pixdim',
  };
}
