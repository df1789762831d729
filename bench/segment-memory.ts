/**
 * Peak RSS of alhvr-segment on one large volume (CT-like: 512×512×N int16), with and without
 * --save-probabilities, each in its own process. Per-voxel bytes extrapolate to larger N
 * (e.g. a 512×512×600 CT).
 *
 *   npx tsx bench/segment-memory.ts --model-dir DIR [--slices N] [--threads T]
 *
 * DIR holds alhvr-unet.onnx from bench/segment-model.ts. Writes bench/results/segment-memory.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Volume, scalingAffine } from '@alhvr/core';
import { writeFileAtomic, writeNiftiFile } from '@alhvr/core/node';

const here = dirname(fileURLToPath(import.meta.url));
const TSX = join(here, '..', 'node_modules', '.bin', 'tsx');
const argOf = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const modelDir = argOf('model-dir', '');
if (!modelDir) throw new Error('--model-dir is required (see bench/segment-model.ts)');
const slices = Number(argOf('slices', '96'));
const threads = argOf('threads', '2');
const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-memory-'));
try {
  const dims: [number, number, number] = [512, 512, slices];
  const data = new Int16Array(dims[0] * dims[1] * dims[2]);
  for (let n = 0; n < data.length; n++) {
    const i = n % 512;
    const j = Math.floor(n / 512) % 512;
    data[n] = Math.round(-1000 + 1040 * Math.exp(-((i - 256) ** 2 + (j - 240) ** 2) / 40000) + 60 * Math.sin(n / 977));
  }
  const input = join(dir, 'ct.nii.gz');
  await writeNiftiFile(input, new Volume({ data, dims, affine: scalingAffine([0.7, 0.7, 1.5]) }));
  const list = join(dir, 'list.json');
  writeFileSync(list, JSON.stringify([{ kind: 'nifti', path: input }]));
  const voxels = data.length;
  const runs: Record<string, object> = {};
  for (const flag of ['', '--save-probabilities']) {
    const out = join(dir, `out${flag}`);
    const args = [join(here, 'segment-child.ts'), 'e2e', join(modelDir, 'alhvr-unet.onnx'), list, out, threads, '8', ...(flag ? [flag] : [])];
    const r = JSON.parse(execFileSync(TSX, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!);
    runs[flag || 'default'] = { ...r, peakRssBytesPerVoxel: (r.peakRssMb * 1024 * 1024) / voxels };
  }
  const result = { input: `512x512x${slices} int16 .nii.gz`, voxels, runs, createdAt: new Date().toISOString() };
  await writeFileAtomic(join(here, 'results', 'segment-memory.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
