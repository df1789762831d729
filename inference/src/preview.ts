/**
 * preview.png: a montage of chosen slices (mask and regions over the image) with, when a
 * rasterizer is given, a header (case id, verdict, predicted Dice), slice numbers on the tiles
 * and a legend of class and region colours.
 *
 * Why the text is composed here but rasterized elsewhere: inference runs in the browser too and
 * stays free of a native rasterizer and of font decisions, so the annotations are an SVG layer
 * (text and swatches, no font named) that the caller rasterizes; alhvr-segment passes the CLI's
 * plot rasterizer (cli/src/lib/plots/render.ts: resvg with the plots' font), the one owner of
 * how text is drawn. The montage itself never goes through the rasterizer: the layer's pieces are
 * composited over it here, in pixels, and the picture is encoded once. Embedding the montage in
 * the SVG cost a PNG encode, a base64 round trip, a PNG decode and a second encode per case.
 */
import { crc32, deflateSync, constants as zlibConstants } from 'node:zlib';
import { REGION, REGION_COLORS, displayWindow, type ModelCard, type Orientation, type RgbColor, type Volume, type VoxelArray } from '@alhvr/core';
import { canonicalGrid, gatherPlane } from './canonical-grid.js';
import type { Verdict } from './report.js';

/** A rasterized SVG layer: RGBA with premultiplied alpha, transparent where nothing is drawn. */
export interface RasterLayer {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/**
 * SVG document → pixels at the document's size; fonts are the rasterizer's choice (the SVG names
 * none). A function of the document alone: renderPreview reuses the layer of a document it has
 * rasterized before with the same rasterizer.
 */
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
  const plane = new Uint8Array(grid.dims[0] * grid.dims[1]);
  return Array.from({ length: grid.dims[2] }, (_, k) => {
    gatherPlane(grid, label.data, k, plane);
    return countNonZero(plane);
  });
}

/** Values that are not 0; a function of its own so V8 optimises the loop once. */
function countNonZero(values: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) n++;
  return n;
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
  const layout = montageLayout(image.dims, orientation, slices, region !== undefined, opts.tileSize ?? 192);
  if (!annotation || !rasterize) {
    const canvas = blackCanvas(layout.width, layout.height);
    drawMontage(canvas, 0, layout, image, label, region, card, orientation);
    return encodePng(canvas);
  }
  const { width, height } = previewSize(layout, card, region !== undefined);
  const canvas = blackCanvas(width, height);
  drawMontage(canvas, HEADER, layout, image, label, region, card, orientation);
  for (const stamp of previewStamps(layout, card, region !== undefined, annotation, empty === undefined ? undefined : { slice: empty, reason: missed! })) {
    const layer = rasterizeRemembered(rasterize, stamp.svg);
    if (layer.width !== stamp.width || layer.height !== stamp.height || layer.pixels.length !== stamp.width * stamp.height * 4) {
      throw new Error(`preview rasterizer returned ${layer.width}×${layer.height} for a ${stamp.width}×${stamp.height} layer`);
    }
    composite(canvas, layer, stamp.x, stamp.y);
  }
  return encodePng(canvas);
}

/**
 * An opaque picture, one 32-bit word per pixel: red in the low byte, then green and blue (alpha
 * is implied). Packed and unpacked by the same arithmetic, never viewed as bytes, so the
 * machine's byte order does not matter; one store per pixel instead of four.
 */
interface Canvas {
  width: number;
  height: number;
  rgb: Uint32Array;
}

const rgbWord = (r: number, g: number, b: number) => (r | (g << 8) | (b << 16)) >>> 0;
/** Marks a table entry as holding a colour (black is a colour too, 0 is not). */
const SET = 1 << 24;

function blackCanvas(width: number, height: number): Canvas {
  return { width, height, rgb: new Uint32Array(width * height) };
}

/**
 * Source-over of a premultiplied layer at (x0, y0) on the opaque picture: out = src + dst·(1 − α),
 * rounded per channel; transparent pixels leave the picture untouched.
 */
function composite(canvas: Canvas, layer: RasterLayer, x0: number, y0: number): void {
  const src = layer.pixels;
  const w = Math.min(layer.width, canvas.width - x0);
  const h = Math.min(layer.height, canvas.height - y0);
  for (let y = 0; y < h; y++) {
    let o = (y0 + y) * canvas.width + x0;
    for (let x = 0, p = y * layer.width * 4; x < w; x++, p += 4, o++) {
      const keep = 255 - src[p + 3];
      if (keep === 255) continue;
      const dst = canvas.rgb[o];
      canvas.rgb[o] = rgbWord(
        src[p] + Math.round(((dst & 255) * keep) / 255),
        src[p + 1] + Math.round((((dst >>> 8) & 255) * keep) / 255),
        src[p + 2] + Math.round((((dst >>> 16) & 255) * keep) / 255),
      );
    }
  }
}

/**
 * The picture as an 8-bit RGB PNG (it is opaque: a quarter less to filter and deflate than RGBA),
 * every row with the Sub filter and zlib's default strategy at level 1. On a noisy MR montage
 * that writes a third of what pngjs's RLE did and faster; filtering here, in one pass over the
 * packed words, took a fifth of the time pngjs's generic filter loop took.
 */
function encodePng({ width, height, rgb }: Canvas): Uint8Array {
  const stride = width * 3 + 1;
  const raw = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    let o = y * stride;
    raw[o++] = 1; // Sub: each byte minus the same channel of the pixel to its left
    let pr = 0;
    let pg = 0;
    let pb = 0;
    for (let x = 0, p = y * width; x < width; x++, p++) {
      const word = rgb[p];
      const r = word & 255;
      const g = (word >>> 8) & 255;
      const b = (word >>> 16) & 255;
      raw[o++] = (r - pr) & 255;
      raw[o++] = (g - pg) & 255;
      raw[o++] = (b - pb) & 255;
      pr = r;
      pg = g;
      pb = b;
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits, truecolour, deflate, adaptive filtering, no interlace
  const chunks = [pngChunk('IHDR', header), pngChunk('IDAT', deflateSync(raw, { level: 1, strategy: zlibConstants.Z_DEFAULT_STRATEGY })), pngChunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(PNG_SIGNATURE.length + chunks.reduce((n, c) => n + c.length, 0));
  out.set(PNG_SIGNATURE, 0);
  let at = PNG_SIGNATURE.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const PNG_SIGNATURE = Uint8Array.of(137, 80, 78, 71, 13, 10, 26, 10);

/** length, type, data, CRC-32 of type and data. */
function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) chunk[4 + i] = type.charCodeAt(i);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

/** Where each tile of the montage is, for the annotations drawn over it. */
export interface MontageLayout {
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
  /** Tile pixels per voxel. */
  scale: number;
  panels: number;
  /** Each shown slice (canonical index) and the top-left corner of its first panel. */
  tiles: { slice: number; x: number; y: number }[];
}

function montageLayout(dims: readonly number[], orientation: Orientation, slices: number[], hasRegions: boolean, tileSize: number): MontageLayout {
  const [w, h] = canonicalGrid(dims as [number, number, number], orientation).dims;
  const scale = tileSize / Math.max(w, h);
  const tileWidth = Math.max(1, Math.round(w * scale));
  const tileHeight = Math.max(1, Math.round(h * scale));
  const panels = hasRegions ? 2 : 1;
  const perRow = Math.min(slices.length, hasRegions ? 2 : 4);
  const rows = Math.ceil(slices.length / perRow);
  const tiles = slices.map((slice, n) => ({ slice, x: GAP + (n % perRow) * panels * (tileWidth + GAP), y: GAP + Math.floor(n / perRow) * (tileHeight + GAP) }));
  return { width: perRow * panels * (tileWidth + GAP) + GAP, height: rows * (tileHeight + GAP) + GAP, tileWidth, tileHeight, scale, panels, tiles };
}

/** The montage's tiles, drawn into the (black) canvas with their top `top` rows down. */
function drawMontage(
  canvas: Canvas,
  top: number,
  layout: MontageLayout,
  image: Volume<VoxelArray>,
  label: Volume<Uint8Array>,
  region: Volume<Uint8Array> | undefined,
  card: ModelCard,
  orientation: Orientation,
): void {
  const grid = canonicalGrid(image.dims, orientation);
  const [w, h] = grid.dims;
  const { tileWidth: tw, tileHeight: th, scale } = layout;
  const colors = new Map(card.classes.map((c) => [c.value, c.color] as const));
  const [lo, hi] = displayWindow(image.data);
  const img = new Float32Array(w * h);
  const lab = new Uint8Array(w * h);
  const reg = new Uint8Array(w * h);
  // Canonical +i points to the patient's right and +j anterior/superior; radiological display puts
  // the patient's right on the screen's left and anterior/superior at the top, so both flip.
  const srcX = Int32Array.from({ length: tw }, (_, x) => w - 1 - Math.min(w - 1, Math.floor(x / scale)));
  const srcY = Int32Array.from({ length: th }, (_, y) => h - 1 - Math.min(h - 1, Math.floor(y / scale)));

  // Every colour the pixel loop can write, by overlay value and grey level (256 = a non-finite
  // image value, drawn black as a NaN byte would be): the loop only indexes tables. An overlay
  // value without a colour has no SET bit, and the plain grey is drawn.
  const greyOf = Uint32Array.from({ length: 257 }, (_, g) => (g === NAN_GRAY ? 0 : rgbWord(g, g, g)));
  const classBlend = blendTable(new Map([...colors].filter(([value]) => value !== 0)));
  const regionBlend = blendTable(new Map(Object.entries(REGION_COLORS).map(([value, color]) => [Number(value), color] as const)));
  const gray = new Uint16Array(tw * th);
  const srcIndex = sourceIndex(srcX, srcY, w);

  for (const tile of layout.tiles) {
    gatherPlane(grid, image.data, tile.slice, img);
    gatherPlane(grid, label.data, tile.slice, lab);
    if (region) gatherPlane(grid, region.data, tile.slice, reg);
    greyLevels(img, srcIndex, lo, hi - lo, gray);
    for (let panel = 0; panel < layout.panels; panel++) {
      const px = tile.x + panel * (tw + GAP);
      paintPanel(canvas, top + tile.y, px, tw, th, gray, panel === 0 ? lab : reg, srcIndex, panel === 0 ? classBlend : regionBlend, greyOf);
    }
  }
}

// drawMontage's per-pixel loops are functions of their own, so V8 optimises each once (inside the
// long function they were recompiled several times per run).

/** The plane index each tile pixel shows: row srcY[y], column srcX[x] of a plane `w` wide. */
function sourceIndex(srcX: Int32Array, srcY: Int32Array, w: number): Int32Array {
  const tw = srcX.length;
  const index = new Int32Array(tw * srcY.length);
  for (let y = 0; y < srcY.length; y++) for (let x = 0; x < tw; x++) index[y * tw + x] = srcY[y] * w + srcX[x];
  return index;
}

/** A grey level (0…255, or NAN_GRAY) per tile pixel, from the plane's values at the pixel's source voxel. */
function greyLevels(img: Float32Array, srcIndex: Int32Array, lo: number, range: number, gray: Uint16Array): void {
  for (let t = 0; t < gray.length; t++) {
    const g = Math.round(255 * Math.min(1, Math.max(0, (img[srcIndex[t]] - lo) / range)));
    gray[t] = g === g ? g : NAN_GRAY;
  }
}

/** One panel of a tile: each pixel the blend of its grey level and its overlay value, or the grey alone. */
function paintPanel(
  canvas: Canvas, y0: number, x0: number, tw: number, th: number, gray: Uint16Array,
  values: Uint8Array, srcIndex: Int32Array, blend: Uint32Array, greyOf: Uint32Array,
): void {
  const out = canvas.rgb;
  const COLOUR = SET - 1;
  for (let y = 0; y < th; y++) {
    let o = (y0 + y) * canvas.width + x0;
    for (let x = 0, t = y * tw; x < tw; x++, t++, o++) {
      const g = gray[t];
      const mixed = blend[values[srcIndex[t]] * 257 + g];
      out[o] = mixed !== 0 ? mixed & COLOUR : greyOf[g];
    }
  }
}

/** Grey level of a non-finite image value (drawn black, as a NaN byte would be). */
const NAN_GRAY = 256;

/** The blended colour word (with the SET bit) per overlay value and grey level; 0 where a value has no colour. */
function blendTable(palette: ReadonlyMap<number, RgbColor>): Uint32Array {
  const table = new Uint32Array(256 * 257);
  for (const [value, color] of palette) {
    for (let g = 0; g < 256; g++) table[value * 257 + g] = (SET | rgbWord(...(color.map((c) => Math.round(0.55 * g + 0.45 * c)) as [number, number, number]))) >>> 0;
  }
  return table;
}

const HEADER = 44;
const LEGEND_ROW = 22;
const SWATCH = 14;
const LEGEND_ITEM = 190;
/** Holds "slice 999 · regions" at the captions' 11 px. */
const CAPTION_WIDTH = 128;

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

/** One piece of the annotation layer: an SVG document of its own box, drawn at (x, y) of the picture. */
export interface PreviewStamp {
  x: number;
  y: number;
  width: number;
  height: number;
  svg: string;
}

const stamp = (x: number, y: number, width: number, height: number, body: string): PreviewStamp => ({
  x,
  y,
  width,
  height,
  svg: `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${body}</svg>`,
});

/**
 * The annotation layer of the preview, piece by piece, in drawing order, each piece transparent
 * where the picture shows the montage or the black page (composited under it by renderPreview):
 * header (case id, verdict with its reason, predicted Dice), each tile's slice number (and panel),
 * the missed-slice tile framed and captioned, and a legend of the class colours and (with regions)
 * the region colours, each swatch filled with the palette colour itself.
 *
 * Why pieces and not one document of the picture's size: rasterizing costs by area (a blank
 * 778×830 layer alone took 27 ms with resvg, a caption in its own 192×18 box about 1 ms), and
 * the legend, the badges and most captions are the same from case to case, so a remembered piece
 * costs nothing (rasterizeRemembered). Each piece's box lies on whole pixels and holds everything
 * its element draws, so the picture is the one a single document would give.
 */
export function previewStamps(
  montage: MontageLayout,
  card: ModelCard,
  hasRegions: boolean,
  annotation: PreviewAnnotation,
  missed?: { slice: number; reason: string },
): PreviewStamp[] {
  const { width, perRow, legendTop } = previewSize(montage, card, hasRegions);
  const legend = legendItems(card, hasRegions);
  const out: PreviewStamp[] = [];
  // Header: the case id, then the verdict in its colour with the first reason, then the predicted Dice.
  out.push(stamp(0, 0, width, 23, `<text x="6" y="18" font-size="15" font-weight="bold" fill="white">case ${escapeXml(annotation.caseId)}</text>`));
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
    out.push(
      // A pixel of margin: the rounded corners' edge pixels come out as in one document.
      stamp(5, 23, 72, 18, `<rect x="1" y="1" width="70" height="16" rx="3" fill="${rgb(c)}"/><text x="36" y="13.5" font-size="11" font-weight="bold" text-anchor="middle" fill="black">${annotation.verdict.toUpperCase()}</text>`),
    );
  }
  const partsX = annotation.verdict ? 84 : 6;
  if (parts.length) out.push(stamp(partsX, 23, width - partsX, HEADER - 23, `<text y="14" font-size="12" fill="white">${escapeXml(parts.join(' · '))}</text>`));
  for (const t of montage.tiles) {
    for (let p = 0; p < montage.panels; p++) {
      const x = t.x + p * (montage.tileWidth + GAP);
      const y = HEADER + t.y;
      const panel = montage.panels > 1 ? (p === 0 ? ' · mask' : ' · regions') : '';
      // The header states why (missed.reason); the tile only says where to look.
      if (missed?.slice === t.slice) {
        const caption =
          p === 0
            ? `<text x="4" y="${montage.tileHeight - 6}" font-size="10" fill="rgb(255,255,0)" stroke="black" stroke-width="2.5" paint-order="stroke">nothing predicted here</text>`
            : '';
        out.push(
          stamp(x, y, montage.tileWidth, montage.tileHeight, `<rect x="1" y="1" width="${montage.tileWidth - 2}" height="${montage.tileHeight - 2}" fill="none" stroke="rgb(255,255,0)" stroke-width="2" stroke-dasharray="6 3"/>${caption}`),
        );
      }
      // A caption's box does not follow the tile's width (which varies with each case's shape), so
      // the same caption is the same piece in every case; clipped to a narrower tile.
      out.push(stamp(x, y, Math.min(CAPTION_WIDTH, montage.tileWidth), Math.min(18, montage.tileHeight), `<text x="4" y="13" font-size="11" fill="white" stroke="black" stroke-width="2.5" paint-order="stroke">slice ${t.slice}${panel}</text>`));
    }
  }
  legend.forEach((item, n) => {
    const x = 6 + (n % perRow) * LEGEND_ITEM;
    const y = legendTop + Math.floor(n / perRow) * LEGEND_ROW;
    out.push(
      stamp(x, y, Math.min(LEGEND_ITEM, width - x), LEGEND_ROW, `<rect y="2" width="${SWATCH}" height="${SWATCH}" fill="${rgb(item.color)}" shape-rendering="crispEdges"/><text x="${SWATCH + 6}" y="14" font-size="12" fill="white">${escapeXml(item.text)}</text>`),
    );
  });
  return out;
}

/** Recently rasterized pieces per rasterizer, most recent last (a Map keeps insertion order). */
const rememberedLayers = new WeakMap<PreviewRasterizer, Map<string, RasterLayer>>();
/** A few hundred small layers: every legend item, badge and caption of a batch, a few MB at most. */
const REMEMBERED_LAYERS = 512;

/**
 * rasterize(svg), reusing the layer of an identical document rasterized before by the same
 * rasterizer (a rasterizer is a function of its document; renderPreview only reads the layer).
 */
function rasterizeRemembered(rasterize: PreviewRasterizer, svg: string): RasterLayer {
  let layers = rememberedLayers.get(rasterize);
  if (!layers) rememberedLayers.set(rasterize, (layers = new Map()));
  const known = layers.get(svg);
  if (known) {
    layers.delete(svg);
    layers.set(svg, known);
    return known;
  }
  const layer = rasterize(svg);
  layers.set(svg, layer);
  if (layers.size > REMEMBERED_LAYERS) layers.delete(layers.keys().next().value!);
  return layer;
}
