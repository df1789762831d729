/**
 * Numerical parity of an exported model against the TensorFlow.js networks it came from, on
 * phantom cardiac slices prepared as inference prepares them (card normalisation, card image
 * resize rule, card model size), or for a 3D card on patches of an abdominal CT phantom (card
 * normalisation, card patch size). Used by alhvr-export and the tests.
 */
import { openModelBytes, type SliceOutputKind } from '@alhvr/inference/node';
import { InputError, generateAbdomenCtCase, generatePhantomCase, normaliseIntensities, resizeInPlane, Volume, type ModelCard } from '@alhvr/core';
import { selectBackend, type UNet, type VNet3d } from '@alhvr/training';
import type * as tf from '@tensorflow/tfjs-core';
import { readOnnxModelCard } from './onnx-model-card.js';

export interface ParityThresholds {
  maxAbsLogits: number;
  maxAbsProbabilities: number;
  /** Fraction of pixels whose label agrees. */
  minArgmaxAgreement: number;
  /** Fraction of pixels whose region agrees (two-student models), γ ties excluded. */
  minRegionAgreement: number;
  /**
   * A region mismatch where a student's reference confidence lies within this distance of γ is
   * a γ tie (the precision, not the graph, decides it) and is reported but not failed. 0: none.
   */
  regionTieMargin: number;
}

export const FP32_PARITY: ParityThresholds = {
  maxAbsLogits: 1e-4,
  maxAbsProbabilities: 1e-4,
  minArgmaxAgreement: 0.9999,
  minRegionAgreement: 1,
  // A student confidence the probability bound away from γ may fall on either side of it: such a
  // flip is the float order of the two runtimes, not the graph (a 3-iteration 3D run had one, and
  // its export was refused).
  regionTieMargin: 1e-4,
};

/**
 * fp16 bounds. Measured with onnxruntime-node 1.30 (CPU) against the float32 tfjs networks on
 * phantom slices (students with calibrated BatchNorm statistics, logits within ±6; small widths
 * at 64×48 and default widths at 256²): max |Δ| logits ≤ 1.5e-3, probabilities ≤ 2.7e-4,
 * student confidence ≤ 5.4e-4; labels agreed on 99.8–100 % of pixels (flips only at near-tied
 * top-2 classes); region flips occurred only at confidences within 2e-3 of γ (≈0.5 % of pixels
 * when γ sits at the median confidence). The bounds leave margin for other hardware; GPU
 * providers accumulate in fp16 and may differ more.
 */
export const FP16_PARITY: ParityThresholds = {
  maxAbsLogits: 1e-2,
  maxAbsProbabilities: 2e-3,
  minArgmaxAgreement: 0.99,
  minRegionAgreement: 1,
  regionTieMargin: 2e-3,
};

/**
 * fp16-weights bounds (float32 compute on weights rounded to float16). The rounding is all that
 * differs, and it grows with depth and kernel volume: the 2D phantom networks above differ by the
 * same amounts as fp16 (ONNX Runtime's CPU provider computes fp16 Convs in float32 too); the
 * shipped 3D CT VNet (widths 16…128, 3³ kernels, five levels) by 1.5e-3 in probabilities and
 * 2.8e-3 in a student's confidence, with 6 of 131,072 labels flipped at near-tied classes (one CT
 * phantom patch batch). The bounds leave margin over that; whether such a model is worth
 * offering is decided on unseen volumes (Dice and calibration against the fp32 model), not here.
 */
export const FP16_WEIGHTS_PARITY: ParityThresholds = {
  maxAbsLogits: 2e-2,
  maxAbsProbabilities: 5e-3,
  minArgmaxAgreement: 0.999,
  minRegionAgreement: 1,
  regionTieMargin: 5e-3,
};

export interface ParityOptions {
  /** Number of phantom slices (default 4), taken evenly from phantom cases. */
  slices?: number;
  /** Phantom seed (default 20250101). */
  seed?: number;
  /** Slices per forward pass on both sides (default 2; >1 exercises the dynamic batch). */
  batch?: number;
  /** TensorFlow.js backend for the reference (default 'cpu'). */
  backend?: 'cpu' | 'wasm';
  /** wasm threads, if this call is the first to start the wasm backend (default 1). */
  threads?: number;
  /** Feed slices at this [width, height] (3D: patches at [x, y, z]) instead of the card's size (exercises dynamic dims). */
  size?: [number, number] | [number, number, number];
  /** Override the thresholds (default: FP32_PARITY or FP16_PARITY by the model's precision). */
  thresholds?: ParityThresholds;
}

export interface ParityReport {
  precision: 'fp32' | 'fp16' | 'fp16-weights';
  backend: string;
  /** Samples compared: phantom slices (2D) or phantom CT patches (3D). */
  slices: number;
  dimensions: 2 | 3;
  /** [width, height] of the slices, or [x, y, z] of the patches, as fed (the card's input size). */
  size: number[];
  pixels: number;
  /** null when the model has no logits outputs (shipping exports). */
  maxAbsLogits: number | null;
  maxAbsProbabilities: number;
  maxAbsConfidence: number;
  maxAbsStudentConfidence: number | null;
  argmaxAgreement: number;
  labelMismatches: number;
  regionAgreement: number | null;
  /** Mismatches outside the γ tie margin (these fail the check). */
  regionMismatches: number | null;
  /** Mismatches within the γ tie margin (reported only). */
  regionTies: number | null;
  thresholds: ParityThresholds;
  /** Human-readable reasons when a threshold is missed; empty on a pass. */
  failures: string[];
  pass: boolean;
  /** Wall time of the two forward passes (information only). */
  timing: { tfjsMs: number; onnxMs: number };
}

/** Phantom slices ([count, H, W] row-major, x fastest) prepared with the card's rules. */
export function phantomSlices(card: ModelCard, count: number, seed: number, size: [number, number] = [card.input.size[0], card.input.size[1]]): Float32Array {
  const [width, height] = size;
  const out = new Float32Array(count * width * height);
  const perCase = Math.min(count, 3);
  let filled = 0;
  for (let index = 0; filled < count; index++) {
    const { image } = generatePhantomCase({ seed, index });
    const normalised = new Volume({
      data: normaliseIntensities(image.data, card.normalisation),
      dims: image.dims,
      affine: image.affine,
      meta: image.meta,
    });
    const resized = resizeInPlane(normalised, [width, height], card.resize.image);
    const nz = resized.dims[2];
    const plane = width * height;
    // Evenly spaced interior slices: the heart is mid-stack, the ends are mostly background.
    for (let s = 0; s < perCase && filled < count; s++, filled++) {
      const k = Math.min(nz - 1, Math.round(((s + 1) * (nz - 1)) / (perCase + 1)));
      out.set(resized.data.subarray(k * plane, (k + 1) * plane), filled * plane);
    }
  }
  return out;
}

/**
 * 3D parity samples: `count` patches ([count, z, y, x], x fastest) of abdominal CT phantoms
 * normalised with the card's rule, centred in-plane at evenly spaced depths, zero where the
 * phantom is smaller than the patch. (Parity compares two runtimes on the same input; the
 * resampling to the card's spacing is inference's and is tested there.)
 */
export function phantomPatches(card: ModelCard, count: number, seed: number, patch: [number, number, number]): Float32Array {
  const [px, py, pz] = patch;
  const patchVoxels = px * py * pz;
  const out = new Float32Array(count * patchVoxels);
  const perCase = Math.min(count, 2);
  let filled = 0;
  for (let index = 0; filled < count; index++) {
    // A small matrix keeps the phantom cheap; the body shrinks with the field of view.
    const { image } = generateAbdomenCtCase({ seed, index, matrix: Math.max(64, px, py) });
    const data = normaliseIntensities(image.data, card.normalisation);
    const [nx, ny, nz] = image.dims;
    const ox = Math.floor((nx - px) / 2);
    const oy = Math.floor((ny - py) / 2);
    for (let s = 0; s < perCase && filled < count; s++, filled++) {
      const oz = Math.round(((s + 1) * (nz - pz)) / (perCase + 1));
      const base = filled * patchVoxels;
      for (let c = 0; c < pz; c++) {
        const z = oz + c;
        for (let b = 0; b < py; b++) {
          const y = oy + b;
          for (let a = 0; a < px; a++) {
            const x = ox + a;
            const inside = x >= 0 && x < nx && y >= 0 && y < ny && z >= 0 && z < nz;
            out[base + (c * py + b) * px + a] = inside ? data[(z * ny + y) * nx + x] : 0;
          }
        }
      }
    }
  }
  return out;
}


class MaxAbs {
  value = 0;
  add(a: number, b: number): void {
    const d = Math.abs(a - b);
    // NaN on either side must fail the check, not vanish in Math.max.
    this.value = Number.isNaN(d) ? Infinity : Math.max(this.value, d);
  }
}

/**
 * Run `students` (eval mode) in TensorFlow.js and the exported model in ONNX Runtime for Node
 * on the same slices; report the largest differences and label/region agreement.
 * For one-student models pass either that student or both (the card says which is used).
 */
export async function checkParity(students: readonly (UNet | VNet3d)[], onnxModel: Uint8Array, opts: ParityOptions = {}): Promise<ParityReport> {
  const card = readOnnxModelCard(onnxModel);
  // An int8 card over a float graph is the fp32 graph it was quantized from (quantize-calibration.ts).
  const network = card.precision?.network;
  const precision = network === 'fp16' || network === 'fp16-weights' ? network : 'fp32';
  const thresholds = opts.thresholds ?? (precision === 'fp16' ? FP16_PARITY : precision === 'fp16-weights' ? FP16_WEIGHTS_PARITY : FP32_PARITY);
  const dimensions = card.dimensions ?? 2;
  const nets: { net: UNet | VNet3d; label: 'a' | 'b' }[] =
    card.students === 'both'
      ? (students.length === 2 ? [{ net: students[0], label: 'a' }, { net: students[1], label: 'b' }] : [])
      : [{ net: students.length === 2 ? students[card.students === 'a' ? 0 : 1] : students[0], label: card.students }];
  if (nets.length === 0 || nets.some((n) => !n.net)) {
    throw new InputError(`parity: the model holds students "${card.students}" but ${students.length} network(s) were given`);
  }
  const count = opts.slices ?? 4;
  const batch = Math.max(1, Math.min(opts.batch ?? 2, count));
  const { tf, name: backend } = await selectBackend(opts.backend ?? 'cpu', { threads: opts.threads ?? 1, log: () => {} });

  const size = [...(opts.size ?? card.input.size)];
  if (size.length !== dimensions) throw new InputError(`parity: size ${size.join('×')} does not match a ${dimensions}D model`);
  if (!size.every((d) => d > 0 && d % 16 === 0)) throw new InputError(`parity: size ${size.join('×')} must be positive multiples of 16`);
  const [W, H] = size;
  const C = card.classes.length;
  // Voxels per sample (a slice, or a 3D patch); both sides keep sample-major, channel order alike.
  const plane = size.reduce((a, b) => a * b, 1);
  const seed = opts.seed ?? 20250101;
  const slices = dimensions === 3 ? phantomPatches(card, count, seed, size as [number, number, number]) : phantomSlices(card, count, seed, [W, H]);
  // tfjs is channels-last: one channel makes NHWC / NDHWC the same memory as the samples.
  const tfShape = dimensions === 3 ? [0, size[2], H, W, 1] : [0, H, W, 1];
  const forward = (net: UNet | VNet3d, x: tf.Tensor): tf.Tensor =>
    dimensions === 3 ? (net as VNet3d).forward(x as tf.Tensor5D, { training: false }).logits : (net as UNet).forward(x as tf.Tensor4D, { training: false }).logits;
  const gamma = Math.fround(card.regions.gamma);
  // The graph divides logits by the calibrated temperature before every head; so does the reference.
  const inverseT = 1 / (card.calibration?.temperature ?? 1);
  const two = nets.length === 2;

  // Sessions are opened by inference's one session owner (runtime, provider, telemetry guard).
  const { model: session } = await openModelBytes(onnxModel, 'parity model', { device: 'cpu' });
  const logitsKind = (label: 'a' | 'b'): SliceOutputKind => (label === 'a' ? 'logitsA' : 'logitsB');
  const hasLogits = nets.every((n) => session.available.has(logitsKind(n.label)));
  const fetch: SliceOutputKind[] = ['probabilities', 'label', 'confidence', ...(two ? (['studentConfidence', 'region'] as const) : []), ...(hasLogits ? nets.map((n) => logitsKind(n.label)) : [])];

  const dLogits = new MaxAbs();
  const dProb = new MaxAbs();
  const dConf = new MaxAbs();
  const dStudent = new MaxAbs();
  let labelMismatches = 0;
  let regionMismatches = 0;
  let regionTies = 0;
  let tfjsMs = 0;
  let onnxMs = 0;

  try {
    for (let start = 0; start < count; start += batch) {
      const b = Math.min(batch, count - start);
      const input = slices.subarray(start * plane, (start + b) * plane);
      // NHWC with one channel and NCHW with one channel share the memory layout.
      let t0 = performance.now();
      const x = tf.tensor(input, [b, ...tfShape.slice(1)]);
      const perStudent = nets.map(({ net }) =>
        tf.tidy(() => {
          const logits = forward(net, x);
          return { logits: logits.dataSync() as Float32Array, probs: tf.softmax(tf.mul(logits, inverseT)).dataSync() as Float32Array };
        }),
      );
      x.dispose();
      tfjsMs += performance.now() - t0;
      t0 = performance.now();
      const res = dimensions === 3 ? await session.runPatches(input, b, size as [number, number, number], fetch) : await session.run(input, b, H, W, fetch);
      onnxMs += performance.now() - t0;
      const probs = res.probabilities as Float32Array;
      const labels = res.label as Uint8Array;
      const conf = res.confidence as Float32Array;
      const studentConf = two ? (res.studentConfidence as Float32Array) : undefined;
      const regions = two ? (res.region as Uint8Array) : undefined;
      const onnxLogits = hasLogits ? nets.map((n) => res[logitsKind(n.label)] as Float32Array) : [];

      for (let n = 0; n < b; n++) {
        for (let p = 0; p < plane; p++) {
          const nhwc = (n * plane + p) * C;
          let best = -Infinity;
          let arg = 0;
          for (let c = 0; c < C; c++) {
            const nchw = (n * C + c) * plane + p;
            let mean = 0;
            for (let s = 0; s < nets.length; s++) {
              mean += perStudent[s].probs[nhwc + c];
              if (hasLogits) dLogits.add(perStudent[s].logits[nhwc + c], onnxLogits[s][nchw]);
            }
            mean = two ? Math.fround(mean * 0.5) : mean;
            dProb.add(mean, probs[nchw]);
            if (mean > best) {
              best = mean;
              arg = c;
            }
          }
          const q = n * plane + p;
          dConf.add(best, conf[q]);
          if (labels[q] !== arg) labelMismatches++;
          if (two) {
            let confident = 0;
            let nearGamma = false;
            for (let s = 0; s < 2; s++) {
              let m = -Infinity;
              for (let c = 0; c < C; c++) m = Math.max(m, perStudent[s].probs[nhwc + c]);
              if (m > gamma) confident++;
              if (Math.abs(m - gamma) <= thresholds.regionTieMargin) nearGamma = true;
              dStudent.add(m, studentConf![(n * 2 + s) * plane + p]);
            }
            if (regions![q] !== 3 - confident) {
              if (nearGamma) regionTies++;
              else regionMismatches++;
            }
          }
        }
      }
    }
  } finally {
    await session.release();
  }

  const pixels = count * plane;
  const argmaxAgreement = 1 - labelMismatches / pixels;
  const regionAgreement = two ? 1 - regionMismatches / pixels : null;
  const failures: string[] = [];
  if (hasLogits && !(dLogits.value <= thresholds.maxAbsLogits)) failures.push(`max |Δ logits| ${dLogits.value.toExponential(2)} > ${thresholds.maxAbsLogits}`);
  if (!(dProb.value <= thresholds.maxAbsProbabilities)) failures.push(`max |Δ probabilities| ${dProb.value.toExponential(2)} > ${thresholds.maxAbsProbabilities}`);
  if (!(dConf.value <= thresholds.maxAbsProbabilities)) failures.push(`max |Δ confidence| ${dConf.value.toExponential(2)} > ${thresholds.maxAbsProbabilities}`);
  if (two && !(dStudent.value <= thresholds.maxAbsProbabilities)) failures.push(`max |Δ student_confidence| ${dStudent.value.toExponential(2)} > ${thresholds.maxAbsProbabilities}`);
  if (argmaxAgreement < thresholds.minArgmaxAgreement) failures.push(`label agreement ${(argmaxAgreement * 100).toFixed(4)} % < ${thresholds.minArgmaxAgreement * 100} %`);
  if (regionAgreement !== null && regionAgreement < thresholds.minRegionAgreement) failures.push(`region agreement ${(regionAgreement * 100).toFixed(4)} % < ${thresholds.minRegionAgreement * 100} % (${regionMismatches} pixels differ)`);
  return {
    precision,
    backend,
    slices: count,
    dimensions,
    size,
    pixels,
    maxAbsLogits: hasLogits ? dLogits.value : null,
    maxAbsProbabilities: dProb.value,
    maxAbsConfidence: dConf.value,
    maxAbsStudentConfidence: two ? dStudent.value : null,
    argmaxAgreement,
    labelMismatches,
    regionAgreement,
    regionMismatches: two ? regionMismatches : null,
    regionTies: two ? regionTies : null,
    thresholds,
    failures,
    pass: failures.length === 0,
    timing: { tfjsMs, onnxMs },
  };
}

/** Parity figures as printed by alhvr-export. */
export function formatParity(r: ParityReport): string {
  const e = (v: number | null) => (v === null ? 'n/a' : v.toExponential(2));
  const lines = [
    `parity (${r.precision} ONNX Runtime vs TensorFlow.js ${r.backend}, ${r.slices} ${r.dimensions === 3 ? 'CT phantom patches' : 'phantom slices'} at ${r.size.join('×')}):`,
    `  max |Δ| probabilities ${e(r.maxAbsProbabilities)}, confidence ${e(r.maxAbsConfidence)}` +
      (r.maxAbsStudentConfidence !== null ? `, student confidence ${e(r.maxAbsStudentConfidence)}` : '') +
      (r.maxAbsLogits !== null ? `, logits ${e(r.maxAbsLogits)}` : ''),
    `  labels agree ${(r.argmaxAgreement * 100).toFixed(4)} % (${r.labelMismatches} of ${r.pixels} differ)` +
      (r.regionAgreement !== null ? `; regions agree ${(r.regionAgreement * 100).toFixed(4)} % (${r.regionMismatches} differ` + (r.regionTies ? `, plus ${r.regionTies} γ ties within ${r.thresholds.regionTieMargin}` : '') + ')' : ''),
    `  time: TensorFlow.js ${(r.timing.tfjsMs / 1000).toFixed(1)} s, ONNX Runtime ${(r.timing.onnxMs / 1000).toFixed(1)} s`,
    `  ${r.pass ? 'PASS' : `FAIL: ${r.failures.join('; ')}`}`,
  ];
  return lines.join('\n');
}
