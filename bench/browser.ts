/**
 * The viewer demo's segmentation in headless Chromium (onnxruntime-web, wasm, in the page's Web
 * Worker) next to onnxruntime-node on the same model and volumes, measured in one run with the
 * two interleaved (this 2-core machine is shared: only same-run ratios mean anything).
 *
 *   npx tsx bench/browser.ts [--cases N] [--reps R] [--model FILE] [--ops-runs N] [--ops-reps R] [--no-tried]
 *
 * Model: the shipped models/alhvr-default.onnx. Input: N synthetic cardiac phantoms
 * (generatePhantomCase seeds 11…, float32 .nii.gz). Per thread count (1 and 2; 2 needs the
 * cross-origin isolated page this script serves): the model's load time in the worker, the
 * model time per slice (the pipeline's inferenceMs / slices) and the end-to-end time per slice
 * (file chosen → result on the page) in Chromium and in Node, and the longest main-thread task
 * during segmentation and during the display that follows (NiiVue on this machine's software
 * WebGL). The display is then timed again on the same study both as the viewer does it now and
 * as it did before (one layer upload per task vs NiiVue's addVolume per layer), so the two come
 * from the same run. Also recorded: whether the page is cross-origin isolated, how many dedicated
 * workers it runs (the segmentation worker plus ONNX Runtime's extra wasm threads), what the page
 * says about its runtime, and whether WebGPU offers an adapter (the viewer uses it when it does).
 * Then `ops` (bench/browser-ops.ts): ONNX Runtime's profile in both runtimes on one batch of 8
 * slices at 1 and 2 threads, op families by CPU time with their ratio, the convolutions' GFLOP per
 * slice and the rate each runtime computes them at; and `tried`: session options and batch sizes
 * against the wasm time, each next to onnxruntime-node in the same run (--no-tried skips them).
 * Writes bench/results/browser.json.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { chromium, type Page } from 'playwright-core';
import { decodeNifti, encodeNifti, generatePhantomCase } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';
import { segmentVolume } from '@alhvr/inference';
import { openModelFile } from '@alhvr/inference/node';
import { buildDemo } from '../viewer/scripts/build-demo.mjs';
import { CHROMIUM_ARGS, serveStatic } from '../test/viewer-harness.js';
import { compareOps, writeOpsHarness, type OpsComparison, type OpsSetting } from './browser-ops.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
}
const cases = Number(arg('cases', '3'));
const reps = Number(arg('reps', '2'));
const modelFile = resolve(arg('model', join(repo, 'models', 'alhvr-default.onnx')));
const opsRuns = Number(arg('ops-runs', '3'));
const opsReps = Number(arg('ops-reps', '2'));
const tryOptions = !process.argv.includes('--no-tried');

/**
 * What was tried against the wasm time (bench/browser-ops.ts): each against onnxruntime-node in
 * the same run, batch 8 and one thread unless it says otherwise, without profiling.
 */
const TRIED: { what: string; setting: Partial<OpsSetting> }[] = [
  { what: 'batch 1 (both runtimes)', setting: { batch: 1, runs: 8 * opsRuns, warmup: 24 } },
  { what: 'batch 4 (both runtimes)', setting: { batch: 4, runs: 2 * opsRuns, warmup: 6 } },
  { what: 'batch 16 (both runtimes)', setting: { batch: 16, runs: Math.max(1, opsRuns >> 1), warmup: 2 } },
  { what: "web graphOptimizationLevel 'extended' (the viewer uses 'all')", setting: { webOptions: { graphOptimizationLevel: 'extended' } } },
  { what: "web graphOptimizationLevel 'basic' (no Conv+LeakyRelu fusion)", setting: { webOptions: { graphOptimizationLevel: 'basic' } } },
  { what: 'web enableMemPattern false', setting: { webOptions: { enableMemPattern: false } } },
  { what: 'web enableCpuMemArena false', setting: { webOptions: { enableCpuMemArena: false } } },
  { what: "node graphOptimizationLevel 'extended': no NCHWc layout (im2col + SGEMM, as the wasm build does)", setting: { nodeOptions: { graphOptimizationLevel: 'extended' } } },
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : NaN;
};

interface Sample {
  modelMsPerSlice: number;
  endToEndMsPerSlice: number;
}

async function browserCase(page: Page, name: string, bytes: Uint8Array): Promise<Sample & { longestSegmentingMs: number; longestDisplayMs: number; slices: number }> {
  await page.evaluate(`(() => {
    window.__tasks = [];
    window.__since = Infinity;
    performance.clearMarks('alhvr-segmented');
    if (!window.__observing) {
      window.__observing = true;
      new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__tasks.push([e.startTime, e.duration]); }).observe({ type: 'longtask' });
      new MutationObserver(() => { window.__since = Math.min(window.__since, performance.now()); })
        .observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
    }
  })()`);
  await page.setInputFiles('#nifti-file', { name, mimeType: 'application/gzip', buffer: Buffer.from(bytes) });
  await page.waitForFunction(() => ['segmented', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 600_000 });
  if ((await page.evaluate('document.body.dataset.state')) === 'error') throw new Error(`page: ${await page.textContent('#status')}`);
  // Let NiiVue's display tasks finish and be reported.
  await page.evaluate('alhvrDemo.studyView.whenDrawn()');
  await page.waitForTimeout(500);
  return (await page.evaluate(`(() => {
    const done = performance.getEntriesByName('alhvr-segmented').at(-1).startTime;
    const r = alhvrDemo.result;
    let seg = 0, display = 0;
    for (const [start, d] of window.__tasks) {
      if (start >= window.__since && start < done) seg = Math.max(seg, d);
      else if (start >= done) display = Math.max(display, d);
    }
    return { modelMsPerSlice: r.timings.inferenceMs / r.slices, endToEndMsPerSlice: (done - window.__since) / r.slices, longestSegmentingMs: seg, longestDisplayMs: display, slices: r.slices };
  })()`)) as Sample & { longestSegmentingMs: number; longestDisplayMs: number; slices: number };
}

/**
 * The study's display, timed twice on the page's current study in this run: as the viewer shows
 * it now (StudyView.show: all layers in at once, one upload pass with a task per layer) and as it
 * did before (commit 819b14d: NiiVue's removeVolume per old layer, then addVolume per layer in its
 * own task with the overlays hidden, then one updateGLVolume to show them). Longest main-thread task
 * and total time of each.
 */
async function displayBeforeAfter(page: Page): Promise<{ before: { longestTaskMs: number; totalMs: number }; after: { longestTaskMs: number; totalMs: number } }> {
  return (await page.evaluate(`(async () => {
    const sv = alhvrDemo.studyView, nv = sv.nv, r = alhvrDemo.result, card = alhvrDemo.model.card;
    const settle = () => new Promise((ok) => setTimeout(ok, 300));
    const measure = async (work) => {
      await settle();
      const t0 = performance.now();
      window.__tasks = [];
      await work();
      const total = performance.now() - t0;
      await settle();
      return { longestTaskMs: Math.max(0, ...window.__tasks.filter(([start]) => start >= t0).map(([, d]) => d)), totalMs: total };
    };
    const after = await measure(() => sv.show(r, card));
    const layers = [...nv.volumes];
    const opacities = layers.map((l) => l.opacity);
    const before = await measure(async () => {
      for (const v of [...nv.volumes]) nv.removeVolume(v);
      for (const l of layers.slice(1)) l.opacity = 0;
      for (const l of layers) {
        nv.addVolume(l);
        await new Promise((ok) => setTimeout(ok, 0));
      }
      layers.forEach((l, i) => (l.opacity = opacities[i]));
      nv.updateGLVolume();
    });
    return { before, after };
  })()`)) as { before: { longestTaskMs: number; totalMs: number }; after: { longestTaskMs: number; totalMs: number } };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-browser-'));
  const site = join(dir, 'site');
  await buildDemo({ outDir: site, model: modelFile });
  const inputs = Array.from({ length: cases }, (_, n) => ({ name: `phantom-${n}.nii.gz`, bytes: encodeNifti(generatePhantomCase({ seed: 11 + n, index: n }).image) }));
  const server = await serveStatic(site);
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // WebGL and compositing in the GPU process on SwiftShader, as with a GPU (test/viewer-harness.ts says why not --disable-gpu).
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  const results: Record<string, unknown> = {};
  try {
    for (const threads of [1, 2]) {
      const web: (Sample & { longestSegmentingMs: number; longestDisplayMs: number })[] = [];
      const node: Sample[] = [];
      const loads: number[] = [];
      const displays: Awaited<ReturnType<typeof displayBeforeAfter>>[] = [];
      let workers = 0;
      let isolated = false;
      let runtimeShown = '';
      let webgpu = false;
      for (let rep = 0; rep < reps; rep++) {
        // A fresh page per repetition: ONNX Runtime Web fixes its thread count when it starts.
        const page = await browser.newPage();
        await page.goto(`${origin}/index.html?threads=${threads}`);
        await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 600_000 });
        if ((await page.evaluate('document.body.dataset.state')) === 'error') throw new Error(`page: ${await page.textContent('#status')}`);
        loads.push((await page.evaluate('alhvrDemo.model.loadMs')) as number);
        if ((await page.evaluate('alhvrDemo.model.threads')) !== threads) throw new Error(`the page runs ${await page.evaluate('alhvrDemo.model.threads')} threads, not ${threads}`);
        webgpu = (await page.evaluate('!!navigator.gpu && navigator.gpu.requestAdapter().then((a) => !!a)')) as boolean;
        isolated = (await page.evaluate('crossOriginIsolated')) as boolean;
        runtimeShown = (await page.textContent('#runtime-info')) ?? '';
        const opened = await openModelFile(modelFile, { device: 'cpu', threads });
        try {
          for (const input of inputs) {
            // Interleaved: Node, then the browser, on the same volume.
            const t0 = performance.now();
            const r = await segmentVolume(decodeNifti(input.bytes, { path: input.name }), opened.model);
            node.push({ modelMsPerSlice: r.timings.inferenceMs / r.slices, endToEndMsPerSlice: (performance.now() - t0) / r.slices });
            web.push(await browserCase(page, input.name, input.bytes));
            displays.push(await displayBeforeAfter(page));
            // Dedicated workers: the segmentation worker, plus ONNX Runtime's wasm threads beyond the first.
            workers = Math.max(workers, page.workers().length);
            process.stderr.write(`threads ${threads} rep ${rep + 1}/${reps} ${input.name}: node ${node.at(-1)!.modelMsPerSlice.toFixed(1)} ms/slice, chromium ${web.at(-1)!.modelMsPerSlice.toFixed(1)} ms/slice\n`);
          }
        } finally {
          await opened.model.release();
          await page.close();
        }
      }
      const nodeModel = median(node.map((s) => s.modelMsPerSlice));
      const webModel = median(web.map((s) => s.modelMsPerSlice));
      results[`threads${threads}`] = {
        chromiumWasm: {
          // Idle pool threads sleep (session option allow_spinning 0), as in inference's Node sessions.
          modelLoadMs: median(loads),
          modelMsPerSlice: webModel,
          endToEndMsPerSlice: median(web.map((s) => s.endToEndMsPerSlice)),
          longestMainThreadTaskWhileSegmentingMs: Math.max(...web.map((s) => s.longestSegmentingMs)),
          longestMainThreadTaskWhileDisplayingMs: Math.max(...web.map((s) => s.longestDisplayMs)),
        },
        onnxruntimeNode: { modelMsPerSlice: nodeModel, endToEndMsPerSlice: median(node.map((s) => s.endToEndMsPerSlice)) },
        chromiumOverNodeModelTime: webModel / nodeModel,
        crossOriginIsolated: isolated,
        pageWorkers: workers,
        runtimeShown: runtimeShown.replace(/model opened in \d+ ms/, 'model opened in … ms'),
        display: {
          beforeLongestTaskMs: Math.max(...displays.map((d) => d.before.longestTaskMs)),
          afterLongestTaskMs: Math.max(...displays.map((d) => d.after.longestTaskMs)),
          beforeTotalMs: median(displays.map((d) => d.before.totalMs)),
          afterTotalMs: median(displays.map((d) => d.after.totalMs)),
          samples: displays,
        },
        webgpuAdapter: webgpu,
        samples: { chromium: web, node },
      };
    }
    // Where the model time goes: ONNX Runtime's profile in both runtimes on one batch of 8 slices
    // (the viewer's and the CLI's batch), then what was tried against it.
    writeOpsHarness(site);
    const modelBytes = readFileSync(modelFile);
    const ops: Record<string, unknown> = {};
    const brief = ({ samples: _samples, rawOps: _raw, ...kept }: OpsComparison) => kept;
    for (const threads of [1, 2]) {
      const c = await compareOps(browser, origin, modelBytes, { threads, batch: 8, runs: opsRuns, profile: true }, opsReps);
      ops[`threads${threads}`] = { ...brief(c), rawOps: c.rawOps };
    }
    if (tryOptions) {
      const tried = [];
      for (const t of TRIED) {
        const setting: OpsSetting = { threads: 1, batch: 8, runs: opsRuns, profile: false, ...t.setting };
        const { setting: _s, ...c } = brief(await compareOps(browser, origin, modelBytes, setting, 1));
        tried.push({ what: t.what, ...c });
      }
      ops.tried = tried;
    }
    results.ops = ops;
  } finally {
    await browser.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const out = {
    what: 'viewer demo segmentation in headless Chromium (onnxruntime-web wasm in a Web Worker) vs onnxruntime-node, same model and phantoms, same run',
    model: modelFile.slice(repo.length + 1),
    cases,
    reps,
    chromium: (await import('node:child_process')).execFileSync('/usr/bin/chromium', ['--version']).toString().trim(),
    chromiumFlags: CHROMIUM_ARGS,
    date: new Date().toISOString(),
    ...results,
  };
  await writeFileAtomic(join(here, 'results', 'browser.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log(JSON.stringify({ threads1: (results.threads1 as any).chromiumOverNodeModelTime, threads2: (results.threads2 as any).chromiumOverNodeModelTime }));
}

main().catch((err) => {
  console.error(`bench/browser: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
