/**
 * int8 post-training quantization of an exported float32 model, written as QDQ pairs
 * (QuantizeLinear → DequantizeLinear) in the layout ONNX Runtime's CPU graph optimiser turns into
 * integer kernels: each network Conv reads DequantizeLinear'd uint8 activations, int8 weights
 * (symmetric, one scale per output channel, 7-bit: see WEIGHT_CODE_MAX) and int32 bias (scale = input scale × weight scale),
 * and its output goes straight into a QuantizeLinear → QLinearConv. LeakyReLU becomes
 * QLinearLeakyRelu, the skip Concat QLinearConcat, and MaxPool/Resize run on uint8 because their
 * QuantizeLinear repeats the scale of their input (ORT then drops the pair around them).
 * The last Conv (the logits) and every head after it (temperature, softmax, γ, argmax) stay float32.
 */
import { InputError } from '@alhvr/core';
import type onnxProto from 'onnx-proto';
import { decodeOnnxModel, ElemType, onnx, type OnnxModel } from './onnx-graph-builder.js';

type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;

/** Observed value range of one activation tensor over the calibration slices. */
export interface ActivationRange {
  min: number;
  max: number;
}

/** How the activation scales were found (recorded in the card). */
export const ACTIVATION_SCALE_RULE = 'min-max over every calibration slice, uint8 asymmetric per tensor';

/** The network's float activations and how each is quantized; everything the rewrite needs. */
export interface QuantizationPlan {
  /** Tensors that get a Q/DQ pair, in graph order. */
  activations: string[];
  /** Tensors whose scale must repeat their input's (MaxPool, Resize outputs): tensor → input. */
  inheritsScale: Map<string, string>;
  /** Conv nodes computed in int8 (by node name). */
  integerConvs: Set<string>;
  /** Tensors whose range has to be measured (activations minus inherited ones). */
  measured: string[];
}

const PASS_THROUGH = new Set(['MaxPool', 'Resize']);
const NETWORK_OPS = new Set(['Conv', 'LeakyRelu', 'MaxPool', 'Resize', 'Concat']);

/**
 * Walk the graph from the image input: the network's float activations are the image and the
 * outputs of Conv, LeakyRelu, MaxPool, Resize and Concat fed by activations. A Conv whose output
 * reaches anything else (the heads) is the logits layer and stays float32.
 */
export function planQuantization(model: OnnxModel, imageInput: string): QuantizationPlan {
  const graph = model.graph as onnxProto.onnx.GraphProto;
  const consumers = new Map<string, NodeProto[]>();
  for (const n of graph.node) for (const i of n.input ?? []) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const isActivation = new Set<string>([imageInput]);
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) {
    const op = n.opType!;
    if (!NETWORK_OPS.has(op)) continue;
    const ins = op === 'Concat' ? n.input! : [n.input![0]];
    if (!ins.every((i) => isActivation.has(i))) continue;
    isActivation.add(n.output![0]);
    producer.set(n.output![0], n);
  }
  const integerConvs = new Set<string>();
  const activations: string[] = [];
  const inheritsScale = new Map<string, string>();
  for (const t of isActivation) {
    const p = producer.get(t);
    const users = consumers.get(t) ?? [];
    const feedsHeads = users.some((u) => !NETWORK_OPS.has(u.opType!) && u.opType !== 'Shape');
    if (p?.opType === 'Conv') {
      if (feedsHeads) continue; // the logits: float32 Conv, float32 heads
      integerConvs.add(p.name!);
    } else if (feedsHeads) {
      throw new Error(`quantize: activation ${t} feeds the heads directly; expected a Conv before them`);
    }
    activations.push(t);
    if (p && PASS_THROUGH.has(p.opType!)) inheritsScale.set(t, p.input![0]);
  }
  // Every int8 Conv must read a quantized activation (its DequantizeLinear input).
  for (const n of graph.node) {
    if (integerConvs.has(n.name!) && !activations.includes(n.input![0])) throw new Error(`quantize: conv ${n.name} reads an unquantized tensor`);
  }
  return { activations, inheritsScale, integerConvs, measured: activations.filter((t) => !inheritsScale.has(t)) };
}

/** The fp32 model with every measured activation also a graph output (for range calibration). */
export function withActivationOutputs(bytes: Uint8Array, tensors: readonly string[]): Uint8Array {
  const model = decodeOnnxModel(bytes);
  const graph = model.graph as onnxProto.onnx.GraphProto;
  const present = new Set(graph.output.map((o) => o.name));
  for (const t of tensors) {
    if (present.has(t)) continue;
    graph.output.push(onnx.ValueInfoProto.create({ name: t, type: { tensorType: { elemType: ElemType.FLOAT } } }));
  }
  return new Uint8Array(onnx.ModelProto.encode(model).finish());
}

/** Widen `ranges` by the values of one fetched activation. */
export function observeRange(ranges: Map<string, ActivationRange>, tensor: string, values: Float32Array): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const r = ranges.get(tensor);
  ranges.set(tensor, r ? { min: Math.min(r.min, lo), max: Math.max(r.max, hi) } : { min: lo, max: hi });
}

/** uint8 asymmetric parameters covering [min, max] and zero (so zero padding is exact). */
export function uint8Params(range: ActivationRange): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, range.min);
  const hi = Math.max(0, range.max);
  if (!(hi > lo)) return { scale: 1, zeroPoint: 0 };
  const scale = (hi - lo) / 255;
  return { scale, zeroPoint: Math.min(255, Math.max(0, Math.round(-lo / scale))) };
}

/**
 * Largest weight code: 7 bits of the int8 range. ONNX Runtime's uint8×int8 kernels on AVX2
 * without VNNI (this project's CPUs) sum pairs of products in saturating int16; with the full
 * ±127 a tiny test U-Net's labels agreed with fp32 on 91.6 % of voxels against 99.0 % for the
 * same QDQ graph run unfused, and ±63 gave 99.0 % fused as well.
 */
export const WEIGHT_CODE_MAX = 63;

/** int8 symmetric per-output-channel weights ([Cout, ...] row-major) in ±WEIGHT_CODE_MAX, and their scales. */
export function quantizeWeightsPerChannel(weights: Float32Array, outChannels: number): { q: Int8Array; scales: Float32Array } {
  const per = weights.length / outChannels;
  const q = new Int8Array(weights.length);
  const scales = new Float32Array(outChannels);
  for (let c = 0; c < outChannels; c++) {
    let maxAbs = 0;
    for (let i = c * per; i < (c + 1) * per; i++) maxAbs = Math.max(maxAbs, Math.abs(weights[i]));
    // An all-zero filter still needs a positive scale; its weights quantize to 0 either way.
    const scale = maxAbs > 0 ? maxAbs / WEIGHT_CODE_MAX : 1;
    scales[c] = scale;
    for (let i = c * per; i < (c + 1) * per; i++) q[i] = Math.max(-WEIGHT_CODE_MAX, Math.min(WEIGHT_CODE_MAX, Math.round(weights[i] / scale)));
  }
  return { q, scales };
}

function floatValues(t: TensorProto): Float32Array {
  if (t.dataType !== ElemType.FLOAT) throw new InputError(`quantize: initializer ${t.name} is not float32 (int8 quantizes an fp32 export)`);
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData.slice();
    return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

function rawTensor(name: string, dataType: number, dims: number[], data: ArrayBufferView): TensorProto {
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  return { name, dataType, dims, rawData: raw };
}

export interface QuantizeOptions {
  ranges: ReadonlyMap<string, ActivationRange>;
  plan: QuantizationPlan;
  /** Replaces the model's metadata_props (the card with its precision). */
  metadata?: Record<string, string>;
}

/**
 * Rewrite a float32 model into QDQ int8. Graph input, outputs and every head are unchanged;
 * returns the serialised model and the bytes its weights now take.
 */
export function quantizeModel(bytes: Uint8Array, opts: QuantizeOptions): { onnx: Uint8Array; weightBytes: number } {
  const { plan, ranges } = opts;
  const model = decodeOnnxModel(bytes);
  const graph = model.graph as onnxProto.onnx.GraphProto;
  const inits = new Map(graph.initializer.map((t) => [t.name!, t]));
  const params = new Map<string, { scale: string; zeroPoint: string; value: { scale: number; zeroPoint: number } }>();
  const newInits: TensorProto[] = [];
  const paramsOf = (t: string) => {
    const p = params.get(t);
    if (!p) throw new Error(`quantize: no scale for ${t}`);
    return p;
  };
  for (const t of plan.activations) {
    const inherited = plan.inheritsScale.get(t);
    if (inherited !== undefined) {
      params.set(t, paramsOf(inherited));
      continue;
    }
    const range = ranges.get(t);
    if (!range) throw new Error(`quantize: activation ${t} was not calibrated`);
    const value = uint8Params(range);
    const scale = `${t}.scale`;
    const zeroPoint = `${t}.zero_point`;
    newInits.push({ name: scale, dataType: ElemType.FLOAT, dims: [], floatData: [value.scale] });
    newInits.push(rawTensor(zeroPoint, ElemType.UINT8, [], Uint8Array.of(value.zeroPoint)));
    params.set(t, { scale, zeroPoint, value });
  }

  const dequantized = (t: string) => `${t}.dq`;
  const nodes: NodeProto[] = [];
  let counter = 0;
  const qdq = (t: string) => {
    const p = paramsOf(t);
    nodes.push({ name: `QuantizeLinear_${counter}`, opType: 'QuantizeLinear', input: [t, p.scale, p.zeroPoint], output: [`${t}.q`] });
    nodes.push({ name: `DequantizeLinear_${counter++}`, opType: 'DequantizeLinear', input: [`${t}.q`, p.scale, p.zeroPoint], output: [dequantized(t)] });
  };
  const quantized = new Set(plan.activations);
  const weightDq = (n: NodeProto) => {
    const [x, wName, bName] = n.input!;
    const w = inits.get(wName)!;
    const dims = w.dims!.map(Number);
    const { q, scales } = quantizeWeightsPerChannel(floatValues(w), dims[0]);
    inits.delete(wName);
    newInits.push(rawTensor(`${wName}.q`, onnx.TensorProto.DataType.INT8, dims, q));
    newInits.push({ name: `${wName}.scale`, dataType: ElemType.FLOAT, dims: [dims[0]], floatData: [...scales] });
    newInits.push(rawTensor(`${wName}.zero_point`, onnx.TensorProto.DataType.INT8, [dims[0]], new Int8Array(dims[0])));
    nodes.push({ name: `DequantizeLinear_${counter++}`, opType: 'DequantizeLinear', input: [`${wName}.q`, `${wName}.scale`, `${wName}.zero_point`], output: [dequantized(wName)], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] });
    const inputs = [dequantized(x), dequantized(wName)];
    if (bName) {
      const b = inits.get(bName)!;
      const bias = floatValues(b);
      const xScale = paramsOf(x).value.scale;
      const bScales = Float32Array.from(scales, (s) => s * xScale);
      const bq = Int32Array.from(bias, (v, c) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / bScales[c]))));
      inits.delete(bName);
      newInits.push(rawTensor(`${bName}.q`, onnx.TensorProto.DataType.INT32, [bias.length], bq));
      newInits.push({ name: `${bName}.scale`, dataType: ElemType.FLOAT, dims: [bias.length], floatData: [...bScales] });
      newInits.push(rawTensor(`${bName}.zero_point`, onnx.TensorProto.DataType.INT32, [bias.length], new Int32Array(bias.length)));
      nodes.push({ name: `DequantizeLinear_${counter++}`, opType: 'DequantizeLinear', input: [`${bName}.q`, `${bName}.scale`, `${bName}.zero_point`], output: [dequantized(bName)], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] });
      inputs.push(dequantized(bName));
    }
    return inputs;
  };

  if (quantized.has(graph.input[0].name!)) qdq(graph.input[0].name!);
  for (const n of graph.node) {
    // Shape only reads dimensions: from the uint8 tensor, so no DequantizeLinear is kept for it.
    const rewired = { ...n, input: n.input!.map((i) => (!quantized.has(i) ? i : n.opType === 'Shape' ? `${i}.q` : dequantized(i))) };
    if (plan.integerConvs.has(n.name!)) rewired.input = weightDq(n);
    nodes.push(rewired);
    for (const o of n.output ?? []) if (quantized.has(o)) qdq(o);
  }
  graph.node = nodes;
  graph.initializer = [...inits.values(), ...newInits];
  if (opts.metadata) model.metadataProps = Object.entries(opts.metadata).map(([key, value]) => ({ key, value }));
  const weightBytes = graph.initializer.reduce((s, t) => s + (t.rawData?.length ?? 0), 0);
  return { onnx: new Uint8Array(onnx.ModelProto.encode(model).finish()), weightBytes };
}
