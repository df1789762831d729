// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { writeAbdomenCtDataset, writePhantomDataset } from '@alhvr/core/node';
import { commandLine } from '../lib/command-line.js';
import { createProgress } from '../lib/progress.js';
import { UsageError, runCommand, throwIfCancelled } from '../lib/run-command.js';

const COMMAND = 'alhvr-phantom';

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    '--out DIR --cases N --seed S [--kind abdomen-ct]',
    'Write a synthetic dataset (images, labels, dataset.json) for trying the toolkit without patient data: ' +
      'cardiac MR (ACDC labels, the default) or abdominal CT in HU (liver, kidney, spleen, pancreas). ' +
      'The same seed always gives the same files.',
  )
    .option('out', { alias: 'o', type: 'string', demandOption: true, description: 'Folder to write the dataset into' })
    .option('cases', { type: 'number', demandOption: true, description: 'Number of cases (volumes) to generate' })
    .option('seed', { type: 'number', demandOption: true, description: 'Random seed (integer)' })
    .option('shift', {
      type: 'number',
      default: 0,
      description:
        'Acquisition shift severity 0–2 (0 in-domain), same anatomy and labels as severity 0. cardiac-mr: stronger noise, bias ' +
        'field, blur and lower contrast; abdomen-ct: organ contrast pulled toward soft tissue, more blur, low-dose noise',
    })
    .option('kind', {
      choices: ['cardiac-mr', 'abdomen-ct'] as const,
      default: 'cardiac-mr' as const,
      description: 'What to generate: short-axis cardiac MR, or axial abdominal CT (0.6–0.9 mm pixels, 1.5–5 mm slices)',
    })
    .option('matrix', { type: 'number', description: 'abdomen-ct: in-plane voxels per side (default 512; smaller shrinks the body with the field of view)' })
    .option('body', {
      choices: ['fov', 'adult'] as const,
      default: 'fov' as const,
      description: 'abdomen-ct: "fov" keeps 0.6–0.9 mm pixels (a small --matrix images a small body); "adult" keeps the adult body of a 512 matrix at coarser pixels',
    })
    .option('dicom', { type: 'boolean', default: false, description: 'abdomen-ct: also write each image as a DICOM CT series under dicom/<case>/' })
    .demandCommand(0, 0, '', 'alhvr-phantom takes no positional arguments')
    .parseAsync();
  if (!Number.isInteger(argv.cases) || argv.cases < 1) throw new UsageError(`--cases must be a whole number ≥ 1, got ${String(argv.cases)}`);
  if (!Number.isSafeInteger(argv.seed)) throw new UsageError(`--seed must be an integer, got ${String(argv.seed)}`);
  if (!(argv.shift >= 0 && argv.shift <= 2)) throw new UsageError(`--shift must be in [0, 2], got ${String(argv.shift)}`);
  if (argv.out.trim() === '') throw new UsageError('--out must not be empty');
  const ct = argv.kind === 'abdomen-ct';
  if (!ct && (argv.matrix !== undefined || argv.dicom || argv.body !== 'fov')) throw new UsageError('--matrix, --body and --dicom apply to --kind abdomen-ct only');
  if (argv.matrix !== undefined && !(Number.isInteger(argv.matrix) && argv.matrix >= 32 && argv.matrix <= 1024)) {
    throw new UsageError(`--matrix must be a whole number in [32, 1024], got ${String(argv.matrix)}`);
  }
  if (signal.aborted) return;
  const progress = createProgress({ total: argv.cases, label: 'cases', quiet: argv.quiet });
  const onProgress = (done: number) => {
    progress.update(done);
    // Stop between cases: every case already written is complete (atomic writes).
    throwIfCancelled(signal);
  };
  if (ct) await writeAbdomenCtDataset(argv.out, { cases: argv.cases, seed: argv.seed, matrix: argv.matrix, body: argv.body, shift: argv.shift, dicom: argv.dicom, onProgress });
  else await writePhantomDataset(argv.out, { cases: argv.cases, seed: argv.seed, shift: argv.shift, onProgress });
  progress.finish();
  if (!argv.quiet) process.stdout.write(`wrote ${argv.cases} case(s) and dataset.json to ${argv.out}\n`);
});
