// First import: disables onnxruntime-node's telemetry before anything can load the native library.
import '@alhvr/inference/no-telemetry';
import { InputError, Volume } from '@alhvr/core';
import { readDicomSeries, readNiftiFile, readSsl4misList, readSsl4misVolume, ssl4misRootOfList, writeNiftiFile } from '@alhvr/core/node';
import { basename, join } from 'node:path';
import { commandLine } from '../lib/command-line.js';
import { exactDatatype, toDatatype } from '../lib/exact-datatype.js';
import { type ImageSource, describeSeries, expandInputs } from '../lib/inputs.js';
import { checkOverwrite, outputFileFor, resolveOutputTarget } from '../lib/output-paths.js';
import { createProgress } from '../lib/progress.js';
import { UsageError, runCommand, throwIfCancelled } from '../lib/run-command.js';

const COMMAND = 'alhvr-convert';

function describeSource(s: ImageSource): string {
  return s.kind === 'nifti' ? `${s.path} (NIfTI)` : describeSeries(s.series);
}

function selectSources(sources: ImageSource[], seriesUID: string | undefined, input: string): ImageSource[] {
  if (seriesUID === undefined) return sources;
  const hit = sources.filter(
    (s) => s.kind === 'dicom-series' && (s.series.id === seriesUID || s.series.seriesInstanceUID === seriesUID),
  );
  if (hit.length === 0) {
    const available = sources.filter((s) => s.kind === 'dicom-series').map(describeSource);
    throw new InputError(
      `series ${seriesUID} not found${available.length ? `; available: ${available.join('; ')}` : ' (no DICOM series here)'}`,
      input,
    );
  }
  return hit;
}

async function readSource(source: ImageSource, volumeIndex: number | undefined): Promise<Volume> {
  if (source.kind === 'nifti') {
    return readNiftiFile(source.path, volumeIndex === undefined ? { allFrames: true } : { volumeIndex });
  }
  const vol = await readDicomSeries(source.series.files, { seriesUID: source.series.id });
  if (volumeIndex === undefined) return vol;
  if (volumeIndex >= vol.frames) {
    throw new InputError(`--volume ${volumeIndex} is out of range: the series has ${vol.frames} volume(s)`, source.path);
  }
  const n = vol.voxelCount;
  return new Volume({ data: vol.data.slice(volumeIndex * n, (volumeIndex + 1) * n), dims: vol.dims, affine: vol.affine, meta: vol.meta });
}

/** Same voxels in the smallest storage type that keeps every value exact. */
function exactCopy(vol: Volume): Volume {
  const dt = exactDatatype(vol.data, vol.meta.sourceDatatype);
  return vol.withData(toDatatype(vol.data, dt), vol.frames);
}

/**
 * The SSL4MIS HDF5 layout (the paper's ACDC protocol): one `<case>.h5` volume, or a list file
 * (`ROOT/data_list/test.list`) whose every case becomes `<case>.nii.gz` in --out, its labels in
 * --labels-out. The files carry no geometry: unit spacing (distances in voxels, as the released
 * test script scores) unless --spacing is given.
 */
async function convertSsl4mis(
  input: string,
  opts: { out: string; labelsOut?: string; spacing?: [number, number, number]; force: boolean; quiet: boolean; signal: AbortSignal },
): Promise<void> {
  const cases = input.endsWith('.list')
    ? await (async () => {
        const { root, name } = ssl4misRootOfList(input);
        return (await readSsl4misList(root, name)).map((id) => ({ id, path: join(root, `${id}.h5`) }));
      })()
    : [{ id: basename(input).replace(/\.h5$/, ''), path: input }];
  const target = await resolveOutputTarget(opts.out);
  if (cases.length > 1 && target.kind === 'file') throw new InputError(`${cases.length} volumes listed; give --out a folder`, input);
  const images = cases.map((c) => (target.kind === 'file' ? target.path : outputFileFor(target.path, c.id)));
  const labelTarget = opts.labelsOut ? await resolveOutputTarget(opts.labelsOut) : undefined;
  if (labelTarget?.kind === 'file' && cases.length > 1) throw new InputError(`${cases.length} volumes listed; give --labels-out a folder`, input);
  const labels = labelTarget ? cases.map((c) => (labelTarget.kind === 'file' ? labelTarget.path : outputFileFor(labelTarget.path, c.id))) : [];
  await checkOverwrite([...images, ...labels], opts.force);
  const progress = cases.length > 1 ? createProgress({ total: cases.length, label: 'converting', quiet: opts.quiet }) : undefined;
  for (const [n, c] of cases.entries()) {
    throwIfCancelled(opts.signal);
    const { image, label } = await readSsl4misVolume(c.path, { spacing: opts.spacing });
    if (labelTarget && !label) throw new InputError('has no "label" dataset for --labels-out', c.path);
    await writeNiftiFile(images[n], image);
    if (label && labelTarget) await writeNiftiFile(labels[n], label);
    progress?.tick();
    if (!opts.quiet) process.stdout.write(`wrote ${images[n]}${labelTarget ? ` and ${labels[n]}` : ''} (${image.dims.join('×')})\n`);
  }
  progress?.finish();
}

function parseSpacing(text: string | undefined): [number, number, number] | undefined {
  if (text === undefined) return undefined;
  const v = text.split(',').map(Number);
  if (v.length !== 3 || v.some((x) => !(x > 0))) throw new UsageError(`--spacing must be three positive numbers X,Y,Z in mm, got "${text}"`);
  return v as [number, number, number];
}

await runCommand(COMMAND, async (args, { signal }) => {
  const argv = await commandLine(
    COMMAND,
    args,
    'INPUT --out FILE.nii.gz|DIR [--series UID] [--volume N]',
    'Convert a DICOM series or a NIfTI file to NIfTI in the source geometry (same voxel order, affine ' +
      'voxel → RAS+ mm as read, values after rescaling, stored in a type that keeps them exact). INPUT is ' +
      'a file or a folder; a folder with several series needs --series, or --out naming a folder to ' +
      'write one file per series. An SSL4MIS HDF5 volume (<case>.h5) or list (ROOT/data_list/test.list) ' +
      'converts to NIfTI images, and with --labels-out their labels, to score the ACDC test list with alhvr-eval.',
  )
    .option('out', {
      alias: 'o',
      type: 'string',
      demandOption: true,
      description: 'Output .nii/.nii.gz file, or a folder (existing, ending in "/", or without a NIfTI extension)',
    })
    .option('series', { type: 'string', description: 'SeriesInstanceUID of the series to convert (see alhvr-info)' })
    .option('volume', { type: 'number', description: 'Convert only this 0-based volume of a 4D input (default: all volumes)' })
    .option('force', { type: 'boolean', default: false, description: 'Overwrite existing output files' })
    .option('labels-out', { type: 'string', description: 'SSL4MIS .h5/.list input: also write the "label" datasets (a file, or a folder for a list)' })
    .option('spacing', { type: 'string', description: 'SSL4MIS .h5/.list input: voxel spacing X,Y,Z in mm (default 1,1,1: distances in voxels, as the released test script scores)' })
    .demandCommand(1, 1, 'give one INPUT', 'give only one INPUT')
    .parseAsync();
  const input = String(argv._[0]);
  const volumeIndex = argv.volume;
  if (volumeIndex !== undefined && !(Number.isInteger(volumeIndex) && volumeIndex >= 0)) {
    throw new UsageError(`--volume must be a whole number ≥ 0, got ${String(volumeIndex)}`);
  }
  if (argv.out.trim() === '') throw new UsageError('--out must not be empty');
  if (/\.(h5|list)$/.test(input)) {
    await convertSsl4mis(input, { out: argv.out, labelsOut: argv['labels-out'], spacing: parseSpacing(argv.spacing), force: argv.force, quiet: argv.quiet, signal });
    return;
  }
  if (argv['labels-out'] !== undefined || argv.spacing !== undefined) throw new UsageError('--labels-out and --spacing apply to SSL4MIS .h5/.list inputs only');

  const target = await resolveOutputTarget(argv.out);
  const { sources: all } = await expandInputs([input], { signal });
  const sources = selectSources(all, argv.series, input);
  if (sources.length > 1 && target.kind === 'file') {
    const what = sources.every((s) => s.kind === 'dicom-series') ? 'series' : 'images';
    throw new InputError(
      `${sources.length} ${what} found; choose one with --series UID or give --out a folder: ${sources.map(describeSource).join('; ')}`,
      input,
    );
  }
  const outputs = sources.map((s) => (target.kind === 'file' ? target.path : outputFileFor(target.path, s.id)));
  await checkOverwrite(outputs, argv.force);

  const progress = sources.length > 1 ? createProgress({ total: sources.length, label: 'converting', quiet: argv.quiet }) : undefined;
  for (let n = 0; n < sources.length; n++) {
    throwIfCancelled(signal);
    const vol = exactCopy(await readSource(sources[n], volumeIndex));
    throwIfCancelled(signal);
    await writeNiftiFile(outputs[n], vol);
    progress?.tick();
    if (!argv.quiet) {
      const type = vol.data.constructor.name.replace(/Array$/, '').toLowerCase();
      const frames = vol.frames > 1 ? `×${vol.frames}` : '';
      process.stdout.write(`wrote ${outputs[n]} (${vol.dims.join('×')}${frames} ${type})\n`);
    }
    const source = sources[n];
    const label = source.kind === 'nifti' ? source.path : `series ${source.series.id}`;
    for (const w of vol.meta.warnings) process.stderr.write(`${COMMAND}: warning: ${label}: ${w}\n`);
  }
  progress?.finish();
});
