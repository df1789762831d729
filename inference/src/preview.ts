/**
 * preview.png: a montage of chosen slices (mask and regions over the image) with, when a
 * rasterizer is given, a header (case id, verdict, predicted Dice), slice numbers on the tiles
 * and a legend of class and region colours.
 *
 * Why the text is composed here but rasterized elsewhere: inference runs in the browser too and
 * stays free of a native rasterizer and of font decisions, so the annotations are an SVG layer
 * (text and swatches, no font named) that the caller rasterizes; alhvr-segment passes the CLI's
 * plot rasterizer (cli/src/lib/plots/render.ts: resvg with the plots' font), the one owner of
 * how text is drawn. The montage itself never goes through the rasterizer: it is composited
 * under the layer here, in pixels, and the picture is encoded once. Embedding the montage in the
 * SVG cost a PNG encode, a base64 round trip, a PNG decode and a second encode per case.
 */
import { PNG } from 'pngjs';
import { REGION, REGION_COLORS, displayWindow, type ModelCard, type Orientation, type RgbColor, type Volume, type VoxelArray } from '@alhvr/core';
import { canonicalGrid, gatherPlane } from './canonical-grid.js';
import type { Verdict } from './report.js';

/** A rasterized SVG layer: RGBA with premultiplied alpha, transparent where nothing is drawn. */
export interface RasterLayer {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** SVG document → pixels at the document's size; fonts are the rasterizer's choice (the SVG names none). */
export type PreviewRasterizer = (svg: string) => RasterLayer;

/** What the header and the missed-slice rule know about the case. */
export interface PreviewAnnotation {
  caseId: string;
  verdict?: Verdict;
  reasons?: readonly string[];
  predictedDice?: number | null;
  /** Names of the model's classes with no predicted voxel in this case. */
  absentClasses?: readonly string[];
}

export interface PreviewOptions {
  /** Most slices shown. Default 8. */
  maxSlices?: number;
  /** Longest tile side in pixels. Default 192. */
  tileSize?: number;
  annotation?: PreviewAnnotation;
  /** Without one, the montage alone is written (no text can be drawn). */
  rasterize?: PreviewRasterizer;
}

const GAP = 2;

/** Verdict colours of every picture (preview header, alhvr-segment's summary.png): red, amber, green. */
export const VERDICT_COLORS: Readonly<Record<Verdict, RgbColor>> = {
  reject: [214, 39, 40],
  review: [255, 159, 28],
  accept: [44, 160, 44],
};

/**
 * Why the reference-free signals suggest part of the anatomy was missed, or undefined: a case
 * not accepted because nothing was found, because its predicted Dice is low (a missed structure
 * is what a low Dice with a confident-looking mask most often means), or because a class the
 * model segments has no voxel at all. Then the preview shows a slice without predicted
 * foreground, where the reviewer should look for what is missing.
 */
export function missedReason(a: PreviewAnnotation): string | undefined {
  if (a.absentClasses?.length) return `no ${a.absentClasses.join(', ')} predicted`;
  if (!a.verdict || a.verdict === 'accept') return undefined;
  const reason = a.reasons?.find((r) => /^no foreground|^predicted Dice/.test(r));
  return reason;
}

/** Foreground voxel count of each slice along the canonical slice axis. */
function foregroundPerSlice(label: Volume<Uint8Array>, orientation: Orientation): number[] {
  const grid = canonicalGrid(label.dims, orientation);
  const [w, h, k] = grid.dims;
  const plane = new Uint8Array(w * h);
  const counts: number[] = [];
  for (let s = 0; s < k; s++) {
    gatherPlane(grid, label.data, s, plane);
    let n = 0;
    for (const v of plane) if (v !== 0) n++;
    counts.push(n);
  }
  return counts;
}

/**
 * The slice without predicted foreground most likely to hold what was missed: the middle of the
 * longest gap inside the foreground's extent, else the slice just past whichever end of the
 * extent stops more abruptly (more foreground on its last slice). Undefined when no slice is
 * empty, or when none has foreground (then every shown slice is empty anyway).
 */
export function missedSlice(label: Volume<Uint8Array>, orientation: Orientation): number | undefined {
  const counts = foregroundPerSlice(label, orientation);
  const first = counts.findIndex((n) => n > 0);
  if (first < 0) return undefined;
  const last = counts.length - 1 - [...counts].reverse().findIndex((n) => n > 0);
  let best: [number, number] | undefined;
  for (let s = first + 1; s < last; s++) {
    if (counts[s] !== 0) continue;
    let e = s;
    while (counts[e + 1] === 0) e++;
    if (!best || e - s > best[1] - best[0]) best = [s, e];
    s = e;
  }
  if (best) return Math.floor((best[0] + best[1]) / 2);
  const before = first > 0 ? first - 1 : undefined;
  const after = last < counts.length - 1 ? last + 1 : undefined;
  if (before === undefined || after === undefined) return before ?? after;
  return counts[first] > counts[last] ? before : after;
}

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
  const maxSlices = opts.maxSlices ?? 8;
  const missed = opts.annotation ? missedReason(opts.annotation) : undefined;
  const empty = missed !== undefined ? missedSlice(label, orientation) : undefined;
  const slices = empty === undefined ? previewSlices(label, orientation, maxSlices) : [...previewSlices(label, orientation, Math.max(1, maxSlices - 1)), empty].sort((a, b) => a - b);
  const { annotation, rasterize } = opts;
  const montage = renderMontage(image, label, region, card, orientation, slices, opts.tileSize ?? 192);
  if (!annotation || !rasterize) return encodePreview(montage.canvas);
  const svg = previewSvg(montage, card, region !== undefined, annotation, empty === undefined ? undefined : { slice: empty, reason: missed! });
  const { width, height } = previewSize(montage, card, region !== undefined);
  const layer = rasterize(svg);
  if (layer.width !== width || layer.height !== height || layer.pixels.length !== width * height * 4) {
    throw new Error(`preview rasterizer returned ${layer.width}×${layer.height} for a ${width}×${height} layer`);
  }
  const picture = new PNG({ width, height });
  const out = picture.data;
  for (let p = 0; p < out.length; p += 4) {
    out[p] = 0;
    out[p + 1] = 0;
    out[p + 2] = 0;
    out[p + 3] = 255;
  }
  const rowBytes = montage.width * 4;
  for (let y = 0; y < montage.height; y++) {
    montage.canvas.data.copy(out, ((HEADER + y) * width) * 4, y * rowBytes, (y + 1) * rowBytes);
  }
  // Source-over with a premultiplied source on an opaque page: out = src + dst·(1 − α).
  const src = layer.pixels;
  for (let p = 0; p < out.length; p += 4) {
    const keep = 255 - src[p + 3];
    if (keep === 255) continue;
    out[p] = src[p] + Math.round((out[p] * keep) / 255);
    out[p + 1] = src[p + 1] + Math.round((out[p + 1] * keep) / 255);
    out[p + 2] = src[p + 2] + Math.round((out[p + 2] * keep) / 255);
  }
  return encodePreview(picture);
}

// One fixed filter instead of pngjs's default of trying all five per row (same pixels, about half
// the time), and zlib's default strategy at level 1 instead of pngjs's RLE: on a noisy MR montage
// RLE wrote 1.47 MB where this writes 0.45 MB, and faster (one 778×832 preview: 270 → 176 ms).
function encodePreview(png: PNG): Uint8Array {
  return PNG.sync.write(png, { filterType: 1, deflateLevel: 1, deflateStrategy: 0 });
}

/** Where each tile of the montage is, for the annotations drawn over it. */
export interface MontageLayout {
  /** The montage's pixels (opaque RGBA), not yet encoded. */
  canvas: PNG;
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
  panels: number;
  /** Each shown slice (canonical index) and the top-left corner of its first panel. */
  tiles: { slice: number; x: number; y: number }[];
}

function renderMontage(
  image: Volume<VoxelArray>,
  label: Volume<Uint8Array>,
  region: Volume<Uint8Array> | undefined,
  card: ModelCard,
  orientation: Orientation,
  slices: number[],
  tileSize: number,
): MontageLayout {
  const grid = canonicalGrid(image.dims, orientation);
  const [w, h] = grid.dims;
  const scale = tileSize / Math.max(w, h);
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

  // Every blended colour the pixel loop can write, by overlay value and grey level (256 = a
  // non-finite image value, drawn black as a NaN byte would be): the loop only indexes tables.
  const NAN_GRAY = 256;
  const blendTable = (palette: ReadonlyMap<number, RgbColor>) => {
    const has = new Uint8Array(256);
    const rgbOf = new Uint8Array(256 * 257 * 3);
    for (const [value, color] of palette) {
      has[value] = 1;
      for (let g = 0; g < 256; g++) for (let ch = 0; ch < 3; ch++) rgbOf[(value * 257 + g) * 3 + ch] = Math.round(0.55 * g + 0.45 * color[ch]);
    }
    return { has, rgbOf };
  };
  const classBlend = blendTable(new Map([...colors].filter(([value]) => value !== 0)));
  const regionBlend = blendTable(new Map(Object.entries(REGION_COLORS).map(([value, color]) => [Number(value), color] as const)));
  const gray = new Uint16Array(tw * th);
  const srcIndex = new Int32Array(tw * th);
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) srcIndex[y * tw + x] = srcY[y] * w + srcX[x];
  const range = hi - lo;
  const data = png.data;
  const tiles: MontageLayout['tiles'] = [];

  slices.forEach((k, n) => {
    gatherPlane(grid, image.data, k, img);
    gatherPlane(grid, label.data, k, lab);
    if (region) gatherPlane(grid, region.data, k, reg);
    for (let t = 0; t < gray.length; t++) {
      const g = Math.round(255 * Math.min(1, Math.max(0, (img[srcIndex[t]] - lo) / range)));
      gray[t] = g === g ? g : NAN_GRAY;
    }
    const ox = GAP + (n % perRow) * panels * (tw + GAP);
    const oy = GAP + Math.floor(n / perRow) * (th + GAP);
    tiles.push({ slice: k, x: ox, y: oy });
    for (let panel = 0; panel < panels; panel++) {
      const px = ox + panel * (tw + GAP);
      const values = panel === 0 ? lab : reg;
      const { has, rgbOf } = panel === 0 ? classBlend : regionBlend;
      for (let y = 0; y < th; y++) {
        let o = ((oy + y) * width + px) * 4;
        for (let x = 0, t = y * tw; x < tw; x++, t++, o += 4) {
          const g = gray[t];
          const v = values[srcIndex[t]];
          if (has[v] === 1) {
            const b = (v * 257 + g) * 3;
            data[o] = rgbOf[b];
            data[o + 1] = rgbOf[b + 1];
            data[o + 2] = rgbOf[b + 2];
          } else {
            const shade = g === NAN_GRAY ? 0 : g;
            data[o] = shade;
            data[o + 1] = shade;
            data[o + 2] = shade;
          }
        }
      }
    }
  });
  return { canvas: png, width, height, tileWidth: tw, tileHeight: th, panels, tiles };
}

const HEADER = 44;
const LEGEND_ROW = 22;
const SWATCH = 14;
const LEGEND_ITEM = 190;

const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
const rgb = (c: RgbColor) => `rgb(${c[0]},${c[1]},${c[2]})`;

function legendItems(card: ModelCard, hasRegions: boolean): { color: RgbColor; text: string }[] {
  const legend: { color: RgbColor; text: string }[] = card.classes.filter((c) => c.value !== 0).map((c) => ({ color: c.color, text: `${c.value} ${c.name}` }));
  if (hasRegions) {
    legend.push({ color: REGION_COLORS[REGION.unstable], text: 'region 2: one student sure' });
    legend.push({ color: REGION_COLORS[REGION.unreliable], text: 'region 3: neither sure' });
  }
  return legend;
}

/** The annotated picture's size and legend placement: header, montage at 1:1, legend rows. */
export function previewSize(montage: Pick<MontageLayout, 'width' | 'height'>, card: ModelCard, hasRegions: boolean) {
  const width = Math.max(montage.width, 2 * LEGEND_ITEM);
  const perRow = Math.max(1, Math.floor((width - 8) / LEGEND_ITEM));
  const legendTop = HEADER + montage.height + 4;
  const height = legendTop + Math.ceil(legendItems(card, hasRegions).length / perRow) * LEGEND_ROW + 6;
  return { width, height, perRow, legendTop };
}

/**
 * The annotation layer of the preview as an SVG document, transparent where the picture shows
 * the montage or the black page (both composited under it by renderPreview): header (case id,
 * verdict with its reason, predicted Dice), each tile's slice number (and panel), the
 * missed-slice tile framed and captioned, and a legend of the class colours and (with regions)
 * the region colours, each swatch filled with the palette colour itself.
 */
export function previewSvg(
  montage: MontageLayout,
  card: ModelCard,
  hasRegions: boolean,
  annotation: PreviewAnnotation,
  missed?: { slice: number; reason: string },
): string {
  const { width, height, perRow, legendTop } = previewSize(montage, card, hasRegions);
  const legend = legendItems(card, hasRegions);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`);
  // Header: the case id, then the verdict in its colour with the first reason, then the predicted Dice.
  out.push(`<text x="6" y="18" font-size="15" font-weight="bold" fill="white">case ${escapeXml(annotation.caseId)}</text>`);
  const parts: string[] = [];
  const reason = annotation.reasons?.[0];
  // A low-Dice reason already states the predicted Dice.
  if (annotation.predictedDice !== undefined && annotation.predictedDice !== null && !reason?.startsWith('predicted Dice')) {
    parts.push(`predicted Dice ${annotation.predictedDice.toFixed(3)}`);
  }
  if (reason) parts.push(reason);
  if (missed && missed.reason !== reason) parts.push(missed.reason);
  if (annotation.verdict) {
    const c = VERDICT_COLORS[annotation.verdict];
    out.push(`<rect x="6" y="24" width="70" height="16" rx="3" fill="${rgb(c)}"/>`);
    out.push(`<text x="41" y="36.5" font-size="11" font-weight="bold" text-anchor="middle" fill="black">${annotation.verdict.toUpperCase()}</text>`);
  }
  if (parts.length) out.push(`<text x="${annotation.verdict ? 84 : 6}" y="37" font-size="12" fill="white">${escapeXml(parts.join(' · '))}</text>`);
  for (const t of montage.tiles) {
    for (let p = 0; p < montage.panels; p++) {
      const x = t.x + p * (montage.tileWidth + GAP);
      const y = HEADER + t.y;
      const panel = montage.panels > 1 ? (p === 0 ? ' · mask' : ' · regions') : '';
      // The header states why (missed.reason); the tile only says where to look.
      const isMissed = missed?.slice === t.slice;
      if (isMissed) out.push(`<rect x="${x + 1}" y="${y + 1}" width="${montage.tileWidth - 2}" height="${montage.tileHeight - 2}" fill="none" stroke="rgb(255,255,0)" stroke-width="2" stroke-dasharray="6 3"/>`);
      out.push(`<text x="${x + 4}" y="${y + 13}" font-size="11" fill="white" stroke="black" stroke-width="2.5" paint-order="stroke">slice ${t.slice}${panel}</text>`);
      if (isMissed && p === 0) {
        out.push(`<text x="${x + 4}" y="${y + montage.tileHeight - 6}" font-size="10" fill="rgb(255,255,0)" stroke="black" stroke-width="2.5" paint-order="stroke">nothing predicted here</text>`);
      }
    }
  }
  legend.forEach((item, n) => {
    const x = 6 + (n % perRow) * LEGEND_ITEM;
    const y = legendTop + Math.floor(n / perRow) * LEGEND_ROW;
    out.push(`<rect x="${x}" y="${y + 2}" width="${SWATCH}" height="${SWATCH}" fill="${rgb(item.color)}" shape-rendering="crispEdges"/>`);
    out.push(`<text x="${x + SWATCH + 6}" y="${y + 14}" font-size="12" fill="white">${escapeXml(item.text)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
