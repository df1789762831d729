// The pseudo-label loop through a PACS, against a real Orthanc (test/support/orthanc.ts): a phantom
// CT series is segmented with alhvr-segment --dicomweb --store, a reviewer then saves a corrected
// SEG of the same series (another writer, saved later), and `--pseudo-labels URL` must train on
// the reviewer's labels; before that, on our own SEG, weighted from the segment folder's maps when
// that folder is named too. Orthanc demands a password (HTTP Basic): the credentials given as a
// header reach the server and no file of the run.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALHVR_RECIPE_PREPROCESSING, canonicalOrientation, encodeDicomSeg, reorient, type Volume, type VoxelArray } from '@alhvr/core';
import { readDicomSeries, readNiftiFile, writeNiftiFile, writePhantomDataset } from '@alhvr/core/node';
import { CASE_FILES, readManifest, segmentDicomweb } from '@alhvr/inference/node';
import { openPseudoLabels, resolveConfig, train, type PseudoLabelSet } from '@alhvr/training';
import { runCli } from './cli-harness.js';
import { makeToyModel } from './segment-toy-model.js';
import { startOrthanc, type Orthanc } from './support/orthanc.js';

const PASSWORD = 'pacs-pseudo-secret-5e1d';
const quiet = { log: () => {} };
const tmp = mkdtempSync(join(tmpdir(), 'alhvr-pacs-pseudo-'));
let orthanc: Orthanc;
let model = '';
let series: Volume<VoxelArray>;
let study = '';
let segDir = '';
let caseId = '';
let access: { headers: Record<string, string> };
/** The toy model's classes, which the training dataset below is given too. */
const classes = [
  { value: 0, name: 'background' },
  { value: 1, name: 'mid' },
  { value: 2, name: 'bright' },
];
const fg = classes.filter((c) => c.value !== 0);

const listFiles = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));

const options = (cache: string, extra: Partial<Parameters<typeof openPseudoLabels>[1]> = {}): Parameters<typeof openPseudoLabels>[1] => ({
  classes,
  verdicts: ['accept', 'review', 'reject'],
  weighting: 'none',
  unstableWeight: 0.5,
  cacheDir: join(tmp, cache),
  preprocessing: ALHVR_RECIPE_PREPROCESSING,
  dicomweb: access,
  ...extra,
});

/** Every slice's labels and weights as the trainer reads them. */
function readAll(set: PseudoLabelSet): { label: number[]; weight: number[] }[] {
  const buf = { image: new Float32Array(set.maxSliceVoxels), label: new Uint8Array(set.maxSliceVoxels), weight: new Float32Array(set.maxSliceVoxels) };
  return set.slices.map((ref) => {
    const { width, height } = set.readSlice(ref, buf.image, buf.label, buf.weight);
    return { label: Array.from(buf.label.subarray(0, width * height)), weight: Array.from(buf.weight.subarray(0, width * height)) };
  });
}

/** A volume on the series' grid, sliced along the canonical axis as the reader caches it. */
function canonicalSlices(v: Volume<VoxelArray>): number[][] {
  const canon = reorient(v, canonicalOrientation(series.affine, ALHVR_RECIPE_PREPROCESSING.sliceAxis));
  const n = canon.dims[0] * canon.dims[1];
  return Array.from({ length: canon.dims[2] }, (_, k) => Array.from(canon.data.subarray(k * n, (k + 1) * n)));
}

/** A reviewer's label: a box of each class on a few slices, `shift` voxels along x. */
function reviewerLabel(shift: number): Volume<Uint8Array> {
  const [x, y, z] = series.dims;
  const data = new Uint8Array(x * y * z);
  for (let k = 1; k < Math.min(z, 4); k++) for (let j = 20; j < 40; j++) for (let i = 10 + shift; i < 40 + shift; i++) data[i + x * (j + y * k)] = i < 25 + shift ? 1 : 2;
  return series.withData(data) as Volume<Uint8Array>;
}

/** A reviewer's SEG as OHIF or Slicer would save it: another writer, another description, saved at `when`. */
const reviewerSeg = (label: Volume<Uint8Array>, when: Date) => encodeDicomSeg(label, fg, { manufacturer: 'OHIF', algorithmName: 'Manual', seriesDescription: 'Reviewed segmentation', now: when });

beforeAll(async () => {
  model = makeToyModel(tmp, { size: [64, 64] });
  const phantom = join(tmp, 'phantom');
  const made = await runCli('alhvr-phantom', ['--kind', 'abdomen-ct', '--dicom', '--matrix', '64', '--cases', '1', '--seed', '8', '--out', phantom, '--quiet']);
  expect(made.code, made.stderr).toBe(0);
  const files = listFiles(join(phantom, 'dicom'));
  series = await readDicomSeries(files);
  study = series.meta.dicom!.patientStudy.StudyInstanceUID!;
  orthanc = await startOrthanc(tmp, { user: { name: 'alhvr', password: PASSWORD } });
  access = { headers: { Authorization: orthanc.authorization! } };
  for (const f of files) await orthanc.upload(readFileSync(f));
  segDir = join(tmp, 'seg');
  const run = await segmentDicomweb({ output: segDir, model, source: { url: orthanc.dicomweb, ...access }, selection: { studies: [study] }, store: true });
  expect(run.exitCode).toBe(0);
  expect(run.stored).toHaveLength(1);
  caseId = [...(await readManifest(segDir)).keys()][0];
}, 120_000);

afterAll(() => {
  orthanc?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('alhvr-train --pseudo-labels URL against Orthanc', () => {
  it('finds our stored SEG by its writer and reads its source series back over WADO-RS: the labels are the local mask', async () => {
    const set = await openPseudoLabels([orthanc.dicomweb], options('cache-ours'));
    // The stored SEG names the model file that made it; the run records that hash, not the server's path.
    const modelHash = (await readManifest(segDir)).get(caseId)!.modelHash;
    expect(set.sources).toEqual([{ name: '127.0.0.1', kind: 'dicomweb', segsSha256: expect.stringMatching(/^[0-9a-f]{64}$/), models: [modelHash], cases: { accept: 0, review: 0, reject: 0, corrected: 0, unreviewed: 1 }, skippedInDataset: 0 }]);
    const mask = await readNiftiFile(join(segDir, caseId, CASE_FILES.mask));
    const slices = readAll(set);
    expect(slices.map((s) => s.label)).toEqual(canonicalSlices(mask));
    expect(slices.flat().length).toBeGreaterThan(0);
    expect(slices.every((s) => s.weight.every((w) => w === 1))).toBe(true);
    await set.close();
  });

  it('weighs our SEG by the segment folder named beside the server; refuses region weighting without it, and the folder without its server', async () => {
    const set = await openPseudoLabels([orthanc.dicomweb, segDir], options('cache-paired', { weighting: 'region' }));
    const verdict = (await readManifest(segDir)).get(caseId)!.summary!.verdict;
    expect(set.sources.find((s) => s.kind === 'dicomweb')!.cases).toEqual({ accept: 0, review: 0, reject: 0, corrected: 0, unreviewed: 0, [verdict]: 1 });
    const region = await readNiftiFile(join(segDir, caseId, CASE_FILES.region));
    const expected = canonicalSlices(region).map((s) => s.map((r) => (r === 1 ? 1 : r === 2 ? 0.5 : 0)));
    const slices = readAll(set);
    expect(slices.map((s) => s.weight)).toEqual(expected);
    expect(expected.flat().some((w) => w !== 1)).toBe(true);
    await set.close();
    // The folder's verdict filter applies to the server's SEG of that case.
    const others = (['accept', 'review', 'reject'] as const).filter((v) => v !== verdict);
    const filtered = await openPseudoLabels([orthanc.dicomweb, segDir], options('cache-paired-verdict', { verdicts: others }));
    expect(filtered.slices).toHaveLength(0);
    await filtered.close();

    const alone = await openPseudoLabels([orthanc.dicomweb], options('cache-alone', { weighting: 'region' })).then(() => '', (e: Error) => e.message);
    expect(alone).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/dicom-web\/studies\/[0-9.]+\/series\/[0-9.]+: cannot use as a pseudo-label: a SEG carries labels only, .*name that folder too \(--pseudo-labels http:\/\/127\.0\.0\.1:\d+\/dicom-web DIR\) or use --pseudo-weighting none$/);
    const folderOnly = await openPseudoLabels([segDir], options('cache-folder-only')).then(() => '', (e: Error) => e.message);
    expect(folderOnly).toBe(`${join(segDir, caseId)}: cannot use as a pseudo-label: was segmented from the DICOMweb server ${orthanc.dicomweb}: name the server too (--pseudo-labels ${orthanc.dicomweb} ${segDir}), so its stored and reviewed SEGs are read there`);
  });

  it("trains on the reviewer's SEG saved after ours (an older one is ignored), weight 1; the run records the host only and no credentials", async () => {
    const day = 24 * 3600_000;
    const later = reviewerLabel(0);
    await orthanc.upload(reviewerSeg(reviewerLabel(12), new Date(Date.now() - day)));
    await orthanc.upload(reviewerSeg(later, new Date(Date.now() + day)));

    for (const sources of [[orthanc.dicomweb], [orthanc.dicomweb, segDir]]) {
      const set = await openPseudoLabels(sources, options(`cache-reviewed-${sources.length}`, { weighting: sources.length === 2 ? 'region' : 'none', verdicts: ['accept'] }));
      const pacs = set.sources.find((s) => s.kind === 'dicomweb')!;
      expect(pacs.cases).toEqual({ accept: 0, review: 0, reject: 0, corrected: 1, unreviewed: 0 });
      const slices = readAll(set);
      expect(slices.map((s) => s.label)).toEqual(canonicalSlices(later));
      expect(slices.every((s) => s.weight.every((w) => w === 1))).toBe(true);
      await set.close();
    }

    // The same through alhvr-train: a dataset of the toy model's classes, two iterations on tiny widths.
    const data = join(tmp, 'data');
    await writePhantomDataset(data, { cases: 4, seed: 3 });
    const json = JSON.parse(await readFile(join(data, 'dataset.json'), 'utf8'));
    json.labels = Object.fromEntries(classes.map((c) => [c.name, c.value]));
    await writeFile(join(data, 'dataset.json'), JSON.stringify(json));
    for (const f of readdirSync(join(data, 'labelsTr'))) {
      const label = await readNiftiFile(join(data, 'labelsTr', f));
      await writeNiftiFile(join(data, 'labelsTr', f), label.withData(Uint8Array.from(label.data as ArrayLike<number>, (v) => Math.min(v, 2))));
    }
    const out = join(tmp, 'run');
    // Without the credentials the server answers 401: one line naming it.
    await expect(openPseudoLabels([orthanc.dicomweb], options('cache-401', { dicomweb: undefined }))).rejects.toThrow(new RegExp(`^${orthanc.dicomweb}: QIDO-RS study search: HTTP 401 unauthorized`));
    const config = resolveConfig({
      data, out, labeledCases: 2, valCases: 1, iterations: 2, batchLabeled: 2, batchUnlabeled: 1, patch: 32, widths: [2, 2, 2, 2, 2],
      valEvery: 100, checkpointEvery: 100, backend: 'wasm', threads: 1, seed: 5, pseudoLabels: [orthanc.dicomweb], pseudoWeighting: 'none',
    });
    await train(config, { events: quiet, pseudoLabelAccess: access });
    const saved = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).config;
    expect(saved.pseudoLabels).toEqual(['127.0.0.1']);
    expect(saved.pseudoLabelSources).toEqual([expect.objectContaining({ name: '127.0.0.1', kind: 'dicomweb', cases: { accept: 0, review: 0, reject: 0, corrected: 1, unreviewed: 0 } })]);
    // alhvr-train --resume finds the server again from the checkpoint (config.json names its host
    // only), reaches it with --header, and checks that the same SEGs are there.
    const resumed = await runCli('alhvr-train', ['--out', out, '--resume', '--iterations', '3', '--quiet', '--header', `Authorization: ${orthanc.authorization}`]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).config.iterations).toBe(3);
    // No password, port or path of the server in any file of the run (config, checkpoints, metrics).
    for (const f of listFiles(out)) {
      if (statSync(f).size > 50e6) continue;
      const text = readFileSync(f).toString('latin1');
      expect(text, f).not.toContain(PASSWORD);
      expect(text, f).not.toContain(orthanc.authorization!);
      if (!f.endsWith('.ckpt')) expect(text, f).not.toContain(`:${orthanc.port}/`);
    }
  }, 600_000);

  it('refuses credentials in the URL, and --header or --ca without a server, in one line (exit 2)', async () => {
    // The dataset folder exists, so the line is about the option.
    const inUrl = await runCli('alhvr-train', ['--data', tmp, '--out', join(tmp, 'r1'), '--pseudo-labels', 'http://user:secret@127.0.0.1:1/dicom-web']);
    expect(inUrl.code).toBe(2);
    expect(inUrl.stderr.trim()).toMatch(/--pseudo-labels: put credentials in --header or ALHVR_DICOMWEB_AUTHORIZATION, not in the URL$/);
    expect(inUrl.stderr).not.toContain('secret');
    const noServer = await runCli('alhvr-train', ['--data', tmp, '--out', join(tmp, 'r2'), '--pseudo-labels', segDir, '--header', `Authorization: ${orthanc.authorization}`]);
    expect(noServer.code).toBe(2);
    expect(noServer.stderr.trim()).toMatch(/--header needs --pseudo-labels URL \(a DICOMweb server\)$/);
    expect(noServer.stderr).not.toContain(orthanc.authorization!);
  }, 300_000);
});
