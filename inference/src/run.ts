import { constants } from 'node:fs';
import { access, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { InputError, type Volume, type VoxelArray } from '@alhvr/core';
import { readNiftiHeaderFile, writeFileAtomic } from '@alhvr/core/node';
import type { Shard } from './case-id.js';
import { assignCaseIds, readCaseInput, type CaseInput, type CaseSource, type SegmentCase } from './inputs.js';

// Discovery is part of a run's Node API: alhvr-segment, alhvr-convert and alhvr-info find and name inputs through it.
export * from './inputs.js';
import type { DeviceRequest } from './device.js';
import { readManifest, recordManifestEntry, writeSummary, type LockWaitReporter, type ManifestEntry } from './manifest.js';
import { CASE_FILES, previewAnnotation, writeCaseOutputs, writeCasePreview, type OutputFormat } from './outputs.js';
import type { PreviewRasterizer } from './preview.js';
import { segmentVolume, type GammaMode, type SegmentResult } from './pipeline.js';
import { assessCase, buildCaseReport, computeCaseStats, DEFAULT_TRIAGE, type TriageThresholds } from './report.js';
import { openModelFile, type OpenedModel } from './session-node.js';

export interface RunOptions {
  output: string;
  model: string;
  device?: DeviceRequest;
  threads?: number;
  batch?: number;
  formats?: ReadonlySet<OutputFormat>;
  saveProbabilities?: boolean;
  preview?: boolean;
  /** Draws preview.png's header, slice numbers and legend (alhvr-segment passes the plots' rasterizer); without it, the montage alone. */
  previewRasterizer?: PreviewRasterizer;
  resume?: boolean;
  shard?: Shard;
  failFast?: boolean;
  anonymizeIds?: boolean;
  gammaMode?: GammaMode;
  /** 3D models: nnU-Net's Gaussian window weighting instead of the released uniform average. */
  gaussian?: boolean;
  triage?: TriageThresholds;
  /** Override the calibrated model's verdict thresholds on the predicted Dice. */
  triageDice?: { acceptDice?: number; rejectDice?: number };
  signal?: AbortSignal;
  /** Called when the model is loaded and the case list is known. */
  onStart?: (info: { cases: SegmentCase[]; model: OpenedModel }) => void;
  onCaseDone?: (entry: ManifestEntry, skipped: boolean) => void;
  /** Progress within a case: slice batches of a 2D model, windows of a 3D model. */
  onSlices?: (caseId: string, done: number, total: number) => void;
  /** Called every few seconds while another process holds the output folder's lock. */
  onLockWait?: LockWaitReporter;
}

export interface RunResult {
  cases: SegmentCase[];
  entries: ManifestEntry[];
  skipped: number;
  failed: number;
  device: string;
  /** 0 when every case of this run succeeded, 1 otherwise. */
  exitCode: number;
}

/**
 * Shard i of n: the cases at positions i-1, i-1+n, … of the case list sorted by id. Balanced
 * (shard sizes differ by at most one) and deterministic for a given set of inputs, so n processes
 * given the same inputs cover every case exactly once. Not stable when cases are added: a case may
 * move to another shard, which costs nothing with --resume because all shards share the manifest.
 */
export function selectShard(cases: SegmentCase[], shard: Shard | undefined): SegmentCase[] {
  if (!shard || shard.count === 1) return cases;
  const mine = new Set(
    cases
      .map((c) => c.id)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .filter((_, n) => n % shard.count === shard.index - 1),
  );
  return cases.filter((c) => mine.has(c.id));
}

/** Which volumes of 4D NIfTI files become cases: one index for every file, or each volume its own case. */
export type VolumeSelection = number | 'all';

export function parseVolumeSelection(text: string): VolumeSelection {
  if (text.trim() === 'all') return 'all';
  if (!/^\s*\d+\s*$/.test(text)) throw new InputError(`--volume must be a volume index (0, 1, …) or "all" (got "${text}")`);
  return Number(text);
}

/**
 * Apply --volume to NIfTI cases: an index selects that volume of every file (a file without it
 * becomes a failed case); "all" makes each volume of a 4D file its own case, `<id>_t<N>` (cine MR:
 * every phase). A header that cannot be read leaves the case as it is, to fail and be recorded
 * when it is read.
 */
export async function expandVolumes(sources: CaseSource[], selection: VolumeSelection | undefined): Promise<CaseSource[]> {
  if (selection === undefined) return sources;
  const out: CaseSource[] = [];
  for (const source of sources) {
    if (source.kind !== 'nifti') {
      out.push(source);
    } else if (selection !== 'all') {
      out.push({ ...source, volume: selection });
    } else {
      const volumes = await readNiftiHeaderFile(source.path).then((h) => h.volumes, () => 1);
      if (volumes <= 1) out.push(source);
      else for (let t = 0; t < volumes; t++) out.push({ ...source, volume: t, idSuffix: `_t${t}` });
    }
  }
  return out;
}

function expectedOutputs(opts: RunOptions, kind: CaseSource['kind'], twoStudents: boolean): string[] {
  const formats = opts.formats ?? new Set<OutputFormat>(['nifti', 'dicom-seg']);
  const out: string[] = [];
  if (formats.has('nifti')) out.push(CASE_FILES.mask, CASE_FILES.confidence, ...(twoStudents ? [CASE_FILES.region] : []));
  if (opts.saveProbabilities) out.push(CASE_FILES.probabilities);
  if (formats.has('dicom-seg') && kind === 'dicom-series') out.push(CASE_FILES.seg);
  if (opts.preview !== false) out.push(CASE_FILES.preview);
  out.push(CASE_FILES.report);
  return out;
}

async function alreadyDone(dir: string, prev: ManifestEntry | undefined, inputHash: string, modelHash: string, wanted: string[]): Promise<boolean> {
  if (!prev || prev.status !== 'ok' || prev.inputHash !== inputHash || prev.modelHash !== modelHash) return false;
  if (!wanted.every((f) => prev.outputs.includes(f))) return false;
  for (const f of wanted) if (!(await stat(join(dir, prev.caseId, f)).then(() => true, () => false))) return false;
  return true;
}

function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n').find((l) => l.trim()) ?? 'unknown error';
}

/**
 * Check the options a run needs before any input is read or output written, so a typo costs
 * nothing: one-line errors naming the option.
 */
export function validateRunOptions(opts: Pick<RunOptions, 'batch' | 'threads' | 'shard' | 'output'>): void {
  const positiveInteger = (v: number | undefined) => v === undefined || (Number.isInteger(v) && v >= 1);
  if (!positiveInteger(opts.batch)) throw new InputError(`--slice-batch (slices per model call) must be a positive integer (got ${opts.batch})`);
  if (!positiveInteger(opts.threads)) throw new InputError(`--threads must be a positive integer (got ${opts.threads})`);
  const shard = opts.shard;
  if (shard && !(Number.isInteger(shard.count) && Number.isInteger(shard.index) && shard.index >= 1 && shard.index <= shard.count)) {
    throw new InputError(`--shard must be i/n with 1 ≤ i ≤ n (got ${shard.index}/${shard.count})`);
  }
  if (typeof opts.output !== 'string' || opts.output.trim() === '') throw new InputError('--out must name a folder');
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns where a parent cannot be
 * created without EACCES/ENOTDIR (it loops on ENOENT under /proc). Returns the first folder created.
 */
async function mkdirParents(dir: string): Promise<string | undefined> {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    const info = await stat(d).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    if (info) break;
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing) {
    await mkdir(d).catch((err: NodeJS.ErrnoException) => (err.code === 'EEXIST' ? undefined : Promise.reject(err)));
  }
  return missing[0];
}

/**
 * Create the output folder (and its parents) and check it is a writable folder, before any case:
 * a bad output folder is one error naming it, not a failure of every case. Returns the first folder
 * created, if any, so a caller that fails before writing anything can remove it again.
 */
export async function prepareOutputFolder(dir: string): Promise<string | undefined> {
  let created: string | undefined;
  try {
    created = await mkdirParents(resolve(dir));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : (code ?? (err as Error).message);
    throw new InputError(`cannot create the output folder (${why})`, dir);
  }
  const info = await stat(dir);
  if (!info.isDirectory()) throw new InputError('the output is a file, not a folder', dir);
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new InputError('the output folder is not writable', dir);
  }
  return created;
}

/**
 * Segment every case into `<output>/<case-id>/`, recording each outcome in manifest.jsonl as it
 * finishes; a failing case is recorded and the run goes on (unless failFast). Writes
 * summary.csv at the end. Model problems throw before any case is touched.
 */
export async function runSegmentation(sources: CaseSource[], opts: RunOptions): Promise<RunResult> {
  validateRunOptions(opts);
  const dir = resolve(opts.output);
  await prepareOutputFolder(dir);
  const lock = { onWait: opts.onLockWait };
  const triage = opts.triage ?? DEFAULT_TRIAGE;
  const opened = await openModelFile(opts.model, { device: opts.device, threads: opts.threads });
  const { identity, model } = opened;
  const twoStudents = model.available.has('region');
  try {
    const all = assignCaseIds(sources, opts.anonymizeIds);
    const cases = selectShard(all, opts.shard);
    opts.onStart?.({ cases, model: opened });
    const previous = opts.resume ? await readManifest(dir) : new Map<string, ManifestEntry>();
    const entries: ManifestEntry[] = [];
    let skipped = 0;
    let failed = 0;
    // A case's outputs are written while the next case is read and segmented: compression runs
    // in libuv's pool and the JS parts fill the gaps while ONNX Runtime computes. At most one
    // case is being written; it is recorded before the next one, so the manifest keeps case order.
    let pending: Promise<{ entry: ManifestEntry } | { error: unknown }> | undefined;
    const record = async (entry: ManifestEntry) => {
      if (entry.status === 'failed') failed++;
      await recordManifestEntry(dir, entry, lock);
      entries.push(entry);
      opts.onCaseDone?.(entry, false);
      return entry.status === 'failed' && opts.failFast === true;
    };
    /** Finish the case being written; true when fail-fast says stop. */
    const drain = async (): Promise<boolean> => {
      if (!pending) return false;
      const done = await pending;
      pending = undefined;
      if ('error' in done) throw done.error;
      return record(done.entry);
    };
    // The next case's files are read, hashed and (for .nii.gz) inflated in libuv's pool while
    // the current one is segmented; decoding waits for its turn. Small inputs only, so memory
    // stays at one large case.
    let reading: Promise<ReadOutcome> | undefined;
    for (let n = 0; n < cases.length; n++) {
      const c = cases[n];
      if (opts.signal?.aborted) break;
      const started = performance.now();
      const timingsMs: Record<string, number> = {};
      let inputHash = '';
      let segmented: { image: Volume<VoxelArray>; result: SegmentResult } | undefined;
      let failure: unknown;
      let resumeSkip = false;
      const read = await (reading ?? startReading(c));
      reading = undefined;
      const prefetch = n + 1 < cases.length && (!('input' in read) || read.input.bytes <= PREFETCH_MAX_INPUT_BYTES);
      if (prefetch) reading = startReading(cases[n + 1]);
      try {
        if ('error' in read) throw read.error;
        const { input } = read;
        timingsMs.read = read.readMs;
        inputHash = input.inputHash;
        const wanted = expectedOutputs(opts, c.source.kind, twoStudents);
        resumeSkip = opts.resume === true && (await alreadyDone(dir, previous.get(c.id), inputHash, identity.modelHash, wanted));
        if (!resumeSkip) segmented = await decodeAndSegment(c, input, model, opts, timingsMs);
      } catch (err) {
        failure = err;
      }
      if (resumeSkip) {
        if (await drain()) break;
        skipped++;
        entries.push(previous.get(c.id)!);
        opts.onCaseDone?.(previous.get(c.id)!, true);
        continue;
      }
      if (await drain()) break;
      if (!segmented) {
        if (isOutputFailure(failure, dir)) throw failure;
        timingsMs.total = performance.now() - started;
        if (await record(failedEntry(c, inputHash, identity.modelHash, failure, timingsMs))) break;
        continue;
      }
      const ctx: CaseContext = { c, inputHash, started, timingsMs, ...segmented };
      pending = writeCase(ctx, dir, opts, opened, triage).then(
        (entry) => ({ entry: withWarnings(entry, segmented.image.meta.warnings) }),
        (error: unknown) => ({ error }),
      );
      if (outputBytes(segmented.result) > OVERLAP_MAX_OUTPUT_BYTES && (await drain())) break;
      if (!reading && n + 1 < cases.length) reading = startReading(cases[n + 1]);
    }
    await drain();
    await writeSummary(dir, lock);
    return { cases, entries, skipped, failed, device: opened.device, exitCode: failed > 0 ? 1 : 0 };
  } finally {
    await model.release();
  }
}

/** Above this many bytes read for a case, the next case is read only after it: memory stays at one large case. */
const PREFETCH_MAX_INPUT_BYTES = 64 * 1024 * 1024;

type ReadOutcome = { input: CaseInput; readMs: number } | { error: unknown };

/** Start reading a case; the outcome is a value, so a read nobody awaits (a run stopped early) rejects nothing. */
function startReading(c: SegmentCase): Promise<ReadOutcome> {
  const t = performance.now();
  return readCaseInput(c.source).then(
    (input) => ({ input, readMs: performance.now() - t }),
    (error: unknown) => ({ error }),
  );
}

async function decodeAndSegment(
  c: SegmentCase,
  input: CaseInput,
  model: OpenedModel['model'],
  opts: RunOptions,
  timingsMs: Record<string, number>,
): Promise<{ image: Volume<VoxelArray>; result: SegmentResult }> {
  const t = performance.now();
  const image = await input.decode();
  timingsMs.read += performance.now() - t;
  const result = await segmentVolume(image, model, {
    batch: opts.batch,
    saveProbabilities: opts.saveProbabilities,
    gammaMode: opts.gammaMode,
    gaussian: opts.gaussian,
    signal: opts.signal,
    onProgress: (done, total) => opts.onSlices?.(c.id, done, total),
  });
  Object.assign(timingsMs, result.timings);
  return { image, result };
}

/** A case's reading warnings (4D file, oblique grid, …) travel with its manifest entry to the terminal and summary.csv. */
function withWarnings(entry: ManifestEntry, warnings: readonly string[] | undefined): ManifestEntry {
  return warnings?.length && entry.status === 'ok' ? { ...entry, warnings: [...warnings] } : entry;
}

/** Above this many bytes of maps a case is written before the next one starts: memory stays at one large case. */
const OVERLAP_MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

function outputBytes(r: SegmentResult): number {
  return r.label.data.byteLength + r.confidence.data.byteLength + (r.region?.data.byteLength ?? 0) + (r.probabilities?.data.byteLength ?? 0);
}

interface CaseContext {
  c: SegmentCase;
  inputHash: string;
  started: number;
  timingsMs: Record<string, number>;
  image: Volume<VoxelArray>;
  result: SegmentResult;
}

function failedEntry(c: SegmentCase, inputHash: string, modelHash: string, err: unknown, timingsMs: Record<string, number>): ManifestEntry {
  return {
    caseId: c.id,
    input: c.source.path,
    kind: c.source.kind,
    inputHash,
    modelHash,
    status: 'failed',
    error: oneLine(err),
    outputs: [],
    timingsMs,
    finishedAt: new Date().toISOString(),
  };
}

/**
 * Write one segmented case (outputs, report) and return its manifest entry; a failure of the
 * case becomes a failed entry, a failure of the output folder itself is thrown.
 */
async function writeCase(ctx: CaseContext, dir: string, opts: RunOptions, opened: OpenedModel, triage: TriageThresholds): Promise<ManifestEntry> {
  const { c, inputHash, started, timingsMs, image, result } = ctx;
  const { identity } = opened;
  const input = c.source.path;
  try {
    const t = performance.now();
    const caseDir = join(dir, c.id);
    const outputs = await writeCaseOutputs(caseDir, image, result, identity.card, {
      formats: opts.formats ?? new Set<OutputFormat>(['nifti', 'dicom-seg']),
      preview: false, // written below, once the verdict is known
      modelHash: identity.modelHash,
    });
    timingsMs.write = performance.now() - t;
    const stats = computeCaseStats(result.label, result.confidence, result.region, identity.card);
    const dicom = image.meta.dicom;
    const tags = dicom ? { modality: dicom.modality, bodyPart: dicom.bodyPartExamined } : undefined;
    const { signals, quality, triage: verdict } = assessCase(stats, result.signals, identity.card, { thresholds: triage, dice: opts.triageDice, tags });
    if (opts.preview !== false) outputs.push(await writeCasePreview(caseDir, image, result, identity.card, previewAnnotation(c.id, stats, verdict, quality?.predictedDice), opts.previewRasterizer));
    timingsMs.total = performance.now() - started;
    const report = buildCaseReport({
      caseId: c.id,
      input,
      image,
      slices: result.slices,
      gamma: result.gamma,
      model: identity,
      device: { used: opened.device, note: opened.deviceNote, threads: opts.threads },
      stats,
      assessment: { signals, quality, triage: verdict },
      timingsMs,
      ...(result.windows !== undefined && result.modelGrid
        ? {
            slidingWindow: {
              windows: result.windows,
              patch: [...identity.card.input.size],
              targetSpacingMm: [...(identity.card.targetSpacing ?? [])],
              modelGrid: result.modelGrid,
              weighting: opts.gaussian ? ('gaussian' as const) : ('uniform' as const),
            },
          }
        : {}),
    });
    await writeFileAtomic(join(caseDir, CASE_FILES.report), `${JSON.stringify(report, null, 2)}\n`);
    outputs.push(CASE_FILES.report);
    await removeStaleOutputs(caseDir, outputs);
    const fg = stats.foreground;
    return {
      caseId: c.id,
      input,
      kind: c.source.kind,
      inputHash,
      modelHash: identity.modelHash,
      status: 'ok',
      outputs,
      timingsMs,
      summary: {
        verdict: verdict.verdict,
        unreliability: report.unreliability,
        predictedDice: quality?.predictedDice ?? null,
        agreement: signals.agreement,
        reasons: verdict.reasons.join('; '),
        foregroundMl: fg.volumeMl,
        foregroundMeanConfidence: fg.meanConfidence,
        foregroundReliable: fg.regions?.reliable ?? null,
        foregroundUnstable: fg.regions?.unstable ?? null,
        foregroundUnreliable: fg.regions?.unreliable ?? null,
      },
      finishedAt: new Date().toISOString(),
    };
  } catch (err) {
    // Errors of the output folder itself are not the case's fault: stop the run.
    if (isOutputFailure(err, dir)) throw err;
    timingsMs.total = performance.now() - started;
    return failedEntry(c, inputHash, identity.modelHash, err, timingsMs);
  }
}

const TEMP_FILE = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/**
 * A case folder holds the outputs of one run only: outputs this run did not write (another
 * model's preview.png, probabilities.nii.gz of an earlier --save-probabilities) and temporaries of
 * a killed run are removed. Files that are not ours are left alone.
 */
async function removeStaleOutputs(caseDir: string, written: string[]): Promise<void> {
  const keep = new Set(written);
  const ours = new Set<string>(Object.values(CASE_FILES));
  for (const name of await readdir(caseDir)) {
    const temp = TEMP_FILE.exec(name);
    if ((ours.has(name) && !keep.has(name)) || (temp && Number(temp[1]) !== process.pid)) await rm(join(caseDir, name), { force: true });
  }
}

function isOutputFailure(err: unknown, dir: string): boolean {
  const path = (err as NodeJS.ErrnoException)?.path ?? (err instanceof InputError ? err.path : undefined);
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof path === 'string' && resolve(path).startsWith(dir) && (code === 'ENOSPC' || code === 'EACCES' || code === 'EROFS');
}
