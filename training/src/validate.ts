import * as tf from '@tensorflow/tfjs-core';
import { ALHVR_RECIPE_PREPROCESSING, MetricsWorkspace, PlaneResizer, meanMetrics, segmentationMetrics, type ClassMetrics, type MetricsSummary, type Preprocessing, type Volume } from '@alhvr/core';
import type { UNet } from './model/unet.js';
import type { SliceDataset } from './data/slice-dataset.js';

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

/** Score a network on every validation volume of the dataset. */
export async function validate(net: UNet, dataset: SliceDataset, patch: number, resize: ValidationResize = ALHVR_RECIPE_PREPROCESSING.resize): Promise<ValidationResult> {
  const foreground = dataset.classes.map((c) => c.value).filter((v) => v !== 0);
  const workspace = new MetricsWorkspace();
  const cases: ClassMetrics[][] = [];
  for (const id of dataset.validationIds) {
    const v = await dataset.readValidation(id);
    // Distances in mm on the case's own geometry (voxels for a layout without any, acdc-h5).
    cases.push(segmentationMetrics(predictVolume(net, v.image, patch, resize), v.label, foreground, { workspace }));
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
