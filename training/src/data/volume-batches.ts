/**
 * The 3D training batches: labelled crops first, then unlabeled ones, each case drawn by the
 * same two-stream sampler as 2D and augmented by the released rot90/flip + random crop
 * (crop3d.ts) into buffers reused across steps. With `foregroundOversample` p > 0 the last
 * round(Bl·p) labelled crops of each batch are centred on a foreground voxel (nnU-Net's rule: a
 * class drawn uniformly among those the case contains, then one of its voxels), so rare organs
 * reach the loss; p = 0 (released) draws every crop uniformly. Tensors are [B, P, P, P, 1] (D = k, H = j,
 * W = i) and labels [Bl, P, P, P].
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng, RngState } from '@alhvr/core';
import { BatchSampler, type BatchSamplerState } from './batch-sampler.js';
import { cropInto, drawCrop, drawCropAround, type CropAugment, type CropOffsets, type Dims3, type PadValue } from './crop3d.js';
import type { Batch } from './batches.js';
import type { VolumeDataset } from './volume-dataset.js';

export interface VolumeBatchesOptions {
  dataset: VolumeDataset;
  patch: number;
  perBatch: { labeled: number; unlabeled: number };
  /** Quirk switches of the crop (defaults: released). */
  cropOffsets?: CropOffsets;
  padValue?: PadValue;
  /** The released rot90/flip before each crop, or none (default: released). */
  cropAugment?: CropAugment;
  /** Fraction of the labelled crops forced to contain foreground (nnU-Net 0.33; released 0). */
  foregroundOversample?: number;
  draws: { sampler: number | BatchSamplerState; augment: Rng };
}

export class VolumeBatches {
  private readonly sampler: BatchSampler;
  private readonly images: Float32Array;
  private readonly labels: Int32Array;
  private readonly cube: number;
  /** Per labelled case, the linear indices of each foreground class it contains (built on first use). */
  private readonly foreground = new Map<string, Int32Array[]>();

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
      const forced = isLabeled && slot >= Math.round(labeledCount * (1 - (this.opts.foregroundOversample ?? 0)));
      const voxel = forced ? this.foregroundVoxel(ids[slot], volume.dims, volume.label!) : undefined;
      const choice = voxel
        ? drawCropAround(this.opts.draws.augment, volume.dims, patch, voxel, this.opts.cropOffsets, this.opts.cropAugment)
        : drawCrop(this.opts.draws.augment, volume.dims, patch, this.opts.cropOffsets, this.opts.cropAugment);
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

  /** A random foreground voxel of the case (class first, uniformly), or undefined if it has none. */
  private foregroundVoxel(id: string, dims: Dims3, label: ArrayLike<number>): Dims3 | undefined {
    let byClass = this.foreground.get(id);
    if (!byClass) {
      const counts = new Map<number, number>();
      for (let n = 0; n < label.length; n++) if (label[n] !== 0) counts.set(label[n], (counts.get(label[n]) ?? 0) + 1);
      const classes = [...counts.keys()].sort((x, y) => x - y);
      byClass = classes.map((c) => new Int32Array(counts.get(c)!));
      const filled = classes.map(() => 0);
      const slotOf = new Map(classes.map((c, n) => [c, n]));
      for (let n = 0; n < label.length; n++) {
        if (label[n] === 0) continue;
        const k = slotOf.get(label[n])!;
        byClass[k][filled[k]++] = n;
      }
      this.foreground.set(id, byClass);
    }
    if (byClass.length === 0) return undefined;
    const rng = this.opts.draws.augment;
    const voxels = byClass[rng.int(0, byClass.length - 1)];
    const n = voxels[rng.int(0, voxels.length - 1)];
    const plane = dims[0] * dims[1];
    return [n % dims[0], Math.floor((n % plane) / dims[0]), Math.floor(n / plane)];
  }

  state(): { sampler: BatchSamplerState; augment: RngState } {
    return { sampler: this.sampler.state(), augment: this.opts.draws.augment.state() };
  }
}
