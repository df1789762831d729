/**
 * Vega-Lite spec → SVG (vega's own SVG renderer, no canvas, no browser) → PNG (resvg). Every
 * picture the commands write goes through here, so the charts themselves are declarative specs
 * and nothing in this project draws a mark by hand.
 */
import { existsSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import { loader, parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '@alhvr/core/node';
import type { RasterLayer } from '@alhvr/inference/node';

export interface PlotSize {
  width: number;
  /** Omitted: follows the chart's own layout at this width (multi-panel charts, whose aspect varies with their panels). */
  height?: number;
}

export interface RenderedPlot {
  svg: string;
  png: Uint8Array;
}

/** DejaVu ships with Debian's fontconfig; resvg falls back to any system font if it is absent. */
const FONT = 'DejaVu Sans';
const DEJAVU_FILES = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((f) => `/usr/share/fonts/truetype/dejavu/${f}`);
/** Scanning every system font costs more than drawing the chart: load the two files used when they are there. */
const FONT_OPTIONS = DEJAVU_FILES.every((f) => existsSync(f))
  ? { loadSystemFonts: false, fontFiles: DEJAVU_FILES, defaultFontFamily: FONT, sansSerifFamily: FONT }
  : { loadSystemFonts: true, defaultFontFamily: FONT, sansSerifFamily: FONT };

/** Looks shared by every chart: white background (PNG viewers show transparency as black or checkers). */
export const PLOT_CONFIG = {
  background: 'white',
  font: FONT,
  padding: 12,
  view: { stroke: '#ddd' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260 },
  title: { fontSize: 14, anchor: 'start' as const, offset: 8 },
  header: { labelFontSize: 12, titleFontSize: 12 },
};

/**
 * A loader that fetches nothing: the specs carry their data inline, and nothing this toolkit
 * does may reach the network (README "Privacy"), whatever a spec might name by URL.
 */
function offlineLoader() {
  const base = loader();
  const refuse = async (uri: string): Promise<never> => {
    throw new Error(`plots load no external resources (asked for ${uri})`);
  };
  return Object.assign(base, { load: refuse, sanitize: refuse, http: refuse, file: refuse });
}

/**
 * Scale the chart's own SVG to exactly `size` (aspect kept, centred: SVG's default
 * preserveAspectRatio is "xMidYMid meet"). Chart layouts grow with their labels and legends,
 * while users and tests expect a picture of a known size.
 */
function fitRoot(svg: string, size: PlotSize): string {
  const open = /^<svg\b[^>]*>/.exec(svg);
  if (!open) throw new Error('vega produced no <svg> root element');
  const own = (name: string) => Number(new RegExp(`\\s${name}="([\\d.]+)"`).exec(open[0])?.[1]);
  const height = size.height ?? Math.round((size.width * own('height')) / own('width'));
  if (!(height > 0)) throw new Error('vega produced an <svg> without a size');
  const tag = open[0].replace(/\s(width|height)="[^"]*"/g, '');
  const sized = tag.replace(/^<svg\b/, `<svg width="${size.width}" height="${height}"`);
  return sized + svg.slice(open[0].length);
}

/** SVG → PNG with the plots' fonts and a white page. */
export function rasterizeSvg(svg: string): Uint8Array {
  const png = new Resvg(svg, { background: 'white', font: FONT_OPTIONS }).render().asPng();
  return new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
}

/**
 * SVG → premultiplied RGBA on a transparent page, with the plots' fonts: what alhvr-segment hands
 * inference for preview.png's annotation layer (inference composes that SVG but names no font:
 * the choice stays here).
 */
export function rasterizeSvgLayer(svg: string): RasterLayer {
  const image = new Resvg(svg, { font: FONT_OPTIONS }).render();
  const { pixels } = image;
  return { width: image.width, height: image.height, pixels: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength) };
}

export async function renderPlot(spec: TopLevelSpec, size: PlotSize): Promise<RenderedPlot> {
  const compiled = compile({ ...spec, config: { ...PLOT_CONFIG, ...(spec.config ?? {}) } } as TopLevelSpec).spec;
  const view = new View(parse(compiled), { renderer: 'none', loader: offlineLoader() });
  try {
    const svg = fitRoot(await view.toSVG(), size);
    return { svg, png: rasterizeSvg(svg) };
  } finally {
    view.finalize();
  }
}

/** Render and write PNG (and SVG when asked), each atomically: a watcher never sees half a picture. */
export async function writePlot(spec: TopLevelSpec, size: PlotSize, pngPath: string, svgPath?: string): Promise<RenderedPlot> {
  const plot = await renderPlot(spec, size);
  if (svgPath) await writeFileAtomic(svgPath, plot.svg);
  await writeFileAtomic(pngPath, plot.png);
  return plot;
}
