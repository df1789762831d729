/**
 * ALHVR student network: U-Net with a feature-perturbed auxiliary decoder (released
 * `UNet_fea_aux`), on tfjs-core ops with explicit variables, NHWC.
 *
 * Parameter names (see params.ts for layouts):
 *   enc.{0..4}.{conv1,conv2}.{kernel,bias}, enc.{l}.{bn1,bn2}.{gamma,beta,runningMean,runningVar}
 *   dec.up{1..4}.reduce.{kernel,bias}      (the 1×1 conv before upsampling)
 *   dec.up{n}.{conv1,conv2,bn1,bn2}.*     (the conv block after concatenation)
 *   dec.out.{kernel,bias}                  (final 3×3 conv to class logits)
 * PyTorch equivalents: enc.0 = encoder.in_conv.conv_conv, enc.l = encoder.down{l}.maxpool_conv.1.conv_conv,
 * dec.upN.reduce = decoder.upN.conv1x1, dec.upN.conv* = decoder.upN.conv.conv_conv, dec.out = decoder.out_conv.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { addBatchNorm, addConv, ParameterStore } from './params.js';
import { conv, convBlock, type BlockMode } from './layers.js';

/** Numerical constants an exporter must reproduce (PyTorch BatchNorm2d / LeakyReLU defaults). */
export { BN_EPS, BN_MOMENTUM, LEAKY_SLOPE } from './layers.js';
import { perturbFeatures, type PerturbationKind } from './perturb.js';
import { resizeBilinear } from './resize.js';
import type { UniformSource } from './random-source.js';

export interface UNetConfig {
  inChannels: number;
  numClasses: number;
  /** Encoder widths, five levels. */
  widths: number[];
  /** Dropout probability per encoder level (decoder uses none). */
  dropout: number[];
}

export const DEFAULT_WIDTHS = [16, 32, 64, 128, 256];
export const DEFAULT_DROPOUT = [0.05, 0.1, 0.2, 0.3, 0.5];

export interface UNetForwardOptions {
  training: boolean;
  /** Seeded random source for dropout and the perturbation; required when training. */
  rng?: UniformSource;
  /**
   * Training only: also run the decoder on perturbed features (default true). The supervised
   * baseline never uses that branch, so it skips a third of the forward pass and its memory.
   */
  auxiliary?: boolean;
}

export interface UNetOutput {
  /** Clean-branch logits [B, H, W, C]. */
  logits: tf.Tensor4D;
  /** Clean-branch prototype features: up2's 1×1-conv output [B, H/8, W/8, widths[2]]. */
  fea: tf.Tensor4D;
  /** Perturbed-branch logits (training only). */
  logitsAux?: tf.Tensor4D;
  /** Perturbed-branch prototype features (training only). */
  feaAux?: tf.Tensor4D;
  /** Which perturbation the auxiliary branch used (training only). */
  perturbation?: PerturbationKind;
}

function checkConfig(c: UNetConfig): void {
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(c.inChannels)) throw new InputError(`UNet: inChannels must be a positive integer, got ${c.inChannels}`);
  if (!posInt(c.numClasses) || c.numClasses < 2) {
    throw new InputError(`UNet: numClasses must be an integer ≥ 2, got ${c.numClasses}`);
  }
  if (c.widths.length !== 5 || !c.widths.every(posInt)) {
    throw new InputError(`UNet: widths must be five positive integers, got [${c.widths}]`);
  }
  if (c.dropout.length !== 5 || !c.dropout.every((p) => p >= 0 && p < 1)) {
    throw new InputError(`UNet: dropout must be five probabilities in [0, 1), got [${c.dropout}]`);
  }
}

export class UNet {
  readonly config: UNetConfig;
  readonly params: ParameterStore;

  /**
   * Creates and initialises the parameters (PyTorch default initialisation) from `rng`.
   * `scope` names the tfjs variables (must be unique among live networks; auto if omitted).
   */
  constructor(config: Partial<UNetConfig> & { numClasses: number }, rng: UniformSource, scope?: string) {
    this.config = {
      inChannels: config.inChannels ?? 1,
      numClasses: config.numClasses,
      widths: [...(config.widths ?? DEFAULT_WIDTHS)],
      dropout: [...(config.dropout ?? DEFAULT_DROPOUT)],
    };
    checkConfig(this.config);
    this.params = new ParameterStore(scope);
    const { inChannels, numClasses, widths } = this.config;
    const s = this.params;
    const addBlock = (prefix: string, cin: number, cout: number) => {
      addConv(s, `${prefix}.conv1`, 3, cin, cout, rng);
      addBatchNorm(s, `${prefix}.bn1`, cout);
      addConv(s, `${prefix}.conv2`, 3, cout, cout, rng);
      addBatchNorm(s, `${prefix}.bn2`, cout);
    };
    for (let l = 0; l < 5; l++) addBlock(`enc.${l}`, l === 0 ? inChannels : widths[l - 1], widths[l]);
    for (let n = 1; n <= 4; n++) {
      const deep = widths[5 - n];
      const skip = widths[4 - n];
      addConv(s, `dec.up${n}.reduce`, 1, deep, skip, rng);
      addBlock(`dec.up${n}`, 2 * skip, skip);
    }
    addConv(s, 'dec.out', 3, widths[0], numClasses, rng);
  }

  /** Trainable parameter count (BN running statistics excluded, as in PyTorch's parameters()). */
  parameterCount(): number {
    return this.params.count(true);
  }

  private encode(x: tf.Tensor4D, mode: BlockMode): tf.Tensor4D[] {
    const feats: tf.Tensor4D[] = [];
    let h = x;
    for (let l = 0; l < 5; l++) {
      if (l > 0) h = tf.maxPool(h, 2, 2, 'valid');
      h = convBlock(this.params, `enc.${l}`, h, this.config.dropout[l], mode);
      feats.push(h);
    }
    return feats;
  }

  private decode(feats: tf.Tensor4D[], mode: BlockMode): { logits: tf.Tensor4D; fea: tf.Tensor4D } {
    let h = feats[4];
    let fea: tf.Tensor4D | undefined;
    for (let n = 1; n <= 4; n++) {
      const skip = feats[4 - n];
      const reduced = conv(this.params, `dec.up${n}.reduce`, h);
      if (n === 2) fea = reduced;
      const up = resizeBilinear(reduced, [skip.shape[1], skip.shape[2]], true);
      h = convBlock(this.params, `dec.up${n}`, tf.concat([skip, up], 3), 0, mode);
    }
    return { logits: conv(this.params, 'dec.out', h), fea: fea! };
  }

  /**
   * Training: one encoder pass, the decoder on clean features (logits, fea) and then on
   * perturbed copies (logitsAux, feaAux); BN running statistics are updated by every pass, in
   * that order, as in the released code. Eval: clean branch only, running statistics.
   */
  forward(x: tf.Tensor4D, options: UNetForwardOptions): UNetOutput {
    const { inChannels } = this.config;
    if (x.rank !== 4 || x.shape[3] !== inChannels) {
      throw new InputError(`UNet.forward: input must be [batch, height, width, ${inChannels}], got [${x.shape}]`);
    }
    if (x.shape[1] % 16 !== 0 || x.shape[2] % 16 !== 0 || x.shape[1] === 0 || x.shape[2] === 0) {
      throw new InputError(`UNet.forward: height and width must be positive multiples of 16, got ${x.shape[1]}×${x.shape[2]}`);
    }
    if (options.training && !options.rng) throw new InputError('UNet.forward: training needs a seeded rng');
    const mode: BlockMode = { training: options.training, rng: options.rng };
    return tf.tidy(() => {
      const feats = this.encode(x, mode);
      const clean = this.decode(feats, mode);
      if (!options.training || options.auxiliary === false) return { logits: clean.logits, fea: clean.fea };
      const perturbed = perturbFeatures(feats, options.rng!);
      const aux = this.decode(perturbed.features, mode);
      return {
        logits: clean.logits,
        fea: clean.fea,
        logitsAux: aux.logits,
        feaAux: aux.fea,
        perturbation: perturbed.kind,
      } as unknown as tf.TensorContainerObject;
    }) as unknown as UNetOutput;
  }

  dispose(): void {
    this.params.dispose();
  }
}
