// `npm test` on a fresh Debian machine: its pretest installs the cross-checks' packages when
// missing. Run here against stub dpkg/apt-get/id/sudo so the test never installs anything.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const script = join(root, 'scripts', 'install-test-deps.sh');
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Run the script with stubs: dpkg knows `installed`, id -u prints `uid`, sudo -n works if `sudo`. */
function run(opts: { installed: string[]; uid: number; sudo: boolean }) {
  const bin = mkdtempSync(join(tmpdir(), 'alhvr-test-deps-'));
  dirs.push(bin);
  const log = join(bin, 'calls.log');
  const stub = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  stub('dpkg', `case " ${opts.installed.join(' ')} " in *" $2 "*) exit 0;; *) exit 1;; esac`);
  stub('id', `echo ${opts.uid}`);
  stub('apt-get', `echo "apt-get $*" >> ${log}`);
  if (opts.sudo) stub('sudo', `[ "$1" = -n ] && shift; [ "$1" = true ] && exit 0; echo "sudo" >> ${log}; "$@"`);
  // Only the stubs and the shell's own tools: no real dpkg, apt-get or sudo is reachable.
  const r = spawnSync('/bin/bash', [script], { env: { PATH: `${bin}:/usr/bin/env-not-here`, HOME: bin }, encoding: 'utf8' });
  let calls: string[] = [];
  try {
    calls = readFileSync(log, 'utf8').trim().split('\n');
  } catch {
    // no call made
  }
  return { code: r.status, stderr: r.stderr, calls };
}

const ALL = ['dicom3tools', 'dcmtk', 'libgdcm-tools', 'python3-onnx', 'python3-numpy', 'python3-pydicom', 'python3-pil', 'python3-nibabel', 'python3-scipy', 'python3-torch', 'chromium', 'fonts-dejavu-core', 'orthanc', 'orthanc-dicomweb', 'openssl'];

describe('scripts/install-test-deps.sh (npm pretest)', () => {
  it('does nothing when every package is installed', () => {
    const r = run({ installed: ALL, uid: 1000, sudo: false });
    expect(r.code, r.stderr).toBe(0);
    expect(r.calls).toEqual([]);
  });

  it('as root installs exactly the missing packages', () => {
    const r = run({ installed: ALL.filter((p) => p !== 'python3-torch' && p !== 'dicom3tools'), uid: 0, sudo: false });
    expect(r.code, r.stderr).toBe(0);
    expect(r.calls).toEqual(['apt-get update -qq', 'apt-get install -y -qq --no-install-recommends dicom3tools python3-torch']);
  });

  it('uses sudo when it works without a password', () => {
    const r = run({ installed: ALL.filter((p) => p !== 'chromium'), uid: 1000, sudo: true });
    expect(r.code, r.stderr).toBe(0);
    expect(r.calls).toContain('apt-get install -y -qq --no-install-recommends chromium');
    expect(r.calls.filter((c) => c === 'sudo')).toHaveLength(2);
  });

  it('without root or sudo fails in one line naming the packages and the command', () => {
    const r = run({ installed: ALL.filter((p) => p !== 'python3-torch'), uid: 1000, sudo: false });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'install-test-deps: error: the tests need Debian packages that are missing: python3-torch; install them with: sudo apt-get install -y python3-torch',
    ]);
    expect(r.calls).toEqual([]);
  });

  it('is what `npm test` runs first, and what .ci/run reaches through `npm test`', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.pretest).toMatch(/^bash scripts\/install-test-deps\.sh/);
    const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
    expect(ci).toMatch(/^npm test$/m);
    expect(ci).not.toMatch(/apt-get/);
  });
});

describe('npm configuration', () => {
  it('npm commands in the repository print no warning (no unknown project config)', () => {
    const r = spawnSync('npm', ['pkg', 'get', 'name'], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/npm warn/i);
  });

  it('onnxruntime-node install script is denied through allowScripts, so installs stay offline', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { allowScripts: Record<string, boolean>; engines: { npm: string } };
    expect(pkg.allowScripts['onnxruntime-node']).toBe(false);
    // allowScripts is honoured from npm 11.16; older npm would run the CUDA download.
    expect(pkg.engines.npm).toBe('>=11.16.0');
    expect(readFileSync(join(root, '.npmrc'), 'utf8')).toMatch(/^engine-strict=true$/m);
  });
});
