import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '@alhvr/core/node';
import type { Verdict } from './report.js';

export const MANIFEST_FILE = 'manifest.jsonl';
export const SUMMARY_FILE = 'summary.csv';
const LOCK_DIR = '.alhvr-segment.lock';
/** A holder on another host cannot be checked: its lock counts as abandoned after this long. */
const LOCK_STALE_MS = 10 * 60_000;
/** A holder records itself right after taking the lock; a lock still unrecorded this long is abandoned. */
const LOCK_UNRECORDED_STALE_MS = 60_000;

export interface CaseSummary {
  verdict: Verdict;
  unreliability: number;
  /** Calibrated models: the predicted mean foreground Dice; null otherwise. */
  predictedDice?: number | null;
  /** Mean Dice between the two students' own labels over foreground classes. */
  agreement?: number | null;
  /** Why the verdict is what it is. */
  reasons?: string;
  foregroundMl: number;
  foregroundMeanConfidence: number | null;
  foregroundReliable: number | null;
  foregroundUnstable: number | null;
  foregroundUnreliable: number | null;
}

/** One line of manifest.jsonl: the latest outcome for one case. */
export interface ManifestEntry {
  caseId: string;
  input: string;
  kind: 'nifti' | 'dicom-series';
  inputHash: string;
  modelHash: string;
  status: 'ok' | 'failed';
  error?: string;
  /** File names written inside `<DIR>/<caseId>/`. */
  outputs: string[];
  timingsMs: Record<string, number>;
  summary?: CaseSummary;
  /** What reading the input noticed (e.g. "4D file with 30 volumes; using volume 0"). */
  warnings?: string[];
  finishedAt: string;
}

/**
 * The last line per key of a JSON-lines file that is rewritten whole (manifest.jsonl,
 * stored.jsonl): a missing file is empty, and a line that does not parse or lacks the key is
 * dropped, since it can only come from an interrupted foreign edit and its case is simply redone.
 */
export async function readLastPerKey<T>(file: string, key: (record: T) => unknown): Promise<Map<string, T>> {
  const records = new Map<string, T>();
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return records;
    throw err;
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let record: T;
    try {
      record = JSON.parse(line) as T;
    } catch {
      continue;
    }
    const k = record !== null && typeof record === 'object' ? key(record) : undefined;
    if (typeof k === 'string') records.set(k, record);
  }
  return records;
}

export async function readManifest(dir: string): Promise<Map<string, ManifestEntry>> {
  return readLastPerKey<ManifestEntry>(join(dir, MANIFEST_FILE), (e) => e.caseId);
}

/** Who holds the lock folder: written inside it right after it is created. */
export interface LockOwner {
  pid: number;
  host: string;
  /** Distinguishes two holders that happen to share pid and host (a restarted container). */
  token: string;
  since: string;
}

/** Called while a lock is held by someone else: once after LOCK_REPORT_MS, then every LOCK_REPORT_MS. */
export type LockWaitReporter = (holder: LockOwner | undefined, waitedMs: number) => void;

export interface LockOptions {
  onWait?: LockWaitReporter;
}

const LOCK_OWNER_FILE = 'owner.json';
const LOCK_REPORT_MS = 5_000;

async function readLockOwner(lock: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(join(lock, LOCK_OWNER_FILE), 'utf8')) as LockOwner;
    return typeof owner.pid === 'number' && typeof owner.host === 'string' ? owner : undefined;
  } catch {
    // Not written yet (the holder is between mkdir and write) or left half-written by a crash.
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the pid exists but belongs to another user, so it is alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A lock is abandoned when its holder ran on this host and that process is gone (kill -9, OOM,
 * power loss); a holder on another host (shared folder) cannot be checked, so only age tells.
 */
function lockAbandoned(owner: LockOwner | undefined, ageMs: number): boolean {
  if (!owner) return ageMs > LOCK_UNRECORDED_STALE_MS;
  if (owner.host === hostname()) return !processAlive(owner.pid) || (owner.pid === process.pid && !heldHere.has(owner.token));
  return ageMs > LOCK_STALE_MS;
}

/** Tokens of the locks this process holds right now. */
const heldHere = new Set<string>();

/**
 * Move an abandoned lock out of the way. Renaming (not deleting) means that of several processes
 * deciding at once only one moves it; the moved folder is checked to be the one judged abandoned,
 * and put back if a live holder's lock was moved instead.
 */
async function takeOver(lock: string, judged: LockOwner | undefined): Promise<void> {
  const aside = `${lock}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lock, aside);
  } catch {
    return; // someone else moved or released it first
  }
  const moved = await readLockOwner(aside);
  if (judged && moved?.token !== judged.token) {
    await rename(aside, lock).catch(() => {});
    return;
  }
  await rm(aside, { recursive: true, force: true });
}

/**
 * Run `fn` holding a lock folder in `dir`, so shards writing to one output folder do not lose
 * each other's manifest lines. The lock records pid and host; a lock whose process is gone is
 * taken over, and `onWait` hears who holds it while this process waits.
 */
export async function withLock<T>(dir: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const lock = join(dir, LOCK_DIR);
  const owner: LockOwner = { pid: process.pid, host: hostname(), token: randomBytes(8).toString('hex'), since: new Date().toISOString() };
  const start = Date.now();
  let nextReport = start + LOCK_REPORT_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readLockOwner(lock);
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()));
      if (lockAbandoned(holder, age)) {
        await takeOver(lock, holder);
        continue;
      }
      if (Date.now() >= nextReport) {
        opts.onWait?.(holder, Date.now() - start);
        nextReport = Date.now() + LOCK_REPORT_MS;
      }
      await new Promise((r) => setTimeout(r, Math.min(500, 20 * (attempt + 1))));
    }
  }
  heldHere.add(owner.token);
  try {
    await writeFile(join(lock, LOCK_OWNER_FILE), JSON.stringify(owner));
    return await fn();
  } finally {
    heldHere.delete(owner.token);
    await rm(lock, { recursive: true, force: true });
  }
}

/** One line for a lock wait: who holds the lock, since when. */
export function describeLockHolder(dir: string, holder: LockOwner | undefined, waitedMs: number): string {
  const who = holder ? `process ${holder.pid} on ${holder.host} (since ${holder.since})` : 'a process that has not recorded itself';
  return `waiting ${Math.round(waitedMs / 1000)} s for ${join(dir, LOCK_DIR)}, held by ${who}; remove the folder if that process is gone`;
}

/** Replace this case's manifest line (others kept), sorted by case id, written atomically. */
export async function recordManifestEntry(dir: string, entry: ManifestEntry, lock: LockOptions = {}): Promise<void> {
  await withLock(dir, async () => {
    const entries = await readManifest(dir);
    entries.set(entry.caseId, entry);
    const lines = [...entries.values()].sort((a, b) => (a.caseId < b.caseId ? -1 : a.caseId > b.caseId ? 1 : 0)).map((e) => JSON.stringify(e));
    await writeFileAtomic(join(dir, MANIFEST_FILE), `${lines.join('\n')}\n`);
  }, lock);
}

const SUMMARY_COLUMNS = [
  'case_id',
  'status',
  'verdict',
  'predicted_dice',
  'agreement',
  'unreliability',
  'foreground_ml',
  'foreground_mean_confidence',
  'foreground_reliable',
  'foreground_unstable',
  'foreground_unreliable',
  'reasons',
  'error',
  'input',
  // Last, so adding it moved no column a reader indexes.
  'warnings',
] as const;

function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(Number(v.toFixed(6))) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const VERDICT_RANK: Record<Verdict, number> = { reject: 2, review: 1, accept: 0 };

/**
 * Most suspect first: failed cases, then by verdict (reject, review, accept), within a verdict
 * by the lowest predicted Dice (calibrated models) or the highest unreliability; ties by case id.
 */
export function summaryOrder(a: ManifestEntry, b: ManifestEntry): number {
  const rank = (e: ManifestEntry) => {
    if (e.status === 'failed' || !e.summary) return Infinity;
    const s = e.summary;
    const suspicion = typeof s.predictedDice === 'number' ? 1 - s.predictedDice : s.unreliability;
    return VERDICT_RANK[s.verdict] * 10 + suspicion;
  };
  const d = rank(b) - rank(a);
  if (d !== 0 && !Number.isNaN(d)) return d;
  return a.caseId < b.caseId ? -1 : a.caseId > b.caseId ? 1 : 0;
}

export function summaryCsv(entries: Iterable<ManifestEntry>): string {
  const rows = [...entries].sort(summaryOrder).map((e) => {
    const s = e.summary;
    return [
      e.caseId,
      e.status,
      s?.verdict,
      s?.predictedDice,
      s?.agreement,
      s?.unreliability,
      s?.foregroundMl,
      s?.foregroundMeanConfidence,
      s?.foregroundReliable,
      s?.foregroundUnstable,
      s?.foregroundUnreliable,
      s?.reasons,
      e.error,
      e.input,
      e.warnings?.join('; '),
    ]
      .map(csvField)
      .join(',');
  });
  return `${[SUMMARY_COLUMNS.join(','), ...rows].join('\n')}\n`;
}

/** Rewrite summary.csv from the whole manifest (all shards' cases). */
export async function writeSummary(dir: string, lock: LockOptions = {}): Promise<void> {
  await withLock(dir, async () => {
    const entries = await readManifest(dir);
    await writeFileAtomic(join(dir, SUMMARY_FILE), summaryCsv(entries.values()));
  }, lock);
}
