// The paper's ACDC protocol on the SSL4MIS HDF5 layout, as the README gives it: train with
// --format acdc-h5 --labeled-slices, export student a alone (the released test script scores one
// student), convert the test list to NIfTI, segment, and score with --empty-policy released-code.
// Run on a miniature generated tree; expected values come from the HDF5 files themselves.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNiftiIndependently, runCli } from './cli-harness.js';

let root: string;
let work: string;
const S = 32; // slice size
const K = 3; // slices per test volume
const TEST = ['patient090_frame01', 'patient091_frame01'];

/** A disc of each class at a case-dependent offset, with a little texture. */
function sliceOf(seed: number, z: number): { image: Float32Array; label: Uint8Array } {
  const image = new Float32Array(S * S);
  const label = new Uint8Array(S * S);
  const cx = 14 + (seed % 5);
  const cy = 15 + ((seed * 3 + z) % 4);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const r = Math.hypot(x - cx, y - cy);
      const c = r < 4 ? 3 : r < 7 ? 2 : r < 10 && x > cx ? 1 : 0;
      label[y * S + x] = c;
      image[y * S + x] = [0.1, 0.45, 0.75, 0.95][c] + 0.03 * Math.sin(x * 1.7 + y * 0.9 + seed);
    }
  }
  return { image, label };
}

function writeH5(path: string, shape: number[], image: Float32Array, label: Uint8Array): void {
  const f = new h5wasm.File(path, 'w');
  f.create_dataset({ name: 'image', data: image, shape, dtype: '<f4' });
  f.create_dataset({ name: 'label', data: label, shape, dtype: '<B' });
  f.close();
}

function writeVolume(path: string, seed: number): void {
  const image = new Float32Array(K * S * S);
  const label = new Uint8Array(K * S * S);
  for (let z = 0; z < K; z++) {
    const s = sliceOf(seed, z);
    image.set(s.image, z * S * S);
    label.set(s.label, z * S * S);
  }
  writeH5(path, [K, S, S], image, label);
}

beforeAll(async () => {
  await h5wasm.ready;
  work = mkdtempSync(join(tmpdir(), 'acdc-protocol-'));
  root = join(work, 'ACDC');
  mkdirSync(join(root, 'data_list'), { recursive: true });
  mkdirSync(join(root, 'slices'));
  const names: string[] = [];
  for (let c = 1; c <= 4; c++) {
    for (let z = 0; z < K; z++) {
      const name = `patient00${c}_frame01_slice_${z}`;
      const s = sliceOf(c, z);
      writeH5(join(root, 'slices', `${name}.h5`), [S, S], s.image, s.label);
      names.push(name);
    }
  }
  writeFileSync(join(root, 'data_list', 'train_slices.list'), `${names.join('\n')}\n`);
  writeFileSync(join(root, 'data_list', 'val.list'), 'patient080_frame01\n');
  writeFileSync(join(root, 'data_list', 'test.list'), `${TEST.join('\n')}\n`);
  writeVolume(join(root, 'patient080_frame01.h5'), 80);
  TEST.forEach((id, n) => writeVolume(join(root, `${id}.h5`), 90 + n));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the ACDC protocol on the SSL4MIS layout (README commands)', () => {
  it('trains, exports student a, converts the test list, segments and scores like the released test script', async () => {
    const run = join(work, 'run');
    const ok = (r: { code: number | null; stderr: string }) => expect(r.code, r.stderr).toBe(0);
    ok(await runCli('alhvr-train', ['--format', 'acdc-h5', '--data', root, '--labeled-slices', '6', '--out', run, '--iterations', '2', '--val-every', '2',
      '--patch', '32', '--widths', '2,4,8,16,32', '--batch', '1+1', '--backend', 'wasm', '--threads', '1', '--quiet']));
    const model = join(work, 'student-a.onnx');
    ok(await runCli('alhvr-export', [run, '--students', 'a', '--out', model, '--parity-slices', '1']));
    const images = join(work, 'imagesTs');
    const labels = join(work, 'labelsTs');
    const converted = await runCli('alhvr-convert', [join(root, 'data_list', 'test.list'), '--out', `${images}/`, '--labels-out', `${labels}/`]);
    ok(converted);

    // The converted volumes are the HDF5 datasets voxel for voxel, x fastest, on a unit grid.
    for (const [n, id] of TEST.entries()) {
      const img = readNiftiIndependently(join(images, `${id}.nii.gz`));
      const lab = readNiftiIndependently(join(labels, `${id}.nii.gz`));
      expect([img.header.dims[1], img.header.dims[2], img.header.dims[3]]).toEqual([S, S, K]);
      expect([img.header.pixDims[1], img.header.pixDims[2], img.header.pixDims[3]]).toEqual([1, 1, 1]);
      const s = sliceOf(90 + n, 1);
      for (const p of [0, 7 * S + 19, S * S - 1]) {
        expect(img.values[S * S + p]).toBeCloseTo(s.image[p], 6);
        expect(lab.values[S * S + p]).toBe(s.label[p]);
      }
    }

    const seg = join(work, 'seg');
    ok(await runCli('alhvr-segment', [images, '--model', model, '--out', seg, '--threads', '1']));
    const scored = await runCli('alhvr-eval', ['--pred', seg, '--ref', labels, '--empty-policy', 'released-code', '--json']);
    ok(scored);
    const result = JSON.parse(scored.stdout) as { emptyPolicy: string; cases: { id: string; metrics: { label: number; dice: number; hd95Mm: number; asdMm: number; predEmpty: boolean }[] }[] };
    expect(result.emptyPolicy).toBe('released-code');
    expect(result.cases.map((c) => c.id).sort()).toEqual(TEST);
    for (const c of result.cases) {
      // Dice recomputed from the written mask and the converted reference with a third-party reader.
      const pred = readNiftiIndependently(join(seg, c.id, 'mask.nii.gz')).values;
      const ref = readNiftiIndependently(join(labels, `${c.id}.nii.gz`)).values;
      expect(c.metrics.map((m) => m.label)).toEqual([1, 2, 3]);
      for (const m of c.metrics) {
        let both = 0;
        let sum = 0;
        for (let p = 0; p < ref.length; p++) {
          both += Number(pred[p] === m.label && ref[p] === m.label);
          sum += Number(pred[p] === m.label) + Number(ref[p] === m.label);
        }
        // The released code scores a class the model never predicted as 0 on every metric.
        if (m.predEmpty) expect([m.dice, m.hd95Mm, m.asdMm]).toEqual([0, 0, 0]);
        else expect(m.dice).toBeCloseTo((2 * both) / sum, 6);
      }
    }
  }, 600_000);
});
