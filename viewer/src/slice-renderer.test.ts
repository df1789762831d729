import { describe, expect, test } from 'vitest';
import { Volume, canonicalOrientation, type Mat4 } from '@alhvr/core';
import { REGION_COLORS, SliceRenderer, displayWindow } from './slice-renderer.js';

const CARD = {
  classes: [
    { value: 0, name: 'background', color: [10, 10, 10] as [number, number, number] },
    { value: 1, name: 'A', color: [200, 0, 0] as [number, number, number] },
    { value: 2, name: 'B', color: [0, 0, 200] as [number, number, number] },
  ],
};

function affine(sx: number): Mat4 {
  return [
    [sx, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 3, 0],
    [0, 0, 0, 1],
  ];
}

/** 3 × 2 × 2 volume, intensity = voxel index (0…11), label 1 at voxel (0, 0, 1), 2 at (2, 1, 1). */
function scene(sx = 1) {
  const image = new Volume({ data: Float32Array.from({ length: 12 }, (_, n) => n), dims: [3, 2, 2], affine: affine(sx) });
  const label = new Uint8Array(12);
  label[6] = 1;
  label[11] = 2;
  const region = new Uint8Array(12).fill(1);
  region[7] = 2;
  region[8] = 3;
  return { image, label: image.withData(label), region: image.withData(region) };
}

const rgb = (px: Uint8ClampedArray, x: number, y: number, w: number) => Array.from(px.subarray(4 * (y * w + x), 4 * (y * w + x) + 4));

describe('SliceRenderer', () => {
  test('draws patient right on the left and anterior up, grey by the window, labels blended at the opacity', () => {
    const { image, label, region } = scene();
    const r = new SliceRenderer(image, { label, region }, canonicalOrientation(image.affine), CARD, { window: [6, 11], opacity: 0.5 });
    expect([r.width, r.height, r.slices]).toEqual([3, 2, 2]);
    const px = r.render(1, 'label');
    // Voxel (i, j) appears at screen (2 − i, 1 − j). Grey of value v is (v − 6) · 51.
    expect(rgb(px, 2, 1, 3)).toEqual([100, 0, 0, 255]); // (0,0): value 6 → 0, label 1 → half of (200, 0, 0)
    expect(rgb(px, 1, 1, 3)).toEqual([51, 51, 51, 255]); // (1,0): value 7
    expect(rgb(px, 0, 0, 3)).toEqual([128, 128, 228, 255]); // (2,1): value 11 → 255, half-way to (0, 0, 200)
    expect(rgb(px, 2, 0, 3)).toEqual([153, 153, 153, 255]); // (0,1): value 9
  });

  test('region overlay paints regions 2 and 3 only; "none" paints nothing', () => {
    const { image, label, region } = scene();
    const r = new SliceRenderer(image, { label, region }, canonicalOrientation(image.affine), CARD, { window: [6, 11], opacity: 1 });
    const px = r.render(1, 'region');
    expect(rgb(px, 1, 1, 3)).toEqual([...REGION_COLORS[2], 255]);
    expect(rgb(px, 0, 1, 3)).toEqual([...REGION_COLORS[3], 255]);
    expect(rgb(px, 2, 1, 3)).toEqual([0, 0, 0, 255]); // region 1 at (0,0): plain grey
    const plain = r.render(1, 'none');
    expect(rgb(plain, 2, 1, 3)).toEqual([0, 0, 0, 255]);
  });

  test('an x-flipped affine puts the same patient side on the same screen side', () => {
    const a = scene(1);
    const b = scene(-1);
    const ra = new SliceRenderer(a.image, a, canonicalOrientation(a.image.affine), CARD, { window: [0, 11] });
    const rb = new SliceRenderer(b.image, b, canonicalOrientation(b.image.affine), CARD, { window: [0, 11] });
    const pa = ra.render(0, 'none');
    const pb = rb.render(0, 'none');
    for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) expect(rgb(pb, x, y, 3)).toEqual(rgb(pa, 2 - x, y, 3));
  });

  test('refuses slices outside the volume and wrongly sized outputs', () => {
    const { image, label } = scene();
    const r = new SliceRenderer(image, { label }, canonicalOrientation(image.affine), CARD);
    expect(() => r.render(2, 'label')).toThrow(/outside 0…1/);
    expect(() => r.render(0, 'label', new Uint8ClampedArray(5))).toThrow(/needs 24/);
    const small = new Volume({ data: new Uint8Array(6), dims: [3, 2, 1], affine: affine(1) });
    expect(() => new SliceRenderer(image, { label: small }, canonicalOrientation(image.affine), CARD)).toThrow(/6 voxels, the image 12/);
  });
});

describe('displayWindow', () => {
  test('ignores a few extreme voxels', () => {
    const data = Float32Array.from({ length: 1000 }, (_, n) => n % 100);
    data[0] = 1e6;
    const [lo, hi] = displayWindow(new Volume({ data, dims: [10, 10, 10], affine: affine(1) }));
    expect(lo).toBe(0);
    expect(hi).toBe(99);
  });

  test('a constant image gets a non-empty window', () => {
    const [lo, hi] = displayWindow(new Volume({ data: new Float32Array(8).fill(5), dims: [2, 2, 2], affine: affine(1) }));
    expect(hi).toBeGreaterThan(lo);
  });
});
