import { InputError } from './errors.js';
import type { ResizeRule } from './geometry/resample.js';
import type { SliceAxisRule } from './geometry/reorient.js';
import type { LinearModel, QualityModel } from './quality.js';

/** Key of the ONNX `metadata_props` entry that holds the card as JSON. */
export const MODEL_CARD_KEY = 'alhvr.model_card';
export const MODEL_CARD_SCHEMA = 'alhvr-model-card/1';

export interface ModelClass {
  value: number;
  name: string;
  color: [number, number, number];
}

/**
 * Intensity normalisation applied per volume before slicing (2D) or windowing (3D).
 * - `zscore-volume`: mean and std of the volume's voxels; `voxels: 'positive'` takes them over
 *   voxels > 0 only and applies them to all (SSL4MIS's BraTS preprocessing); absent means all.
 * - `ct-foreground`: nnU-Net's CT rule with numbers fixed once from the training set.
 */
export type Normalisation =
  | { kind: 'minmax-volume' }
  | { kind: 'zscore-volume'; voxels?: 'all' | 'positive' }
  | { kind: 'window'; low: number; high: number }
  | CtForegroundNormalisation;

/**
 * nnU-Net's CT normalisation: clip to [low, high] (the 0.5 and 99.5 percentiles of the training
 * set's foreground HU), then (x − mean) / std with the mean and std of the same foreground
 * voxels (before clipping, as nnU-Net computes them). Every volume gets the same numbers, so a
 * HU means the same thing in every scan.
 */
export interface CtForegroundNormalisation {
  kind: 'ct-foreground';
  low: number;
  high: number;
  mean: number;
  std: number;
}

/**
 * How a volume becomes model planes and how outputs go back: the training config's
 * `preprocessing` block. Training reads it (dataset, augmenter, validator) and export copies it
 * into the card's `input.sliceAxis`, `normalisation` and `resize`, as nnU-Net's plans travel with
 * its models, so a card cannot disagree with how its model was trained. The plane size is the
 * config's `patch` (the card's `input.size`).
 */
export interface Preprocessing {
  /** 2D: which axis the planes cut across. Unused by 3D networks (they see whole windows). */
  sliceAxis: SliceAxisRule;
  /**
   * 3D only: voxel spacing [x, y, z] in mm (NIfTI axis order) every volume is resampled to before
   * normalisation and windowing; outputs go back to the source grid. Absent in 2D.
   */
  targetSpacing?: [number, number, number];
  normalisation: Normalisation;
  /** 2D: planes to the model size and back. 3D: resampling to and from `targetSpacing`. */
  resize: {
    /** Image plane → model size. */
    image: ResizeRule;
    /** Label plane → model size (training targets; inference's reference labels). Nearest only. */
    label: ResizeRule;
    /** Model-size label → source plane. Nearest only. */
    labelBack: ResizeRule;
    /** Model-size confidence and probabilities → source plane. */
    mapBack: ResizeRule;
  };
}

/**
 * Everything inference needs besides the weights, in the spirit of nnU-Net's plans file: a
 * model file carrying this card needs nothing else to be run correctly.
 */
export interface ModelCard {
  schema: typeof MODEL_CARD_SCHEMA;
  name: string;
  description?: string;
  classes: ModelClass[];
  /**
   * 2: a plane model (the default; cards written before 3D models existed have no field);
   * 3: a volume model run by sliding window over the volume resampled to `targetSpacing`.
   */
  dimensions?: 2 | 3;
  input: {
    /**
     * 2D: model plane [width, height]; 3D: sliding-window patch [x, y, z] along the volume's
     * i, j, k axes at the target spacing (the training config's cube `patch`). All multiples of 16.
     */
    size: [number, number] | [number, number, number];
    channels: 1;
    sliceAxis: SliceAxisRule;
    /** Graph input name and layout (NCDHW: D = k, H = j, W = i). */
    name: string;
    layout: 'NCHW' | 'NCDHW';
  };
  /** 3D only: voxel spacing [x, y, z] in mm the model was trained at (training's preprocessing block). */
  targetSpacing?: [number, number, number];
  normalisation: Normalisation;
  /**
   * How planes go to the model size (image; reference labels) and back to the source size
   * (label, maps). Cards written before `label` was recorded used nearest with the image's alignment.
   */
  resize: Omit<Preprocessing['resize'], 'label'> & { label?: ResizeRule };
  /** Region-map rule: γ the model carries, and β for the per-volume quantile alternative. */
  regions: { gamma: number; beta: number; gammaSource: 'training-final' | 'calibrated' | 'default' };
  students: 'both' | 'a' | 'b';
  outputs: { probabilities: string; label: string; confidence: string; region?: string };
  training: {
    method: 'alhvr' | 'supervised' | 'unknown';
    iterations: number;
    datasetFingerprint?: string;
    config?: Record<string, unknown>;
    bestValidation?: Record<string, unknown>;
  };
  toolkit: { version: string; gitCommit?: string };
  /** What the model was made for; inference rejects DICOM whose Modality/BodyPartExamined differ. */
  intendedUse?: { modality: string; bodyPart: string; description: string };
  /** Fitted at export on labelled volumes the students did not train on. */
  calibration?: ModelCalibration;
  /** Numeric precision of the network (absent: fp32). The heads are float32 at any precision. */
  precision?: ModelPrecision;
  createdAt: string;
}

export interface ModelPrecision {
  /** fp16-weights: float16-stored weights, float32 compute. */
  network: 'fp32' | 'fp16' | 'fp16-weights' | 'int8';
  /** int8: how the activations' quantization scales were measured (rule, volumes by name, counts). */
  activationScales?: { rule: string; source: string; cases: number; slices: number };
}

export interface ModelCalibration {
  /** Which volumes: the run's validation cases, or a folder (by name, never a path). */
  source: { kind: 'validation' | 'folder'; name: string; cases: number; ids: string[] };
  /** Student logits are divided by this before the softmax (in the graph). */
  temperature: number;
  /** How γ was chosen, and the γ of the method's β rule over the same volumes for comparison. */
  gammaRule: string;
  betaRuleGamma: number;
  /** Expected calibration error of the confidence over foreground voxels, before and after. */
  ece: { before: number; after: number };
  /** Share of wrongly labelled foreground voxels in region 1, 2 and 3 on the calibration volumes. */
  regionErrorRates: [number, number, number];
  quality: QualityModel;
}

type Check = (value: unknown, at: string) => void;

/** A field that fails a check; the public validators turn it into a one-line InputError. */
class FieldProblem extends Error {
  constructor(
    readonly at: string,
    readonly what: string,
  ) {
    super(`${at} ${what}`);
  }
}

function fail(at: string, what: string): never {
  throw new FieldProblem(at, what);
}

function checked<T>(check: Check, value: unknown, root: string, subject: string): T {
  try {
    check(value, root);
  } catch (err) {
    if (err instanceof FieldProblem) throw new InputError(`${subject}: ${err.at} ${err.what}`);
    throw err;
  }
  return value as T;
}
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str: Check = (v, at) => {
  if (typeof v !== 'string' || v.length === 0) fail(at, 'must be a non-empty string');
};
const num: Check = (v, at) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(at, 'must be a finite number');
};
const oneOf =
  (...allowed: unknown[]): Check =>
  (v, at) => {
    if (!allowed.includes(v)) fail(at, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  };
const obj =
  (fields: Record<string, Check>, optional: string[] = []): Check =>
  (v, at) => {
    if (!isObject(v)) fail(at, 'must be an object');
    for (const [key, check] of Object.entries(fields)) {
      if (v[key] === undefined && optional.includes(key)) continue;
      check(v[key], `${at}.${key}`);
    }
  };
const anyObject: Check = (v, at) => {
  if (!isObject(v)) fail(at, 'must be an object');
};
const anyArray: Check = (v, at) => {
  if (!Array.isArray(v)) fail(at, 'must be an array');
};
const numbers =
  (length: number): Check =>
  (v, at) => {
    if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) fail(at, `must be ${length} finite numbers`);
  };
const linearModel: Check = (v, at) => {
  obj({ features: anyArray, mean: anyArray, scale: anyArray, weights: anyArray, intercept: num })(v, at);
  const m = v as LinearModel;
  const d = m.features.length;
  for (const key of ['mean', 'scale', 'weights'] as const) numbers(d)(m[key], `${at}.${key}`);
};
const resizeRule = obj({ interpolation: oneOf('nearest', 'linear'), alignment: oneOf('corners', 'half-pixel') });
// Labels are class ids: any interpolation but nearest would invent classes between them.
const labelResizeRule: Check = (v, at) => {
  resizeRule(v, at);
  if ((v as ResizeRule).interpolation !== 'nearest') fail(`${at}.interpolation`, 'must be "nearest" (labels are class ids)');
};
const sliceAxis = oneOf('largest-spacing', 0, 1, 2);
const normalisationOf =
  (statistics: 'required' | 'pending-allowed'): Check =>
  (v, at) => {
    if (!isObject(v)) fail(at, 'must be an object');
    oneOf('minmax-volume', 'zscore-volume', 'window', 'ct-foreground')(v.kind, `${at}.kind`);
    if (v.kind === 'window') {
      obj({ low: num, high: num })(v, at);
      if (!((v.high as number) > (v.low as number))) fail(`${at}.high`, 'must be above low');
    }
    if (v.kind === 'zscore-volume' && v.voxels !== undefined) oneOf('all', 'positive')(v.voxels, `${at}.voxels`);
    if (v.kind === 'ct-foreground') {
      // A training config may ask for the rule before its numbers exist; the trainer computes them.
      const given = ['low', 'high', 'mean', 'std'].filter((key) => v[key] !== undefined);
      if (given.length === 0 && statistics === 'pending-allowed') return;
      obj({ low: num, high: num, mean: num, std: num })(v, at);
      if (!((v.high as number) > (v.low as number))) fail(`${at}.high`, 'must be above low');
      if (!((v.std as number) > 0)) fail(`${at}.std`, 'must be positive');
    }
  };
const normalisation = normalisationOf('required');
const targetSpacing: Check = (v, at) => {
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) fail(at, 'must be [x, y, z], three positive spacings in mm');
};
const preprocessingOf = (statistics: 'required' | 'pending-allowed') =>
  obj(
    {
      sliceAxis,
      targetSpacing,
      normalisation: normalisationOf(statistics),
      resize: obj({ image: resizeRule, label: labelResizeRule, labelBack: labelResizeRule, mapBack: resizeRule }),
    },
    ['targetSpacing'],
  );

/**
 * Validate a preprocessing block; throws a one-line InputError "<subject>: preprocessing.<field> …".
 * `pending-allowed` accepts `{ kind: 'ct-foreground' }` without its numbers (a training config,
 * before the trainer has measured the training set); cards and checkpoints need them.
 */
export function validatePreprocessing(value: unknown, subject = 'invalid preprocessing', statistics: 'required' | 'pending-allowed' = 'required'): Preprocessing {
  return checked<Preprocessing>(preprocessingOf(statistics), value, 'preprocessing', subject);
}

const checkCard = obj(
  {
    schema: oneOf(MODEL_CARD_SCHEMA),
    name: str,
    description: str,
    classes: (v, at) => {
      if (!Array.isArray(v) || v.length < 2) fail(at, 'must list at least two classes');
      const values = new Set<number>();
      v.forEach((c, n) => {
        obj({ value: num, name: str, color: (col, a) => {
          if (!Array.isArray(col) || col.length !== 3 || !col.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) fail(a, 'must be [r, g, b] in 0–255');
        } })(c, `${at}[${n}]`);
        const value = (c as ModelClass).value;
        if (!Number.isInteger(value) || value < 0 || value > 255) fail(`${at}[${n}].value`, 'must be an integer label 0–255');
        if (values.has(value)) fail(`${at}[${n}].value`, `repeats label ${value}`);
        values.add(value);
      });
    },
    dimensions: oneOf(2, 3),
    input: (v, at) => {
      obj({ channels: oneOf(1), sliceAxis, name: str, layout: oneOf('NCHW', 'NCDHW') })(v, at);
      const size = (v as Record<string, unknown>).size;
      if (!Array.isArray(size) || (size.length !== 2 && size.length !== 3) || !size.every((x) => Number.isInteger(x) && x > 0 && x % 16 === 0)) {
        fail(`${at}.size`, 'must be [width, height] or a 3D patch [x, y, z], positive multiples of 16');
      }
    },
    targetSpacing: (v, at) => {
      if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) fail(at, 'must be [x, y, z] spacing in mm, three positive numbers');
    },
    normalisation,
    resize: obj({ image: resizeRule, label: labelResizeRule, labelBack: labelResizeRule, mapBack: resizeRule }, ['label']),
    regions: (v, at) => {
      obj({ gamma: num, beta: num, gammaSource: oneOf('training-final', 'calibrated', 'default') })(v, at);
      const r = v as ModelCard['regions'];
      if (!(r.gamma > 0 && r.gamma <= 1)) fail(`${at}.gamma`, 'must be in (0, 1]');
      if (!(r.beta > 0 && r.beta < 1)) fail(`${at}.beta`, 'must be in (0, 1)');
    },
    students: oneOf('both', 'a', 'b'),
    outputs: obj({ probabilities: str, label: str, confidence: str, region: str }, ['region']),
    training: obj(
      { method: oneOf('alhvr', 'supervised', 'unknown'), iterations: num, datasetFingerprint: str, config: anyObject, bestValidation: anyObject },
      ['datasetFingerprint', 'config', 'bestValidation'],
    ),
    toolkit: obj({ version: str, gitCommit: str }, ['gitCommit']),
    intendedUse: obj({ modality: str, bodyPart: str, description: str }),
    calibration: (v, at) => {
      obj({
        source: obj({ kind: oneOf('validation', 'folder'), name: str, cases: num, ids: anyArray }),
        temperature: num,
        gammaRule: str,
        betaRuleGamma: num,
        ece: obj({ before: num, after: num }),
        regionErrorRates: numbers(3),
        quality: obj({
          case: linearModel,
          perClass: linearModel,
          volumes: anyArray,
          intensity: obj({ mean: numbers(2), std: numbers(2), negativeFraction: numbers(2) }),
          acceptDice: num,
          rejectDice: num,
          maxVolumeOutlier: num,
        }),
      })(v, at);
      const c = v as ModelCalibration;
      if (!(c.temperature > 0)) fail(`${at}.temperature`, 'must be positive');
      if (c.quality.rejectDice > c.quality.acceptDice) fail(`${at}.quality.rejectDice`, 'must not exceed acceptDice');
    },
    precision: (v, at) => {
      obj({ network: oneOf('fp32', 'fp16', 'fp16-weights', 'int8'), activationScales: obj({ rule: str, source: str, cases: num, slices: num }) }, ['activationScales'])(v, at);
      if ((v as ModelPrecision).network === 'int8' && !(v as ModelPrecision).activationScales) fail(`${at}.activationScales`, 'is required for an int8 network');
    },
    createdAt: str,
  },
  ['description', 'dimensions', 'targetSpacing', 'intendedUse', 'calibration', 'precision'],
);

/** A card's dimensionality, its input layout, patch rank and target spacing must tell the same story. */
function checkDimensions(card: ModelCard): void {
  const dims = card.dimensions ?? 2;
  const problem = (what: string) => new InputError(`model card: ${what}`);
  if (dims === 3) {
    if (card.input.layout !== 'NCDHW') throw problem(`card.input.layout must be "NCDHW" for a 3D model (got "${card.input.layout}")`);
    if (card.input.size.length !== 3) throw problem(`card.input.size must be a 3D patch [x, y, z] for a 3D model (got [${card.input.size.join(', ')}])`);
    if (!card.targetSpacing) throw problem('card.targetSpacing is required for a 3D model (the spacing it runs at)');
  } else {
    if (card.input.layout !== 'NCHW') throw problem(`card.input.layout "${card.input.layout}" needs card.dimensions 3`);
    if (card.input.size.length !== 2) throw problem(`card.input.size [${card.input.size.join(', ')}] has three sides; a 2D model's is [width, height] (or set card.dimensions 3)`);
    if (card.targetSpacing) throw problem('card.targetSpacing is for 3D models only (set card.dimensions 3)');
  }
}

/** Validate an already-parsed card; throws InputError naming the first bad field. */
export function validateModelCard(value: unknown): ModelCard {
  const card = checked<ModelCard>(checkCard, value, 'card', 'model card');
  if (card.students === 'both' && !card.outputs.region) throw new InputError('model card: card.outputs.region is required for a two-student model');
  checkDimensions(card);
  return card;
}

/** Parse the JSON stored in ONNX metadata and validate it. */
export function parseModelCard(json: string): ModelCard {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new InputError(`model card is not valid JSON (${(err as Error).message})`);
  }
  return validateModelCard(value);
}

/**
 * The ACDC recipe (SSL4MIS): slices across the largest spacing, per-volume min–max, and
 * scipy-zoom style nearest resizing both ways (maps back linearly). The training config's
 * default and what checkpoints written before the block existed were trained with.
 */
export const ALHVR_RECIPE_PREPROCESSING: Preprocessing = {
  sliceAxis: 'largest-spacing',
  normalisation: { kind: 'minmax-volume' },
  resize: {
    image: { interpolation: 'nearest', alignment: 'corners' },
    label: { interpolation: 'nearest', alignment: 'corners' },
    labelBack: { interpolation: 'nearest', alignment: 'corners' },
    mapBack: { interpolation: 'linear', alignment: 'corners' },
  },
};

export const ALHVR_RECIPE_RESIZE: ModelCard['resize'] = ALHVR_RECIPE_PREPROCESSING.resize;

/**
 * The released 3D recipe (BraTS 2019 FLAIR, SSL4MIS preprocessing): 1 mm isotropic, z-score with
 * the mean and std of the voxels > 0 applied to every voxel; resampling to and from the spacing
 * trilinear for images and maps, nearest for labels, voxel areas scaling (half-pixel). CT data
 * gets `ct-foreground` instead, its numbers measured on the training set.
 */
export const ALHVR_3D_RECIPE_PREPROCESSING: Preprocessing = {
  sliceAxis: 'largest-spacing',
  targetSpacing: [1, 1, 1],
  normalisation: { kind: 'zscore-volume', voxels: 'positive' },
  resize: {
    image: { interpolation: 'linear', alignment: 'half-pixel' },
    label: { interpolation: 'nearest', alignment: 'half-pixel' },
    labelBack: { interpolation: 'nearest', alignment: 'half-pixel' },
    mapBack: { interpolation: 'linear', alignment: 'half-pixel' },
  },
};

