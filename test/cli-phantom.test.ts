import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNiftiIndependently, runCli, stderrLines } from './cli-harness.js';

const tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-phantom-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

describe('alhvr-phantom', () => {
  it('writes N cases with labels and a dataset.json, reporting progress', async () => {
    const out = join(tmp, 'ds');
    const result = await runCli('alhvr-phantom', ['--out', out, '--cases', '2', '--seed', '7']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/\[2\/2\] 100%/);
    const dataset = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')) as {
      numTraining: number;
      labels: Record<string, number>;
      file_ending: string;
    };
    expect(dataset.numTraining).toBe(2);
    const images = readdirSync(join(out, 'imagesTr')).sort();
    const labels = readdirSync(join(out, 'labelsTr')).sort();
    expect(images).toHaveLength(2);
    expect(labels).toHaveLength(2);
    const allowed = new Set(Object.values(dataset.labels));
    for (let n = 0; n < 2; n++) {
      expect(images[n].endsWith(`_0000${dataset.file_ending}`)).toBe(true);
      const image = readNiftiIndependently(join(out, 'imagesTr', images[n]));
      const label = readNiftiIndependently(join(out, 'labelsTr', labels[n]));
      expect(label.header.dims.slice(1, 4)).toEqual(image.header.dims.slice(1, 4));
      for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) expect(label.affine[r][c]).toBeCloseTo(image.affine[r][c], 5);
      const present = new Set(label.values);
      for (const v of present) expect(allowed.has(v)).toBe(true);
      expect(present.size).toBeGreaterThan(1);
      expect(Math.max(...image.values.slice(0, 100000)) > Math.min(...image.values.slice(0, 100000))).toBe(true);
    }
  });

  it('gives identical files for the same seed and different ones for another', async () => {
    const a = join(tmp, 'seed-a');
    const b = join(tmp, 'seed-b');
    const c = join(tmp, 'seed-c');
    const runs = await Promise.all(
      [
        [a, '11'],
        [b, '11'],
        [c, '12'],
      ].map(([out, seed]) => runCli('alhvr-phantom', ['--out', out, '--cases', '1', '--seed', seed, '--quiet'])),
    );
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(runs.map((r) => r.stdout + r.stderr)).toEqual(['', '', '']);
    // Voxels, not file bytes: a gzip header carries its write time.
    const file = join('imagesTr', readdirSync(join(a, 'imagesTr'))[0]);
    const [va, vb, vc] = [a, b, c].map((d) => readNiftiIndependently(join(d, file)).values);
    expect(va.length).toBe(vb.length);
    expect(va.every((v, n) => v === vb[n])).toBe(true);
    expect(va.length === vc.length && va.every((v, n) => v === vc[n])).toBe(false);
  });

  it('refuses a non-empty output folder with one line and leaves it as it was', async () => {
    const out = join(tmp, 'occupied');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'mine');
    const result = await runCli('alhvr-phantom', ['--out', out, '--cases', '1', '--seed', '1']);
    expect(result.code).toBe(1);
    expect(stderrLines(result)).toHaveLength(1);
    expect(stderrLines(result)[0]).toContain('occupied');
    expect(listTree(out)).toEqual(['keep.txt']);
  });

  it('stops on Ctrl-C with exit code 130 and leaves no partial dataset', async () => {
    const parent = join(tmp, 'interrupted');
    mkdirSync(parent);
    const out = join(parent, 'ds');
    let sent = false;
    const result = await runCli('alhvr-phantom', ['--out', out, '--cases', '500', '--seed', '3'], {
      // Interrupt once the first case is done, i.e. in the middle of the run.
      onStderr: (chunk, child) => {
        if (!sent && /\[1\/500\]/.test(chunk)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    });
    expect(sent).toBe(true);
    expect(result.code).toBe(130);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });
});
