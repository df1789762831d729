// Case ids of DICOMweb runs across studies, against a real Orthanc: two studies whose series carry
// the same PatientID, StudyDate, SeriesNumber and SeriesDescription (here a series copied under new
// UIDs, as a re-identifying anonymiser or a repeated acquisition on the same day leaves them)
// must become two cases with distinct ids, the same ids whichever batch or shard segments them
// and on --resume. The copy gets new Series and SOP Instance UIDs as well: Orthanc's WADO-RS cannot
// serve two instances that share a SOP Instance UID (it answers 404 for both).
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readDicomSeries } from '@alhvr/core/node';
import { readManifest, segmentDicomweb, type DicomwebRunOptions } from '@alhvr/inference/node';
import { runCli } from './cli-harness.js';
import { makeToyModel } from './segment-toy-model.js';
import { startOrthanc, type Orthanc } from './support/orthanc.js';

const tmp = mkdtempSync(join(tmpdir(), 'alhvr-pacs-ids-'));
let orthanc: Orthanc;
let model = '';
const studies: string[] = [];
const COPY_STUDY_UID = '2.25.118812400921833046419416040287766410631';

const listFiles = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));

/** The instance under another StudyInstanceUID, with Series and SOP UIDs derived from its own; every other attribute as it was. */
function withStudyUid(bytes: Buffer, uid: string): Uint8Array {
  const file = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  const derived = (old: string) => `2.25.${BigInt(`0x${createHash('sha256').update(`copy:${old}`).digest('hex').slice(0, 30)}`)}`;
  file.dict['0020000D'].Value = [uid];
  file.dict['0020000E'].Value = [derived(file.dict['0020000E'].Value[0])];
  const sop = derived(file.dict['00080018'].Value[0]);
  file.dict['00080018'].Value = [sop];
  file.meta['00020003'].Value = [sop];
  return new Uint8Array(file.write());
}

beforeAll(async () => {
  model = makeToyModel(tmp, { size: [64, 64] });
  const phantom = join(tmp, 'phantom');
  const made = await runCli('alhvr-phantom', ['--kind', 'abdomen-ct', '--dicom', '--matrix', '64', '--cases', '1', '--seed', '9', '--out', phantom, '--quiet']);
  expect(made.code, made.stderr).toBe(0);
  const files = listFiles(join(phantom, 'dicom'));
  orthanc = await startOrthanc(tmp);
  for (const f of files) {
    await orthanc.upload(readFileSync(f));
    await orthanc.upload(withStudyUid(readFileSync(f), COPY_STUDY_UID));
  }
  studies.push((await readDicomSeries(files)).meta.dicom!.patientStudy.StudyInstanceUID!, COPY_STUDY_UID);
}, 120_000);

afterAll(() => {
  orthanc?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

it('two studies whose series share PatientID, StudyDate, SeriesNumber and SeriesDescription get distinct, stable case ids (batches, shards, --resume)', async () => {
  const run = (output: string, extra: Partial<DicomwebRunOptions> = {}) =>
    segmentDicomweb({ output, model, source: { url: orthanc.dicomweb }, selection: { studies }, formats: new Set(['nifti'] as const), preview: false, ...extra });
  // One series per batch: each batch alone sees no clash, so the ids must come from the whole listing.
  const one = join(tmp, 'one');
  const first = await run(one, { seriesPerBatch: 1 });
  expect(first.entries.map((e) => e.error ?? 'ok')).toEqual(['ok', 'ok']);
  expect(first.exitCode).toBe(0);
  const manifest = [...(await readManifest(one)).values()];
  expect(manifest).toHaveLength(2);
  const ids = manifest.map((e) => e.caseId);
  expect(new Set(ids).size).toBe(2);
  // The same readable id, told apart by a suffix hashed from the Study/Series UIDs.
  const stems = ids.map((id) => id.replace(/-[0-9a-f]{8}$/, ''));
  expect(stems[0]).toBe(stems[1]);
  expect(ids.every((id) => /-[0-9a-f]{8}$/.test(id))).toBe(true);
  expect(new Set(manifest.map((e) => e.input.split('/studies/')[1].split('/')[0]))).toEqual(new Set(studies));
  for (const id of ids) expect(readdirSync(join(one, id))).toContain('mask.nii.gz');
  const idOf = new Map(manifest.map((e) => [e.input, e.caseId]));

  // --resume finds both under the same ids and redoes neither.
  const again = await run(one, { seriesPerBatch: 1, resume: true });
  expect(again.skipped).toBe(2);
  expect([...(await readManifest(one)).values()].map((e) => e.caseId).sort()).toEqual([...ids].sort());

  // Two shards into one folder, and one batch holding both: the same ids.
  const sharded = join(tmp, 'sharded');
  for (const index of [1, 2]) expect((await run(sharded, { shard: { index, count: 2 } })).exitCode).toBe(0);
  const together = join(tmp, 'together');
  expect((await run(together)).exitCode).toBe(0);
  for (const dir of [sharded, together]) {
    const entries = [...(await readManifest(dir)).values()];
    expect(entries).toHaveLength(2);
    for (const e of entries) expect(e.caseId).toBe(idOf.get(e.input));
  }
}, 240_000);
