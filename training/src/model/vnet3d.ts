/**
 * The 3D ALHVR student: VNet with a feature-perturbed auxiliary decoder (released
 * `vnet_fea_aux`), on tfjs-core ops with explicit variables, NDHWC. Topology and parameter
 * names are vnet3d-spec.ts's; this file creates and runs them. Semantics follow
 * shared/docs/alhvr-method-3d.md §2: plain conv blocks with BatchNorm3d + ReLU, additive skips,
 * Dropout3d(0.5) on the deepest features (one draw shared by both decoder passes) and before the
 * head (a fresh draw per pass), and the perturbed pass's feature dropout / noise on all five
 * encoder outputs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { ParameterStore, addBatchNorm } from './params.js';
import { batchNorm } from './layers.js';
import { noGrad } from './no-grad.js';
import { drawOpSeed, type UniformSource } from './random-source.js';
import { FEATURE_DROPOUT_RANGE, FEATURE_NOISE_RANGE, type PerturbationKind } from './perturb.js';
import {
  VNET_DEFAULT_WIDTHS,
  VNET_DROPOUT,
  VNET_LEVELS,
  VNET_SIDE_MULTIPLE,
  conv3dKernelShape,
  vnet3dConvLayers,
  vnet3dSpec,
  type Conv3dLayerSpec,
  type VNetSpec,
} from './vnet3d-spec.js';

export interface VNet3dConfig {
  inChannels: number;
  numClasses: number;
  /** Widths per encoder level (five). */
  widths: number[];
  /** Dropout3d probability (training only). */
  dropout: number;
}

export interface VNet3dForwardOptions {
  training: boolean;
  /** Seeded random source for Dropout3d and the perturbation; required when training. */
  rng?: UniformSource;
  /** Training only: also run the decoder on perturbed features (default true). */
  auxiliary?: boolean;
}

export interface VNet3dOutput {
  /** Clean-branch logits [B, D, H, W, C]. */
  logits: tf.Tensor5D;
  /** Clean-branch prototype features: the first decoder block's output, [B, D/8, H/8, W/8, widths[3]], after ReLU. */
  fea: tf.Tensor5D;
  logitsAux?: tf.Tensor5D;
  feaAux?: tf.Tensor5D;
  perturbation?: PerturbationKind;
}

function checkConfig(c: VNet3dConfig): void {
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(c.inChannels)) throw new InputError(`VNet3d: inChannels must be a positive integer, got ${c.inChannels}`);
  if (!posInt(c.numClasses) || c.numClasses < 2) throw new InputError(`VNet3d: numClasses must be an integer ≥ 2, got ${c.numClasses}`);
  if (c.widths.length !== VNET_LEVELS || !c.widths.every(posInt)) throw new InputError(`VNet3d: widths must be five positive integers, got [${c.widths}]`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new InputError(`VNet3d: dropout must be in [0, 1), got ${c.dropout}`);
}

/**
 * PyTorch's default initialisation, U(±1/√fan_in) for weight and bias. fan_in is cin·k³ for a
 * Conv3d and cout·k³ for a ConvTranspose3d (PyTorch reads it from the weight's second axis).
 */
function addConv3d(store: ParameterStore, layer: Conv3dLayerSpec, rng: UniformSource): void {
  const shape = conv3dKernelShape(layer);
  const k3 = layer.kernel ** 3;
  const bound = 1 / Math.sqrt((layer.kind === 'up' ? layer.cout : layer.cin) * k3);
  const w = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < w.length; i++) w[i] = (2 * rng.next() - 1) * bound;
  const b = new Float32Array(layer.cout);
  for (let i = 0; i < b.length; i++) b[i] = (2 * rng.next() - 1) * bound;
  store.add(`${layer.name}.kernel`, tf.tensor(w, shape), true);
  store.add(`${layer.name}.bias`, tf.tensor1d(b), true);
}

/**
 * 2³ stride-2 transposed convolution (filter [2, 2, 2, cout, cin]). The eight kernel offsets do
 * not overlap, so it is one matrix product to 8·cout channels followed by moving each offset to
 * its voxel: plain ops with gradients everywhere. (tfjs' conv3dTranspose has no gradient, and
 * tfjs-backend-wasm 4.22's Conv3DBackpropInputV2 kernel returns wrong values.)
 */
function upConv(x: tf.Tensor5D, filter: tf.Tensor5D): tf.Tensor5D {
  const [b, d, h, w, cin] = x.shape;
  const cout = filter.shape[3];
  // [2, 2, 2, cout, cin] → [cin, (a, b, c, cout)].
  const weights = tf.transpose(tf.reshape(filter, [8 * cout, cin]));
  const y = tf.matMul(tf.reshape(x, [b * d * h * w, cin]), weights);
  // [(B·D), H, W, a, b, (c, cout)] → [(B·D), a, H, b, W, (c, cout)] = [B, 2D, 2H, 2W, cout].
  const moved = tf.transpose(tf.reshape(y, [b * d, h, w, 2, 2, 2 * cout]), [0, 3, 1, 4, 2, 5]);
  return tf.reshape(moved, [b, 2 * d, 2 * h, 2 * w, cout]);
}

/**
 * 2³ stride-2 convolution (filter [2, 2, 2, cin, cout]) as the inverse shuffle and one matrix
 * product: windows do not overlap, and tfjs-backend-wasm's stride-2 Conv3D gradients are wrong.
 */
function downConv(x: tf.Tensor5D, filter: tf.Tensor5D): tf.Tensor5D {
  const [b, d2, h2, w2, cin] = x.shape;
  const [d, h, w] = [d2 / 2, h2 / 2, w2 / 2];
  const cout = filter.shape[4];
  // [(B·D), a, H, b, W, (c, cin)] → [(B·D), H, W, a, b, (c, cin)] → rows of (a, b, c, cin).
  const gathered = tf.transpose(tf.reshape(x, [b * d, 2, h, 2, w, 2 * cin]), [0, 2, 4, 1, 3, 5]);
  const y = tf.matMul(tf.reshape(gathered, [b * d * h * w, 8 * cin]), tf.reshape(filter, [8 * cin, cout]));
  return tf.reshape(y, [b, d, h, w, cout]);
}

/**
 * Stride-1 "same" convolution with odd kernel, its input gradient written as the convolution
 * with the flipped, in/out-swapped filter: tfjs-backend-wasm's Conv3DBackpropInputV2 kernel,
 * which tfjs' own gradient uses, returns wrong values. The filter gradient is tfjs' kernel
 * (right on wasm at stride 1).
 */
function sameConv(x: tf.Tensor5D, filter: tf.Tensor5D): tf.Tensor5D {
  if (filter.shape[0] === 1) {
    const [b, d, h, w, cin] = x.shape;
    const cout = filter.shape[4];
    return tf.reshape(tf.matMul(tf.reshape(x, [b * d * h * w, cin]), tf.reshape(filter, [cin, cout])), [b, d, h, w, cout]);
  }
  const f = tf.customGrad((...args: unknown[]) => {
    const [xt, ft] = args as [tf.Tensor5D, tf.Tensor5D];
    const save = args[2] as (ts: tf.Tensor[]) => void;
    save([xt, ft]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, fs] = saved as [tf.Tensor5D, tf.Tensor5D];
      const adjoint = tf.transpose(tf.reverse(fs, [0, 1, 2]), [0, 1, 2, 4, 3]) as tf.Tensor5D;
      const dx = tf.conv3d(dy as tf.Tensor5D, adjoint, 1, 'same');
      const df = tf.engine().runKernel('Conv3DBackpropFilterV2', { x: xs, dy }, { strides: 1, pad: 'same', filterShape: fs.shape }) as tf.Tensor;
      return [dx, df];
    };
    return { value: tf.conv3d(xt, ft, 1, 'same'), gradFunc };
  });
  return f(x, filter) as tf.Tensor5D;
}

/** BatchNorm3d through the 2D BatchNorm of layers.ts: statistics are per channel either way. */
function batchNorm3d(store: ParameterStore, prefix: string, x: tf.Tensor5D, training: boolean): tf.Tensor5D {
  const [b, d, h, w, c] = x.shape;
  const y = batchNorm(store, prefix, tf.reshape(x, [b, d, h * w, c]) as tf.Tensor4D, { training });
  return tf.reshape(y, x.shape) as tf.Tensor5D;
}

/** A conv of the spec, then BatchNorm3d + ReLU when the spec says so. */
function conv3dLayer(store: ParameterStore, layer: Conv3dLayerSpec, x: tf.Tensor5D, training: boolean): tf.Tensor5D {
  const kernel = store.get(`${layer.name}.kernel`) as unknown as tf.Tensor5D;
  const bias = store.get(`${layer.name}.bias`);
  let y: tf.Tensor5D;
  if (layer.kind === 'up') y = upConv(x, kernel);
  else if (layer.kind === 'down') y = downConv(x, kernel);
  else y = sameConv(x, kernel);
  y = tf.add(y, bias);
  return layer.bn ? tf.relu(batchNorm3d(store, layer.bn, y, training)) : y;
}

/** Dropout3d: whole channels of each sample zeroed with probability p, survivors scaled by 1/(1−p). */
export function dropout3d(x: tf.Tensor5D, p: number, rng: UniformSource): tf.Tensor5D {
  if (p <= 0) return x;
  const [b, , , , c] = x.shape;
  const u = tf.randomUniform([b, 1, 1, 1, c], 0, 1, 'float32', drawOpSeed(rng));
  return tf.mul(x, tf.mul(tf.cast(tf.greaterEqual(u, p), 'float32'), 1 / (1 - p)));
}

/**
 * Feature dropout of one level: per sample a = channel mean, m = max a; locations with a ≥ m·u
 * are zeroed in every channel (u shared by the batch). The mask is a constant for autograd.
 */
export function featureDropout3d(x: tf.Tensor5D, u: number): tf.Tensor5D {
  const mask = noGrad((f) => {
    const a = tf.mean(f, 4, true);
    return tf.cast(tf.less(a, tf.mul(tf.max(a, [1, 2, 3, 4], true), u)), 'float32');
  }, x);
  return tf.mul(x, mask);
}

/** The auxiliary pass's perturbation (one kind per call, a draw per level), 3D form of perturb.ts. */
export function perturbFeatures3d(features: tf.Tensor5D[], rng: UniformSource): { features: tf.Tensor5D[]; kind: PerturbationKind } {
  // Released: `random.random() > 0.5` selects feature dropout.
  const kind: PerturbationKind = rng.next() > 0.5 ? 'dropout' : 'noise';
  const out = features.map((x) => {
    if (kind === 'dropout') {
      const [lo, hi] = FEATURE_DROPOUT_RANGE;
      return featureDropout3d(x, lo + (hi - lo) * rng.next());
    }
    const [, d, h, w, c] = x.shape;
    const noise = tf.randomUniform([1, d, h, w, c], -FEATURE_NOISE_RANGE, FEATURE_NOISE_RANGE, 'float32', drawOpSeed(rng));
    return tf.add(x, tf.mul(x, noise)) as tf.Tensor5D;
  });
  return { features: out, kind };
}

export class VNet3d {
  readonly config: VNet3dConfig;
  readonly spec: VNetSpec;
  readonly params: ParameterStore;

  /** Creates and initialises the parameters from `rng`; `scope` names the tfjs variables. */
  constructor(config: Partial<VNet3dConfig> & { numClasses: number }, rng: UniformSource, scope?: string) {
    this.config = {
      inChannels: config.inChannels ?? 1,
      numClasses: config.numClasses,
      widths: [...(config.widths ?? VNET_DEFAULT_WIDTHS)],
      dropout: config.dropout ?? VNET_DROPOUT,
    };
    checkConfig(this.config);
    this.spec = vnet3dSpec(this.config);
    this.params = new ParameterStore(scope);
    for (const layer of vnet3dConvLayers(this.spec)) {
      addConv3d(this.params, layer, rng);
      if (layer.bn) addBatchNorm(this.params, layer.bn, layer.cout);
    }
  }

  /** Trainable parameter count (BN running statistics excluded). */
  parameterCount(): number {
    return this.params.count(true);
  }

  private encode(x: tf.Tensor5D, training: boolean, rng?: UniformSource): tf.Tensor5D[] {
    const feats: tf.Tensor5D[] = [];
    let h = x;
    for (const stage of this.spec.encoder) {
      if (stage.down) h = conv3dLayer(this.params, stage.down, h, training);
      for (const c of stage.convs) h = conv3dLayer(this.params, c, h, training);
      if (training && stage.dropout > 0) h = dropout3d(h, stage.dropout, rng!);
      feats.push(h);
    }
    return feats;
  }

  private decode(feats: tf.Tensor5D[], training: boolean, rng?: UniformSource): { logits: tf.Tensor5D; fea: tf.Tensor5D } {
    let h = feats[feats.length - 1];
    let fea: tf.Tensor5D | undefined;
    for (const stage of this.spec.decoder) {
      h = tf.add(conv3dLayer(this.params, stage.up, h, training), feats[stage.skipLevel]);
      for (const c of stage.convs) h = conv3dLayer(this.params, c, h, training);
      if (stage.prototype) fea = h;
      if (training && stage.dropout > 0) h = dropout3d(h, stage.dropout, rng!);
    }
    return { logits: conv3dLayer(this.params, this.spec.head, h, training), fea: fea! };
  }

  /**
   * Training: one encoder pass (its Dropout3d draw shared), the decoder on clean features and
   * then on perturbed copies, BN in training mode in both. Eval: clean branch, running statistics.
   */
  forward(x: tf.Tensor5D, options: VNet3dForwardOptions): VNet3dOutput {
    const { inChannels } = this.config;
    if (x.rank !== 5 || x.shape[4] !== inChannels) {
      throw new InputError(`VNet3d.forward: input must be [batch, depth, height, width, ${inChannels}], got [${x.shape}]`);
    }
    const sides = x.shape.slice(1, 4);
    if (!sides.every((s) => s > 0 && s % VNET_SIDE_MULTIPLE === 0)) {
      throw new InputError(`VNet3d.forward: depth, height and width must be positive multiples of ${VNET_SIDE_MULTIPLE}, got ${sides.join('×')}`);
    }
    if (options.training && !options.rng) throw new InputError('VNet3d.forward: training needs a seeded rng');
    const { training, rng } = options;
    return tf.tidy(() => {
      const feats = this.encode(x, training, rng);
      const clean = this.decode(feats, training, rng);
      if (!training || options.auxiliary === false) return { logits: clean.logits, fea: clean.fea };
      const perturbed = perturbFeatures3d(feats, rng!);
      const aux = this.decode(perturbed.features, training, rng);
      return { logits: clean.logits, fea: clean.fea, logitsAux: aux.logits, feaAux: aux.fea, perturbation: perturbed.kind } as unknown as tf.TensorContainerObject;
    }) as unknown as VNet3dOutput;
  }

  dispose(): void {
    this.params.dispose();
  }
}
