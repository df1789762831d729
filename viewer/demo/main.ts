// Demo page: pick a model and a NIfTI image or DICOM series (or a synthetic phantom), segment in the page, browse slices.
import { encodeNifti, generatePhantomCase, spacingFromAffine, type DicomBytesFile } from '@alhvr/core';
import { loadModel, REGION_COLORS, segmentDicom, segmentNifti, SliceRenderer, type OverlayKind, type SegmentNiftiResult, type ViewerModel } from '../src/index.js';

type PageState = 'starting' | 'no-model' | 'ready' | 'working' | 'segmented' | 'error';

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const statusLine = byId<HTMLDivElement>('status');
const modelInfo = byId<HTMLSpanElement>('model-info');
const canvas = byId<HTMLCanvasElement>('view');
const slider = byId<HTMLInputElement>('slice');
const sliceNumber = byId<HTMLSpanElement>('slice-number');
const opacitySlider = byId<HTMLInputElement>('opacity');
const legend = byId<HTMLDivElement>('legend');
const summary = byId<HTMLDivElement>('summary');
const context = canvas.getContext('2d')!;

/** `?threads=N` sets ONNX Runtime's WebAssembly threads (more than one needs COOP/COEP headers). */
const threadsParam = new URLSearchParams(location.search).get('threads');
const numThreads = threadsParam === null ? undefined : Number(threadsParam);
/** Display width of the longer canvas side, CSS pixels. */
const VIEW_SIZE = 512;

let model: ViewerModel | undefined;
let result: SegmentNiftiResult | undefined;
let renderer: SliceRenderer | undefined;
let frame: ImageData | undefined;

function setState(state: PageState, message: string): void {
  document.body.dataset.state = state;
  statusLine.textContent = message;
}

function fail(err: unknown): void {
  setState('error', err instanceof Error ? err.message : String(err));
}

function overlayChoice(): OverlayKind {
  return (document.querySelector<HTMLInputElement>('input[name="overlay"]:checked')?.value ?? 'label') as OverlayKind;
}

function swatch(color: readonly number[], text: string): HTMLDivElement {
  const row = document.createElement('div');
  const box = document.createElement('span');
  box.className = 'swatch';
  box.style.background = `rgb(${color.join(',')})`;
  row.append(box, text);
  return row;
}

function showLegend(m: ViewerModel): void {
  legend.replaceChildren();
  const title = document.createElement('strong');
  title.textContent = 'Labels';
  legend.append(title);
  for (const c of m.card.classes) if (c.value !== 0) legend.append(swatch(c.color, `${c.value} ${c.name}`));
  if (m.model.available.has('region')) {
    const regions = document.createElement('strong');
    regions.textContent = 'Confidence regions';
    legend.append(regions, swatch(REGION_COLORS[2], 'one student confident'), swatch(REGION_COLORS[3], 'neither student confident'));
  }
}

async function openModel(bytes: Uint8Array, name: string): Promise<void> {
  setState('working', `Opening ${name}…`);
  const opened = await loadModel(bytes, { numThreads, source: name });
  await model?.release();
  model = opened;
  const card = opened.card;
  modelInfo.textContent =
    `${name}: ${card.name} — ${card.description} (${card.classes.length} classes, input ${card.input.size.join('×')}, ` +
    `students: ${card.students}, ${opened.threads} thread${opened.threads === 1 ? '' : 's'})`;
  showLegend(opened);
  setState('ready', 'Model ready. Choose a NIfTI file or the phantom sample.');
}

function draw(): void {
  if (!renderer || !frame) return;
  const k = Number(slider.value);
  renderer.opacity = Number(opacitySlider.value) / 100;
  renderer.render(k, overlayChoice(), frame.data);
  context.putImageData(frame, 0, 0);
  sliceNumber.textContent = `${k + 1} / ${renderer.slices}`;
}

function showSummary(r: SegmentNiftiResult, m: ViewerModel, name: string): void {
  const spacing = spacingFromAffine(r.image.affine);
  const voxelMl = (spacing[0] * spacing[1] * spacing[2]) / 1000;
  const counts = new Map<number, number>();
  for (const v of r.label.data) counts.set(v, (counts.get(v) ?? 0) + 1);
  let confidenceSum = 0;
  for (const c of r.confidence.data) confidenceSum += c;
  const table = document.createElement('table');
  table.innerHTML = '<tr><th>Class</th><th>Voxels</th><th>mL</th></tr>';
  for (const c of m.card.classes) {
    if (c.value === 0) continue;
    const n = counts.get(c.value) ?? 0;
    const row = table.insertRow();
    row.insertCell().textContent = c.name;
    Object.assign(row.insertCell(), { className: 'n', textContent: String(n) });
    Object.assign(row.insertCell(), { className: 'n', textContent: (n * voxelMl).toFixed(2) });
  }
  const notes = document.createElement('p');
  const t = r.timings;
  const { triage, quality } = r.assessment;
  const verdict = document.createElement('p');
  verdict.id = 'verdict';
  verdict.dataset.verdict = triage.verdict;
  verdict.textContent =
    `Verdict: ${triage.verdict}${quality ? ` (predicted Dice ${quality.predictedDice.toFixed(2)})` : ''}` +
    `${triage.reasons.length ? ` — ${triage.reasons.join('; ')}` : ''}. Foreground mean confidence ` +
    `${r.stats.foreground.meanConfidence === null ? '—' : r.stats.foreground.meanConfidence.toFixed(3)}.`;
  notes.textContent =
    `${name}: ${r.image.dims.join('×')} voxels, ${r.slices} slices. Mean confidence ${(confidenceSum / r.confidence.data.length).toFixed(3)}` +
    `${r.gamma ? `, γ ${r.gamma.value.toFixed(3)} (${r.gamma.mode})` : ''}. ` +
    `Preprocess ${t.preprocessMs.toFixed(0)} ms, model ${t.inferenceMs.toFixed(0)} ms, postprocess ${t.postprocessMs.toFixed(0)} ms.`;
  summary.replaceChildren(verdict, table, notes);
}

/** Segments one image (NIfTI bytes, or a DICOM series' files) and shows it. */
async function segment(input: { nifti: Uint8Array } | { dicom: DicomBytesFile[] }, name: string): Promise<void> {
  if (!model) throw new Error('Choose a model (.onnx) first.');
  setState('working', `Segmenting ${name}…`);
  const opts = {
    path: name,
    onProgress: (done: number, total: number) => (statusLine.textContent = `Segmenting ${name}: slice ${done} of ${total}…`),
  };
  const r = 'nifti' in input ? await segmentNifti(input.nifti, model, opts) : await segmentDicom(input.dicom, model, opts);
  result = r;
  renderer = new SliceRenderer(r.image, r, r.orientation, model.card);
  canvas.width = renderer.width;
  canvas.height = renderer.height;
  frame = context.createImageData(renderer.width, renderer.height);
  // Show true proportions: canonical plane axes are source axes perm[0] and perm[1].
  const spacing = spacingFromAffine(r.image.affine);
  const mmWidth = renderer.width * spacing[r.orientation.perm[0]];
  const mmHeight = renderer.height * spacing[r.orientation.perm[1]];
  const scale = VIEW_SIZE / Math.max(mmWidth, mmHeight);
  canvas.style.width = `${Math.round(mmWidth * scale)}px`;
  canvas.style.height = `${Math.round(mmHeight * scale)}px`;
  slider.max = String(renderer.slices - 1);
  slider.value = String(Math.floor(renderer.slices / 2));
  slider.disabled = false;
  draw();
  showSummary(r, model, name);
  setState('segmented', `Segmented ${name}.`);
}

/** Marks the page busy before the first await, so nothing observes the previous state after a choice. */
async function readFile(input: HTMLInputElement): Promise<{ bytes: Uint8Array; name: string } | undefined> {
  const file = input.files?.[0];
  if (!file) return undefined;
  setState('working', `Reading ${file.name}…`);
  return { bytes: new Uint8Array(await file.arrayBuffer()), name: file.name };
}

byId<HTMLInputElement>('model-file').addEventListener('change', (e) => {
  readFile(e.target as HTMLInputElement)
    .then((f) => f && openModel(f.bytes, f.name))
    .catch(fail);
});
byId<HTMLInputElement>('nifti-file').addEventListener('change', (e) => {
  readFile(e.target as HTMLInputElement)
    .then((f) => f && segment({ nifti: f.bytes }, f.name))
    .catch(fail);
});
byId<HTMLInputElement>('dicom-files').addEventListener('change', (e) => {
  const files = [...((e.target as HTMLInputElement).files ?? [])];
  if (files.length === 0) return;
  const name = `DICOM series (${files.length} files)`;
  setState('working', `Reading ${name}…`);
  Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })))
    .then((dicom) => segment({ dicom }, name))
    .catch(fail);
});
byId<HTMLButtonElement>('sample').addEventListener('click', () => {
  setState('working', 'Generating a synthetic cardiac phantom…');
  // Let the status paint before the synchronous phantom generation.
  setTimeout(() => {
    Promise.resolve()
      .then(() => segment({ nifti: encodeNifti(generatePhantomCase({ seed: 1, index: 0 }).image) }, 'phantom-sample.nii.gz'))
      .catch(fail);
  }, 0);
});
slider.addEventListener('input', draw);
opacitySlider.addEventListener('input', draw);
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="overlay"]')) radio.addEventListener('change', draw);

/** For scripting the page (console, automated tests): current model, result and slice. */
(globalThis as unknown as { alhvrDemo: unknown }).alhvrDemo = {
  get model() {
    return model;
  },
  get result() {
    return result;
  },
  get slice() {
    return Number(slider.value);
  },
};

async function start(): Promise<void> {
  // The build copies the shipped model here; pages without one ask for a file.
  const response = await fetch('model.onnx');
  if (!response.ok) {
    modelInfo.textContent = 'No model is bundled with this page.';
    setState('no-model', 'Choose an exported ALHVR model (.onnx) to start.');
    return;
  }
  await openModel(new Uint8Array(await response.arrayBuffer()), 'model.onnx');
}

start().catch(fail);
