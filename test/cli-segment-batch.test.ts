// alhvr-segment as a cluster job meets it: bad inputs, bad options, shards, locks, SIGTERM, reruns.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantomDataset } from '@alhvr/core/node';
import { cudaProviderInstalled, gpuVisible, readManifest, selectShard, type SegmentCase } from '@alhvr/inference/node';
import { runCli, stderrLines } from './cli-harness.js';

let tmp: string;
let images: string;
let phantoms: string[];

/** summary.csv as rows of case id and status. */
function summary(out: string): { id: string; status: string }[] {
  const [, ...rows] = readFileSync(join(out, 'summary.csv'), 'utf8').trim().split('\n');
  return rows.map((r) => ({ id: r.split(',')[0], status: r.split(',')[1] }));
}

/** A NIfTI-1 header claiming 30000³ float32 voxels, followed by almost nothing. */
function hugeHeader(): Buffer {
  const h = Buffer.alloc(352 + 1000);
  h.writeInt32LE(348, 0);
  [3, 30000, 30000, 30000, 1, 1, 1, 1].forEach((v, n) => h.writeInt16LE(v, 40 + 2 * n));
  h.writeInt16LE(16, 70);
  h.writeInt16LE(32, 72);
  [1, 1, 1, 1, 1, 1, 1, 1].forEach((v, n) => h.writeFloatLE(v, 76 + 4 * n));
  h.writeFloatLE(352, 108);
  h.writeFloatLE(1, 112);
  h.write('n+1\0', 344, 'latin1');
  return h;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'alhvr-segment-batch-'));
  await writePhantomDataset(join(tmp, 'phantom'), { cases: 3, seed: 11 });
  images = join(tmp, 'phantom', 'imagesTr');
  phantoms = readdirSync(images).map((f) => join(images, f));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a batch survives its inputs', () => {
  it('truncated, random-byte and huge-header files are failed cases; the others are segmented into a new nested folder', async () => {
    const input = join(tmp, 'mixed');
    mkdirSync(input);
    const good = readFileSync(phantoms[0]);
    // Sorted first, so a crash on it would stop the run before any good case.
    writeFileSync(join(input, 'aaa-truncated.nii.gz'), good.subarray(0, good.length >> 1));
    writeFileSync(join(input, 'random.nii'), Buffer.from(Array.from({ length: 4096 }, (_, n) => (n * 7919 + 13) & 255)));
    writeFileSync(join(input, 'huge.nii'), hugeHeader());
    copyFileSync(phantoms[0], join(input, 'zzz-good.nii.gz'));
    const out = join(tmp, 'new', 'nested', 'out');
    const r = await runCli('alhvr-segment', [input, '--out', out]);
    expect(r.code, r.stderr).toBe(1);
    const rows = summary(out);
    expect(rows.map((x) => x.id).sort()).toEqual(['aaa-truncated', 'huge', 'random', 'zzz-good']);
    expect(rows.filter((x) => x.status === 'ok').map((x) => x.id)).toEqual(['zzz-good']);
    const manifest = await readManifest(out);
    expect(manifest.get('huge')?.error).toMatch(/huge\.nii/);
    for (const id of ['aaa-truncated', 'huge', 'random']) expect(r.stderr).toContain(`case ${id} failed`);
    expect(existsSync(join(out, 'zzz-good', 'mask.nii.gz'))).toBe(true);
  });

  it.each([
    [['--slice-batch', '0'], /--slice-batch must be a positive integer/],
    [['--slice-batch', '1.5'], /--slice-batch must be a positive integer/],
    [['--batch', '8+8'], /--slice-batch must be a positive integer/],
    [['--shard', '0/3'], /--shard must be i\/n/],
    [['--shard', '3/2'], /--shard must be i\/n/],
    [['--device', 'gpu'], /Invalid values: Argument: device, Given: "gpu", Choices: "auto", "cuda", "cpu"/],
  ])('%j is refused in one line before anything is read or written', async (args, message) => {
    const out = join(tmp, 'never', 'created');
    const r = await runCli('alhvr-segment', [images, '--out', out, ...args]);
    expect(r.code).toBe(2);
    expect(stderrLines(r)).toHaveLength(1);
    expect(stderrLines(r)[0]).toMatch(message);
    expect(existsSync(join(tmp, 'never'))).toBe(false);
  });

  it('an output folder that cannot be made is one line naming it; a failed start removes folders it made', async () => {
    const blocker = join(tmp, 'a-file');
    writeFileSync(blocker, 'x');
    const r = await runCli('alhvr-segment', [images, '--out', join(blocker, 'out')]);
    expect(r.code).toBe(1);
    expect(stderrLines(r)).toEqual([`alhvr-segment: error: ${join(blocker, 'out')}: cannot create the output folder (a file is in the way)`]);
    const missingInput = await runCli('alhvr-segment', [join(tmp, 'no-such-input'), '--out', join(tmp, 'made', 'then', 'removed')]);
    expect(missingInput.code).toBe(1);
    expect(existsSync(join(tmp, 'made'))).toBe(false);
  });

  it('an empty shard writes its empty share and exits 0; --output is still accepted', async () => {
    const out = join(tmp, 'empty-shard');
    const r = await runCli('alhvr-segment', [phantoms[0], '--output', out, '--shard', '2/5']);
    expect(r.code, r.stderr).toBe(0);
    expect(summary(out)).toEqual([]);
    // Users who never asked for CUDA do not hear about its provider (only where a GPU is visible).
    if (!gpuVisible()) expect(r.stderr).not.toMatch(/CUDA/);
    const verbose = await runCli('alhvr-segment', [phantoms[0], '--out', out, '--shard', '2/5', '--verbose']);
    if (!cudaProviderInstalled()) expect(verbose.stderr).toMatch(/install the CUDA provider: ONNXRUNTIME_NODE_INSTALL=cuda12 node \S+onnxruntime-node\/script\/install\.js/);
  });

  it('shards are balanced and cover every case once', () => {
    const cases = Array.from({ length: 12 }, (_, n) => ({ id: `case-${n}`, source: { kind: 'nifti', path: `${n}.nii` } }) as SegmentCase);
    for (const count of [2, 3, 5, 12, 13]) {
      const parts = Array.from({ length: count }, (_, i) => selectShard(cases, { index: i + 1, count }).map((c) => c.id));
      const sizes = parts.map((p) => p.length);
      expect(Math.max(...sizes) - Math.min(...sizes), `${count} shards: ${sizes}`).toBeLessThanOrEqual(1);
      expect(parts.flat().sort()).toEqual(cases.map((c) => c.id).sort());
      // Deterministic whatever order the inputs were listed in.
      expect(Array.from({ length: count }, (_, i) => selectShard([...cases].reverse(), { index: i + 1, count }).map((c) => c.id).sort())).toEqual(parts.map((p) => [...p].sort()));
    }
  });

  it('a lock left by a dead process is taken over; a live holder is named while the run waits', async () => {
    const out = join(tmp, 'locked');
    const lock = join(out, '.alhvr-segment.lock');
    mkdirSync(lock, { recursive: true });
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => dead.on('exit', resolve));
    writeFileSync(join(lock, 'owner.json'), JSON.stringify({ pid: dead.pid, host: hostname(), token: 'dead', since: new Date().toISOString() }));
    const started = Date.now();
    const r = await runCli('alhvr-segment', [phantoms[0], '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(existsSync(lock)).toBe(false);

    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    mkdirSync(lock);
    writeFileSync(join(lock, 'owner.json'), JSON.stringify({ pid: holder.pid, host: hostname(), token: 'live', since: '2026-01-01T00:00:00.000Z' }));
    let killed = false;
    const waited = await runCli('alhvr-segment', [phantoms[1], '--out', out], {
      onStderr: (chunk) => {
        if (!killed && /held by process/.test(chunk)) {
          killed = true;
          holder.kill('SIGKILL');
        }
      },
    });
    expect(killed, waited.stderr).toBe(true);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stderr).toContain(`held by process ${holder.pid} on ${hostname()} (since 2026-01-01T00:00:00.000Z)`);
    expect(summary(out)).toHaveLength(2);
  }, 120_000);

  it('SIGTERM stops like Ctrl-C: exit 143, finished cases recorded, summary.csv written', async () => {
    const input = join(tmp, 'many');
    mkdirSync(input);
    for (let n = 0; n < 12; n++) copyFileSync(phantoms[n % phantoms.length], join(input, `case${String(n).padStart(2, '0')}.nii.gz`));
    const out = join(tmp, 'terminated');
    let sent = false;
    const r = await runCli('alhvr-segment', [input, '--out', out, '--slice-batch', '1'], {
      onStderr: (chunk, child) => {
        if (!sent && /cases \[1\/12\]/.test(chunk)) {
          sent = true;
          child.kill('SIGTERM');
        }
      },
    });
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(143);
    const rows = summary(out);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows.length).toBeLessThan(12);
    expect(readdirSync(out).filter((f) => f.endsWith('.tmp') || f.endsWith('.lock'))).toEqual([]);
  }, 120_000);

  it('a case folder holds the outputs of one run only', async () => {
    const out = join(tmp, 'rerun');
    const first = await runCli('alhvr-segment', [phantoms[2], '--out', out, '--save-probabilities']);
    expect(first.code, first.stderr).toBe(0);
    const [id] = readdirSync(out).filter((f) => !f.includes('.'));
    writeFileSync(join(out, id, `.mask.nii.gz.999999.abcdef12.tmp`), 'left by a killed run');
    writeFileSync(join(out, id, 'notes.txt'), 'a reviewer\'s file');
    expect(readdirSync(join(out, id))).toContain('preview.png');
    const second = await runCli('alhvr-segment', [phantoms[2], '--out', out, '--no-preview']);
    expect(second.code, second.stderr).toBe(0);
    expect(readdirSync(join(out, id)).sort()).toEqual(['confidence.nii.gz', 'mask.nii.gz', 'notes.txt', 'region.nii.gz', 'report.json']);
  });
});
