/**
 * Pseudo-labels kept in a PACS: the DICOM SEGs that `alhvr-segment --dicomweb … --store` sent back,
 * and the SEGs reviewers saved afterwards on the same series (OHIF's segmentation mode, Slicer).
 * The server is searched with QIDO-RS for SEG series, every SEG instance is fetched (SEGs are
 * small, bit-packed) and sorted by the source series it references. A SEG is ours when it carries
 * what alhvr-segment's writer puts there (inference outputs.ts → core seg-write.ts): Manufacturer
 * "ALHVR Toolkit", the model's name as ManufacturerModelName and "ALHVR <model name>" as
 * SeriesDescription; any other SEG is a reviewer's. Only series with a SEG of ours are used: their
 * label is the newest reviewer SEG saved after our newest one, else ours. The source series is
 * then fetched with WADO-RS into a temporary folder and read by the same DICOM scan and series
 * reader as a folder input, so the same series selection and geometry checks apply.
 *
 * Talking to the server goes through @alhvr/core/node's DicomwebTransport (the client alhvr-segment
 * uses): training may import core only.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { InputError, readDicomSeg, type DecodedDicomSeg, type Volume, type VoxelArray } from '@alhvr/core';
import { DicomwebTransport, displayUrl, jsonValue, readDicomSeries, scanDicom, type DicomwebConnection } from '@alhvr/core/node';

/** How to reach the servers named in --pseudo-labels; header values are never written anywhere. */
export type PseudoDicomwebAccess = Omit<DicomwebConnection, 'url'>;

/** The Manufacturer alhvr-segment's SEG writer records (core seg-write.ts's default, not overridden by inference). */
export const OUR_SEG_MANUFACTURER = 'ALHVR Toolkit';

/** A --pseudo-labels entry naming a DICOMweb server rather than a segment output folder. */
export const isDicomwebSource = (source: string): boolean => /^https?:\/\//i.test(source.trim());

/** What a run records about a server: its host name only (no port, path, credentials or query). */
export function dicomwebSourceName(url: string): string {
  try {
    return new URL(url).hostname || 'dicomweb';
  } catch {
    return 'dicomweb';
  }
}

/** The address a segment manifest gives a DICOMweb case (inference dicomweb-run.ts seriesInput). */
export const seriesAddress = (server: string, study: string, series: string): string => `${displayUrl(server)}/studies/${study}/series/${series}`;

/** Whether a SEG was written by alhvr-segment (see the module comment). */
export function isOurSeg(seg: Pick<DecodedDicomSeg, 'identity'>): boolean {
  const id = seg.identity;
  return id.manufacturer === OUR_SEG_MANUFACTURER && id.manufacturerModelName !== '' && id.seriesDescription === `ALHVR ${id.manufacturerModelName}`.slice(0, 64);
}

export interface StoredSeg {
  seg: DecodedDicomSeg;
  ours: boolean;
}

/** A source series that carries a SEG of ours, with the label to train on. */
export interface PacsSeries {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  /** `<server>/studies/<study>/series/<series>`, as a segment manifest records the case. */
  input: string;
  /** Our newest SEG of the series. */
  ours: StoredSeg;
  /** The newest reviewer SEG saved after `ours`, when there is one: the label then. */
  reviewer?: StoredSeg;
}

export interface PacsSegListing {
  series: PacsSeries[];
  /** SEG instances read, ours and others. */
  segs: { ours: number; others: number };
}

const MODALITY = '00080060';
const STUDY_UID = '0020000D';
const SERIES_UID = '0020000E';
const SOP_UID = '00080018';

/**
 * Every SEG on the server, by the series it was derived from. Studies are searched with
 * ModalitiesInStudy=SEG (a server that ignores the filter lists all studies; their series are
 * filtered by Modality anyway).
 */
export async function listStoredSegs(t: DicomwebTransport, opts: { signal?: AbortSignal; log?: (m: string) => void } = {}): Promise<PacsSegListing> {
  const bySource = new Map<string, { study: string; series: string; ours?: StoredSeg; others: StoredSeg[] }>();
  const segs = { ours: 0, others: 0 };
  for (const study of await t.searchStudies({ ModalitiesInStudy: 'SEG' }, opts)) {
    const studyUid = jsonValue(study, STUDY_UID);
    for (const series of await t.searchSeries(studyUid, opts)) {
      if (jsonValue(series, MODALITY).toUpperCase() !== 'SEG') continue;
      const segSeries = jsonValue(series, SERIES_UID);
      for (const instance of await t.searchInstances(studyUid, segSeries, opts)) {
        const sop = jsonValue(instance, SOP_UID);
        const where = `${t.display}/studies/${studyUid}/series/${segSeries}/instances/${sop}`;
        const seg = await readDicomSeg(await t.retrieveInstance(studyUid, segSeries, sop, opts), where);
        const ours = isOurSeg(seg);
        if (ours) segs.ours++;
        else segs.others++;
        for (const source of seg.identity.referencedSeriesInstanceUIDs) {
          const key = `${studyUid}/${source}`;
          const entry = bySource.get(key) ?? { study: studyUid, series: source, others: [] };
          bySource.set(key, entry);
          // Of two SEGs stamped alike, the later-listed SOP Instance UID wins: the choice does not depend on listing order.
          const newer = (a: StoredSeg, b: StoredSeg | undefined) =>
            !b || a.seg.identity.createdAt > b.seg.identity.createdAt || (a.seg.identity.createdAt === b.seg.identity.createdAt && a.seg.identity.sopInstanceUID > b.seg.identity.sopInstanceUID);
          const stored = { seg, ours };
          if (ours) {
            if (newer(stored, entry.ours)) entry.ours = stored;
          } else entry.others.push(stored);
        }
      }
    }
  }
  const series: PacsSeries[] = [];
  for (const e of [...bySource.values()].sort((a, b) => (`${a.study}/${a.series}` < `${b.study}/${b.series}` ? -1 : 1))) {
    if (!e.ours) continue;
    const ours = e.ours;
    // A reviewer's SEG corrects ours only when saved after it; an older one was superseded by our run.
    const reviewer = e.others
      .filter((o) => o.seg.identity.createdAt > ours.seg.identity.createdAt)
      .sort((a, b) => (a.seg.identity.createdAt < b.seg.identity.createdAt ? 1 : a.seg.identity.createdAt > b.seg.identity.createdAt ? -1 : a.seg.identity.sopInstanceUID < b.seg.identity.sopInstanceUID ? 1 : -1))[0];
    series.push({ studyInstanceUID: e.study, seriesInstanceUID: e.series, input: seriesAddress(t.display, e.study, e.series), ours, ...(reviewer ? { reviewer } : {}) });
  }
  const skipped = [...bySource.values()].filter((e) => !e.ours).length;
  if (skipped) opts.log?.(`pseudo-labels: ${t.display}: ${skipped} series carry only SEGs not written by alhvr-segment; left out (a reviewer's SEG is used where it corrects one of ours)`);
  return { series, segs };
}

/**
 * Fetch a source series into `folder` and read it as alhvr-segment reads a folder's series (scan,
 * series chosen by its UID, the reader's geometry checks); the folder is removed afterwards.
 */
export async function readRemoteSeries(t: DicomwebTransport, s: PacsSeries, folder: string, signal?: AbortSignal): Promise<Volume<VoxelArray>> {
  try {
    const files = await t.retrieveSeriesFiles(s.studyInstanceUID, s.seriesInstanceUID, folder, { signal, where: s.input });
    const found = (await scanDicom([folder])).series.filter((c) => c.seriesInstanceUID === s.seriesInstanceUID);
    if (found.length === 0) throw new InputError(`the server's instances of the series hold no image series (${files.length} instances fetched)`, s.input);
    // A series the scan splits (two orientations, several sizes) has no single grid for the SEG to lie on.
    if (found.length > 1) throw new InputError(`the series splits into ${found.length} image series on reading (${found.map((c) => `${c.files.length} files`).join(', ')})`, s.input);
    const chosen = found[0];
    return await readDicomSeries(chosen.files, { seriesUID: chosen.id });
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** sha256 of the SEG instances a run used (their SOP Instance UIDs, sorted): which SEGs, without naming one. */
export function segsFingerprint(sopInstanceUIDs: string[]): string {
  return createHash('sha256').update([...sopInstanceUIDs].sort().join('\n')).digest('hex');
}

export { DicomwebTransport };
