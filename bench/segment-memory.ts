/**
 * Peak RSS of alhvr-segment on one large volume (CT-like: 512×512×N int16) for several N, with
 * and without --save-probabilities, each run in its own process. The growth of peak RSS per
 * added voxel (between the smallest and largest N) extrapolates to larger volumes, e.g. a
 * 512×512×600 CT; the rest is the fixed cost (ONNX Runtime's arena, code).
 *
 *   npx tsx bench/segment-memory.ts --model-dir DIR [--slices 96,192] [--threads T]
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
const sizes = argOf('slices', '96,192').split(',').map(Number);
const threads = argOf('threads', '2');
const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-memory-'));
try {
  const bySize: { slices: number; voxels: number; runs: Record<string, { peakRssMb: number }> }[] = [];
  for (const slices of sizes) {
    const dims: [number, number, number] = [512, 512, slices];
    const data = new Int16Array(dims[0] * dims[1] * dims[2]);
    for (let n = 0; n < data.length; n++) {
      const i = n % 512;
      const j = Math.floor(n / 512) % 512;
      data[n] = Math.round(-1000 + 1040 * Math.exp(-((i - 256) ** 2 + (j - 240) ** 2) / 40000) + 60 * Math.sin(n / 977));
    }
    const input = join(dir, `ct${slices}.nii.gz`);
    await writeNiftiFile(input, new Volume({ data, dims, affine: scalingAffine([0.7, 0.7, 1.5]) }));
    const list = join(dir, 'list.json');
    writeFileSync(list, JSON.stringify([{ kind: 'nifti', path: input }]));
    const runs: Record<string, { peakRssMb: number }> = {};
    for (const flag of ['', '--save-probabilities']) {
      const out = join(dir, `out${slices}${flag}`);
      const args = [join(here, 'segment-child.ts'), 'e2e', join(modelDir, 'alhvr-unet.onnx'), list, out, threads, '8', ...(flag ? [flag] : [])];
      runs[flag || 'default'] = JSON.parse(execFileSync(TSX, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!);
      rmSync(out, { recursive: true, force: true });
    }
    bySize.push({ slices, voxels: data.length, runs });
  }
  const first = bySize[0];
  const last = bySize[bySize.length - 1];
  const slope = (mode: string) => ((last.runs[mode].peakRssMb - first.runs[mode].peakRssMb) * 1024 * 1024) / (last.voxels - first.voxels);
  const perVoxel = { default: slope('default'), saveProbabilities: slope('--save-probabilities') };
  const ct600 = 512 * 512 * 600;
  const result = {
    input: `512x512xN int16 .nii.gz, N = ${sizes.join(', ')}`,
    peakRssBytesPerAddedVoxel: perVoxel,
    extrapolatedPeakRssMb512x512x600: {
      default: first.runs.default.peakRssMb + (perVoxel.default * (ct600 - first.voxels)) / 2 ** 20,
      saveProbabilities: first.runs['--save-probabilities'].peakRssMb + (perVoxel.saveProbabilities * (ct600 - first.voxels)) / 2 ** 20,
    },
    bySize,
    createdAt: new Date().toISOString(),
  };
  await writeFileAtomic(join(here, 'results', 'segment-memory.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
