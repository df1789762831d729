/**
 * Exact squared Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms
 * of Sampled Functions", 2012), separable over up to three axes with anisotropic spacing.
 *
 * Input: a Float64Array holding 0 at seed voxels and +Infinity elsewhere (i fastest, then j, k).
 * Output (in place): for every voxel, the squared distance in the units of `spacing` to the
 * nearest seed; +Infinity stays wherever no seed exists at all. The result equals
 * `scipy.ndimage.distance_transform_edt(~seeds, sampling=spacing) ** 2` exactly up to rounding,
 * because each 1D pass computes the lower envelope of parabolas w·(p − q)² + f(q) exactly.
 */
export class SquaredEdt {
  private v = new Int32Array(0);
  private z = new Float64Array(0);
  private line = new Float64Array(0);

  /** Reusable scratch for lines of length `n`; grows only, so hot loops touch no fresh pages. */
  private ensure(n: number): void {
    if (this.v.length >= n) return;
    this.v = new Int32Array(n);
    this.z = new Float64Array(n + 1);
    this.line = new Float64Array(n);
  }

  transform(f: Float64Array, dims: readonly [number, number, number], spacing: readonly [number, number, number]): void {
    const [nx, ny, nz] = dims;
    if (f.length !== nx * ny * nz) throw new Error(`EDT buffer has ${f.length} values, dims need ${nx * ny * nz}`);
    this.ensure(Math.max(nx, ny, nz));
    const sxy = nx * ny;
    // A line of length 1 is already exact, so such axes are skipped.
    if (nx > 1) {
      for (let k = 0; k < nz; k++) for (let j = 0; j < ny; j++) this.pass(f, k * sxy + j * nx, 1, nx, spacing[0] ** 2);
    }
    if (ny > 1) {
      for (let k = 0; k < nz; k++) for (let i = 0; i < nx; i++) this.pass(f, k * sxy + i, nx, ny, spacing[1] ** 2);
    }
    if (nz > 1) {
      for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) this.pass(f, j * nx + i, sxy, nz, spacing[2] ** 2);
    }
  }

  /** One 1D lower-envelope pass over f[offset + t·stride], t < n, with parabola weight w. */
  private pass(f: Float64Array, offset: number, stride: number, n: number, w: number): void {
    const g = this.line;
    const v = this.v;
    const z = this.z;
    let k = -1;
    for (let q = 0; q < n; q++) {
      const gq = f[offset + q * stride];
      g[q] = gq;
      if (gq === Infinity) continue;
      if (k < 0) {
        k = 0;
        v[0] = q;
        z[0] = -Infinity;
        z[1] = Infinity;
        continue;
      }
      // Intersection abscissa (in index units) of the parabola rooted at q with the rightmost
      // envelope parabola; pop envelope parabolas that the new one hides completely.
      let s: number;
      for (;;) {
        const r = v[k];
        s = (gq / w + q * q - (g[r] / w + r * r)) / (2 * (q - r));
        if (s <= z[k]) k--;
        else break;
      }
      k++;
      v[k] = q;
      z[k] = s;
      z[k + 1] = Infinity;
    }
    if (k < 0) return; // no seed on this line: every value stays +Infinity
    k = 0;
    for (let p = 0; p < n; p++) {
      while (z[k + 1] < p) k++;
      const d = p - v[k];
      f[offset + p * stride] = w * d * d + g[v[k]];
    }
  }
}
