import { InputError, MODEL_CARD_KEY, parseModelCard, type ModelCard } from '@alhvr/core';
import { readOnnxMetadataProps } from './model-metadata.js';

/**
 * The parts of onnxruntime-node / onnxruntime-web this package uses. Both modules satisfy it,
 * so the same session code runs in the CLI and in the viewer.
 */
export interface OrtRuntime {
  InferenceSession: { create(model: Uint8Array, options?: any): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => unknown;
}

export interface OrtTensorLike {
  data: unknown;
  dims: readonly number[];
  type: string;
}

export interface OrtSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly outputMetadata?: readonly { name: string; isTensor: boolean; type?: string }[];
  run(feeds: Record<string, any>, fetches?: readonly string[]): Promise<Record<string, OrtTensorLike>>;
  release?(): Promise<void>;
}

/** Output of the model contract: which tensor, its element type. */
export type SliceOutputKind = 'probabilities' | 'label' | 'confidence' | 'region' | 'studentConfidence' | 'studentLabel' | 'entropy' | 'logitsA' | 'logitsB';

/** Graph output name of the per-student confidence map (fixed by the exporter contract). */
export const STUDENT_CONFIDENCE_OUTPUT = 'student_confidence';
/** Each student's own label (two-student models exported since calibration). */
export const STUDENT_LABEL_OUTPUT = 'student_label';
/** Each pixel's entropy of the probabilities over ln C (2D models exported since 2026-12-05). */
export const ENTROPY_OUTPUT = 'entropy';

const OUTPUT_TYPES: Record<SliceOutputKind, 'float32' | 'uint8'> = {
  probabilities: 'float32',
  label: 'uint8',
  confidence: 'float32',
  region: 'uint8',
  studentConfidence: 'float32',
  studentLabel: 'uint8',
  entropy: 'float32',
  logitsA: 'float32',
  logitsB: 'float32',
};

/** Planes per slice of each output (C = number of classes). */
function planesPerSlice(kind: SliceOutputKind, classes: number): number {
  if (kind === 'probabilities' || kind === 'logitsA' || kind === 'logitsB') return classes;
  return kind === 'studentConfidence' || kind === 'studentLabel' ? 2 : 1;
}

export type SliceOutputs = Partial<Record<SliceOutputKind, Float32Array | Uint8Array>>;

/**
 * A model that maps a batch of preprocessed N×1×H×W slices (2D cards) or N×1×D×H×W patches (3D
 * cards) to the contract's outputs.
 */
export interface SliceModel {
  readonly card: ModelCard;
  /** Which of the contract's outputs this model has. */
  readonly available: ReadonlySet<SliceOutputKind>;
  /**
   * The pipelines keep one call in flight while they prepare the next batch and map the last one
   * back: a call's outputs must stay as returned until the next call settles, and `batch` is not
   * written again before its call has settled.
   */
  run(batch: Float32Array, n: number, height: number, width: number, fetch: readonly SliceOutputKind[]): Promise<SliceOutputs>;
  /** 3D models: `n` patches of [x, y, z] voxels (x fastest), outputs in the same order per channel. */
  runPatches?(batch: Float32Array, n: number, patch: readonly [number, number, number], fetch: readonly SliceOutputKind[]): Promise<SliceOutputs>;
}

export interface ModelIdentity {
  card: ModelCard;
  /** Card JSON exactly as stored in the model. */
  cardJson: string;
  /** sha256 (hex) of the card JSON. */
  cardHash: string;
  /** sha256 (hex) of the whole model file. */
  modelHash: string;
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Read and validate the model card stored in an ONNX file's metadata. `source` names the file in errors. */
export async function readModelIdentity(model: Uint8Array, source: string): Promise<ModelIdentity> {
  let props: Map<string, string>;
  try {
    props = readOnnxMetadataProps(model);
  } catch (err) {
    throw new InputError(`not a readable ONNX model (${(err as Error).message})`, source);
  }
  const cardJson = props.get(MODEL_CARD_KEY);
  if (cardJson === undefined) throw new InputError(`ONNX model has no "${MODEL_CARD_KEY}" metadata entry (not exported by alhvr-export?)`, source);
  let card: ModelCard;
  try {
    card = parseModelCard(cardJson);
  } catch (err) {
    throw new InputError((err as Error).message, source);
  }
  return { card, cardJson, cardHash: await sha256Hex(cardJson), modelHash: await sha256Hex(model) };
}

/** ONNX Runtime session wrapped in the contract: output names from the card, typed outputs. */
export class OrtSliceModel implements SliceModel {
  readonly available: ReadonlySet<SliceOutputKind>;
  private readonly names: Record<SliceOutputKind, string>;

  constructor(
    readonly card: ModelCard,
    private readonly session: OrtSession,
    private readonly runtime: OrtRuntime,
    source: string,
  ) {
    if (!session.inputNames.includes(card.input.name)) {
      throw new InputError(`model has no input "${card.input.name}" named by its card (inputs: ${session.inputNames.join(', ')})`, source);
    }
    this.names = {
      probabilities: card.outputs.probabilities,
      label: card.outputs.label,
      confidence: card.outputs.confidence,
      region: card.outputs.region ?? 'region',
      studentConfidence: STUDENT_CONFIDENCE_OUTPUT,
      studentLabel: STUDENT_LABEL_OUTPUT,
      entropy: ENTROPY_OUTPUT,
      // Only in exports made for parity checks and calibration (raw logits before temperature).
      logitsA: 'logits_a',
      logitsB: 'logits_b',
    };
    const available = new Set<SliceOutputKind>();
    for (const kind of Object.keys(this.names) as SliceOutputKind[]) {
      const name = this.names[kind];
      if (!session.outputNames.includes(name)) continue;
      const meta = session.outputMetadata?.find((m) => m.name === name);
      if (meta?.isTensor && meta.type !== OUTPUT_TYPES[kind]) {
        throw new InputError(`model output "${name}" is ${meta.type}, the contract needs ${OUTPUT_TYPES[kind]}`, source);
      }
      available.add(kind);
    }
    for (const kind of ['probabilities', 'label', 'confidence'] as const) {
      if (!available.has(kind)) throw new InputError(`model lacks the "${this.names[kind]}" output named by its card`, source);
    }
    if (card.students === 'both' && !available.has('region')) throw new InputError(`two-student model lacks the "${this.names.region}" output`, source);
    this.available = available;
  }

  async run(batch: Float32Array, n: number, height: number, width: number, fetch: readonly SliceOutputKind[]): Promise<SliceOutputs> {
    return this.runSpatial(batch, n, [height, width], fetch);
  }

  async runPatches(batch: Float32Array, n: number, patch: readonly [number, number, number], fetch: readonly SliceOutputKind[]): Promise<SliceOutputs> {
    if (this.card.dimensions !== 3) throw new Error('runPatches: the model is a 2D model');
    return this.runSpatial(batch, n, [patch[2], patch[1], patch[0]], fetch);
  }

  /** One call on [n, 1, ...spatial] (spatial slowest first: [H, W] or [D, H, W]). */
  private async runSpatial(batch: Float32Array, n: number, spatial: readonly number[], fetch: readonly SliceOutputKind[]): Promise<SliceOutputs> {
    const voxels = spatial.reduce((a, b) => a * b, 1);
    const input = new this.runtime.Tensor('float32', batch.subarray(0, n * voxels), [n, 1, ...spatial]);
    const results = await this.session.run({ [this.card.input.name]: input }, fetch.map((k) => this.names[k]));
    const out: SliceOutputs = {};
    for (const kind of fetch) {
      const t = results[this.names[kind]];
      const data = t.data as Float32Array | Uint8Array;
      if (OUTPUT_TYPES[kind] === 'uint8' ? !(data instanceof Uint8Array) : !(data instanceof Float32Array)) {
        throw new Error(`model output "${this.names[kind]}" returned ${t.type}, expected ${OUTPUT_TYPES[kind]}`);
      }
      const perSlice = planesPerSlice(kind, this.card.classes.length);
      if (data.length !== n * perSlice * voxels) {
        throw new Error(`model output "${this.names[kind]}" has shape [${t.dims.join(', ')}], expected [${n}, ${perSlice > 1 ? `${perSlice}, ` : ''}${spatial.join(', ')}]`);
      }
      out[kind] = data;
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release?.();
  }
}

/** Open a model from its bytes (browser: fetched file; node: see session-node.ts). */
export async function createSliceModel(
  model: Uint8Array,
  runtime: OrtRuntime,
  sessionOptions: unknown,
  source: string,
): Promise<{ model: OrtSliceModel; identity: ModelIdentity }> {
  const identity = await readModelIdentity(model, source);
  let session: OrtSession;
  try {
    session = await runtime.InferenceSession.create(model, sessionOptions);
  } catch (err) {
    throw new InputError(`ONNX Runtime could not load the model (${(err as Error).message.split('\n')[0]})`, source);
  }
  return { model: new OrtSliceModel(identity.card, session, runtime, source), identity };
}
