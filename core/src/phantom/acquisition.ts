import type { Rng } from '../random.js';
import { TISSUE_COUNT, Tissue } from './anatomy.js';

/**
 * The MR acquisition side of the phantom: per-case tissue contrast (bSSFP-like: blood and fat
 * bright, myocardium and muscle dark, lung nearly black), in-plane blur, a smooth
 * multiplicative coil bias field, and Rician magnitude noise.
 */

/** Noise-free signal of each tissue for one case, relative to LV blood ≈ 1. */
export function sampleContrast(rng: Rng): Float32Array {
  const c = new Float32Array(TISSUE_COUNT);
  const u = (lo: number, hi: number) => rng.uniform(lo, hi);
  const blood = u(0.85, 1.05);
  const myo = u(0.22, 0.4);
  c[Tissue.Air] = 0;
  c[Tissue.Fat] = u(0.7, 1.0);
  c[Tissue.ChestMuscle] = myo * u(0.85, 1.2);
  c[Tissue.Lung] = u(0.02, 0.1);
  c[Tissue.Liver] = u(0.3, 0.5);
  c[Tissue.Bone] = u(0.3, 0.5);
  c[Tissue.Mediastinum] = u(0.35, 0.6);
  c[Tissue.AortaBlood] = blood * u(0.85, 1.1);
  c[Tissue.LvBlood] = blood;
  c[Tissue.Papillary] = myo * u(1.0, 1.3);
  c[Tissue.Myocardium] = myo;
  c[Tissue.RvBlood] = blood * u(0.85, 1.02);
  c[Tissue.RvWall] = myo * u(0.9, 1.2);
  c[Tissue.PericardialFat] = c[Tissue.Fat] * u(0.85, 1.0);
  c[Tissue.StomachFluid] = blood * u(0.6, 1.0);
  return c;
}

/** Normalised 1D Gaussian kernel with radius ceil(3σ). */
function gaussianKernel(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float32Array(2 * radius + 1);
  let sum = 0;
  for (let d = -radius; d <= radius; d++) {
    const w = Math.exp(-(d * d) / (2 * sigma * sigma));
    k[d + radius] = w;
    sum += w;
  }
  for (let n = 0; n < k.length; n++) k[n] /= sum;
  return k;
}

/**
 * Separable in-plane Gaussian blur of each slice of `data` (nx × ny × nz, i fastest), with
 * edge-replicating borders; `scratch` must hold nx·ny values.
 */
export function blurSlices(data: Float32Array, nx: number, ny: number, nz: number, sigma: number, scratch: Float32Array): void {
  if (sigma <= 0) return;
  const kern = gaussianKernel(sigma);
  const r = (kern.length - 1) / 2;
  const plane = nx * ny;
  for (let k = 0; k < nz; k++) {
    const off = k * plane;
    for (let j = 0; j < ny; j++) {
      const row = off + j * nx;
      for (let i = 0; i < nx; i++) {
        let s = 0;
        for (let d = -r; d <= r; d++) {
          const ii = i + d < 0 ? 0 : i + d >= nx ? nx - 1 : i + d;
          s += kern[d + r] * data[row + ii];
        }
        scratch[j * nx + i] = s;
      }
    }
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        let s = 0;
        for (let d = -r; d <= r; d++) {
          const jj = j + d < 0 ? 0 : j + d >= ny ? ny - 1 : j + d;
          s += kern[d + r] * scratch[jj * nx + i];
        }
        data[off + j * nx + i] = s;
      }
    }
  }
}

/**
 * Multiply by a smooth bias field exp(Σ c·basis) over normalised coordinates (a second-order
 * polynomial in-plane plus a linear through-plane term), then replace each value by the
 * magnitude of a complex signal with Gaussian noise of standard deviation `sigma` in both
 * channels (Rician statistics, including the noise floor in air).
 */
export function applyBiasAndRicianNoise(
  data: Float32Array,
  nx: number,
  ny: number,
  nz: number,
  rng: Rng,
  biasStrength: number,
  sigma: number,
): void {
  const c = Array.from({ length: 6 }, () => rng.uniform(-biasStrength, biasStrength));
  let n = 0;
  for (let k = 0; k < nz; k++) {
    const z = nz > 1 ? (2 * k) / (nz - 1) - 1 : 0;
    for (let j = 0; j < ny; j++) {
      const y = (2 * j) / (ny - 1) - 1;
      for (let i = 0; i < nx; i++, n++) {
        const x = (2 * i) / (nx - 1) - 1;
        const bias = Math.exp(c[0] * x + c[1] * y + c[2] * x * y + c[3] * (x * x - 0.5) + c[4] * (y * y - 0.5) + c[5] * z);
        const re = data[n] * bias + sigma * rng.normal();
        const im = sigma * rng.normal();
        data[n] = Math.sqrt(re * re + im * im);
      }
    }
  }
}
