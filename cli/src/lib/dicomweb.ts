/**
 * alhvr-segment's DICOMweb side: the options (--dicomweb, --study, --query, --store, …), their
 * checks, and the run through @alhvr/inference's segmentDicomweb with progress and a closing
 * summary. Header values (tokens) are only ever handed to the transport: no message here prints one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeLockHolder, displayUrl, prepareOutputFolder, segmentDicomweb, type DicomwebConnection, type DicomwebRunOptions } from '@alhvr/inference/node';
import { removeEmptyFolders } from './folders.js';
import { createProgress } from './progress.js';
import { UsageError } from './run-command.js';

/** Environment variable holding the Authorization header's value (e.g. "Bearer eyJ…"), kept out of the process list. */
export const AUTHORIZATION_ENV = 'ALHVR_DICOMWEB_AUTHORIZATION';

/** For yargs' .options(): grouped under DICOMWEB_GROUP by the command. */
export const DICOMWEB_OPTIONS = {
  dicomweb: { type: 'string', description: 'Read the studies from this DICOMweb server (e.g. http://pacs:8042/dicom-web) instead of INPUT' },
  study: { type: 'string', array: true, description: 'Study Instance UID to segment (repeatable)' },
  query: { type: 'string', array: true, description: 'QIDO-RS study attribute NAME=VALUE (repeatable), e.g. ModalitiesInStudy=MR StudyDate=20240101-20241231' },
  store: { type: 'boolean', default: false, description: 'Send each seg.dcm back with STOW-RS into its study (local outputs are kept)' },
  'store-to': { type: 'string', description: 'STOW-RS to this DICOMweb server instead of the --dicomweb one (implies --store)' },
  header: { type: 'string', array: true, description: `HTTP header "Name: value" for every request (repeatable); or set ${AUTHORIZATION_ENV} to the Authorization value` },
  ca: { type: 'string', description: "PEM file of the HTTPS server's certificate authority (added to the system's)" },
  timeout: { type: 'number', default: 30, description: 'Seconds a transfer may stall before it is retried' },
  retries: { type: 'number', default: 3, description: 'Retries of a stalled, dropped or 5xx request (back-off 0.5 s, doubling) before the case fails' },
} as const;

export const DICOMWEB_GROUP = 'PACS (DICOMweb):';

export interface DicomwebArgs {
  dicomweb?: string;
  study?: string[];
  query?: string[];
  store?: boolean;
  'store-to'?: string;
  header?: string[];
  ca?: string;
  timeout?: number;
  retries?: number;
  _: (string | number)[];
}

/** A server URL given as option `--name`: http(s), parsable, no credentials in it (they would reach logs). */
export function checkDicomwebUrl(name: string, url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--${name} must be an http(s) URL such as http://pacs:8042/dicom-web (got "${displayUrl(url)}")`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--${name} must be an http or https URL (got ${u.protocol})`);
  if (u.username || u.password) throw new UsageError(`--${name}: put credentials in --header or ${AUTHORIZATION_ENV}, not in the URL`);
}

/** The access options every DICOMweb client of the CLI shares: headers (tokens), CA, timeout, retries. */
export type DicomwebAccessArgs = Pick<DicomwebArgs, 'header' | 'ca' | 'timeout' | 'retries'>;

/**
 * Headers (from --header and AUTHORIZATION_ENV), the --ca file, --timeout and --retries, checked
 * in one line each. Header values are only ever returned: no message here prints one.
 */
export function parseDicomwebAccess(argv: DicomwebAccessArgs, env: NodeJS.ProcessEnv = process.env): Omit<DicomwebConnection, 'url'> {
  const retries = argv.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0) throw new UsageError(`--retries must be a whole number ≥ 0 (got ${retries})`);
  const timeout = argv.timeout ?? 30;
  if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds (got ${argv.timeout})`);
  const headers: Record<string, string> = {};
  const authorization = env[AUTHORIZATION_ENV];
  if (authorization !== undefined && authorization.trim() !== '') headers.Authorization = authorization.trim();
  for (const h of argv.header ?? []) {
    const m = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:(.*)$/.exec(h);
    // The value may be a token: the message names the header, never its value.
    if (!m) throw new UsageError(`--header must be "Name: value" (got one starting "${/^[A-Za-z0-9-]{0,40}/.exec(h)![0]}…")`);
    headers[m[1]] = m[2].trim();
  }
  let caPem: string | undefined;
  if (argv.ca !== undefined) {
    try {
      caPem = readFileSync(argv.ca, 'utf8');
    } catch (err) {
      throw new UsageError(`${argv.ca}: cannot read the --ca file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    if (!caPem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${argv.ca}: not a PEM certificate file (--ca)`);
  }
  return { headers, caPem, timeoutMs: timeout * 1000, retries };
}

/** For alhvr-train's yargs: reaching the servers named in --pseudo-labels. */
export const PSEUDO_DICOMWEB_OPTIONS = {
  header: DICOMWEB_OPTIONS.header,
  ca: DICOMWEB_OPTIONS.ca,
  timeout: DICOMWEB_OPTIONS.timeout,
  retries: DICOMWEB_OPTIONS.retries,
} as const;

/**
 * Check the DICOMweb options against each other and the INPUT list; with --dicomweb, return
 * what segmentDicomweb needs, else undefined (a folder run, which needs an INPUT).
 */
export function parseDicomwebArgs(argv: DicomwebArgs, env: NodeJS.ProcessEnv = process.env): Pick<DicomwebRunOptions, 'source' | 'selection' | 'store' | 'storeTo'> | undefined {
  const used = (['study', 'query', 'store-to', 'header', 'ca'] as const).filter((k) => argv[k] !== undefined).concat(argv.store ? ['store' as never] : []);
  if (argv.dicomweb === undefined) {
    if (used.length) throw new UsageError(`--${used[0]} needs --dicomweb URL`);
    if (argv._.length === 0) throw new UsageError('give at least one INPUT, or --dicomweb URL with --study or --query');
    return undefined;
  }
  if (argv._.length) throw new UsageError(`give INPUT or --dicomweb, not both (got INPUT ${String(argv._[0])})`);
  checkDicomwebUrl('dicomweb', argv.dicomweb);
  if (argv['store-to'] !== undefined) checkDicomwebUrl('store-to', argv['store-to']);
  const studies = (argv.study ?? []).map((s) => s.trim());
  for (const s of studies) if (!/^[0-9]+(\.[0-9]+)*$/.test(s) || s.length > 64) throw new UsageError(`--study must be a Study Instance UID (digits and dots, at most 64), got "${s}"`);
  let query: Record<string, string> | undefined;
  for (const q of argv.query ?? []) {
    const m = /^\s*([A-Za-z][A-Za-z0-9]*|[0-9A-Fa-f]{8})\s*=(.*)$/.exec(q);
    if (!m) throw new UsageError(`--query must be NAME=VALUE (a DICOM keyword or tag), got "${q}"`);
    (query ??= {})[m[1]] = m[2].trim();
  }
  if (!studies.length && !query) throw new UsageError('--dicomweb needs --study UID or --query NAME=VALUE (which studies to segment)');
  const access = parseDicomwebAccess(argv, env);
  const connection = (url: string): DicomwebConnection => ({ url, ...access });
  return {
    source: connection(argv.dicomweb),
    selection: { studies: studies.length ? studies : undefined, query },
    store: argv.store === true || argv['store-to'] !== undefined,
    storeTo: argv['store-to'] === undefined ? undefined : connection(argv['store-to']),
  };
}

/** Run a --dicomweb segmentation with progress lines; returns the exit code. */
export async function runDicomwebSegment(
  command: string,
  options: Omit<DicomwebRunOptions, 'onPlan' | 'onCaseDone' | 'onNote'>,
  ui: { say: (line: string) => void; quiet: boolean; verbose: boolean },
): Promise<number> {
  const { say } = ui;
  let progress: ReturnType<typeof createProgress> | undefined;
  const server = displayUrl(options.source.url);
  if (options.store && options.formats && !options.formats.has('dicom-seg')) throw new UsageError('--store sends seg.dcm: keep dicom-seg in --formats');
  // As for folders: a run that fails before writing anything leaves no empty output folder behind.
  const created = await prepareOutputFolder(options.output);
  let wrote = false;
  const result = await segmentDicomweb({
    ...options,
    onPlan: ({ series, mine, alreadyDone }) => {
      wrote = true;
      const shard = options.shard ? ` (shard ${options.shard.index}/${options.shard.count} of ${series})` : '';
      say(`${command}: ${server}: ${mine} image series${shard}${alreadyDone ? `, ${alreadyDone} already done` : ''}`);
      progress = createProgress({ total: mine, label: 'series', quiet: ui.quiet });
    },
    onCaseDone: (entry, wasSkipped) => {
      if (entry.status === 'failed') say(`${command}: case ${entry.caseId} failed: ${entry.error}`);
      else if (!wasSkipped) for (const w of entry.warnings ?? []) say(`${command}: case ${entry.caseId}: warning: ${w}`);
      else if (ui.verbose) say(`${entry.caseId}: already done`);
      progress?.tick();
    },
    onNote: (line) => {
      if (ui.verbose || /failed|retrying/.test(line)) say(`${command}: ${line}`);
    },
    onLockWait: (holder, waitedMs) => say(`${command}: ${describeLockHolder(options.output, holder, waitedMs)}`),
  }).catch(async (err: unknown) => {
    if (!wrote && created) await removeEmptyFolders(options.output, created);
    throw err;
  });
  progress?.finish();
  const ok = result.entries.filter((e) => e.status === 'ok').length;
  const verdicts = (['accept', 'review', 'reject'] as const).map((v) => `${result.entries.filter((e) => e.summary?.verdict === v).length} ${v}`).join(', ');
  say(`${command}: ${ok} ok (${result.skipped} already done; ${verdicts}), ${result.failed} failed; see ${join(options.output, 'summary.csv')}`);
  if (options.store) {
    const to = displayUrl((options.storeTo ?? options.source).url);
    const failed = result.storeFailed.length ? `; ${result.storeFailed.length} STOW failed (outputs kept locally: ${result.storeFailed.map((r) => r.caseId).join(', ')})` : '';
    const before = result.alreadyStored ? ` (${result.alreadyStored} stored before)` : '';
    say(`${command}: stored ${result.stored.length} SEG(s) to ${to}${before}${failed}; see ${join(options.output, 'stored.jsonl')}`);
  }
  return result.exitCode;
}
