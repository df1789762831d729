// preview.png as alhvr-segment writes it: inference composes the annotation layer (SVG), the plots'
// rasterizer draws it. Checks that the montage is embedded pixel for pixel, that the legend's
// swatches carry the palette colours, and that the picture follows the case id and the verdict.
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { REGION_COLORS, Volume, canonicalOrientation, scalingAffine, type ModelCard } from '@alhvr/core';
import { VERDICT_COLORS, renderPreview, type PreviewAnnotation } from '@alhvr/inference/node';
import { rasterizeSvgLayer } from './render.js';

const classes = [
  { value: 0, name: 'background', color: [0, 0, 0] },
  { value: 1, name: 'RV', color: [230, 25, 75] },
  { value: 2, name: 'Myo', color: [60, 180, 75] },
  { value: 3, name: 'LV', color: [0, 130, 200] },
] as const;
const card = { classes } as unknown as ModelCard;

// 32×32×12: a disc of each class on slices 3–7, regions 2 and 3 in its corners.
const dims: [number, number, number] = [32, 32, 12];
const image = new Volume({ data: Float32Array.from({ length: 32 * 32 * 12 }, (_, n) => (n * 37) % 101), dims, affine: scalingAffine([1, 1, 4]) });
const labelData = new Uint8Array(image.voxelCount);
const regionData = new Uint8Array(image.voxelCount).fill(1);
for (let k = 3; k <= 7; k++) {
  for (let j = 0; j < 32; j++) {
    for (let i = 0; i < 32; i++) {
      const n = i + 32 * (j + 32 * k);
      const r = Math.hypot(i - 16, j - 16);
      labelData[n] = r < 4 ? 3 : r < 7 ? 2 : r < 10 && i > 16 ? 1 : 0;
      if (r < 10 && i < 12) regionData[n] = j < 16 ? 2 : 3;
    }
  }
}
const label = image.withData(labelData) as Volume<Uint8Array>;
const region = image.withData(regionData) as Volume<Uint8Array>;
const orientation = canonicalOrientation(image.affine, 'largest-spacing');
const render = (annotation?: PreviewAnnotation) => PNG.sync.read(Buffer.from(renderPreview(image, label, region, card, orientation, { tileSize: 64, maxSlices: 4, annotation, rasterize: rasterizeSvgLayer })));
const pixel = (png: PNG, x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3));
const differing = (a: PNG, b: PNG, rows: [number, number]) => {
  let n = 0;
  for (let p = rows[0] * a.width * 4; p < rows[1] * a.width * 4; p++) if (a.data[p] !== b.data[p]) n++;
  return n;
};

/** preview.ts's layout: a 44-pixel header, the montage, then legend rows of 22 pixels with 190-pixel items. */
const HEADER = 44;

describe('annotated preview.png', () => {
  const accepted = render({ caseId: 'patient-001', verdict: 'accept', reasons: [], predictedDice: 0.91 });
  const plain = PNG.sync.read(Buffer.from(renderPreview(image, label, region, card, orientation, { tileSize: 64, maxSlices: 4 })));

  it('embeds the montage pixel for pixel below the header', () => {
    expect(accepted.width).toBe(Math.max(plain.width, 380));
    let wrong = 0;
    for (let y = 20; y < plain.height - 2; y += 3) for (let x = 0; x < plain.width; x += 3) {
      // Tile captions sit in each tile's top 16 rows; compare below them.
      if ((y - 2) % 66 < 18) continue;
      if (pixel(accepted, x, HEADER + y).join() !== pixel(plain, x, y).join()) wrong++;
    }
    expect(wrong).toBe(0);
  });

  it('has a legend whose swatches carry the class and region palette colours', () => {
    const legend = [...classes.slice(1).map((c) => c.color), REGION_COLORS[2], REGION_COLORS[3]];
    const perRow = Math.floor((accepted.width - 8) / 190);
    const legendTop = HEADER + plain.height + 4;
    expect(accepted.height).toBe(legendTop + Math.ceil(legend.length / perRow) * 22 + 6);
    legend.forEach((color, n) => {
      const x = 6 + (n % perRow) * 190 + 7;
      const y = legendTop + Math.floor(n / perRow) * 22 + 9;
      expect(pixel(accepted, x, y), `swatch ${n}`).toEqual([...color]);
    });
  });

  it('changes with the case id and the verdict, whose badge is drawn in the verdict colour', () => {
    const other = render({ caseId: 'patient-002', verdict: 'accept', reasons: [], predictedDice: 0.91 });
    expect(differing(accepted, other, [0, 22])).toBeGreaterThan(20);
    expect(differing(accepted, other, [22, accepted.height])).toBe(0);
    const rejected = render({ caseId: 'patient-001', verdict: 'reject', reasons: ["out of the model's domain: DICOM Modality CT is not the model's MR"], predictedDice: 0.91 });
    expect(differing(accepted, rejected, [22, HEADER])).toBeGreaterThan(20);
    expect(pixel(accepted, 9, 27)).toEqual([...VERDICT_COLORS.accept]);
    expect(pixel(rejected, 9, 27)).toEqual([...VERDICT_COLORS.reject]);
  });

  it('shows an empty slice, framed, when the signals say something was missed', () => {
    const missed = render({ caseId: 'patient-001', verdict: 'review', reasons: ['predicted Dice 0.512 < 0.800'], predictedDice: 0.512 });
    // Same size (still four slices: three with foreground and the empty slice 8 past the abrupt end).
    expect([missed.width, missed.height]).toEqual([accepted.width, accepted.height]);
    // The dashed yellow frame runs along the last tile's left edge.
    const tiles = 4;
    const lastTileY = HEADER + 2 + Math.floor((tiles - 1) / 2) * 66;
    const lastTileX = 2 + ((tiles - 1) % 2) * 2 * 66;
    const yellow = Array.from({ length: 64 }, (_, d) => pixel(missed, lastTileX + 1, lastTileY + d)).filter((p) => p[0] > 200 && p[1] > 200 && p[2] < 80).length;
    expect(yellow).toBeGreaterThan(20);
    const frameless = Array.from({ length: 64 }, (_, d) => pixel(accepted, lastTileX + 1, lastTileY + d)).filter((p) => p[0] > 200 && p[1] > 200 && p[2] < 80).length;
    expect(frameless).toBe(0);
  });
});
