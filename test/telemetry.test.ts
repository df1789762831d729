// "Nothing leaves the machine": onnxruntime-node's telemetry must be off in every process of ours
// that loads it, whatever the caller's environment says, and a run must write nothing to $HOME.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writePhantomDataset } from '@alhvr/core/node';
import { cliPath } from './cli-harness.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const COMMANDS = ['alhvr-info', 'alhvr-convert', 'alhvr-phantom', 'alhvr-train', 'alhvr-export', 'alhvr-segment', 'alhvr-eval'];
let dir: string;
let hook: string;

/** The caller's environment at its most hostile: telemetry explicitly asked for, no XDG cache. */
function callerEnv(home: string, record?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ORT_DISABLE_TELEMETRY: '0' };
  delete env.XDG_CACHE_HOME;
  if (record) env.ALHVR_TEST_DLOPEN_RECORD = record;
  return env;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-telemetry-'));
  // Preloaded into the process under test: records ORT_DISABLE_TELEMETRY at the moment the
  // onnxruntime-node binding is loaded (the native library reads it when it initialises).
  hook = join(dir, 'dlopen-hook.cjs');
  writeFileSync(
    hook,
    `const fs = require('node:fs');
const dlopen = process.dlopen;
process.dlopen = function (module, filename, ...rest) {
  if (String(filename).includes('onnxruntime_binding')) fs.appendFileSync(process.env.ALHVR_TEST_DLOPEN_RECORD, String(process.env.ORT_DISABLE_TELEMETRY) + '\\n');
  return dlopen.call(this, module, filename, ...rest);
};
`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function envAtOrtLoad(args: string[], name: string): string[] {
  const record = join(dir, `${name}.record`);
  writeFileSync(record, '');
  const home = join(dir, `home-${name}`);
  mkdirSync(home);
  const r = spawnSync(process.execPath, ['--require', hook, ...args], { cwd: root, env: callerEnv(home, record), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(record, 'utf8').split('\n').filter(Boolean);
}

describe('ORT_DISABLE_TELEMETRY is 1 when onnxruntime-node loads', () => {
  test.each(COMMANDS)('%s (built command)', (command) => {
    const seen = envAtOrtLoad([cliPath(command), '--help'], command);
    // The commands that run ONNX Runtime must load it here, or this test would prove nothing.
    if (command === 'alhvr-segment' || command === 'alhvr-export') expect(seen).not.toEqual([]);
    expect(seen.every((v) => v === '1'), `${command}: ${seen.join(',')}`).toBe(true);
  });

  test('@alhvr/inference/node imported by another program', () => {
    const seen = envAtOrtLoad(['--input-type=module', '-e', "import '@alhvr/inference/node';"], 'library');
    expect(seen).toEqual(['1']);
  });

  test('built files: every command imports the guard first; inference loads onnxruntime-node in one module, after the guard', () => {
    for (const command of COMMANDS) {
      const js = readFileSync(join(root, 'cli', 'dist', 'bin', `${command}.js`), 'utf8');
      const firstImport = /^import\s[^;]*;/m.exec(js)?.[0];
      expect(firstImport, command).toBe("import '@alhvr/inference/no-telemetry';");
    }
    // Bench scripts that reach onnxruntime-node other than through @alhvr/inference/node.
    for (const f of readdirSync(join(root, 'bench')).filter((f) => f.endsWith('.ts'))) {
      const ts = readFileSync(join(root, 'bench', f), 'utf8');
      if (!/from '(@alhvr\/export|onnxruntime-node)'/.test(ts)) continue;
      expect(/^import\s[^;]*;/m.exec(ts)?.[0], `bench/${f}`).toBe("import '@alhvr/inference/no-telemetry';");
    }
    const dist = join(root, 'inference', 'dist');
    const loaders = readdirSync(dist).filter((f) => f.endsWith('.js') && /from 'onnxruntime-node'|import\('onnxruntime-node'\)|require\('onnxruntime-node'\)/.test(readFileSync(join(dist, f), 'utf8')));
    expect(loaders).toEqual(['ort-node.js']);
    const ortNode = readFileSync(join(dist, 'ort-node.js'), 'utf8');
    expect(ortNode.indexOf("import './no-telemetry.js';")).toBeGreaterThanOrEqual(0);
    expect(ortNode.indexOf("import './no-telemetry.js';")).toBeLessThan(ortNode.indexOf("'onnxruntime-node'"));
  });
});

test('alhvr-segment on a phantom writes nothing under a fresh $HOME', async () => {
  const data = join(dir, 'data');
  await writePhantomDataset(data, { cases: 1, seed: 3 });
  const home = join(dir, 'home-segment');
  mkdirSync(home);
  const out = join(dir, 'seg');
  const r = spawnSync(process.execPath, [cliPath('alhvr-segment'), join(data, 'imagesTr'), '--out', out, '--quiet'], { cwd: dir, env: callerEnv(home), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(readdirSync(out)).toContain('summary.csv');
  expect(readdirSync(home, { recursive: true })).toEqual([]);
});
