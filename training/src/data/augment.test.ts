import { describe, expect, it } from 'vitest';
import { Rng } from '@alhvr/core';
import { drawAugmentation, rotFlip, rotateNearest, SliceAugmenter } from './augment.js';

// 3 wide, 2 high:  row0 = 1 2 3, row1 = 4 5 6 (numpy array [[1,2,3],[4,5,6]]).
const src = Float32Array.from([1, 2, 3, 4, 5, 6]);

describe('rotFlip', () => {
  it('matches numpy rot90 (counter-clockwise) for k = 1, 2, 3 with flips', () => {
    const out = new Float32Array(6);
    // np.flip(np.rot90(a, 1), axis=1) : rot90 → [[3,6],[2,5],[1,4]]; flip cols → [[6,3],[5,2],[4,1]]
    expect(rotFlip(src, 3, 2, 1, 1, out)).toEqual([2, 3]);
    expect(Array.from(out)).toEqual([6, 3, 5, 2, 4, 1]);
    // np.flip(np.rot90(a, 2), axis=0) : rot180 → [[6,5,4],[3,2,1]]; flip rows → [[3,2,1],[6,5,4]]
    expect(rotFlip(src, 3, 2, 2, 0, out)).toEqual([3, 2]);
    expect(Array.from(out)).toEqual([3, 2, 1, 6, 5, 4]);
    // np.flip(np.rot90(a, 3), axis=0) : rot270 → [[4,1],[5,2],[6,3]]; flip rows → [[6,3],[5,2],[4,1]]
    expect(rotFlip(src, 3, 2, 3, 0, out)).toEqual([2, 3]);
    expect(Array.from(out)).toEqual([6, 3, 5, 2, 4, 1]);
  });
});

describe('rotateNearest', () => {
  it('turns a square by exactly a quarter for 90°, keeping its size', () => {
    const sq = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const a = new Float32Array(9);
    rotateNearest(sq, 3, 3, 90, a);
    const counterClockwise = [3, 6, 9, 2, 5, 8, 1, 4, 7];
    const clockwise = [7, 4, 1, 8, 5, 2, 9, 6, 3];
    expect([counterClockwise, clockwise]).toContainEqual(Array.from(a));
  });

  it('fills corners that rotate in from outside with 0', () => {
    const ones = new Float32Array(64 * 64).fill(1);
    const out = new Float32Array(64 * 64);
    rotateNearest(ones, 64, 64, 20, out);
    expect(out[0]).toBe(0);
    expect(out[32 * 64 + 32]).toBe(1);
  });
});

describe('SliceAugmenter', () => {
  it('keeps image and label aligned under every augmentation and resizes to the patch', () => {
    const w = 40;
    const h = 30;
    const image = new Float32Array(w * h);
    const label = new Uint8Array(w * h);
    // Label = 1 exactly where the image is bright: a rectangle off-centre.
    for (let y = 5; y < 15; y++) for (let x = 8; x < 30; x++) {
      image[y * w + x] = 1;
      label[y * w + x] = 1;
    }
    const aug = new SliceAugmenter(32, w * h);
    const rng = new Rng(5);
    const kinds = new Set<string>();
    for (let n = 0; n < 40; n++) {
      const choice = drawAugmentation(rng);
      kinds.add(choice.kind);
      aug.apply({ width: w, height: h, image, label }, choice);
      expect(aug.image.length).toBe(32 * 32);
      for (let p = 0; p < 32 * 32; p++) expect(aug.label[p]).toBe(aug.image[p]);
    }
    expect(kinds).toEqual(new Set(['rot-flip', 'rotate', 'none']));
  });

  it('draws the recipe probabilities: 1/2 rot-flip, 1/4 rotate, 1/4 none', () => {
    const rng = new Rng(9);
    const counts = { 'rot-flip': 0, rotate: 0, none: 0 };
    for (let n = 0; n < 8000; n++) counts[drawAugmentation(rng).kind]++;
    expect(counts['rot-flip'] / 8000).toBeCloseTo(0.5, 1);
    expect(counts.rotate / 8000).toBeCloseTo(0.25, 1);
    expect(counts.none / 8000).toBeCloseTo(0.25, 1);
  });
});
