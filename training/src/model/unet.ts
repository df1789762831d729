/**
 * ALHVR student network: U-Net with a feature-perturbed auxiliary decoder (released
 * `UNet_fea_aux`), on tfjs-core ops with explicit variables, NHWC. The topology and the parameter
 * names are unet-spec.ts's (which the exporter walks too); this file creates and runs them.
 * PyTorch equivalents: enc.0 = encoder.in_conv.conv_conv, enc.l = encoder.down{l}.maxpool_conv.1.conv_conv,
 * dec.upN.reduce = decoder.upN.conv1x1, dec.upN.conv* = decoder.upN.conv.conv_conv, dec.out = decoder.out_conv.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { addBatchNorm, addConv, ParameterStore } from './params.js';
import { convBlock, convLayer, type BlockMode } from './layers.js';
import { UNET_LEVELS, unetConvLayers, unetSpec, type UNetSpec } from './unet-spec.js';
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
  if (c.widths.length !== UNET_LEVELS || !c.widths.every(posInt)) {
    throw new InputError(`UNet: widths must be five positive integers, got [${c.widths}]`);
  }
  if (c.dropout.length !== UNET_LEVELS || !c.dropout.every((p) => p >= 0 && p < 1)) {
    throw new InputError(`UNet: dropout must be five probabilities in [0, 1), got [${c.dropout}]`);
  }
}

export class UNet {
  readonly config: UNetConfig;
  /** The network this instance runs (unet-spec.ts). */
  readonly spec: UNetSpec;
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
    this.spec = unetSpec(this.config);
    this.params = new ParameterStore(scope);
    // Creation order (and so the draws from rng) is PyTorch's module order: each conv, then its BatchNorm.
    for (const layer of unetConvLayers(this.spec)) {
      addConv(this.params, layer.name, layer.kernel, layer.cin, layer.cout, rng);
      if (layer.bn) addBatchNorm(this.params, layer.bn, layer.cout);
    }
  }

  /** Trainable parameter count (BN running statistics excluded, as in PyTorch's parameters()). */
  parameterCount(): number {
    return this.params.count(true);
  }

  private encode(x: tf.Tensor4D, mode: BlockMode): tf.Tensor4D[] {
    const feats: tf.Tensor4D[] = [];
    let h = x;
    for (const stage of this.spec.encoder) {
      if (stage.pool) h = tf.maxPool(h, 2, 2, 'valid');
      h = convBlock(this.params, stage.block, h, mode);
      feats.push(h);
    }
    return feats;
  }

  private decode(feats: tf.Tensor4D[], mode: BlockMode): { logits: tf.Tensor4D; fea: tf.Tensor4D } {
    let h = feats[feats.length - 1];
    let fea: tf.Tensor4D | undefined;
    for (const stage of this.spec.decoder) {
      const skip = feats[stage.skipLevel];
      const reduced = convLayer(this.params, stage.reduce, h, mode);
      if (stage.prototype) fea = reduced;
      const up = resizeBilinear(reduced, [skip.shape[1], skip.shape[2]], true);
      h = convBlock(this.params, stage.block, tf.concat([skip, up], 3), mode);
    }
    return { logits: convLayer(this.params, this.spec.head, h, mode), fea: fea! };
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
