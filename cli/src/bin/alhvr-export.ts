// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { InputError, spearman } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';
import { selectBackend, type UNet } from '@alhvr/training';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { calibrate, calibrationCaseFiles, type CalibrationCase, type CalibrationCaseFile, checkParity, exportOnnx, exportOnnxInt8, readCalibrationCases, type CalibrationResult, formatParity, loadRunForExport, type GraphSummary, type StudentSelection } from '@alhvr/export';
import { commandLine } from '../lib/command-line.js';
import { UsageError, runCommand, throwIfCancelled } from '../lib/run-command.js';

const COMMAND = 'alhvr-export';

function formatSummary(s: GraphSummary, out: string): string {
  const shape = (d: (number | string)[]) => `[${d.join(', ')}]`;
  return [
    `ONNX opset ${s.opset}, ${s.precision}, students ${s.students}, ${s.nodes} nodes`,
    `  parameters ${s.parameters.toLocaleString('en-US')} after BatchNorm folding (trainable per student: ${s.trainableParameters.map((n) => n.toLocaleString('en-US')).join(', ')})`,
    ...s.inputs.map((t) => `  input  ${t.name} ${t.type} ${shape(t.shape)}`),
    ...s.outputs.map((t) => `  output ${t.name} ${t.type} ${shape(t.shape)}`),
    `  ${out}: ${(s.fileBytes / 1e6).toFixed(2)} MB`,
  ].join('\n');
}

/** The run's validation cases and its data folder, as the run's config.json records them. */
async function runValidationCases(source: string): Promise<{ root: string; ids: string[] } | undefined> {
  const runDir = (await stat(source)).isDirectory() ? source : dirname(source);
  try {
    const recorded = JSON.parse(await readFile(join(runDir, 'config.json'), 'utf8')) as { config?: { data?: string; format?: string }; dataset?: { validation?: string[] } };
    const ids = recorded.dataset?.validation;
    const data = recorded.config?.data;
    if (recorded.config?.format !== 'nnunet' || !data || !ids?.length) return undefined;
    return { root: resolve(runDir, data), ids };
  } catch {
    return undefined;
  }
}

function formatCalibration(c: CalibrationResult): string {
  const k = c.calibration;
  const q = k.quality;
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  return [
    `calibration on ${k.source.cases} volumes (${k.source.kind} ${k.source.name}):`,
    `  temperature ${k.temperature}; foreground ECE ${k.ece.before.toFixed(4)} -> ${k.ece.after.toFixed(4)}`,
    `  γ ${c.card.regions.gamma} (${k.gammaRule}; the β rule would give ${k.betaRuleGamma})`,
    `  wrongly labelled voxels in region 1/2/3: ${k.regionErrorRates.map(pct).join(' / ')}`,
    `  verdict thresholds on predicted Dice: accept ≥ ${q.acceptDice}, reject < ${q.rejectDice}`,
    `  quality model on the calibration cases (in-sample): Spearman ρ ${spearman(c.cases.map((x) => x.predictedDice), c.cases.map((x) => x.dice)).toFixed(3)}, ` +
      `mean |predicted − true Dice| ${(c.cases.reduce((s, x) => s + Math.abs(x.predictedDice - x.dice), 0) / c.cases.length).toFixed(3)}`,
  ].join('\n');
}

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    'RUN_DIR|CHECKPOINT --out model.onnx [--students both|a|b] [--precision fp32|fp16|fp16-weights|int8]',
    'Export trained ALHVR students to one ONNX model (opset 17, NCHW, dynamic batch and plane size; a vnet3d run: ' +
      'NCDHW, dynamic batch and patch size) carrying its model card, after checking it against TensorFlow.js on phantom ' +
      'slices (3D: abdominal CT phantom patches). From a run folder each ' +
      'student comes from its best validation checkpoint. A two-student export is calibrated on labelled volumes the ' +
      'students did not train on (the run\'s validation cases, or --calibration DIR): temperature, region γ, the ' +
      'case-quality model and verdict thresholds go into the card. --precision int8 quantizes the convolutions, with ' +
      'activation scales measured on the same calibration volumes.',
  )
    .positional('source', { type: 'string', description: 'Training run folder or .ckpt file' })
    .option('out', { alias: 'o', type: 'string', demandOption: true, description: 'ONNX file to write' })
    .option('students', { choices: ['both', 'a', 'b'] as const, description: 'Which students to export (default: both for ALHVR runs)' })
    .option('precision', {
      choices: ['fp32', 'fp16', 'fp16-weights', 'int8'] as const,
      description:
        'Network precision: fp32; fp16 (half weights and compute); fp16-weights (half weights, float32 compute: half the ' +
        'file at float32 speed); int8 (int8 convolutions, activation scales measured on the ' +
        'calibration volumes). Input, softmax, confidence and region heads stay float32 [default: fp32]',
    })
    .option('fp16', { type: 'boolean', default: false, description: 'Same as --precision fp16' })
    .option('gamma', { type: 'number', description: 'Region threshold γ to store instead of the run\'s final γ' })
    .option('parity-slices', { type: 'number', default: 4, description: 'Phantom slices (3D: patches) for the TensorFlow.js parity check (0 skips it)' })
    .option('backend', { choices: ['wasm', 'cpu'] as const, default: 'wasm' as const, description: 'TensorFlow.js backend for loading and parity' })
    .option('calibrate', {
      type: 'boolean',
      default: true,
      description:
        'Calibrate the two-student ensemble on labelled volumes the students did not train on (temperature, region γ, ' +
        'case-quality model and verdict thresholds, stored in the card); --no-calibrate exports uncalibrated',
    })
    .option('calibration', {
      type: 'string',
      array: true,
      description: 'nnU-Net raw folder(s) (imagesTr + labelsTr) to calibrate on, repeatable [default: the run\'s validation cases]',
    })
    .option('modality', { type: 'string', description: 'Intended use: DICOM Modality the model is for (e.g. MR, CT); other modalities are rejected' })
    .option('body-part', { type: 'string', description: 'Intended use: DICOM BodyPartExamined the model is for (e.g. HEART)' })
    .option('intended-use', { type: 'string', description: 'Intended use in one sentence (stored in the card)' })
    .demandCommand(1, 1, 'give one RUN_DIR or CHECKPOINT', 'give only one RUN_DIR or CHECKPOINT')
    .parseAsync();
  const source = String(argv._[0]);
  if (argv.out.trim() === '') throw new UsageError('--out must not be empty');
  // Checked before minutes of export: --out is the ONNX file itself, never a folder to write into.
  const outInfo = await stat(argv.out).catch(() => undefined);
  if (outInfo?.isDirectory()) throw new InputError('--out is a folder; give the ONNX file to write (e.g. model.onnx)', argv.out);
  if (argv.fp16 && argv.precision !== undefined && argv.precision !== 'fp16') throw new UsageError(`--fp16 contradicts --precision ${argv.precision}`);
  const precision = argv.precision ?? (argv.fp16 ? 'fp16' : 'fp32');
  if (argv.gamma !== undefined && !(argv.gamma > 0 && argv.gamma <= 1)) throw new UsageError(`--gamma must be in (0, 1], got ${argv.gamma}`);
  const slices = argv['parity-slices'];
  if (!Number.isInteger(slices) || slices < 0) throw new UsageError(`--parity-slices must be a whole number ≥ 0, got ${slices}`);
  const say = (m: string) => {
    if (!argv.quiet) process.stderr.write(`${m}\n`);
  };

  await selectBackend(argv.backend, { threads: 2, log: say });
  const run = await loadRunForExport(source, { students: argv.students as StudentSelection | undefined, gamma: argv.gamma });
  try {
    run.sources.forEach((f, i) => say(`student ${run.students.length === 2 ? 'ab'[i] : run.selection}: ${f}`));
    throwIfCancelled(signal);
    if (argv.modality || argv['body-part'] || argv['intended-use']) {
      if (!(argv.modality && argv['body-part'] && argv['intended-use'])) throw new UsageError('--modality, --body-part and --intended-use go together');
      run.card.intendedUse = { modality: argv.modality, bodyPart: argv['body-part'], description: argv['intended-use'] };
    }
    const folders = (argv.calibration ?? []).map(String);
    const fromFolder = folders.length > 0;
    const threeD = run.dimensions === 3;
    if (threeD && precision === 'int8') throw new UsageError('--precision int8 is for 2D models; a 3D (vnet3d) model exports as fp32, fp16 or fp16-weights');
    // A 3D model is calibrated through the same sliding window as alhvr-segment (calibration-windows.ts).
    const wantCalibration = argv.calibrate && run.selection === 'both';
    // int8 needs the volumes for its activation scales even where the ensemble is not calibrated.
    const wantVolumes = wantCalibration || precision === 'int8';
    const validation = wantVolumes && !fromFolder ? await runValidationCases(source) : undefined;
    const calibrationSets = !wantVolumes ? [] : fromFolder ? folders.map((root) => ({ root, ids: undefined })) : validation ? [validation] : [];
    if (wantCalibration && calibrationSets.length === 0) {
      say('not calibrated: the run records no validation cases (pass --calibration DIR with labelled volumes the students did not train on)');
    }
    if (precision === 'int8' && calibrationSets.length === 0) {
      throw new InputError('--precision int8 needs calibration volumes: the run records no validation cases; pass --calibration DIR');
    }
    // 2D volumes are small and int8 needs their images in hand; CT-sized 3D volumes are read one at a time.
    const cases: CalibrationCase[] = [];
    const caseFiles: CalibrationCaseFile[] = [];
    if (calibrationSets.length > 0) {
      for (const set of calibrationSets) {
        const name = basename(resolve(set.root));
        // Case ids are prefixed by their folder's name when several folders are given, so they stay distinct.
        const named = <T extends { id: string }>(c: T): T => (calibrationSets.length > 1 ? { ...c, id: `${name}/${c.id}` } : c);
        if (threeD) for (const c of await calibrationCaseFiles(set.root, set.ids)) caseFiles.push(named(c));
        else for (const c of await readCalibrationCases(set.root, set.ids)) cases.push(named(c));
      }
      say(`calibration: ${cases.length + caseFiles.length} labelled volumes from ${fromFolder ? folders.join(', ') : 'the run\'s validation cases'}`);
    }
    const calibrationName = calibrationSets.map((set) => basename(resolve(set.root))).join('+');
    if (wantCalibration && cases.length + caseFiles.length > 0) {
      const calibrated = await calibrate(run.students, run.card, threeD ? caseFiles : cases, {
        source: { kind: fromFolder ? 'folder' : 'validation', name: calibrationName },
        // 3D volumes take a while each: say every one; 2D passes are quick, so only their ends.
        onProgress: (stage, done, total) => {
          if (threeD || done === total) say(`calibration: ${stage} ${done}/${total}`);
        },
        signal,
      });
      run.card = calibrated.card;
      process.stdout.write(`${formatCalibration(calibrated)}\n`);
    }
    throwIfCancelled(signal);
    let result;
    let floatGraph: Uint8Array | undefined;
    if (precision === 'int8') {
      const int8 = await exportOnnxInt8(run.students as UNet[], run.card, { volumes: cases.map((c) => c.image) }, {
        students: run.selection,
        source: `${fromFolder ? 'folder' : 'validation'} ${calibrationName}`,
        cases: cases.length,
        onProgress: (done, total) => {
          if (done === total) say(`int8: activation ranges measured on ${total} batches`);
        },
      });
      result = int8;
      floatGraph = int8.float.onnx;
    } else {
      result = exportOnnx(run.students, run.card, { precision, students: run.selection });
    }
    process.stdout.write(`${formatSummary(result.summary, argv.out)}\n`);
    const spacing = result.card.targetSpacing ? ` at ${result.card.targetSpacing.join('×')} mm` : '';
    process.stdout.write(`  γ ${result.card.regions.gamma} (${result.card.regions.gammaSource}), β ${result.card.regions.beta}, ${result.card.classes.length} classes, input ${result.card.input.size.join('×')}${spacing}\n`);
    throwIfCancelled(signal);
    if (slices > 0) {
      // An int8 graph is checked through the fp32 graph it was quantized from (same weights and heads).
      const parity = await checkParity(run.students, floatGraph ?? result.onnx, { slices, backend: argv.backend });
      process.stdout.write(`${formatParity(parity)}\n`);
      if (!parity.pass) throw new Error(`the exported model does not match TensorFlow.js (${parity.failures.join('; ')}); nothing written`);
    }
    throwIfCancelled(signal);
    await writeFileAtomic(argv.out, result.onnx);
    process.stdout.write(`wrote ${argv.out}\n`);
  } finally {
    for (const s of run.students) s.dispose();
  }
});
