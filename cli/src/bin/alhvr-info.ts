// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { commandLine } from '../lib/command-line.js';
import { type ImageInfo, imageInfo } from '../lib/image-info.js';
import { formatImageInfo, formatSkipped } from '../lib/format-info.js';
import { expandInputs } from '../lib/inputs.js';
import { runCommand, throwIfCancelled } from '../lib/run-command.js';

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
  const { sources, skipped } = await expandInputs(paths, { signal });
  const images: ImageInfo[] = [];
  for (const source of sources) {
    throwIfCancelled(signal);
    const info = await imageInfo(source);
    images.push(info);
    if (!argv.json) process.stdout.write(`${images.length > 1 ? '\n' : ''}${formatImageInfo(info)}\n`);
  }
  if (argv.json) {
    const doc = { images, skipped: { count: skipped.length, files: skipped } };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else if (skipped.length > 0 && !argv.quiet) {
    process.stdout.write(`\n${formatSkipped(skipped, argv.verbose)}\n`);
  }
});
