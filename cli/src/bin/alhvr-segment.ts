// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { join } from 'node:path';
import { InputError } from '@alhvr/core';
import {
  DEFAULT_TRIAGE,
  describeLockHolder,
  discoverInputs,
  expandVolumes,
  parseDeviceRequest,
  parseFormats,
  parseShard,
  parseVolumeSelection,
  prepareOutputFolder,
  runSegmentation,
  validateRunOptions,
  validateTriageThresholds,
  type GammaMode,
} from '@alhvr/inference/node';
import { commandLine } from '../lib/command-line.js';
import { removeEmptyFolders } from '../lib/folders.js';
import { describeShippedModels, resolveModelArgument } from '../lib/shipped-models.js';
import { formatSkipped } from '../lib/format-info.js';
import { createProgress } from '../lib/progress.js';
import { runCommand, UsageError } from '../lib/run-command.js';
import { writeSummaryPlot } from '../lib/plots/segment-summary.js';
import { rasterizeSvgLayer } from '../lib/plots/render.js';
import { DICOMWEB_GROUP, DICOMWEB_OPTIONS, parseDicomwebArgs, runDicomwebSegment } from '../lib/dicomweb.js';

const COMMAND = 'alhvr-segment';
function asUsageError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw err instanceof InputError ? new UsageError(err.message) : err;
  }
}

function parseSliceBatch(text: string | undefined): number {
  if (text === undefined) return 8;
  if (!/^\s*\d+\s*$/.test(text) || Number(text) < 1) {
    throw new UsageError(`--slice-batch must be a positive integer (slices per model call), got "${text}"`);
  }
  return Number(text);
}

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    'INPUT... --out DIR [options]\n       alhvr-segment --dicomweb URL (--study UID | --query NAME=VALUE) --out DIR [--store] [options]',
    'Segment NIfTI files and DICOM series (folders are searched recursively) with an ALHVR ONNX model. Per case, ' +
      'DIR/<case-id>/ receives mask.nii.gz, confidence.nii.gz, region.nii.gz (1 reliable: both students above γ, 2 unstable: exactly one, 3 unreliable: neither), ' +
      'seg.dcm for DICOM input, preview.png and report.json; DIR/manifest.jsonl and DIR/summary.csv (most unreliable first) list every case; DIR/summary.png draws that queue. ' +
      "A 3D model (its card says dimensions 3) runs on the whole volume resampled to the card's spacing, by sliding windows of its patch (stride 2/3 of it; --gaussian weighting optional), the outputs going back to the input's grid.",
  )
    .option('out', { alias: ['o', 'output'], type: 'string', demandOption: true, description: 'Output folder (created if missing)' })
    .option('model', { type: 'string', description: `ONNX model file, or a shipped model by name: ${describeShippedModels()} [default: default]` })
    .option('device', { type: 'string', default: 'auto', choices: ['auto', 'cuda', 'cpu'], description: 'Execution provider; auto uses CUDA when its provider is installed' })
    .option('slice-batch', { type: 'string', description: 'Slices per model call (a positive integer) [default: 8]' })
    // Older name, kept working; not shown because alhvr-train's --batch (L+U slices) means something else.
    .option('batch', { type: 'string', hidden: true })
    .option('threads', { type: 'number', description: 'CPU threads for ONNX Runtime (default: one per core)' })
    .option('formats', { type: 'string', default: 'nifti,dicom-seg', description: 'Output formats: nifti, dicom-seg (SEG only for DICOM input)' })
    .option('save-probabilities', { type: 'boolean', default: false, description: 'Also write probabilities.nii.gz (4D, one frame per class)' })
    .option('preview', { type: 'boolean', default: true, description: 'Write preview.png (disable with --no-preview)' })
    .option('volume', { type: 'string', description: '4D NIfTI: volume index to segment (0, 1, …), or "all" to make every volume a case <id>_t<N> (cine MR) [default: 0, with a warning]' })
    .option('gamma-mode', { type: 'string', default: 'model', choices: ['model', 'volume'], description: 'Region threshold γ: from the model card, or the β-quantile rule per volume' })
    .option('gaussian', {
      type: 'boolean',
      default: false,
      description: "3D models: weight each sliding window by nnU-Net's Gaussian (σ = patch/8) instead of the released uniform average (windows: the card's patch, stride 2/3 of it)",
    })
    .option('resume', { type: 'boolean', default: false, description: 'Skip cases already done with the same input and model' })
    .option('shard', { type: 'string', description: 'Process shard i of n (1-based "i/n"), partitioned by case id' })
    .option('fail-fast', { type: 'boolean', default: false, description: 'Stop at the first failing case' })
    .option('anonymize-ids', { type: 'boolean', default: false, description: 'Name case folders by a hash instead of file names / PatientID' })
    .option('accept-dice', { type: 'number', description: "Triage of calibrated models: accept at or above this predicted Dice [default: the model card's]" })
    .option('reject-dice', { type: 'number', description: "Triage of calibrated models: reject below this predicted Dice [default: the model card's]" })
    .option('accept-reliable', { type: 'number', default: DEFAULT_TRIAGE.acceptReliableFraction, description: 'Triage of uncalibrated models: accept needs at least this fraction of foreground in region 1' })
    .option('accept-confidence', { type: 'number', default: DEFAULT_TRIAGE.acceptMeanConfidence, description: 'Triage: accept needs at least this foreground mean confidence' })
    .option('reject-unreliable', { type: 'number', default: DEFAULT_TRIAGE.rejectUnreliableFraction, description: 'Triage: reject above this fraction of foreground in region 3' })
    .option('reject-confidence', { type: 'number', default: DEFAULT_TRIAGE.rejectMeanConfidence, description: 'Triage: reject below this foreground mean confidence' })
    .group(['out', 'model', 'device', 'slice-batch', 'threads', 'formats', 'save-probabilities', 'preview', 'volume', 'gamma-mode', 'gaussian'], 'Segmentation:')
    .group(['resume', 'shard', 'fail-fast', 'anonymize-ids'], 'Batch runs:')
    .group(['accept-dice', 'reject-dice', 'accept-reliable', 'accept-confidence', 'reject-unreliable', 'reject-confidence'], 'Triage:')
    // PACS input: INPUT or --dicomweb, checked by parseDicomwebArgs.
    .demandCommand(0)
    .options(DICOMWEB_OPTIONS)
    .group(Object.keys(DICOMWEB_OPTIONS), DICOMWEB_GROUP)
    .parseAsync();

  // Every option is checked before the inputs are searched or anything is written; a bad option
  // is a usage error (exit code 2) like one yargs rejects.
  const triage = asUsageError(() => validateTriageThresholds({
    acceptReliableFraction: argv['accept-reliable'],
    acceptMeanConfidence: argv['accept-confidence'],
    rejectUnreliableFraction: argv['reject-unreliable'],
    rejectMeanConfidence: argv['reject-confidence'],
  }));
  const triageDice = asUsageError(() => {
    const [accept, reject] = [argv['accept-dice'], argv['reject-dice']];
    for (const [name, v] of [['--accept-dice', accept], ['--reject-dice', reject]] as const) {
      if (v !== undefined && !(v >= 0 && v <= 1)) throw new InputError(`${name} must be in [0, 1] (got ${v})`);
    }
    if (accept !== undefined && reject !== undefined && reject > accept) throw new InputError('--reject-dice must not exceed --accept-dice');
    return { acceptDice: accept, rejectDice: reject };
  });
  const options = {
    output: argv.out,
    model: resolveModelArgument(argv.model),
    device: asUsageError(() => parseDeviceRequest(argv.device)),
    batch: parseSliceBatch(argv['slice-batch'] ?? argv.batch),
    threads: argv.threads,
    formats: asUsageError(() => parseFormats(argv.formats)),
    saveProbabilities: argv['save-probabilities'],
    preview: argv.preview,
    previewRasterizer: rasterizeSvgLayer,
    gammaMode: argv['gamma-mode'] as GammaMode,
    gaussian: argv.gaussian,
    resume: argv.resume,
    shard: argv.shard === undefined ? undefined : asUsageError(() => parseShard(argv.shard!)),
    failFast: argv['fail-fast'],
    anonymizeIds: argv['anonymize-ids'],
    triage,
    triageDice,
    signal,
  };
  asUsageError(() => validateRunOptions(options));
  const volumes = argv.volume === undefined ? undefined : asUsageError(() => parseVolumeSelection(argv.volume!));
  const say = (line: string) => {
    if (!argv.quiet) process.stderr.write(`${line}\n`);
  };
  const dicomweb = parseDicomwebArgs(argv);
  if (dicomweb) {
    const code = await runDicomwebSegment(COMMAND, { ...options, ...dicomweb }, { say, quiet: argv.quiet, verbose: argv.verbose });
    await writeSummaryPlot(options.output).catch((err: unknown) => say(`${COMMAND}: warning: summary.png not drawn: ${(err as Error).message}`));
    return code;
  }
  const created = await prepareOutputFolder(options.output);
  let started = false;
  try {
    // A dataset root holds labelsTr/ beside imagesTr/: label maps are not images to segment.
    const found = await discoverInputs(argv._.map(String), { signal, skipLabelMaps: true });
    const { skipped, labelMaps } = found;
    if (found.cases.length === 0) throw new InputError('no NIfTI files or DICOM series found in the inputs');
    const cases = await expandVolumes(found.cases.map((c) => c.source), volumes);
    if (skipped.length) say(formatSkipped(skipped, argv.verbose));
    if (labelMaps.length && argv.verbose) say(`${COMMAND}: left out ${labelMaps.length} label map(s) of an nnU-Net dataset (labelsTr/, labelsTs/)`);
    let progress: ReturnType<typeof createProgress> | undefined;
    // A 3D model's case takes many windows: their progress is shown per case.
    let threeD = false;
    let windows: { caseId: string; progress: ReturnType<typeof createProgress> } | undefined;
    started = true;
    const result = await runSegmentation(cases, {
      ...options,
      onSlices: (caseId, done, total) => {
        if (!threeD) return;
        if (windows?.caseId !== caseId) windows = { caseId, progress: createProgress({ total, label: `${caseId}: windows`, quiet: argv.quiet }) };
        windows.progress.update(done);
        if (done === total) windows.progress.finish();
      },
      onStart: ({ cases: mine, model }) => {
        threeD = model.identity.card.dimensions === 3;
        const shard = options.shard ? ` (shard ${options.shard.index}/${options.shard.count} of ${cases.length})` : '';
        say(`${COMMAND}: model ${model.identity.card.name} on ${model.device.toUpperCase()}; ${mine.length} case(s)${shard}`);
        if (argv.verbose) say(`${COMMAND}: device: ${model.deviceNote}`);
        if (model.cudaHint && (model.gpuVisible || argv.verbose)) say(`${COMMAND}: ${model.cudaHint}`);
        progress = createProgress({ total: mine.length, label: 'cases', quiet: argv.quiet });
      },
      onCaseDone: (entry, wasSkipped) => {
        if (entry.status === 'failed') say(`${COMMAND}: case ${entry.caseId} failed: ${entry.error}`);
        else if (!wasSkipped) for (const w of entry.warnings ?? []) say(`${COMMAND}: case ${entry.caseId}: warning: ${w}`);
        else if (argv.verbose) say(`${entry.caseId}: ${wasSkipped ? 'already done' : entry.summary?.verdict}`);
        progress?.tick();
      },
      onLockWait: (holder, waitedMs) => say(`${COMMAND}: ${describeLockHolder(options.output, holder, waitedMs)}`),
    });
    progress?.finish();
    // The review queue as a picture beside summary.csv, drawn here so inference carries no
    // plotting dependency; a picture that cannot be drawn costs a warning, not the run's results.
    await writeSummaryPlot(options.output, { onWait: (holder, waitedMs) => say(`${COMMAND}: ${describeLockHolder(options.output, holder, waitedMs)}`) }).catch((err: unknown) =>
      say(`${COMMAND}: warning: summary.png not drawn: ${(err as Error).message}`),
    );
    const ok = result.entries.filter((e) => e.status === 'ok').length;
    const verdicts = (['accept', 'review', 'reject'] as const).map((v) => `${result.entries.filter((e) => e.summary?.verdict === v).length} ${v}`).join(', ');
    say(`${COMMAND}: ${ok} ok (${result.skipped} already done; ${verdicts}), ${result.failed} failed; see ${join(options.output, 'summary.csv')}`);
    return result.exitCode;
  } catch (err) {
    // Failed before the run wrote anything: do not leave behind an empty folder we created.
    if (!started && created) await removeEmptyFolders(options.output, created);
    throw err;
  }
});
