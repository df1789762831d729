#!/usr/bin/env node
// Bundle the viewer demo into one static folder (with .gz copies): index.html, main.js, worker.js, ONNX Runtime's wasm files
// and (when given or shipped) model.onnx. Serve the folder from any static HTTP server.
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const viewerDir = fileURLToPath(new URL('..', import.meta.url));
const repoDir = resolve(viewerDir, '..');
export const DEFAULT_OUT_DIR = join(viewerDir, 'dist', 'demo');
export const SHIPPED_MODEL = join(repoDir, 'models', 'alhvr-default.onnx');
/** Runtime files loaded by onnxruntime-web's wasm backend (must match viewer/src/load-model.ts). */
const ORT_WASM_FILES = ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

// Bundle the workspace packages from their TypeScript sources, so the demo never uses a stale dist/.
const workspaceSources = {
  name: 'alhvr-workspace-sources',
  setup(b) {
    b.onResolve({ filter: /^@alhvr\/(core|inference)$/ }, (args) => ({ path: join(repoDir, args.path.slice('@alhvr/'.length), 'src', 'index.ts') }));
  },
};

// core's DICOM readers and writers load these CommonJS packages at module level; declaring them
// free of side effects lets the bundler drop them when (as in the demo) nothing calls into them.
const DICOM_PACKAGES = /^(dcmjs|dicom-parser|jpeg-lossless-decoder-js)$/;
const treeShakeDicom = {
  name: 'alhvr-tree-shake-dicom',
  setup(b) {
    b.onResolve({ filter: DICOM_PACKAGES }, async (args) => {
      if (args.pluginData === 'resolving') return undefined;
      const resolved = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: 'resolving' });
      return resolved.errors.length ? { errors: resolved.errors } : { path: resolved.path, sideEffects: false };
    });
  },
};

// Compressed-DICOM codecs (lazy imports in core; Node-flavoured Emscripten builds) are not bundled:
// each resolves to a module that fails with a one-line explanation instead of a module error.
const codecsUnavailable = {
  name: 'alhvr-codecs-unavailable',
  setup(b) {
    b.onResolve({ filter: /^(@cornerstonejs\/|dcmjs-codecs$)/ }, () => ({ path: join(viewerDir, 'demo', 'codec-unavailable.ts') }));
  },
};

/**
 * Build the demo into `outDir` (emptied first). `model`: .onnx file copied as model.onnx; default
 * the shipped models/alhvr-default.onnx when it exists; `null` for a page that asks for a model.
 */
export async function buildDemo({ outDir = DEFAULT_OUT_DIR, model, minify = true } = {}) {
  const modelFile = model === undefined ? (existsSync(SHIPPED_MODEL) ? SHIPPED_MODEL : null) : model;
  if (modelFile && !existsSync(modelFile)) throw new Error(`model ${modelFile} does not exist`);
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  await build({
    // The page (main.js) and its segmentation worker (worker.js, loaded by main.js from its own folder).
    entryPoints: [join(viewerDir, 'demo', 'main.ts'), join(viewerDir, 'demo', 'worker.ts')],
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    // ORT's build that loads its wasm glue from env.wasm.wasmPaths instead of inlining it.
    conditions: ['onnxruntime-web-use-extern-wasm'],
    plugins: [workspaceSources, treeShakeDicom, codecsUnavailable],
    minify,
    sourcemap: true,
    logLevel: 'silent',
  });
  const require = createRequire(join(viewerDir, 'package.json'));
  const ortDist = dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
  await Promise.all([
    copyFile(join(viewerDir, 'demo', 'index.html'), join(outDir, 'index.html')),
    ...ORT_WASM_FILES.map((f) => copyFile(join(ortDist, f), join(outDir, f))),
    ...(modelFile ? [copyFile(modelFile, join(outDir, 'model.onnx'))] : []),
  ]);
  // Pre-compressed copies for servers that send them when the browser accepts gzip (nginx
  // gzip_static, Caddy precompressed, …): the wasm shrinks about 4×. Plain servers ignore them.
  const gzipAsync = promisify(gzip);
  const compressible = (await readdir(outDir)).filter((f) => /\.(wasm|mjs|js|onnx|html)$/.test(f));
  await Promise.all(compressible.map(async (f) => writeFile(join(outDir, `${f}.gz`), await gzipAsync(await readFile(join(outDir, f)), { level: 9 }))));
  return { outDir, model: modelFile };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, model: { type: 'string' }, 'no-model': { type: 'boolean' } } });
  const t0 = performance.now();
  buildDemo({ outDir: values.out && resolve(values.out), model: values['no-model'] ? null : values.model && resolve(values.model) })
    .then(({ outDir, model }) => {
      const note = model ? `with model ${model}` : 'without a model (the page asks for one)';
      console.log(`viewer demo → ${outDir} ${note} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    })
    .catch((err) => {
      console.error(`build-demo: ${err.message}`);
      process.exitCode = 1;
    });
}
