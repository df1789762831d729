import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '@alhvr/core/node';
import type { Verdict } from './report.js';

export const MANIFEST_FILE = 'manifest.jsonl';
export const SUMMARY_FILE = 'summary.csv';
const LOCK_DIR = '.alhvr-segment.lock';
const LOCK_STALE_MS = 10 * 60_000;

export interface CaseSummary {
  verdict: Verdict;
  unreliability: number;
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
  finishedAt: string;
}

export async function readManifest(dir: string): Promise<Map<string, ManifestEntry>> {
  const entries = new Map<string, ManifestEntry>();
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return entries;
    throw err;
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as ManifestEntry;
      if (typeof e.caseId === 'string') entries.set(e.caseId, e);
    } catch {
      // A line from an interrupted foreign edit: the case is simply redone.
    }
  }
  return entries;
}

/**
 * Run `fn` holding a lock folder in `dir`, so shards writing to one output folder do not lose
 * each other's manifest lines. A lock older than LOCK_STALE_MS is taken to be abandoned.
 */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, LOCK_DIR);
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()));
      if (age > LOCK_STALE_MS) await rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, Math.min(500, 20 * (attempt + 1))));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** Replace this case's manifest line (others kept), sorted by case id, written atomically. */
export async function recordManifestEntry(dir: string, entry: ManifestEntry): Promise<void> {
  await withLock(dir, async () => {
    const entries = await readManifest(dir);
    entries.set(entry.caseId, entry);
    const lines = [...entries.values()].sort((a, b) => (a.caseId < b.caseId ? -1 : a.caseId > b.caseId ? 1 : 0)).map((e) => JSON.stringify(e));
    await writeFileAtomic(join(dir, MANIFEST_FILE), `${lines.join('\n')}\n`);
  });
}

const SUMMARY_COLUMNS = [
  'case_id',
  'status',
  'verdict',
  'unreliability',
  'foreground_ml',
  'foreground_mean_confidence',
  'foreground_reliable',
  'foreground_unstable',
  'foreground_unreliable',
  'error',
  'input',
] as const;

function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(Number(v.toFixed(6))) : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Failed cases first, then the most unreliable; ties by case id. */
export function summaryOrder(a: ManifestEntry, b: ManifestEntry): number {
  const rank = (e: ManifestEntry) => (e.status === 'failed' ? Infinity : (e.summary?.unreliability ?? 1));
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
      s?.unreliability,
      s?.foregroundMl,
      s?.foregroundMeanConfidence,
      s?.foregroundReliable,
      s?.foregroundUnstable,
      s?.foregroundUnreliable,
      e.error,
      e.input,
    ]
      .map(csvField)
      .join(',');
  });
  return `${[SUMMARY_COLUMNS.join(','), ...rows].join('\n')}\n`;
}

/** Rewrite summary.csv from the whole manifest (all shards' cases). */
export async function writeSummary(dir: string): Promise<void> {
  await withLock(dir, async () => {
    const entries = await readManifest(dir);
    await writeFileAtomic(join(dir, SUMMARY_FILE), summaryCsv(entries.values()));
  });
}
