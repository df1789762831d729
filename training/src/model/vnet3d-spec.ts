/**
 * The 3D ALHVR student (released `vnet_fea_aux`, VNet with a feature-perturbed auxiliary
 * decoder; shared/docs/alhvr-method-3d.md §2) described once, as data, beside unet-spec.ts:
 * which convolutions exist, their kind and size, which are followed by BatchNorm3d + ReLU, the
 * additive skips, the two Dropout3d and the prototype-feature tap. The tfjs model
 * (vnet3d.ts) walks it; an exporter walks the same list. Plain data and numbers only: no tfjs.
 *
 * Layer names are parameter prefixes (PyTorch module in brackets):
 *   enc.{l}.conv{i}, enc.{l}.bn{i}     block of level l           [block_one … block_five]
 *   enc.{l}.down, enc.{l}.downBn       2³ stride-2 conv into l    [block_one_dw … block_four_dw]
 *   dec.{n}.up, dec.{n}.upBn           2³ stride-2 transposed     [block_five_up … block_eight_up]
 *   dec.{n}.conv{i}, dec.{n}.bn{i}     block after the skip add   [block_six … block_nine]
 *   dec.out                            1³ conv to class logits    [out_conv]
 */

/** Encoder levels: four stride-2 downsamplings, so every side must be a multiple of 2^4. */
export const VNET_LEVELS = 5;
/** Convolutions per block at each encoder level (the decoder mirrors levels 3..0). */
export const VNET_BLOCK_DEPTHS = [1, 2, 3, 3, 3] as const;
/** Released widths (base 16, doubled by each downsampling). */
export const VNET_DEFAULT_WIDTHS = [16, 32, 64, 128, 256];
/** Dropout3d probability on the deepest features and before the head (released `has_dropout`). */
export const VNET_DROPOUT = 0.5;
/** Input sides must be multiples of this. */
export const VNET_SIDE_MULTIPLE = 2 ** (VNET_LEVELS - 1);

/**
 * One 3D convolution with bias.
 * - `conv`: kernel³, stride 1, "same" zero padding; tfjs kernel [k, k, k, cin, cout].
 * - `down`: 2³, stride 2, no padding; tfjs kernel [2, 2, 2, cin, cout].
 * - `up`: transposed 2³, stride 2; tfjs kernel [2, 2, 2, cout, cin] (tfjs' conv3dTranspose order;
 *   PyTorch's ConvTranspose3d weight is [cin, cout, 2, 2, 2]).
 */
export interface Conv3dLayerSpec {
  /** Parameter prefix: `${name}.kernel` and `${name}.bias` [cout]. */
  name: string;
  kind: 'conv' | 'down' | 'up';
  kernel: 1 | 2 | 3;
  cin: number;
  cout: number;
  /** BatchNorm3d prefix (gamma, beta, runningMean, runningVar: [cout]) followed by ReLU; absent: linear. */
  bn?: string;
}

export interface VNetEncoderStage {
  /** The stride-2 convolution into this level (every level but the first). */
  down?: Conv3dLayerSpec;
  /** Plain (non-residual) block: each conv → BN → ReLU. */
  convs: Conv3dLayerSpec[];
  /** Dropout3d after the block (training only); 0 for none. */
  dropout: number;
}

export interface VNetDecoderStage {
  /** Transposed conv of the deeper features (→ BN → ReLU). */
  up: Conv3dLayerSpec;
  /** Encoder level whose output is added to the upsampled features. */
  skipLevel: number;
  convs: Conv3dLayerSpec[];
  /** Dropout3d after the block (training only, a fresh draw in every decoder pass). */
  dropout: number;
  /** This block's output is the prototype feature map (`fea`, 1/8 resolution, after ReLU). */
  prototype: boolean;
}

export interface VNetSpec {
  inChannels: number;
  numClasses: number;
  widths: number[];
  encoder: VNetEncoderStage[];
  decoder: VNetDecoderStage[];
  /** 1³ conv to class logits (linear). */
  head: Conv3dLayerSpec;
}

export interface VNetShape {
  inChannels: number;
  numClasses: number;
  /** Widths per encoder level (five). */
  widths: readonly number[];
  /** Dropout3d probability (default the released 0.5; 0 for eval or export). */
  dropout?: number;
}

function block(prefix: string, depth: number, cin: number, cout: number): Conv3dLayerSpec[] {
  return Array.from({ length: depth }, (_, i) => ({
    name: `${prefix}.conv${i + 1}`,
    kind: 'conv' as const,
    kernel: 3 as const,
    cin: i === 0 ? cin : cout,
    cout,
    bn: `${prefix}.bn${i + 1}`,
  }));
}

/** The network for a configuration (which the caller has checked: five widths, ≥ 2 classes). */
export function vnet3dSpec(shape: VNetShape): VNetSpec {
  const { inChannels, numClasses } = shape;
  const widths = [...shape.widths];
  const p = shape.dropout ?? VNET_DROPOUT;
  const last = VNET_LEVELS - 1;
  const encoder: VNetEncoderStage[] = widths.map((w, l) => ({
    ...(l > 0 ? { down: { name: `enc.${l}.down`, kind: 'down' as const, kernel: 2 as const, cin: widths[l - 1], cout: w, bn: `enc.${l}.downBn` } } : {}),
    // Level 0 takes the image; deeper blocks take the downsampling's output at their own width.
    convs: block(`enc.${l}`, VNET_BLOCK_DEPTHS[l], l === 0 ? inChannels : w, w),
    dropout: l === last ? p : 0,
  }));
  const decoder: VNetDecoderStage[] = [];
  for (let n = 0; n < last; n++) {
    const level = last - 1 - n;
    decoder.push({
      up: { name: `dec.${n}.up`, kind: 'up', kernel: 2, cin: widths[level + 1], cout: widths[level], bn: `dec.${n}.upBn` },
      skipLevel: level,
      convs: block(`dec.${n}`, VNET_BLOCK_DEPTHS[level], widths[level], widths[level]),
      dropout: level === 0 ? p : 0,
      prototype: n === 0,
    });
  }
  const head: Conv3dLayerSpec = { name: 'dec.out', kind: 'conv', kernel: 1, cin: widths[0], cout: numClasses };
  return { inChannels, numClasses, widths, encoder, decoder, head };
}

/** Every convolution in creation order, which is PyTorch's module (and state_dict) order. */
export function vnet3dConvLayers(spec: VNetSpec): Conv3dLayerSpec[] {
  return [
    ...spec.encoder.flatMap((s) => [...(s.down ? [s.down] : []), ...s.convs]),
    ...spec.decoder.flatMap((s) => [s.up, ...s.convs]),
    spec.head,
  ];
}

/** tfjs kernel shape of a layer (see Conv3dLayerSpec). */
export function conv3dKernelShape(layer: Conv3dLayerSpec): number[] {
  const k = layer.kernel;
  return layer.kind === 'up' ? [k, k, k, layer.cout, layer.cin] : [k, k, k, layer.cin, layer.cout];
}

/** BatchNorm parameter fields, in creation order (as unet-spec.ts's BN_FIELDS). */
const BN3D_FIELDS = ['gamma', 'beta', 'runningMean', 'runningVar'] as const;

/** Every parameter by name with its tfjs shape, in creation order. */
export function vnet3dParameterShapes(spec: VNetSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const c of vnet3dConvLayers(spec)) {
    shapes.set(`${c.name}.kernel`, conv3dKernelShape(c));
    shapes.set(`${c.name}.bias`, [c.cout]);
    if (c.bn) for (const f of BN3D_FIELDS) shapes.set(`${c.bn}.${f}`, [c.cout]);
  }
  return shapes;
}
