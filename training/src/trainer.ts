/**
 * The ALHVR training loop, top to bottom: backend, data, two students, then per iteration
 * batch → forward both → loss → one backward pass → step both optimisers → log; validation
 * and checkpoints on a schedule. Everything a run decides lives in its TrainConfig.
 */
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { InputError, Rng, TOOLKIT_VERSION, type RngState } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';
import { selectBackend } from './backend/select-backend.js';
import { guardStepMemory } from './backend/out-of-memory.js';
import { leanVariableGrads } from './backend/lean-gradients.js';
import { preprocessingOf, pseudoSlicesPerBatch, type TrainConfig } from './config.js';
import { openPseudoStream } from './data/pseudo-labels.js';
import { openNnunetDataset } from './data/nnunet-dataset.js';
import { openAcdcH5Dataset } from './data/acdc-h5-dataset.js';
import type { SliceDataset } from './data/slice-dataset.js';
import { BatchSampler, type BatchSamplerState } from './data/batch-sampler.js';
import { SliceAugmenter, drawAugmentation } from './data/augment.js';
import { UNet } from './model/unet.js';
import { alhvrLoss } from './losses/alhvr.js';
import { rampWeight } from './losses/ramp.js';
import { ceLoss, diceLoss, oneHotLabels } from './losses/supervised.js';
import { Sgd } from './sgd.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
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
}

export interface TrainResult {
  iteration: number;
  stopped: boolean;
  gamma: number;
  best: TrainState['best'];
}

export const checkpointPath = (out: string, name: 'latest' | 'best-a' | 'best-b') => join(out, `${name}.ckpt`);

async function openDataset(c: TrainConfig, log: (m: string) => void): Promise<SliceDataset> {
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

function restoreStudent(net: UNet, sgd: Sgd, groups: Awaited<ReturnType<typeof loadCheckpoint>>['groups'], key: 'a' | 'b'): void {
  const params = groups[`${key}.params`];
  const momentum = groups[`${key}.momentum`];
  if (!params) throw new InputError(`checkpoint has no parameters for student ${key}`);
  net.params.assign(Object.fromEntries([...params].map(([n, t]) => [n, tf.tensor(t.data, t.shape)])));
  if (momentum) {
    sgd.restore(new Map([...momentum].map(([n, t]) => [n, t.data])), new Map([...momentum].map(([n, t]) => [n, t.shape])), key);
  }
}

function studentGroups(net: UNet, sgd: Sgd, key: 'a' | 'b'): Record<string, Map<string, tf.Tensor>> {
  return { [`${key}.params`]: new Map(net.params.variables), [`${key}.momentum`]: new Map(sgd.state()) };
}

export async function train(config: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const events = options.events ?? {};
  const log = events.log ?? ((m: string) => console.log(m));
  const latest = checkpointPath(config.out, 'latest');

  // ---- resume or start fresh -------------------------------------------------------------
  let resumed: Awaited<ReturnType<typeof loadCheckpoint<TrainState>>> | undefined;
  if (options.resume) {
    if (!(await exists(latest))) throw new InputError('nothing to resume: no latest.ckpt', config.out);
    resumed = await loadCheckpoint<TrainState>(latest);
    // A resumed run keeps its saved recipe; only the iteration budget may be extended.
    const saved = resumed.state.config;
    // The run folder and dataset are where they are now (a moved run keeps writing into itself;
    // the dataset fingerprint below still checks the data is the same).
    config = { ...saved, preprocessing: preprocessingOf(saved), data: config.data, out: config.out, iterations: config.iterations, backend: config.backend, threads: config.threads, pseudoLabels: resumed.state.pseudo?.dirs ?? saved.pseudoLabels };
  } else if (await exists(latest)) {
    throw new InputError('already holds a training run (latest.ckpt); pass --resume to continue it or choose another --out', config.out);
  }
  await mkdir(config.out, { recursive: true });

  // ---- backend, data -----------------------------------------------------------------------
  const backend = await selectBackend(config.backend, { threads: config.threads, log });
  const dataset = await openDataset(config, log);
  const alhvr = config.method === 'alhvr';
  // Pseudo-labelled slices take pseudoFraction of the labelled batch; their images leave the unlabeled pool.
  const pseudo = await openPseudoStream(dataset, config, log);
  const unlabeledPool = pseudo?.unlabeled ?? dataset.unlabeled;
  const blPseudo = pseudoSlicesPerBatch(config);
  const blTrue = config.batchLabeled - blPseudo;
  if (pseudo && blPseudo > pseudo.set.slices.length) {
    throw new InputError(`${blPseudo} pseudo-labelled slices per batch is more than the ${pseudo.set.slices.length} pseudo-labelled slices available`, config.pseudoLabels?.[0]);
  }
  if (pseudo && resumed && JSON.stringify(resumed.state.config.pseudoLabelSources) !== JSON.stringify(pseudo.set.sources)) {
    throw new InputError('the pseudo-labels changed since this run started (segment manifests or case counts differ); resume with the same segment folders', config.out);
  }
  if (pseudo) {
    config = { ...config, pseudoLabelSources: pseudo.set.sources };
    for (const s of pseudo.set.sources) log(`pseudo-labels from ${s.name}: ${JSON.stringify(s.cases)} cases; ${pseudo.set.slices.length} slices in all, ${blPseudo} of ${config.batchLabeled} labelled slices per batch, weighting ${config.pseudoWeighting}`);
  }
  if (blTrue > dataset.labeled.length) {
    throw new InputError(`a batch of ${blTrue} labelled slices is larger than the ${dataset.labeled.length} labelled slices available`, config.data);
  }
  if (alhvr && unlabeledPool.length === 0) {
    throw new InputError('the unlabeled pool is empty: add images without labels, lower --labeled-cases, pass --unlabeled DIR, or train with --method supervised', config.data);
  }
  if (resumed && resumed.state.datasetFingerprint !== dataset.fingerprint) {
    throw new InputError('the dataset changed since this run started (fingerprint differs); resume with the same data', config.data);
  }

  // ---- two students, their optimisers and random streams -----------------------------------
  const root = new Rng(config.seed);
  const initA = root.fork(1);
  const initB = root.fork(2);
  let netRngA = root.fork(3);
  let netRngB = root.fork(4);
  let dataRng = root.fork(5);
  const samplerSeed = root.nextUint32();
  const netConfig = { numClasses: dataset.classes.length, widths: config.widths, dropout: config.dropout };
  const netA = new UNet(netConfig, initA, 'student_a');
  const netB = alhvr ? new UNet(netConfig, initB, 'student_b') : undefined;
  const sgdA = new Sgd(config.lr, config.momentum, config.weightDecay);
  const sgdB = new Sgd(config.lr, config.momentum, config.weightDecay);
  let sampler = new BatchSampler(dataset.labeled.length, unlabeledPool.length, blTrue, alhvr ? config.batchUnlabeled : 0, samplerSeed);
  // Drawn after every other stream, so runs without pseudo-labels draw exactly what they did before.
  const pseudoSeed = root.nextUint32();
  let pseudoSampler = pseudo ? new BatchSampler(pseudo.set.slices.length, 0, blPseudo, 0, pseudoSeed) : undefined;
  let iteration = 0;
  let gamma = NaN;
  let best: TrainState['best'] = { a: null, b: null };
  if (resumed) {
    const s = resumed.state;
    restoreStudent(netA, sgdA, resumed.groups, 'a');
    if (netB) restoreStudent(netB, sgdB, resumed.groups, 'b');
    netRngA = new Rng(s.rng.netA);
    netRngB = new Rng(s.rng.netB);
    dataRng = new Rng(s.rng.data);
    sampler = new BatchSampler(dataset.labeled.length, unlabeledPool.length, blTrue, alhvr ? config.batchUnlabeled : 0, s.sampler);
    if (pseudo && s.pseudo) pseudoSampler = new BatchSampler(pseudo.set.slices.length, 0, blPseudo, 0, s.pseudo.sampler);
    iteration = s.iteration;
    gamma = s.gamma ?? NaN; // a supervised run has no γ; JSON stores its NaN as null
    best = s.best;
    await truncateMetrics(join(config.out, 'metrics.jsonl'), iteration);
    log(`resuming from iteration ${iteration}`);
  }

  // Segment folders by name only: the exported card copies this config and must carry no paths.
  const publicConfig = (): TrainConfig => (config.pseudoLabels ? { ...config, pseudoLabels: config.pseudoLabels.map((d) => basename(resolve(d))) } : config);
  const state = (): TrainState => ({
    version: 1,
    iteration,
    config: publicConfig(),
    rng: { netA: netRngA.state(), netB: netRngB.state(), data: dataRng.state() },
    sampler: sampler.state(),
    gamma,
    best,
    datasetFingerprint: dataset.fingerprint,
    backend: backend.name,
    ...(pseudo && pseudoSampler ? { pseudo: { sampler: pseudoSampler.state(), dirs: config.pseudoLabels!.map((d) => resolve(d)) } } : {}),
  });
  const groups = () => ({ ...studentGroups(netA, sgdA, 'a'), ...(netB ? studentGroups(netB, sgdB, 'b') : {}) });
  const save = (name: 'latest' | 'best-a' | 'best-b') => saveCheckpoint(checkpointPath(config.out, name), state(), groups());

  await writeFileAtomic(
    join(config.out, 'config.json'),
    JSON.stringify(
      {
        config: publicConfig(),
        versions: { toolkit: TOOLKIT_VERSION, tfjs: tf.version_core, node: process.versions.node },
        backend: { name: backend.name, threads: backend.threads, description: backend.description },
        dataset: { fingerprint: dataset.fingerprint, format: dataset.format, labeledSlices: dataset.labeled.length, unlabeledSlices: unlabeledPool.length, ...(pseudo ? { pseudoLabeledSlices: pseudo.set.slices.length } : {}), validation: dataset.validationIds, classes: dataset.classes },
        parameters: netA.parameterCount(),
      },
      null,
      2,
    ),
  );
  events.onStart?.({ config, startIteration: iteration, backend: backend.description, labeledSlices: dataset.labeled.length, unlabeledSlices: unlabeledPool.length });

  // ---- reusable batch buffers ----------------------------------------------------------------
  const P = config.patch;
  const plane = P * P;
  const bl = config.batchLabeled;
  const batchSize = bl + (alhvr ? config.batchUnlabeled : 0);
  const images = new Float32Array(batchSize * plane);
  const labels = new Int32Array(bl * plane);
  const maxSliceVoxels = Math.max(dataset.maxSliceVoxels, pseudo?.set.maxSliceVoxels ?? 0);
  const { resize } = config.preprocessing;
  const augmenter = new SliceAugmenter(P, maxSliceVoxels, resize);
  const sliceImage = new Float32Array(maxSliceVoxels);
  const sliceLabel = new Uint8Array(maxSliceVoxels);
  // Per-pixel weights of the labelled part (1 for true labels), only when pseudo-labels are in play;
  // a pseudo slice's weights go through the same augmentation as its labels (nearest, zeros outside).
  const weights = pseudo ? new Float32Array(bl * plane) : undefined;
  const sliceWeight = pseudo ? new Float32Array(maxSliceVoxels) : undefined;
  const weightAugmenter = pseudo ? new SliceAugmenter(P, maxSliceVoxels, { image: resize.label, label: resize.label }) : undefined;
  const metricsPath = join(config.out, 'metrics.jsonl');
  const paramsA = netA.params.variables;
  const paramsB = netB?.params.variables;
  const trainable = [...netA.params.trainableVariables(), ...(netB ? netB.params.trainableVariables() : [])];
  const nameOf = new Map<string, { student: 'a' | 'b'; name: string }>();
  for (const [name, v] of paramsA) nameOf.set(v.name, { student: 'a', name });
  if (paramsB) for (const [name, v] of paramsB) nameOf.set(v.name, { student: 'b', name });

  let stopped = false;
  try {
    while (iteration < config.iterations) {
      if (options.signal?.aborted) {
        stopped = true;
        break;
      }
      const t0 = performance.now();

      // Batch: labelled slices first (true, then pseudo-labelled), then unlabeled; each augmented and resized to P×P.
      const drawn = sampler.next();
      const drawnPseudo = pseudoSampler?.next().labeled ?? [];
      const refs = [...drawn.labeled.map((n) => dataset.labeled[n]), ...drawnPseudo.map((n) => pseudo!.set.slices[n]), ...drawn.unlabeled.map((n) => unlabeledPool[n])];
      refs.forEach((ref, slot) => {
        const isLabeled = slot < bl;
        const isPseudo = slot >= blTrue && isLabeled;
        const { width, height } = isPseudo
          ? pseudo!.set.readSlice(ref, sliceImage, sliceLabel, sliceWeight!)
          : dataset.readSlice(ref, sliceImage, isLabeled ? sliceLabel : null);
        const choice = drawAugmentation(dataRng);
        augmenter.apply({ width, height, image: sliceImage.subarray(0, width * height), label: isLabeled ? sliceLabel.subarray(0, width * height) : undefined }, choice);
        images.set(augmenter.image, slot * plane);
        if (isLabeled) for (let p = 0; p < plane; p++) labels[slot * plane + p] = augmenter.label[p];
        if (weights && isPseudo) {
          weightAugmenter!.apply({ width, height, image: sliceWeight!.subarray(0, width * height) }, choice);
          weights.set(weightAugmenter!.image, slot * plane);
        } else if (weights && isLabeled) weights.fill(1, slot * plane, (slot + 1) * plane);
      });

      // Forward both students, the ALHVR objective, one backward pass.
      const x = tf.tensor4d(images, [batchSize, P, P, 1]);
      const y = tf.tensor3d(labels, [bl, P, P], 'int32');
      const w = weights ? tf.tensor3d(weights, [bl, P, P]) : undefined;
      let kept: Record<string, tf.Scalar> = {};
      const { value, grads } = guardStepMemory(backend.name, config, () => leanVariableGrads(() => {
        const outA = netA.forward(x, { training: true, rng: netRngA, auxiliary: alhvr });
        if (!netB) {
          const ce = ceLoss(outA.logits, y, w);
          const dice = diceLoss(tf.softmax(outA.logits, -1) as tf.Tensor4D, oneHotLabels(y, dataset.classes.length), { variant: config.diceLoss, weight: w });
          kept = { ceA: tf.keep(ce), diceA: tf.keep(dice) };
          return tf.add(ce, dice) as tf.Scalar;
        }
        const outB = netB.forward(x, { training: true, rng: netRngB });
        const terms = alhvrLoss(
          { logits: outA.logits, logitsAux: outA.logitsAux!, fea: outA.fea, feaAux: outA.feaAux! },
          { logits: outB.logits, logitsAux: outB.logitsAux!, fea: outB.fea, feaAux: outB.feaAux! },
          y,
          {
            labeledCount: bl,
            iteration,
            proportion: config.proportion,
            temperature: config.temperature,
            consistency: config.consistency,
            rampIterations: config.rampIterations,
            diceLoss: config.diceLoss,
            detachTeacher: config.detachTeacher,
            protoCe: config.protoCe,
            regions: config.regions,
            labelWeight: w,
          },
        );
        const { loss, weight: _weight, ...scalars } = terms;
        kept = Object.fromEntries(Object.entries(scalars).map(([k, t]) => [k, tf.keep(t as tf.Scalar)]));
        return loss;
      }, trainable));
      const gradsA: Record<string, tf.Tensor> = {};
      const gradsB: Record<string, tf.Tensor> = {};
      for (const [tfName, g] of Object.entries(grads)) {
        const owner = nameOf.get(tfName);
        if (owner) (owner.student === 'a' ? gradsA : gradsB)[owner.name] = g;
      }
      sgdA.step(paramsA, gradsA);
      if (paramsB) sgdB.step(paramsB, gradsB);

      const lossValue = (await value.data())[0];
      const terms: Record<string, number> = {};
      for (const [k, t] of Object.entries(kept)) terms[k] = (await t.data())[0];
      tf.dispose([x, y, ...(w ? [w] : []), value, ...Object.values(grads), ...Object.values(kept)]);
      iteration++;
      if (!Number.isFinite(lossValue)) throw new Error(`loss became ${lossValue} at iteration ${iteration}; stopping (latest checkpoint kept)`);
      if (alhvr) gamma = terms.gamma;

      const record: IterationRecord = {
        type: 'iteration',
        iteration,
        loss: lossValue,
        terms,
        gamma,
        regions: { omega1: terms.omega1Fraction ?? NaN, omega2: terms.omega2Fraction ?? NaN, omega3: terms.omega3Fraction ?? NaN },
        weight: alhvr ? rampWeight(iteration - 1, config.consistency, 200, config.rampIterations / 200) : 0,
        lr: config.lr,
        stepMs: performance.now() - t0,
        tensors: tf.memory().numTensors,
      };
      await appendFile(metricsPath, `${JSON.stringify(record)}\n`);
      events.onIteration?.(record);

      if (iteration % config.valEvery === 0 || iteration === config.iterations) {
        for (const [key, net] of [['a', netA], ['b', netB]] as const) {
          if (!net) continue;
          const result = await validate(net, dataset, P, resize);
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
      netA.dispose();
      netB?.dispose();
      sgdA.dispose();
      sgdB.dispose();
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
