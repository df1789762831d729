/**
 * A small builder over the onnx-proto generated classes (protobufjs): named nodes, initializers
 * and value infos, serialised with `onnx.ModelProto.encode`. Encoding is never done by hand.
 */
import onnxProto from 'onnx-proto';
import { toFloat16Array } from './float16.js';

export const { onnx } = onnxProto;
export type OnnxModel = onnxProto.onnx.ModelProto;

export const OPSET = 17;
/** IR version 8 is what opset 17 ships with (ONNX 1.12); older runtimes reject newer IRs. */
export const IR_VERSION = 8;

export const ElemType = {
  FLOAT: onnx.TensorProto.DataType.FLOAT,
  UINT8: onnx.TensorProto.DataType.UINT8,
  INT64: onnx.TensorProto.DataType.INT64,
  FLOAT16: onnx.TensorProto.DataType.FLOAT16,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

export type AttributeValue = number | string | number[] | { float: number };

/** One symbolic or fixed dimension of a graph input/output. */
export type Dim = number | string;

export interface TensorSummary {
  name: string;
  type: 'float32' | 'float16' | 'uint8' | 'int64';
  shape: Dim[];
}

const TYPE_NAME: Record<number, TensorSummary['type']> = {
  [ElemType.FLOAT]: 'float32',
  [ElemType.FLOAT16]: 'float16',
  [ElemType.UINT8]: 'uint8',
  [ElemType.INT64]: 'int64',
};

function attribute(name: string, value: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if (typeof value === 'object') return { name, type: T.FLOAT, f: value.float };
  if (!Number.isInteger(value)) throw new Error(`attribute ${name}: non-integer ${value} must be given as { float }`);
  return { name, type: T.INT, i: value };
}

function valueInfo(name: string, elemType: ElemType, shape: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** How network weights are stored in the graph (see OnnxGraphBuilder.weight). */
export type WeightStorage = 'float32' | 'float16' | 'float16-widened';

export class OnnxGraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly inputs: TensorSummary[] = [];
  private readonly outputs: TensorSummary[] = [];
  private readonly inputInfos: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputInfos: onnxProto.onnx.IValueInfoProto[] = [];
  private nodeCount = 0;
  /** Scalars held in floating-point initializers (the network's weights). */
  weightCount = 0;
  weightBytes = 0;

  /** A fresh tensor name starting with `base`. */
  fresh(base: string): string {
    let name = base;
    for (let n = 1; this.used.has(name); n++) name = `${base}_${n}`;
    this.used.add(name);
    return name;
  }

  private claim(name: string): string {
    if (this.used.has(name)) throw new Error(`ONNX graph: tensor name ${name} used twice`);
    this.used.add(name);
    return name;
  }

  input(name: string, elemType: ElemType, shape: Dim[]): string {
    this.claim(name);
    this.inputInfos.push(valueInfo(name, elemType, shape));
    this.inputs.push({ name, type: TYPE_NAME[elemType], shape });
    return name;
  }

  /** Declare an existing tensor as a graph output. */
  output(name: string, elemType: ElemType, shape: Dim[]): void {
    this.outputInfos.push(valueInfo(name, elemType, shape));
    this.outputs.push({ name, type: TYPE_NAME[elemType], shape });
  }

  /**
   * Append a node; returns its output names. `outputs` entries are taken verbatim when they
   * are free, so graph outputs can be given their contract names.
   */
  node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttributeValue> = {}): string[] {
    const out = outputs.map((o) => (this.used.has(o) ? this.fresh(o) : this.claim(o)));
    this.nodes.push({
      name: `${opType}_${this.nodeCount++}`,
      opType,
      input: inputs,
      output: out,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return out;
  }

  /** Single-output convenience. */
  op(opType: string, inputs: string[], output: string, attrs: Record<string, AttributeValue> = {}): string {
    return this.node(opType, inputs, [output], attrs)[0];
  }

  /** A floating-point initializer, stored as float32 or float16. */
  floatTensor(name: string, values: Float32Array, dims: number[], elemType: ElemType = ElemType.FLOAT): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (expected !== values.length) throw new Error(`initializer ${name}: ${values.length} values for shape [${dims}]`);
    const data = elemType === ElemType.FLOAT16 ? toFloat16Array(values) : values;
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    this.initializers.push({ name: this.claim(name), dims, dataType: elemType, rawData: littleEndian(raw, data.BYTES_PER_ELEMENT) });
    this.weightCount += values.length;
    this.weightBytes += raw.length;
    return name;
  }

  /**
   * A network weight as the precision stores it: float32; float16 for fp16 compute; or float16
   * widened back to float32 by a Cast (fp16-weights: half the file, float32 compute — ONNX Runtime
   * folds the Cast once when the session loads).
   */
  weight(name: string, values: Float32Array, dims: number[], storage: WeightStorage): string {
    if (storage === 'float32') return this.floatTensor(name, values, dims, ElemType.FLOAT);
    if (storage === 'float16') return this.floatTensor(name, values, dims, ElemType.FLOAT16);
    const half = this.floatTensor(`${name}.fp16`, values, dims, ElemType.FLOAT16);
    return this.op('Cast', [half], name, { to: ElemType.FLOAT });
  }

  /** A float32 constant that is not a network weight (thresholds, factors). */
  floatConstant(name: string, value: number): string {
    this.initializers.push({ name: this.claim(name), dims: [], dataType: ElemType.FLOAT, floatData: [value] });
    return name;
  }

  int64Tensor(name: string, values: number[], dims: number[] = [values.length]): string {
    this.initializers.push({ name: this.claim(name), dims, dataType: ElemType.INT64, int64Data: values });
    return name;
  }

  get summary(): { inputs: TensorSummary[]; outputs: TensorSummary[]; nodes: number; initializers: number } {
    return { inputs: [...this.inputs], outputs: [...this.outputs], nodes: this.nodes.length, initializers: this.initializers.length };
  }

  build(graphName: string, metadata: Record<string, string>, producer: { name: string; version: string }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: producer.name,
      producerVersion: producer.version,
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputInfos,
        output: this.outputInfos,
      },
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    });
    const bytes = onnx.ModelProto.encode(model).finish();
    // protobufjs may hand back a Buffer view into a shared pool; give callers a plain copy.
    return new Uint8Array(bytes);
  }
}

const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** ONNX raw_data is little-endian whatever the host. */
function littleEndian(raw: Uint8Array, width: number): Uint8Array {
  if (hostIsLittleEndian || width === 1) return raw;
  for (let i = 0; i < raw.length; i += width) raw.subarray(i, i + width).reverse();
  return raw;
}

/** Decode a serialised model (for reading back metadata or inspecting a graph). */
export function decodeOnnxModel(bytes: Uint8Array): OnnxModel {
  return onnx.ModelProto.decode(bytes);
}
