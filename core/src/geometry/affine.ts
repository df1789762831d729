/**
 * 4×4 homogeneous matrices, row-major `number[][]`, mapping voxel indices (i, j, k, 1) to
 * RAS+ millimetres (the NIfTI convention). DICOM's LPS patient frame is converted at the
 * reader boundary; nothing downstream sees LPS.
 */
export type Mat4 = number[][];
export type Vec3 = [number, number, number];

export function identity4(): Mat4 {
  return [
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
  ];
}

export function cloneMat4(m: Mat4): Mat4 {
  return m.map((row) => row.slice());
}

export function multiply4(a: Mat4, b: Mat4): Mat4 {
  const out = identity4();
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[r][k] * b[k][c];
      out[r][c] = s;
    }
  }
  return out;
}

export function applyAffine(m: Mat4, p: Vec3): Vec3 {
  return [
    m[0][0] * p[0] + m[0][1] * p[1] + m[0][2] * p[2] + m[0][3],
    m[1][0] * p[0] + m[1][1] * p[1] + m[1][2] * p[2] + m[1][3],
    m[2][0] * p[0] + m[2][1] * p[1] + m[2][2] * p[2] + m[2][3],
  ];
}

/** Voxel size along each index axis: the length of each of the affine's first three columns. */
export function spacingFromAffine(m: Mat4): Vec3 {
  const col = (c: number) => Math.hypot(m[0][c], m[1][c], m[2][c]);
  return [col(0), col(1), col(2)];
}

/** Unit direction (RAS) of each index axis. */
export function axisDirections(m: Mat4): [Vec3, Vec3, Vec3] {
  const sp = spacingFromAffine(m);
  const dir = (c: number): Vec3 => [m[0][c] / sp[c], m[1][c] / sp[c], m[2][c] / sp[c]];
  return [dir(0), dir(1), dir(2)];
}

export function isFiniteMat4(m: Mat4): boolean {
  return m.length === 4 && m.every((row) => row.length === 4 && row.every(Number.isFinite));
}

/** Diagonal affine with the given spacing and origin, the fallback when a file states no orientation. */
export function scalingAffine(spacing: Vec3, origin: Vec3 = [0, 0, 0]): Mat4 {
  return [
    [spacing[0], 0, 0, origin[0]],
    [0, spacing[1], 0, origin[1]],
    [0, 0, spacing[2], origin[2]],
    [0, 0, 0, 1],
  ];
}

/** Largest absolute element-wise difference, for comparing geometry with a tolerance. */
export function maxAbsDiff4(a: Mat4, b: Mat4): number {
  let d = 0;
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) d = Math.max(d, Math.abs(a[r][c] - b[r][c]));
  return d;
}
