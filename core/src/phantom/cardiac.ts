import { InputError } from '../errors.js';
import type { Mat4 } from '../geometry/affine.js';
import { Rng } from '../random.js';
import { Volume } from '../volume.js';
import { applyBiasAndRicianNoise, blurSlices, sampleContrast } from './acquisition.js';
import { SlabSection, TISSUE_LABEL, Tissue, sampleAnatomy } from './anatomy.js';

/**
 * Synthetic short-axis cardiac cine-MR-like volumes with ACDC labels (0 background, 1 RV,
 * 2 myocardium, 3 LV cavity), for tests, demos and smoke training without patient data.
 * Each case varies anatomy, pose, geometry and contrast, and the image carries partial-volume
 * averaging, blur, a bias field and Rician noise, so intensities of labelled and unlabelled
 * tissues overlap (RV free wall and chest muscle look like myocardium; fat, aorta and RV blood
 * look like LV blood). Fully determined by (seed, index).
 */
export interface PhantomCaseOptions {
  seed: number;
  index: number;
  /**
   * Acquisition shift severity (0 = in-domain, the default; 1 = strong): stronger noise, a
   * stronger bias field, more blur and a compressed blood–myocardium contrast, drawn from a
   * stream of its own so anatomy, pose and the in-domain acquisition stay those of severity 0.
   */
  shift?: number;
}

export interface PhantomCase {
  image: Volume<Float32Array>;
  label: Volume<Uint8Array>;
}

export const PHANTOM_LABELS = { background: 0, RV: 1, Myo: 2, LV: 3 } as const;

/** Sub-samples per voxel: 2×2 in-plane and 3 through the slice thickness. */
const SUB_IN_PLANE = 2;
const SUB_THROUGH = 3;

interface CaseGeometry {
  nx: number;
  ny: number;
  nz: number;
  spacing: [number, number];
  thickness: number;
  affine: Mat4;
  /** Long-axis position t of slice 0 and its increment per slice. */
  t0: number;
  dt: number;
  /** In-plane rotation of the body in the image, and the LV centre's offset from the image centre (mm). */
  rotation: number;
  heartOffset: [number, number];
}

function sampleGeometry(rng: Rng): CaseGeometry {
  const nx = 2 * rng.int(80, 112);
  const ny = 2 * rng.int(80, 112);
  const nz = rng.int(8, 12);
  // Keep the stack's long-axis span anatomically plausible (60–110 mm) for every slice count.
  const thickness = rng.uniform(Math.max(5, 60 / (nz - 1)), Math.min(10, 110 / (nz - 1)));
  const pixel = rng.uniform(1.2, 1.8);
  const spacing: [number, number] = [pixel, Math.min(1.8, Math.max(1.2, pixel * rng.uniform(0.97, 1.03)))];
  const tFirst = rng.uniform(-0.04, 0.06);
  const tLast = rng.uniform(0.88, 1.0);
  const affine = obliqueAffine(rng, [nx, ny, nz], [spacing[0], spacing[1], thickness]);
  return {
    nx,
    ny,
    nz,
    spacing,
    thickness,
    affine,
    t0: tFirst,
    dt: (tLast - tFirst) / (nz - 1),
    rotation: rng.uniform(-0.8, 0.8),
    heartOffset: [rng.uniform(-15, 15), rng.uniform(-15, 15)],
  };
}

/** A double-oblique voxel→RAS affine (rotations about all three axes) centred near the origin. */
function obliqueAffine(rng: Rng, dims: [number, number, number], spacing: [number, number, number]): Mat4 {
  const ax = rng.uniform(-0.6, 0.6);
  const ay = rng.uniform(-0.6, 0.6);
  const az = rng.uniform(-Math.PI, Math.PI);
  const [cx, sx, cy, sy, cz, sz] = [Math.cos(ax), Math.sin(ax), Math.cos(ay), Math.sin(ay), Math.cos(az), Math.sin(az)];
  // R = Rz · Ry · Rx, a proper rotation, so the affine's column norms are exactly the spacing.
  const r = [
    [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
    [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
    [-sy, cy * sx, cy * cx],
  ];
  const centre = dims.map((d) => (d - 1) / 2);
  const shift = [rng.uniform(-30, 30), rng.uniform(-30, 30), rng.uniform(-30, 30)];
  const m: Mat4 = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]];
  for (let row = 0; row < 3; row++) {
    let t = shift[row];
    for (let col = 0; col < 3; col++) {
      m[row][col] = r[row][col] * spacing[col];
      t -= m[row][col] * centre[col];
    }
    m[row][3] = t;
  }
  return m;
}

/**
 * A degraded acquisition on top of the in-domain one (the test set a quality estimate must
 * survive): contrast compressed towards the mid grey of blood and myocardium by up to 70 %,
 * extra in-plane blur up to σ 1.6 px, a bias field up to 3× the usual strength and noise up to
 * 4× the LV blood's usual σ, each scaled by `severity` and drawn per case.
 */
function applyShift(image: Float32Array, nx: number, ny: number, nz: number, contrast: Float32Array, rng: Rng, severity: number): void {
  const mid = (contrast[Tissue.LvBlood] + contrast[Tissue.Myocardium]) / 2;
  const squeeze = 1 - Math.min(0.9, severity * rng.uniform(0.3, 0.7));
  for (let n = 0; n < image.length; n++) image[n] = Math.max(0, mid + (image[n] - mid) * squeeze);
  blurSlices(image, nx, ny, nz, severity * rng.uniform(0.6, 1.6), new Float32Array(nx * ny));
  const sigma = contrast[Tissue.LvBlood] * severity * rng.uniform(0.08, 0.2);
  applyBiasAndRicianNoise(image, nx, ny, nz, rng, 0.22 * severity * rng.uniform(1, 3), sigma);
}

export function generatePhantomCase(opts: PhantomCaseOptions): PhantomCase {
  const { seed, index } = opts;
  if (!Number.isInteger(seed) || !Number.isInteger(index) || index < 0) {
    throw new InputError(`phantom seed and index must be integers (index ≥ 0), got seed ${seed}, index ${index}`);
  }
  if (opts.shift !== undefined && !(Number.isFinite(opts.shift) && opts.shift >= 0 && opts.shift <= 2)) {
    throw new InputError(`phantom shift severity must be in [0, 2], got ${opts.shift}`);
  }
  // Independent streams per purpose, so changing e.g. the noise model leaves anatomy unchanged.
  const root = new Rng(seed).fork(index);
  const geo = sampleGeometry(root.fork(1));
  const anatomy = sampleAnatomy(root.fork(2));
  const contrast = sampleContrast(root.fork(3));
  const acqRng = root.fork(4);

  const { nx, ny, nz } = geo;
  const plane = nx * ny;
  const image = new Float32Array(plane * nz);
  const label = new Uint8Array(plane * nz);
  const heartCentre = anatomy.heart.centre;
  const cr = Math.cos(geo.rotation);
  const sr = Math.sin(geo.rotation);
  const [sx, sy] = geo.spacing;
  const weight = 1 / (SUB_IN_PLANE * SUB_IN_PLANE * SUB_THROUGH);
  // Body coordinates of image point (i, j) are u = u0 + i·du_i + j·du_j, v likewise.
  const ox = -((nx - 1) / 2) * sx - geo.heartOffset[0];
  const oy = -((ny - 1) / 2) * sy - geo.heartOffset[1];
  const u0 = heartCentre[0] + cr * ox - sr * oy;
  const v0 = heartCentre[1] + sr * ox + cr * oy;
  const duI = cr * sx;
  const dvI = sr * sx;
  const duJ = -sr * sy;
  const dvJ = cr * sy;
  const subOffsets: number[] = [];
  for (let a = 0; a < SUB_IN_PLANE; a++) subOffsets.push((a + 0.5) / SUB_IN_PLANE - 0.5);
  const centreSub = (SUB_THROUGH - 1) / 2;

  for (let k = 0; k < nz; k++) {
    const tk = geo.t0 + k * geo.dt;
    for (let s = 0; s < SUB_THROUGH; s++) {
      // Sub-slices spread evenly across the slab thickness: partial-volume averaging.
      const section = new SlabSection(anatomy, tk + ((s + 0.5) / SUB_THROUGH - 0.5) * geo.dt);
      let n = k * plane;
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++, n++) {
          const uc = u0 + i * duI + j * duJ;
          const vc = v0 + i * dvI + j * dvJ;
          let acc = 0;
          for (let b = 0; b < SUB_IN_PLANE; b++) {
            const ob = subOffsets[b];
            for (let a = 0; a < SUB_IN_PLANE; a++) {
              const oa = subOffsets[a];
              acc += contrast[section.tissueAt(uc + oa * duI + ob * duJ, vc + oa * dvI + ob * dvJ)];
            }
          }
          image[n] += acc * weight;
          if (s === centreSub) label[n] = TISSUE_LABEL[section.tissueAt(uc, vc)];
        }
      }
    }
  }

  blurSlices(image, nx, ny, nz, acqRng.uniform(0.4, 0.9), new Float32Array(plane));
  const noiseSigma = contrast[Tissue.LvBlood] * acqRng.uniform(0.025, 0.07);
  applyBiasAndRicianNoise(image, nx, ny, nz, acqRng, 0.22, noiseSigma);
  const shift = opts.shift ?? 0;
  if (shift > 0) applyShift(image, nx, ny, nz, contrast, root.fork(5), shift);
  const gain = acqRng.uniform(150, 900);
  for (let n = 0; n < image.length; n++) image[n] *= gain;

  const description = `ALHVR cardiac phantom seed ${seed} case ${index}${shift > 0 ? ` shift ${shift}` : ''}`;
  const meta = { kind: 'generated' as const, description, warnings: [] };
  return {
    image: new Volume({ data: image, dims: [nx, ny, nz], affine: geo.affine, meta }),
    label: new Volume({ data: label, dims: [nx, ny, nz], affine: geo.affine, meta }),
  };
}
