import { InputError } from '../errors.js';
import type { Mat4 } from '../geometry/affine.js';
import { Rng } from '../random.js';
import { Volume } from '../volume.js';
import { blurSlices } from './acquisition.js';

/**
 * Synthetic axial abdominal CT volumes in Hounsfield units with the four AbdomenCT-1K organ
 * labels (1 liver, 2 kidney, 3 spleen, 4 pancreas), for tests, benchmarks and demos of the 3D
 * path without patient data. The body (subcutaneous and visceral fat, wall and back muscles,
 * psoas, bowel loops with gas rising anteriorly, vertebrae with discs, aorta, IVC, portal
 * vein) surrounds the organs, so a network must tell the pancreas from bowel of the same HU.
 * Each case varies body and organ size, position, in-plane rotation, contrast phase, noise and
 * CT-like spacing (0.6–0.9 mm in plane, 1.5–5 mm slices). Fully determined by (seed, index).
 */
export const ABDOMEN_CT_LABELS = { background: 0, liver: 1, kidney: 2, spleen: 3, pancreas: 4 } as const;

export type AbdomenOrgan = 'liver' | 'kidney' | 'spleen' | 'pancreas';
export const ABDOMEN_ORGANS: readonly AbdomenOrgan[] = ['liver', 'kidney', 'spleen', 'pancreas'];

export type ContrastPhase = 'non-contrast' | 'arterial' | 'portal-venous';
export const CONTRAST_PHASES: readonly ContrastPhase[] = ['non-contrast', 'arterial', 'portal-venous'];

/**
 * Range (HU) each organ's parenchyma mean is drawn from, per contrast phase; typical adult
 * values (unenhanced liver above spleen, the kidneys brightest once contrast arrives, the
 * pancreas peaking in the late arterial phase).
 */
export const ABDOMEN_ORGAN_HU: Record<ContrastPhase, Record<AbdomenOrgan, [number, number]>> = {
  'non-contrast': { liver: [50, 65], kidney: [28, 40], spleen: [40, 52], pancreas: [35, 50] },
  arterial: { liver: [65, 85], kidney: [140, 190], spleen: [100, 140], pancreas: [100, 130] },
  'portal-venous': { liver: [100, 130], kidney: [150, 200], spleen: [105, 130], pancreas: [85, 110] },
};

/** Limits of what a CT stores (12-bit range above air); every generated value lies in it. */
export const CT_HU_MIN = -1024;
export const CT_HU_MAX = 3071;

export interface AbdomenCtCaseOptions {
  seed: number;
  index: number;
  /** In-plane voxels per side (default 512, as clinical CT); smaller matrices shrink the body with the field of view. */
  matrix?: number;
  /**
   * 'fov' (default): 0.6–0.9 mm pixels at every matrix, so a small matrix images a small body.
   * 'adult': the body a 512 matrix would show, at pixels 512/matrix times as large (organs of
   * adult size, fewer voxels), for fast experiments whose organs must keep their real volume.
   */
  body?: 'fov' | 'adult';
  /**
   * Acquisition shift severity (0 = in-domain, the default; up to 2): organ contrast pulled
   * toward soft tissue (poorly timed or no contrast, low kV), more reconstruction blur, and
   * low-dose noise. The anatomy and labels stay those of severity 0.
   */
  shift?: number;
}

export interface AbdomenCtCase {
  /** Integer HU values (stored as float32 for the pipeline; exact in int16). */
  image: Volume<Float32Array>;
  label: Volume<Uint8Array>;
  phase: ContrastPhase;
  /** The noise-free parenchyma HU drawn for each organ of this case. */
  organHu: Record<AbdomenOrgan, number>;
  /** Standard deviation of the added noise (HU). */
  noiseSigma: number;
}

enum Tissue {
  Air,
  SubcutaneousFat,
  Muscle,
  VisceralFat,
  BowelContent,
  BowelGas,
  Liver,
  Spleen,
  Kidney,
  Pancreas,
  Aorta,
  Vein,
  Cancellous,
  Cortical,
  Disc,
  Csf,
}
const TISSUE_COUNT = 16;

const TISSUE_LABEL = new Uint8Array(TISSUE_COUNT);
TISSUE_LABEL[Tissue.Liver] = ABDOMEN_CT_LABELS.liver;
TISSUE_LABEL[Tissue.Kidney] = ABDOMEN_CT_LABELS.kidney;
TISSUE_LABEL[Tissue.Spleen] = ABDOMEN_CT_LABELS.spleen;
TISSUE_LABEL[Tissue.Pancreas] = ABDOMEN_CT_LABELS.pancreas;

const SLICE_THICKNESSES = [1.5, 2, 2.5, 3, 4, 5];
/** Cranio-caudal span (mm) of the organ region for an adult body 320 mm wide. */
const ADULT_Z_SPAN = 170;
const ADULT_WIDTH = 320;

/**
 * A shape in body-normalised coordinates: u across (−1 patient right … +1 left), v front to back
 * (−1 anterior … +1 posterior), w along the body (0 lowest … 1 highest organ level).
 */
interface Shape {
  tissue: Tissue;
  /** Bounding box in (u, v, w). */
  lo: [number, number, number];
  hi: [number, number, number];
  inside(u: number, v: number, w: number): boolean;
}

function ellipsoid(tissue: Tissue, c: [number, number, number], r: [number, number, number], angle = 0): Shape {
  const ca = Math.cos(angle);
  const sa = Math.sin(angle);
  const reach = Math.max(r[0], r[1]);
  return {
    tissue,
    lo: [c[0] - reach, c[1] - reach, c[2] - r[2]],
    hi: [c[0] + reach, c[1] + reach, c[2] + r[2]],
    inside(u, v, w) {
      const du = u - c[0];
      const dv = v - c[1];
      const a = (ca * du + sa * dv) / r[0];
      const b = (-sa * du + ca * dv) / r[1];
      const d = (w - c[2]) / r[2];
      return a * a + b * b + d * d <= 1;
    },
  };
}

/** An elliptic cylinder along w between w0 and w1, its radii growing by `taper` per unit of w below w1. */
function cylinder(tissue: Tissue, c: [number, number], r: [number, number], w0: number, w1: number, taper = 0): Shape {
  const grow = 1 + taper * (w1 - w0);
  return {
    tissue,
    lo: [c[0] - r[0] * grow, c[1] - r[1] * grow, w0],
    hi: [c[0] + r[0] * grow, c[1] + r[1] * grow, w1],
    inside(u, v, w) {
      if (w < w0 || w > w1) return false;
      const g = 1 + taper * (w1 - w);
      const a = (u - c[0]) / (r[0] * g);
      const b = (v - c[1]) / (r[1] * g);
      return a * a + b * b <= 1;
    },
  };
}

/** A tube through `points` whose radii (per axis) are interpolated along it: the pancreas. */
function tube(tissue: Tissue, points: [number, number, number][], radii: [number, number, number][]): Shape {
  const lo: [number, number, number] = [Infinity, Infinity, Infinity];
  const hi: [number, number, number] = [-Infinity, -Infinity, -Infinity];
  points.forEach((p, n) => {
    for (let a = 0; a < 3; a++) {
      lo[a] = Math.min(lo[a], p[a] - radii[n][a]);
      hi[a] = Math.max(hi[a], p[a] + radii[n][a]);
    }
  });
  return {
    tissue,
    lo,
    hi,
    inside(u, v, w) {
      const q = [u, v, w];
      for (let s = 0; s + 1 < points.length; s++) {
        const p0 = points[s];
        const p1 = points[s + 1];
        // Closest point in the metric of the larger end's radii, then test with interpolated radii.
        const r = radii[s].map((x, a) => Math.max(x, radii[s + 1][a]));
        let num = 0;
        let den = 0;
        for (let a = 0; a < 3; a++) {
          const d = (p1[a] - p0[a]) / r[a];
          num += ((q[a] - p0[a]) / r[a]) * d;
          den += d * d;
        }
        const t = Math.min(1, Math.max(0, den > 0 ? num / den : 0));
        let dist = 0;
        for (let a = 0; a < 3; a++) {
          const ra = radii[s][a] + t * (radii[s + 1][a] - radii[s][a]);
          const d = (q[a] - (p0[a] + t * (p1[a] - p0[a]))) / ra;
          dist += d * d;
        }
        if (dist <= 1) return true;
      }
      return false;
    },
  };
}

/** Noise-free HU of each tissue for one case and phase. */
function sampleTissueHu(rng: Rng, phase: ContrastPhase): { hu: Float32Array; organHu: Record<AbdomenOrgan, number> } {
  const u = (range: [number, number]) => rng.uniform(range[0], range[1]);
  const hu = new Float32Array(TISSUE_COUNT);
  const organ = ABDOMEN_ORGAN_HU[phase];
  const organHu = { liver: u(organ.liver), kidney: u(organ.kidney), spleen: u(organ.spleen), pancreas: u(organ.pancreas) };
  const vessels = {
    'non-contrast': { aorta: [35, 50], vein: [35, 50] },
    arterial: { aorta: [250, 350], vein: [70, 110] },
    'portal-venous': { aorta: [140, 180], vein: [140, 180] },
  }[phase] as Record<'aorta' | 'vein', [number, number]>;
  hu[Tissue.Air] = -1000;
  hu[Tissue.SubcutaneousFat] = u([-120, -90]);
  hu[Tissue.Muscle] = u([40, 60]);
  hu[Tissue.VisceralFat] = u([-110, -80]);
  hu[Tissue.BowelContent] = u([10, 40]);
  hu[Tissue.BowelGas] = u([-990, -920]);
  hu[Tissue.Liver] = organHu.liver;
  hu[Tissue.Spleen] = organHu.spleen;
  hu[Tissue.Kidney] = organHu.kidney;
  hu[Tissue.Pancreas] = organHu.pancreas;
  hu[Tissue.Aorta] = u(vessels.aorta);
  hu[Tissue.Vein] = u(vessels.vein);
  hu[Tissue.Cancellous] = u([180, 300]);
  hu[Tissue.Cortical] = u([600, 1000]);
  hu[Tissue.Disc] = u([70, 100]);
  hu[Tissue.Csf] = u([0, 15]);
  return { hu, organHu };
}

interface BodyLayout {
  /** Painted in order, later shapes over earlier ones, inside the body's inner wall. */
  inner: Shape[];
  fatLayer: number;
  muscleLayer: number;
}

function sampleBody(rng: Rng, scale: number, zSpan: number): BodyLayout {
  const j = (x: number) => x + rng.uniform(-0.04, 0.04);
  const size = (x: number) => x * rng.uniform(0.85, 1.15);
  const inner: Shape[] = [];
  // Back muscles either side of the spinous process, psoas widening towards the pelvis.
  for (const side of [-1, 1]) {
    inner.push(cylinder(Tissue.Muscle, [side * 0.17, 0.8], [0.14, 0.13], -1, 2));
    inner.push(cylinder(Tissue.Muscle, [side * 0.16, 0.5], [0.05, 0.05], -1, 0.6, 0.15 / 0.6));
  }
  // Bowel loops in the lower anterior abdomen and both flanks; gas sits anteriorly (supine).
  const loops = rng.int(10, 18);
  for (let n = 0; n < loops; n++) {
    const c: [number, number, number] = [rng.uniform(-0.65, 0.65), rng.uniform(-0.7, 0.15), rng.uniform(-0.1, 0.62)];
    const r: [number, number, number] = [rng.uniform(0.07, 0.16), rng.uniform(0.07, 0.14), rng.uniform(0.05, 0.14)];
    inner.push(ellipsoid(Tissue.BowelContent, c, r, rng.uniform(0, Math.PI)));
    if (rng.next() < 0.5) {
      const g = rng.uniform(0.4, 0.7);
      inner.push(ellipsoid(Tissue.BowelGas, [c[0], c[1] - r[1] * (1 - g) * 0.8, c[2]], [r[0] * g, r[1] * g * 0.7, r[2] * g]));
    }
  }
  // Organs (painted over bowel so that no organ is cut by a loop).
  const liverSize = rng.uniform(0.85, 1.15);
  const lw = j(0.72);
  inner.push(ellipsoid(Tissue.Liver, [j(-0.42), j(-0.05), lw], [0.42 * liverSize, 0.6 * liverSize, 0.26 * liverSize], rng.uniform(-0.3, 0.1)));
  inner.push(ellipsoid(Tissue.Liver, [j(0.05), j(-0.38), lw + 0.06], [0.3 * liverSize, 0.2 * liverSize, 0.13 * liverSize], rng.uniform(-0.3, 0.3)));
  inner.push(ellipsoid(Tissue.Spleen, [j(0.56), j(0.38), j(0.74)], [size(0.15), size(0.27), size(0.17)], rng.uniform(0.4, 0.8)));
  for (const side of [-1, 1]) {
    const c: [number, number, number] = [j(side * 0.36), j(0.42), j(side < 0 ? 0.42 : 0.47)];
    const r: [number, number, number] = [size(0.13), size(0.17), size(0.19)];
    inner.push(ellipsoid(Tissue.Kidney, c, r, side * rng.uniform(0.3, 0.6)));
    // Renal sinus fat at the medial hilum.
    inner.push(ellipsoid(Tissue.VisceralFat, [c[0] - side * r[0] * 0.75, c[1] - 0.02, c[2]], [r[0] * 0.35, r[1] * 0.35, r[2] * 0.45]));
  }
  const pw = j(0.58);
  const pancreasSize = rng.uniform(0.8, 1.2);
  inner.push(
    tube(
      Tissue.Pancreas,
      [
        [j(-0.14), j(0.02), pw - 0.03],
        [j(0.06), j(0.1), pw],
        [j(0.42), j(0.24), pw + rng.uniform(0.03, 0.1)],
      ],
      [
        [0.1 * pancreasSize, 0.11 * pancreasSize, 0.07],
        [0.07 * pancreasSize, 0.08 * pancreasSize, 0.05],
        [0.06 * pancreasSize, 0.08 * pancreasSize, 0.045],
      ],
    ),
  );
  // Vessels: aorta left of the midline, IVC on the right entering the liver, the portal vein.
  inner.push(cylinder(Tissue.Aorta, [0.06, 0.3], [0.065, 0.065], -1, 2));
  inner.push(cylinder(Tissue.Vein, [-0.12, 0.3], [0.07, 0.05], -1, 0.85));
  inner.push(ellipsoid(Tissue.Vein, [-0.12, 0.05, pw + 0.07], [0.12, 0.035, 0.035], 0.5));
  // Spine: vertebral bodies (cortical shell, cancellous core) alternating with discs, canal, arch.
  const level = (33 * scale) / zSpan; // one vertebra + disc, in units of w
  const discShare = 0.24;
  const phase0 = rng.next();
  const isDisc = (w: number) => {
    const f = w / level + phase0;
    return f - Math.floor(f) < discShare;
  };
  const bodyShape = cylinder(Tissue.Cortical, [0, 0.52], [0.12, 0.1], -1, 2);
  const core = cylinder(Tissue.Cancellous, [0, 0.52], [0.1, 0.08], -1, 2);
  inner.push(bodyShape, core);
  inner.push({ ...bodyShape, tissue: Tissue.Disc, inside: (u, v, w) => isDisc(w) && bodyShape.inside(u, v, w) });
  inner.push(cylinder(Tissue.Cortical, [0, 0.8], [0.035, 0.12], -1, 2));
  inner.push(cylinder(Tissue.Cortical, [0, 0.68], [0.08, 0.065], -1, 2));
  inner.push(cylinder(Tissue.Csf, [0, 0.68], [0.05, 0.042], -1, 2));
  return { inner, fatLayer: rng.uniform(0.05, 0.14), muscleLayer: rng.uniform(0.035, 0.06) };
}

export function generateAbdomenCtCase(opts: AbdomenCtCaseOptions): AbdomenCtCase {
  const { seed, index } = opts;
  const matrix = opts.matrix ?? 512;
  if (!Number.isInteger(seed) || !Number.isInteger(index) || index < 0) {
    throw new InputError(`phantom seed and index must be integers (index ≥ 0), got seed ${seed}, index ${index}`);
  }
  if (!Number.isInteger(matrix) || matrix < 32 || matrix > 1024) throw new InputError(`CT phantom matrix must be a whole number in [32, 1024], got ${matrix}`);
  const shift = opts.shift ?? 0;
  if (!(Number.isFinite(shift) && shift >= 0 && shift <= 2)) throw new InputError(`CT phantom shift severity must be in [0, 2], got ${opts.shift}`);
  // Independent streams per purpose: geometry, anatomy, intensities, noise.
  const root = new Rng(seed).fork(index);
  const geoRng = root.fork(1);
  const bodySize = opts.body ?? 'fov';
  if (bodySize !== 'fov' && bodySize !== 'adult') throw new InputError(`CT phantom body must be "fov" or "adult", got ${JSON.stringify(bodySize)}`);
  // The same draw either way, so an 'adult' case is its 512-matrix twin at coarser pixels.
  const pixel = geoRng.uniform(0.6, 0.9) * (bodySize === 'adult' ? 512 / matrix : 1);
  const thickness = SLICE_THICKNESSES[geoRng.int(0, SLICE_THICKNESSES.length - 1)];
  const fov = matrix * pixel;
  const bodyWidth = fov * geoRng.uniform(0.62, 0.85);
  const bodyDepth = bodyWidth * geoRng.uniform(0.65, 0.8);
  const scale = bodyWidth / ADULT_WIDTH;
  const zSpan = ADULT_Z_SPAN * scale;
  const wStart = geoRng.uniform(0.05, 0.2);
  const wEnd = geoRng.uniform(0.95, 1.05);
  const nz = Math.max(8, Math.round(((wEnd - wStart) * zSpan) / thickness));
  // Body centre (mm from the image centre) and its in-plane rotation.
  const cx = geoRng.uniform(-0.25, 0.25) * (fov - bodyWidth);
  const cy = geoRng.uniform(-0.25, 0.25) * (fov - bodyDepth);
  const rotation = geoRng.uniform(-0.1, 0.1);
  const phase = CONTRAST_PHASES[geoRng.int(0, CONTRAST_PHASES.length - 1)];
  const body = sampleBody(root.fork(2), scale, zSpan);
  const { hu, organHu } = sampleTissueHu(root.fork(3), phase);
  const noiseRng = root.fork(4);

  const nx = matrix;
  const ny = matrix;
  const plane = nx * ny;
  const tissue = new Uint8Array(plane * nz);
  const cr = Math.cos(rotation);
  const sr = Math.sin(rotation);
  const halfW = bodyWidth / 2;
  const halfD = bodyDepth / 2;
  // Pixel (i, j) → body (u, v); i runs to the patient's left, j to the back (DICOM axial).
  const toU = (i: number, j: number) => (cr * ((i - (nx - 1) / 2) * pixel - cx) + sr * ((j - (ny - 1) / 2) * pixel - cy)) / halfW;
  const toV = (i: number, j: number) => (-sr * ((i - (nx - 1) / 2) * pixel - cx) + cr * ((j - (ny - 1) / 2) * pixel - cy)) / halfD;
  const wallInner = 1 - body.fatLayer - body.muscleLayer;
  const fatInner = 1 - body.fatLayer;
  // Pixel box that covers body radius `reach` (in u/v units) around a point, clamped to the image.
  const reachPx = Math.ceil(Math.max(halfW, halfD) / pixel) + 2;
  const centreI = (nx - 1) / 2 + cx / pixel;
  const centreJ = (ny - 1) / 2 + cy / pixel;

  for (let k = 0; k < nz; k++) {
    const w = wStart + ((k + 0.5) / nz) * (wEnd - wStart);
    const base = k * plane;
    const j0 = Math.max(0, Math.floor(centreJ - reachPx));
    const j1 = Math.min(ny - 1, Math.ceil(centreJ + reachPx));
    const i0 = Math.max(0, Math.floor(centreI - reachPx));
    const i1 = Math.min(nx - 1, Math.ceil(centreI + reachPx));
    for (let j = j0; j <= j1; j++) {
      for (let i = i0; i <= i1; i++) {
        const u = toU(i, j);
        const v = toV(i, j);
        const r2 = u * u + v * v;
        if (r2 > 1) continue;
        tissue[base + j * nx + i] = r2 > fatInner * fatInner ? Tissue.SubcutaneousFat : r2 > wallInner * wallInner ? Tissue.Muscle : Tissue.VisceralFat;
      }
    }
    for (const shape of body.inner) {
      if (w < shape.lo[2] || w > shape.hi[2]) continue;
      // Scan the pixel box of the shape's (u, v) box, rotated conservatively by its radius.
      const uc = (shape.lo[0] + shape.hi[0]) / 2;
      const vc = (shape.lo[1] + shape.hi[1]) / 2;
      const ru = ((shape.hi[0] - shape.lo[0]) / 2) * halfW;
      const rv = ((shape.hi[1] - shape.lo[1]) / 2) * halfD;
      const reach = Math.hypot(ru, rv) / pixel + 2;
      const xc = cr * uc * halfW - sr * vc * halfD + cx;
      const yc = sr * uc * halfW + cr * vc * halfD + cy;
      const ic = (nx - 1) / 2 + xc / pixel;
      const jc = (ny - 1) / 2 + yc / pixel;
      const sj0 = Math.max(0, Math.floor(jc - reach));
      const sj1 = Math.min(ny - 1, Math.ceil(jc + reach));
      const si0 = Math.max(0, Math.floor(ic - reach));
      const si1 = Math.min(nx - 1, Math.ceil(ic + reach));
      for (let j = sj0; j <= sj1; j++) {
        for (let i = si0; i <= si1; i++) {
          const u = toU(i, j);
          const v = toV(i, j);
          if (u * u + v * v > wallInner * wallInner) continue;
          if (shape.inside(u, v, w)) tissue[base + j * nx + i] = shape.tissue;
        }
      }
    }
  }

  const image = new Float32Array(plane * nz);
  const label = new Uint8Array(plane * nz);
  for (let n = 0; n < image.length; n++) {
    image[n] = hu[tissue[n]];
    label[n] = TISSUE_LABEL[tissue[n]];
  }
  // The shift draws from its own stream, so severity 0's draws (and every in-domain case) are unchanged.
  const shiftRng = root.fork(5);
  const squeeze = shift > 0 ? 1 - Math.min(0.85, shift * shiftRng.uniform(0.2, 0.4)) : 1;
  const extraBlur = shift > 0 ? shift * shiftRng.uniform(0.5, 1.5) : 0;
  const noiseGain = shift > 0 ? 1 + shift * shiftRng.uniform(1, 2.5) : 1;
  if (squeeze < 1) {
    // Soft tissue (fat to enhanced parenchyma) converges on 40 HU; air, bowel gas and bone keep theirs.
    for (let n = 0; n < image.length; n++) if (image[n] > -200 && image[n] < 400) image[n] = 40 + (image[n] - 40) * squeeze;
  }
  // Reconstruction blur, then quantum noise; values stored as whole HU in the CT range.
  blurSlices(image, nx, ny, nz, noiseRng.uniform(0.4, 0.8) + extraBlur, new Float32Array(plane));
  const noiseSigma = noiseRng.uniform(8, 25) * noiseGain;
  for (let n = 0; n < image.length; n++) {
    image[n] = Math.min(CT_HU_MAX, Math.max(CT_HU_MIN, Math.round(image[n] + noiseSigma * noiseRng.normal())));
  }

  // DICOM axial convention: i → patient left, j → posterior, k → superior (LPS), as RAS+.
  const zStart = -((nz - 1) / 2) * thickness;
  const affine: Mat4 = [
    [-pixel, 0, 0, ((nx - 1) / 2) * pixel],
    [0, -pixel, 0, ((ny - 1) / 2) * pixel],
    [0, 0, thickness, zStart],
    [0, 0, 0, 1],
  ];
  const description = `ALHVR abdomen CT phantom seed ${seed} case ${index} ${phase}${shift > 0 ? ` shift ${shift}` : ''}`;
  const meta = { kind: 'generated' as const, description, warnings: [] };
  return {
    image: new Volume({ data: image, dims: [nx, ny, nz], affine, meta }),
    label: new Volume({ data: label, dims: [nx, ny, nz], affine, meta }),
    phase,
    organHu,
    noiseSigma,
  };
}
