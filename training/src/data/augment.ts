import { ALHVR_RECIPE_PREPROCESSING, PlaneResizer, type Preprocessing, type Rng } from '@alhvr/core';

/** One 2D training slice; x (width) fastest. `label` is absent for unlabeled slices. */
export interface Slice {
  width: number;
  height: number;
  image: Float32Array;
  label?: Uint8Array;
}

/** What the augmentation did to one slice, for logging and tests. */
export type AugmentChoice = { kind: 'rot-flip'; k: number; flipAxis: 0 | 1 } | { kind: 'rotate'; degrees: number } | { kind: 'none' };

/** The ALHVR/SSL4MIS recipe: p=.5 rot90·k + flip, else p=.5 a small rotation; no intensity change. */
export function drawAugmentation(rng: Rng, maxDegrees = 20): AugmentChoice {
  if (rng.next() > 0.5) return { kind: 'rot-flip', k: rng.int(0, 3), flipAxis: rng.int(0, 1) as 0 | 1 };
  if (rng.next() > 0.5) return { kind: 'rotate', degrees: rng.int(-maxDegrees, maxDegrees) };
  return { kind: 'none' };
}

/**
 * rot90 by k quarter turns (numpy's np.rot90 on a [row, col] array, rows = y), then a flip:
 * axis 0 flips rows (y), axis 1 flips columns (x). Writes into `out`, returns the new width/height.
 */
export function rotFlip<T extends Float32Array | Uint8Array>(src: T, w: number, h: number, k: number, flipAxis: 0 | 1, out: T): [number, number] {
  const quarter = ((k % 4) + 4) % 4;
  const ow = quarter % 2 === 0 ? w : h;
  const oh = quarter % 2 === 0 ? h : w;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      // Undo the flip, then the counter-clockwise rotation, to find the source pixel.
      const fx = flipAxis === 1 ? ow - 1 - x : x;
      const fy = flipAxis === 0 ? oh - 1 - y : y;
      let sx: number;
      let sy: number;
      if (quarter === 0) [sx, sy] = [fx, fy];
      else if (quarter === 1) [sx, sy] = [w - 1 - fy, fx];
      else if (quarter === 2) [sx, sy] = [w - 1 - fx, h - 1 - fy];
      else [sx, sy] = [fy, h - 1 - fx];
      out[y * ow + x] = src[sy * w + sx];
    }
  }
  return [ow, oh];
}

/**
 * Rotation about the slice centre, same size, nearest neighbour, zeros outside — the behaviour
 * of scipy.ndimage.rotate(order=0, reshape=False) that the recipe uses for images and labels.
 */
export function rotateNearest<T extends Float32Array | Uint8Array>(src: T, w: number, h: number, degrees: number, out: T): void {
  const t = (degrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const cx = (w - 1) / 2;
  const cy = (h - 1) / 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const sx = Math.round(cos * dx + sin * dy + cx);
      const sy = Math.round(-sin * dx + cos * dy + cy);
      out[y * w + x] = sx >= 0 && sx < w && sy >= 0 && sy < h ? src[sy * w + sx] : 0;
    }
  }
}

/**
 * Applies the recipe's augmentation and the final resize to the patch size (the preprocessing's
 * image and label rules; the recipe's are scipy.ndimage.zoom(order=0) for both), into buffers
 * it owns and reuses (one augmenter per batch slot keeps the hot loop allocation-free).
 */
export class SliceAugmenter {
  private readonly scratchImage: Float32Array;
  private readonly scratchLabel: Uint8Array;
  private readonly resizers = new Map<string, { image: PlaneResizer; label: PlaneResizer }>();
  readonly image: Float32Array;
  readonly label: Uint8Array;

  constructor(
    readonly patch: number,
    maxSliceVoxels: number,
    private readonly resize: Pick<Preprocessing['resize'], 'image' | 'label'> = ALHVR_RECIPE_PREPROCESSING.resize,
  ) {
    this.scratchImage = new Float32Array(maxSliceVoxels);
    this.scratchLabel = new Uint8Array(maxSliceVoxels);
    this.image = new Float32Array(patch * patch);
    this.label = new Uint8Array(patch * patch);
  }

  /** Augment (when `choice` is not 'none') and resize `slice`; results land in `this.image`/`this.label`. */
  apply(slice: Slice, choice: AugmentChoice): void {
    if (slice.width * slice.height > this.scratchImage.length) throw new Error(`slice ${slice.width}×${slice.height} exceeds the augmenter's buffer`);
    let w = slice.width;
    let h = slice.height;
    let image: Float32Array = slice.image;
    let label: Uint8Array | undefined = slice.label;
    if (choice.kind === 'rot-flip') {
      const si = this.scratchImage.subarray(0, w * h);
      [w, h] = rotFlip(slice.image, w, h, choice.k, choice.flipAxis, si);
      image = si;
      if (slice.label) {
        const sl = this.scratchLabel.subarray(0, w * h);
        rotFlip(slice.label, slice.width, slice.height, choice.k, choice.flipAxis, sl);
        label = sl;
      }
    } else if (choice.kind === 'rotate') {
      image = this.scratchImage.subarray(0, w * h);
      rotateNearest(slice.image, w, h, choice.degrees, image);
      if (slice.label) {
        label = this.scratchLabel.subarray(0, w * h);
        rotateNearest(slice.label, w, h, choice.degrees, label);
      }
    }
    const resizer = this.resizersFor(w, h);
    resizer.image.resize(image, 0, this.image, 0);
    if (label) resizer.label.resize(label, 0, this.label, 0);
    else this.label.fill(0);
  }

  private resizersFor(w: number, h: number): { image: PlaneResizer; label: PlaneResizer } {
    const key = `${w}x${h}`;
    let r = this.resizers.get(key);
    if (!r) {
      const image = new PlaneResizer(w, h, this.patch, this.patch, this.resize.image);
      const sameRule = JSON.stringify(this.resize.image) === JSON.stringify(this.resize.label);
      r = { image, label: sameRule ? image : new PlaneResizer(w, h, this.patch, this.patch, this.resize.label) };
      this.resizers.set(key, r);
    }
    return r;
  }
}
