// The PACS round trip through DICOMweb against a real server: Debian's Orthanc with its DICOMweb
// plugin on 127.0.0.1 (free port, temporary storage), holding a phantom CT series and the real
// 20-slice MR series. alhvr-segment --dicomweb fetches, segments and stores the SEG back; the SEG
// Orthanc then serves must reference its source series, decode to the local mask and pass
// dciodvfy. A small proxy in front of Orthanc plays the failing PACS: it demands a token, stalls
// transfers mid-body and refuses STOW-RS, so each failure is seen as a user would see it.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDicomSeries, readNiftiFile } from '@alhvr/core/node';
import { DicomwebTransport, jsonValue, readManifest, segmentDicomweb, type DicomwebConnection } from '@alhvr/inference/node';
import { parseDicomwebArgs, type DicomwebArgs } from '../cli/src/lib/dicomweb.js';
import { UsageError } from '../cli/src/lib/run-command.js';
import { cliPath, runCli } from './cli-harness.js';
import { daikonSeries } from './fixtures.js';
import { makeToyModel } from './segment-toy-model.js';
import { freePort, startOrthanc, type Orthanc } from './support/orthanc.js';
import { PYTHON } from './support/python.js';

const TOKEN = 'sekrit-token-7f3a9c';

const tmp = mkdtempSync(join(tmpdir(), 'alhvr-pacs-'));
let orthanc: Orthanc | undefined;
let proxy: Server | undefined;
let tlsProxy: Server | undefined;
let orthancPort = 0;
let proxyPort = 0;
let model = '';
let phantomDir = '';

/** What the proxy does to the next requests; the tests set it before each run. */
const rules = { token: undefined as string | undefined, stallFirstInstance: false, stallSeries: new Set<string>(), stowStatus: 0 };
const counts = { instanceGets: 0, stows: 0 };

function startProxy(): Promise<number> {
  proxy = createServer(proxyHandler);
  return new Promise((resolve) => proxy!.listen(0, '127.0.0.1', () => resolve((proxy!.address() as { port: number }).port)));
}

function startTlsProxy(key: Buffer, cert: Buffer): Promise<number> {
  tlsProxy = createHttpsServer({ key, cert }, proxyHandler);
  return new Promise((resolve) => tlsProxy!.listen(0, '127.0.0.1', () => resolve((tlsProxy!.address() as { port: number }).port)));
}

function proxyHandler(req: IncomingMessage, res: ServerResponse): void {
  if (rules.token !== undefined && req.headers.authorization !== `Bearer ${rules.token}`) {
    req.resume();
    res.writeHead(req.headers.authorization ? 403 : 401).end();
    return;
  }
  const instance = req.method === 'GET' ? /\/series\/([^/]+)\/instances\/[^/?]+$/.exec(req.url ?? '') : null;
  if (instance) counts.instanceGets++;
  if (req.method === 'POST') {
    counts.stows++;
    if (rules.stowStatus) {
      req.resume();
      res.writeHead(rules.stowStatus).end();
      return;
    }
  }
  let stall = instance !== null && rules.stallSeries.has(instance[1]);
  if (instance && rules.stallFirstInstance) {
    rules.stallFirstInstance = false;
    stall = true;
  }
  const headers = { ...req.headers, host: `127.0.0.1:${orthancPort}` };
  delete headers.authorization;
  const upstream = httpRequest({ host: '127.0.0.1', port: orthancPort, path: req.url, method: req.method, headers }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    if (!stall) {
      up.pipe(res);
      return;
    }
    // A transfer that stops mid-body: half of the first chunk, then silence.
    up.once('data', (chunk: Buffer) => {
      up.pause();
      res.write(chunk.subarray(0, chunk.length >> 1));
    });
  });
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
}

async function upload(files: string[]): Promise<void> {
  for (const f of files) {
    const r = await fetch(`http://127.0.0.1:${orthancPort}/instances`, { method: 'POST', body: readFileSync(f) });
    expect(r.status, f).toBe(200);
  }
}

const listFiles = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));

/** alhvr-segment with an environment of its own (the token variable). */
function segment(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath('alhvr-segment'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const server = () => `http://127.0.0.1:${proxyPort}/dicom-web`;
const arr = (x: any) => (Array.isArray(x) ? x : [x]);

/** The label volume a SEG encodes, in the source series' slice order (segment number = class value). */
function decodeSeg(bytes: Uint8Array, sliceUids: string[]): { labels: Uint8Array; referencedSeries: string; ds: any } {
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer).dict);
  const frameSize = ds.Rows * ds.Columns;
  const labels = new Uint8Array(frameSize * sliceUids.length);
  const packed = new Uint8Array(arr(ds.PixelData)[0]);
  arr(ds.PerFrameFunctionalGroupsSequence).forEach((fg: any, f: number) => {
    const sop = arr(arr(fg.DerivationImageSequence)[0].SourceImageSequence)[0].ReferencedSOPInstanceUID;
    const k = sliceUids.indexOf(sop);
    expect(k).toBeGreaterThanOrEqual(0);
    const segmentNumber = arr(fg.SegmentIdentificationSequence)[0].ReferencedSegmentNumber as number;
    for (let n = 0; n < frameSize; n++) if ((packed[(f * frameSize + n) >> 3] >> ((f * frameSize + n) & 7)) & 1) labels[k * frameSize + n] = segmentNumber;
  });
  return { labels, referencedSeries: arr(ds.ReferencedSeriesSequence)[0].SeriesInstanceUID, ds };
}

/** The SEG instances Orthanc holds in a study, fetched back through DICOMweb. */
async function storedSegs(study: string): Promise<Uint8Array[]> {
  const t = new DicomwebTransport({ url: `http://127.0.0.1:${orthancPort}/dicom-web` });
  try {
    const out: Uint8Array[] = [];
    for (const s of await t.searchSeries(study)) {
      if (jsonValue(s, '00080060') !== 'SEG') continue;
      const series = jsonValue(s, '0020000E');
      for (const i of await t.searchInstances(study, series)) out.push(await t.retrieveInstance(study, series, jsonValue(i, '00080018')));
    }
    return out;
  } finally {
    t.close();
  }
}

const mr = { study: '', series: '', uids: [] as string[] };
const ct = { study: '', series: '', uids: [] as string[], instances: 0 };
let segOnlyStudy = '';
const outA = join(tmp, 'out-a');
const outC = join(tmp, 'out-c');

beforeAll(async () => {
  model = makeToyModel(tmp, { size: [64, 64] });
  phantomDir = join(tmp, 'phantom');
  const made = await runCli('alhvr-phantom', ['--kind', 'abdomen-ct', '--dicom', '--matrix', '64', '--cases', '1', '--seed', '5', '--out', phantomDir, '--quiet']);
  expect(made.code, made.stderr).toBe(0);
  orthanc = await startOrthanc(tmp);
  orthancPort = orthanc.port;
  proxyPort = await startProxy();
  const ctFiles = listFiles(join(phantomDir, 'dicom'));
  await upload([...listFiles(daikonSeries), ...ctFiles]);
  for (const [target, files] of [[mr, listFiles(daikonSeries)], [ct, ctFiles]] as const) {
    const image = await readDicomSeries(files);
    const meta = image.meta.dicom!;
    target.study = meta.patientStudy.StudyInstanceUID!;
    target.series = meta.seriesInstanceUID;
    target.uids = meta.slices.map((s) => s.sopInstanceUID);
  }
  ct.instances = ctFiles.length;
}, 60_000);

afterAll(async () => {
  orthanc?.stop();
  for (const p of [proxy, tlsProxy]) {
    p?.closeAllConnections();
    await new Promise((r) => (p ? p.close(r) : r(undefined)));
  }
  rmSync(tmp, { recursive: true, force: true });
});

describe('alhvr-segment --dicomweb against Orthanc', () => {
  let first: { code: number | null; stderr: string; stdout: string };

  it('queries, fetches (recovering a transfer stalled mid-body), segments and stores SEGs that reference their source series', async () => {
    rules.token = TOKEN;
    rules.stallFirstInstance = true;
    first = await segment(['--dicomweb', server(), '--query', 'ModalitiesInStudy=MR', '--study', ct.study, '--model', model, '--out', outA, '--store', '--timeout', '1'], {
      ALHVR_DICOMWEB_AUTHORIZATION: `Bearer ${TOKEN}`,
    });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/retrying \(1\) after: .*timed out/);
    expect(first.stderr).toContain(`stored 2 SEG(s) to ${server()}`);
    const manifest = [...(await readManifest(outA)).values()];
    expect(manifest.map((e) => e.status)).toEqual(['ok', 'ok']);
    // Cases are known by their Study/Series Instance UIDs.
    expect(manifest.map((e) => e.input).sort()).toEqual([`${server()}/studies/${mr.study}/series/${mr.series}`, `${server()}/studies/${ct.study}/series/${ct.series}`].sort());

    for (const source of [mr, ct]) {
      const entry = manifest.find((e) => e.input.endsWith(source.series))!;
      const segs = await storedSegs(source.study);
      expect(segs).toHaveLength(1);
      const { labels, referencedSeries, ds } = decodeSeg(segs[0], source.uids);
      expect(referencedSeries).toBe(source.series);
      expect(ds.StudyInstanceUID).toBe(source.study);
      // The stored SEG is the local one, and decodes to the local mask voxel for voxel.
      expect(Buffer.from(segs[0]).equals(readFileSync(join(outA, entry.caseId, 'seg.dcm')))).toBe(true);
      const mask = await readNiftiFile(join(outA, entry.caseId, 'mask.nii.gz'));
      expect(mask.data.length).toBe(labels.length);
      expect(labels.some((v) => v > 0)).toBe(true);
      expect(Buffer.from(labels).equals(Buffer.from(Uint8Array.from(mask.data as ArrayLike<number>)))).toBe(true);
      if (source === ct) {
        // The phantom has valid UIDs: the SEG Orthanc serves passes dciodvfy without errors.
        const file = join(tmp, 'ct-seg.dcm');
        writeFileSync(file, segs[0]);
        const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
        expect(r.error).toBeUndefined();
        expect(`${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.startsWith('Error'))).toEqual([]);
      }
    }
  }, 90_000);

  it('--resume skips stored cases without fetching or storing anything', async () => {
    const before = { ...counts };
    const reportTimes = listFiles(outA).filter((f) => f.endsWith('report.json')).map((f) => statSync(f).mtimeMs);
    const again = await segment(['--dicomweb', server(), '--query', 'ModalitiesInStudy=MR', '--study', ct.study, '--model', model, '--out', outA, '--store', '--resume'], {
      ALHVR_DICOMWEB_AUTHORIZATION: `Bearer ${TOKEN}`,
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('2 image series, 2 already done');
    expect(again.stderr).toContain('stored 0 SEG(s)');
    expect(again.stderr).toContain('(2 stored before)');
    expect(counts).toEqual(before);
    expect(listFiles(outA).filter((f) => f.endsWith('report.json')).map((f) => statSync(f).mtimeMs)).toEqual(reportTimes);
    expect(await storedSegs(mr.study)).toHaveLength(1);
  }, 60_000);

  it('--shard i/n splits the series by UID before any transfer: two shards fetch each series once', async () => {
    const outS = join(tmp, 'out-s');
    const before = { ...counts };
    const env = { ALHVR_DICOMWEB_AUTHORIZATION: `Bearer ${TOKEN}` };
    const shards = await Promise.all(
      ['1/2', '2/2'].map((shard) => segment(['--dicomweb', server(), '--study', mr.study, '--study', ct.study, '--model', model, '--out', outS, '--shard', shard], env)),
    );
    for (const r of shards) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/: 1 image series \(shard [12]\/2 of 2\)/);
    }
    expect(counts.instanceGets - before.instanceGets).toBe(mr.uids.length + ct.instances);
    const manifest = [...(await readManifest(outS)).values()];
    expect(manifest.map((e) => e.status)).toEqual(['ok', 'ok']);
    expect(manifest.map((e) => e.input.split('/series/')[1]).sort()).toEqual([mr.series, ct.series].sort());
  }, 60_000);

  it('a study with no image series, a transfer that keeps stalling and a refused STOW each fail alone; --resume then stores without fetching again', async () => {
    // A study holding only a SEG: the phantom's SEG moved to a study of its own.
    const moved = join(tmp, 'seg-only.dcm');
    const py = spawnSync(PYTHON, ['-c', `import pydicom,sys
from pydicom.uid import generate_uid
ds = pydicom.dcmread(sys.argv[1])
ds.StudyInstanceUID = generate_uid(); ds.SeriesInstanceUID = generate_uid(); ds.SOPInstanceUID = generate_uid()
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.save_as(sys.argv[2]); print(ds.StudyInstanceUID)`, join(tmp, 'ct-seg.dcm'), moved], { encoding: 'utf8' });
    expect(py.status, py.stderr).toBe(0);
    segOnlyStudy = py.stdout.trim();
    await upload([moved]);

    rules.stallSeries = new Set([ct.series]);
    rules.stowStatus = 500;
    const args = ['--dicomweb', server(), '--study', mr.study, '--study', ct.study, '--study', segOnlyStudy, '--model', model, '--out', outC, '--store', '--timeout', '1', '--retries', '1'];
    const env = { ALHVR_DICOMWEB_AUTHORIZATION: `Bearer ${TOKEN}` };
    const r = await segment(args, env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`case \\S+ failed: ${server()}: WADO-RS instance [0-9.]+: timed out \\(no data for 1 s\\) after 2 tries`));
    expect(r.stderr).toContain(`failed: ${server()}: study ${segOnlyStudy} has no image series (only SEG)`);
    expect(r.stderr).toMatch(/STOW-RS failed, outputs kept in .*HTTP 500 after 2 tries/);
    expect(r.stderr).toMatch(/stored 0 SEG\(s\) to .*; 1 STOW failed \(outputs kept locally: \S+\)/);
    const manifest = [...(await readManifest(outC)).values()];
    expect(manifest.map((e) => e.status).sort()).toEqual(['failed', 'failed', 'ok']);
    const done = manifest.find((e) => e.status === 'ok')!;
    expect(done.input).toContain(mr.series);
    for (const f of ['mask.nii.gz', 'seg.dcm', 'report.json']) expect(statSync(join(outC, done.caseId, f)).size).toBeGreaterThan(0);
    expect(readFileSync(join(outC, 'summary.csv'), 'utf8')).toContain('has no image series');

    rules.stallSeries = new Set();
    rules.stowStatus = 0;
    const before = { ...counts };
    const resumed = await segment([...args, '--resume'], env);
    expect(resumed.code).toBe(1); // the SEG-only study still has nothing to segment
    // Only the failed series is fetched again; the done one is only stored.
    expect(counts.instanceGets - before.instanceGets).toBe(ct.instances);
    expect(counts.stows - before.stows).toBe(2);
    expect(resumed.stderr).toContain(`stored 2 SEG(s) to ${server()}`);
    expect([...(await readManifest(outC)).values()].map((e) => e.status).sort()).toEqual(['failed', 'ok', 'ok']);
  }, 90_000);

  it('401, 403, an untrusted certificate and an unreachable server fail the case in one line, --ca trusts HTTPS, listings are paged, and no token reaches any output', async () => {
    const env = { ALHVR_DICOMWEB_AUTHORIZATION: `Bearer ${TOKEN}` };
    // QIDO-RS listings come page by page: 20 instances in pages of 7 are the series' 20 instances.
    const paged = new DicomwebTransport({ url: `http://127.0.0.1:${orthancPort}/dicom-web`, pageSize: 7 });
    const listedInstances = await paged.searchInstances(mr.study, mr.series);
    paged.close();
    expect(listedInstances.map((ds) => jsonValue(ds, '00080018')).sort()).toEqual([...mr.uids].sort());

    // Through the library (the listing fails before any model is opened): each study a failed case.
    const outE = join(tmp, 'out-e');
    const listed = async (connection: Partial<DicomwebConnection>) => {
      const r = await segmentDicomweb({ output: outE, model, source: { url: server(), ...connection }, selection: { studies: [mr.study] } });
      expect(r.exitCode).toBe(1);
      expect(r.entries).toHaveLength(1);
      return r.entries[0];
    };
    expect((await listed({})).error).toBe(`${server()}: QIDO-RS study search: HTTP 401 unauthorized (check the Authorization header or token)`);
    const wrong = await listed({ headers: { Authorization: 'Bearer wrong-token-123' } });
    expect(wrong).toMatchObject({ status: 'failed', input: `${server()}/studies/${mr.study}`, error: `${server()}: QIDO-RS study search: HTTP 403 forbidden (the credentials lack access)` });

    // HTTPS with a self-signed certificate: refused in one line without --ca, trusted with it.
    const key = join(tmp, 'tls.key');
    const cert = join(tmp, 'tls.pem');
    const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    expect(ssl.status, ssl.stderr).toBe(0);
    const tlsPort = await startTlsProxy(readFileSync(key), readFileSync(cert));
    const https = `https://127.0.0.1:${tlsPort}/dicom-web`;
    const untrusted = await listed({ url: https, headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(untrusted.error).toMatch(/QIDO-RS study search: TLS certificate not trusted \(\w+\); pass the server's CA with --ca FILE$/);
    const trusted = await segment(['--dicomweb', https, '--study', ct.study, '--model', model, '--out', join(tmp, 'out-tls'), '--ca', cert], env);
    expect(trusted.code, trusted.stderr).toBe(0);
    expect([...(await readManifest(join(tmp, 'out-tls'))).values()].map((e) => e.status)).toEqual(['ok']);

    const closed = await freePort();
    const outD = join(tmp, 'out-d');
    const gone = await segmentDicomweb({ output: outD, model, source: { url: `http://127.0.0.1:${closed}/dicom-web`, retries: 2 }, selection: { studies: [mr.study] } });
    expect(gone.exitCode).toBe(1);
    expect(gone.entries[0].error).toBe(`http://127.0.0.1:${closed}/dicom-web: QIDO-RS study search: server unreachable (ECONNREFUSED) after 3 tries`);
    const [entry] = (await readManifest(outD)).values();
    expect(entry).toMatchObject({ status: 'failed', input: `http://127.0.0.1:${closed}/dicom-web/studies/${mr.study}` });

    for (const dir of [outA, outC, outE, outD, join(tmp, 'out-tls')]) {
      for (const f of listFiles(dir)) expect(readFileSync(f).includes(TOKEN), f).toBe(false);
    }
    for (const text of [first.stderr, first.stdout, trusted.stderr]) expect(text).not.toContain(TOKEN);
  }, 60_000);

  it('refuses contradictory or unsafe options in one line (exit 2) before any output', async () => {
    const cases: [Partial<DicomwebArgs>, string][] = [
      [{ study: [mr.study] }, '--study needs --dicomweb URL'],
      [{ dicomweb: server() }, '--dicomweb needs --study UID or --query NAME=VALUE'],
      [{ dicomweb: `http://user:${TOKEN}@127.0.0.1:${proxyPort}/dicom-web`, study: [mr.study] }, 'put credentials in --header or ALHVR_DICOMWEB_AUTHORIZATION, not in the URL'],
      [{ dicomweb: server(), study: [mr.study], header: [`Authorization=Bearer ${TOKEN}`] }, '--header must be "Name: value" (got one starting "Authorization…")'],
      [{ dicomweb: server(), study: ['not-a-uid'] }, '--study must be a Study Instance UID'],
      [{ dicomweb: server(), query: ['ModalitiesInStudy'] }, '--query must be NAME=VALUE'],
      [{ dicomweb: server(), study: [mr.study], retries: -1 }, '--retries must be a whole number'],
      [{ dicomweb: server(), study: [mr.study], _: [phantomDir] }, 'give INPUT or --dicomweb, not both'],
    ];
    for (const [args, message] of cases) {
      let error: Error | undefined;
      try {
        parseDicomwebArgs({ _: [], timeout: 30, ...args }, {});
      } catch (err) {
        error = err as Error;
      }
      expect(error, message).toBeInstanceOf(UsageError);
      expect(error!.message).toContain(message);
      expect(error!.message).not.toContain(TOKEN);
    }
    const parsed = parseDicomwebArgs({ _: [], timeout: 5, dicomweb: server(), query: ['StudyDate=20240101-20241231'], header: ['X-Site: a'], 'store-to': server() }, { ALHVR_DICOMWEB_AUTHORIZATION: `Bearer ${TOKEN}` });
    expect(parsed).toMatchObject({ store: true, selection: { query: { StudyDate: '20240101-20241231' } }, source: { headers: { Authorization: `Bearer ${TOKEN}`, 'X-Site': 'a' }, timeoutMs: 5000 } });
    // The command: exit code 2, one line, and no output folder created.
    const out = join(tmp, 'out-usage');
    const r = await segment(['--dicomweb', server(), '--study', mr.study, '--header', `Authorization=Bearer ${TOKEN}`, '--model', model, '--out', out]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toContain(TOKEN);
    expect(() => statSync(out)).toThrow();
  }, 60_000);
});
