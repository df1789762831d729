/**
 * Input discovery, the one owner of "what images did the user point at, and what is each called":
 * files and folders become cases (NIfTI files, DICOM series), each DICOM header is scanned once
 * and kept with its case, every command names a case by the same rule, and a case's files are
 * read whole exactly once, for its input hash and its decoding together.
 */
import { constants as bufferConstants } from 'node:buffer';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { existsSync } from 'node:fs';
import { open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import {
  InputError,
  assembleDicomVolume,
  decodeNifti,
  groupDicomInstances,
  parseDicomInstance,
  selectDicomGroup,
  summarizeDicomGroup,
  type DicomInstance,
  type DicomSeriesSummary,
  type Volume,
  type VoxelArray,
} from '@alhvr/core';
import { readNiftiFile } from '@alhvr/core/node';
import { dicomCaseStem, uniqueCaseIds, anonymousCaseId, sanitiseCaseId } from './case-id.js';

// ---------------------------------------------------------------------------------------------
// Reading files

/**
 * How discovery and case reading touch file contents. Injectable so tests can count reads; the
 * default reads from disk.
 */
export interface InputFileReader {
  /** Up to `length` bytes from the start of the file, and the file's size. */
  head(path: string, length: number): Promise<{ bytes: Uint8Array; size: number }>;
  /** The whole file. */
  whole(path: string): Promise<Uint8Array>;
}

export const diskFileReader: InputFileReader = {
  async head(path, length) {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      const bytes = new Uint8Array(Math.min(length, size));
      const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
      return { bytes: bytes.subarray(0, bytesRead), size };
    } finally {
      await handle.close();
    }
  },
  async whole(path) {
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  },
};

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file or folder';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'not a folder';
  if (code === 'ELOOP') return 'too many levels of symbolic links';
  return err instanceof Error ? err.message : String(err);
}

/** `stat` that turns file-system errors into a one-line InputError naming the path. */
export async function statInput(path: string): Promise<import('node:fs').Stats> {
  try {
    return await stat(path);
  } catch (err) {
    throw new InputError(describeFsError(err), path);
  }
}

/**
 * Every regular file under `folder`, recursively, in a stable (sorted) order. Hidden entries
 * (names starting with ".") are left out: they are version-control folders, OS metadata and
 * the temporary files of interrupted writes, never images. Symbolic links are followed once.
 */
export async function listFiles(folder: string, options: { signal?: AbortSignal } = {}): Promise<string[]> {
  const out: string[] = [];
  const visited = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    if (options.signal?.aborted) return;
    const real = await realpath(dir);
    if (visited.has(real)) return;
    visited.add(real);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw new InputError(`cannot read folder: ${describeFsError(err)}`, dir);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(path).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDir) await walk(path);
      else if (isFile) out.push(path);
    }
  };
  await walk(folder);
  return out;
}

// ---------------------------------------------------------------------------------------------
// NIfTI file names

/** The NIfTI extensions the toolkit reads, longest first so ".nii.gz" wins over ".gz". */
const NIFTI_EXTENSIONS = ['.nii.gz', '.hdr.gz', '.nii', '.hdr'];

export function niftiExtension(path: string): string | undefined {
  const lower = path.toLowerCase();
  return NIFTI_EXTENSIONS.find((ext) => lower.endsWith(ext));
}

export function isNiftiPath(path: string): boolean {
  return niftiExtension(path) !== undefined;
}

/** The data half of an Analyze/NIfTI pair, which belongs to its .hdr and is not an image by itself. */
export function isPairImagePath(path: string): boolean {
  const lower = path.toLowerCase();
  return lower.endsWith('.img') || lower.endsWith('.img.gz');
}

/** "brain.nii.gz" → "brain". */
export function stripNiftiExtension(name: string): string {
  const ext = niftiExtension(name);
  return ext ? name.slice(0, name.length - ext.length) : name;
}

// ---------------------------------------------------------------------------------------------
// The case type

/** A scanned DICOM header, without the pixel decoder (which would keep the read bytes alive). */
export type DicomHeader = Omit<DicomInstance, 'decodeFrame'>;

export interface NiftiCaseSource {
  kind: 'nifti';
  path: string;
  /** The path under the searched folder, joined by "_" (default: the file name): the readable name when file names clash. */
  stem?: string;
  /** Volume of a 4D file to segment (default 0); see expandVolumes. */
  volume?: number;
  /** Appended to the case id, e.g. "_t3" for volume 3 of a cine series segmented with --volume all. */
  idSuffix?: string;
}

export interface DicomSeriesCaseSource {
  kind: 'dicom-series';
  /** The folder holding the series' files (their deepest common folder). */
  path: string;
  series: DicomSeriesSummary;
  /** The headers scanned at discovery, in the series' file order: the case id and grouping come from them. */
  headers: DicomHeader[];
  /**
   * An id decided by a caller that sees more series than this call (segmentDicomweb: the whole
   * server listing, so batches and shards agree); used as given.
   */
  caseId?: string;
}

/** One image found on disk: what every command reads, names and hashes. */
export type CaseSource = NiftiCaseSource | DicomSeriesCaseSource;

/** A case source with its id: the output name every command uses for it. */
export interface SegmentCase {
  id: string;
  source: CaseSource;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

// ---------------------------------------------------------------------------------------------
// Case ids: one rule for every command

/** The readable name of a case before sanitising; see assignCaseIds. */
export function caseStem(source: CaseSource): string {
  if (source.kind === 'nifti') return stripNiftiExtension(basename(source.path)) + (source.idSuffix ?? '');
  const first = source.headers[0];
  return dicomCaseStem({
    patientId: first?.patientStudy.PatientID,
    studyDate: first?.patientStudy.StudyDate,
    seriesNumber: source.series.number,
    description: source.series.description,
  });
}

/** A NIfTI case's name by its path under the searched folder ("a/scan.nii.gz" → "a_scan"). */
function casePathStem(source: NiftiCaseSource): string {
  return (source.stem ?? stripNiftiExtension(basename(source.path))) + (source.idSuffix ?? '');
}

/** What tells two cases of the same readable name apart, independent of listing order. */
function caseKey(source: CaseSource): string {
  if (source.kind === 'nifti') return resolve(source.path) + (source.volume === undefined ? '' : `#${source.volume}`);
  return `${source.series.id}\0${resolve(source.path)}`;
}

/**
 * The ids of every command: NIfTI by its file name (an nnU-Net imagesTr/ case keeps its name, so
 * outputs pair with labelsTr/ by name) or, where file names clash, by its path under the searched
 * folder; DICOM by PatientID_StudyDate_SeriesNumber_SeriesDescription from the scanned header (or
 * a hash of that with `anonymize`). Names that still clash, ignoring case, get a suffix hashed
 * from the input, so ids do not depend on the order the inputs were listed in.
 */
export function assignCaseIds(sources: CaseSource[], anonymize = false): SegmentCase[] {
  const fold = (name: string) => sanitiseCaseId(name).toLowerCase();
  const count = new Map<string, number>();
  for (const source of sources) count.set(fold(caseStem(source)), (count.get(fold(caseStem(source))) ?? 0) + 1);
  const items = sources.map((source) => {
    if (source.kind === 'dicom-series' && source.caseId) return { stem: source.caseId, key: caseKey(source) };
    const fileStem = caseStem(source);
    const readable = source.kind === 'nifti' && count.get(fold(fileStem))! > 1 ? casePathStem(source) : fileStem;
    const key = caseKey(source);
    return { stem: anonymize ? anonymousCaseId(readable) : sanitiseCaseId(readable), key: anonymize ? anonymousCaseId(key) : key };
  });
  const ids = uniqueCaseIds(items);
  return sources.map((source, n) => ({ id: ids[n], source }));
}

// ---------------------------------------------------------------------------------------------
// Discovery

/**
 * Bytes read from the start of each file when scanning, tried in turn: most headers end within
 * 16 KiB; enhanced multi-frame headers can run to hundreds of KiB. A file whose header needs more
 * is read whole.
 */
const HEADER_PREFIX_STEPS = [16 * 1024, 1024 * 1024];

/** Reads in flight while scanning or reading a case: hides the per-file open/read/close round trips. */
const READS_IN_FLIGHT = 8;

/** `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function withoutDecoder(inst: DicomInstance): DicomHeader {
  const { decodeFrame: _decodeFrame, ...header } = inst;
  return header;
}

/** Parse a file's header from a prefix that reaches PixelData, else from the whole file (which also decides the error). */
async function scanHeader(file: string, reader: InputFileReader): Promise<DicomInstance> {
  let size = Infinity;
  for (const prefixBytes of HEADER_PREFIX_STEPS) {
    if (size <= prefixBytes) break;
    const head = await reader.head(file, prefixBytes);
    size = head.size;
    if (size <= prefixBytes) return parseDicomInstance(head.bytes, file, { headerOnly: true });
    try {
      return parseDicomInstance(head.bytes, file, { headerOnly: true, prefixOnly: true });
    } catch {
      // The header is longer than the prefix (or the prefix cut a compressed stream): read more.
    }
  }
  return parseDicomInstance(await reader.whole(file), file, { headerOnly: true });
}

const stripPrefix = (path: string, reason: string) => (reason.startsWith(`${path}: `) ? reason.slice(path.length + 2) : reason);

/** Scan the headers of `files` and group them into series; files that are not DICOM images are skipped with the reason. */
export async function scanDicomFiles(files: string[], reader: InputFileReader = diskFileReader): Promise<{ series: DicomSeriesCaseSource[]; skipped: SkippedFile[] }> {
  const scanned = await mapLimited(files, READS_IN_FLIGHT, async (given): Promise<{ instance: DicomInstance } | { skipped: SkippedFile }> => {
    const file = resolve(given);
    try {
      return { instance: await scanHeader(file, reader) };
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      return { skipped: { path: file, reason: stripPrefix(file, err.message) } };
    }
  });
  const instances: DicomInstance[] = [];
  const skipped: SkippedFile[] = [];
  for (const s of scanned) {
    if ('instance' in s) instances.push(s.instance);
    else skipped.push(s.skipped);
  }
  const series = groupDicomInstances(instances).map((group) => {
    const summary = summarizeDicomGroup(group);
    return { kind: 'dicom-series' as const, path: seriesFolder(summary), series: summary, headers: group.instances.map(withoutDecoder) };
  });
  return { series, skipped };
}

/** The folder holding a series' files (their deepest common folder), for display. */
export function seriesFolder(series: DicomSeriesSummary): string {
  const dirs = series.files.map((f) => dirname(resolve(f)).split(sep));
  if (dirs.length === 0) return '.';
  let common = dirs[0];
  for (const d of dirs.slice(1)) {
    let n = 0;
    while (n < common.length && n < d.length && common[n] === d[n]) n++;
    common = common.slice(0, n);
  }
  return common.join(sep) || sep;
}

/** "1.2.3 #2 "FSE PD AXIAL OBL" (MR, 20 file(s))": how a series is named in messages. */
export function describeSeries(series: DicomSeriesSummary): string {
  const name = [series.number ? `#${series.number}` : '', series.description ? `"${series.description}"` : ''].filter(Boolean).join(' ');
  return `${series.id}${name ? ` ${name}` : ''} (${series.modality ?? 'unknown modality'}, ${series.files.length} file(s))`;
}

export interface DiscoverOptions {
  signal?: AbortSignal;
  /**
   * Leave out NIfTI files in labelsTr/ or labelsTs/ of an nnU-Net dataset (a folder beside
   * imagesTr/ or imagesTs/, or with dataset.json) found while searching a folder given above it.
   */
  skipLabelMaps?: boolean;
  /** Name cases by a hash instead of file names / PatientID. */
  anonymize?: boolean;
  reader?: InputFileReader;
}

export interface DiscoveredInputs {
  cases: SegmentCase[];
  /** Files under the given folders that are neither NIfTI nor DICOM images. */
  skipped: SkippedFile[];
  /** With `skipLabelMaps`: NIfTI files left out because they are an nnU-Net dataset's labels. */
  labelMaps: string[];
}

const NNUNET_LABEL_FOLDERS = new Set(['labelsTr', 'labelsTs']);

/** Whether `file`, found under the searched folder `root`, is a label map of an nnU-Net dataset. */
function isNnunetLabelMap(file: string, root: string): boolean {
  const rel = relative(root, file).split(sep);
  for (let n = 0; n < rel.length - 1; n++) {
    if (!NNUNET_LABEL_FOLDERS.has(rel[n])) continue;
    const datasetRoot = join(root, ...rel.slice(0, n));
    if (['imagesTr', 'imagesTs', 'dataset.json'].some((f) => existsSync(join(datasetRoot, f)))) return true;
  }
  return false;
}

/** A .img file is the data of a .hdr next to it, not an image of its own. */
function hasHeaderSibling(imgPath: string): boolean {
  const stem = imgPath.replace(/\.img(\.gz)?$/i, '');
  return ['.hdr', '.hdr.gz', '.HDR', '.HDR.GZ'].some((ext) => existsSync(stem + ext));
}

/** "a/scan.nii.gz" under the searched folder → "a_scan": keeps same-named files in different folders apart. */
function niftiStem(path: string, root?: string): string {
  const rel = root ? relative(root, path) : basename(path);
  return stripNiftiExtension(rel).split(sep).join('_');
}

async function discoverOne(path: string, options: DiscoverOptions): Promise<{ found: CaseSource[]; skipped: SkippedFile[]; labelMaps: string[] }> {
  const reader = options.reader ?? diskFileReader;
  const st = await statInput(path);
  if (st.isFile()) {
    if (isNiftiPath(path)) return { found: [{ kind: 'nifti', path, stem: niftiStem(path) }], skipped: [], labelMaps: [] };
    const scan = await scanDicomFiles([path], reader);
    if (scan.series.length === 0) {
      const reason = scan.skipped[0]?.reason ?? 'no image found';
      throw new InputError(`not a NIfTI or DICOM image (${reason})`, path);
    }
    return { found: scan.series, skipped: [], labelMaps: [] };
  }
  if (!st.isDirectory()) throw new InputError('not a file or folder', path);
  const files = await listFiles(path, { signal: options.signal });
  if (files.length === 0) throw new InputError('folder holds no files', path);
  const labelMaps = options.skipLabelMaps ? files.filter((f) => isNiftiPath(f) && isNnunetLabelMap(f, path)) : [];
  const nifti = files.filter((f) => isNiftiPath(f) && !labelMaps.includes(f));
  const pairData = new Set(files.filter((f) => isPairImagePath(f) && hasHeaderSibling(f)));
  const others = files.filter((f) => !isNiftiPath(f) && !pairData.has(f));
  const scan = others.length ? await scanDicomFiles(others, reader) : { series: [], skipped: [] };
  const found: CaseSource[] = [...nifti.map((p) => ({ kind: 'nifti' as const, path: p, stem: niftiStem(p, path) })), ...scan.series];
  if (found.length === 0) {
    const { skipped } = scan;
    const example = skipped[0] ? `, e.g. ${basename(skipped[0].path)}: ${skipped[0].reason}` : '';
    const labels = labelMaps.length ? `; ${labelMaps.length} nnU-Net label map(s) left out` : '';
    throw new InputError(`no NIfTI files or DICOM series found (${skipped.length} file(s) skipped${example}${labels})`, path);
  }
  return { found, skipped: scan.skipped, labelMaps };
}

/**
 * Turn INPUT arguments into cases: a file ending .nii/.nii.gz (or an Analyze/NIfTI .hdr) is a
 * NIfTI image, any other file must be a DICOM instance, and a folder is searched recursively for
 * both (DICOM files grouped into series, other files reported as skipped). Each DICOM file's
 * header is read once, here, and kept with its case. Ids follow assignCaseIds.
 */
export async function discoverInputs(paths: string[], options: DiscoverOptions = {}): Promise<DiscoveredInputs> {
  if (paths.length === 0) throw new InputError('no input given');
  const found: CaseSource[] = [];
  const skipped: SkippedFile[] = [];
  const labelMaps: string[] = [];
  const seen = new Set<string>();
  for (const path of paths) {
    if (options.signal?.aborted) break;
    const result = await discoverOne(path, options);
    for (const source of result.found) {
      // The same file or series reached through two arguments is one image.
      const key = source.kind === 'nifti' ? resolve(source.path) : `dicom:${source.series.id}:${source.series.files.map((f) => resolve(f)).join('|')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      found.push(source);
    }
    skipped.push(...result.skipped);
    labelMaps.push(...result.labelMaps);
  }
  return { cases: assignCaseIds(found, options.anonymize), skipped, labelMaps };
}

// ---------------------------------------------------------------------------------------------
// Reading a case: each file once

export interface CaseInput {
  /** sha256 over name, length and bytes of every file the case reads (resume and pseudo-label provenance). */
  inputHash: string;
  /** Bytes read (compressed, as on disk). */
  bytes: number;
  /** Decode the bytes already read into the image. */
  decode(): Promise<Volume<VoxelArray>>;
}

const sumBytes = (files: { bytes: Uint8Array }[]) => files.reduce((n, f) => n + f.bytes.length, 0);

const gunzipAsync = promisify(gunzip);

/** deflate's best case is about 1032:1; a stream claiming more is corrupt, not an image. */
const MAX_INFLATE_RATIO = 1032;

/**
 * A .nii.gz inflated by node:zlib in libuv's thread pool, so the next case decompresses while
 * ONNX Runtime computes the current one. A stream zlib refuses (truncated, corrupt) goes to
 * core's reader as it is, which names the problem as for any other input.
 */
async function inflateOffThread(bytes: Uint8Array): Promise<Uint8Array> {
  if (!(bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b)) return bytes;
  const maxOutputLength = Math.min(bufferConstants.MAX_LENGTH, bytes.length * MAX_INFLATE_RATIO);
  try {
    const out = await gunzipAsync(bytes, { maxOutputLength, chunkSize: 1 << 20 });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch {
    return bytes;
  }
}

const NIFTI_PAIR = /^(.*)\.(hdr|img)(\.gz)?$/i;

async function readWhole(file: string, reader: InputFileReader): Promise<Uint8Array> {
  try {
    return await reader.whole(file);
  } catch (err) {
    throw new InputError(`cannot read input (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
}

function hashFiles(files: { name: string; bytes: Uint8Array }[]): ReturnType<typeof createHash> {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${basename(f.name)}\0${f.bytes.length}\0`);
    h.update(f.bytes);
  }
  return h;
}

/** The other half of a .hdr/.img pair, if present (the first spelling found). */
async function pairPartner(path: string): Promise<string | undefined> {
  const m = NIFTI_PAIR.exec(path);
  if (!m) return undefined;
  const partner = `${m[1]}.${m[2].toLowerCase() === 'hdr' ? 'img' : 'hdr'}`;
  for (const p of [partner, `${partner}.gz`, partner.toUpperCase()]) {
    if (await stat(p).then(() => true, () => false)) return p;
  }
  return undefined;
}

/**
 * Read a case's files once: the bytes give the input hash and, on `decode`, the image. (An
 * Analyze/NIfTI pair is hashed from its bytes and decoded by core's pair reader.)
 */
export async function readCaseInput(source: CaseSource, reader: InputFileReader = diskFileReader): Promise<CaseInput> {
  if (source.kind === 'nifti') {
    const volumeIndex = source.volume;
    const finish = (h: ReturnType<typeof createHash>) => {
      // Another volume of the same file is another input: resume must not take one for the other.
      if (volumeIndex !== undefined) h.update(`volume\0${volumeIndex}`);
      return h.digest('hex');
    };
    const partner = await pairPartner(source.path);
    if (partner !== undefined || NIFTI_PAIR.test(source.path)) {
      const files = [source.path, ...(partner ? [partner] : [])];
      const read = await Promise.all(files.map(async (name) => ({ name, bytes: await readWhole(name, reader) })));
      return { inputHash: finish(hashFiles(read)), bytes: sumBytes(read), decode: () => readNiftiFile(source.path, { volumeIndex }) };
    }
    const bytes = await readWhole(source.path, reader);
    const inputHash = finish(hashFiles([{ name: source.path, bytes }]));
    const raw = await inflateOffThread(bytes);
    return { inputHash, bytes: bytes.length, decode: async () => decodeNifti(raw, { path: source.path, volumeIndex }) };
  }
  const names = [...source.series.files].sort();
  const read = await mapLimited(names, READS_IN_FLIGHT, async (name) => ({ name, bytes: await readWhole(name, reader) }));
  const inputHash = hashFiles(read).digest('hex');
  const where = names.length === 1 ? names[0] : `${names.length} paths`;
  return {
    inputHash,
    bytes: sumBytes(read),
    decode: async () => {
      const instances = read.map(({ name, bytes }) => parseDicomInstance(bytes, name));
      const groups = groupDicomInstances(instances);
      const group = groups.length === 1 ? groups[0] : selectDicomGroup(groups, source.series.seriesInstanceUID, where);
      const volume = await assembleDicomVolume(group.instances, { path: where });
      volume.meta.warnings.unshift(...source.series.warnings);
      return volume;
    },
  };
}

/** Read and decode a case (each file read once). */
export async function loadCase(source: CaseSource, reader: InputFileReader = diskFileReader): Promise<Volume<VoxelArray>> {
  return (await readCaseInput(source, reader)).decode();
}
