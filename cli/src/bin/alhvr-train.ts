// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { access, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { InputError } from '@alhvr/core';
import { BACKEND_CHOICES, DEFAULT_CONFIG, NETWORKS, THREE_D_DEFAULTS, isDicomwebSource, resolveConfig, train, type TrainConfig } from '@alhvr/training';
import { commandLine } from '../lib/command-line.js';
import { PSEUDO_DICOMWEB_OPTIONS, checkDicomwebUrl, parseDicomwebAccess } from '../lib/dicomweb.js';
import { firstMissingFolder, removeEmptyFolders, requireFolder, requireWritableFolderPath } from '../lib/folders.js';
import { createProgress } from '../lib/progress.js';
import { UsageError, runCommand } from '../lib/run-command.js';
import { writeProgressPlot } from '../lib/plots/training-progress.js';

const COMMAND = 'alhvr-train';

function parseBatch(text: string): { batchLabeled: number; batchUnlabeled: number } {
  const m = /^(\d+)\+(\d+)$/.exec(text.trim());
  if (!m) throw new UsageError(`--batch must look like L+U (e.g. 8+8), got "${text}"`);
  return { batchLabeled: Number(m[1]), batchUnlabeled: Number(m[2]) };
}

function parseWidths(text: string): number[] {
  const widths = text.split(',').map((s) => Number(s.trim()));
  if (widths.length !== 5 || !widths.every((w) => Number.isInteger(w) && w > 0)) throw new UsageError(`--widths needs five positive integers, got "${text}"`);
  return widths;
}

/** The config a run folder saved when it started (config.json), if it has one. */
async function readSavedConfig(out: string): Promise<Partial<TrainConfig>> {
  const path = join(out, 'config.json');
  try {
    await access(path);
  } catch {
    return {};
  }
  return readConfigFile(path);
}

async function readConfigFile(path: string): Promise<Partial<TrainConfig>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read config (${(err as NodeJS.ErrnoException).code})`, path);
  }
  try {
    const value = JSON.parse(text);
    // A run's config.json nests the resolved config under "config"; accept either form.
    return (value.config ?? value) as Partial<TrainConfig>;
  } catch (err) {
    throw new InputError(`not valid JSON (${(err as Error).message})`, path);
  }
}

await runCommand(COMMAND, async (args, { signal }) => {
  const d = DEFAULT_CONFIG;
  const argv = await commandLine(
    COMMAND,
    args,
    '--data DIR --out RUN_DIR [options]',
    // Paragraphs only (no hard line breaks): yargs wraps them to the terminal, so they stay aligned.
    'Train two ALHVR students (semi-supervised: few labelled, many unlabeled scans). Defaults are the ' +
      'published ACDC recipe (30 000 iterations, batch 8+8 labelled+unlabeled slices, 256², widths 16..256); on a CPU start with ' +
      'smaller --patch, --widths and --batch. Writes RUN_DIR/config.json, metrics.jsonl, progress.png/.svg (redrawn at each validation) and the ' +
      'checkpoints latest.ckpt, best-a.ckpt and best-b.ckpt. Ctrl-C or SIGTERM saves latest.ckpt; --resume continues. ' +
      '3D: --network vnet3d trains the released VNet on cube crops of volumes resampled to the config\'s preprocessing.targetSpacing ' +
      '(a CT dataset gets nnU-Net\'s CT normalisation, measured on the labelled cases); models/recipes/alhvr-abdomen-ct.train.json is a CPU recipe.',
  )
    .option('data', { type: 'string', description: 'Dataset folder (nnU-Net raw layout, or SSL4MIS ACDC or BraTS 2019 HDF5 layout) [required, here or in --config]' })
    .option('out', { type: 'string', description: 'Run folder for config, metrics and checkpoints (created if missing) [required, here or in --config]' })
    .option('config', { type: 'string', description: 'JSON file with any of the settings below (command-line options win)' })
    .option('network', { choices: NETWORKS, description: `unet2d (2D U-Net on slices) or vnet3d (the released 3D VNet on ${THREE_D_DEFAULTS.patch}³ crops, batch ${THREE_D_DEFAULTS.batchLabeled}+${THREE_D_DEFAULTS.batchUnlabeled}, β ${THREE_D_DEFAULTS.proportion}, ${THREE_D_DEFAULTS.iterations} iterations unless set) [default: ${d.network}]` })
    .option('format', { choices: ['nnunet', 'acdc-h5', 'brats-h5'] as const, description: `Dataset layout: nnunet (2D or 3D), acdc-h5 (SSL4MIS ACDC slices, 2D), brats-h5 (SSL4MIS BraTS 2019: train.list, val.list, data/<case>.h5; 3D) [default: ${d.format}]` })
    .option('method', { choices: ['alhvr', 'supervised'] as const, description: `alhvr, or the labelled-only baseline [default: ${d.method}]` })
    .option('labeled-cases', { type: 'string', description: `nnU-Net: number of labelled cases, or a file listing case ids [default: ${d.labeledCases}]` })
    .option('labeled-slices', { type: 'number', description: `ACDC HDF5: labelled slices (7 cases = 136) [default: ${d.labeledSlices}]` })
    .option('val-cases', { type: 'number', description: `nnU-Net: labelled cases held out for validation [default: ${d.valCases}]` })
    .option('unlabeled', { type: 'string', description: 'Extra folder of unlabeled NIfTI images' })
    .option('iterations', { type: 'number', description: `Training iterations [default: ${d.iterations}]` })
    .option('batch', { type: 'string', description: `Training batch as L+U: labelled+unlabeled slices per iteration [default: ${d.batchLabeled}+${d.batchUnlabeled}]` })
    .option('patch', { type: 'number', description: `Side of the slice (2D) or cube crop (3D) fed to the network, multiple of 16 [default: ${d.patch}, 3D ${THREE_D_DEFAULTS.patch}]` })
    .option('widths', { type: 'string', description: `Five encoder widths [default: ${d.widths.join(',')}]` })
    .option('lr', { type: 'number', description: `SGD learning rate [default: ${d.lr}]` })
    .option('ramp-iterations', { type: 'number', description: `Iterations over which the unsupervised weight ramps up, at least 200 [default: ${d.rampIterations}]` })
    .option('dice-loss', { choices: ['released', 'standard'] as const, description: `Dice variant [default: ${d.diceLoss}]` })
    .option('detach-teacher', { type: 'boolean', description: `Detach the DTCT teacher [default: ${d.detachTeacher}]` })
    .option('regions', { type: 'string', description: `Regions receiving the unsupervised terms, e.g. 2,3 or none (Ω2 CG-CPCL, Ω3 DTCT; Ω1 has none) [default: ${d.regions.join(',')}]` })
    .option('backend', { choices: BACKEND_CHOICES, description: `TensorFlow.js backend [default: ${d.backend}]` })
    .option('threads', { type: 'number', description: 'Threads for the wasm backend' })
    .option('init', {
      type: 'string',
      description:
        "Start the students from another run's best-a.ckpt / best-b.ckpt (parameters only: momentum, γ and the schedule start fresh), e.g. the next round of a pseudo-label loop; the network must match",
    })
    .option('seed', { type: 'number', description: `Random seed [default: ${d.seed}]` })
    .option('val-every', { type: 'number', description: `Validate every N iterations [default: ${d.valEvery}]` })
    .option('checkpoint-every', { type: 'number', description: `Write latest.ckpt every N iterations [default: ${d.checkpointEvery}]` })
    .option('pseudo-labels', { type: 'string', array: true, description: 'alhvr-segment output folders whose cases (verdict in --pseudo-verdicts, or a reviewer\'s corrected.nii.gz or corrected.seg.dcm in the case folder) join the labelled stream; or a DICOMweb server URL: the SEGs alhvr-segment --store put there, a reviewer\'s newer SEG of the same series instead (weight 1). A SEG holds labels only: --pseudo-weighting region or confidence on a server\'s SEGs needs their segment folder named too (its maps and verdicts), else use none' })
    .option('pseudo-verdicts', { type: 'string', description: `Verdicts whose cases are used, comma-separated among accept, review, reject [default: ${d.pseudoVerdicts.join(',')}]` })
    .option('pseudo-weighting', { choices: ['region', 'confidence', 'none'] as const, description: `Per-voxel weight of pseudo-labels in CE and Dice: region (reliable 1, unstable --pseudo-unstable-weight, unreliable 0), the calibrated confidence, or none [default: ${d.pseudoWeighting}]` })
    .option('pseudo-unstable-weight', { type: 'number', description: `Region weighting: weight of unstable (region 2) voxels [default: ${d.pseudoUnstableWeight}]` })
    .option('pseudo-fraction', { type: 'number', description: `Share of the labelled batch drawn from pseudo-labelled slices [default: ${d.pseudoFraction}]` })
    .options(PSEUDO_DICOMWEB_OPTIONS)
    .group(Object.keys(PSEUDO_DICOMWEB_OPTIONS), 'Pseudo-labels from a PACS (DICOMweb):')
    .option('resume', { type: 'boolean', default: false, description: 'Continue the run in --out from latest.ckpt' })
    .demandCommand(0, 0, '', `${COMMAND} takes no positional arguments`)
    .parseAsync();

  // A resumed run starts from the recipe it saved: its data, budget and schedule need not be
  // repeated, and an omitted --iterations must not become the 30 000 default.
  const saved = argv.resume && argv.out ? await readSavedConfig(argv.out) : {};
  const fromFile = { ...saved, ...(argv.config ? await readConfigFile(argv.config) : {}) };
  let labeledCases: TrainConfig['labeledCases'] | undefined;
  if (argv['labeled-cases'] !== undefined) {
    const text = argv['labeled-cases'];
    labeledCases = /^\d+$/.test(text)
      ? Number(text)
      : (await readFile(text, 'utf8').catch(() => {
          throw new InputError('--labeled-cases is neither a number nor a readable list file', text);
        })).split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  }
  const cli: Partial<TrainConfig> = {
    data: argv.data,
    out: argv.out,
    network: argv.network,
    format: argv.format,
    method: argv.method,
    labeledCases,
    labeledSlices: argv['labeled-slices'],
    valCases: argv['val-cases'],
    unlabeledDir: argv.unlabeled,
    iterations: argv.iterations,
    ...(argv.batch ? parseBatch(argv.batch) : {}),
    patch: argv.patch,
    widths: argv.widths ? parseWidths(argv.widths) : undefined,
    lr: argv.lr,
    rampIterations: argv['ramp-iterations'],
    diceLoss: argv['dice-loss'],
    detachTeacher: argv['detach-teacher'],
    regions: argv.regions === undefined ? undefined : (argv.regions.trim() === 'none' ? [] : argv.regions.split(',').map((r) => Number(r.trim()))) as TrainConfig['regions'],
    backend: argv.backend,
    threads: argv.threads,
    init: argv.init,
    seed: argv.seed,
    valEvery: argv['val-every'],
    checkpointEvery: argv['checkpoint-every'],
    pseudoLabels: argv['pseudo-labels'],
    pseudoVerdicts: argv['pseudo-verdicts']?.split(',').map((v) => v.trim()).filter(Boolean) as TrainConfig['pseudoVerdicts'] | undefined,
    pseudoWeighting: argv['pseudo-weighting'],
    pseudoUnstableWeight: argv['pseudo-unstable-weight'],
    pseudoFraction: argv['pseudo-fraction'],
  };
  const merged = { ...fromFile, ...Object.fromEntries(Object.entries(cli).filter(([, v]) => v !== undefined)) };
  if (!merged.data) throw new UsageError('--data is required (or "data" in --config)');
  if (!merged.out) throw new UsageError('--out is required (or "out" in --config)');
  let config: TrainConfig;
  try {
    config = resolveConfig(merged as Partial<TrainConfig> & { data: string; out: string });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }

  const log = (m: string) => {
    if (!argv.quiet) process.stderr.write(`${m}\n`);
  };
  // Checked here so a typo is named as such (not "no dataset.json", not EEXIST from mkdir).
  await requireFolder(config.data, 'dataset');
  if (config.init && !argv.resume) await requireFolder(config.init, '--init');
  // A resumed run finds its sources again from the checkpoint (config.json keeps names only):
  // only the ones given now are checked.
  const pseudoSources = argv.resume ? (argv['pseudo-labels'] ?? []) : (config.pseudoLabels ?? []);
  for (const source of pseudoSources) {
    if (isDicomwebSource(source)) checkDicomwebUrl('pseudo-labels', source);
    else await requireFolder(source, '--pseudo-labels');
  }
  const fromServer = argv.resume || pseudoSources.some(isDicomwebSource);
  if (!fromServer && (argv.header !== undefined || argv.ca !== undefined)) throw new UsageError(`--${argv.header !== undefined ? 'header' : 'ca'} needs --pseudo-labels URL (a DICOMweb server)`);
  // Tokens and the CA reach the pseudo-label reader only: never the config, which is recorded.
  const pseudoLabelAccess = fromServer ? parseDicomwebAccess(argv) : undefined;
  await requireWritableFolderPath(config.out, '--out');
  const createdOut = await firstMissingFolder(config.out);
  let progress: ReturnType<typeof createProgress> | undefined;
  let last = '';
  // progress.png is redrawn after each validation's last student, one drawing at a time, outside
  // the trainer (training stays free of plotting packages); a drawing that fails only warns.
  let plotting: Promise<void> = Promise.resolve();
  const redrawProgress = () => {
    plotting = plotting
      .then(() => writeProgressPlot(config.out, basename(config.out)))
      .catch((err: unknown) => log(`${COMMAND}: warning: progress.png not drawn: ${(err as Error).message}`));
  };
  const result = await train(config, {
    pseudoLabelAccess,
    resume: argv.resume,
    signal,
    events: {
      log,
      onStart: (info) => {
        log(`config: ${JSON.stringify(info.config)}`);
        const unit = info.config.network === 'vnet3d' ? 'cases' : 'slices';
        log(`backend: ${info.backend}; ${info.labeledSlices} labelled and ${info.unlabeledSlices} unlabeled ${unit}`);
        progress = createProgress({ total: info.config.iterations, initial: info.startIteration, label: 'iterations', quiet: argv.quiet });
      },
      onIteration: (r) => {
        last = `loss ${r.loss.toFixed(4)} γ ${r.gamma.toFixed(3)}`;
        progress?.update(r.iteration);
      },
      onValidation: (v) => {
        log(`\n[${v.iteration}] student ${v.student}: mean Dice ${v.meanDice.toFixed(4)}, HD95 ${v.meanHd95Mm.toFixed(2)} mm${v.best ? ' (best)' : ''}`);
        if (v.student === 'b' || config.method === 'supervised') redrawProgress();
      },
    },
  }).catch(async (err: unknown) => {
    // A run that failed before writing anything leaves no empty run folder behind.
    if (createdOut) await removeEmptyFolders(config.out, createdOut);
    throw err;
  });
  progress?.finish();
  await plotting;
  log(`${result.stopped ? 'stopped' : 'finished'} at iteration ${result.iteration} (${last}); best A ${result.best.a?.meanDice.toFixed(4) ?? '-'}, best B ${result.best.b?.meanDice.toFixed(4) ?? '-'}`);
  // Stopped by Ctrl-C or SIGTERM: runCommand turns the aborted signal into 130 or 143.
  return result.stopped ? 130 : 0;
});
