import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { Volume, canonicalOrientation, scalingAffine, type ModelCard } from '@alhvr/core';
import { renderPreview } from './preview.js';

const RV: [number, number, number] = [230, 25, 75];
const card = { classes: [{ value: 0, name: 'background', color: [0, 0, 0] }, { value: 1, name: 'RV', color: RV }] } as unknown as ModelCard;

describe('renderPreview', () => {
  it('blends the class colour and the region colour over the windowed image of the foreground slice', () => {
    // Three 4×4 slices at intensities 0, 50, 100: the window is [0, 100], so slice 1 is grey 128.
    const dims: [number, number, number] = [4, 4, 3];
    const image = new Volume({ data: Float32Array.from({ length: 48 }, (_, n) => 50 * Math.floor(n / 16)), dims, affine: scalingAffine([1, 1, 3]) });
    const inSlice1 = (n: number) => (Math.floor(n / 16) === 1 ? 1 : 0);
    const label = image.withData(Uint8Array.from({ length: 48 }, (_, n) => inSlice1(n)));
    // Region 2 (one student confident) on slice 1, region 1 elsewhere.
    const region = image.withData(Uint8Array.from({ length: 48 }, (_, n) => 1 + inSlice1(n)));
    const orientation = canonicalOrientation(image.affine, 'largest-spacing');
    const png = PNG.sync.read(Buffer.from(renderPreview(image, label, region, card, orientation, { tileSize: 40 })));
    // One foreground slice: one tile of 40×40 per panel, 2-pixel gaps.
    expect([png.width, png.height]).toEqual([2 * (40 + 2) + 2, 40 + 2 * 2]);
    const pixel = (x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 4));
    const blend = (c: [number, number, number]) => [...c.map((v) => Math.round(0.55 * 128 + 0.45 * v)), 255];
    for (const [x, y] of [[2, 2], [41, 41], [20, 30]]) {
      expect(pixel(x, y)).toEqual(blend(RV));
      expect(pixel(x + 42, y)).toEqual(blend([255, 170, 0]));
    }
    expect(pixel(0, 0)).toEqual([0, 0, 0, 255]);
  });

  it('shows the plain windowed image where there is no label, and a single panel without regions', () => {
    const dims: [number, number, number] = [4, 4, 3];
    const image = new Volume({ data: Float32Array.from({ length: 48 }, (_, n) => 50 * Math.floor(n / 16)), dims, affine: scalingAffine([1, 1, 3]) });
    const label = image.withData(new Uint8Array(48));
    const orientation = canonicalOrientation(image.affine, 'largest-spacing');
    const png = PNG.sync.read(Buffer.from(renderPreview(image, label, undefined, card, orientation, { tileSize: 40 })));
    // No foreground: all three slices, four tiles per row at most.
    expect([png.width, png.height]).toEqual([3 * (40 + 2) + 2, 40 + 2 * 2]);
    const grey = (x: number) => Array.from(png.data.subarray((10 * png.width + x) * 4, (10 * png.width + x) * 4 + 4));
    expect(grey(10)).toEqual([0, 0, 0, 255]);
    expect(grey(10 + 42)).toEqual([128, 128, 128, 255]);
    expect(grey(10 + 84)).toEqual([255, 255, 255, 255]);
  });
});
