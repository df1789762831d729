/**
 * The released 3D augmentation (BraTS loader: RandomRotFlip then RandomCrop) as one pass from
 * the volume into the patch buffers: rot90 by k ∈ {0..3} in the i–j plane, a flip of i or j,
 * then a random patch³ crop; a volume with a side ≤ patch is first zero-padded on every axis by
 * max(⌊(P − s)/2⌋ + 3, 0) each side, and offsets are uniform in [0, S − P − 1] (the released
 * exclusive upper bound: the last offset is never taken). Layout: i fastest, then j, then k.
 * Quirk switches (3D page §6): `cropOffsets: 'inclusive'` allows the last offset, `padValue: 'min'`
 * pads with the volume's minimum (its background) instead of 0. `cropAugment: 'none'` skips the
 * turn and the flip (no draws for them either): they mirror left and right, which is harmless for
 * the released brain tumours but leaves a small left-sided organ (spleen) looking like the edge of
 * a right-sided one (liver) in abdominal CT.
 */
import type { Rng } from '@alhvr/core';

export type Dims3 = [number, number, number];

export type CropOffsets = 'released' | 'inclusive';
export type PadValue = 'zero' | 'min';
export type CropAugment = 'rot90-flip' | 'none';

export interface CropChoice {
  /** Quarter turns in the i–j plane (numpy rot90 on array axes 0–1). */
  quarterTurns: 0 | 1 | 2 | 3;
  /** Axis flipped after the turn (0 = i, 1 = j), or none (`cropAugment: 'none'`). */
  flipAxis: 0 | 1 | 'none';
  /** Crop start on each axis of the turned, flipped and padded volume. */
  offsets: Dims3;
  /** Zero padding before the data on each axis (the same after it). */
  pad: Dims3;
}

/** Sides of the volume after `quarterTurns` (odd turns swap i and j). */
export function turnedDims(dims: Dims3, quarterTurns: number): Dims3 {
  return quarterTurns % 2 === 1 ? [dims[1], dims[0], dims[2]] : [...dims];
}

/** The released padding of every axis when any side is ≤ the patch. */
export function cropPadding(dims: Dims3, patch: number): Dims3 {
  if (!dims.some((s) => s <= patch)) return [0, 0, 0];
  return dims.map((s) => Math.max(Math.floor((patch - s) / 2) + 3, 0)) as Dims3;
}

/** Turn and flip: drawn in that order from the stream (released), or neither without a draw. */
function drawTurnFlip(rng: Rng, augment: CropAugment): Pick<CropChoice, 'quarterTurns' | 'flipAxis'> {
  if (augment === 'none') return { quarterTurns: 0, flipAxis: 'none' };
  const quarterTurns = rng.int(0, 3) as CropChoice['quarterTurns'];
  const flipAxis = rng.int(0, 1) as 0 | 1;
  return { quarterTurns, flipAxis };
}

/** Draw one augmentation: turn, flip, then crop offsets (in that order from the stream). */
export function drawCrop(rng: Rng, dims: Dims3, patch: number, offsetsRule: CropOffsets = 'released', augment: CropAugment = 'rot90-flip'): CropChoice {
  const { quarterTurns, flipAxis } = drawTurnFlip(rng, augment);
  const turned = turnedDims(dims, quarterTurns);
  const pad = cropPadding(turned, patch);
  // Released: randint(0, S − P), exclusive, so S = P (possible only after padding) would fail; max 0 keeps it valid.
  const last = (s: number) => (offsetsRule === 'inclusive' ? s - patch : Math.max(s - patch - 1, 0));
  const offsets = turned.map((s, a) => rng.int(0, last(s + 2 * pad[a]))) as Dims3;
  return { quarterTurns, flipAxis, offsets, pad };
}

/**
 * Where source voxel (i, j, k) lands in the turned, flipped and padded volume of `c` (the inverse
 * of planeSources' mapping).
 */
export function turnedPosition(dims: Dims3, voxel: Dims3, c: Pick<CropChoice, 'quarterTurns' | 'flipAxis' | 'pad'>): Dims3 {
  let [a, b] = voxel;
  // One turn at a time: rot90(m)[N1 − 1 − q, p] = m[p, q], N1 the axis-1 side before the turn.
  for (let t = 0; t < c.quarterTurns; t++) {
    const axis1 = t % 2 === 0 ? dims[1] : dims[0];
    [a, b] = [axis1 - 1 - b, a];
  }
  const turned = turnedDims(dims, c.quarterTurns);
  if (c.flipAxis === 0) a = turned[0] - 1 - a;
  else if (c.flipAxis === 1) b = turned[1] - 1 - b;
  return [a + c.pad[0], b + c.pad[1], voxel[2] + c.pad[2]];
}

/**
 * nnU-Net's forced-foreground crop: the same turn and flip draws as drawCrop, then offsets that
 * centre the patch on `voxel` (a foreground voxel of the source), moved inward where the centred
 * patch would leave the padded volume, so the voxel is always inside the patch.
 */
export function drawCropAround(rng: Rng, dims: Dims3, patch: number, voxel: Dims3, offsetsRule: CropOffsets = 'released', augment: CropAugment = 'rot90-flip'): CropChoice {
  const { quarterTurns, flipAxis } = drawTurnFlip(rng, augment);
  const turned = turnedDims(dims, quarterTurns);
  const pad = cropPadding(turned, patch);
  const at = turnedPosition(dims, voxel, { quarterTurns, flipAxis, pad });
  const half = Math.floor(patch / 2);
  // The released rule's last offset is never drawn; 'inclusive' allows it, as for random crops.
  const last = (s: number) => (offsetsRule === 'inclusive' ? s - patch : Math.max(s - patch - 1, 0));
  const offsets = at.map((p, a) => {
    const hi = last(turned[a] + 2 * pad[a]);
    // The released last offset may not cover the volume's final voxel; then the inclusive one does.
    const o = Math.min(Math.max(p - half, 0), hi);
    return p >= o + patch ? p - patch + 1 : o;
  }) as Dims3;
  return { quarterTurns, flipAxis, offsets, pad };
}

/**
 * For each voxel of the patch's i–j plane, the source in-plane offset (x + X·y), or −1 where the
 * patch reads padding.
 */
function planeSources(dims: Dims3, patch: number, c: CropChoice): Int32Array {
  const [nx, ny] = dims;
  const turned = turnedDims(dims, c.quarterTurns);
  const map = new Int32Array(patch * patch);
  for (let y = 0; y < patch; y++) {
    for (let x = 0; x < patch; x++) {
      let a = x + c.offsets[0] - c.pad[0];
      let b = y + c.offsets[1] - c.pad[1];
      if (a < 0 || b < 0 || a >= turned[0] || b >= turned[1]) {
        map[x + patch * y] = -1;
        continue;
      }
      if (c.flipAxis === 0) a = turned[0] - 1 - a;
      else if (c.flipAxis === 1) b = turned[1] - 1 - b;
      // Undo the turns one at a time: rot90(m)[a, b] = m[b, N1 − 1 − a], N1 the earlier axis-1 side.
      for (let t = c.quarterTurns; t > 0; t--) {
        const earlierAxis1 = (t - 1) % 2 === 0 ? ny : nx;
        [a, b] = [b, earlierAxis1 - 1 - a];
      }
      map[x + patch * y] = a + nx * b;
    }
  }
  return map;
}

/**
 * Write the augmented patch of `image` (and `label`) into `outImage`/`outLabel` at `outOffset`
 * (voxels); padding reads 0 in both.
 */
export function cropInto(
  source: { dims: Dims3; image: ArrayLike<number>; label?: ArrayLike<number> },
  patch: number,
  choice: CropChoice,
  outImage: Float32Array,
  outLabel: Int32Array | undefined,
  outOffset: number,
  padValue = 0,
): void {
  const { dims, image, label } = source;
  const plane = planeSources(dims, patch, choice);
  const sliceVoxels = dims[0] * dims[1];
  const pp = patch * patch;
  for (let z = 0; z < patch; z++) {
    const k = z + choice.offsets[2] - choice.pad[2];
    const dst = outOffset + z * pp;
    if (k < 0 || k >= dims[2]) {
      outImage.fill(padValue, dst, dst + pp);
      outLabel?.fill(0, dst, dst + pp);
      continue;
    }
    const base = k * sliceVoxels;
    for (let p = 0; p < pp; p++) {
      const s = plane[p];
      outImage[dst + p] = s < 0 ? padValue : image[base + s];
      if (outLabel) outLabel[dst + p] = s < 0 || !label ? 0 : label[base + s];
    }
  }
}
