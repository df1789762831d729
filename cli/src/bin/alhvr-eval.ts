// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { InputError, METRIC_NAMES, MetricsWorkspace, meanMetrics, segmentationMetrics, type ClassMetrics, type EmptyPolicy } from '@alhvr/core';
import { readNiftiFile, writeFileAtomic } from '@alhvr/core/node';
import { commandLine } from '../lib/command-line.js';
import { createProgress } from '../lib/progress.js';
import { UsageError, runCommand, throwIfCancelled } from '../lib/run-command.js';
import { isNiftiPath, stripNiftiExtension } from '../lib/file-names.js';
import { DEFAULT_PLOT_THRESHOLD, writeEvalPlot } from '../lib/plots/eval-distribution.js';

const COMMAND = 'alhvr-eval';

/**
 * Case id → label file. A folder may hold <case>.nii.gz files (nnU-Net labelsTr) or
 * <case>/mask.nii.gz (alhvr-segment's output layout); a single file is one case.
 */
async function labelFiles(path: string): Promise<Map<string, string>> {
  const info = await stat(path).catch(() => {
    throw new InputError('no such file or folder', path);
  });
  const out = new Map<string, string>();
  if (info.isFile()) {
    out.set(stripNiftiExtension(basename(path)), path);
    return out;
  }
  for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.isFile() && isNiftiPath(entry.name)) out.set(stripNiftiExtension(entry.name), join(path, entry.name));
    else if (entry.isDirectory()) {
      const mask = join(path, entry.name, 'mask.nii.gz');
      if (await stat(mask).then(() => true, () => false)) out.set(entry.name, mask);
    }
  }
  if (out.size === 0) throw new InputError('holds no NIfTI label files (<case>.nii.gz or <case>/mask.nii.gz)', path);
  return out;
}

function parseClasses(text: string): number[] {
  const values = text.split(',').map((s) => Number(s.trim()));
  if (!values.length || !values.every((v) => Number.isInteger(v) && v > 0 && v < 256)) throw new UsageError(`--classes needs labels 1–255 separated by commas, got "${text}"`);
  return values;
}

/** More distinct labels than this and a reference is taken for an image (unless --classes says which to score). */
const MAX_REFERENCE_LABELS = 64;

/**
 * References must be label maps: integer labels 0–255, few of them. Images given by mistake
 * (imagesTr instead of labelsTr) would otherwise be scored for minutes with every intensity a class.
 */
function checkLabelMap(data: ArrayLike<number>, path: string, classesGiven: boolean): void {
  const labels = new Set<number>();
  for (let p = 0; p < data.length; p++) {
    const v = data[p];
    if (!(Number.isInteger(v) && v >= 0 && v <= 255)) {
      throw new InputError(`--ref is not a label map: it holds the value ${v} (labels are integers 0–255); give the labels (e.g. labelsTr), not the images`, path);
    }
    labels.add(v);
    if (!classesGiven && labels.size > MAX_REFERENCE_LABELS + 1) {
      throw new InputError(`--ref is not a label map: more than ${MAX_REFERENCE_LABELS} distinct labels (an image?); give the labels (e.g. labelsTr), or --classes to score a large label set`, path);
    }
  }
}

const fmt = (v: number, digits = 4) => (Number.isFinite(v) ? v.toFixed(digits) : 'nan');

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    '--pred DIR|FILE --ref DIR|FILE [--classes 1,2,3] [--json] [--out FILE.csv]',
    // Paragraphs only (no hard line breaks): yargs wraps them to the terminal, so they stay aligned.
    'Score predicted label maps against reference labels, per case and class: Dice, Jaccard, HD95 and ASD ' +
      'in millimetres (from the reference spacing) and in voxels, with medpy\'s definitions. References must be ' +
      `label maps (integers 0–255, at most ${MAX_REFERENCE_LABELS} labels unless --classes is given).\n\n` +
      'Empty-mask policy "flagged" (default): both empty → Dice 1, HD95 0; one empty → Dice 0 and HD95/ASD NaN, ' +
      'left out of the distance means but counted. "released-code": a never-predicted class scores 0 on every metric.',
  )
    .option('pred', { type: 'string', demandOption: true, description: 'Predictions: a NIfTI file, a folder of <case>.nii.gz, or an alhvr-segment output folder' })
    .option('ref', { type: 'string', demandOption: true, description: 'References: a NIfTI file or a folder of <case>.nii.gz (e.g. labelsTr)' })
    .option('classes', { type: 'string', description: 'Foreground labels to score [default: every label found in the references]' })
    .option('empty-policy', { choices: ['flagged', 'released-code'] as const, default: 'flagged' as const, description: 'How empty masks are scored' })
    .option('json', { type: 'boolean', default: false, description: 'Print one JSON document instead of a table' })
    .option('out', { type: 'string', description: 'Also write the per-case, per-class table as CSV' })
    .option('plot', { type: 'string', description: 'Also draw per-class Dice and HD95 over cases (box plots, every case a dot) as a PNG' })
    .option('plot-threshold', { type: 'number', default: DEFAULT_PLOT_THRESHOLD, description: 'In --plot, name the cases whose Dice is below this' })
    .demandCommand(0, 0, '', `${COMMAND} takes no positional arguments`)
    .parseAsync();

  // Checked before any file is read: a typo must not cost a whole evaluation.
  if (argv.plot !== undefined && !/\.png$/i.test(argv.plot)) throw new UsageError(`--plot writes a PNG: give a file name ending in .png, got "${argv.plot}"`);
  const plotThreshold = argv['plot-threshold'];
  if (!(plotThreshold >= 0 && plotThreshold <= 1)) throw new UsageError(`--plot-threshold must be a Dice between 0 and 1, got ${plotThreshold}`);
  const preds = await labelFiles(argv.pred);
  const refs = await labelFiles(argv.ref);
  const isFile = async (p: string) => (await stat(p)).isFile();
  const single = (await isFile(argv.pred)) && (await isFile(argv.ref));
  // Two single files pair up whatever their names; folders pair by case id.
  const pairs: [string, string, string][] = single
    ? [[[...preds.keys()][0], [...preds.values()][0], [...refs.values()][0]]]
    : [...preds].flatMap(([id, p]): [string, string, string][] => {
        // alhvr-segment names cases after nnU-Net image files (<case>_0000); labels drop the channel suffix.
        const ref = refs.get(id) ?? refs.get(id.replace(/_\d{4}$/, ''));
        return ref ? [[id.replace(/_\d{4}$/, ''), p, ref]] : [];
      });
  if (pairs.length === 0) throw new InputError(`no case appears in both --pred (${preds.size} cases) and --ref (${refs.size} cases)`, argv.pred);
  // By file, not id: a reference named <case>_0000 pairs under the id without the suffix.
  const pairedRefs = new Set(pairs.map(([, , ref]) => ref));
  const missing = [...refs].filter(([, path]) => !pairedRefs.has(path)).map(([id]) => id);
  if (!single && missing.length) process.stderr.write(`${COMMAND}: warning: ${missing.length} reference case(s) have no prediction: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}\n`);

  const workspace = new MetricsWorkspace();
  const progress = createProgress({ total: pairs.length, label: 'cases', quiet: argv.quiet || argv.json });
  const perCase: { id: string; metrics: ClassMetrics[] }[] = [];
  for (const [id, predPath, refPath] of pairs) {
    throwIfCancelled(signal);
    const [pred, ref] = await Promise.all([readNiftiFile(predPath), readNiftiFile(refPath)]);
    checkLabelMap(ref.data, refPath, argv.classes !== undefined);
    let classes = argv.classes ? parseClasses(argv.classes) : undefined;
    if (!classes) {
      const found = new Set<number>();
      for (let p = 0; p < ref.data.length; p++) if (ref.data[p] !== 0) found.add(ref.data[p]);
      classes = [...found].sort((a, b) => a - b);
    }
    perCase.push({ id, metrics: segmentationMetrics(pred, ref, classes, { emptyPolicy: argv['empty-policy'] as EmptyPolicy, workspace }) });
    progress.tick();
  }
  progress.finish();
  const summary = meanMetrics(perCase.map((c) => c.metrics));

  if (argv.out) {
    const header = ['case', 'label', ...METRIC_NAMES, 'predVoxels', 'refVoxels', 'predEmpty', 'refEmpty'];
    const rows = perCase.flatMap((c) => c.metrics.map((m) => [c.id, m.label, ...METRIC_NAMES.map((n) => m[n]), m.predVoxels, m.refVoxels, m.predEmpty, m.refEmpty].join(',')));
    await writeFileAtomic(argv.out, `${header.join(',')}\n${rows.join('\n')}\n`);
  }
  if (argv.plot) await writeEvalPlot(argv.plot, perCase, plotThreshold);
  if (argv.json) {
    process.stdout.write(`${JSON.stringify({ emptyPolicy: argv['empty-policy'], cases: perCase, summary }, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    return;
  }
  // Columns padded to their widest cell, so NaN, large distances and many cases stay aligned.
  const rows: string[][] = [
    ['label', 'cases', 'Dice', 'Jaccard', 'HD95 mm', 'ASD mm'],
    ...summary.perClass.map((c) => {
      const s = c.stats;
      return [String(c.label), String(c.cases), `${fmt(s.dice.mean)}±${fmt(s.dice.std)}`, `${fmt(s.jaccard.mean)}±${fmt(s.jaccard.std)}`, `${fmt(s.hd95Mm.mean, 2)}±${fmt(s.hd95Mm.std, 2)}`, `${fmt(s.asdMm.mean, 2)}±${fmt(s.asdMm.std, 2)}`];
    }),
    ['mean', String(perCase.length), fmt(summary.mean.dice), fmt(summary.mean.jaccard), fmt(summary.mean.hd95Mm, 2), fmt(summary.mean.asdMm, 2)],
  ];
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  for (const r of rows) process.stdout.write(`${r.map((cell, col) => cell.padEnd(widths[col])).join('  ').trimEnd()}\n`);
});
