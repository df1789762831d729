/**
 * Emits one student's clean branch (eval mode: BatchNorm folded, no dropout, no perturbed
 * auxiliary decoder) as channels-first ONNX nodes.
 */
import { LEAKY_SLOPE, type FoldedUNet } from './unet-weights.js';
import type { ElemType, OnnxGraphBuilder } from './onnx-graph-builder.js';

/** Emit the network on `input` ([N, 1, H, W]); returns the logits tensor name ([N, C, H, W]). */
export function emitUNet(g: OnnxGraphBuilder, net: FoldedUNet, input: string, prefix: string, weightType: ElemType): string {
  const conv = (layer: string, x: string): string => {
    const c = net.convs.get(layer);
    if (!c) throw new Error(`emitUNet: no folded conv ${layer}`);
    const [, , k] = c.dims;
    const w = g.floatTensor(`${prefix}${layer}.weight`, c.weight, c.dims, weightType);
    const b = g.floatTensor(`${prefix}${layer}.bias`, c.bias, [c.dims[0]], weightType);
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
  const block = (p: string, x: string): string => leaky(conv(`${p}.conv2`, leaky(conv(`${p}.conv1`, x))));

  const feats: string[] = [];
  let h = input;
  for (let l = 0; l < 5; l++) {
    if (l > 0) h = g.op('MaxPool', [h], g.fresh(`${prefix}enc.${l}.pool`), { kernel_shape: [2, 2], strides: [2, 2] });
    h = block(`enc.${l}`, h);
    feats.push(h);
  }
  for (let n = 1; n <= 4; n++) {
    const skip = feats[4 - n];
    const reduced = conv(`dec.up${n}.reduce`, h);
    // Target size = [N, C] of the reduced map and [H, W] of the skip, read from the runtime
    // shapes so any batch and any multiple-of-16 plane size works (tfjs resizes to the skip too).
    const nc = g.op('Shape', [reduced], g.fresh(`${prefix}dec.up${n}.nc`), { end: 2 });
    const hw = g.op('Shape', [skip], g.fresh(`${prefix}dec.up${n}.hw`), { start: 2 });
    const sizes = g.op('Concat', [nc, hw], g.fresh(`${prefix}dec.up${n}.sizes`), { axis: 0 });
    const up = g.op('Resize', [reduced, '', '', sizes], g.fresh(`${prefix}dec.up${n}.up`), {
      mode: 'linear',
      coordinate_transformation_mode: 'align_corners',
    });
    const cat = g.op('Concat', [skip, up], g.fresh(`${prefix}dec.up${n}.cat`), { axis: 1 });
    h = block(`dec.up${n}`, cat);
  }
  return conv('dec.out', h);
}
