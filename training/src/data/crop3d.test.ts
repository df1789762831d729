import { describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@alhvr/core';
import { cropInto, drawCrop, drawCropAround, turnedPosition, type CropChoice, type Dims3 } from './crop3d.js';
import { VolumeBatches } from './volume-batches.js';
import type { VolumeDataset } from './volume-dataset.js';

// The 3D crops (issue 17): labels stay on their image through turn, flip, padding and crop, and
// the forced-foreground crop (foregroundOversample) always holds the voxel it was centred on.

const voxelsOf = (dims: Dims3) => dims[0] * dims[1] * dims[2];
/** Image value = source linear index, so a crop says where each of its voxels came from. */
const indexImage = (dims: Dims3) => Float32Array.from({ length: voxelsOf(dims) }, (_, n) => n);
/** Where an unturned, unflipped crop holds source voxel `v`. */
const turnedIndexInPatch = (c: CropChoice, v: Dims3, patch: number) => {
  const [x, y, z] = v.map((p, a) => p + c.pad[a] - c.offsets[a]);
  return x + patch * (y + patch * z);
};

describe('3D crops', () => {
  it('keeps every label voxel on its image voxel under every turn and flip', () => {
    const dims: Dims3 = [11, 7, 5];
    const image = indexImage(dims);
    const label = Uint8Array.from(image, (n) => (n * 7) % 5);
    const patch = 8;
    const outImage = new Float32Array(patch ** 3);
    const outLabel = new Int32Array(patch ** 3);
    const rng = new Rng(3);
    for (let n = 0; n < 64; n++) {
      const choice = drawCrop(rng, dims, patch);
      cropInto({ dims, image, label }, patch, choice, outImage, outLabel, 0, -1);
      let inside = 0;
      let misplaced = 0;
      for (let v = 0; v < outImage.length; v++) {
        if (outImage[v] >= 0) inside++;
        if (outLabel[v] !== (outImage[v] < 0 ? 0 : (outImage[v] * 7) % 5)) misplaced++;
      }
      expect(inside).toBeGreaterThan(0);
      expect(misplaced).toBe(0);
    }
  });

  it('turnedPosition is the inverse of the crop mapping', () => {
    for (const dims of [[9, 6, 4], [20, 13, 18]] as Dims3[]) {
      const image = indexImage(dims);
      const patch = 16;
      const out = new Float32Array(patch ** 3);
      const rng = new Rng(11);
      for (let turns = 0; turns < 4; turns++) {
        for (const flipAxis of [0, 1] as const) {
          for (let t = 0; t < 20; t++) {
            const voxel: Dims3 = [rng.int(0, dims[0] - 1), rng.int(0, dims[1] - 1), rng.int(0, dims[2] - 1)];
            const choice: Omit<CropChoice, 'offsets'> = { quarterTurns: turns as CropChoice['quarterTurns'], flipAxis, pad: [0, 0, 0] };
            const pad = dims.some((s) => s <= patch) ? ([5, 5, 5] as Dims3) : choice.pad;
            const at = turnedPosition(dims, voxel, { ...choice, pad });
            // Offsets that put the voxel at patch position (1, 2, 3).
            const offsets = [at[0] - 1, at[1] - 2, at[2] - 3] as Dims3;
            if (offsets.some((o) => o < 0)) continue;
            cropInto({ dims, image }, patch, { ...choice, pad, offsets }, out, undefined, 0, -1);
            expect(out[1 + patch * (2 + patch * 3)]).toBe(voxel[0] + dims[0] * (voxel[1] + dims[1] * voxel[2]));
          }
        }
      }
    }
  });

  it('drawCropAround always holds its voxel (padded and unpadded volumes, both offset rules)', () => {
    const rng = new Rng(5);
    for (const [dims, patch] of [[[40, 33, 21], 16], [[12, 30, 9], 16], [[17, 17, 17], 16]] as [Dims3, number][]) {
      const image = indexImage(dims);
      const out = new Float32Array(patch ** 3);
      for (const rule of ['released', 'inclusive'] as const) {
        for (let t = 0; t < 200; t++) {
          // Corners and edges are where clamping matters; draw them often.
          const edge = (s: number) => [0, s - 1, rng.int(0, s - 1)][rng.int(0, 2)];
          const voxel: Dims3 = [edge(dims[0]), edge(dims[1]), edge(dims[2])];
          const choice = drawCropAround(rng, dims, patch, voxel, rule);
          const padded = dims.map((s, a) => (choice.quarterTurns % 2 === 1 && a < 2 ? dims[1 - a] : s) + 2 * choice.pad[a]);
          choice.offsets.forEach((o, a) => {
            expect(o).toBeGreaterThanOrEqual(0);
            expect(o + patch).toBeLessThanOrEqual(padded[a]);
          });
          cropInto({ dims, image }, patch, choice, out, undefined, 0, -1);
          expect(out.includes(voxel[0] + dims[0] * (voxel[1] + dims[1] * voxel[2]))).toBe(true);
        }
      }
    }
  });

  it("cropAugment 'none' gives plain sub-blocks of the volume, forced or not, and draws no turn or flip", () => {
    const dims: Dims3 = [20, 14, 9];
    const image = indexImage(dims);
    const patch = 8;
    const out = new Float32Array(patch ** 3);
    const rng = new Rng(5);
    for (let n = 0; n < 40; n++) {
      const voxel: Dims3 = [rng.int(0, dims[0] - 1), rng.int(0, dims[1] - 1), rng.int(0, dims[2] - 1)];
      const choice = n % 2 ? drawCrop(rng, dims, patch, 'released', 'none') : drawCropAround(rng, dims, patch, voxel, 'released', 'none');
      expect(choice.quarterTurns).toBe(0);
      expect(choice.flipAxis).toBe('none');
      cropInto({ dims, image }, patch, choice, out, undefined, 0, -1);
      const [ox, oy, oz] = choice.offsets;
      let wrong = 0;
      for (let z = 0; z < patch; z++) for (let y = 0; y < patch; y++) for (let x = 0; x < patch; x++) {
        const [i, j, k] = [x + ox - choice.pad[0], y + oy - choice.pad[1], z + oz - choice.pad[2]];
        const inside = i >= 0 && j >= 0 && k >= 0 && i < dims[0] && j < dims[1] && k < dims[2];
        if (out[x + patch * (y + patch * z)] !== (inside ? i + dims[0] * (j + dims[1] * k) : -1)) wrong++;
      }
      expect(wrong).toBe(0);
      if (n % 2 === 0) expect(out[turnedIndexInPatch(choice, voxel, patch)]).toBe(voxel[0] + dims[0] * (voxel[1] + dims[1] * voxel[2]));
    }
    // The released rule draws turn and flip first: the same stream gives other offsets.
    const a = drawCrop(new Rng(8), dims, patch, 'released', 'none');
    const b = drawCrop(new Rng(8), dims, patch, 'released', 'rot90-flip');
    expect(b.flipAxis).not.toBe('none');
    expect(a.offsets).not.toEqual(b.offsets);
  });

  it('foregroundOversample forces the last labelled crops onto foreground; 0 leaves the crops as released', async () => {
    await tf.setBackend('cpu');
    // 48³ volumes with one small organ (a 3³ block) and one larger (6³): uniform 16³ crops mostly miss both.
    const dims: Dims3 = [48, 48, 48];
    const cases = [0, 1, 2].map((c) => {
      const label = new Uint8Array(voxelsOf(dims));
      const at = (i: number, j: number, k: number) => i + 48 * (j + 48 * k);
      for (let k = 0; k < 3; k++) for (let j = 0; j < 3; j++) for (let i = 0; i < 3; i++) label[at(5 + i + c, 40 + j, 30 + k)] = 1;
      for (let k = 0; k < 6; k++) for (let j = 0; j < 6; j++) for (let i = 0; i < 6; i++) label[at(30 + i, 8 + j + c, 4 + k)] = 2;
      return { dims, image: Float32Array.from(label), label };
    });
    const dataset = {
      labeled: ['a', 'b', 'c'],
      unlabeled: ['u'],
      readCase: async (id: string, withLabel: boolean) => {
        const v = id === 'u' ? cases[0] : cases['abc'.indexOf(id)];
        return { dims: v.dims, image: v.image, label: withLabel ? v.label : undefined };
      },
    } as unknown as VolumeDataset;
    const run = async (foregroundOversample: number | undefined) => {
      const batches = new VolumeBatches({ dataset, patch: 16, perBatch: { labeled: 3, unlabeled: 1 }, foregroundOversample, draws: { sampler: 9, augment: new Rng(21) } });
      const perSlot: number[][] = [[], [], []];
      const classesSeen = [0, 0, 0];
      const all: number[] = [];
      for (let b = 0; b < 40; b++) {
        const batch = await batches.next();
        const images = batch.images.dataSync();
        const labels = batch.labels.dataSync();
        batch.images.dispose();
        batch.labels.dispose();
        const cube = 16 ** 3;
        for (let s = 0; s < 3; s++) {
          const crop = labels.subarray(s * cube, (s + 1) * cube);
          perSlot[s].push(crop.some((v) => v !== 0) ? 1 : 0);
          if (s === 2) for (const c of [1, 2]) if (crop.includes(c)) classesSeen[c]++;
          // The image (equal to its labels here) moved with them.
          let misplaced = 0;
          for (let v = 0; v < cube; v++) if (images[s * cube + v] !== crop[v]) misplaced++;
          expect(misplaced).toBe(0);
        }
        all.push(...Array.from({ length: 64 }, (_, v) => images[v * 256]));
      }
      const share = perSlot.map((hits) => hits.reduce((x, y) => x + y, 0) / hits.length);
      return { share, classesSeen, all };
    };
    const released = await run(undefined);
    const zero = await run(0);
    expect(zero.all).toEqual(released.all);
    // Uniform crops find foreground in a minority of draws, at every slot.
    for (const s of released.share) expect(s).toBeLessThan(0.7);
    // p = 0.33 of 3 labelled crops: round(3 · 0.67) = 2, so slot 2 alone is forced, every time.
    const forced = await run(0.33);
    expect(forced.share[2]).toBe(1);
    expect(forced.share[0]).toBeLessThan(0.7);
    // The class is drawn first, so the 27-voxel organ is centred on as often as the 216-voxel one.
    expect(forced.classesSeen[1]).toBeGreaterThan(10);
    expect(forced.classesSeen[2]).toBeGreaterThan(10);
  });
});
