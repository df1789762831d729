import * as tf from '@tensorflow/tfjs-core';
import {
  ALHVR_RECIPE_PREPROCESSING,
  MetricsWorkspace,
  PlaneResizer,
  defaultWindowStride,
  meanMetrics,
  segmentationMetrics,
  windowPadBefore,
  windowStartsAlong,
  type ClassMetrics,
  type MetricsSummary,
  type Preprocessing,
  type Volume,
} from '@alhvr/core';
import type { UNet } from './model/unet.js';
import { VNet3d } from './model/vnet3d.js';
import type { SliceDataset, ValidationVolume } from './data/slice-dataset.js';
import type { VolumeDataset } from './data/volume-dataset.js';

export interface ValidationResult {
  /** Mean foreground Dice over cases and classes: the model-selection criterion. */
  meanDice: number;
  meanHd95: number;
  /** Per foreground class (label, Dice, HD95 in mm and voxels), means over cases. */
  perClass: { label: number; dice: number; hd95Mm: number; hd95Voxels: number }[];
  summary: MetricsSummary;
}

/** The resize rules validation uses: image to the patch, labels back. */
export type ValidationResize = Pick<Preprocessing['resize'], 'image' | 'labelBack'>;

/**
 * Slice-wise prediction of one volume (normalised, canonical: slices along k) as the released
 * test script does it: each slice resized to the patch (the recipe: nearest, scipy-zoom grid),
 * argmax of the clean branch, resized back (nearest). The labels come back on the image's grid
 * and geometry.
 */
export function predictVolume(net: UNet, volume: Volume<Float32Array>, patch: number, resize: ValidationResize = ALHVR_RECIPE_PREPROCESSING.resize, batch = 8): Volume<Uint8Array> {
  const [w, h, k] = volume.dims;
  const image = volume.data;
  const toPatch = new PlaneResizer(w, h, patch, patch, resize.image);
  const back = new PlaneResizer(patch, patch, w, h, resize.labelBack);
  const input = new Float32Array(batch * patch * patch);
  const pred = new Uint8Array(w * h * k);
  for (let start = 0; start < k; start += batch) {
    const n = Math.min(batch, k - start);
    for (let s = 0; s < n; s++) toPatch.resize(image, (start + s) * w * h, input, s * patch * patch);
    const labels = tf.tidy(() => {
      const x = tf.tensor4d(input.subarray(0, n * patch * patch), [n, patch, patch, 1]);
      return tf.argMax(net.forward(x, { training: false }).logits, -1);
    });
    const data = labels.dataSync();
    labels.dispose();
    for (let s = 0; s < n; s++) back.resize(data, s * patch * patch, pred, (start + s) * w * h);
  }
  return volume.withData(pred);
}

/**
 * Sliding-window prediction of one volume by a 3D network, as the released validation does it:
 * sides shorter than the patch zero-padded (⌊pad/2⌋ before), windows at core's placement (stride
 * 64 of 96 by default), one window per forward in eval mode, softmaxes summed and divided by the
 * per-voxel window count, argmax, padding cut. No Gaussian weighting, no flips.
 */
export function predictVolume3d(net: VNet3d, volume: Volume<Float32Array>, patch: number, stride = defaultWindowStride(patch)): Volume<Uint8Array> {
  const dims = volume.dims;
  const pad = dims.map((s) => windowPadBefore(s, patch));
  const padded = dims.map((s) => Math.max(s, patch));
  const [px, py, pz] = padded;
  const source = new Float32Array(px * py * pz);
  for (let z = 0; z < dims[2]; z++) {
    for (let y = 0; y < dims[1]; y++) {
      const from = dims[0] * (y + dims[1] * z);
      source.set(volume.data.subarray(from, from + dims[0]), pad[0] + px * (y + pad[1] + py * (z + pad[2])));
    }
  }
  const classes = net.config.numClasses;
  const sums = new Float32Array(classes * px * py * pz); // class-major: one class volume after another
  const counts = new Uint16Array(px * py * pz);
  const window = new Float32Array(patch ** 3);
  const [xs, ys, zs] = padded.map((s) => windowStartsAlong(s, patch, stride));
  for (const z0 of zs) {
    for (const y0 of ys) {
      for (const x0 of xs) {
        for (let z = 0; z < patch; z++) for (let y = 0; y < patch; y++) {
          const from = x0 + px * (y0 + y + py * (z0 + z));
          window.set(source.subarray(from, from + patch), patch * (y + patch * z));
        }
        const probs = tf.tidy(() => tf.softmax(net.forward(tf.tensor5d(window, [1, patch, patch, patch, 1]), { training: false }).logits, -1));
        const p = probs.dataSync();
        probs.dispose();
        for (let z = 0; z < patch; z++) for (let y = 0; y < patch; y++) for (let x = 0; x < patch; x++) {
          const v = x0 + x + px * (y0 + y + py * (z0 + z));
          const w = (x + patch * (y + patch * z)) * classes;
          counts[v]++;
          for (let c = 0; c < classes; c++) sums[c * counts.length + v] += p[w + c];
        }
      }
    }
  }
  const labels = new Uint8Array(volume.voxelCount);
  for (let z = 0; z < dims[2]; z++) for (let y = 0; y < dims[1]; y++) for (let x = 0; x < dims[0]; x++) {
    const v = x + pad[0] + px * (y + pad[1] + py * (z + pad[2]));
    // Every voxel is covered at least once; dividing by its count does not change the argmax.
    let bestClass = 0;
    for (let c = 1; c < classes; c++) if (sums[c * counts.length + v] > sums[bestClass * counts.length + v]) bestClass = c;
    labels[x + dims[0] * (y + dims[1] * z)] = bestClass;
  }
  return volume.withData(labels);
}

/** Score a network on every validation volume of the dataset (slice-wise in 2D, sliding window in 3D). */
export async function validate(net: UNet | VNet3d, dataset: SliceDataset | VolumeDataset, patch: number, resize: ValidationResize = ALHVR_RECIPE_PREPROCESSING.resize): Promise<ValidationResult> {
  const predict = (v: ValidationVolume) => (net instanceof VNet3d ? predictVolume3d(net, v.image, patch) : predictVolume(net, v.image, patch, resize));
  const foreground = dataset.classes.map((c) => c.value).filter((v) => v !== 0);
  const workspace = new MetricsWorkspace();
  const cases: ClassMetrics[][] = [];
  for (const id of dataset.validationIds) {
    const v = await dataset.readValidation(id);
    // Distances in mm on the case's own geometry (voxels for a layout without any, acdc-h5);
    // a 3D case is scored on its grid at the target spacing.
    cases.push(segmentationMetrics(predict(v), v.label, foreground, { workspace }));
  }
  const summary = meanMetrics(cases);
  const perClass = summary.perClass.map((c) => ({
    label: c.label,
    dice: c.stats.dice.mean,
    hd95Mm: c.stats.hd95Mm.mean,
    hd95Voxels: c.stats.hd95Voxels.mean,
  }));
  return { meanDice: summary.mean.dice, meanHd95: summary.mean.hd95Mm, perClass, summary };
}
