// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { writePhantomDataset } from '@alhvr/core/node';
import { commandLine } from '../lib/command-line.js';
import { createProgress } from '../lib/progress.js';
import { UsageError, runCommand, throwIfCancelled } from '../lib/run-command.js';

const COMMAND = 'alhvr-phantom';

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    '--out DIR --cases N --seed S',
    'Write a synthetic cardiac MR dataset (images, labels, dataset.json) for trying the toolkit without ' +
      'patient data. The same seed always gives the same files.',
  )
    .option('out', { alias: 'o', type: 'string', demandOption: true, description: 'Folder to write the dataset into' })
    .option('cases', { type: 'number', demandOption: true, description: 'Number of cases (volumes) to generate' })
    .option('seed', { type: 'number', demandOption: true, description: 'Random seed (integer)' })
    .option('shift', {
      type: 'number',
      default: 0,
      description: 'Acquisition shift severity 0–2 (0 in-domain): stronger noise, bias field, blur and lower contrast, same anatomy as severity 0',
    })
    .demandCommand(0, 0, '', 'alhvr-phantom takes no positional arguments')
    .parseAsync();
  if (!Number.isInteger(argv.cases) || argv.cases < 1) throw new UsageError(`--cases must be a whole number ≥ 1, got ${String(argv.cases)}`);
  if (!Number.isSafeInteger(argv.seed)) throw new UsageError(`--seed must be an integer, got ${String(argv.seed)}`);
  if (!(argv.shift >= 0 && argv.shift <= 2)) throw new UsageError(`--shift must be in [0, 2], got ${String(argv.shift)}`);
  if (argv.out.trim() === '') throw new UsageError('--out must not be empty');
  if (signal.aborted) return;
  const progress = createProgress({ total: argv.cases, label: 'cases', quiet: argv.quiet });
  await writePhantomDataset(argv.out, {
    cases: argv.cases,
    seed: argv.seed,
    shift: argv.shift,
    onProgress: (done: number) => {
      progress.update(done);
      // Stop between cases: every case already written is complete (atomic writes).
      throwIfCancelled(signal);
    },
  });
  progress.finish();
  if (!argv.quiet) process.stdout.write(`wrote ${argv.cases} case(s) and dataset.json to ${argv.out}\n`);
});
