#!/usr/bin/env node
// Bundle the viewer demo into one static folder (with .gz copies): index.html, main.js, worker.js and its
// DICOM codec chunks, ONNX Runtime's and the codecs' wasm files, and (when given or shipped) model.onnx.
// Serve the folder from any static HTTP server.
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const viewerDir = fileURLToPath(new URL('..', import.meta.url));
const repoDir = resolve(viewerDir, '..');
export const DEFAULT_OUT_DIR = join(viewerDir, 'dist', 'demo');
export const SHIPPED_MODEL = join(repoDir, 'models', 'alhvr-default.onnx');
/** Runtime files of onnxruntime-web's wasm and WebGPU builds (ORT_WASM_FILES and ORT_WEBGPU_FILES in viewer/src/load-model.ts). */
const ORT_FILES = [
  'ort-wasm-simd-threaded.mjs',
  'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.asyncify.mjs',
  'ort-wasm-simd-threaded.asyncify.wasm',
];

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
      // dcmjs-codecs carries its own older dcmjs, which its decoders never call: it gets core's
      // copy, and the same (ESM) file of it that core imports, so the worker holds one dcmjs, not two.
      const fromCodecs = args.path === 'dcmjs' && /[\\/]dcmjs-codecs[\\/]/.test(args.importer);
      const resolved = await b.resolve(args.path, {
        kind: fromCodecs ? 'import-statement' : args.kind,
        importer: args.importer,
        resolveDir: fromCodecs ? join(repoDir, 'core') : args.resolveDir,
        pluginData: 'resolving',
      });
      return resolved.errors.length ? { errors: resolved.errors } : { path: resolved.path, sideEffects: false };
    });
  },
};

// Compressed-DICOM codecs, which core imports on first use: Emscripten/WASI builds that fetch their
// .wasm from the worker's own folder (CODEC_WASM_FILES, copied there). Their Node branches call
// require('fs'/'path'), which never runs in a browser: those resolve to an empty module.
const nodeOnlyBuiltins = {
  name: 'alhvr-node-only-builtins',
  setup(b) {
    b.onResolve({ filter: /^(fs|path)$/ }, (args) => ({ path: args.path, namespace: 'alhvr-empty' }));
    b.onLoad({ filter: /.*/, namespace: 'alhvr-empty' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

/** Codec wasm files the worker fetches next to worker.js, by package (subpath export). */
const CODEC_WASM_FILES = [
  '@cornerstonejs/codec-openjpeg/decodewasm',
  '@cornerstonejs/codec-charls/decodewasm',
  '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm',
  'dcmjs-codecs/build/dcmjs-native-codecs.wasm',
];

/**
 * Build the demo into `outDir` (emptied first). `model`: .onnx file copied as model.onnx; default
 * the shipped models/alhvr-default.onnx when it exists; `null` for a page that asks for a model.
 * `compress: false` skips the .gz copies (most of the build's time: 40 MB of ONNX Runtime wasm).
 */
export async function buildDemo({ outDir = DEFAULT_OUT_DIR, model, minify = true, compress = true } = {}) {
  const modelFile = model === undefined ? (existsSync(SHIPPED_MODEL) ? SHIPPED_MODEL : null) : model;
  if (modelFile && !existsSync(modelFile)) throw new Error(`model ${modelFile} does not exist`);
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const common = {
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    // ORT's build that loads its wasm glue from env.wasm.wasmPaths instead of inlining it.
    conditions: ['onnxruntime-web-use-extern-wasm'],
    plugins: [workspaceSources, treeShakeDicom, nodeOnlyBuiltins],
    minify,
    sourcemap: true,
    logLevel: 'silent',
  };
  // The page (main.js) and its segmentation worker (worker.js, loaded by main.js from its own
  // folder). The worker is split so that each DICOM codec is a chunk (chunks/) it loads only when a
  // series needs it: an uncompressed series or a NIfTI file never downloads them.
  await build({ ...common, entryPoints: [join(viewerDir, 'demo', 'main.ts')] });
  await build({ ...common, entryPoints: [join(viewerDir, 'demo', 'worker.ts')], splitting: true, chunkNames: 'chunks/[name]-[hash]' });
  const require = createRequire(join(viewerDir, 'package.json'));
  const ortDist = dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
  await Promise.all([
    copyFile(join(viewerDir, 'demo', 'index.html'), join(outDir, 'index.html')),
    ...ORT_FILES.map((f) => copyFile(join(ortDist, f), join(outDir, f))),
    // core depends on the codec packages: resolve them as core does.
    ...CODEC_WASM_FILES.map((spec) => {
      const file = createRequire(join(repoDir, 'core', 'package.json')).resolve(spec);
      return copyFile(file, join(outDir, basename(file)));
    }),
    ...(modelFile ? [copyFile(modelFile, join(outDir, 'model.onnx'))] : []),
  ]);
  if (!compress) return { outDir, model: modelFile };
  // Pre-compressed copies for servers that send them when the browser accepts gzip (nginx
  // gzip_static, Caddy precompressed, …): the wasm shrinks about 4×. Plain servers ignore them.
  const gzipAsync = promisify(gzip);
  const compressible = (await readdir(outDir, { recursive: true })).filter((f) => /\.(wasm|mjs|js|onnx|html)$/.test(f));
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
