/**
 * alhvr-segment end to end (read NIfTI, preprocess, ONNX Runtime, resize back, write mask /
 * confidence / region / preview / report) against PyTorch running only the same networks'
 * forward pass on the same preprocessed slices (bench/segment-torch.py), in one run.
 *
 *   npx tsc -b inference && npx tsc -p bench/tsconfig.segment.json && node bench/dist/segment.js [--slices N] [--threads T] [--batch B]
 *
 * No exported ALHVR U-Net exists yet, so this measures the TOY model of test/make-test-model.py
 * (two 3×3 convolutions): it weighs the pipeline's own overhead, not U-Net compute.
 * Writes bench/results/segment.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Volume, canonicalOrientation, normaliseIntensities, reorient, resizeInPlane, scalingAffine } from '@alhvr/core';
import { writeFileAtomic, writeNiftiFile } from '@alhvr/core/node';
import { runSegmentation } from '@alhvr/inference/node';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const PYTHON = '/usr/bin/python3';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const slices = arg('slices', 160);
const threads = arg('threads', 2);
const batch = arg('batch', 8);
const size = 256;

const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-segment-'));
try {
  const model = join(dir, 'toy.onnx');
  execFileSync(PYTHON, [join(repo, 'test', 'make-test-model.py'), model, '--size', String(size), String(size)]);
  const dims: [number, number, number] = [size, size, slices];
  const data = new Int16Array(size * size * slices);
  for (let n = 0; n < data.length; n++) {
    const i = n % size;
    const j = Math.floor(n / size) % size;
    data[n] = Math.round(800 * Math.exp(-((i - 128) ** 2 + (j - 120) ** 2) / 3000) + 100 * Math.sin(n / 997));
  }
  const vol = new Volume({ data, dims, affine: scalingAffine([1.2, 1.2, 5]) });
  const input = join(dir, 'bench.nii.gz');
  await writeNiftiFile(input, vol);

  // End to end, as the CLI runs it (model load excluded: reported separately by the manifest timings).
  const t0 = performance.now();
  const run = await runSegmentation([{ kind: 'nifti', path: input }], { output: join(dir, 'out'), model, device: 'cpu', threads, batch, formats: new Set(['nifti']) });
  const seconds = (performance.now() - t0) / 1000;
  const timings = run.entries[0].timingsMs;
  const peakRssMb = process.resourceUsage().maxRSS / 1024;

  // The same preprocessed slices for PyTorch.
  const can = reorient(vol, canonicalOrientation(vol.affine));
  const pre = resizeInPlane(can.withData(normaliseIntensities(can.data, { kind: 'minmax-volume' })), [size, size], {
    interpolation: 'nearest',
    alignment: 'corners',
  });
  const raw = join(dir, 'slices.f32');
  writeFileSync(raw, new Uint8Array(pre.data.buffer, pre.data.byteOffset, pre.data.byteLength));
  const torch = JSON.parse(
    execFileSync(PYTHON, [join(repo, 'bench', 'segment-torch.py'), raw, String(slices), String(size), String(size), '--batch', String(batch), '--threads', String(threads)], {
      encoding: 'utf8',
    }),
  );
  const alhvr = {
    slices,
    secondsEndToEnd: seconds,
    slicesPerSecEndToEnd: slices / seconds,
    slicesPerSecInferenceOnly: slices / (timings.inferenceMs / 1000),
    timingsMs: timings,
    peakRssMb,
    device: run.device,
  };
  const result = {
    model: 'TOY two-student model from test/make-test-model.py (two 3x3 convs); no exported ALHVR U-Net existed when this ran',
    input: `${size}x${size}x${slices} int16 NIfTI (gzip)`,
    threads,
    batch,
    alhvrSegment: alhvr,
    pytorchForwardOnly: torch,
    ratioEndToEndVsTorchForward: alhvr.slicesPerSecEndToEnd / torch.slices_per_s,
    ratioOrtInferenceVsTorchForward: alhvr.slicesPerSecInferenceOnly / torch.slices_per_s,
    node: process.version,
    createdAt: new Date().toISOString(),
  };
  await writeFileAtomic(join(repo, 'bench', 'results', 'segment.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
