// Demo page: pick a model and a NIfTI image or DICOM series (or a synthetic phantom), segment in a
// Web Worker (the page stays responsive, with progress and cancel), browse slices.
import { canonicalOrientation, spacingFromAffine, type ModelCard } from '@alhvr/core';
import { REGION_COLORS, SliceRenderer, type OverlayKind } from '../src/slice-renderer.js';
import { StudyView, type StudyLayout, type StudyOverlay } from '../src/study-view.js';
import { CaseFilesAbandoned, REGION_THRESHOLD_3D, SegmentationCancelled, SegmentationWorker, type SegmentInput, type WorkerModel, type WorkerSegmentation } from '../src/worker-client.js';

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
const progressBar = byId<HTMLProgressElement>('progress');
const cancelButton = byId<HTMLButtonElement>('cancel');
const runtimeInfo = byId<HTMLSpanElement>('runtime-info');
const readout = byId<HTMLDivElement>('readout');
const windowInfo = byId<HTMLSpanElement>('window-info');
const downloads = byId<HTMLDivElement>('downloads');
const banner = byId<HTMLParagraphElement>('demo-banner');
const gammaSlider = byId<HTMLInputElement>('gamma');
const gammaValue = byId<HTMLSpanElement>('gamma-value');
const gammaNote = byId<HTMLSpanElement>('gamma-note');
const context = canvas.getContext('2d')!;

/** `?threads=N` sets ONNX Runtime's WebAssembly threads (more than one needs COOP/COEP headers). */
const threadsParam = new URLSearchParams(location.search).get('threads');
const numThreads = threadsParam === null ? undefined : Number(threadsParam);
/** `?ep=wasm` keeps ONNX Runtime on WebAssembly; `?ep=webgpu` insists on WebGPU; default: WebGPU when the browser has it. */
const epParam = new URLSearchParams(location.search).get('ep');
const executionProvider = epParam === 'wasm' || epParam === 'webgpu' ? epParam : 'auto';
/** Display width of the longer canvas side, CSS pixels. */
const VIEW_SIZE = 512;

// The worker script sits next to this bundle (see scripts/build-demo.mjs).
const segmenter = new SegmentationWorker(() => new Worker(new URL('worker.js', import.meta.url), { type: 'module' }));
let model: WorkerModel | undefined;
/** NiiVue's view; undefined where the browser has no WebGL2 (the slice canvas still works). */
let studyView: StudyView | undefined;
let result: WorkerSegmentation | undefined;
let renderer: SliceRenderer | undefined;
let frame: ImageData | undefined;

function setState(state: PageState, message: string): void {
  document.body.dataset.state = state;
  statusLine.textContent = message;
  if (state !== 'working') progressBar.hidden = cancelButton.hidden = true;
}

/** Nothing of the previous study stays on screen once another file has failed. */
function clearStudy(): void {
  result = undefined;
  renderer = undefined;
  frame = undefined;
  context.clearRect(0, 0, canvas.width, canvas.height);
  slider.disabled = true;
  sliceNumber.textContent = '';
  summary.replaceChildren();
  showDownloads({}, '');
  gammaSlider.disabled = true;
  gammaValue.textContent = '';
  gammaNote.textContent = '';
  readout.textContent = '';
  studyView?.clear();
}

/** One line, whatever the error carries. */
function fail(err: unknown): void {
  if (err instanceof SegmentationCancelled) {
    setState(model ? 'ready' : 'no-model', 'Segmentation cancelled.');
    return;
  }
  const message = err instanceof Error ? err.message : String(err);
  clearStudy();
  setState('error', message.split('\n')[0]);
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

function showLegend(m: WorkerModel): void {
  legend.replaceChildren();
  const title = document.createElement('strong');
  title.textContent = 'Labels';
  legend.append(title);
  for (const c of m.card.classes) if (c.value !== 0) legend.append(swatch(c.color, `${c.value} ${c.name}`));
  if (m.available.has('region')) {
    const regions = document.createElement('strong');
    regions.textContent = 'Confidence regions';
    legend.append(regions, swatch(REGION_COLORS[2], 'one student confident'), swatch(REGION_COLORS[3], 'neither student confident'));
  }
}

/**
 * Links that save the case folder's files, as alhvr-segment names them (previous links are
 * revoked). Each says "preparing…" until its file is made (the maps are made after the result is
 * shown); a file that arrives after these links were replaced (another study) is dropped.
 */
function showDownloads(files: Record<string, Promise<Uint8Array>>, caseName: string): void {
  for (const a of downloads.querySelectorAll('a')) if (a.href) URL.revokeObjectURL(a.href);
  downloads.replaceChildren();
  delete downloads.dataset.state;
  const names = Object.keys(files);
  if (names.length === 0) return;
  const title = document.createElement('strong');
  title.textContent = 'Download: ';
  downloads.append(title);
  downloads.dataset.state = 'preparing';
  const stem = caseName.replace(/\.(nii\.gz|nii)$/i, '').replace(/[^\p{L}\p{N}._-]+/gu, '_');
  let left = names.length;
  let failed = false;
  for (const name of names) {
    const a = document.createElement('a');
    a.dataset.file = name;
    a.dataset.state = 'preparing';
    a.setAttribute('aria-disabled', 'true');
    a.textContent = `${name} (preparing…)`;
    downloads.append(a);
    const settled = () => {
      if (--left === 0) downloads.dataset.state = failed ? 'failed' : 'ready';
    };
    files[name].then(
      (bytes) => {
        if (!a.isConnected) return;
        a.href = URL.createObjectURL(new Blob([bytes as BlobPart], { type: name.endsWith('.json') ? 'application/json' : 'application/octet-stream' }));
        a.download = `${stem}_${name}`;
        a.textContent = name;
        a.dataset.state = 'ready';
        a.removeAttribute('aria-disabled');
        settled();
      },
      (err: unknown) => {
        if (!a.isConnected) return;
        failed = true;
        a.dataset.state = 'failed';
        a.textContent = `${name} (${err instanceof CaseFilesAbandoned ? err.message : `not made: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`})`;
        settled();
      },
    );
  }
}

const mm = (xs: readonly number[]) => xs.map((x) => Number(x.toFixed(3))).join('×');

/** What the model takes: 2D slices of a size, or 3D windows (patch) at the card's spacing. */
function modelInput(card: ModelCard): string {
  if (card.dimensions !== 3) return `input ${card.input.size.join('×')}`;
  return `3D: windows of ${card.input.size.join('×')} voxels at ${mm(card.targetSpacing ?? [])} mm`;
}

/** The progress unit: a batch of slices for a 2D model, a sliding window for a 3D one. */
const progressUnit = (card: ModelCard) => (card.dimensions === 3 ? 'window' : 'slice');

async function openModel(bytes: Uint8Array, name: string, bundled = false): Promise<void> {
  setState('working', `Opening ${name}…`);
  const opened = await segmenter.open(bytes, name, numThreads, executionProvider);
  model = opened;
  const card = opened.card;
  modelInfo.textContent =
    `${name}: ${card.name} — ${card.description} (${card.classes.length} classes, ${modelInput(card)}, ` +
    `students: ${card.students}, ${opened.threads} thread${opened.threads === 1 ? '' : 's'})`;
  runtimeInfo.dataset.backend = opened.backend;
  runtimeInfo.textContent =
    `ONNX Runtime Web in a worker: ${opened.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'}, ${opened.threads} thread${opened.threads === 1 ? '' : 's'}` +
    `${opened.crossOriginIsolated ? '' : ' (not cross-origin isolated: serve with COOP/COEP headers for more threads)'}` +
    `${opened.fallback ? ` — WebGPU not used: ${opened.fallback}` : ''}; model opened in ${opened.loadMs.toFixed(0)} ms.`;
  showLegend(opened);
  // The toolkit's phantoms: cardiac MR stacks train its 2D models, abdominal CT its 3D ones.
  byId<HTMLSpanElement>('banner-phantoms').textContent = card.dimensions === 3 ? 'abdominal CT' : 'cardiac';
  banner.hidden = !bundled;
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

const fixed = (x: number | null | undefined, digits: number) => (x === null || x === undefined ? '—' : x.toFixed(digits));

/** The report alhvr-segment writes, from the same stats and assessment (computed in the worker by inference's code). */
function showSummary(r: WorkerSegmentation, m: WorkerModel, name: string): void {
  const { triage, quality } = r.assessment;
  const verdict = document.createElement('p');
  verdict.id = 'verdict';
  verdict.dataset.verdict = triage.verdict;
  verdict.textContent =
    `Verdict: ${triage.verdict}${quality ? ` (predicted Dice ${quality.predictedDice.toFixed(2)})` : ''}` +
    `${triage.reasons.length ? ` — ${triage.reasons.join('; ')}` : ''}. Foreground mean confidence ` +
    `${fixed(r.stats.foreground.meanConfidence, 3)}.`;
  const table = document.createElement('table');
  table.id = 'class-table';
  table.innerHTML = '<tr><th>Class</th><th>Voxels</th><th>mL</th><th>Mean confidence</th><th>Reliable</th></tr>';
  const percent = (x: number | undefined) => (x === undefined ? '—' : `${(100 * x).toFixed(1)}%`);
  for (const c of [...r.stats.classes.filter((c) => c.value !== 0), { ...r.stats.foreground, value: -1, name: 'all foreground' }]) {
    const row = table.insertRow();
    row.dataset.class = String(c.value);
    row.insertCell().textContent = c.name;
    Object.assign(row.insertCell(), { className: 'n', textContent: String(c.voxels) });
    Object.assign(row.insertCell(), { className: 'n', textContent: c.volumeMl.toFixed(2) });
    Object.assign(row.insertCell(), { className: 'n', textContent: fixed(c.meanConfidence, 3) });
    Object.assign(row.insertCell(), { className: 'n', textContent: percent(c.regions?.reliable) });
  }
  const use = document.createElement('p');
  use.id = 'intended-use';
  const intended = m.card.intendedUse;
  use.textContent = intended
    ? `Intended use: ${intended.description} (${intended.modality}, ${intended.bodyPart}).`
    : 'The model card states no intended use: the verdict cannot check the input against it.';
  const notes = document.createElement('p');
  const t = r.timings;
  const coverage =
    r.windows !== undefined && r.modelGrid
      ? `${r.windows} window${r.windows === 1 ? '' : 's'} of ${m.card.input.size.join('×')} on the model grid ${r.modelGrid.join('×')} (${mm(m.card.targetSpacing ?? [])} mm)`
      : `${r.slices} slices`;
  notes.textContent =
    `${name}: ${r.image.dims.join('×')} voxels, ${coverage}. Mean confidence ${r.stats.meanConfidence.toFixed(3)}` +
    `${r.gamma ? `, γ ${r.gamma.value.toFixed(3)} (${r.gamma.mode})` : ''}. ` +
    `Preprocess ${t.preprocessMs.toFixed(0)} ms, model ${t.inferenceMs.toFixed(0)} ms, postprocess ${t.postprocessMs.toFixed(0)} ms.`;
  summary.replaceChildren(verdict, table, use, notes);
}

/** Resolves in a later task, so the browser can paint and handle input between steps of work. */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Segments one image (NIfTI bytes, or a DICOM series' files) and shows it. */
async function segment(input: SegmentInput): Promise<void> {
  if (!model) throw new Error('Choose a model (.onnx) first.');
  const name = input.name;
  setState('working', `Segmenting ${name}…`);
  progressBar.hidden = cancelButton.hidden = false;
  progressBar.removeAttribute('value');
  const unit = progressUnit(model.card);
  const r = await segmenter.segment(input, (done, total) => {
    statusLine.textContent = `Segmenting ${name}: ${unit} ${done} of ${total}…`;
    progressBar.max = total;
    progressBar.value = done;
  });
  result = r;
  // Segmentation ends here; display follows (the test and bench time the two apart).
  performance.mark('alhvr-segmented');
  // Display in short tasks, each its own: the page answers input between them.
  await nextTask();
  // A 3D model saw no slices (its result keeps the voxel order): show the planes a 2D model of
  // the card's slice axis would see, so the slice view keeps its radiological convention.
  const orientation = model.card.dimensions === 3 ? canonicalOrientation(r.image.affine, model.card.input.sliceAxis) : r.orientation;
  renderer = new SliceRenderer(r.image, r, orientation, model.card, { window: r.displayWindow });
  canvas.width = renderer.width;
  canvas.height = renderer.height;
  frame = context.createImageData(renderer.width, renderer.height);
  // Show true proportions: canonical plane axes are source axes perm[0] and perm[1].
  const spacing = spacingFromAffine(r.image.affine);
  const mmWidth = renderer.width * spacing[orientation.perm[0]];
  const mmHeight = renderer.height * spacing[orientation.perm[1]];
  const scale = VIEW_SIZE / Math.max(mmWidth, mmHeight);
  canvas.style.width = `${Math.round(mmWidth * scale)}px`;
  canvas.style.height = `${Math.round(mmHeight * scale)}px`;
  slider.max = String(renderer.slices - 1);
  slider.value = String(Math.floor(renderer.slices / 2));
  slider.disabled = false;
  await nextTask();
  draw();
  await nextTask();
  showSummary(r, model, name);
  // The result is on screen; its downloads follow as the second worker makes them.
  performance.mark('alhvr-displayed');
  showDownloads(r.files, name);
  const threeD = model.card.dimensions === 3;
  gammaSlider.disabled = threeD || !r.region || !model.available.has('studentConfidence');
  gammaNote.textContent = threeD && r.region ? `(fixed: ${REGION_THRESHOLD_3D})` : '';
  if (r.gamma) gammaSlider.value = String(r.gamma.value);
  gammaValue.textContent = r.gamma ? r.gamma.value.toFixed(2) : '';
  if (studyView) {
    await nextTask();
    await studyView.show(r, model.card);
    showWindow();
  }
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
    .then((f) => f && segment({ kind: 'nifti', bytes: f.bytes, name: f.name }))
    .catch(fail);
});
byId<HTMLInputElement>('dicom-files').addEventListener('change', (e) => {
  const files = [...((e.target as HTMLInputElement).files ?? [])];
  if (files.length === 0) return;
  const name = `DICOM series (${files.length} files)`;
  setState('working', `Reading ${name}…`);
  Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })))
    .then((files) => segment({ kind: 'dicom', files, name }))
    .catch(fail);
});
byId<HTMLButtonElement>('sample').addEventListener('click', () => {
  // The worker generates the phantom too: nothing heavy runs on this thread.
  segment({ kind: 'phantom', seed: 1, index: 0, name: 'phantom-sample.nii.gz' }).catch(fail);
});
cancelButton.addEventListener('click', () => segmenter.cancel());
function showWindow(): void {
  const w = studyView?.window;
  windowInfo.textContent = w ? `${w[0].toFixed(0)} – ${w[1].toFixed(0)}` : '';
}

function describeCursor(c: { voxel: number[]; intensity: number; label: number; confidence: number; region?: number }): string {
  const name = model?.card.classes.find((k) => k.value === c.label)?.name ?? String(c.label);
  const regions: Record<number, string> = { 1: 'both students confident', 2: 'one student confident', 3: 'neither student confident' };
  return (
    `voxel ${c.voxel.join(', ')} · intensity ${Number.isInteger(c.intensity) ? c.intensity : c.intensity.toFixed(2)} · ${name} · ` +
    `confidence ${c.confidence.toFixed(3)}${c.region === undefined ? '' : ` · ${regions[c.region] ?? 'region ' + c.region}`}`
  );
}

async function startStudyView(): Promise<void> {
  try {
    studyView = await StudyView.create(byId<HTMLCanvasElement>('study-view'));
  } catch (err) {
    byId<HTMLDivElement>('study').textContent = `The 3-plane view needs WebGL2 (${err instanceof Error ? err.message : String(err)}); the slice view below still works.`;
    return;
  }
  studyView.onCursor = (c) => (readout.textContent = describeCursor(c));
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="layout"]')) {
    radio.addEventListener('change', () => studyView?.setLayout(radio.value as StudyLayout));
  }
  for (const button of document.querySelectorAll<HTMLButtonElement>('button[data-window]')) {
    button.addEventListener('click', () => {
      if (!result) return;
      const [lo, hi] = result.displayWindow;
      const centre = (lo + hi) / 2;
      const half = ((hi - lo) / 2) * ({ auto: 1, wide: 2, narrow: 0.5 } as Record<string, number>)[button.dataset.window ?? 'auto'];
      studyView?.setWindow(centre - half, centre + half);
      showWindow();
    });
  }
  byId<HTMLCanvasElement>('study-view').addEventListener('mouseup', showWindow);
  for (const kind of ['label', 'uncertainty', 'region'] as StudyOverlay[]) {
    const box = byId<HTMLInputElement>(`show-${kind}`);
    const opacity = byId<HTMLInputElement>(`opacity-${kind}`);
    const apply = () => studyView?.setOverlay(kind, { visible: box.checked, opacity: Number(opacity.value) / 100 });
    box.addEventListener('change', apply);
    opacity.addEventListener('input', apply);
  }
}

/** Recompute the region map at γ in the worker and show it; resolves once drawn. */
async function setRegionThreshold(gamma: number): Promise<void> {
  const r = result;
  if (!r?.region) return;
  const region = await segmenter.regionsAt(gamma);
  if (result !== r) return; // another study arrived meanwhile
  r.region = r.label.withData(region);
  gammaValue.textContent = gamma.toFixed(2);
  draw();
  studyView?.updateRegion(r.region);
}

// One threshold request at a time; a drag only asks again for the latest value.
let gammaBusy = false;
let gammaWanted: number | undefined;
gammaSlider.addEventListener('input', () => {
  gammaWanted = Number(gammaSlider.value);
  if (gammaBusy) return;
  gammaBusy = true;
  const next = (): Promise<void> => {
    const g = gammaWanted!;
    gammaWanted = undefined;
    return setRegionThreshold(g).then(() => (gammaWanted === undefined ? undefined : next()));
  };
  next()
    .catch(fail)
    .finally(() => (gammaBusy = false));
});

/** Every file under a dropped entry (folders recursively). */
async function entryFiles(entry: FileSystemEntry): Promise<File[]> {
  if (entry.isFile) return [await new Promise<File>((ok, no) => (entry as FileSystemFileEntry).file(ok, no))];
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const out: File[] = [];
  // readEntries returns the folder in chunks; an empty chunk ends it.
  for (;;) {
    const chunk = await new Promise<FileSystemEntry[]>((ok, no) => reader.readEntries(ok, no));
    if (chunk.length === 0) return out;
    for (const child of chunk) out.push(...(await entryFiles(child)));
  }
}

/** A drop of one NIfTI file segments it; anything else (files, folders) is read as one DICOM series. */
async function openDropped(items: DataTransferItemList | undefined, fallback: File[]): Promise<void> {
  const entries = [...(items ?? [])].map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  const files = entries.length ? (await Promise.all(entries.map(entryFiles))).flat() : fallback;
  if (files.length === 0) return;
  if (files.length === 1 && /\.nii(\.gz)?$/i.test(files[0].name)) {
    setState('working', `Reading ${files[0].name}…`);
    await segment({ kind: 'nifti', bytes: new Uint8Array(await files[0].arrayBuffer()), name: files[0].name });
    return;
  }
  const name = `DICOM series (${files.length} files)`;
  setState('working', `Reading ${name}…`);
  await segment({ kind: 'dicom', files: await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) }))), name });
}

document.addEventListener('dragover', (e) => {
  e.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  const files = [...(e.dataTransfer?.files ?? [])];
  // Entries must be taken before the first await: the drop's data is gone after the event.
  const items = e.dataTransfer?.items;
  const entries = items ? [...items] : undefined;
  openDropped(entries as unknown as DataTransferItemList | undefined, files).catch(fail);
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
  setRegionThreshold,
  /** For tests: hold (or release) the making of case files, to see the page between a result and its downloads. */
  holdDownloads(hold: boolean) {
    segmenter.holdCaseFiles(hold);
  },
  get studyView() {
    return studyView;
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
  await openModel(new Uint8Array(await response.arrayBuffer()), 'model.onnx', true);
}

startStudyView()
  .then(start)
  .catch(fail);
