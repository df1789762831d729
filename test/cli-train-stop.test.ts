// alhvr-train under a scheduler: SIGTERM keeps the work done so far; bad paths are named errors.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantomDataset } from '@alhvr/core/node';
import { runCli, stderrLines } from './cli-harness.js';

let tmp: string;
let data: string;
const SMALL = ['--patch', '32', '--widths', '2,4,8,16,32', '--batch', '1+1', '--labeled-cases', '1', '--val-cases', '1', '--backend', 'wasm', '--threads', '1'];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'alhvr-train-stop-'));
  data = join(tmp, 'data');
  await writePhantomDataset(data, { cases: 3, seed: 5 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('alhvr-train', () => {
  it('SIGTERM (scancel, docker stop) stops like Ctrl-C: latest.ckpt written, exit 143', async () => {
    const out = join(tmp, 'run');
    let sent = false;
    const r = await runCli('alhvr-train', ['--data', data, '--out', out, '--iterations', '200', '--val-every', '1000', '--checkpoint-every', '1000', '--ramp-iterations', '200', ...SMALL], {
      onStderr: (chunk, child) => {
        if (!sent && /iterations \[[1-9]\d*\/200\]/.test(chunk)) {
          sent = true;
          child.kill('SIGTERM');
        }
      },
    });
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(143);
    // No periodic checkpoint was due (every 1000): this one is the stop's.
    expect(readdirSync(out)).toContain('latest.ckpt');
    expect(r.stderr).toMatch(/stopped at iteration \d+/);

    // --resume needs only the run folder: data and budget come from the run's saved recipe (an
    // omitted --iterations once became the 30 000 default); a moved run folder keeps writing into
    // itself, not into the path it was started with.
    const moved = join(tmp, 'run-moved');
    renameSync(out, moved);
    const resumed = await runCli('alhvr-train', ['--resume', '--out', moved, '--threads', '1']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(existsSync(out)).toBe(false);
    const lastLine = readFileSync(join(moved, 'metrics.jsonl'), 'utf8').trim().split('\n').at(-1)!;
    expect(JSON.parse(lastLine).iteration).toBe(200);
    expect(resumed.stderr).toMatch(/"iterations":200/);
    expect(resumed.stderr).toMatch(/finished at iteration 200 /);
  }, 240_000);

  it.each([
    ['--data that does not exist', () => ['--data', join(tmp, 'nonexistent'), '--out', join(tmp, 'r1')], /nonexistent: no such dataset folder$/],
    ['--out naming a file', () => ['--data', data, '--out', join(tmp, 'a-file')], /a-file: --out names a file; give a folder/],
  ])('%s is one line naming the path, and no run folder is left', async (_, args, message) => {
    writeFileSync(join(tmp, 'a-file'), 'x');
    const r = await runCli('alhvr-train', [...args(), '--iterations', '2', ...SMALL]);
    expect(r.code).toBe(1);
    const errors = stderrLines(r).filter((l) => l.includes('error'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(message);
    expect(existsSync(join(tmp, 'r1'))).toBe(false);
  });

  it('a run that fails at the start leaves no empty --out folder', async () => {
    const notDataset = join(tmp, 'not-a-dataset');
    mkdirSync(notDataset);
    const out = join(tmp, 'new', 'run');
    const r = await runCli('alhvr-train', ['--data', notDataset, '--out', out, '--iterations', '2', ...SMALL]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no dataset\.json/);
    expect(existsSync(join(tmp, 'new'))).toBe(false);
  });
});
