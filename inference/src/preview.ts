import { PNG } from 'pngjs';
import { REGION_COLORS, displayWindow, type ModelCard, type Orientation, type RgbColor, type Volume, type VoxelArray } from '@alhvr/core';
import { canonicalGrid, gatherPlane } from './canonical-grid.js';

export interface PreviewOptions {
  /** Most slices shown. Default 8. */
  maxSlices?: number;
  /** Longest tile side in pixels. Default 192. */
  tileSize?: number;
}

const GAP = 2;

/** Evenly spaced slice indices over the slices containing foreground (all slices when there is none). */
export function previewSlices(label: Volume<Uint8Array>, orientation: Orientation, maxSlices: number): number[] {
  const grid = canonicalGrid(label.dims, orientation);
  const [w, h, k] = grid.dims;
  const plane = new Uint8Array(w * h);
  let first = -1;
  let last = -1;
  for (let s = 0; s < k; s++) {
    gatherPlane(grid, label.data, s, plane);
    if (plane.some((v) => v !== 0)) {
      if (first < 0) first = s;
      last = s;
    }
  }
  if (first < 0) [first, last] = [0, k - 1];
  const count = Math.min(maxSlices, last - first + 1);
  const out: number[] = [];
  for (let n = 0; n < count; n++) out.push(count === 1 ? first : Math.round(first + ((last - first) * n) / (count - 1)));
  return [...new Set(out)];
}

/**
 * A PNG montage: for each chosen slice (canonical orientation, patient right on the left of
 * the screen), the image with the mask in class colours next to the image with regions 2
 * (orange, one student confident) and 3 (magenta, neither) highlighted, in core's REGION_COLORS
 * and display window (the viewer's too).
 */
export function renderPreview(
  image: Volume<VoxelArray>,
  label: Volume<Uint8Array>,
  region: Volume<Uint8Array> | undefined,
  card: ModelCard,
  orientation: Orientation,
  opts: PreviewOptions = {},
): Uint8Array {
  const grid = canonicalGrid(image.dims, orientation);
  const [w, h] = grid.dims;
  const slices = previewSlices(label, orientation, opts.maxSlices ?? 8);
  const scale = (opts.tileSize ?? 192) / Math.max(w, h);
  const tw = Math.max(1, Math.round(w * scale));
  const th = Math.max(1, Math.round(h * scale));
  const panels = region ? 2 : 1;
  const perRow = Math.min(slices.length, region ? 2 : 4);
  const rows = Math.ceil(slices.length / perRow);
  const width = perRow * panels * (tw + GAP) + GAP;
  const height = rows * (th + GAP) + GAP;
  const png = new PNG({ width, height });
  png.data.fill(0);
  for (let p = 3; p < png.data.length; p += 4) png.data[p] = 255;

  const colors = new Map(card.classes.map((c) => [c.value, c.color] as const));
  const [lo, hi] = displayWindow(image.data);
  const img = new Float32Array(w * h);
  const lab = new Uint8Array(w * h);
  const reg = new Uint8Array(w * h);
  // Canonical +i points to the patient's right and +j anterior/superior; radiological display puts
  // the patient's right on the screen's left and anterior/superior at the top, so both flip.
  const srcX = Int32Array.from({ length: tw }, (_, x) => w - 1 - Math.min(w - 1, Math.floor(x / scale)));
  const srcY = Int32Array.from({ length: th }, (_, y) => h - 1 - Math.min(h - 1, Math.floor(y / scale)));

  // Per-class and per-region overlay colours by value, so the pixel loop does no lookups.
  const classColor: ([number, number, number] | undefined)[] = new Array(256);
  for (const [value, color] of colors) if (value !== 0) classColor[value] = color;
  const regionColor: (RgbColor | undefined)[] = new Array(256);
  for (const [value, color] of Object.entries(REGION_COLORS)) regionColor[Number(value)] = color;
  const gray = new Float64Array(tw * th);
  const srcIndex = new Int32Array(tw * th);
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) srcIndex[y * tw + x] = srcY[y] * w + srcX[x];
  const range = hi - lo;
  const data = png.data;

  slices.forEach((k, n) => {
    gatherPlane(grid, image.data, k, img);
    gatherPlane(grid, label.data, k, lab);
    if (region) gatherPlane(grid, region.data, k, reg);
    // Kept as a float (NaN stays NaN) so both panels compute exactly what a per-pixel formula would.
    for (let t = 0; t < gray.length; t++) gray[t] = Math.round(255 * Math.min(1, Math.max(0, (img[srcIndex[t]] - lo) / range)));
    const ox = GAP + (n % perRow) * panels * (tw + GAP);
    const oy = GAP + Math.floor(n / perRow) * (th + GAP);
    for (let panel = 0; panel < panels; panel++) {
      const px = ox + panel * (tw + GAP);
      const values = panel === 0 ? lab : reg;
      const palette = panel === 0 ? classColor : regionColor;
      for (let y = 0; y < th; y++) {
        let o = ((oy + y) * width + px) * 4;
        for (let x = 0, t = y * tw; x < tw; x++, t++, o += 4) {
          const g = gray[t];
          const overlay = palette[values[srcIndex[t]]];
          if (overlay) {
            data[o] = Math.round(0.55 * g + 0.45 * overlay[0]);
            data[o + 1] = Math.round(0.55 * g + 0.45 * overlay[1]);
            data[o + 2] = Math.round(0.55 * g + 0.45 * overlay[2]);
          } else {
            data[o] = g;
            data[o + 1] = g;
            data[o + 2] = g;
          }
        }
      }
    }
  });
  // One fixed filter instead of pngjs's default of trying all five per row: same pixels, about
  // half the encoding time (the RLE deflate strategy makes the level matter little).
  return PNG.sync.write(png, { filterType: 1, deflateLevel: 1 });
}
