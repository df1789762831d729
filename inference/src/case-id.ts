import { createHash } from 'node:crypto';
import { InputError } from '@alhvr/core';

export const CASE_ID_MAX_LENGTH = 80;

const hash = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * A case id that is safe as one folder name under the output folder whatever the source tag
 * values hold: letters and digits of any script (Müller, 山田太郎 stay readable), combining marks,
 * "." "_" "-"; no separators, control or format characters, no "..", no leading dot or dash,
 * never empty. NFC, so the same name typed on macOS (NFD) and Linux is the same id. At most
 * CASE_ID_MAX_LENGTH UTF-16 units, i.e. at most 240 bytes of UTF-8 (file names allow 255).
 */
export function sanitiseCaseId(raw: string): string {
  const clean = (s: string) =>
    s
      .replace(/[^\p{L}\p{M}\p{N}._-]+/gu, '_')
      .replace(/\.{2,}/g, '_')
      .replace(/_+/g, '_')
      .replace(/^[\p{M}._-]+/u, '')
      .replace(/[._-]+$/, '');
  let id = clean(raw.normalize('NFC'));
  if (id.length > CASE_ID_MAX_LENGTH) {
    // Cut on code points so no surrogate pair is split, then tidy the new end.
    let cut = '';
    for (const ch of id) {
      if (cut.length + ch.length > CASE_ID_MAX_LENGTH) break;
      cut += ch;
    }
    id = clean(cut);
  }
  return id || 'case';
}

/** Readable DICOM case id: PatientID_StudyDate_SeriesNumber_SeriesDescription (missing parts skipped). */
export function dicomCaseStem(tags: { patientId?: string; studyDate?: string; seriesNumber?: string; description?: string }): string {
  const parts = [tags.patientId, tags.studyDate, tags.seriesNumber, tags.description].filter((p): p is string => !!p && p.trim() !== '');
  return parts.length ? parts.map((p) => p.trim()).join('_') : 'series';
}

/** Pseudonymous id: a hash of the readable id, so the same case keeps its id across runs. */
export function anonymousCaseId(readableId: string): string {
  return `case-${hash(readableId).slice(0, 16)}`;
}

/**
 * Make ids unique: every id shared by several cases gets a suffix from a hash of that case's
 * unique key (its input), so the suffix does not depend on the order the cases were listed in.
 * Ids that differ only in case clash too: they are one folder on macOS and Windows.
 */
export function uniqueCaseIds(items: { stem: string; key: string }[]): string[] {
  const count = new Map<string, number>();
  const fold = (stem: string) => stem.toLowerCase();
  for (const { stem } of items) count.set(fold(stem), (count.get(fold(stem)) ?? 0) + 1);
  return items.map(({ stem, key }) => (count.get(fold(stem))! > 1 ? sanitiseCaseId(`${stem.slice(0, CASE_ID_MAX_LENGTH - 9)}-${hash(key).slice(0, 8)}`) : stem));
}

export interface Shard {
  /** 1-based, as written on the command line ("2/4" is the second of four). */
  index: number;
  count: number;
}

export function parseShard(value: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) throw new InputError(`--shard must be i/n with 1 ≤ i ≤ n (got "${value}")`);
  return { index, count };
}
