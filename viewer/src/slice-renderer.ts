import { REGION_COLORS, displayWindow as windowOf, type ModelCard, type Orientation, type Volume, type VoxelArray } from '@alhvr/core';
import { canonicalGrid, gatherPlane, type CanonicalGrid } from '@alhvr/inference';

export type OverlayKind = 'label' | 'region' | 'none';

/** The toolkit's region palette (core/src/display.ts): the same colours as preview.png. */
export { REGION_COLORS };
const REGION_COLOR_MAP: ReadonlyMap<number, readonly [number, number, number]> = new Map(
  Object.entries(REGION_COLORS).map(([value, color]) => [Number(value), color]),
);

export interface SliceRendererOptions {
  /** Grey-level window [low, high] in image units. Default: `displayWindow(image)`. */
  window?: [number, number];
  /** Overlay opacity, 0–1. Default 0.5. */
  opacity?: number;
}

/** The toolkit's grey-level window (core/src/display.ts) of an image: the same rule as preview.png. */
export function displayWindow(image: Volume<VoxelArray>): [number, number] {
  return windowOf(image.data);
}

/**
 * Draws slices of an image with its segmentation, in the model's slice orientation (the planes
 * the model saw), in radiological convention: patient right on the screen's left, anterior
 * (or superior) up. Output is RGBA, width × height, ready for `ImageData`.
 */
export class SliceRenderer {
  readonly width: number;
  readonly height: number;
  readonly slices: number;
  private readonly grid: CanonicalGrid;
  private readonly window: [number, number];
  private overlayOpacity: number;
  private readonly classColors = new Map<number, readonly [number, number, number]>();
  // Planes reused by every render: slider drags redraw many times a second.
  private readonly grey: Float32Array;
  private readonly overlay: Uint8Array;

  constructor(
    private readonly image: Volume<VoxelArray>,
    private readonly segmentation: { label: Volume<Uint8Array>; region?: Volume<Uint8Array> },
    orientation: Orientation,
    card: Pick<ModelCard, 'classes'>,
    opts: SliceRendererOptions = {},
  ) {
    for (const v of [segmentation.label, segmentation.region]) {
      if (v && v.data.length !== image.voxelCount) throw new Error(`segmentation has ${v.data.length} voxels, the image ${image.voxelCount}`);
    }
    this.grid = canonicalGrid(image.dims, orientation);
    [this.width, this.height, this.slices] = this.grid.dims;
    this.window = opts.window ?? displayWindow(image);
    this.overlayOpacity = 0.5;
    this.opacity = opts.opacity ?? 0.5;
    // Background is never painted, whatever colour the card gives it.
    for (const c of card.classes) if (c.value !== 0) this.classColors.set(c.value, c.color);
    this.grey = new Float32Array(this.width * this.height);
    this.overlay = new Uint8Array(this.width * this.height);
  }

  /** Overlay opacity, 0–1 (clamped). */
  get opacity(): number {
    return this.overlayOpacity;
  }

  set opacity(value: number) {
    this.overlayOpacity = Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0.5;
  }

  /** Slice k (0 … slices − 1) into `out` (length 4 · width · height; allocated when omitted). */
  render(k: number, overlay: OverlayKind, out = new Uint8ClampedArray(4 * this.width * this.height)): Uint8ClampedArray {
    if (!Number.isInteger(k) || k < 0 || k >= this.slices) throw new RangeError(`slice ${k} is outside 0…${this.slices - 1}`);
    if (out.length !== 4 * this.width * this.height) throw new RangeError(`output holds ${out.length} bytes, needs ${4 * this.width * this.height}`);
    const { width: w, height: h, grey, opacity } = this;
    const [lo, hi] = this.window;
    const scale = 255 / (hi - lo);
    gatherPlane(this.grid, this.image.data, k, grey);
    const source = overlay === 'label' ? this.segmentation.label : overlay === 'region' ? this.segmentation.region : undefined;
    const colors = overlay === 'label' ? this.classColors : REGION_COLOR_MAP;
    if (source) gatherPlane(this.grid, source.data, k, this.overlay);
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) {
        const p = j * w + i;
        const g = Math.min(255, Math.max(0, (grey[p] - lo) * scale));
        // Canonical i points to patient right and j anterior/superior: flip both for display.
        const q = 4 * ((h - 1 - j) * w + (w - 1 - i));
        const color = source ? colors.get(this.overlay[p]) : undefined;
        if (color) {
          out[q] = g + (color[0] - g) * opacity;
          out[q + 1] = g + (color[1] - g) * opacity;
          out[q + 2] = g + (color[2] - g) * opacity;
        } else {
          out[q] = out[q + 1] = out[q + 2] = g;
        }
        out[q + 3] = 255;
      }
    }
    return out;
  }
}
