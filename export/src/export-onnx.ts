/**
 * TensorFlow.js ALHVR students → one ONNX model (opset 17) with the ensemble heads inference
 * relies on and the model card in `metadata_props`. The card's dimensionality picks the network:
 * the 2D U-Net (NCHW, dynamic batch and plane size) or the 3D VNet (NCDHW, dynamic batch and
 * patch size); the heads are the same nodes on channel axis 1 either way.
 */
import { ALHVR_RECIPE_RESIZE, InputError, MODEL_CARD_KEY, MODEL_CARD_SCHEMA, validateModelCard, type ModelCard } from '@alhvr/core';
import { ElemType, OnnxGraphBuilder, OPSET, type TensorSummary, type WeightStorage } from './onnx-graph-builder.js';
import { emitUNet } from './unet-graph.js';
import { foldUNet } from './unet-weights.js';
import { emitVNet3d, foldVNet3d } from './vnet3d-graph.js';
import { toolkitInfo } from './toolkit-info.js';

/** Graph input and output names: the contract with inference/ (session.ts). */
export const ONNX_INPUT = 'image';
export const ONNX_OUTPUTS = {
  probabilities: 'probabilities',
  label: 'label',
  confidence: 'confidence',
  studentConfidence: 'student_confidence',
  studentLabel: 'student_label',
  region: 'region',
  entropy: 'entropy',
} as const;
/** Extra outputs of `debugLogits` exports (parity checks only): `logits_a`, `logits_b`. */
export const logitsOutputName = (student: 'a' | 'b') => `logits_${student}`;
/** Initializer holding γ of the region rule (also in the card). */
export const GAMMA_INITIALIZER = 'gamma';
/** Initializer holding 1/T of the calibrated temperature (1 when uncalibrated; T also in the card). */
export const INVERSE_TEMPERATURE_INITIALIZER = 'inverse_temperature';

export type StudentSelection = 'both' | 'a' | 'b';

/** The card fields the caller supplies; the exporter derives the rest from the graph it writes. */
export type ExportCard = Omit<ModelCard, 'schema' | 'students' | 'outputs' | 'createdAt' | 'toolkit' | 'input' | 'resize'> & {
  /** 3D (`dimensions: 3`): size is the patch [x, y, z] and the layout NCDHW. */
  input: Pick<ModelCard['input'], 'size' | 'sliceAxis'>;
  /** Default: ALHVR_RECIPE_RESIZE. */
  resize?: ModelCard['resize'];
  /** Default: this package's version and `git rev-parse HEAD` when available. */
  toolkit?: ModelCard['toolkit'];
  /** Default: now. */
  createdAt?: string;
};

/** Network precision of an export; int8 needs calibration volumes (quantize-calibration.ts). */
export type Precision = 'fp32' | 'fp16' | 'fp16-weights' | 'int8';

export interface ExportOptions {
  /**
   * fp16: half-precision weights and network compute; image input and all outputs stay float32.
   * fp16-weights: half-precision weights widened to float32 at load, float32 compute (half the
   * file, float32's numbers but for the weights' rounding).
   */
  precision?: 'fp32' | 'fp16' | 'fp16-weights';
  /** Same as precision 'fp16' (kept for existing callers). */
  fp16?: boolean;
  /** Default 'both' for two students, 'a' for one. */
  students?: StudentSelection;
  /** Also output each student's float32 logits (for parity checks; not for shipping). */
  debugLogits?: boolean;
}

export interface GraphSummary {
  opset: number;
  precision: Precision;
  students: StudentSelection;
  inputs: TensorSummary[];
  outputs: TensorSummary[];
  nodes: number;
  /** Weight scalars in the graph (after BatchNorm folding), all students. */
  parameters: number;
  /** Trainable scalars of each exported source network (as PyTorch's parameters() counts). */
  trainableParameters: number[];
  weightBytes: number;
  fileBytes: number;
}

export interface ExportResult {
  onnx: Uint8Array;
  card: ModelCard;
  summary: GraphSummary;
}

function pickStudents(students: readonly unknown[], wanted: StudentSelection | undefined): { nets: { net: unknown; label: 'a' | 'b' }[]; selection: StudentSelection } {
  if (students.length !== 1 && students.length !== 2) {
    throw new InputError(`export: pass one or two students, got ${students.length}`);
  }
  const selection = wanted ?? (students.length === 2 ? 'both' : 'a');
  if (!['both', 'a', 'b'].includes(selection)) throw new InputError(`export: students must be both, a or b, got "${String(selection)}"`);
  if (selection === 'both') {
    if (students.length !== 2) throw new InputError('export: students "both" needs two networks, got one');
    return { nets: [{ net: students[0], label: 'a' }, { net: students[1], label: 'b' }], selection };
  }
  const net = students.length === 2 ? students[selection === 'a' ? 0 : 1] : students[0];
  return { nets: [{ net, label: selection }], selection };
}

function completeCard(card: ExportCard, selection: StudentSelection, numClasses: number): ModelCard {
  const full = {
    ...card,
    schema: MODEL_CARD_SCHEMA,
    input: { size: card.input?.size, channels: 1, sliceAxis: card.input?.sliceAxis, name: ONNX_INPUT, layout: card.dimensions === 3 ? 'NCDHW' : 'NCHW' },
    resize: card.resize ?? ALHVR_RECIPE_RESIZE,
    students: selection,
    outputs: {
      probabilities: ONNX_OUTPUTS.probabilities,
      label: ONNX_OUTPUTS.label,
      confidence: ONNX_OUTPUTS.confidence,
      ...(selection === 'both' ? { region: ONNX_OUTPUTS.region } : {}),
    },
    toolkit: card.toolkit ?? toolkitInfo(),
    createdAt: card.createdAt ?? new Date().toISOString(),
  };
  const valid = validateModelCard(JSON.parse(JSON.stringify(full)));
  if (valid.classes.length !== numClasses) {
    throw new InputError(`export: the card lists ${valid.classes.length} classes but the network outputs ${numClasses}`);
  }
  return valid;
}

/** One folded student and how to emit its clean branch: the only part of the graph that depends on the network. */
interface FoldedStudent {
  numClasses: number;
  trainableParameters: number;
  emit(g: OnnxGraphBuilder, input: string, prefix: string, weights: WeightStorage): string;
}

function foldStudent(net: unknown, label: 'a' | 'b', dimensions: 2 | 3): FoldedStudent {
  if (dimensions === 3) {
    const f = foldVNet3d(net, label);
    return { numClasses: f.numClasses, trainableParameters: f.trainableParameters, emit: (g, x, prefix, w) => emitVNet3d(g, f, x, prefix, w) };
  }
  const f = foldUNet(net, label);
  return { numClasses: f.numClasses, trainableParameters: f.trainableParameters, emit: (g, x, prefix, w) => emitUNet(g, f, x, prefix, w) };
}

/**
 * Export one or two students (their clean branch, eval mode) with the card. Two students give
 * the ensemble graph: probabilities (mean softmax), label, confidence, student_confidence,
 * student_label and region; one student gives probabilities, label and confidence. 2D graphs also
 * give each pixel's normalised entropy (`entropy`). A card with `dimensions: 3`
 * exports VNet3d students (training/src/model/vnet3d.ts) with the same heads over [D, H, W].
 */
export function exportOnnx(students: readonly unknown[], card: ExportCard, opts: ExportOptions = {}): ExportResult {
  const { nets, selection } = pickStudents(students, opts.students);
  const dimensions = card.dimensions ?? 2;
  const folded = nets.map(({ net, label }) => foldStudent(net, label, dimensions));
  const numClasses = folded[0].numClasses;
  if (folded.some((f) => f.numClasses !== numClasses)) {
    throw new InputError(`export: the students disagree on the number of classes (${folded.map((f) => f.numClasses).join(' vs ')})`);
  }
  const network = opts.fp16 === true ? 'fp16' : (opts.precision ?? 'fp32');
  const fp16 = network === 'fp16';
  // An int8 card (quantize-calibration.ts) already says so; the float graph under it is fp32.
  const precision = card.precision?.network === 'int8' ? card.precision : { network };
  const fullCard = completeCard({ ...card, precision }, selection, numClasses);
  const weights: WeightStorage = fp16 ? 'float16' : network === 'fp16-weights' ? 'float16-widened' : 'float32';

  const g = new OnnxGraphBuilder();
  // Spatial axes of every tensor: [H, W] for planes, [D, H, W] for 3D patches (D = k, W = i).
  const spatial = dimensions === 3 ? ['D', 'H', 'W'] : ['H', 'W'];
  const image = g.input(ONNX_INPUT, ElemType.FLOAT, ['N', 1, ...spatial]);
  const netInput = fp16 ? g.op('Cast', [image], 'image_fp16', { to: ElemType.FLOAT16 }) : image;
  const logits = folded.map((f, i) => {
    const label = nets[i].label;
    const raw = f.emit(g, netInput, `${label}/`, weights);
    // The heads run in float32 either way: softmax and the γ comparison want the precision.
    return fp16 ? g.op('Cast', [raw], `${label}/logits_fp32`, { to: ElemType.FLOAT }) : raw;
  });
  const C = numClasses;
  const plane = ['N', ...spatial];
  if (opts.debugLogits) {
    logits.forEach((l, i) => {
      const name = g.op('Identity', [l], logitsOutputName(nets[i].label));
      g.output(name, ElemType.FLOAT, ['N', C, ...spatial]);
    });
  }

  // Temperature scaling of each student (calibration): every output below sees the scaled logits.
  const inverseT = g.floatConstant(INVERSE_TEMPERATURE_INITIALIZER, 1 / (fullCard.calibration?.temperature ?? 1));
  const scaled = logits.map((l, i) => g.op('Mul', [l, inverseT], `${nets[i].label}/logits_scaled`));
  const softmax = scaled.map((l, i) => g.op('Softmax', [l], `${nets[i].label}/softmax`, { axis: 1 }));
  let probabilities: string;
  if (softmax.length === 2) {
    const sum = g.op('Add', softmax, 'softmax_sum');
    probabilities = g.op('Mul', [sum, g.floatConstant('half', 0.5)], ONNX_OUTPUTS.probabilities);
  } else {
    probabilities = g.op('Identity', softmax, ONNX_OUTPUTS.probabilities);
  }
  const argmax = g.op('ArgMax', [probabilities], 'label_int64', { axis: 1, keepdims: 0 });
  const label = g.op('Cast', [argmax], ONNX_OUTPUTS.label, { to: ElemType.UINT8 });
  const confidence = g.op('ReduceMax', [probabilities], ONNX_OUTPUTS.confidence, { axes: [1], keepdims: 0 });
  g.output(probabilities, ElemType.FLOAT, ['N', C, ...spatial]);
  g.output(label, ElemType.UINT8, plane);
  g.output(confidence, ElemType.FLOAT, plane);
  if (dimensions === 2 && C > 1) {
    // Each pixel's entropy of the ensemble probabilities over ln C, for the case's foreground-entropy
    // signal: ONNX Runtime takes the logarithms vectorised, and the 2D pipeline fetches one plane per
    // slice instead of C. (3D averages the windows' probabilities first, so it keeps computing its own.)
    // p ln p is taken as 0 at p = 0: p is raised to the smallest normal float before the logarithm.
    const clipped = g.op('Max', [probabilities, g.floatConstant('smallest_normal', 2 ** -126)], 'probabilities_clipped');
    const pLogP = g.op('Mul', [probabilities, g.op('Log', [clipped], 'log_probabilities')], 'p_log_p');
    const sumPLogP = g.op('ReduceSum', [pLogP, g.int64Tensor('class_axis', [1])], 'sum_p_log_p', { keepdims: 0 });
    const entropy = g.op('Mul', [sumPLogP, g.floatConstant('minus_inverse_log_classes', -1 / Math.log(C))], ONNX_OUTPUTS.entropy);
    g.output(entropy, ElemType.FLOAT, plane);
  }

  if (softmax.length === 2) {
    const own = softmax.map((p, i) => g.op('ReduceMax', [p], `${nets[i].label}/confidence`, { axes: [1], keepdims: 1 }));
    const studentConfidence = g.op('Concat', own, ONNX_OUTPUTS.studentConfidence, { axis: 1 });
    // region = 3 − #students with max-prob > γ: 1 both, 2 exactly one, 3 neither.
    const gamma = g.floatConstant(GAMMA_INITIALIZER, fullCard.regions.gamma);
    const above = g.op('Greater', [studentConfidence, gamma], 'above_gamma');
    const aboveF = g.op('Cast', [above], 'above_gamma_f', { to: ElemType.FLOAT });
    const count = g.op('ReduceSum', [aboveF, g.int64Tensor('channel_axis', [1])], 'confident_students', { keepdims: 0 });
    const regionF = g.op('Sub', [g.floatConstant('three', 3), count], 'region_f');
    const region = g.op('Cast', [regionF], ONNX_OUTPUTS.region, { to: ElemType.UINT8 });
    g.output(studentConfidence, ElemType.FLOAT, ['N', 2, ...spatial]);
    g.output(region, ElemType.UINT8, plane);
    // Each student's own label, for the students' agreement (a case-quality signal).
    const own8 = softmax.map((p, i) => g.op('ArgMax', [p], `${nets[i].label}/label_int64`, { axis: 1, keepdims: 1 }));
    const both = g.op('Concat', own8, 'student_label_int64', { axis: 1 });
    const studentLabel = g.op('Cast', [both], ONNX_OUTPUTS.studentLabel, { to: ElemType.UINT8 });
    g.output(studentLabel, ElemType.UINT8, ['N', 2, ...spatial]);
  }

  const bytes = g.build(
    graphName(dimensions, selection),
    { [MODEL_CARD_KEY]: JSON.stringify(fullCard) },
    { name: 'alhvr-toolkit', version: fullCard.toolkit.version },
  );
  const s = g.summary;
  return {
    onnx: bytes,
    card: fullCard,
    summary: {
      opset: OPSET,
      precision: network,
      students: selection,
      inputs: s.inputs,
      outputs: s.outputs,
      nodes: s.nodes,
      parameters: g.weightCount,
      trainableParameters: folded.map((f) => f.trainableParameters),
      weightBytes: g.weightBytes,
      fileBytes: bytes.length,
    },
  };
}

/** Graph name: the 2D names predate 3D and stay as they were. */
function graphName(dimensions: 2 | 3, selection: StudentSelection): string {
  const net = dimensions === 3 ? 'vnet3d' : 'unet';
  return selection === 'both' ? `alhvr_two_student_${net}` : `alhvr_${net}_student_${selection}`;
}
