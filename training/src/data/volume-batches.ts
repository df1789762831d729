/**
 * The 3D training batches: labelled crops first, then unlabeled ones, each case drawn by the
 * same two-stream sampler as 2D and augmented by the released rot90/flip + random crop
 * (crop3d.ts) into buffers reused across steps. Tensors are [B, P, P, P, 1] (D = k, H = j,
 * W = i) and labels [Bl, P, P, P].
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng, RngState } from '@alhvr/core';
import { BatchSampler, type BatchSamplerState } from './batch-sampler.js';
import { cropInto, drawCrop, type CropOffsets, type PadValue } from './crop3d.js';
import type { Batch } from './batches.js';
import type { VolumeDataset } from './volume-dataset.js';

export interface VolumeBatchesOptions {
  dataset: VolumeDataset;
  patch: number;
  perBatch: { labeled: number; unlabeled: number };
  /** Quirk switches of the crop (defaults: released). */
  cropOffsets?: CropOffsets;
  padValue?: PadValue;
  draws: { sampler: number | BatchSamplerState; augment: Rng };
}

export class VolumeBatches {
  private readonly sampler: BatchSampler;
  private readonly images: Float32Array;
  private readonly labels: Int32Array;
  private readonly cube: number;

  constructor(private readonly opts: VolumeBatchesOptions) {
    const { dataset, patch, perBatch, draws } = opts;
    this.sampler = new BatchSampler(dataset.labeled.length, dataset.unlabeled.length, perBatch.labeled, perBatch.unlabeled, draws.sampler);
    this.cube = patch ** 3;
    this.images = new Float32Array((perBatch.labeled + perBatch.unlabeled) * this.cube);
    this.labels = new Int32Array(perBatch.labeled * this.cube);
  }

  async next(): Promise<Batch> {
    const { dataset, patch } = this.opts;
    const drawn = this.sampler.next();
    const ids = [...drawn.labeled.map((n) => dataset.labeled[n]), ...drawn.unlabeled.map((n) => dataset.unlabeled[n])];
    const labeledCount = drawn.labeled.length;
    for (let slot = 0; slot < ids.length; slot++) {
      const isLabeled = slot < labeledCount;
      const volume = await dataset.readCase(ids[slot], isLabeled);
      const choice = drawCrop(this.opts.draws.augment, volume.dims, patch, this.opts.cropOffsets);
      const pad = this.opts.padValue === 'min' ? volume.image.reduce((m, v) => (v < m ? v : m), Infinity) : 0;
      // Labels land in their own buffer at the same slot offset (labelled slots come first).
      cropInto(volume, patch, choice, this.images, isLabeled ? this.labels : undefined, slot * this.cube, pad);
    }
    return {
      images: tf.tensor5d(this.images, [ids.length, patch, patch, patch, 1]),
      labels: tf.tensor4d(this.labels, [labeledCount, patch, patch, patch], 'int32'),
      labeledCount,
    };
  }

  state(): { sampler: BatchSamplerState; augment: RngState } {
    return { sampler: this.sampler.state(), augment: this.opts.draws.augment.state() };
  }
}
