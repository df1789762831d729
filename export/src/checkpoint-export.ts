/**
 * Node-only: rebuild the students of a training run (or one checkpoint file) as live networks
 * (UNet, or VNet3d for a `network: "vnet3d"` run) and derive the model card from what the run
 * recorded (TrainState in the checkpoint, config.json).
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { InputError, Rng, type ModelClass } from '@alhvr/core';
import { checkpointPath, loadCheckpoint, preprocessingOf, UNet, VNet3d, type TrainState } from '@alhvr/training';
import type { ExportCard, StudentSelection } from './export-onnx.js';

/** Distinct display colours for classes 1..n (0 is background, black). */
const PALETTE: [number, number, number][] = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
];

/** A student rebuilt from a checkpoint: the run's network. */
export type ExportStudent = UNet | VNet3d;

export interface LoadedRun {
  /** Student a then b (one entry for a one-student selection or a supervised run). */
  students: ExportStudent[];
  /** 3 for a VNet3d run (the card's `dimensions`), 2 otherwise. */
  dimensions: 2 | 3;
  selection: StudentSelection;
  card: ExportCard;
  /** Which checkpoint file each student came from. */
  sources: string[];
}

export interface LoadRunOptions {
  students?: StudentSelection;
  /** Override γ (recorded as gammaSource 'calibrated'). */
  gamma?: number;
}

const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);
const isDir = (p: string) => stat(p).then((s) => s.isDirectory(), () => false);

/** The run's network: training's config field (runs from before 3D have none and are 2D). */
function runDimensions(config: TrainState['config']): 2 | 3 {
  return (config as { network?: string }).network === 'vnet3d' ? 3 : 2;
}

function buildStudent(groups: Awaited<ReturnType<typeof loadCheckpoint>>['groups'], key: 'a' | 'b', state: TrainState, file: string): ExportStudent {
  const params = groups[`${key}.params`];
  if (!params) throw new InputError(`checkpoint has no parameters for student ${key}`, file);
  const dims = runDimensions(state.config);
  const what = dims === 3 ? 'VNet3d' : 'U-Net';
  const out = params.get('dec.out.kernel');
  // The head's kernel is [1, 1, C_in, C] in 2D and [1, 1, 1, C_in, C] in 3D: its last axis is the class count.
  if (!out || out.shape.length !== dims + 2) throw new InputError(`checkpoint student ${key} has no ${dims}D dec.out.kernel; not an ALHVR ${what}`, file);
  const numClasses = out.shape[out.shape.length - 1];
  // Dropout is a training-time layer; the exporter reads parameters only.
  const net: ExportStudent =
    dims === 3
      ? new VNet3d({ numClasses, widths: state.config.widths, dropout: 0 }, new Rng(0))
      : new UNet({ numClasses, widths: state.config.widths, dropout: state.config.dropout }, new Rng(0));
  const known = new Set(net.params.names());
  for (const [name, t] of params) {
    if (!known.has(name)) {
      net.dispose();
      throw new InputError(`checkpoint student ${key} has parameter "${name}" [${t.shape}] that is not part of the ALHVR ${what} (unknown layer); refusing to export`, file);
    }
  }
  try {
    net.params.assign(Object.fromEntries([...params].map(([n, t]) => [n, t.data])));
  } catch (err) {
    net.dispose();
    throw new InputError(`checkpoint student ${key}: ${(err as Error).message}`, file);
  }
  return net;
}

async function readClasses(runDir: string, numClasses: number): Promise<ModelClass[]> {
  const file = join(runDir, 'config.json');
  let recorded: { value: number; name: string }[] | undefined;
  try {
    recorded = (JSON.parse(await readFile(file, 'utf8')) as { dataset?: { classes?: { value: number; name: string }[] } }).dataset?.classes;
  } catch {
    throw new InputError('cannot read the run\'s config.json (class names come from it)', file);
  }
  if (!Array.isArray(recorded) || recorded.length !== numClasses) {
    throw new InputError(`config.json lists ${recorded?.length ?? 'no'} classes, the network outputs ${numClasses}`, file);
  }
  return recorded.map((c, i) => ({ value: c.value, name: c.name, color: i === 0 ? [0, 0, 0] : PALETTE[(i - 1) % PALETTE.length] }));
}

/**
 * RUN_DIR: student a from best-a.ckpt and b from best-b.ckpt (best validation Dice, as the
 * method keeps them), falling back to latest.ckpt when a run has not validated yet; γ from
 * latest.ckpt (the value training ended with). CHECKPOINT: both students and γ from that file.
 */
export async function loadRunForExport(path: string, opts: LoadRunOptions = {}): Promise<LoadedRun> {
  const runDir = (await isDir(path)) ? path : dirname(path);
  if (!(await isDir(path)) && !(await isFile(path))) throw new InputError('no such run folder or checkpoint', path);
  const latestFile = (await isDir(path)) ? checkpointPath(runDir, 'latest') : path;
  if (!(await isFile(latestFile))) throw new InputError('run folder has no latest.ckpt', runDir);
  const latest = await loadCheckpoint<TrainState>(latestFile);
  const state = latest.state;
  if (!state?.config?.widths) throw new InputError('checkpoint has no training state', latestFile);
  const twoStudents = state.config.method === 'alhvr' && latest.groups['b.params'] !== undefined;
  const selection = opts.students ?? (twoStudents ? 'both' : 'a');
  if (!twoStudents && selection !== 'a') throw new InputError(`a ${state.config.method} run has one student (a); --students ${selection} is not available`, path);
  const keys: ('a' | 'b')[] = selection === 'both' ? ['a', 'b'] : [selection];

  const dimensions = runDimensions(state.config);
  const students: ExportStudent[] = [];
  const sources: string[] = [];
  for (const key of keys) {
    let file = latestFile;
    let groups = latest.groups;
    if (latestFile !== path && (await isFile(checkpointPath(runDir, `best-${key}`)))) {
      file = checkpointPath(runDir, `best-${key}`);
      groups = (await loadCheckpoint<TrainState>(file)).groups;
    }
    students.push(buildStudent(groups, key, state, file));
    sources.push(file);
  }

  let gamma = state.gamma;
  let gammaSource: 'training-final' | 'calibrated' | 'default' = 'training-final';
  if (opts.gamma !== undefined) {
    gamma = opts.gamma;
    gammaSource = 'calibrated';
  } else if (!(Number.isFinite(gamma) && gamma > 0 && gamma <= 1)) {
    if (selection === 'both') throw new InputError(`the run recorded no usable γ (${gamma}); pass --gamma`, latestFile);
    gamma = 0.5; // one-student models carry no region output; the card still needs a value
    gammaSource = 'default';
  }
  const best = Object.fromEntries(
    (['a', 'b'] as const).filter((k) => state.best?.[k]).map((k) => [k, { iteration: state.best[k]!.iteration, meanDice: state.best[k]!.meanDice }]),
  );
  const patch = state.config.patch;
  // Verbatim from the run: the card says how its model was trained (the recipe for runs saved
  // before the block existed, which is what they were trained with).
  const preprocessing = preprocessingOf(state.config);
  const config = { ...state.config, preprocessing };
  const targetSpacing = (preprocessing as { targetSpacing?: [number, number, number] }).targetSpacing;
  if (dimensions === 3 && !targetSpacing) throw new InputError('a vnet3d run whose preprocessing has no targetSpacing cannot be exported (inference resamples to it)', latestFile);
  const card: ExportCard = {
    name: basename(runDir),
    description: `ALHVR ${state.config.method} ${dimensions === 3 ? 'VNet 3D' : 'U-Net'}, ${keys.length === 2 ? 'two-student ensemble' : `student ${keys[0]}`}, students from ${sources.map((f) => basename(f)).join(' and ')}, γ from ${basename(latestFile)}`,
    classes: await readClasses(runDir, students[0].config.numClasses),
    ...(dimensions === 3
      ? { dimensions: 3 as const, input: { size: [patch, patch, patch] as [number, number, number], sliceAxis: preprocessing.sliceAxis }, targetSpacing }
      : { input: { size: [patch, patch] as [number, number], sliceAxis: preprocessing.sliceAxis } }),
    normalisation: preprocessing.normalisation,
    resize: preprocessing.resize,
    regions: { gamma, beta: state.config.proportion, gammaSource },
    training: {
      method: state.config.method,
      iterations: state.iteration,
      datasetFingerprint: state.datasetFingerprint,
      // The card ships inside a public file: folders of the training machine keep their names only.
      config: { ...config, ...publicPaths(config) } as unknown as Record<string, unknown>,
      ...(Object.keys(best).length ? { bestValidation: best } : {}),
    },
  };
  return { students, dimensions, selection, card, sources };
}

function publicPaths(config: { data: string; out: string; unlabeledDir?: string }): Record<string, string> {
  const paths: Record<string, string> = { data: basename(config.data), out: basename(config.out) };
  if (config.unlabeledDir !== undefined) paths.unlabeledDir = basename(config.unlabeledDir);
  return paths;
}
