// A real DICOMweb server for tests: Debian's Orthanc with its DICOMweb plugin on 127.0.0.1 (a free
// port, storage in a folder of the caller's), started and stopped by the test file that uses it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';

export const ORTHANC = '/usr/sbin/Orthanc';
export const DICOMWEB_PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

export interface Orthanc {
  port: number;
  /** The DICOMweb root, http://127.0.0.1:PORT/dicom-web. */
  dicomweb: string;
  /** The Authorization header value every request needs, when started with a user. */
  authorization?: string;
  /** Add one Part 10 instance through Orthanc's REST API; throws unless Orthanc accepts it. */
  upload(bytes: Uint8Array): Promise<void>;
  stop(): void;
}

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/**
 * Start Orthanc with its index and storage in `dir/orthanc` and wait until it answers. With
 * `user`, every request needs HTTP Basic authentication as that user (`authorization`).
 */
export async function startOrthanc(dir: string, opts: { user?: { name: string; password: string } } = {}): Promise<Orthanc> {
  const port = await freePort();
  const storage = join(dir, 'orthanc');
  mkdirSync(storage);
  const config = join(dir, 'orthanc.json');
  writeFileSync(
    config,
    JSON.stringify({
      Name: 'alhvr-test',
      StorageDirectory: storage,
      IndexDirectory: storage,
      HttpPort: port,
      HttpBindAddress: '127.0.0.1',
      RemoteAccessAllowed: false,
      AuthenticationEnabled: opts.user !== undefined,
      ...(opts.user ? { RegisteredUsers: { [opts.user.name]: opts.user.password } } : {}),
      DicomServerEnabled: false,
      Plugins: [DICOMWEB_PLUGIN],
      DicomWeb: { Enable: true, Root: '/dicom-web/' },
    }),
  );
  const child: ChildProcess = spawn(ORTHANC, [config], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  const authorization = opts.user ? `Basic ${Buffer.from(`${opts.user.name}:${opts.user.password}`).toString('base64')}` : undefined;
  const headers = authorization ? { Authorization: authorization } : undefined;
  const server: Orthanc = {
    port,
    dicomweb: `${base}/dicom-web`,
    authorization,
    async upload(bytes) {
      const r = await fetch(`${base}/instances`, { method: 'POST', body: bytes, headers });
      if (r.status !== 200) throw new Error(`Orthanc refused an instance: HTTP ${r.status}`);
    },
    stop: () => void child.kill(),
  };
  for (let n = 0; n < 100; n++) {
    if (await fetch(`${base}/system`, { headers }).then((r) => r.ok, () => false)) return server;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill();
  throw new Error(`Orthanc did not start on port ${port}`);
}
