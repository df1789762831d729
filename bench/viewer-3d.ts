/**
 * A 3D model in the viewer demo (headless Chromium, onnxruntime-web on WebAssembly in the page's
 * Web Worker) on one clinical-size CT, next to inference's Node pipeline (onnxruntime-node) on the
 * same model and volume in the same run: does a 512×512×S CT fit in the browser, and what does a
 * window cost there?
 *
 * Input: a 512×512×S int16 CT (abdominal CT phantom anatomy at 512², its slices stretched to S at
 * 0.75×0.75×1.5 mm, as bench/segment-3d.ts builds it). Model: a two-student VNet3d at tiny widths
 * (2…8; random weights: the memory the pipeline holds is set by the grid, not by the widths) with
 * a 96³ patch and the card's target spacing, so the run measures the viewer's volumes rather than
 * the convolutions (bench/conv3d-kernels.ts and bench/segment-3d.ts measure those).
 *
 * Measured, in the browser: wall time from file chosen to result in the page (segmentation: the
 * worker reads, resamples, slides the windows, makes the case files and sends them) and then to
 * the study drawn (NiiVue uploads); model time per window (the pipeline's inferenceMs / windows);
 * peak resident memory of the browser's processes (all of Chromium's processes this script
 * started, /proc sampled every 200 ms) during segmentation and during display, and their CPU time
 * (utime + stime) during segmentation; the longest main-thread task during segmentation. In Node:
 * segmentVolume's model time per window and its CPU time (process.cpuUsage, one thread).
 *
 * Also measured: how long the page takes from "segmentation done" (the worker's pipeline returned)
 * to showing the result (verdict and slice view), to the study in NiiVue, and to every download
 * ready to save (resultToDisplay, one entry per --label, so a "before" run of an older viewer and
 * an "after" run of the current one sit side by side), in wall time and the browser's CPU seconds.
 *
 *   npx tsx bench/viewer-3d.ts [--slices 300] [--threads 1] [--target-spacing 1.5,1.5,3] [--label after] [--skip-node] [--out FILE] [--viewer DIR]
 *
 * Writes bench/results/viewer-3d.json (or --out), keeping other labels' resultToDisplay entries. The machine is shared: only same-run ratios mean much.
 */
import '@alhvr/inference/no-telemetry';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALHVR_3D_RECIPE_PREPROCESSING, decodeNifti, encodeNifti, generateAbdomenCtCase, resampledDims, Rng, scalingAffine, Volume, type Dims3 } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';
import { exportOnnx, type ExportCard } from '@alhvr/export';
import { selectBackend, VNet3d } from '@alhvr/training';
import { buildDemo as buildCurrentDemo } from '../viewer/scripts/build-demo.mjs';
import { WATCH_SEGMENTATION, openViewerPage, segmentInNode } from '../test/viewer-harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const argOf = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const slices = Number(argOf('slices', '300'));
const threads = Number(argOf('threads', '1'));
const target = argOf('target-spacing', '1.5,1.5,3').split(',').map(Number) as [number, number, number];
/** Which viewer the result-to-display entry describes ("before" / "after" a change); other labels' entries stay in the file. */
const label = argOf('label', 'current');
/**
 * Another checkout's viewer (e.g. an older commit, `git archive <commit> core inference viewer
 * package.json | tar -x -C DIR` with DIR/node_modules linked to this repository's) to measure
 * instead of this one: its scripts/build-demo.mjs builds the page.
 */
const otherViewer = process.argv.includes('--viewer') ? resolve(argOf('viewer', '')) : undefined;
const buildDemo: typeof buildCurrentDemo = otherViewer
  ? ((await import(join(otherViewer, 'viewer', 'scripts', 'build-demo.mjs'))) as { buildDemo: typeof buildCurrentDemo }).buildDemo
  : buildCurrentDemo;
/** Skip the Node pipeline (its per-window time and CPU): the browser part alone. */
const skipNode = process.argv.includes('--skip-node');
const WIDTHS = [2, 4, 4, 8, 8];
const PATCH = 96;
const CLASSES = ['background', 'liver', 'kidney', 'spleen', 'pancreas'];
const SOURCE_SPACING: [number, number, number] = [0.75, 0.75, 1.5];
const MB = 1024 * 1024;
const PAGE_SIZE = 4096;
const TICKS = 100; // USER_HZ on Linux

/**
 * Page script: epoch milliseconds (performance.timeOrigin + now) at which the page first shows the
 * last model call's progress ("window n of n"), the verdict (the summary is drawn after the slice
 * view), the study in NiiVue (state "segmented"), and every download link ready to save (an href;
 * none still preparing), and every main-thread task of 50 ms or more (start, duration). Works on
 * pages that build the downloads before the result and after it.
 */
const WATCH_RESULT_TIMELINE = `(() => {
  window.__timeline = {};
  window.__tasks = [];
  const now = () => performance.timeOrigin + performance.now();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__tasks.push([performance.timeOrigin + e.startTime, e.duration]);
  }).observe({ type: 'longtask' });
  const mark = (name, met) => { if (met && window.__timeline[name] === undefined) window.__timeline[name] = now(); };
  new MutationObserver(() => {
    const m = /window (\\d+) of (\\d+)/.exec(document.getElementById('status').textContent);
    mark('lastWindow', m !== null && m[1] === m[2]);
    mark('verdict', document.getElementById('verdict') !== null);
    mark('studyShown', document.body.dataset.state === 'segmented');
    const links = [...document.querySelectorAll('#downloads a[data-file]')];
    mark('downloadsReady', links.length > 0 && links.every((a) => a.hasAttribute('href')));
  }).observe(document.body, { childList: true, characterData: true, subtree: true, attributes: true });
})()`;

const log = (m: string) => process.stderr.write(`${m}\n`);
const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-viewer-3d-'));

/** Every process descended from this one (Chromium and its renderer, GPU and utility processes). */
function descendants(): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended meanwhile
    }
  }
  const out: number[] = [];
  const frontier = [process.pid];
  while (frontier.length) {
    const p = frontier.pop()!;
    for (const [child, ppid] of parent) {
      if (ppid !== p) continue;
      out.push(child);
      frontier.push(child);
    }
  }
  return out;
}

/** Resident MB and CPU seconds (user + system) summed over the browser's processes. */
function browserUsage(): { rssMb: number; cpuSeconds: number } {
  let pages = 0;
  let ticks = 0;
  for (const pid of descendants()) {
    try {
      pages += Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // ended meanwhile
    }
  }
  return { rssMb: (pages * PAGE_SIZE) / MB, cpuSeconds: ticks / TICKS };
}

try {
  await selectBackend('cpu', { threads: 1, log: () => {} });
  const students = [1, 2].map((seed) => new VNet3d({ numClasses: CLASSES.length, widths: WIDTHS, dropout: 0 }, new Rng(seed)));
  const card: ExportCard = {
    name: 'bench-ct-viewer',
    description: 'Benchmark model: random weights at tiny widths (not trained).',
    classes: CLASSES.map((name, value) => ({ value, name, color: value === 0 ? [0, 0, 0] : [200, 40 * value, 60] })),
    dimensions: 3,
    input: { size: [PATCH, PATCH, PATCH], sliceAxis: 'largest-spacing' },
    targetSpacing: target,
    normalisation: { kind: 'ct-foreground', low: -160, high: 240, mean: 60, std: 70 },
    resize: ALHVR_3D_RECIPE_PREPROCESSING.resize,
    regions: { gamma: 0.9, beta: 0.7, gammaSource: 'default' },
    training: { method: 'unknown', iterations: 0 },
  };
  const modelPath = join(dir, 'model.onnx');
  writeFileSync(modelPath, exportOnnx(students, card).onnx);
  students.forEach((s) => s.dispose());

  const phantom = generateAbdomenCtCase({ seed: 2026, index: 0, matrix: 512 }).image;
  const [nx, ny, nz] = phantom.dims;
  const dims: Dims3 = [nx, ny, slices];
  const data = new Int16Array(nx * ny * slices);
  for (let k = 0; k < slices; k++) {
    const from = Math.min(nz - 1, Math.floor((k * nz) / slices));
    for (let p = 0; p < nx * ny; p++) data[k * nx * ny + p] = phantom.data[from * nx * ny + p];
  }
  const niftiBytes = encodeNifti(new Volume({ data, dims, affine: scalingAffine(SOURCE_SPACING), meta: { path: 'ct.nii.gz' } }), { datatype: 'int16' });
  log(`CT ${dims.join('×')} int16: ${(niftiBytes.length / MB).toFixed(0)} MB .nii.gz`);
  // Handed to the page by path, as a user's file picker does (Playwright copies no buffer over 50 MB).
  const niftiPath = join(dir, 'ct.nii.gz');
  writeFileSync(niftiPath, niftiBytes);

  // Node first, in this process: per-window model time and one thread's CPU time.
  const node = skipNode ? undefined : await segmentInNode(modelPath, decodeNifti(niftiBytes, { path: 'ct.nii.gz' }), { threads });
  if (node) log(`node: ${node.result.windows} windows, ${(node.result.timings.inferenceMs / node.result.windows!).toFixed(0)} ms model time per window`);

  await buildDemo({ outDir: join(dir, 'site'), model: modelPath, compress: false });
  const viewer = await openViewerPage(dir, `/site/index.html?threads=${threads}`);
  try {
    const page = viewer.page;
    // Long tasks while segmenting, as test/viewer-browser.test.ts counts them; and when the result shows.
    await page.evaluate(WATCH_SEGMENTATION);
    await page.evaluate(WATCH_RESULT_TIMELINE);
    const idle = browserUsage();
    log(`browser idle with the model open: ${idle.rssMb.toFixed(0)} MB resident`);
    let phase: 'segmenting' | 'display' | 'done' = 'segmenting';
    const peak = { segmenting: idle.rssMb, display: 0 };
    let cpuAtSegmented = idle.cpuSeconds;
    /** [epoch ms, browser CPU seconds]: to read the CPU spent between the page's timeline events. */
    const cpuSamples: [number, number][] = [];
    const sampler = setInterval(() => {
      const u = browserUsage();
      cpuSamples.push([Date.now(), u.cpuSeconds]);
      if (phase === 'segmenting') {
        peak.segmenting = Math.max(peak.segmenting, u.rssMb);
        cpuAtSegmented = u.cpuSeconds;
      } else if (phase === 'display') peak.display = Math.max(peak.display, u.rssMb);
    }, 200);
    const tPick = performance.now();
    await page.setInputFiles('#nifti-file', niftiPath);
    // The page marks "alhvr-segmented" when the worker's result arrives; display follows.
    await page.waitForFunction(() => performance.getEntriesByName('alhvr-segmented').length > 0 || document.body.dataset.state === 'error', undefined, { timeout: 3_600_000, polling: 200 });
    const segmentedSeconds = (performance.now() - tPick) / 1000;
    phase = 'display';
    await page.waitForFunction(() => ['segmented', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 3_600_000, polling: 200 });
    const shownSeconds = (performance.now() - tPick) / 1000;
    if ((await page.evaluate('document.body.dataset.state')) === 'error') throw new Error(`page: ${await page.textContent('#status')}`);
    await page.waitForFunction('window.__timeline.downloadsReady !== undefined || document.body.dataset.state === "error"', undefined, { timeout: 3_600_000, polling: 200 });
    phase = 'done';
    clearInterval(sampler);
    if ((await page.evaluate('document.body.dataset.state')) === 'error') throw new Error(`page: ${await page.textContent('#status')}`);
    const r = (await page.evaluate(
      '({ timings: alhvrDemo.result.timings, windows: alhvrDemo.result.windows, modelGrid: alhvrDemo.result.modelGrid, backend: alhvrDemo.model.backend, threads: alhvrDemo.model.threads, longest: window.__longest, timeline: window.__timeline, tasks: window.__tasks, segmentedAt: alhvrDemo.result.segmentedAt })',
    )) as {
      timings: { preprocessMs: number; inferenceMs: number; postprocessMs: number };
      windows: number;
      modelGrid: number[];
      backend: string;
      threads: number;
      longest: number;
      timeline: { lastWindow: number; verdict: number; studyShown: number; downloadsReady: number };
      tasks: [number, number][];
      /** Epoch ms at which the worker's pipeline returned (pages that post the result before the downloads). */
      segmentedAt?: number;
    };
    const cpuAt = (t: number) => (cpuSamples.filter(([at]) => at <= t).at(-1) ?? cpuSamples[0])[1];
    const tl = r.timeline;
    // Without the worker's own timestamp: the last window's progress plus the pipeline's postprocess (carrying the maps back, stats).
    const pipelineDone = r.segmentedAt ?? tl.lastWindow + r.timings.postprocessMs;
    const resultToDisplay = {
      gitHead: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here }).toString().trim(),
      viewer: otherViewer ? `checkout in ${otherViewer} (--viewer)` : 'this working tree',
      pipelineDoneFrom: r.segmentedAt === undefined ? "estimate: the last window's progress on the page + the pipeline's postprocessMs" : "the worker's timestamp when segmentation returned",
      msSegmentationDoneToVerdictShown: tl.verdict - pipelineDone,
      msSegmentationDoneToStudyShownInNiiVue: tl.studyShown - pipelineDone,
      msSegmentationDoneToAllDownloadsReady: tl.downloadsReady - pipelineDone,
      msLastWindowToVerdictShown: tl.verdict - tl.lastWindow,
      browserCpuSecondsLastWindowToVerdictShown: cpuAt(tl.verdict) - cpuAt(tl.lastWindow),
      /** Main-thread tasks of 50 ms or more from the last window's progress until the verdict shows: [ms after the last window, duration ms]. */
      longTasksLastWindowToVerdict: r.tasks.filter(([at]) => at >= tl.lastWindow && at <= tl.verdict).map(([at, d]) => [Math.round(at - tl.lastWindow), Math.round(d)]),
      browserCpuSecondsLastWindowToAllDownloadsReady: cpuAt(tl.downloadsReady) - cpuAt(tl.lastWindow),
      postprocessMs: r.timings.postprocessMs,
      loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
      createdAt: new Date().toISOString(),
    };
    log(`${label}: segmentation done → verdict shown ${(resultToDisplay.msSegmentationDoneToVerdictShown / 1000).toFixed(1)} s, → downloads ready ${(resultToDisplay.msSegmentationDoneToAllDownloadsReady / 1000).toFixed(1)} s`);
    const resultsPath = resolve(argOf('out', join(here, 'results', 'viewer-3d.json')));
    const previous = existsSync(resultsPath) ? (JSON.parse(readFileSync(resultsPath, 'utf8')) as Record<string, unknown>) : {};
    const grid = resampledDims(dims, SOURCE_SPACING, target);
    const gridVoxels = grid[0] * grid[1] * grid[2];
    const sourceVoxels = dims[0] * dims[1] * dims[2];
    const result = {
      input: `${dims.join('x')} int16 CT (.nii.gz, ${(niftiBytes.length / MB).toFixed(0)} MB, abdominal CT phantom anatomy) at ${SOURCE_SPACING.join('x')} mm`,
      model: `two-student VNet3d widths [${WIDTHS}], ${CLASSES.length} classes, patch ${PATCH}^3, fp32, random weights`,
      targetSpacingMm: target,
      modelGrid: grid,
      windows: r.windows,
      threads,
      browser: {
        runtime: `onnxruntime-web ${r.backend}, ${r.threads} thread(s), in the demo's Web Worker (Chromium, cross-origin isolated)`,
        windowsRun: r.windows,
        modelMsPerWindow: r.timings.inferenceMs / r.windows,
        timingsMs: r.timings,
        secondsToResult: segmentedSeconds,
        secondsToStudyShown: shownSeconds,
        cpuSecondsSegmenting: cpuAtSegmented - idle.cpuSeconds,
        idleRssMb: idle.rssMb,
        peakRssMbSegmenting: peak.segmenting,
        peakRssMbDisplay: peak.display,
        longestMainThreadTaskMsSegmenting: r.longest,
      },
      node: node
        ? {
            runtime: `onnxruntime-node cpu, ${threads} thread(s), in-process segmentVolume`,
            modelMsPerWindow: node.result.timings.inferenceMs / node.result.windows!,
            timingsMs: node.result.timings,
            wallSeconds: node.wallSeconds,
            cpuSeconds: node.cpuSeconds,
          }
        : { ...(previous.node as object), skipped: (previous.node as { skipped?: string } | undefined)?.skipped ?? `not run this time (--skip-node): from the run of ${String(previous.createdAt)}` },
      resultToDisplay: {
        what: 'from "segmentation done" in the worker to the result on the page (verdict and slice view), to the study in NiiVue, and to every download ready to save, per viewer version (--label); times in ms of wall clock and the browser processes\' CPU seconds over the same span',
        ...(previous.resultToDisplay as object | undefined),
        [label]: resultToDisplay,
      },
      floorMb: {
        rule: 'what the worker must hold at once at most: the decoded input, the model-grid input and accumulators (classes + 2 student confidences + weight), and the source-grid label, confidence and region',
        sourceInput: (2 * sourceVoxels) / MB,
        modelGrid: ((1 + CLASSES.length + 2 + 1) * 4 * gridVoxels) / MB,
        sourceOutputs: (6 * sourceVoxels) / MB,
      },
      note: 'RSS and CPU summed over every Chromium process this script started (/proc, 200 ms samples); machine shared with trainings and benchmarks (load noted in loadAverage), so times are upper bounds and only same-run ratios mean much',
      loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
      createdAt: new Date().toISOString(),
    };
    await writeFileAtomic(resultsPath, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await viewer.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
