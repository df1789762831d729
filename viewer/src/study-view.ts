// A study in NiiVue (WebGL2): the image with label, low-confidence heat map and region overlays,
// axial / coronal / sagittal / multiplanar / 3D layouts, window/level and a cursor readout.
import { encodeNiftiParts, REGION_COLORS, type ModelCard, type Volume, type VoxelArray } from '@alhvr/core';
import { Niivue, NVImage, SLICE_TYPE, type NiiVueLocation } from '@niivue/niivue';

export type StudyLayout = 'axial' | 'coronal' | 'sagittal' | 'multiplanar' | 'render';
export type StudyOverlay = 'label' | 'uncertainty' | 'region';

const LAYOUTS: Record<StudyLayout, SLICE_TYPE> = {
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
  multiplanar: SLICE_TYPE.MULTIPLANAR,
  render: SLICE_TYPE.RENDER,
};

/** Below this much doubt (1 − confidence) the heat map is transparent; at UNCERTAINTY_MAX it is brightest. */
const UNCERTAINTY_MIN = 0.02;
const UNCERTAINTY_MAX = 0.5;

/** What the study shows: the image and its segmentation on the image's voxel grid. */
export interface Study {
  image: Volume<VoxelArray>;
  label: Volume<Uint8Array>;
  confidence: Volume<Float32Array>;
  region?: Volume<Uint8Array>;
  /** Grey-level window [low, high], image units. */
  displayWindow: [number, number];
}

/** The values under the cursor, one per layer. */
export interface CursorReadout {
  voxel: [number, number, number];
  intensity: number;
  label: number;
  confidence: number;
  region?: number;
}

/** NIfTI bytes as NiiVue reads them; the voxels are not copied until the Blob reads them. */
async function niftiBuffer(vol: Volume): Promise<ArrayBuffer> {
  const { header, voxels } = encodeNiftiParts(vol);
  return new Blob([header as BlobPart, voxels as BlobPart]).arrayBuffer();
}

function labelColormap(entries: { value: number; name: string; color: readonly number[] }[]) {
  const max = Math.max(...entries.map((e) => e.value));
  const cmap = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: ['background'] };
  for (const e of entries) {
    cmap.R.push(e.color[0]);
    cmap.G.push(e.color[1]);
    cmap.B.push(e.color[2]);
    cmap.A.push(255);
    cmap.I.push(e.value);
    cmap.labels.push(e.name);
  }
  return { ...cmap, min: 0, max };
}

/** Resolves in a later task, so the browser can paint and handle input between steps of work. */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class StudyView {
  readonly nv: Niivue;
  /** The pass of layer uploads under way, if any, and the first layer the next pass must redo. */
  private refreshing?: Promise<void>;
  private pendingFrom?: number;
  private layers: Partial<Record<'image' | StudyOverlay, NVImage>> = {};
  private readonly opacity: Record<StudyOverlay, number> = { label: 0.5, uncertainty: 0.7, region: 0.5 };
  private readonly visible: Record<StudyOverlay, boolean> = { label: true, uncertainty: false, region: false };
  /** Called with the values under the crosshair whenever it moves. */
  onCursor?: (readout: CursorReadout) => void;

  private constructor(nv: Niivue) {
    this.nv = nv;
    nv.onLocationChange = (location) => {
      const values = (location as NiiVueLocation).values;
      const at = (layer: NVImage | undefined) => values.find((v) => v.id === layer?.id)?.value;
      const vox = values[0]?.vox;
      if (!vox || !this.layers.label) return;
      this.onCursor?.({
        voxel: [vox[0], vox[1], vox[2]],
        intensity: at(this.layers.image) ?? NaN,
        label: at(this.layers.label) ?? NaN,
        confidence: 1 - (at(this.layers.uncertainty) ?? NaN),
        region: at(this.layers.region),
      });
    };
  }

  /** NiiVue on `canvas`, in radiological convention (patient right on screen left) with orientation labels. */
  static async create(canvas: HTMLCanvasElement): Promise<StudyView> {
    const nv = new Niivue({
      isRadiologicalConvention: true,
      isOrientationTextVisible: true,
      show3Dcrosshair: true,
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.2, 0.8, 1, 1],
      loadingText: '',
      isColorbar: false,
    });
    await nv.attachToCanvas(canvas);
    nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
    return new StudyView(nv);
  }

  /** Remove every layer: the view is empty (after a failed file, before the next study). */
  clear(): void {
    // NiiVue's removeVolume re-uploads the remaining layers after each removal: drop them all at once.
    this.nv.volumes = [];
    this.nv.back = null;
    this.nv.overlays = [];
    this.layers = {};
    this.pendingFrom = undefined;
    this.nv.drawScene();
  }

  /** Resolves once every change asked for so far is on the GPU and drawn. */
  whenDrawn(): Promise<void> {
    return this.refreshing ?? Promise.resolve();
  }

  /**
   * Re-upload NiiVue's layers from `first` on (0: the image and its overlays; 1: the overlays,
   * which NiiVue composites into one texture, so all of them) and draw. This is NiiVue's
   * updateGLVolume split into one task per layer: on software WebGL one layer takes a few hundred
   * ms, and the page answers input between layers. Changes asked for meanwhile (a dragged slider)
   * merge into one more pass.
   */
  private refresh(first: number): Promise<void> {
    this.pendingFrom = Math.min(this.pendingFrom ?? first, first);
    this.refreshing ??= (async () => {
      try {
        while (this.pendingFrom !== undefined) {
          const from = this.pendingFrom;
          this.pendingFrom = undefined;
          const nv = this.nv;
          nv.refreshColormaps();
          for (let i = from; i < nv.volumes.length; i++) {
            await nextTask();
            if (i >= nv.volumes.length) break; // cleared meanwhile
            nv.refreshLayers(nv.volumes[i], i);
            if (i === 0) nv.furthestVertexFromOrigin = nv.volumeObject3D?.furthestVertexFromOrigin ?? 0;
          }
          nv.drawScene();
        }
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Show a study (replacing the previous one). */
  async show(study: Study, card: Pick<ModelCard, 'classes'>): Promise<void> {
    this.clear();
    const [lo, hi] = study.displayWindow;
    const image = await NVImage.loadFromUrl({ url: 'image.nii', buffer: await niftiBuffer(study.image), colormap: 'gray', cal_min: lo, cal_max: hi, trustCalMinMax: true });
    const label = await NVImage.loadFromUrl({ url: 'label.nii', buffer: await niftiBuffer(study.label) });
    label.setColormapLabel(labelColormap(card.classes.filter((c) => c.value !== 0)));
    // Doubt = 1 − confidence: hot where the model is unsure, transparent where it is sure.
    const doubt = new Float32Array(study.confidence.data.length);
    for (let i = 0; i < doubt.length; i++) doubt[i] = 1 - study.confidence.data[i];
    const uncertainty = await NVImage.loadFromUrl({
      url: 'uncertainty.nii',
      buffer: await niftiBuffer(study.confidence.withData(doubt)),
      colormap: 'warm',
      cal_min: UNCERTAINTY_MIN,
      cal_max: UNCERTAINTY_MAX,
      trustCalMinMax: true,
    });
    this.layers = { image, label, uncertainty };
    if (study.region) {
      const region = await NVImage.loadFromUrl({ url: 'region.nii', buffer: await niftiBuffer(study.region) });
      region.setColormapLabel(
        labelColormap([
          { value: 2, name: 'one student confident', color: REGION_COLORS[2] },
          { value: 3, name: 'neither student confident', color: REGION_COLORS[3] },
        ]),
      );
      this.layers.region = region;
    }
    // All layers in at once, then one pass of uploads, a task per layer (NiiVue's addVolume would
    // re-upload every layer on each add: 10 layer uploads for 4 layers, and the last add's 4 in one task).
    const layers = [image, label, uncertainty, this.layers.region].filter((l): l is NVImage => l !== undefined);
    this.nv.volumes = layers;
    this.nv.back = image;
    this.nv.overlays = layers.slice(1);
    this.setOpacities();
    await this.refresh(0);
  }

  setLayout(layout: StudyLayout): void {
    this.nv.setSliceType(LAYOUTS[layout]);
  }

  /** Grey-level window in image units (NiiVue's right-drag changes it too). */
  setWindow(low: number, high: number): void {
    const image = this.layers.image;
    if (!image || !(high > low)) return;
    image.cal_min = low;
    image.cal_max = high;
    void this.refresh(0);
  }

  get window(): [number, number] | undefined {
    const image = this.layers.image;
    return image ? [image.cal_min ?? 0, image.cal_max ?? 1] : undefined;
  }

  setOverlay(kind: StudyOverlay, state: { visible?: boolean; opacity?: number }): void {
    if (state.visible !== undefined) this.visible[kind] = state.visible;
    if (state.opacity !== undefined) this.opacity[kind] = Math.min(1, Math.max(0, state.opacity));
    this.applyOverlays();
  }

  /** Replace the region layer's voxels (after a new threshold) without reloading the others. */
  updateRegion(region: Volume<Uint8Array>): void {
    const layer = this.layers.region;
    if (!layer || !layer.img) return;
    (layer.img as Uint8Array).set(region.data);
    void this.refresh(1);
  }

  /** Move the crosshair to voxel (i, j, k) of the image. */
  moveTo(voxel: [number, number, number]): void {
    const image = this.layers.image;
    if (!image) return;
    const frac = image.convertVox2Frac([voxel[0], voxel[1], voxel[2]]);
    this.nv.scene.crosshairPos = frac;
    this.nv.createOnLocationChange();
    this.nv.drawScene();
  }

  private applyOverlays(): void {
    this.setOpacities();
    void this.refresh(1);
  }

  private setOpacities(): void {
    for (const kind of ['label', 'uncertainty', 'region'] as const) {
      const layer = this.layers[kind];
      if (layer) layer.opacity = this.visible[kind] ? this.opacity[kind] : 0;
    }
  }
}
