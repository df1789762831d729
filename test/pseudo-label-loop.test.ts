// The pseudo-label loop end to end on phantoms: train tiny → export (uncalibrated) → segment →
// train again with --pseudo-labels. Checks that the per-voxel weights reach the loss, that a
// reviewer's corrected.nii.gz overrides the mask (and survives alhvr-segment re-runs), each
// refusal, and what the run records; then a case segmented from a DICOM series (read back from
// its series) and a reviewer's correction given as a DICOM SEG (corrected.seg.dcm).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALHVR_RECIPE_PREPROCESSING, Volume, canonicalOrientation, encodeDicomSeg, reorient, type VoxelArray } from '@alhvr/core';
import { phantomCaseId, readDicomSeries, readNiftiFile, scanDicom, writeNiftiFile, writePhantomDataset } from '@alhvr/core/node';
import { daikonSeries } from './fixtures.js';
import { exportOnnx, loadRunForExport } from '@alhvr/export';
import { CASE_FILES, MANIFEST_FILE, discoverInputs, readManifest, runSegmentation } from '@alhvr/inference/node';
import {
  SEGMENT_FILES,
  loadCheckpoint,
  openPseudoLabels,
  readMetrics,
  resolveConfig,
  train,
  type IterationRecord,
  type TrainConfig,
  type TrainState,
} from '@alhvr/training';

const CASES = 6;
const id = (n: number) => phantomCaseId(n, CASES);
/** alhvr-segment's case id: the image file's stem, channel suffix included. */
const sid = (n: number) => `${id(n)}_0000`;
const quiet = { log: () => {} };
let work: string;
let data: string;
let seg: string;
let classes: { name: string; value: number }[];

const tiny = (out: string, extra: Partial<TrainConfig> = {}) =>
  resolveConfig({
    data,
    out,
    labeledCases: 2,
    valCases: 1,
    iterations: 2,
    batchLabeled: 2,
    batchUnlabeled: 1,
    patch: 32,
    widths: [2, 2, 2, 2, 2],
    valEvery: 100,
    checkpointEvery: 100,
    backend: 'wasm',
    threads: 1,
    seed: 5,
    ...extra,
  });

/** A copy of the segment folder to alter for one test. */
async function segCopy(name: string): Promise<string> {
  const dir = join(work, name);
  await cp(seg, dir, { recursive: true });
  return dir;
}

async function editManifest(dir: string, edit: (e: Record<string, unknown>) => void): Promise<void> {
  const path = join(dir, MANIFEST_FILE);
  const lines = (await readFile(path, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  lines.forEach(edit);
  await writeFile(path, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
}

/** Overwrite a case's region map with one value everywhere. */
async function fillRegion(dir: string, caseId: string, value: number): Promise<void> {
  const path = join(dir, caseId, CASE_FILES.region);
  const region = await readNiftiFile(path);
  await writeNiftiFile(path, region.withData(new Uint8Array(region.voxelCount).fill(value)));
}

const pseudoOptions = (cacheDir: string, extra: Partial<Parameters<typeof openPseudoLabels>[1]> = {}) => ({
  classes,
  verdicts: ['accept', 'review', 'reject'] as const,
  weighting: 'region' as const,
  unstableWeight: 0.5,
  cacheDir: join(work, cacheDir),
  preprocessing: ALHVR_RECIPE_PREPROCESSING,
  ...extra,
});

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'alhvr-pseudo-'));
  data = join(work, 'data');
  await writePhantomDataset(data, { cases: CASES, seed: 3 });
  classes = Object.entries(JSON.parse(await readFile(join(data, 'dataset.json'), 'utf8')).labels as Record<string, number>)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => a.value - b.value);
  // Round 0: labelled cases 0–1, validation case 5, unlabeled 2–4.
  const run0 = join(work, 'run0');
  await train(tiny(run0), { events: quiet });
  const loaded = await loadRunForExport(run0);
  const model = join(work, 'round0.onnx');
  await writeFile(model, exportOnnx(loaded.students, loaded.card).onnx);
  // Segment two of the unlabeled images, as alhvr-segment would.
  seg = join(work, 'seg-round0');
  const sources = [2, 3].map((n) => ({ kind: 'nifti' as const, path: join(data, 'imagesTr', `${id(n)}_0000.nii.gz`) }));
  const result = await runSegmentation(sources, { output: seg, model, device: 'cpu', threads: 1, formats: new Set(['nifti'] as const), preview: false });
  expect(result.exitCode).toBe(0);
}, 300_000);

afterAll(() => rm(work, { recursive: true, force: true }));

describe('reading segment folders', () => {
  test('file names agree with alhvr-segment', () => {
    expect(SEGMENT_FILES.manifest).toBe(MANIFEST_FILE);
    for (const k of ['mask', 'confidence', 'region', 'report', 'seg'] as const) expect(SEGMENT_FILES[k]).toBe(CASE_FILES[k]);
    expect(Object.values(CASE_FILES)).not.toContain(SEGMENT_FILES.corrected);
    expect(Object.values(CASE_FILES)).not.toContain(SEGMENT_FILES.correctedSeg);
  });

  test('default verdicts take accepted cases only; counts per verdict are recorded', async () => {
    const dir = await segCopy('seg-verdicts');
    await editManifest(dir, (e) => ((e.summary as { verdict: string }).verdict = e.caseId === sid(2) ? 'accept' : 'review'));
    const set = await openPseudoLabels([dir], pseudoOptions('cache-verdicts', { verdicts: ['accept'] }));
    expect(set.sources).toEqual([
      {
        name: 'seg-verdicts',
        manifestSha256: createHash('sha256').update(await readFile(join(dir, MANIFEST_FILE))).digest('hex'),
        cases: { accept: 1, review: 0, reject: 0, corrected: 0 },
        skippedInDataset: 0,
      },
    ]);
    expect(new Set(set.slices.map((s) => s.caseId)).size).toBe(1);
    await set.close();
  });

  test('region weighting: Ω1 → 1, Ω2 → the unstable weight, Ω3 → 0, read back per slice', async () => {
    const dir = await segCopy('seg-weights');
    for (const [n, value] of [[2, 2], [3, 3]] as const) await fillRegion(dir, sid(n), value);
    const set = await openPseudoLabels([dir], pseudoOptions('cache-weights', { unstableWeight: 0.25 }));
    const seen = new Map<string, Set<number>>();
    const buf = { image: new Float32Array(set.maxSliceVoxels), label: new Uint8Array(set.maxSliceVoxels), weight: new Float32Array(set.maxSliceVoxels) };
    for (const ref of set.slices) {
      const { width, height } = set.readSlice(ref, buf.image, buf.label, buf.weight);
      const values = seen.get(ref.caseId) ?? new Set<number>();
      for (const w of buf.weight.subarray(0, width * height)) values.add(w);
      seen.set(ref.caseId, values);
    }
    expect([...seen.values()].map((v) => [...v])).toEqual([[0.25], [0]]);
    await set.close();
  });

  test("a reviewer's corrected.nii.gz is the label, weight 1 everywhere, whatever the verdict", async () => {
    const dir = await segCopy('seg-corrected');
    await fillRegion(dir, sid(2), 3);
    // The true label stands in for the reviewer's correction; the verdict is not among those asked for.
    await cp(join(data, 'labelsTr', `${id(2)}.nii.gz`), join(dir, sid(2), SEGMENT_FILES.corrected));
    await editManifest(dir, (e) => ((e.summary as { verdict: string }).verdict = 'reject'));
    const set = await openPseudoLabels([dir], pseudoOptions('cache-corrected', { verdicts: ['accept'] }));
    expect(set.sources[0].cases).toEqual({ accept: 0, review: 0, reject: 0, corrected: 1 });
    const truth = await readNiftiFile(join(data, 'labelsTr', `${id(2)}.nii.gz`));
    const canon = reorient(truth, canonicalOrientation(truth.affine));
    const [w, h] = canon.dims;
    const buf = { image: new Float32Array(set.maxSliceVoxels), label: new Uint8Array(set.maxSliceVoxels), weight: new Float32Array(set.maxSliceVoxels) };
    let foreground = 0;
    for (const ref of set.slices) {
      set.readSlice(ref, buf.image, buf.label, buf.weight);
      const expected = canon.data.subarray(ref.slice * w * h, (ref.slice + 1) * w * h);
      expect(Array.from(buf.label.subarray(0, w * h))).toEqual(Array.from(expected));
      expect(buf.weight.subarray(0, w * h).every((v) => v === 1)).toBe(true);
      foreground += expected.filter((v) => v > 0).length;
    }
    expect(foreground).toBeGreaterThan(0);
    await set.close();
  });

  test("pseudo-labelled images are normalised by the run's preprocessing block, like its dataset", async () => {
    const dir = await segCopy('seg-normalisation');
    const stats = async (cache: string, preprocessing: typeof ALHVR_RECIPE_PREPROCESSING) => {
      const set = await openPseudoLabels([dir], pseudoOptions(cache, { preprocessing }));
      const buf = { image: new Float32Array(set.maxSliceVoxels), label: new Uint8Array(set.maxSliceVoxels), weight: new Float32Array(set.maxSliceVoxels) };
      const first = set.slices[0].caseId;
      let [n, sum, sq, min, max] = [0, 0, 0, Infinity, -Infinity];
      for (const ref of set.slices.filter((r) => r.caseId === first)) {
        const { width, height } = set.readSlice(ref, buf.image, buf.label, buf.weight);
        for (const v of buf.image.subarray(0, width * height)) [n, sum, sq, min, max] = [n + 1, sum + v, sq + v * v, Math.min(min, v), Math.max(max, v)];
      }
      await set.close();
      return { mean: sum / n, std: Math.sqrt(sq / n - (sum / n) ** 2), min, max };
    };
    const minmax = await stats('cache-minmax', ALHVR_RECIPE_PREPROCESSING);
    expect([minmax.min, minmax.max]).toEqual([0, 1]);
    const z = await stats('cache-zscore', { ...ALHVR_RECIPE_PREPROCESSING, normalisation: { kind: 'zscore-volume' } });
    expect(z.mean).toBeCloseTo(0, 4);
    expect(z.std).toBeCloseTo(1, 3);
  });

  test('alhvr-segment, with and without --resume, leaves corrected.nii.gz alone', async () => {
    const dir = await segCopy('seg-rerun');
    const corrected = join(dir, sid(2), SEGMENT_FILES.corrected);
    await cp(join(data, 'labelsTr', `${id(2)}.nii.gz`), corrected);
    const before = await readFile(corrected);
    const sources = [2, 3].map((n) => ({ kind: 'nifti' as const, path: join(data, 'imagesTr', `${id(n)}_0000.nii.gz`) }));
    const model = join(work, 'round0.onnx');
    const resumed = await runSegmentation(sources, { output: dir, model, device: 'cpu', threads: 1, formats: new Set(['nifti'] as const), preview: false, resume: true });
    expect(resumed.skipped).toBe(2);
    expect(await readFile(corrected)).toEqual(before);
    // A full re-run rewrites the case and removes outputs it did not write; the reviewer's file stays.
    const redone = await runSegmentation(sources, { output: dir, model, device: 'cpu', threads: 1, formats: new Set(['nifti'] as const), preview: false });
    expect(redone.skipped).toBe(0);
    expect((await readManifest(dir)).get(sid(2))?.status).toBe('ok');
    expect(await readFile(corrected)).toEqual(before);
  });
});

describe('refusals name the case', () => {
  test('a segment run whose model has other classes', async () => {
    const dir = await segCopy('seg-classes');
    const report = join(dir, sid(3), CASE_FILES.report);
    const json = JSON.parse(await readFile(report, 'utf8'));
    json.model.classes = json.model.classes.slice(0, 3);
    await writeFile(report, JSON.stringify(json));
    await expect(openPseudoLabels([dir], pseudoOptions('cache-classes'))).rejects.toThrow(new RegExp(`/seg-classes/${sid(3)}: cannot use as a pseudo-label: segmented by a model with classes \\[0 background, 1 RV, 2 Myo\\], the dataset has \\[0 background, 1 RV, 2 Myo, 3 LV\\]$`));
  });

  test('a mask whose geometry differs from its source image', async () => {
    const dir = await segCopy('seg-grid');
    const path = join(dir, sid(2), CASE_FILES.mask);
    const mask = await readNiftiFile(path);
    const [x, y, z] = mask.dims;
    await writeNiftiFile(path, new Volume({ data: new Uint8Array(x * y * (z - 1)), dims: [x, y, z - 1], affine: mask.affine }));
    await expect(openPseudoLabels([dir], pseudoOptions('cache-grid'))).rejects.toThrow(new RegExp(`/seg-grid/${sid(2)}: cannot use as a pseudo-label: mask.nii.gz \\(dims \\d+×\\d+×\\d+\\) does not lie on its source image's grid`));
  });

  test('a source image that changed since it was segmented', async () => {
    const dir = await segCopy('seg-changed');
    // The manifest now points at a copy of the source with one voxel altered.
    const source = await readNiftiFile(join(data, 'imagesTr', `${id(3)}_0000.nii.gz`));
    const altered = source.data.slice();
    altered[0] += 1;
    const moved = join(work, `${id(3)}_0000.nii.gz`);
    await writeNiftiFile(moved, source.withData(altered));
    await editManifest(dir, (e) => {
      if (e.caseId === sid(3)) e.input = moved;
    });
    await expect(openPseudoLabels([dir], pseudoOptions('cache-changed'))).rejects.toThrow(new RegExp(`/seg-changed/${sid(3)}: cannot use as a pseudo-label: its source ${sid(3)}.nii.gz changed since it was segmented`));
  });

  test('training stops before the first iteration with the same line', async () => {
    const dir = await segCopy('seg-classes-train');
    const report = join(dir, sid(2), CASE_FILES.report);
    const json = JSON.parse(await readFile(report, 'utf8'));
    json.model.classes[1].name = 'not-RV';
    await writeFile(report, JSON.stringify(json));
    await expect(train(tiny(join(work, 'run-refused'), { pseudoLabels: [dir], pseudoVerdicts: ['accept', 'review', 'reject'] }), { events: quiet })).rejects.toThrow(
      new RegExp(`${sid(2)}: cannot use as a pseudo-label: segmented by a model with classes`),
    );
  });
});

describe('training with pseudo-labels', () => {
  const allVerdicts: TrainConfig['pseudoVerdicts'] = ['accept', 'review', 'reject'];
  const supervisedTerms = async (out: string) =>
    (await readMetrics(out)).filter((r): r is IterationRecord => r.type === 'iteration').map((r) => [r.terms.ceA, r.terms.ceB]);

  test('all-Ω3 cases under region weighting contribute zero CE; unweighted they do not', async () => {
    const dir = await segCopy('seg-omega3');
    for (const n of [2, 3]) await fillRegion(dir, sid(n), 3);
    // Only pseudo-labelled slices in the labelled part of each batch.
    const extra = { pseudoLabels: [dir], pseudoVerdicts: allVerdicts, pseudoFraction: 1, batchLabeled: 1, iterations: 3 };
    let unlabeledSlices = -1;
    const region = join(work, 'run-omega3-region');
    await train(tiny(region, { ...extra, pseudoWeighting: 'region' }), { events: { ...quiet, onStart: (i) => (unlabeledSlices = i.unlabeledSlices) } });
    expect((await supervisedTerms(region)).flat()).toEqual([0, 0, 0, 0, 0, 0]);
    // The two segmented images left the unlabeled pool: only case 4 remains.
    const case4 = await readNiftiFile(join(data, 'imagesTr', `${id(4)}_0000.nii.gz`));
    expect(unlabeledSlices).toBe(Math.min(...case4.dims));

    const none = join(work, 'run-omega3-none');
    await train(tiny(none, { ...extra, pseudoWeighting: 'none' }), { events: quiet });
    for (const ce of (await supervisedTerms(none)).flat()) expect(ce).toBeGreaterThan(0);

    // A corrected case is a full label even where every region is Ω3.
    const correctedDir = await segCopy('seg-omega3-corrected');
    for (const n of [2, 3]) {
      await fillRegion(correctedDir, sid(n), 3);
      await cp(join(data, 'labelsTr', `${id(n)}.nii.gz`), join(correctedDir, sid(n), SEGMENT_FILES.corrected));
    }
    const corrected = join(work, 'run-omega3-corrected');
    await train(tiny(corrected, { ...extra, pseudoLabels: [correctedDir], pseudoWeighting: 'region' }), { events: quiet });
    for (const ce of (await supervisedTerms(corrected)).flat()) expect(ce).toBeGreaterThan(0);
  }, 300_000);

  test('config.json, the checkpoint and the exported card record the segment runs by name and hash, no paths', async () => {
    const out = join(work, 'run-record');
    const dir = await segCopy('seg-record');
    await train(tiny(out, { pseudoLabels: [dir], pseudoVerdicts: allVerdicts, pseudoWeighting: 'confidence' }), { events: quiet });
    const manifestSha256 = createHash('sha256').update(await readFile(join(dir, MANIFEST_FILE))).digest('hex');
    const verdicts = [...(await readManifest(dir)).values()].map((e) => e.summary!.verdict);
    const counts = { accept: 0, review: 0, reject: 0, corrected: 0 };
    for (const v of verdicts) counts[v]++;
    const expected = [{ name: 'seg-record', manifestSha256, cases: counts, skippedInDataset: 0 }];

    const configJson = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(configJson.config.pseudoLabelSources).toEqual(expected);
    expect(configJson.config.pseudoLabels).toEqual(['seg-record']);
    expect(configJson.config.pseudoWeighting).toBe('confidence');
    expect(JSON.stringify(configJson.config.pseudoLabels)).not.toContain(work);

    const { state } = await loadCheckpoint<TrainState>(join(out, 'latest.ckpt'));
    expect(state.config.pseudoLabelSources).toEqual(expected);
    expect(state.pseudo?.dirs).toEqual([dir]);

    const { card } = await loadRunForExport(out);
    const recorded = card.training?.config as Record<string, unknown>;
    expect(recorded.pseudoLabelSources).toEqual(expected);
    expect(recorded.pseudoWeighting).toBe('confidence');
    expect(JSON.stringify(recorded)).not.toContain(work);

    // Resume re-reads the same folders (from the checkpoint) and continues.
    const resumed = await train(tiny(out, { iterations: 3 }), { resume: true, events: quiet });
    expect(resumed.iteration).toBe(3);
    // A segment folder that changed since the run started is refused on resume.
    await writeFile(join(dir, MANIFEST_FILE), `${await readFile(join(dir, MANIFEST_FILE), 'utf8')}\n`);
    await expect(train(tiny(out, { iterations: 4 }), { resume: true, events: quiet })).rejects.toThrow(/pseudo-labels changed since this run started/);
  }, 300_000);
});

describe('DICOM series sources and DICOM SEG corrections', () => {
  let dicomSrc: string;
  let segDicom: string;
  let caseId: string;
  let series: Volume<VoxelArray>;
  const model = () => join(work, 'round0.onnx');
  const dicomSources = async (folder: string) => (await discoverInputs([folder])).cases.map((c) => c.source);
  const segment = async (output: string, resume = false) =>
    runSegmentation(await dicomSources(dicomSrc), { output, model: model(), device: 'cpu', threads: 1, formats: new Set(['nifti', 'dicom-seg'] as const), preview: false, resume });
  /** The label volume's slices along the canonical slice axis, as the pseudo-label set reads them. */
  const readAll = async (set: Awaited<ReturnType<typeof openPseudoLabels>>) => {
    const out: { label: number[]; weight: number[] }[] = [];
    const buf = { image: new Float32Array(set.maxSliceVoxels), label: new Uint8Array(set.maxSliceVoxels), weight: new Float32Array(set.maxSliceVoxels) };
    for (const ref of set.slices) {
      const { width, height } = set.readSlice(ref, buf.image, buf.label, buf.weight);
      out.push({ label: Array.from(buf.label.subarray(0, width * height)), weight: Array.from(buf.weight.subarray(0, width * height)) });
    }
    return out;
  };
  const canonicalSlices = (v: Volume<VoxelArray>) => {
    const canon = reorient(v, canonicalOrientation(series.affine));
    const n = canon.dims[0] * canon.dims[1];
    return Array.from({ length: canon.dims[2] }, (_, k) => Array.from(canon.data.subarray(k * n, (k + 1) * n)));
  };
  /** A reviewer's label on the series' grid: a box of each class on a few slices. */
  const correction = () => {
    const [x, y, z] = series.dims;
    const data = new Uint8Array(x * y * z);
    for (let k = 5; k < 9; k++) for (let j = 60; j < 110; j++) for (let i = 80; i < 140; i++) data[i + x * (j + y * k)] = i < 100 ? 1 : i < 120 ? 2 : 3;
    return series.withData(data) as Volume<Uint8Array>;
  };
  const fgClasses = () => classes.filter((c) => c.value !== 0);

  beforeAll(async () => {
    // A copy of the 20-slice MR series, so a test may alter a file of it.
    dicomSrc = join(work, 'dicom-src');
    await cp(daikonSeries, dicomSrc, { recursive: true });
    segDicom = join(work, 'seg-dicom');
    expect((await segment(segDicom)).exitCode).toBe(0);
    caseId = [...(await readManifest(segDicom)).keys()][0];
    const found = (await scanDicom([dicomSrc])).series[0];
    series = await readDicomSeries(found.files, { seriesUID: found.id });
  }, 300_000);

  const dicomCopy = async (name: string) => {
    const dir = join(work, name);
    await cp(segDicom, dir, { recursive: true });
    return dir;
  };

  test("a case segmented from a DICOM series is read back from its series, on the mask's grid", async () => {
    const set = await openPseudoLabels([segDicom], pseudoOptions('cache-dicom', { weighting: 'none' }));
    expect(set.sources[0].cases.accept + set.sources[0].cases.review + set.sources[0].cases.reject).toBe(1);
    const mask = await readNiftiFile(join(segDicom, caseId, CASE_FILES.mask));
    expect(mask.dims).toEqual(series.dims);
    expect((await readAll(set)).map((s) => s.label)).toEqual(canonicalSlices(mask));
    // The pool exclusion names the series' folder.
    expect([...set.sourcePaths]).toEqual([dicomSrc]);
    await set.close();
  });

  test('a DICOM source whose files changed, or a mask off its grid, is refused naming the case', async () => {
    const changedSrc = join(work, 'dicom-changed');
    await cp(dicomSrc, changedSrc, { recursive: true });
    const file = join(changedSrc, (await readdir(changedSrc))[3]);
    const bytes = await readFile(file);
    bytes[bytes.length - 1] ^= 1;
    await writeFile(file, bytes);
    const changed = await dicomCopy('seg-dicom-changed');
    await editManifest(changed, (e) => (e.input = changedSrc));
    await expect(openPseudoLabels([changed], pseudoOptions('cache-dicom-changed', { weighting: 'none' }))).rejects.toThrow(
      new RegExp(`/seg-dicom-changed/${caseId}: cannot use as a pseudo-label: its source dicom-changed changed since it was segmented \\(input hash differs\\)$`),
    );
    const grid = await dicomCopy('seg-dicom-grid');
    const [x, y, z] = series.dims;
    await writeNiftiFile(join(grid, caseId, CASE_FILES.mask), new Volume({ data: new Uint8Array(x * y * (z - 1)), dims: [x, y, z - 1], affine: series.affine }));
    await expect(openPseudoLabels([grid], pseudoOptions('cache-dicom-grid', { weighting: 'none' }))).rejects.toThrow(
      new RegExp(`/seg-dicom-grid/${caseId}: cannot use as a pseudo-label: mask.nii.gz \\(dims ${x}×${y}×${z - 1}\\) does not lie on its source image's grid`),
    );
  });

  test("a reviewer's corrected.seg.dcm is the label, mapped by segment label, weight 1, whatever the verdict", async () => {
    const dir = await dicomCopy('seg-dicom-corrected');
    const label = correction();
    // Segments in another order than the class values, and the writer's own default names: mapping is by label.
    const reordered = [...fgClasses()].reverse();
    await writeFile(join(dir, caseId, SEGMENT_FILES.correctedSeg), encodeDicomSeg(label, reordered));
    await editManifest(dir, (e) => ((e.summary as { verdict: string }).verdict = 'reject'));
    const set = await openPseudoLabels([dir], pseudoOptions('cache-dicom-corrected', { verdicts: ['accept'] }));
    expect(set.sources[0].cases).toEqual({ accept: 0, review: 0, reject: 0, corrected: 1 });
    const slices = await readAll(set);
    expect(slices.map((s) => s.label)).toEqual(canonicalSlices(label));
    expect(slices.every((s) => s.weight.every((w) => w === 1))).toBe(true);
    expect(slices.flatMap((s) => s.label).filter((v) => v === 3).length).toBe(4 * 50 * 20);
    await set.close();
  });

  test('a corrected.seg.dcm of other classes or another geometry, on a NIfTI case, or beside corrected.nii.gz is refused in one line', async () => {
    const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
      [
        'classes',
        (dir) => writeFile(join(dir, caseId, SEGMENT_FILES.correctedSeg), encodeDicomSeg(correction(), [{ value: 1, name: 'Liver' }, { value: 2, name: 'Myo' }, { value: 3, name: 'LV' }])),
        /corrected\.seg\.dcm: DICOM SEG segment 1 "Liver" is not one of the classes \(RV, Myo, LV\)$/,
      ],
      [
        'geometry',
        async (dir) => {
          const label = correction();
          const dicom = label.meta.dicom!;
          const shifted = { ...dicom, slices: dicom.slices.map((sl) => ({ ...sl, imagePositionPatient: [sl.imagePositionPatient[0], sl.imagePositionPatient[1], sl.imagePositionPatient[2] + 2] as [number, number, number] })) };
          const moved = new Volume({ data: label.data, dims: label.dims, affine: label.affine, meta: { ...label.meta, dicom: shifted } });
          await writeFile(join(dir, caseId, SEGMENT_FILES.correctedSeg), encodeDicomSeg(moved, fgClasses()));
        },
        /corrected\.seg\.dcm: DICOM SEG frame 1 lies at \[.*\], its source image at \[.*\]$/,
      ],
      [
        'both',
        async (dir) => {
          await writeFile(join(dir, caseId, SEGMENT_FILES.correctedSeg), encodeDicomSeg(correction(), fgClasses()));
          await cp(join(dir, caseId, CASE_FILES.mask), join(dir, caseId, SEGMENT_FILES.corrected));
        },
        /has both corrected\.nii\.gz and corrected\.seg\.dcm; keep the reviewer's one correction$/,
      ],
    ];
    for (const [name, arrange, pattern] of cases) {
      const dir = await dicomCopy(`seg-dicom-refuse-${name}`);
      await arrange(dir);
      const err = await openPseudoLabels([dir], pseudoOptions(`cache-dicom-refuse-${name}`, { weighting: 'none' })).then(() => undefined, (e: Error) => e);
      expect(err?.message, name).toMatch(new RegExp(`/seg-dicom-refuse-${name}/${caseId}: cannot use as a pseudo-label: `));
      expect(err?.message, name).toMatch(pattern);
      expect(err?.message, name).not.toContain('\n');
    }
    // A NIfTI-sourced case cannot carry a DICOM SEG correction.
    const nifti = await segCopy('seg-nifti-segdcm');
    await writeFile(join(nifti, sid(2), SEGMENT_FILES.correctedSeg), encodeDicomSeg(correction(), fgClasses()));
    await expect(openPseudoLabels([nifti], pseudoOptions('cache-nifti-segdcm', { weighting: 'none' }))).rejects.toThrow(
      new RegExp(`/seg-nifti-segdcm/${sid(2)}: cannot use as a pseudo-label: corrected\\.seg\\.dcm is a DICOM SEG, but the case was segmented from a NIfTI image`),
    );
  });

  test('alhvr-segment, with and without --resume, leaves corrected.seg.dcm alone', async () => {
    const dir = await dicomCopy('seg-dicom-rerun');
    const path = join(dir, caseId, SEGMENT_FILES.correctedSeg);
    await writeFile(path, encodeDicomSeg(correction(), fgClasses()));
    const before = await readFile(path);
    expect((await segment(dir, true)).skipped).toBe(1);
    expect(await readFile(path)).toEqual(before);
    const redone = await segment(dir);
    expect(redone.skipped).toBe(0);
    expect((await readdir(join(dir, caseId))).sort()).toEqual(expect.arrayContaining([CASE_FILES.seg, SEGMENT_FILES.correctedSeg]));
    expect(await readFile(path)).toEqual(before);
  }, 300_000);
});
