/**
 * Talking to a DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) from Node through the registry's
 * `dicomweb-client`, which does the query encoding and the multipart/related parsing and
 * writing. That client is written against the browser's XMLHttpRequest, which Node 20 lacks;
 * it accepts a request instance per call, so each call gets an `xhr2` XMLHttpRequest (Node's
 * http/https underneath) carrying this connection's TLS agent and socket timeout, and no
 * global is installed. Failures become DicomwebError with a one-line message that names the
 * server (without credentials) and never a header value.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { api } from 'dicomweb-client';
import XMLHttpRequest from 'xhr2';

export interface DicomwebConnection {
  /** The DICOMweb root, e.g. http://pacs:8042/dicom-web (QIDO, WADO and STOW below it). */
  url: string;
  /** Sent with every request (Authorization, …). Never written to logs, messages or files. */
  headers?: Record<string, string>;
  /** Extra PEM certificate authorities for HTTPS, added to Node's and the system's. */
  caPem?: string;
  /** A request whose socket stays silent this long fails as a timeout (default 30 s). */
  timeoutMs?: number;
  /** Tries after the first for timeouts, lost connections, 429 and 5xx (default 3). */
  retries?: number;
  /** First back-off; doubled on each retry (default 500 ms). */
  backoffMs?: number;
  /** Matches asked for per QIDO-RS answer; longer listings are fetched page by page (default 200). */
  pageSize?: number;
}

export type DicomwebFailure = 'unreachable' | 'timeout' | 'unauthorized' | 'forbidden' | 'not-found' | 'http' | 'tls';

export class DicomwebError extends Error {
  constructor(
    message: string,
    readonly failure: DicomwebFailure,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'DicomwebError';
  }
}

/** The URL as it may be shown: no user name, password, query or fragment, no trailing slash. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return '(invalid URL)';
  }
}

/** Debian/Ubuntu, Fedora/RHEL, Alpine/openSUSE: the system's CA bundle, when there is one. */
const SYSTEM_CA_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/ca-bundle.pem'];

function systemCaBundle(): string[] {
  for (const file of SYSTEM_CA_BUNDLES) {
    try {
      return [readFileSync(file, 'utf8')];
    } catch {
      // not this distribution's path
    }
  }
  return [];
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|EPROTO|HOSTNAME/;

/** xhr2's request, remembering why its socket failed and whether it timed out. */
class NodeXhr extends XMLHttpRequest {
  socketError?: NodeJS.ErrnoException;
  timedOut = false;
  /**
   * The transfer broke (timeout, socket error, connection closed mid-body). xhr2 then keeps the
   * status it had, so dicomweb-client may resolve with a partial answer: this flag overrides it.
   * The events fire synchronously right after the final readystatechange, before the caller's
   * promise continuations run.
   */
  broken = false;
  constructor() {
    super();
    this.addEventListener('timeout', () => {
      this.timedOut = true;
      this.broken = true;
    });
    this.addEventListener('error', () => {
      this.broken = true;
    });
  }
  protected override _onHttpRequestError(request: unknown, error: Error): void {
    this.socketError = error;
    super._onHttpRequestError(request, error);
  }
}

interface RequestOptions {
  instance: NodeXhr;
}

/** The part of dicomweb-client's DICOMwebClient used here (its own types say `Object`). */
interface DicomwebClientApi {
  searchForStudies(o: { queryParams?: Record<string, string>; request: RequestOptions }): Promise<DicomJson[]>;
  searchForSeries(o: { studyInstanceUID: string; queryParams?: Record<string, string>; request: RequestOptions }): Promise<DicomJson[]>;
  searchForInstances(o: { studyInstanceUID: string; seriesInstanceUID: string; queryParams?: Record<string, string>; request: RequestOptions }): Promise<DicomJson[]>;
  retrieveInstance(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string; request: RequestOptions }): Promise<ArrayBuffer>;
  storeInstances(o: { datasets: ArrayBuffer[]; studyInstanceUID?: string; request: RequestOptions }): Promise<unknown>;
}

/** A DICOM JSON dataset (PS3.18 F.2): tag → { vr, Value }. */
export type DicomJson = Record<string, { vr?: string; Value?: unknown[] } | undefined>;

/** First value of a tag as text ('' when absent); person names give their Alphabetic form. */
export function jsonValue(ds: DicomJson, tag: string): string {
  const v = ds[tag]?.Value?.[0];
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return String((v as { Alphabetic?: string }).Alphabetic ?? '');
  return String(v);
}

/** Whether a STOW-RS answer lists the instance in its Failed SOP Sequence (0008,1198); servers send it empty on success. */
function storeRefused(answer: unknown): boolean {
  const text = answer instanceof ArrayBuffer ? new TextDecoder().decode(answer) : typeof answer === 'string' ? answer : JSON.stringify(answer ?? '');
  try {
    const failed = (JSON.parse(text) as DicomJson)['00081198']?.Value;
    return Array.isArray(failed) && failed.length > 0;
  } catch {
    // application/dicom+xml: a failed instance is an Item inside the attribute
    return /tag="00081198"[^>]*>\s*<Item/.test(text);
  }
}

export class DicomwebTransport {
  readonly display: string;
  private readonly client: DicomwebClientApi;
  private readonly httpAgent = new HttpAgent({ keepAlive: true });
  private readonly httpsAgent: HttpsAgent;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly pageSize: number;

  constructor(readonly connection: DicomwebConnection) {
    let parsed: URL;
    try {
      parsed = new URL(connection.url);
    } catch {
      throw new DicomwebError(`not a URL: "${displayUrl(connection.url)}" (expected e.g. http://pacs:8042/dicom-web)`, 'http');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new DicomwebError(`${displayUrl(connection.url)}: only http and https DICOMweb servers are supported`, 'http');
    }
    this.display = displayUrl(connection.url);
    this.timeoutMs = connection.timeoutMs ?? 30_000;
    this.retries = connection.retries ?? 3;
    this.backoffMs = connection.backoffMs ?? 500;
    this.pageSize = connection.pageSize ?? 200;
    this.httpsAgent = new HttpsAgent({ keepAlive: true, ca: [...rootCertificates, ...systemCaBundle(), ...(connection.caPem ? [connection.caPem] : [])] });
    const url = this.display;
    this.client = new (api.DICOMwebClient as unknown as new (o: object) => DicomwebClientApi)({ url, headers: connection.headers ?? {}, verbose: false });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private request(): RequestOptions {
    const xhr = new NodeXhr();
    xhr.nodejsSet({ httpAgent: this.httpAgent, httpsAgent: this.httpsAgent });
    xhr.timeout = this.timeoutMs;
    return { instance: xhr };
  }

  /** One error line for a failed call; `what` says what was asked for. */
  private describe(err: unknown, xhr: NodeXhr, what: string): DicomwebError {
    const where = `${this.display}: ${what}`;
    if (xhr.timedOut) return new DicomwebError(`${where}: timed out (no data for ${Math.round(this.timeoutMs / 1000)} s)`, 'timeout');
    const code = xhr.socketError?.code;
    if (code && TLS_CODES.test(code)) return new DicomwebError(`${where}: TLS certificate not trusted (${code}); pass the server's CA with --ca FILE`, 'tls');
    if (xhr.socketError) {
      const lost = code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED';
      return new DicomwebError(`${where}: ${lost ? 'connection lost' : 'server unreachable'} (${code ?? xhr.socketError.message})`, 'unreachable');
    }
    if (xhr.broken) return new DicomwebError(`${where}: connection lost mid-transfer`, 'unreachable');
    const status = (err as { status?: number } | undefined)?.status ?? xhr.status;
    if (status === 401) return new DicomwebError(`${where}: HTTP 401 unauthorized (check the Authorization header or token)`, 'unauthorized', 401);
    if (status === 403) return new DicomwebError(`${where}: HTTP 403 forbidden (the credentials lack access)`, 'forbidden', 403);
    if (status === 404) return new DicomwebError(`${where}: HTTP 404 not found`, 'not-found', 404);
    if (status === 0) return new DicomwebError(`${where}: connection failed`, 'unreachable');
    return new DicomwebError(`${where}: HTTP ${status}`, 'http', status);
  }

  private static retryable(e: DicomwebError): boolean {
    return e.failure === 'timeout' || e.failure === 'unreachable' || (e.failure === 'http' && (e.status === 429 || (e.status ?? 0) >= 500));
  }

  /**
   * Run one call with retries and exponential back-off for transient failures; 4xx answers
   * and TLS errors fail at once. `onRetry` hears each retry (for progress lines).
   */
  async call<T>(what: string, run: (request: RequestOptions) => Promise<T>, opts: { signal?: AbortSignal; onRetry?: (e: DicomwebError, attempt: number) => void } = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const request = this.request();
      try {
        const result = await run(request);
        if (request.instance.broken) throw this.describe(undefined, request.instance, what);
        return result;
      } catch (err) {
        const e = request.instance.broken ? this.describe(err, request.instance, what) : err instanceof DicomwebError ? err : this.describe(err, request.instance, what);
        if (attempt >= this.retries || !DicomwebTransport.retryable(e) || opts.signal?.aborted) {
          if (attempt > 0) e.message += ` after ${attempt + 1} tries`;
          throw e;
        }
        opts.onRetry?.(e, attempt + 1);
        await sleep(this.backoffMs * 2 ** attempt, undefined, { signal: opts.signal }).catch(() => undefined);
      }
    }
  }

  /**
   * A QIDO-RS search, page by page (limit/offset), since servers cap how many matches one answer
   * holds. Stops at an empty page, or at a page with nothing new (a server that ignores offset).
   */
  private async searchAll(what: string, uidTag: string, search: (queryParams: Record<string, string>, request: RequestOptions) => Promise<DicomJson[]>, queryParams: Record<string, string>, opts?: { signal?: AbortSignal }): Promise<DicomJson[]> {
    const all: DicomJson[] = [];
    const seen = new Set<string>();
    for (let offset = 0; ; ) {
      const page = (await this.call(what, (request) => search({ ...queryParams, limit: String(this.pageSize), offset: String(offset) }, request), opts)) ?? [];
      const fresh = page.filter((ds) => {
        const uid = jsonValue(ds, uidTag);
        if (seen.has(uid)) return false;
        seen.add(uid);
        return true;
      });
      all.push(...fresh);
      if (page.length === 0 || fresh.length === 0) return all;
      offset += page.length;
    }
  }

  searchStudies(queryParams: Record<string, string>, opts?: { signal?: AbortSignal }): Promise<DicomJson[]> {
    return this.searchAll('QIDO-RS study search', '0020000D', (q, request) => this.client.searchForStudies({ queryParams: q, request }), queryParams, opts);
  }

  searchSeries(studyInstanceUID: string, opts?: { signal?: AbortSignal }): Promise<DicomJson[]> {
    // SeriesDescription is part of the case id; not every server returns it unasked.
    return this.searchAll(`QIDO-RS series of study ${studyInstanceUID}`, '0020000E', (q, request) => this.client.searchForSeries({ studyInstanceUID, queryParams: q, request }), { includefield: '0008103E' }, opts);
  }

  searchInstances(studyInstanceUID: string, seriesInstanceUID: string, opts?: { signal?: AbortSignal }): Promise<DicomJson[]> {
    return this.searchAll(`QIDO-RS instances of series ${seriesInstanceUID}`, '00080018', (q, request) => this.client.searchForInstances({ studyInstanceUID, seriesInstanceUID, queryParams: q, request }), {}, opts);
  }

  /** One instance (WADO-RS, application/dicom), as its Part 10 bytes. */
  async retrieveInstance(studyInstanceUID: string, seriesInstanceUID: string, sopInstanceUID: string, opts?: { signal?: AbortSignal; onRetry?: (e: DicomwebError, attempt: number) => void }): Promise<Uint8Array> {
    const what = `WADO-RS instance ${sopInstanceUID}`;
    const buffer = await this.call(
      what,
      async (request) => {
        const part = await this.client.retrieveInstance({ studyInstanceUID, seriesInstanceUID, sopInstanceUID, request });
        // A multipart answer cut short (the connection closed mid-body) decodes to no part: retried like a lost connection.
        if (!(part instanceof ArrayBuffer) || part.byteLength === 0) throw new DicomwebError(`${this.display}: ${what}: connection lost mid-transfer (incomplete answer)`, 'unreachable');
        return part;
      },
      opts,
    );
    return new Uint8Array(buffer);
  }

  /**
   * Fetch a series' instances into `folder` (one Part 10 file per instance, `parallel` at a time;
   * memory holds one instance per request) and return the files in listing order. Each instance
   * is retried like any call; the first that still fails fails the series, and the other
   * requests finish theirs and stop, so nothing of the series is still in flight on return.
   */
  async retrieveSeriesFiles(
    studyInstanceUID: string,
    seriesInstanceUID: string,
    folder: string,
    opts: { signal?: AbortSignal; onRetry?: (e: DicomwebError, attempt: number) => void; parallel?: number; where?: string } = {},
  ): Promise<string[]> {
    const where = opts.where ?? `${this.display}/studies/${studyInstanceUID}/series/${seriesInstanceUID}`;
    const instances = await this.searchInstances(studyInstanceUID, seriesInstanceUID, { signal: opts.signal });
    const sops = instances.map((ds) => jsonValue(ds, '00080018')).filter((u) => u !== '');
    if (sops.length === 0) throw new DicomwebError(`${where}: the series lists no instances`, 'not-found');
    await mkdir(folder, { recursive: true });
    const files: string[] = new Array(sops.length);
    let next = 0;
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined && next < sops.length && !opts.signal?.aborted) {
        const n = next++;
        try {
          const bytes = await this.retrieveInstance(studyInstanceUID, seriesInstanceUID, sops[n], { signal: opts.signal, onRetry: opts.onRetry });
          const file = join(folder, `${String(n).padStart(6, '0')}.dcm`);
          await writeFile(file, bytes);
          files[n] = file;
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.parallel ?? 4, sops.length) }, worker));
    if (failure !== undefined) throw failure;
    if (opts.signal?.aborted) throw new DicomwebError(`${where}: interrupted`, 'http');
    return files;
  }

  /**
   * STOW-RS one Part 10 instance into its study. A 202 (some instances refused) or a
   * FailedSOPSequence in the answer is a failure, not a success.
   */
  async store(studyInstanceUID: string, part10: Uint8Array, opts?: { signal?: AbortSignal }): Promise<void> {
    const dataset = part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.byteLength) as ArrayBuffer;
    let status = 0;
    let answer: unknown;
    await this.call(
      `STOW-RS into study ${studyInstanceUID}`,
      async (request) => {
        answer = await this.client.storeInstances({ datasets: [dataset], studyInstanceUID, request });
        status = request.instance.status;
      },
      opts,
    );
    if (status === 202 || storeRefused(answer)) {
      throw new DicomwebError(`${this.display}: STOW-RS into study ${studyInstanceUID}: the server refused the instance (HTTP ${status})`, 'http', status);
    }
  }
}
