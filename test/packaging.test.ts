// The packages install outside this repository: `npm pack` every publishable workspace, install
// the tarballs into a fresh project (no workspace links, no repository .npmrc or allowScripts, only
// the npm registry and its cache), run the installed alhvr-segment on a phantom and bundle
// @alhvr/viewer with esbuild. A file missing from a tarball, an undeclared dependency, a workspace
// dependency at another version or an install script that needs the network fails here.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { generatePhantomCase, TOOLKIT_VERSION } from '@alhvr/core';
import { writeNiftiFile } from '@alhvr/core/node';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface PackageJson {
  name: string;
  version: string;
  private?: boolean;
  main?: string;
  types?: string;
  bin?: Record<string, string>;
  exports?: unknown;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;
const rootPkg = readJson<{ workspaces: string[] }>(join(ROOT, 'package.json'));
const workspaces = rootPkg.workspaces.map((dir) => ({ dir, pkg: readJson<PackageJson>(join(ROOT, dir, 'package.json')) }));
const published = workspaces.filter((w) => !w.pkg.private);
/** Internal by design: the integration tests (with third-party test files) and the benchmarks. */
const INTERNAL = ['test', 'bench'];

/** Files a tarball must hold: manifest, licence, notices, and whatever main/types/exports/bin name. */
export function requiredFiles(pkg: PackageJson): string[] {
  const files = new Set(['package.json', 'LICENSE', 'NOTICE']);
  const add = (p: unknown) => {
    if (typeof p === 'string') files.add(p.replace(/^\.\//, ''));
    else if (p && typeof p === 'object') Object.values(p).forEach(add);
  };
  add(pkg.main);
  add(pkg.types);
  add(pkg.bin);
  add(pkg.exports);
  return [...files].sort();
}

/** Every file of the package's build output (what its files list promises), without tests and the viewer demo. */
function distFiles(dir: string): string[] {
  const base = join(ROOT, dir);
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? (e.name === 'demo' ? [] : walk(join(d, e.name))) : [relative(base, join(d, e.name)).split(sep).join('/')]));
  return existsSync(join(base, 'dist')) ? walk(join(base, 'dist')).filter((f) => !/\.test\./.test(f)) : [];
}

/** Bare module specifiers a built file imports (static, dynamic, re-exports), as package names. */
function importedPackages(js: string): string[] {
  const names = new Set<string>();
  for (const m of js.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|(?<!\()\bimport\s+|\brequire(?:\.resolve)?\(\s*)['"]([^'"./][^'"]*)['"]/g)) {
    const spec = m[1];
    if (spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0])) continue;
    names.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
  }
  return [...names];
}

/** The environment of a user's shell: none of this repository's npm settings, bins or runtime switches. */
function userEnv(home?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'INIT_CWD' || k === 'ALHVR_ORT_RUNTIME' || k.startsWith('VITEST') || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '').split(delimiter).filter((p) => !p.startsWith(ROOT)).join(delimiter);
  if (home) env.HOME = home;
  return env;
}

describe('package manifests', () => {
  test('every workspace but test and bench is published, at TOOLKIT_VERSION, with workspace dependencies at exactly that version', () => {
    expect(workspaces.filter((w) => w.pkg.private).map((w) => w.dir).sort()).toEqual([...INTERNAL].sort());
    expect(published.map((w) => w.pkg.name).sort()).toEqual(['@alhvr/cli', '@alhvr/core', '@alhvr/export', '@alhvr/inference', '@alhvr/models', '@alhvr/training', '@alhvr/viewer']);
    for (const { pkg } of published) {
      expect(pkg.version, pkg.name).toBe(TOOLKIT_VERSION);
      for (const [dep, range] of Object.entries({ ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies })) {
        if (dep.startsWith('@alhvr/')) expect({ pkg: pkg.name, dep, range }).toEqual({ pkg: pkg.name, dep, range: TOOLKIT_VERSION });
      }
    }
    expect(readJson<PackageJson>(join(ROOT, 'cli', 'package.json')).dependencies?.['@alhvr/models'], 'the CLI ships the default model').toBe(TOOLKIT_VERSION);
  });

  test('every package a built file imports is declared as a dependency of its package', () => {
    for (const { dir, pkg } of published) {
      const declared = new Set([pkg.name, ...Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies })]);
      const files = [...distFiles(dir), ...Object.values(pkg.bin ?? {}).map((b) => b.replace(/^\.\//, ''))].filter((f) => f.endsWith('.js'));
      const undeclared = files.flatMap((f) => importedPackages(readFileSync(join(ROOT, dir, f), 'utf8')).filter((p) => !declared.has(p)).map((p) => `${dir}/${f}: ${p}`));
      expect(undeclared, pkg.name).toEqual([]);
    }
  });

  test('the tarball check names a missing file', () => {
    const pkg: PackageJson = { name: 'x', version: '1.0.0', exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } }, bin: { x: './bin/x.js' } };
    const tarball = ['package.json', 'LICENSE', 'NOTICE', 'dist/index.js', 'bin/x.js'];
    expect(requiredFiles(pkg).filter((f) => !tarball.includes(f))).toEqual(['dist/index.d.ts']);
  });

  test('LICENSE at the root and in every package is the Apache-2.0 text', () => {
    for (const dir of ['.', ...published.map((w) => w.dir)]) {
      const text = readFileSync(join(ROOT, dir, 'LICENSE'), 'utf8');
      expect(text, dir).toMatch(/Apache License\s+Version 2\.0, January 2004/);
      expect(text, dir).toMatch(/END OF TERMS AND CONDITIONS/);
      expect(readFileSync(join(ROOT, dir, 'NOTICE'), 'utf8'), dir).toMatch(/Apache License, Version 2\.0/);
    }
  });
});

describe('npm pack → npm install in a fresh project → run', () => {
  let tmp: string;
  let project: string;
  let tarballs: { name: string; filename: string; files: { path: string }[]; size: number }[] = [];
  let installed: ReturnType<typeof spawnSync>;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'alhvr-packaging-'));
    const packDir = join(tmp, 'tarballs');
    mkdirSync(packDir);
    // --ignore-scripts: the build is pretest's `tsc -b`; packing must not rebuild the repository.
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir, ...published.flatMap((w) => ['-w', w.dir])], { cwd: ROOT, env: userEnv(), encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    tarballs = JSON.parse(pack.stdout) as typeof tarballs;

    project = join(tmp, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'alhvr-consumer', version: '1.0.0', private: true, type: 'module' }, null, 2));
    // The registry with the user's npm cache (--prefer-offline: cached metadata is not revalidated);
    // nothing from this repository but the tarballs.
    installed = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs.map((t) => join(packDir, t.filename))], {
      cwd: project,
      env: userEnv(),
      encoding: 'utf8',
      timeout: 240_000,
    });
  }, 300_000);

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  // The models package holds its list of shipped models and every file the list names.
  const shippedFiles = () => ['shipped.json', ...Object.values(readJson<Record<string, { file: string }>>(join(ROOT, 'models', 'shipped.json'))).map((m) => m.file)];

  test('each tarball holds its build, LICENSE, NOTICE and every file its manifest names; no sources, no tests', () => {
    expect(tarballs.map((t) => t.name).sort()).toEqual(published.map((w) => w.pkg.name).sort());
    for (const { dir, pkg } of published) {
      const tarball = tarballs.find((t) => t.name === pkg.name)!;
      const files = tarball.files.map((f) => f.path);
      const needed = [...requiredFiles(pkg), ...distFiles(dir), ...(dir === 'models' ? shippedFiles() : [])];
      expect(needed.filter((f) => !files.includes(f)), `${pkg.name}: missing from the tarball`).toEqual([]);
      expect(files.filter((f) => /^src\/|\.test\.|^dist\/demo\/|tsbuildinfo/.test(f)), pkg.name).toEqual([]);
    }
    // The shipped models travel in their own package: the cardiac default (3.6 MB on disk) and
    // the abdominal CT model (9.5 MB, float16-stored weights); weights barely compress.
    const models = tarballs.find((t) => t.name === '@alhvr/models')!;
    expect(models.size).toBeGreaterThan(10e6);
    expect(models.size).toBeLessThan(15e6);
  });

  test('npm install of the tarballs succeeds with nothing but the registry; packages are copies, not links', () => {
    expect(installed.error, String(installed.error)).toBeUndefined();
    expect(installed.status, `${String(installed.stdout)}\n${String(installed.stderr)}`).toBe(0);
    for (const { pkg } of published) {
      const where = realpathSync(join(project, 'node_modules', ...pkg.name.split('/')));
      expect(where.startsWith(realpathSync(project) + sep), `${pkg.name} → ${where}`).toBe(true);
    }
  });

  test('the installed alhvr-segment segments a phantom NIfTI with the default model', async () => {
    expect(installed.status).toBe(0);
    const input = join(project, 'in');
    mkdirSync(input);
    const { image } = generatePhantomCase({ seed: 31, index: 0 });
    await writeNiftiFile(join(input, 'phantom.nii.gz'), image);
    const home = join(tmp, 'home');
    mkdirSync(home);
    const r = spawnSync(join(project, 'node_modules', '.bin', 'alhvr-segment'), ['in', '--out', 'seg', '--quiet'], { cwd: project, env: userEnv(home), encoding: 'utf8', timeout: 120_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(existsSync(join(project, 'seg', 'phantom', 'mask.nii.gz'))).toBe(true);
    const summary = readFileSync(join(project, 'seg', 'summary.csv'), 'utf8').trim().split('\n');
    expect(summary).toHaveLength(2);
    expect(summary[1]).toMatch(/^phantom,ok,/);
    // Without onnxruntime-node (its CUDA download failed, so npm left the optional package out)
    // the WebAssembly fallback runs and says so once; with it, nothing is said.
    const native = existsSync(join(project, 'node_modules', 'onnxruntime-node', 'package.json'));
    expect((r.stderr.match(/running ONNX Runtime's WebAssembly build/g) ?? []).length, r.stderr).toBe(native ? 0 : 1);
  }, 150_000);

  test('on the WebAssembly fallback, --device cuda fails naming how to install the CUDA provider', () => {
    expect(installed.status).toBe(0);
    const r = spawnSync(join(project, 'node_modules', '.bin', 'alhvr-segment'), ['in', '--out', 'seg-cuda', '--device', 'cuda'], {
      cwd: project,
      env: { ...userEnv(join(tmp, 'home')), ALHVR_ORT_RUNTIME: 'web' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/--device cuda: ONNX Runtime runs its WebAssembly build \(ALHVR_ORT_RUNTIME=web\); .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    expect((r.stderr.match(/running ONNX Runtime's WebAssembly build/g) ?? []).length, r.stderr).toBe(1);
  });

  test('@alhvr/viewer bundles with esbuild for the browser and exports loadModel and segmentNifti', async () => {
    expect(installed.status).toBe(0);
    writeFileSync(join(project, 'entry.js'), "export { loadModel, segmentNifti, segmentDicom, SliceRenderer, ORT_WASM_FILES } from '@alhvr/viewer';\n");
    // The settings viewer/README.md and the demo use: ORT's build with external wasm files; the
    // compressed-DICOM codecs (Node-flavoured Emscripten builds, loaded lazily) left out.
    const result = await build({
      absWorkingDir: project,
      entryPoints: ['entry.js'],
      outfile: 'bundle/main.js',
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      conditions: ['onnxruntime-web-use-extern-wasm'],
      external: ['@cornerstonejs/*', 'dcmjs-codecs'],
      metafile: true,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const output = result.metafile.outputs['bundle/main.js'];
    expect(output.exports).toEqual(expect.arrayContaining(['loadModel', 'segmentNifti', 'segmentDicom', 'SliceRenderer']));
    const inputs = Object.keys(result.metafile.inputs);
    // Bundled from the installed packages, never from the repository's sources.
    expect(inputs.some((i) => i.startsWith('node_modules/@alhvr/viewer/dist/'))).toBe(true);
    expect(inputs.filter((i) => !/^(node_modules\/|\(disabled\):)/.test(i) && i !== 'entry.js')).toEqual([]);
    expect(inputs.some((i) => i.includes('onnxruntime-node'))).toBe(false);
    for (const f of ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) expect(existsSync(join(project, 'node_modules', 'onnxruntime-web', 'dist', f)), f).toBe(true);
  });
});
