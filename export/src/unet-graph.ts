/**
 * Emits one student's clean branch (eval mode: BatchNorm folded, no dropout, no perturbed
 * auxiliary decoder) as channels-first ONNX nodes, walking training's network spec
 * (training/src/model/unet-spec.ts) as the tfjs model does.
 */
import { LEAKY_SLOPE, type ConvBlockSpec, type ConvLayerSpec } from '@alhvr/training';
import type { FoldedUNet } from './unet-weights.js';
import type { OnnxGraphBuilder, WeightStorage } from './onnx-graph-builder.js';

/** Emit the network on `input` ([N, 1, H, W]); returns the logits tensor name ([N, C, H, W]). */
export function emitUNet(g: OnnxGraphBuilder, net: FoldedUNet, input: string, prefix: string, weights: WeightStorage): string {
  const conv = (layer: string, x: string): string => {
    const c = net.convs.get(layer);
    if (!c) throw new Error(`emitUNet: no folded conv ${layer}`);
    const [, , k] = c.dims;
    const w = g.weight(`${prefix}${layer}.weight`, c.weight, c.dims, weights);
    const b = g.weight(`${prefix}${layer}.bias`, c.bias, [c.dims[0]], weights);
    const pad = (k - 1) / 2;
    return g.op('Conv', [x, w, b], g.fresh(`${prefix}${layer}`), {
      kernel_shape: [k, k],
      pads: [pad, pad, pad, pad],
      strides: [1, 1],
      dilations: [1, 1],
      group: 1,
    });
  };
  const leaky = (x: string): string => g.op('LeakyRelu', [x], g.fresh(`${x}.act`), { alpha: { float: LEAKY_SLOPE } });
  // A conv whose BatchNorm is folded into it keeps the LeakyReLU that followed the BatchNorm.
  const layer = (l: ConvLayerSpec, x: string): string => (l.bn ? leaky(conv(l.name, x)) : conv(l.name, x));
  const block = (b: ConvBlockSpec, x: string): string => layer(b.conv2, layer(b.conv1, x));

  const { spec } = net;
  const feats: string[] = [];
  let h = input;
  for (const stage of spec.encoder) {
    if (stage.pool) h = g.op('MaxPool', [h], g.fresh(`${prefix}${stage.block.name}.pool`), { kernel_shape: [2, 2], strides: [2, 2] });
    h = block(stage.block, h);
    feats.push(h);
  }
  for (const stage of spec.decoder) {
    const p = `${prefix}${stage.name}`;
    const skip = feats[stage.skipLevel];
    const reduced = layer(stage.reduce, h);
    // Target size = [N, C] of the reduced map and [H, W] of the skip, read from the runtime
    // shapes so any batch and any multiple-of-16 plane size works (tfjs resizes to the skip too).
    const nc = g.op('Shape', [reduced], g.fresh(`${p}.nc`), { end: 2 });
    const hw = g.op('Shape', [skip], g.fresh(`${p}.hw`), { start: 2 });
    const sizes = g.op('Concat', [nc, hw], g.fresh(`${p}.sizes`), { axis: 0 });
    const up = g.op('Resize', [reduced, '', '', sizes], g.fresh(`${p}.up`), {
      mode: 'linear',
      coordinate_transformation_mode: 'align_corners',
    });
    const cat = g.op('Concat', [skip, up], g.fresh(`${p}.cat`), { axis: 1 });
    h = block(stage.block, cat);
  }
  return layer(spec.head, h);
}
