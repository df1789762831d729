import { ALHVR_3D_RECIPE_PREPROCESSING, ALHVR_RECIPE_PREPROCESSING, validatePreprocessing, type Preprocessing } from '@alhvr/core';
import type { DiceVariant } from './losses/supervised.js';
import { RAMP_STEPS } from './losses/ramp.js';
import type { ProtoCeReduction, ProtoCosReduction } from './losses/cgcpcl.js';
import type { EntropyMean } from './losses/dtct.js';
import type { CropAugment, CropOffsets, PadValue } from './data/crop3d.js';
import { PSEUDO_VERDICTS, PSEUDO_WEIGHTINGS, type PseudoLabelSource, type PseudoVerdict, type PseudoWeighting } from './data/pseudo-labels.js';

/**
 * One plain object holds every training decision. Defaults are the published ACDC recipe
 * (method spec); the resolved object is printed at start and saved with every checkpoint.
 */
export interface TrainConfig {
  data: string;
  out: string;
  /**
   * unet2d: the 2D U-Net on planes (the published ACDC recipe). vnet3d: the released 3D VNet on
   * cube crops (alhvr-method-3d.md); its defaults (THREE_D_DEFAULTS) replace the 2D ones the
   * user did not set.
   */
  network: NetworkKind;
  /** nnunet (2D or 3D), acdc-h5 (SSL4MIS ACDC slices, 2D), brats-h5 (SSL4MIS BraTS 2019 volumes, 3D). */
  format: 'nnunet' | 'acdc-h5' | 'brats-h5';
  method: 'alhvr' | 'supervised';
  /** nnU-Net layout: number of labelled cases (first N) or a list of case ids. */
  labeledCases: number | string[];
  /** ACDC HDF5 layout: labelled slices (7 cases = 136). */
  labeledSlices: number;
  /** nnU-Net layout: labelled cases held out for validation. */
  valCases: number;
  unlabeledDir?: string;
  iterations: number;
  batchLabeled: number;
  batchUnlabeled: number;
  /** Side of the square plane (2D) or of the cube crop (3D) the network sees (the card's input.size); a multiple of 16. */
  patch: number;
  /**
   * Slice axis, normalisation and resize rules; the dataset, augmenter and validator read them,
   * and export copies them into the model card. A config file may give part of it (deep-merged
   * over the recipe); checkpoints from before the block existed were trained with the recipe.
   */
  preprocessing: Preprocessing;
  widths: number[];
  dropout: number[];
  lr: number;
  momentum: number;
  weightDecay: number;
  /** β: fraction of the batch's lowest mean confidences that sets γ. */
  proportion: number;
  temperature: number;
  consistency: number;
  /** Iterations over which w(t) ramps up (published 30 000); scale it down with short runs. */
  rampIterations: number;
  diceLoss: DiceVariant;
  detachTeacher: boolean;
  protoCe: ProtoCeReduction;
  /** Quirk switches of the 3D page (they apply to 2D alike; defaults = released behaviour). */
  protoCos: ProtoCosReduction;
  detachPrototypes: boolean;
  entropyMean: EntropyMean;
  /** 3D crops: 'released' never takes the last offset, 'inclusive' does. */
  cropOffsets: CropOffsets;
  /** 3D crops: padding of small volumes with 0 ('zero', released: the mean after z-scoring) or the volume's minimum. */
  padValue: PadValue;
  /**
   * 3D crops: the released rot90 + flip in the axial plane before each crop ('rot90-flip'), or the
   * crop alone ('none'). The flip mirrors left and right: on abdominal CT phantoms a labelled-only
   * VNet without it found the organs on validation volumes at 800 iterations (mean kidney/spleen/
   * pancreas Dice 0.68) where with it the same run had 0.35 (README's 3D section).
   */
  cropAugment: CropAugment;
  /**
   * 3D crops: fraction of each batch's labelled crops centred on a foreground voxel (nnU-Net's
   * oversampling, 0.33 there), so a small organ reaches the loss however large the volume is
   * around it. Unset or 0 is the released uniform crop.
   */
  foregroundOversample?: number;
  /**
   * 3D: the VNet's Dropout3d rate before its output layer (released 0.5). At narrow widths (4
   * channels there) 0.5 leaves about two, and a labelled-only VNet found no organ in 500
   * iterations; 0 learned the liver in 100–200 (measured on CT phantoms, README's 3D section).
   * Unset is the released 0.5.
   */
  vnetDropout?: number;
  /**
   * Which of the regions Ω1/Ω2/Ω3 receive the unsupervised terms (the paper's Table 1 ablation):
   * 2 enables CG-CPCL on Ω2, 3 enables DTCT on Ω3. The published method gives Ω1 no
   * unsupervised term, so listing 1 changes nothing; it is accepted so that the published
   * default reads "all regions". [] trains both students on the supervised loss alone (the
   * unlabeled slices still pass through the networks).
   */
  regions: RegionId[];
  seed: number;
  valEvery: number;
  checkpointEvery: number;
  backend: 'auto' | 'tensorflow' | 'tensorflow-gpu' | 'wasm' | 'cpu';
  threads?: number;
  /**
   * alhvr-segment output folders whose cases join the labelled stream as pseudo-labels
   * (data/pseudo-labels.ts). The checkpoint and config.json keep only their folder names (a
   * model card must carry no paths); the full paths live in the checkpoint state for --resume.
   */
  pseudoLabels?: string[];
  /** Verdicts whose cases are used (a reviewer's corrected.nii.gz is used whatever the verdict). */
  pseudoVerdicts: PseudoVerdict[];
  /** Per-voxel weights of pseudo-labels in CE and Dice: region (Ω1 1, Ω2 pseudoUnstableWeight, Ω3 0), confidence, or none (all 1). */
  pseudoWeighting: PseudoWeighting;
  pseudoUnstableWeight: number;
  /** Share of the labelled batch drawn from pseudo-labelled slices (rounded to whole slices). */
  pseudoFraction: number;
  /** Filled in by the trainer: which segment runs went in, by name and manifest hash, and how many cases per verdict. */
  pseudoLabelSources?: PseudoLabelSource[];
  /**
   * Another run's folder whose best-a/best-b checkpoints the students start from (init-from-run.ts);
   * config.json and the card keep its folder name only, and `initSource` its checkpoints' hashes.
   */
  init?: string;
  /** Filled in by the trainer: the run and checkpoint hashes the students started from. */
  initSource?: InitSource;
}

export type RegionId = 1 | 2 | 3;

/** What a run started with `--init` records about where its first weights came from (no paths). */
export interface InitSource {
  /** The source run's folder name. */
  name: string;
  /** sha256 of the checkpoint file each student started from. */
  checkpoints: Partial<Record<'a' | 'b', string>>;
}

export type NetworkKind = 'unet2d' | 'vnet3d';
export const NETWORKS: readonly NetworkKind[] = ['unet2d', 'vnet3d'];

export const DEFAULT_CONFIG: Omit<TrainConfig, 'data' | 'out'> = {
  network: 'unet2d',
  format: 'nnunet',
  method: 'alhvr',
  labeledCases: 7,
  labeledSlices: 136,
  valCases: 2,
  iterations: 30_000,
  batchLabeled: 8,
  batchUnlabeled: 8,
  patch: 256,
  preprocessing: ALHVR_RECIPE_PREPROCESSING,
  widths: [16, 32, 64, 128, 256],
  dropout: [0.05, 0.1, 0.2, 0.3, 0.5],
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 1e-4,
  proportion: 0.8,
  temperature: 0.1,
  consistency: 0.1,
  rampIterations: 30_000,
  diceLoss: 'released',
  detachTeacher: false,
  protoCe: 'released',
  protoCos: 'released',
  detachPrototypes: false,
  entropyMean: 'released',
  cropOffsets: 'released',
  padValue: 'zero',
  cropAugment: 'rot90-flip',
  regions: [1, 2, 3],
  seed: 1337,
  valEvery: 200,
  checkpointEvery: 200,
  backend: 'auto',
  pseudoVerdicts: ['accept'],
  pseudoWeighting: 'region',
  pseudoUnstableWeight: 0.5,
  pseudoFraction: 0.5,
};

/**
 * The released 3D recipe (BraTS 2019 script) where it differs from the 2D defaults: 96³ crops,
 * batch 2+2, β 0.7, 15 000 iterations under the 2D ramp of 30 000 (so w stops at 28 % of its cap;
 * set rampIterations to the iterations for the corrected variant), Dropout3d 0.5 (the VNet's own,
 * so `dropout` is unused), the 3D preprocessing recipe (CT data: nnU-Net's CT rule, its numbers
 * measured on the training set).
 */
export const THREE_D_DEFAULTS: Partial<Omit<TrainConfig, 'data' | 'out'>> = {
  iterations: 15_000,
  batchLabeled: 2,
  batchUnlabeled: 2,
  patch: 96,
  proportion: 0.7,
  rampIterations: 30_000,
  preprocessing: ALHVR_3D_RECIPE_PREPROCESSING,
};

/** Slices of the labelled batch taken from pseudo-labels (0 without them). */
export function pseudoSlicesPerBatch(c: Pick<TrainConfig, 'batchLabeled' | 'pseudoFraction' | 'pseudoLabels'>): number {
  return c.pseudoLabels?.length ? Math.round(c.batchLabeled * c.pseudoFraction) : 0;
}

/** A run's preprocessing: its saved block, or the recipe for configs written before the block existed. */
export function preprocessingOf(c: { preprocessing?: Preprocessing }): Preprocessing {
  return c.preprocessing ?? ALHVR_RECIPE_PREPROCESSING;
}

type PreprocessingInput = Partial<Omit<Preprocessing, 'resize'>> & { resize?: Partial<Preprocessing['resize']> };

/** Merge user settings over the defaults and reject impossible combinations before any work. */
export function resolveConfig(user: Partial<Omit<TrainConfig, 'preprocessing'>> & { data: string; out: string; preprocessing?: PreprocessingInput }): TrainConfig {
  const defined = Object.fromEntries(Object.entries(user).filter(([, v]) => v !== undefined));
  const bad = (msg: string) => {
    throw new Error(`invalid training config: ${msg}`);
  };
  const network = (defined.network ?? DEFAULT_CONFIG.network) as NetworkKind;
  if (!NETWORKS.includes(network)) bad(`network must be one of ${NETWORKS.join(', ')} (got ${JSON.stringify(network)})`);
  const defaults = network === 'vnet3d' ? { ...DEFAULT_CONFIG, ...THREE_D_DEFAULTS } : DEFAULT_CONFIG;
  const c = { ...defaults, ...defined } as TrainConfig;
  const given: PreprocessingInput = user.preprocessing ?? {};
  const recipe = defaults.preprocessing;
  // A 3D config may name { kind: 'ct-foreground' } without numbers: the trainer measures them.
  c.preprocessing = validatePreprocessing(
    { ...recipe, ...given, resize: { ...recipe.resize, ...given.resize } },
    'invalid training config',
    network === 'vnet3d' ? 'pending-allowed' : 'required',
  );
  if (network === 'unet2d' && c.preprocessing.targetSpacing) bad('preprocessing.targetSpacing is for 3D networks only (set network "vnet3d")');
  if (network === 'unet2d' && c.preprocessing.normalisation.kind === 'ct-foreground') bad('preprocessing.normalisation "ct-foreground" is for 3D networks only (a 2D CT run can use "window")');
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(c.iterations)) bad(`iterations must be a positive integer (got ${c.iterations})`);
  if (!posInt(c.batchLabeled)) bad(`labelled batch must be a positive integer (got ${c.batchLabeled})`);
  if (c.method === 'alhvr' && !posInt(c.batchUnlabeled)) bad(`ALHVR needs unlabeled slices in each batch (got ${c.batchUnlabeled})`);
  if (!posInt(c.patch) || c.patch % 16 !== 0) bad(`patch must be a positive multiple of 16 (got ${c.patch})`);
  if (c.widths.length !== 5 || !c.widths.every(posInt)) bad(`widths must be five positive integers (got ${c.widths})`);
  if (!(c.proportion > 0 && c.proportion < 1)) bad(`proportion β must be in (0, 1) (got ${c.proportion})`);
  if (!(c.rampIterations >= RAMP_STEPS)) bad(`rampIterations must be at least ${RAMP_STEPS} (got ${c.rampIterations})`);
  if (!(c.lr > 0)) bad(`lr must be positive (got ${c.lr})`);
  if (!Array.isArray(c.regions) || !c.regions.every((r) => r === 1 || r === 2 || r === 3) || new Set(c.regions).size !== c.regions.length) {
    bad(`regions must list distinct values among 1, 2, 3 (got ${JSON.stringify(c.regions)})`);
  }
  if (!posInt(c.valEvery) || !posInt(c.checkpointEvery)) bad('valEvery and checkpointEvery must be positive integers');
  if (!Array.isArray(c.pseudoVerdicts) || c.pseudoVerdicts.length === 0 || !c.pseudoVerdicts.every((v) => PSEUDO_VERDICTS.includes(v))) {
    bad(`pseudoVerdicts must list some of ${PSEUDO_VERDICTS.join(', ')} (got ${JSON.stringify(c.pseudoVerdicts)})`);
  }
  if (!PSEUDO_WEIGHTINGS.includes(c.pseudoWeighting)) bad(`pseudoWeighting must be one of ${PSEUDO_WEIGHTINGS.join(', ')} (got ${c.pseudoWeighting})`);
  if (!(c.pseudoUnstableWeight >= 0 && c.pseudoUnstableWeight <= 1)) bad(`pseudoUnstableWeight must be in [0, 1] (got ${c.pseudoUnstableWeight})`);
  if (!(c.pseudoFraction >= 0 && c.pseudoFraction <= 1)) bad(`pseudoFraction must be in [0, 1] (got ${c.pseudoFraction})`);
  if (c.pseudoLabels?.length && pseudoSlicesPerBatch(c) === 0) {
    bad(`pseudoFraction ${c.pseudoFraction} of a labelled batch of ${c.batchLabeled} is no slice; raise --pseudo-fraction or the labelled batch`);
  }
  if (!['released', 'masked'].includes(c.protoCe)) bad(`protoCe must be released or masked (got ${JSON.stringify(c.protoCe)})`);
  if (!['released', 'target'].includes(c.protoCos)) bad(`protoCos must be released or target (got ${JSON.stringify(c.protoCos)})`);
  if (!['released', 'inclusive'].includes(c.cropOffsets)) bad(`cropOffsets must be released or inclusive (got ${JSON.stringify(c.cropOffsets)})`);
  if (c.foregroundOversample !== undefined && !(c.foregroundOversample >= 0 && c.foregroundOversample <= 1)) {
    bad(`foregroundOversample must be in [0, 1] (got ${JSON.stringify(c.foregroundOversample)})`);
  }
  if (network === 'unet2d' && c.foregroundOversample) bad('foregroundOversample applies to 3D crops only (network vnet3d)');
  if (c.vnetDropout !== undefined && !(c.vnetDropout >= 0 && c.vnetDropout < 1)) bad(`vnetDropout must be in [0, 1) (got ${JSON.stringify(c.vnetDropout)})`);
  if (network === 'unet2d' && c.vnetDropout !== undefined) bad('vnetDropout is the 3D VNet\'s dropout (network vnet3d); the U-Net\'s is `dropout`');
  if (!['zero', 'min'].includes(c.padValue)) bad(`padValue must be zero or min (got ${JSON.stringify(c.padValue)})`);
  if (!['rot90-flip', 'none'].includes(c.cropAugment)) bad(`cropAugment must be rot90-flip or none (got ${JSON.stringify(c.cropAugment)})`);
  if (network === 'unet2d' && c.cropAugment !== 'rot90-flip') bad('cropAugment applies to 3D crops only (network vnet3d)');
  if (!['released', 'masked'].includes(c.entropyMean)) bad(`entropyMean must be released or masked (got ${JSON.stringify(c.entropyMean)})`);
  if (network === 'vnet3d' && c.format === 'acdc-h5') bad('format acdc-h5 holds 2D slices; a vnet3d run reads nnunet or brats-h5');
  if (network === 'unet2d' && c.format === 'brats-h5') bad('format brats-h5 holds 3D volumes; train it with network vnet3d');
  if (network === 'vnet3d' && c.pseudoLabels?.length) bad('pseudo-labels are 2D-only for now (network unet2d)');
  if (c.method === 'supervised') c.batchUnlabeled = 0;
  return c;
}
