/**
 * The ALHVR student U-Net (released `UNet_fea_aux`, clean branch) described once, as data:
 * which convolutions exist, their sizes, which are followed by BatchNorm + LeakyReLU, the
 * pooling, skip connections and the prototype-feature tap. Three walkers read it — the tfjs
 * model (unet.ts: creates the parameters and runs the layers), the exporter's BatchNorm folder
 * (export/src/unet-weights.ts: which parameters a student must have, with which shapes) and the
 * ONNX emitter (export/src/unet-graph.ts) — so none of them spells the topology out again.
 * Plain data and numbers only: no tfjs.
 *
 * Layer names are the parameter prefixes of params.ts:
 *   enc.{0..4}.{conv1,conv2}, enc.{l}.{bn1,bn2}     (encoder blocks)
 *   dec.up{1..4}.reduce                             (the 1×1 conv before upsampling)
 *   dec.up{n}.{conv1,conv2,bn1,bn2}                 (the block after concatenation)
 *   dec.out                                         (final 3×3 conv to class logits)
 */

/** PyTorch BatchNorm2d defaults (epsilon, running-statistics momentum). */
export const BN_EPS = 1e-5;
export const BN_MOMENTUM = 0.1;
/** PyTorch LeakyReLU default negative slope, after every BatchNorm of the network. */
export const LEAKY_SLOPE = 0.01;

/** Encoder levels (four poolings: plane sides must be multiples of 2^4). */
export const UNET_LEVELS = 5;

/** One convolution: stride 1, "same" zero padding ((kernel − 1)/2), with bias. */
export interface ConvLayerSpec {
  /** Parameter prefix: `${name}.kernel` [k, k, cin, cout] and `${name}.bias` [cout]. */
  name: string;
  kernel: 1 | 3;
  cin: number;
  cout: number;
  /** BatchNorm prefix (`${bn}.gamma|beta|runningMean|runningVar`, [cout]) followed by LeakyReLU; absent: the conv is linear. */
  bn?: string;
}

/** conv3×3 → BN → LeakyReLU → Dropout(p) → conv3×3 → BN → LeakyReLU. */
export interface ConvBlockSpec {
  name: string;
  conv1: ConvLayerSpec;
  conv2: ConvLayerSpec;
  /** Dropout probability between the two convolutions (training only). */
  dropout: number;
}

export interface EncoderStageSpec {
  /** 2×2 max pooling (stride 2) before the block: every level but the first. */
  pool: boolean;
  block: ConvBlockSpec;
}

export interface DecoderStageSpec {
  name: string;
  /** 1×1 conv of the deeper features, then bilinear upsampling (align corners) to the skip's plane. */
  reduce: ConvLayerSpec;
  /** Encoder level whose output is concatenated (skip first, then the upsampled features). */
  skipLevel: number;
  /** The reduced map here is the prototype feature map (`fea`, H/8 × W/8, widths[2] channels). */
  prototype: boolean;
  block: ConvBlockSpec;
}

export interface UNetSpec {
  inChannels: number;
  numClasses: number;
  widths: number[];
  encoder: EncoderStageSpec[];
  decoder: DecoderStageSpec[];
  /** Final conv to class logits (linear). */
  head: ConvLayerSpec;
}

export interface UNetShape {
  inChannels: number;
  numClasses: number;
  /** Encoder widths, one per level. */
  widths: readonly number[];
  /** Dropout per encoder level (the decoder uses none); zeros when absent (eval, export). */
  dropout?: readonly number[];
}

function convBlockSpec(name: string, cin: number, cout: number, dropout: number): ConvBlockSpec {
  return {
    name,
    conv1: { name: `${name}.conv1`, kernel: 3, cin, cout, bn: `${name}.bn1` },
    conv2: { name: `${name}.conv2`, kernel: 3, cin: cout, cout, bn: `${name}.bn2` },
    dropout,
  };
}

/** The network for a configuration (which the caller has checked: five widths, ≥ 2 classes). */
export function unetSpec(shape: UNetShape): UNetSpec {
  const { inChannels, numClasses } = shape;
  const widths = [...shape.widths];
  const encoder: EncoderStageSpec[] = widths.map((w, l) => ({
    pool: l > 0,
    block: convBlockSpec(`enc.${l}`, l === 0 ? inChannels : widths[l - 1], w, shape.dropout?.[l] ?? 0),
  }));
  const decoder: DecoderStageSpec[] = [];
  for (let n = 1; n < widths.length; n++) {
    const deep = widths.length - n;
    const skipLevel = deep - 1;
    const name = `dec.up${n}`;
    decoder.push({
      name,
      reduce: { name: `${name}.reduce`, kernel: 1, cin: widths[deep], cout: widths[skipLevel] },
      skipLevel,
      prototype: n === 2,
      block: convBlockSpec(name, 2 * widths[skipLevel], widths[skipLevel], 0),
    });
  }
  const head: ConvLayerSpec = { name: 'dec.out', kernel: 3, cin: widths[0], cout: numClasses };
  return { inChannels, numClasses, widths, encoder, decoder, head };
}

/**
 * Every convolution in creation order — each encoder block, then per decoder stage its reduce
 * conv and block, then the head — which is also the order the clean branch uses them and the
 * order of PyTorch's state_dict.
 */
export function unetConvLayers(spec: UNetSpec): ConvLayerSpec[] {
  const block = (b: ConvBlockSpec) => [b.conv1, b.conv2];
  return [...spec.encoder.flatMap((s) => block(s.block)), ...spec.decoder.flatMap((s) => [s.reduce, ...block(s.block)]), spec.head];
}

/** BatchNorm parameter fields, in creation order. */
export const BN_FIELDS = ['gamma', 'beta', 'runningMean', 'runningVar'] as const;

/** Every parameter the network has, by name, with its tfjs (NHWC, HWIO) shape, in creation order. */
export function unetParameterShapes(spec: UNetSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const c of unetConvLayers(spec)) {
    shapes.set(`${c.name}.kernel`, [c.kernel, c.kernel, c.cin, c.cout]);
    shapes.set(`${c.name}.bias`, [c.cout]);
    if (c.bn) for (const f of BN_FIELDS) shapes.set(`${c.bn}.${f}`, [c.cout]);
  }
  return shapes;
}
