/**
 * `alhvr-segment --dicomweb`: segment studies held by a DICOMweb server. Series are listed with
 * QIDO-RS, fetched instance by instance with WADO-RS into a temporary folder (memory holds one
 * instance at a time), and from there are an ordinary folder input: the same DICOM scan picks the
 * image series and `runSegmentation` applies the same geometry checks and writes the same outputs
 * and manifest. With `store`, each case's seg.dcm goes back by STOW-RS into the source study.
 *
 * Cases are known by their DICOMweb address (`<server>/studies/<study>/series/<series>`, the
 * manifest's `input`): --resume recognises a done series before fetching anything, and --shard
 * splits the series by Study/Series Instance UID before any transfer, so shards never fetch
 * each other's series. STOW outcomes are kept in `stored.jsonl` beside the manifest.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '@alhvr/core/node';
import { anonymousCaseId, dicomCaseStem, sanitiseCaseId, uniqueCaseIds, type Shard } from './case-id.js';
import { DicomwebTransport, jsonValue, type DicomJson, type DicomwebConnection } from './dicomweb-transport.js';
import { readLastPerKey, readManifest, recordManifestEntry, withLock, writeSummary, type ManifestEntry } from './manifest.js';
import { CASE_FILES } from './outputs.js';
import { discoverInputs, type CaseSource } from './inputs.js';
import { prepareOutputFolder, runSegmentation, validateRunOptions, type RunOptions } from './run.js';

/** Which studies to segment: given Study Instance UIDs, or a QIDO-RS study query. */
export interface DicomwebSelection {
  studies?: string[];
  /** QIDO-RS study attributes, e.g. { ModalitiesInStudy: 'MR', StudyDate: '20240101-20241231' }. */
  query?: Record<string, string>;
}

export interface DicomwebRunOptions extends Omit<RunOptions, 'onStart' | 'onCaseDone' | 'shard'> {
  source: DicomwebConnection;
  selection: DicomwebSelection;
  /** Send each seg.dcm back with STOW-RS: to `storeTo`, else to the source server. */
  store?: boolean;
  storeTo?: DicomwebConnection;
  shard?: Shard;
  /** Series fetched, segmented and removed together; bounds the temporary disk use (default 8). */
  seriesPerBatch?: number;
  /** Where the temporary series folders go (default: the system's temporary folder). */
  tempDir?: string;
  /** The series list is known: how many are this shard's, and how many resume skips. */
  onPlan?: (plan: { series: number; mine: number; alreadyDone: number }) => void;
  onCaseDone?: (entry: ManifestEntry, skipped: boolean) => void;
  /** Progress and retry lines for the terminal. */
  onNote?: (line: string) => void;
}

export interface StoreRecord {
  caseId: string;
  input: string;
  server: string;
  studyInstanceUID: string;
  sourceSeriesInstanceUID: string;
  /** sha256 of the seg.dcm sent: a re-segmented case is sent again. */
  segSha256: string;
  status: 'stored' | 'failed';
  error?: string;
  at: string;
}

export interface DicomwebRunResult {
  entries: ManifestEntry[];
  skipped: number;
  failed: number;
  stored: StoreRecord[];
  /** --resume: cases whose unchanged seg.dcm the target server already has (not sent again). */
  alreadyStored: number;
  storeFailed: StoreRecord[];
  /** 0 when every case (and every requested STOW) of this run succeeded, 1 otherwise. */
  exitCode: number;
}

export const STORE_FILE = 'stored.jsonl';

/** A series as QIDO-RS lists it, with the study attributes the case id is made of. */
export interface RemoteSeries {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  modality: string;
  patientId: string;
  studyDate: string;
  seriesNumber: string;
  description: string;
  input: string;
}

/** Modalities whose series hold no images to segment (our own SEGs among them). */
const NON_IMAGE_MODALITIES = new Set(['SEG', 'SR', 'PR', 'KO', 'RTSTRUCT', 'RTPLAN', 'RTRECORD', 'REG', 'FID', 'DOC', 'AU', 'ECG', 'HD', 'PLAN', 'RWV', 'ASMT']);

const TAG = {
  studyUID: '0020000D',
  seriesUID: '0020000E',
  sopUID: '00080018',
  modality: '00080060',
  patientId: '00100020',
  studyDate: '00080020',
  seriesNumber: '00200011',
  seriesDescription: '0008103E',
} as const;

interface StudyProblem {
  caseStem: string;
  input: string;
  error: string;
}

function studyInput(server: string, study: string): string {
  return `${server}/studies/${study}`;
}

function seriesInput(server: string, study: string, series: string): string {
  return `${server}/studies/${study}/series/${series}`;
}

const oneLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0];

/**
 * The image series of the selected studies. A study that cannot be listed (or has no image
 * series) is a problem of that study, reported as a failed case; a query that cannot run
 * fails the whole call, since no case is known then.
 */
export async function listRemoteSeries(t: DicomwebTransport, selection: DicomwebSelection, signal?: AbortSignal): Promise<{ series: RemoteSeries[]; problems: StudyProblem[] }> {
  const studies: { uid: string; patientId: string; studyDate: string }[] = [];
  const problems: StudyProblem[] = [];
  const fromJson = (ds: DicomJson) => ({ uid: jsonValue(ds, TAG.studyUID), patientId: jsonValue(ds, TAG.patientId), studyDate: jsonValue(ds, TAG.studyDate) });
  if (selection.query) {
    for (const ds of await t.searchStudies(selection.query, { signal })) studies.push(fromJson(ds));
  }
  for (const uid of selection.studies ?? []) {
    if (studies.some((s) => s.uid === uid)) continue;
    try {
      const found = await t.searchStudies({ StudyInstanceUID: uid }, { signal });
      if (found.length === 0) throw new Error(`${t.display}: study ${uid} not found`);
      studies.push(fromJson(found[0]));
    } catch (err) {
      problems.push({ caseStem: `study_${uid}`, input: studyInput(t.display, uid), error: oneLine(err) });
    }
  }
  const series: RemoteSeries[] = [];
  for (const study of studies) {
    if (signal?.aborted) break;
    try {
      const listed = await t.searchSeries(study.uid, { signal });
      const images = listed.filter((ds) => !NON_IMAGE_MODALITIES.has(jsonValue(ds, TAG.modality).toUpperCase()));
      if (images.length === 0) {
        const found = [...new Set(listed.map((ds) => jsonValue(ds, TAG.modality) || '?'))].join(', ');
        throw new Error(`${t.display}: study ${study.uid} has no image series${found ? ` (only ${found})` : ''}`);
      }
      for (const ds of images) {
        const seriesUid = jsonValue(ds, TAG.seriesUID);
        series.push({
          studyInstanceUID: study.uid,
          seriesInstanceUID: seriesUid,
          modality: jsonValue(ds, TAG.modality),
          patientId: study.patientId,
          studyDate: study.studyDate,
          seriesNumber: jsonValue(ds, TAG.seriesNumber),
          description: jsonValue(ds, TAG.seriesDescription),
          input: seriesInput(t.display, study.uid, seriesUid),
        });
      }
    } catch (err) {
      problems.push({ caseStem: dicomCaseStem({ patientId: study.patientId, studyDate: study.studyDate }) + `_study`, input: studyInput(t.display, study.uid), error: oneLine(err) });
    }
  }
  return { series, problems };
}

/** Shard i of n over the series sorted by Study/Series Instance UID: every shard sees the same list. */
function shardSeries(series: RemoteSeries[], shard: Shard | undefined): RemoteSeries[] {
  if (!shard || shard.count === 1) return series;
  const key = (s: RemoteSeries) => `${s.studyInstanceUID}/${s.seriesInstanceUID}`;
  const mine = new Set(
    series
      .map(key)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .filter((_, n) => n % shard.count === shard.index - 1),
  );
  return series.filter((s) => mine.has(key(s)));
}

/** Fetch a series' instances into `folder` (see DicomwebTransport.retrieveSeriesFiles) and return the files. */
export async function retrieveSeries(t: DicomwebTransport, s: RemoteSeries, folder: string, opts: { signal?: AbortSignal; onNote?: (line: string) => void; parallel?: number } = {}): Promise<string[]> {
  return t.retrieveSeriesFiles(s.studyInstanceUID, s.seriesInstanceUID, folder, {
    signal: opts.signal,
    parallel: opts.parallel,
    where: s.input,
    onRetry: (e, attempt) => opts.onNote?.(`retrying (${attempt}) after: ${e.message}`),
  });
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

export async function readStoreRecords(dir: string): Promise<Map<string, StoreRecord>> {
  return readLastPerKey<StoreRecord>(join(dir, STORE_FILE), (r) => r.caseId);
}

async function recordStore(dir: string, record: StoreRecord, lock: Pick<RunOptions, 'onLockWait'>): Promise<void> {
  await withLock(
    dir,
    async () => {
      const records = await readStoreRecords(dir);
      records.set(record.caseId, record);
      const lines = [...records.values()].sort((a, b) => (a.caseId < b.caseId ? -1 : a.caseId > b.caseId ? 1 : 0)).map((r) => JSON.stringify(r));
      await writeFileAtomic(join(dir, STORE_FILE), `${lines.join('\n')}\n`);
    },
    { onWait: lock.onLockWait },
  );
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/** Every case recorded for this series segmented with this model, and its files are there. */
async function doneEntries(dir: string, byInput: Map<string, ManifestEntry[]>, input: string, modelHash: string): Promise<ManifestEntry[] | undefined> {
  const entries = byInput.get(input);
  if (!entries?.length || entries.some((e) => e.status !== 'ok' || e.modelHash !== modelHash)) return undefined;
  for (const e of entries) for (const f of e.outputs) if (!(await exists(join(dir, e.caseId, f)))) return undefined;
  return entries;
}

/** Segment the selected studies of a DICOMweb server into `opts.output`; see the module comment. */
export async function segmentDicomweb(opts: DicomwebRunOptions): Promise<DicomwebRunResult> {
  validateRunOptions(opts);
  const dir = resolve(opts.output);
  await prepareOutputFolder(dir);
  const note = (line: string) => opts.onNote?.(line);
  const source = new DicomwebTransport(opts.source);
  const target = opts.store ? (opts.storeTo ? new DicomwebTransport(opts.storeTo) : source) : undefined;
  const temp = await mkdtemp(join(opts.tempDir ?? tmpdir(), 'alhvr-dicomweb-'));
  const entries: ManifestEntry[] = [];
  const stored: StoreRecord[] = [];
  const storeFailed: StoreRecord[] = [];
  let skipped = 0;
  let failed = 0;
  let alreadyStored = 0;
  const lock = { onWait: opts.onLockWait };
  let modelHash = '';
  const recordFailure = async (caseId: string, input: string, error: string) => {
    const entry: ManifestEntry = { caseId, input, kind: 'dicom-series', inputHash: '', modelHash, status: 'failed', error, outputs: [], timingsMs: {}, finishedAt: new Date().toISOString() };
    await recordManifestEntry(dir, entry, lock);
    entries.push(entry);
    failed++;
    opts.onCaseDone?.(entry, false);
  };
  try {
    modelHash = await sha256File(opts.model).catch(() => '');
    const { series, problems } = await listRemoteSeries(source, opts.selection, opts.signal);
    // Ids are decided here, over the whole listing (every shard lists the same series), and
    // handed to each batch: the DICOM scheme of assignCaseIds from the QIDO attributes, where two
    // series share a readable id (two studies of one patient and day, or a study copied under a
    // new StudyInstanceUID) a suffix hashed from their Study and Series Instance UIDs. So batches,
    // shards and --resume agree, and a failure recorded before a series is read has its id.
    const stems = series.map((s) => {
      const readable = dicomCaseStem({ patientId: s.patientId, studyDate: s.studyDate, seriesNumber: s.seriesNumber, description: s.description });
      return opts.anonymizeIds ? anonymousCaseId(readable) : sanitiseCaseId(readable);
    });
    const ids = uniqueCaseIds(series.map((s, n) => ({ stem: stems[n], key: `${s.studyInstanceUID}/${s.seriesInstanceUID}` })));
    const idOf = new Map(series.map((s, n) => [s.input, ids[n]]));
    const mine = shardSeries(series, opts.shard);
    const previous = opts.resume ? await readManifest(dir) : new Map<string, ManifestEntry>();
    const byInput = new Map<string, ManifestEntry[]>();
    for (const e of previous.values()) byInput.set(e.input, [...(byInput.get(e.input) ?? []), e]);
    const storeRecords = opts.resume ? await readStoreRecords(dir) : new Map<string, StoreRecord>();

    const todo: RemoteSeries[] = [];
    const storeOnly: ManifestEntry[] = [];
    for (const s of mine) {
      const done = opts.resume && modelHash ? await doneEntries(dir, byInput, s.input, modelHash) : undefined;
      if (!done) {
        todo.push(s);
        continue;
      }
      skipped += done.length;
      for (const e of done) {
        entries.push(e);
        if (target && e.outputs.includes(CASE_FILES.seg)) {
          const rec = storeRecords.get(e.caseId);
          const sha = await sha256File(join(dir, e.caseId, CASE_FILES.seg)).catch(() => '');
          if (rec?.status === 'stored' && rec.segSha256 === sha && rec.server === target.display) alreadyStored++;
          else storeOnly.push(e);
        }
      }
    }
    opts.onPlan?.({ series: series.length, mine: mine.length, alreadyDone: mine.length - todo.length });
    for (const e of entries) opts.onCaseDone?.(e, true);
    // Study-level problems belong to the first shard only, so n shards record each once.
    if (!opts.shard || opts.shard.index === 1) for (const p of problems) await recordFailure(sanitiseCaseId(p.caseStem), p.input, p.error);

    const storeCase = async (e: ManifestEntry, s: { studyInstanceUID: string; seriesInstanceUID: string }) => {
      const file = join(dir, e.caseId, CASE_FILES.seg);
      const record: StoreRecord = {
        caseId: e.caseId,
        input: e.input,
        server: target!.display,
        studyInstanceUID: s.studyInstanceUID,
        sourceSeriesInstanceUID: s.seriesInstanceUID,
        segSha256: '',
        status: 'stored',
        at: '',
      };
      try {
        const bytes = await readFile(file);
        record.segSha256 = createHash('sha256').update(bytes).digest('hex');
        await target!.store(s.studyInstanceUID, bytes, { signal: opts.signal });
        stored.push(record);
      } catch (err) {
        record.status = 'failed';
        record.error = oneLine(err);
        storeFailed.push(record);
        note(`case ${e.caseId}: STOW-RS failed, outputs kept in ${join(dir, e.caseId)}: ${record.error}`);
      }
      record.at = new Date().toISOString();
      await recordStore(dir, record, opts);
    };
    const uidsOf = (input: string) => {
      const m = /\/studies\/([^/]+)\/series\/([^/]+)$/.exec(input);
      return m ? { studyInstanceUID: m[1], seriesInstanceUID: m[2] } : undefined;
    };
    for (const e of storeOnly) await storeCase(e, uidsOf(e.input)!);

    const perBatch = Math.max(1, opts.seriesPerBatch ?? 8);
    for (let start = 0; start < todo.length && !opts.signal?.aborted; start += perBatch) {
      const batch = todo.slice(start, start + perBatch);
      const sources: CaseSource[] = [];
      for (const [n, s] of batch.entries()) {
        if (opts.signal?.aborted) break;
        const folder = join(temp, String(start + n));
        try {
          note(`retrieving ${s.input}`);
          await retrieveSeries(source, s, folder, { signal: opts.signal, onNote: (l) => note(`${idOf.get(s.input)}: ${l}`) });
          // The fetched instances are a folder input: the same discovery picks the image series
          // (and says why a folder holds none); the case is known by its DICOMweb address.
          const found = await discoverInputs([folder], { signal: opts.signal }).catch((err: unknown) => {
            throw new Error(`${s.input}: ${oneLine(err).replace(`${folder}: `, '')}`);
          });
          // One series fetched is one case; should the scan split it, its parts keep the per-batch ids.
          for (const c of found.cases) sources.push(c.source.kind === 'dicom-series' && found.cases.length === 1 ? { ...c.source, path: s.input, caseId: idOf.get(s.input) } : { ...c.source, path: s.input });
        } catch (err) {
          await recordFailure(idOf.get(s.input)!, s.input, oneLine(err));
        }
      }
      if (sources.length) {
        const result = await runSegmentation(sources, { ...opts, shard: undefined, onStart: undefined, onCaseDone: (e, wasSkipped) => opts.onCaseDone?.(e, wasSkipped) });
        entries.push(...result.entries);
        skipped += result.skipped;
        failed += result.failed;
        if (target) {
          for (const e of result.entries) {
            if (e.status === 'ok' && e.outputs.includes(CASE_FILES.seg)) await storeCase(e, uidsOf(e.input)!);
          }
        }
      }
      for (const n of batch.keys()) await rm(join(temp, String(start + n)), { recursive: true, force: true });
    }
    await writeSummary(dir, lock);
    return { entries, skipped, failed, stored, alreadyStored, storeFailed, exitCode: failed > 0 || storeFailed.length > 0 ? 1 : 0 };
  } finally {
    await rm(temp, { recursive: true, force: true });
    source.close();
    if (target && target !== source) target.close();
  }
}
