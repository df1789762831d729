// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { commandLine } from '../lib/command-line.js';
import { type ImageInfo, imageInfo } from '../lib/image-info.js';
import { formatImageInfo, formatSkipped } from '../lib/format-info.js';
import { expandInputs, type ImageSource, type SkippedFile } from '../lib/inputs.js';
import { resolve } from 'node:path';
import { errorLine, EXIT_FAILURE, runCommand, throwIfCancelled } from '../lib/run-command.js';

const COMMAND = 'alhvr-info';

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    'PATH... [--json]',
    'Describe NIfTI files and DICOM series: dimensions, spacing, affine (voxel → RAS+ mm), datatype, ' +
      'intensity range and geometry warnings. Folders are searched recursively; DICOM files are grouped into series.',
  )
    .option('json', { type: 'boolean', default: false, description: 'Print one JSON document {"images": [...], "skipped": {...}} on stdout' })
    .demandCommand(1, 'give at least one PATH')
    .parseAsync();
  const paths = argv._.map(String);
  // One unreadable file does not hide the others: each failure is its own error line (and an
  // entry of "errors" in --json), the rest is listed, and the exit code says something failed.
  const errors: { path: string; error: string }[] = [];
  const fail = (path: string, err: unknown) => {
    throwIfCancelled(signal);
    const line = errorLine(COMMAND, err);
    errors.push({ path, error: line.slice(`${COMMAND}: error: `.length) });
    process.stderr.write(`${line}\n`);
    if (argv.verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  };
  const sources: ImageSource[] = [];
  const skipped: SkippedFile[] = [];
  const seen = new Set<string>();
  for (const path of paths) {
    throwIfCancelled(signal);
    try {
      const found = await expandInputs([path], { signal });
      for (const source of found.sources) {
        const key = source.kind === 'nifti' ? resolve(source.path) : `${source.series.id}|${source.series.files.join('|')}`;
        if (!seen.has(key)) sources.push(source);
        seen.add(key);
      }
      skipped.push(...found.skipped);
    } catch (err) {
      fail(path, err);
    }
  }
  const images: ImageInfo[] = [];
  for (const source of sources) {
    throwIfCancelled(signal);
    let info: ImageInfo;
    try {
      info = await imageInfo(source);
    } catch (err) {
      fail(source.kind === 'nifti' ? source.path : source.series.files[0], err);
      continue;
    }
    images.push(info);
    if (!argv.json) process.stdout.write(`${images.length > 1 ? '\n' : ''}${formatImageInfo(info)}\n`);
  }
  if (argv.json && (images.length > 0 || errors.length === 0)) {
    const doc = { images, skipped: { count: skipped.length, files: skipped }, ...(errors.length ? { errors } : {}) };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else if (!argv.json && skipped.length > 0 && !argv.quiet) {
    process.stdout.write(`\n${formatSkipped(skipped, argv.verbose)}\n`);
  }
  return errors.length > 0 ? EXIT_FAILURE : 0;
});
