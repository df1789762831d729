/**
 * Peak RSS and wall time of `alhvr-segment` with a 3D model on one clinical-size CT: a
 * 512×512×300 int16 volume (abdominal CT phantom anatomy, 0.75×0.75×1.5 mm), a two-student VNet
 * pair at widths a shipped CPU CT model would have (8…128, 5 classes; random weights, PyTorch's
 * initialisation: memory and time do not depend on the values), 96³ patches at stride 64, the
 * card's target spacing. Each alhvr-segment run is its own process measured by GNU time (%M);
 * a tiny volume through the same model first gives the fixed cost (runtime, model, arena).
 *
 * The bound the 3D pipeline keeps (inference/src/pipeline-3d.ts), on the model grid G (the CT
 * at the target spacing): the normalised input, one float32 accumulator per class, one per
 * student confidence and one weight volume — (1 + C + 2 + 1) × 4 bytes × |G| — then the model-grid
 * maps, and on the source grid S the label, confidence and region (1 + 4 + 1 bytes × |S|) next to
 * the input the reader holds.
 *
 *   nice -n 19 npx tsx bench/segment-3d.ts [--target-spacing 1.5,1.5,3] [--slices 300] [--threads 2] [--torch]
 *
 * --torch: PyTorch's sliding window over the same model-grid volume with the same graph, window
 * placement and accumulation (bench/segment-3d-torch.py, PyTorch evaluating the ONNX graph with
 * bench/onnx_torch.py), with glibc's malloc and with jemalloc keeping its pages, in the same run;
 * ratios are against the faster. Only its sliding window is timed (no reading or writing).
 *
 * Writes bench/results/segment-3d.json (--torch: segment-3d-torch.json). Run it once, late: it takes minutes of both cores.
 */
// Before anything that may load onnxruntime-node (the export package does): nothing leaves the machine.
import '@alhvr/inference/no-telemetry';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALHVR_3D_RECIPE_PREPROCESSING, applyIntensityMap, generateAbdomenCtCase, intensityMap, resampledDims, resampleGrid, Rng, scalingAffine, Volume, type Dims3 } from '@alhvr/core';
import { readNiftiFile, writeFileAtomic, writeNiftiFile } from '@alhvr/core/node';
import { PYTHON } from '../test/support/python.js';
import { exportOnnx, type ExportCard } from '@alhvr/export';
import { selectBackend, VNet3d } from '@alhvr/training';

const here = dirname(fileURLToPath(import.meta.url));
const SEGMENT = join(here, '..', 'cli', 'bin', 'alhvr-segment.js');
const argOf = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const target = argOf('target-spacing', '1.5,1.5,3').split(',').map(Number) as [number, number, number];
const slices = Number(argOf('slices', '300'));
const threads = argOf('threads', '2');
const withTorch = process.argv.includes('--torch');
const JEMALLOC = { LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', MALLOC_CONF: 'dirty_decay_ms:-1,muzzy_decay_ms:-1' };
const WIDTHS = [8, 16, 32, 64, 128];
const PATCH = 96;
const CLASSES = ['background', 'liver', 'kidney', 'spleen', 'pancreas'];
const SOURCE_SPACING: [number, number, number] = [0.75, 0.75, 1.5];
const MB = 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-segment-3d-'));
const log = (m: string) => process.stderr.write(`${m}\n`);

/** alhvr-segment on one input in its own process: GNU time's peak RSS and wall time, and the case's report. */
function segment(input: string, out: string, extra: string[] = []) {
  const timeFile = join(dir, 'time.txt');
  execFileSync('/usr/bin/time', ['-f', '%M %e', '-o', timeFile, process.execPath, SEGMENT, input, '--model', join(dir, 'ct.onnx'), '--out', out, '--threads', threads, ...extra], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const [kb, seconds] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  const caseId = readdirSync(out).find((f) => !f.includes('.'))!;
  const report = JSON.parse(readFileSync(join(out, caseId, 'report.json'), 'utf8'));
  const outputBytes = Object.fromEntries(readdirSync(join(out, caseId)).filter((f) => f.endsWith('.nii.gz')).map((f) => [f, statSync(join(out, caseId, f)).size]));
  return { peakRssMb: kb / 1024, wallSeconds: seconds, report, outputBytes };
}

try {
  // The model: two students of the shipped width, exported as alhvr-export would.
  await selectBackend('cpu', { threads: 1, log: () => {} });
  const students = [new VNet3d({ numClasses: CLASSES.length, widths: WIDTHS, dropout: 0 }, new Rng(1)), new VNet3d({ numClasses: CLASSES.length, widths: WIDTHS, dropout: 0 }, new Rng(2))];
  const card: ExportCard = {
    name: 'bench-ct-vnet3d',
    description: 'Benchmark model: random weights at shipped CT widths (not trained).',
    classes: CLASSES.map((name, value) => ({ value, name, color: value === 0 ? [0, 0, 0] : [200, 40 * value, 60] })),
    dimensions: 3,
    input: { size: [PATCH, PATCH, PATCH], sliceAxis: 'largest-spacing' },
    targetSpacing: target,
    // nnU-Net's CT rule with typical abdominal numbers (the training set fixes them for a real model).
    normalisation: { kind: 'ct-foreground', low: -160, high: 240, mean: 60, std: 70 },
    resize: ALHVR_3D_RECIPE_PREPROCESSING.resize,
    regions: { gamma: 0.9, beta: 0.7, gammaSource: 'default' },
    training: { method: 'unknown', iterations: 0 },
  };
  const exported = exportOnnx(students, card);
  students.forEach((s) => s.dispose());
  writeFileSync(join(dir, 'ct.onnx'), exported.onnx);
  log(`model: ${(exported.summary.fileBytes / MB).toFixed(1)} MB, ${exported.summary.parameters.toLocaleString('en-US')} weights`);

  // The CT: phantom anatomy at 512², its slices stretched to `slices` at 1.5 mm, stored int16.
  const phantom = generateAbdomenCtCase({ seed: 2026, index: 0, matrix: 512 }).image;
  const [nx, ny, nz] = phantom.dims;
  const dims: Dims3 = [nx, ny, slices];
  const data = new Int16Array(nx * ny * slices);
  for (let k = 0; k < slices; k++) {
    const from = Math.min(nz - 1, Math.floor((k * nz) / slices));
    for (let p = 0; p < nx * ny; p++) data[k * nx * ny + p] = phantom.data[from * nx * ny + p];
  }
  const input = join(dir, 'ct.nii.gz');
  await writeNiftiFile(input, new Volume({ data, dims, affine: scalingAffine(SOURCE_SPACING) }), { datatype: 'int16' });
  // The fixed cost's volume: 64×64×32 voxels of the same CT, one window on the model grid.
  const small = join(dir, 'small.nii.gz');
  const tiny = new Int16Array(64 * 64 * 32);
  for (let k = 0, n = 0; k < 32; k++) for (let j = 0; j < 64; j++) for (let i = 0; i < 64; i++, n++) tiny[n] = data[(k * ny + 224 + j) * nx + 224 + i];
  await writeNiftiFile(small, new Volume({ data: tiny, dims: [64, 64, 32], affine: scalingAffine(SOURCE_SPACING) }), { datatype: 'int16' });

  log('fixed cost: a tiny volume through the same model …');
  const baseline = segment(small, join(dir, 'out-small'), ['--quiet']);
  log(`fixed cost: peak RSS ${baseline.peakRssMb.toFixed(0)} MB`);
  log(`512×512×${slices} CT …`);
  const run = segment(input, join(dir, 'out'));

  const grid = resampledDims(dims, SOURCE_SPACING, target);
  const gridVoxels = grid[0] * grid[1] * grid[2];
  const sourceVoxels = nx * ny * slices;
  const C = CLASSES.length;
  const accumulatorBytes = (C + 2 + 1) * 4 * gridVoxels;
  let torch: Record<string, unknown> | undefined;
  if (withTorch) {
    // The model-grid volume exactly as pipeline-3d.ts builds it: the card's image resampling, then its normalisation.
    const image = resampleGrid(data, dims, grid, card.resize!.image, new Float32Array(gridVoxels));
    applyIntensityMap(intensityMap(image, card.normalisation!), image, image);
    const gridPath = join(dir, 'grid.f32');
    writeFileSync(gridPath, new Uint8Array(image.buffer));
    const torchRun = (env: NodeJS.ProcessEnv, labels?: string) => {
      const out = execFileSync(PYTHON, [join(here, 'segment-3d-torch.py'), join(dir, 'ct.onnx'), gridPath, ...grid.map(String), '--patch', String(PATCH), '--stride', '64', '--threads', threads, ...(labels ? ['--labels', labels] : [])], {
        encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
      });
      return JSON.parse(out.trim().split('\n').pop()!) as { windows: number; seconds: number; peak_rss_mb: number; torch: string };
    };
    log('PyTorch sliding window (glibc) …');
    const glibc = torchRun(process.env, join(dir, 'torch-labels.u8'));
    log('PyTorch sliding window (jemalloc, pages kept) …');
    const jemalloc = torchRun({ ...process.env, ...JEMALLOC });
    // Sanity: our mask against PyTorch's model-grid labels at the nearest model-grid voxel.
    const ours = (await readNiftiFile(join(dir, 'out', readdirSync(join(dir, 'out')).find((f) => !f.includes('.'))!, 'mask.nii.gz'))).data;
    const theirs = new Uint8Array(readFileSync(join(dir, 'torch-labels.u8')));
    let same = 0;
    for (let k = 0, n = 0; k < slices; k++) {
      const gk = Math.min(grid[2] - 1, Math.floor(((k + 0.5) * grid[2]) / slices));
      for (let j = 0; j < ny; j++) {
        const gj = Math.min(grid[1] - 1, Math.floor(((j + 0.5) * grid[1]) / ny));
        for (let i = 0; i < nx; i++, n++) if (ours[n] === theirs[(gk * grid[1] + gj) * grid[0] + Math.min(grid[0] - 1, Math.floor(((i + 0.5) * grid[0]) / nx))]) same++;
      }
    }
    const best = Math.min(glibc.seconds, jemalloc.seconds);
    const oursWindows = (run.report.timingsMs.inferenceMs + run.report.timingsMs.preprocessMs) / 1000;
    torch = {
      what: 'PyTorch sliding window (the same ONNX graph by bench/onnx_torch.py, one window per call, same placement and accumulation), timed alone',
      version: glibc.torch,
      glibc: { seconds: glibc.seconds, peakRssMb: glibc.peak_rss_mb },
      jemalloc: { seconds: jemalloc.seconds, peakRssMb: jemalloc.peak_rss_mb },
      windows: glibc.windows,
      labelAgreementNearestGrid: same / (nx * ny * slices),
      ratioEndToEndVsTorchBest: best / run.wallSeconds,
      ratioSlidingWindowVsTorchBest: best / oursWindows,
      note: 'ratio > 1: ours faster. End to end is alhvr-segment wall time (process start, reading, resampling, normalising, windows, mapping back, every output written) against PyTorch\'s windows alone; sliding window is our inference + window preprocessing phases against the same.',
    };
    log(`PyTorch: glibc ${glibc.seconds.toFixed(1)} s, jemalloc ${jemalloc.seconds.toFixed(1)} s; ours end to end ${run.wallSeconds.toFixed(1)} s, windows ${oursWindows.toFixed(1)} s`);
  }
  const result = {
    input: `512x512x${slices} int16 CT (.nii.gz, abdominal CT phantom anatomy) at ${SOURCE_SPACING.join('x')} mm`,
    model: `two-student VNet3d widths [${WIDTHS}], ${C} classes, patch ${PATCH}^3, fp32, random weights; ${(exported.summary.fileBytes / MB).toFixed(1)} MB`,
    targetSpacingMm: target,
    modelGrid: grid,
    windows: run.report.slidingWindow.windows,
    stride: 64,
    threads: Number(threads),
    peakRssMb: run.peakRssMb,
    fixedCostPeakRssMb: baseline.peakRssMb,
    wallSeconds: run.wallSeconds,
    timingsMs: run.report.timingsMs,
    outputBytes: run.outputBytes,
    bound: {
      rule: 'model grid: normalised input + one float32 accumulator per class + one per student confidence (2) + one weight volume; source grid: uint8 label + float32 confidence + uint8 region',
      accumulatorsMb: accumulatorBytes / MB,
      modelGridInputMb: (4 * gridVoxels) / MB,
      sourceOutputsMb: (6 * sourceVoxels) / MB,
      sourceInputMb: (2 * sourceVoxels) / MB,
      sumMb: (accumulatorBytes + 4 * gridVoxels + 6 * sourceVoxels + 2 * sourceVoxels) / MB,
    },
    note: withTorch
      ? 'peak RSS by GNU time (%M) of the alhvr-segment process alone; PyTorch measured in the same run (same threads)'
      : 'peak RSS by GNU time (%M) of the alhvr-segment process alone; machine shared with trainings and run under nice -n 19, so wall time is an upper bound',
    torch,
    createdAt: new Date().toISOString(),
  };
  await writeFileAtomic(join(here, 'results', withTorch ? 'segment-3d-torch.json' : 'segment-3d.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
