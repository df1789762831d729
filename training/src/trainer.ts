/**
 * The ALHVR training loop, top to bottom: backend, data, the students, then per iteration
 * batch → forward both students → objective → one backward pass → step both optimisers → log;
 * validation and checkpoints on a schedule. Everything a run decides lives in its TrainConfig.
 */
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { InputError, Rng, TOOLKIT_VERSION, type RngState } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';
import { selectBackend } from './backend/select-backend.js';
import { guardStepMemory } from './backend/out-of-memory.js';
import { preprocessingOf, pseudoSlicesPerBatch, type TrainConfig } from './config.js';
import { openPseudoStream, pseudoSourceLocation, pseudoSourceRecordName, type PseudoDicomwebAccess, type PseudoStream } from './data/pseudo-labels.js';
import { openNnunetDataset } from './data/nnunet-dataset.js';
import { openAcdcH5Dataset } from './data/acdc-h5-dataset.js';
import type { SliceDataset, SliceRef } from './data/slice-dataset.js';
import { openBratsH5Volumes, openNnunetVolumes, type VolumeDataset } from './data/volume-dataset.js';
import { VolumeBatches } from './data/volume-batches.js';
import type { BatchSamplerState } from './data/batch-sampler.js';
import { Batches, disposeBatch } from './data/batches.js';
import { Students } from './students.js';
import { loadInitialParameters } from './init-from-run.js';
import { stepLoss } from './objective.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointFile } from './checkpoint.js';
import { validate, type ValidationResult } from './validate.js';

/** Everything besides tensors that a checkpoint must restore for an exact resume. */
export interface TrainState {
  version: 1;
  iteration: number;
  config: TrainConfig;
  rng: { netA: RngState; netB: RngState; data: RngState };
  sampler: BatchSamplerState;
  /** γ of the last iteration: the value an exported model carries. */
  gamma: number;
  best: { a: BestRecord | null; b: BestRecord | null };
  datasetFingerprint: string;
  backend: string;
  /** With pseudo-labels: their stream's sampler, and the segment folders' full paths (config keeps names only). */
  pseudo?: { sampler: BatchSamplerState; dirs: string[] };
}

export interface BestRecord {
  iteration: number;
  meanDice: number;
  result: Omit<ValidationResult, 'summary'>;
}

export interface IterationRecord {
  type: 'iteration';
  iteration: number;
  loss: number;
  terms: Record<string, number>;
  gamma: number;
  regions: { omega1: number; omega2: number; omega3: number };
  weight: number;
  lr: number;
  stepMs: number;
  tensors: number;
}

export interface ValidationRecord {
  type: 'validation';
  iteration: number;
  student: 'a' | 'b';
  meanDice: number;
  meanHd95Mm: number;
  perClass: BestRecord['result']['perClass'];
  best: boolean;
}

export interface TrainEvents {
  log?: (message: string) => void;
  onStart?: (info: { config: TrainConfig; startIteration: number; backend: string; labeledSlices: number; unlabeledSlices: number }) => void;
  onIteration?: (record: IterationRecord) => void;
  onValidation?: (record: ValidationRecord) => void;
}

export interface TrainOptions {
  /** Continue from RUN_DIR/latest.ckpt. */
  resume?: boolean;
  /** Stop after the current iteration and write `latest` (Ctrl-C). */
  signal?: AbortSignal;
  events?: TrainEvents;
  /** Headers, CA and timeouts for DICOMweb servers in pseudoLabels: kept out of the config, which is recorded. */
  pseudoLabelAccess?: PseudoDicomwebAccess;
}

export interface TrainResult {
  iteration: number;
  stopped: boolean;
  gamma: number;
  best: TrainState['best'];
}

export const checkpointPath = (out: string, name: 'latest' | 'best-a' | 'best-b') => join(out, `${name}.ckpt`);

async function openDataset(c: TrainConfig, log: (m: string) => void): Promise<SliceDataset> {
  if (c.format === 'brats-h5') throw new InputError('format brats-h5 holds 3D volumes; train it with --network vnet3d', c.data);
  if (c.format === 'acdc-h5') return openAcdcH5Dataset(c.data, { labeledSlices: c.labeledSlices, preprocessing: c.preprocessing });
  return openNnunetDataset(c.data, {
    preprocessing: c.preprocessing,
    labeledCases: c.labeledCases,
    valCases: c.valCases,
    unlabeledDir: c.unlabeledDir,
    cacheDir: join(c.out, 'cache'),
    onProgress: (done, total) => {
      if (done === total) log(`preprocessed ${total} cases into ${join(c.out, 'cache')}`);
    },
  });
}

const exists = (p: string) => stat(p).then(() => true, () => false);

/** Drop metrics lines written after the checkpoint a resumed run restarts from. */
async function truncateMetrics(path: string, iteration: number): Promise<void> {
  if (!(await exists(path))) return;
  const kept = (await readFile(path, 'utf8'))
    .split('\n')
    .filter((line) => line && (JSON.parse(line) as { iteration: number }).iteration <= iteration);
  await writeFileAtomic(path, kept.map((l) => `${l}\n`).join(''));
}

/**
 * The run's config (a resumed run keeps its saved recipe; only the iteration budget, the folders
 * and the backend are today's) and, when resuming, its latest checkpoint.
 */
async function startOrResume(config: TrainConfig, resume: boolean): Promise<{ config: TrainConfig; resumed?: CheckpointFile<TrainState> }> {
  const latest = checkpointPath(config.out, 'latest');
  if (!resume) {
    if (await exists(latest)) throw new InputError('already holds a training run (latest.ckpt); pass --resume to continue it or choose another --out', config.out);
    return { config };
  }
  if (!(await exists(latest))) throw new InputError('nothing to resume: no latest.ckpt', config.out);
  const resumed = await loadCheckpoint<TrainState>(latest);
  const saved = resumed.state.config;
  // The run folder and dataset are where they are now (a moved run keeps writing into itself;
  // the dataset fingerprint still checks the data is the same).
  return {
    resumed,
    // Checkpoints from before 3D networks existed trained the 2D U-Net.
    config: { ...saved, network: saved.network ?? 'unet2d', preprocessing: preprocessingOf(saved), data: config.data, out: config.out, iterations: config.iterations, backend: config.backend, threads: config.threads, pseudoLabels: resumed.state.pseudo?.dirs ?? saved.pseudoLabels },
  };
}

interface RunData {
  dataset: SliceDataset | VolumeDataset;
  pseudo?: PseudoStream;
  /** The dataset's unlabeled pool less the images that carry pseudo-labels (3D: case ids). */
  unlabeled: SliceRef[] | string[];
  perBatch: { labeled: number; pseudo: number; unlabeled: number };
  config: TrainConfig;
}

/** The two refusals both data shapes share: an empty unlabeled pool for ALHVR, and data that changed under a resumed run. */
function checkPools(config: TrainConfig, dataset: { fingerprint: string }, unlabeledCount: number, resumed: TrainState | undefined): void {
  if (config.method === 'alhvr' && unlabeledCount === 0) {
    throw new InputError('the unlabeled pool is empty: add images without labels, lower --labeled-cases, pass --unlabeled DIR, or train with --method supervised', config.data);
  }
  if (resumed && resumed.datasetFingerprint !== dataset.fingerprint) {
    throw new InputError('the dataset changed since this run started (fingerprint differs); resume with the same data', config.data);
  }
}

/**
 * A 3D run's volumes. The preprocessing block comes back complete (a CT rule with the numbers
 * measured on the training set) and replaces the config's, so checkpoints and config.json carry
 * what the volumes were prepared with.
 */
async function openVolumeRunData(config: TrainConfig, resumed: TrainState | undefined, log: (m: string) => void): Promise<RunData> {
  const dataset =
    config.format === 'brats-h5'
      ? await openBratsH5Volumes(config.data, { labeledCases: config.labeledCases, preprocessing: config.preprocessing })
      : await openNnunetVolumes(config.data, { labeledCases: config.labeledCases, valCases: config.valCases, unlabeledDir: config.unlabeledDir, cacheDir: join(config.out, 'cache'), preprocessing: config.preprocessing, log });
  const perBatch = { labeled: config.batchLabeled, pseudo: 0, unlabeled: config.method === 'alhvr' ? config.batchUnlabeled : 0 };
  if (perBatch.labeled > dataset.labeled.length) {
    throw new InputError(`a batch of ${perBatch.labeled} labelled crops is larger than the ${dataset.labeled.length} labelled cases (one crop per case per batch)`, config.data);
  }
  checkPools(config, dataset, dataset.unlabeled.length, resumed);
  return { dataset, unlabeled: dataset.unlabeled, perBatch, config: { ...config, preprocessing: dataset.preprocessing } };
}

/** Open the dataset and pseudo-labels and refuse a batch they cannot fill, or data that changed under a resumed run. */
async function openRunData(config: TrainConfig, resumed: TrainState | undefined, log: (m: string) => void, access: { dicomweb?: PseudoDicomwebAccess; signal?: AbortSignal } = {}): Promise<RunData> {
  if (config.network === 'vnet3d') return openVolumeRunData(config, resumed, log);
  const dataset = await openDataset(config, log);
  const alhvr = config.method === 'alhvr';
  // Pseudo-labelled slices take pseudoFraction of the labelled batch; their images leave the unlabeled pool.
  const pseudo = await openPseudoStream(dataset, config, log, access);
  const unlabeled = pseudo?.unlabeled ?? dataset.unlabeled;
  const perBatch = { labeled: config.batchLabeled - pseudoSlicesPerBatch(config), pseudo: pseudoSlicesPerBatch(config), unlabeled: alhvr ? config.batchUnlabeled : 0 };
  if (pseudo && perBatch.pseudo > pseudo.set.slices.length) {
    throw new InputError(`${perBatch.pseudo} pseudo-labelled slices per batch is more than the ${pseudo.set.slices.length} pseudo-labelled slices available`, config.pseudoLabels?.[0]);
  }
  if (pseudo && resumed && JSON.stringify(resumed.config.pseudoLabelSources) !== JSON.stringify(pseudo.set.sources)) {
    throw new InputError('the pseudo-labels changed since this run started (segment manifests or case counts differ); resume with the same segment folders', config.out);
  }
  if (pseudo) {
    config = { ...config, pseudoLabelSources: pseudo.set.sources };
    for (const s of pseudo.set.sources) log(`pseudo-labels from ${s.name}: ${JSON.stringify(s.cases)} cases; ${pseudo.set.slices.length} slices in all, ${perBatch.pseudo} of ${config.batchLabeled} labelled slices per batch, weighting ${config.pseudoWeighting}`);
  }
  if (perBatch.labeled > dataset.labeled.length) {
    throw new InputError(`a batch of ${perBatch.labeled} labelled slices is larger than the ${dataset.labeled.length} labelled slices available`, config.data);
  }
  checkPools(config, dataset, unlabeled.length, resumed);
  return { dataset, pseudo, unlabeled, perBatch, config };
}

/** Segment folders by name only: the exported card copies this config and must carry no paths. */
const publicConfig = (config: TrainConfig): TrainConfig => ({
  ...config,
  ...(config.pseudoLabels ? { pseudoLabels: config.pseudoLabels.map(pseudoSourceRecordName) } : {}),
  ...(config.init ? { init: basename(config.init) } : {}),
});

export async function train(config: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const events = options.events ?? {};
  const log = events.log ?? ((m: string) => console.log(m));

  // ---- run, backend, data -------------------------------------------------------------------
  const start = await startOrResume(config, options.resume ?? false);
  const resumed = start.resumed;
  await mkdir(start.config.out, { recursive: true });
  const backend = await selectBackend(start.config.backend, { threads: start.config.threads, log });
  const data = await openRunData(start.config, resumed?.state, log, { dicomweb: options.pseudoLabelAccess, signal: options.signal });
  config = data.config;
  const { dataset, pseudo } = data;
  const alhvr = config.method === 'alhvr';

  // ---- the students and the batch streams (random streams forked in a fixed order) ------------
  const root = new Rng(config.seed);
  const init: [Rng, Rng] = [root.fork(1), root.fork(2)];
  const forward: [Rng, Rng] = [root.fork(3), root.fork(4)];
  const augment = root.fork(5);
  const samplerSeed = root.nextUint32();
  const students = new Students({
    count: alhvr ? 2 : 1,
    network: config.network,
    net: { numClasses: dataset.classes.length, widths: config.widths, dropout: config.dropout, vnetDropout: config.vnetDropout },
    optimiser: config,
    init,
    forward,
  });
  // Drawn after every other stream, so runs without pseudo-labels draw exactly what they did before.
  const pseudoSeed = root.nextUint32();
  const saved = resumed?.state;
  const batches =
    config.network === 'vnet3d'
      ? new VolumeBatches({
          dataset: dataset as VolumeDataset,
          patch: config.patch,
          perBatch: data.perBatch,
          cropOffsets: config.cropOffsets,
          padValue: config.padValue,
          cropAugment: config.cropAugment,
          foregroundOversample: config.foregroundOversample,
          draws: saved ? { sampler: saved.sampler, augment: new Rng(saved.rng.data) } : { sampler: samplerSeed, augment },
        })
      : new Batches({
          dataset: dataset as SliceDataset,
          unlabeled: data.unlabeled as SliceRef[],
          pseudo: pseudo?.set,
          patch: config.patch,
          resize: config.preprocessing.resize,
          perBatch: data.perBatch,
          draws: saved
            ? { sampler: saved.sampler, pseudoSampler: saved.pseudo?.sampler ?? pseudoSeed, augment: new Rng(saved.rng.data) }
            : { sampler: samplerSeed, pseudoSampler: pseudoSeed, augment },
        });
  let iteration = saved?.iteration ?? 0;
  let gamma = saved ? (saved.gamma ?? NaN) : NaN; // a supervised run has no γ; JSON stores its NaN as null
  let best: TrainState['best'] = saved?.best ?? { a: null, b: null };
  const metricsPath = join(config.out, 'metrics.jsonl');
  try {
    if (!resumed && config.init) {
      const initial = await loadInitialParameters(config.init, alhvr ? ['a', 'b'] : ['a'], config.network);
      students.assignParameters(initial.params, config.init);
      config = { ...config, initSource: initial.source };
      log(`students start from ${config.init} (${Object.keys(initial.params).map((k) => `best-${k}.ckpt`).join(', ')}; momentum and schedule fresh)`);
    }
    if (resumed) {
      students.restore(resumed.groups, resumed.state.rng);
      await truncateMetrics(metricsPath, iteration);
      log(`resuming from iteration ${iteration}`);
    }
  } catch (err) {
    // Before the loop's own cleanup: a refused start leaves no variables behind to clash with the next run.
    await dataset.close();
    await pseudo?.set.close();
    students.dispose();
    throw err;
  }

  const state = (): TrainState => {
    const draws: ReturnType<Batches['state']> = batches.state();
    return {
      version: 1,
      iteration,
      config: publicConfig(config),
      rng: { ...students.rngState(), data: draws.augment },
      sampler: draws.sampler,
      gamma,
      best,
      datasetFingerprint: dataset.fingerprint,
      backend: backend.name,
      ...(pseudo && draws.pseudoSampler ? { pseudo: { sampler: draws.pseudoSampler, dirs: config.pseudoLabels!.map(pseudoSourceLocation) } } : {}),
    };
  };
  const save = (name: 'latest' | 'best-a' | 'best-b') => saveCheckpoint(checkpointPath(config.out, name), state(), students.state());

  await writeFileAtomic(
    join(config.out, 'config.json'),
    JSON.stringify(
      {
        config: publicConfig(config),
        versions: { toolkit: TOOLKIT_VERSION, tfjs: tf.version_core, node: process.versions.node },
        backend: { name: backend.name, threads: backend.threads, description: backend.description },
        dataset: { fingerprint: dataset.fingerprint, format: dataset.format, labeledSlices: dataset.labeled.length, unlabeledSlices: data.unlabeled.length, ...(pseudo ? { pseudoLabeledSlices: pseudo.set.slices.length } : {}), validation: dataset.validationIds, classes: dataset.classes },
        parameters: students.a.parameterCount(),
      },
      null,
      2,
    ),
  );
  events.onStart?.({ config, startIteration: iteration, backend: backend.description, labeledSlices: dataset.labeled.length, unlabeledSlices: data.unlabeled.length });

  // ---- the loop --------------------------------------------------------------------------------
  let stopped = false;
  try {
    while (iteration < config.iterations) {
      if (options.signal?.aborted) {
        stopped = true;
        break;
      }
      const t0 = performance.now();
      const batch = await batches.next();
      // Forward both students on the batch, the objective, one backward pass; then step both.
      const step = guardStepMemory(backend.name, config, () =>
        students.gradients(() => stepLoss(students.forward(batch.images, alhvr), batch, iteration, config)),
      );
      students.step(step.grads);
      const loss = (await step.loss.data())[0];
      const terms: Record<string, number> = {};
      for (const [k, t] of Object.entries(step.terms)) terms[k] = (await t.data())[0];
      tf.dispose([step.loss, ...Object.values(step.terms)]);
      disposeBatch(batch);
      iteration++;
      if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at iteration ${iteration}; stopping (latest checkpoint kept)`);
      if (alhvr) gamma = terms.gamma;

      const record: IterationRecord = {
        type: 'iteration',
        iteration,
        loss,
        terms,
        gamma,
        regions: { omega1: terms.omega1Fraction ?? NaN, omega2: terms.omega2Fraction ?? NaN, omega3: terms.omega3Fraction ?? NaN },
        weight: step.weight,
        lr: config.lr,
        stepMs: performance.now() - t0,
        tensors: tf.memory().numTensors,
      };
      await appendFile(metricsPath, `${JSON.stringify(record)}\n`);
      events.onIteration?.(record);

      if (iteration % config.valEvery === 0 || iteration === config.iterations) {
        for (const { key, net } of students.nets()) {
          const result = await validate(net, dataset, config.patch, config.preprocessing.resize);
          const previous = best[key];
          const isBest = !previous || result.meanDice > previous.meanDice;
          const { summary: _summary, ...compact } = result;
          if (isBest) best = { ...best, [key]: { iteration, meanDice: result.meanDice, result: compact } };
          const v: ValidationRecord = { type: 'validation', iteration, student: key, meanDice: result.meanDice, meanHd95Mm: result.meanHd95, perClass: result.perClass, best: isBest };
          await appendFile(metricsPath, `${JSON.stringify(v)}\n`);
          events.onValidation?.(v);
          if (isBest) await save(key === 'a' ? 'best-a' : 'best-b');
        }
      }
      if (iteration % config.checkpointEvery === 0 || iteration === config.iterations) await save('latest');
    }
    if (stopped) {
      await save('latest');
      log(`stopped at iteration ${iteration}; latest.ckpt written (resume with --resume)`);
    }
  } finally {
    await dataset.close();
    await pseudo?.set.close();
    // After a wasm abort the backend is dead and disposing throws; the first error is the one to report.
    try {
      students.dispose();
    } catch {
      /* backend already failed */
    }
  }
  return { iteration, stopped, gamma, best };
}

/** Used by tests and tools that want the JSON lines back. */
export async function readMetrics(out: string): Promise<(IterationRecord | ValidationRecord)[]> {
  const text = await readFile(join(out, 'metrics.jsonl'), 'utf8');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
