/**
 * Reads a live ALHVR U-Net's parameters into channels-first (OIHW) convolution weights with
 * eval-mode BatchNorm folded in. Anything the exporter does not know how to map (an unknown or
 * missing parameter, a wrong shape, an unsupported configuration or network class) stops the
 * export with its name: a silent mismatch would ship a model that computes something else.
 * The network's layers, parameter shapes and BatchNorm epsilon are training's spec
 * (training/src/model/unet-spec.ts), walked here, not written again.
 */
import { InputError } from '@alhvr/core';
import { BN_EPS, BN_FIELDS, UNET_LEVELS, unetConvLayers, unetParameterShapes, unetSpec, type UNetSpec } from '@alhvr/training';

/** The part of a tfjs Variable the exporter reads. */
export interface WeightTensor {
  readonly shape: number[];
  dataSync(): ArrayLike<number>;
}

/** What the exporter needs from training's `UNet` (structural, so dist and src copies both fit). */
export interface ExportableUNet {
  readonly config: { inChannels: number; numClasses: number; widths: number[]; dropout: number[] };
  readonly params: { readonly variables: Map<string, WeightTensor> };
}

/** One convolution, channels-first, BatchNorm already folded in. */
export interface FoldedConv {
  name: string;
  /** [out, in, kh, kw] */
  dims: [number, number, number, number];
  weight: Float32Array;
  bias: Float32Array;
}

export interface FoldedUNet {
  /** The network the convolutions belong to (the emitter walks it). */
  spec: UNetSpec;
  widths: number[];
  numClasses: number;
  /** Conv layers by the spec's layer names: enc.{l}.conv{1,2}, dec.up{n}.reduce, dec.up{n}.conv{1,2}, dec.out. */
  convs: Map<string, FoldedConv>;
  /** Trainable scalars of the source network (conv weights, biases, BN γ and β). */
  trainableParameters: number;
}

function describeClass(value: unknown): string {
  if (value === null || typeof value !== 'object') return typeof value;
  return (value as object).constructor?.name ?? 'Object';
}

function checkNetwork(net: unknown, label: string): asserts net is ExportableUNet {
  const n = net as Partial<ExportableUNet> | null;
  const isUNet =
    n !== null &&
    typeof n === 'object' &&
    typeof n.config === 'object' &&
    Array.isArray(n.config?.widths) &&
    n.params?.variables instanceof Map;
  if (!isUNet) {
    throw new InputError(
      `export: student ${label} is a ${describeClass(net)}, not an ALHVR UNet; only the toolkit's UNet (training/src/model/unet.ts) can be exported`,
    );
  }
  const { inChannels, widths, numClasses } = n.config!;
  if (inChannels !== 1) throw new InputError(`export: student ${label} has ${inChannels} input channels; the model card format supports 1`);
  if (widths.length !== UNET_LEVELS || !widths.every((w) => Number.isInteger(w) && w > 0)) {
    throw new InputError(`export: student ${label} has widths [${widths}]; the exporter maps exactly five positive encoder widths`);
  }
  if (!Number.isInteger(numClasses) || numClasses < 2 || numClasses > 256) {
    throw new InputError(`export: student ${label} has ${numClasses} classes; labels are uint8, so 2–256 classes`);
  }
}

/**
 * Validate a student's parameter set against its configuration and fold BatchNorm.
 * Folding, per output channel o: s = γ/√(σ² + ε); W' = W·s; b' = (b − μ)·s + β — computed in
 * float64 and rounded once to float32.
 */
export function foldUNet(net: unknown, label: string): FoldedUNet {
  checkNetwork(net, label);
  const { inChannels, widths, numClasses } = net.config;
  const spec = unetSpec({ inChannels, widths, numClasses });
  const shapes = unetParameterShapes(spec);
  const vars = net.params.variables;
  for (const [name, v] of vars) {
    const want = shapes.get(name);
    if (!want) {
      throw new InputError(
        `export: student ${label} has parameter "${name}" (${describeClass(v)} [${v.shape}]) that is not part of the ALHVR U-Net (unknown layer); refusing to export`,
      );
    }
    if (v.shape.length !== want.length || v.shape.some((d, i) => d !== want[i])) {
      throw new InputError(
        `export: student ${label} parameter "${name}" has shape [${v.shape}], expected [${want}] for widths [${widths}] and ${numClasses} classes`,
      );
    }
  }
  for (const name of shapes.keys()) {
    if (!vars.has(name)) throw new InputError(`export: student ${label} is missing parameter "${name}"`);
  }

  const read = (name: string) => vars.get(name)!.dataSync();
  const convs = new Map<string, FoldedConv>();
  let trainable = 0;
  for (const s of unetConvLayers(spec)) {
    const hwio = read(`${s.name}.kernel`);
    const bias = read(`${s.name}.bias`);
    trainable += hwio.length + bias.length;
    const scale = new Float64Array(s.cout).fill(1);
    const shift = new Float64Array(s.cout);
    for (let o = 0; o < s.cout; o++) shift[o] = bias[o];
    if (s.bn) {
      const [gamma, beta, mean, variance] = BN_FIELDS.map((f) => read(`${s.bn}.${f}`));
      trainable += gamma.length + beta.length;
      for (let o = 0; o < s.cout; o++) {
        scale[o] = gamma[o] / Math.sqrt(variance[o] + BN_EPS);
        shift[o] = (bias[o] - mean[o]) * scale[o] + beta[o];
      }
    }
    // HWIO [kh, kw, cin, cout] → OIHW [cout, cin, kh, kw].
    const { kernel: k, cin, cout } = s;
    const weight = new Float32Array(cout * cin * k * k);
    for (let y = 0; y < k; y++) {
      for (let x = 0; x < k; x++) {
        for (let i = 0; i < cin; i++) {
          const src = ((y * k + x) * cin + i) * cout;
          for (let o = 0; o < cout; o++) weight[((o * cin + i) * k + y) * k + x] = hwio[src + o] * scale[o];
        }
      }
    }
    convs.set(s.name, { name: s.name, dims: [cout, cin, k, k], weight, bias: Float32Array.from(shift) });
  }
  return { spec, widths: [...widths], numClasses, convs, trainableParameters: trainable };
}
