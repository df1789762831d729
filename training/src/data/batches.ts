/**
 * The training batches of a run, one per step: labelled slices first (true labels, then
 * pseudo-labels), then unlabeled ones; each slice augmented by the recipe and resized to the
 * patch by the preprocessing's rules, into buffers reused across steps.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Preprocessing, Rng, RngState } from '@alhvr/core';
import { BatchSampler, type BatchSamplerState } from './batch-sampler.js';
import { SliceAugmenter, drawAugmentation } from './augment.js';
import type { PseudoLabelSet } from './pseudo-labels.js';
import type { SliceDataset, SliceRef } from './slice-dataset.js';

export interface Batch {
  /** [labelled + unlabeled, P, P, 1] (2D) or [labelled + unlabeled, P, P, P, 1] (3D). */
  images: tf.Tensor;
  /** [labelled, P, P] or [labelled, P, P, P]. */
  labels: tf.Tensor;
  /** Per-pixel weights of the labelled part (present only when pseudo-labels are in play). */
  labelWeight?: tf.Tensor;
  labeledCount: number;
}

export interface BatchesOptions {
  dataset: SliceDataset;
  /** The unlabeled pool (the dataset's, less images that carry pseudo-labels). */
  unlabeled: SliceRef[];
  pseudo?: PseudoLabelSet;
  patch: number;
  resize: Preprocessing['resize'];
  /** Slices per batch from each stream. */
  perBatch: { labeled: number; pseudo: number; unlabeled: number };
  /** Sampler seeds (a fresh run) or saved states (a resumed one), and the augmentation stream. */
  draws: { sampler: number | BatchSamplerState; pseudoSampler: number | BatchSamplerState; augment: Rng };
}

/** What a checkpoint keeps of the batch streams. */
export interface BatchesState {
  sampler: BatchSamplerState;
  pseudoSampler?: BatchSamplerState;
  augment: RngState;
}

export class Batches {
  private readonly sampler: BatchSampler;
  private readonly pseudoSampler: BatchSampler | undefined;
  private readonly augment: Rng;
  private readonly plane: number;
  private readonly labeledCount: number;
  private readonly images: Float32Array;
  private readonly labels: Int32Array;
  private readonly weights: Float32Array | undefined;
  private readonly augmenter: SliceAugmenter;
  private readonly sliceImage: Float32Array;
  private readonly sliceLabel: Uint8Array;
  private readonly sliceWeight: Float32Array | undefined;
  private readonly weightAugmenter: SliceAugmenter | undefined;

  constructor(private readonly opts: BatchesOptions) {
    const { dataset, pseudo, patch, perBatch, draws } = opts;
    this.sampler = new BatchSampler(dataset.labeled.length, opts.unlabeled.length, perBatch.labeled, perBatch.unlabeled, draws.sampler);
    this.pseudoSampler = pseudo ? new BatchSampler(pseudo.slices.length, 0, perBatch.pseudo, 0, draws.pseudoSampler) : undefined;
    this.augment = draws.augment;
    this.plane = patch * patch;
    this.labeledCount = perBatch.labeled + perBatch.pseudo;
    this.images = new Float32Array((this.labeledCount + perBatch.unlabeled) * this.plane);
    this.labels = new Int32Array(this.labeledCount * this.plane);
    const maxSliceVoxels = Math.max(dataset.maxSliceVoxels, pseudo?.maxSliceVoxels ?? 0);
    this.augmenter = new SliceAugmenter(patch, maxSliceVoxels, opts.resize);
    this.sliceImage = new Float32Array(maxSliceVoxels);
    this.sliceLabel = new Uint8Array(maxSliceVoxels);
    // A pseudo slice's weights go through the same augmentation as its labels (the label rule, zeros outside).
    this.weights = pseudo ? new Float32Array(this.labeledCount * this.plane) : undefined;
    this.sliceWeight = pseudo ? new Float32Array(maxSliceVoxels) : undefined;
    this.weightAugmenter = pseudo ? new SliceAugmenter(patch, maxSliceVoxels, { image: opts.resize.label, label: opts.resize.label }) : undefined;
  }

  next(): Batch {
    const { dataset, pseudo, unlabeled, patch, perBatch } = this.opts;
    const { plane, labeledCount } = this;
    const drawn = this.sampler.next();
    const drawnPseudo = this.pseudoSampler?.next().labeled ?? [];
    const refs = [...drawn.labeled.map((n) => dataset.labeled[n]), ...drawnPseudo.map((n) => pseudo!.slices[n]), ...drawn.unlabeled.map((n) => unlabeled[n])];
    refs.forEach((ref, slot) => {
      const isLabeled = slot < labeledCount;
      const isPseudo = isLabeled && slot >= perBatch.labeled;
      const { width, height } = isPseudo
        ? pseudo!.readSlice(ref, this.sliceImage, this.sliceLabel, this.sliceWeight!)
        : dataset.readSlice(ref, this.sliceImage, isLabeled ? this.sliceLabel : null);
      const choice = drawAugmentation(this.augment);
      this.augmenter.apply({ width, height, image: this.sliceImage.subarray(0, width * height), label: isLabeled ? this.sliceLabel.subarray(0, width * height) : undefined }, choice);
      this.images.set(this.augmenter.image, slot * plane);
      if (isLabeled) for (let p = 0; p < plane; p++) this.labels[slot * plane + p] = this.augmenter.label[p];
      if (this.weights && isPseudo) {
        this.weightAugmenter!.apply({ width, height, image: this.sliceWeight!.subarray(0, width * height) }, choice);
        this.weights.set(this.weightAugmenter!.image, slot * plane);
      } else if (this.weights && isLabeled) this.weights.fill(1, slot * plane, (slot + 1) * plane);
    });
    return {
      images: tf.tensor4d(this.images, [refs.length, patch, patch, 1]),
      labels: tf.tensor3d(this.labels, [labeledCount, patch, patch], 'int32'),
      labelWeight: this.weights ? tf.tensor3d(this.weights, [labeledCount, patch, patch]) : undefined,
      labeledCount,
    };
  }

  state(): BatchesState {
    return { sampler: this.sampler.state(), pseudoSampler: this.pseudoSampler?.state(), augment: this.augment.state() };
  }
}

export function disposeBatch(batch: Batch): void {
  tf.dispose([batch.images, batch.labels, ...(batch.labelWeight ? [batch.labelWeight] : [])]);
}
