/**
 * The 3D student (training's VNet, vnet3d-spec.ts) in ONNX: its parameters read and checked
 * against the spec, eval-mode BatchNorm3d folded into the preceding convolution, and the clean
 * branch emitted as channels-first Conv (3×3×3, 2³ stride 2, 1³) and ConvTranspose (2³ stride 2)
 * nodes with ReLU and additive skips. The 2D U-Net path (unet-weights.ts, unet-graph.ts) is
 * untouched; this is its 3D counterpart, walking the 3D spec the tfjs model walks.
 */
import { InputError } from '@alhvr/core';
import { BN_EPS, VNET_LEVELS, vnet3dConvLayers, vnet3dParameterShapes, vnet3dSpec, type Conv3dLayerSpec, type VNetSpec } from '@alhvr/training';
import type { WeightTensor } from './unet-weights.js';
import type { OnnxGraphBuilder, WeightStorage } from './onnx-graph-builder.js';

/** What the exporter reads from training's `VNet3d` (structural, like ExportableUNet). */
export interface ExportableVNet3d {
  readonly config: { inChannels: number; numClasses: number; widths: number[] };
  readonly params: { readonly variables: Map<string, WeightTensor> };
}

/** One 3D convolution, channels-first, BatchNorm folded in. */
export interface FoldedConv3d {
  layer: Conv3dLayerSpec;
  /** Conv: [cout, cin, k, k, k]; ConvTranspose: [cin, cout, k, k, k] (ONNX's orders). */
  dims: number[];
  weight: Float32Array;
  bias: Float32Array;
}

export interface FoldedVNet3d {
  spec: VNetSpec;
  numClasses: number;
  convs: Map<string, FoldedConv3d>;
  trainableParameters: number;
}

/**
 * Validate a VNet's parameters against its spec and fold BatchNorm per output channel o:
 * s = γ/√(σ² + ε); W' = W·s; b' = (b − μ)·s + β, in float64, rounded once to float32.
 */
export function foldVNet3d(net: unknown, label: string): FoldedVNet3d {
  const n = net as Partial<ExportableVNet3d> | null;
  if (!n || typeof n !== 'object' || !Array.isArray(n.config?.widths) || !(n.params?.variables instanceof Map)) {
    throw new InputError(`export: student ${label} is not an ALHVR VNet3d (training/src/model/vnet3d.ts)`);
  }
  const { inChannels, numClasses, widths } = n.config!;
  if (widths.length !== VNET_LEVELS || !widths.every((w) => Number.isInteger(w) && w > 0)) {
    throw new InputError(`export: student ${label} has widths [${widths}]; the 3D exporter maps exactly five positive widths`);
  }
  if (!Number.isInteger(numClasses) || numClasses < 2 || numClasses > 256) {
    throw new InputError(`export: student ${label} has ${numClasses} classes; labels are uint8, so 2–256 classes`);
  }
  const spec = vnet3dSpec({ inChannels, numClasses, widths });
  const shapes = vnet3dParameterShapes(spec);
  const vars = n.params!.variables;
  for (const [name, v] of vars) {
    const want = shapes.get(name);
    if (!want) throw new InputError(`export: student ${label} has parameter "${name}" [${v.shape}] that is not part of the ALHVR VNet; refusing to export`);
    if (v.shape.length !== want.length || v.shape.some((d, i) => d !== want[i])) {
      throw new InputError(`export: student ${label} parameter "${name}" has shape [${v.shape}], expected [${want}]`);
    }
  }
  for (const name of shapes.keys()) if (!vars.has(name)) throw new InputError(`export: student ${label} is missing parameter "${name}"`);

  const read = (name: string) => vars.get(name)!.dataSync();
  const convs = new Map<string, FoldedConv3d>();
  let trainable = 0;
  for (const layer of vnet3dConvLayers(spec)) {
    const kernel = read(`${layer.name}.kernel`);
    const bias = read(`${layer.name}.bias`);
    trainable += kernel.length + bias.length;
    const { cin, cout, kernel: k } = layer;
    const scale = new Float64Array(cout).fill(1);
    const shift = Float64Array.from(bias);
    if (layer.bn) {
      const [gamma, beta, mean, variance] = ['gamma', 'beta', 'runningMean', 'runningVar'].map((f) => read(`${layer.bn}.${f}`));
      trainable += gamma.length + beta.length;
      for (let o = 0; o < cout; o++) {
        scale[o] = gamma[o] / Math.sqrt(variance[o] + BN_EPS);
        shift[o] = (bias[o] - mean[o]) * scale[o] + beta[o];
      }
    }
    const k3 = k * k * k;
    const weight = new Float32Array(cin * cout * k3);
    const up = layer.kind === 'up';
    // tfjs conv [k, k, k, cin, cout] → ONNX Conv [cout, cin, k, k, k];
    // tfjs transposed [k, k, k, cout, cin] → ONNX ConvTranspose [cin, cout, k, k, k].
    for (let t = 0; t < k3; t++) {
      for (let i = 0; i < cin; i++) {
        for (let o = 0; o < cout; o++) {
          const src = up ? (t * cout + o) * cin + i : (t * cin + i) * cout + o;
          const dst = up ? (i * cout + o) * k3 + t : (o * cin + i) * k3 + t;
          weight[dst] = kernel[src] * scale[o];
        }
      }
    }
    convs.set(layer.name, { layer, dims: up ? [cin, cout, k, k, k] : [cout, cin, k, k, k], weight, bias: Float32Array.from(shift) });
  }
  return { spec, numClasses, convs, trainableParameters: trainable };
}

/** Emit the clean branch on `input` ([N, 1, D, H, W]); returns the logits tensor ([N, C, D, H, W]). */
export function emitVNet3d(g: OnnxGraphBuilder, net: FoldedVNet3d, input: string, prefix: string, weights: WeightStorage = 'float32'): string {
  const layer = (l: Conv3dLayerSpec, x: string): string => {
    const c = net.convs.get(l.name);
    if (!c) throw new Error(`emitVNet3d: no folded conv ${l.name}`);
    const w = g.weight(`${prefix}${l.name}.weight`, c.weight, c.dims, weights);
    const b = g.weight(`${prefix}${l.name}.bias`, c.bias, [l.cout], weights);
    const k = [l.kernel, l.kernel, l.kernel];
    let y: string;
    if (l.kind === 'up') {
      y = g.op('ConvTranspose', [x, w, b], g.fresh(`${prefix}${l.name}`), { kernel_shape: k, strides: [2, 2, 2] });
    } else {
      const pad = l.kind === 'conv' ? (l.kernel - 1) / 2 : 0;
      const stride = l.kind === 'down' ? 2 : 1;
      y = g.op('Conv', [x, w, b], g.fresh(`${prefix}${l.name}`), {
        kernel_shape: k,
        pads: [pad, pad, pad, pad, pad, pad],
        strides: [stride, stride, stride],
        dilations: [1, 1, 1],
        group: 1,
      });
    }
    // The BatchNorm is folded into the conv; the ReLU that followed it stays.
    return l.bn ? g.op('Relu', [y], g.fresh(`${y}.act`)) : y;
  };
  const feats: string[] = [];
  let h = input;
  for (const stage of net.spec.encoder) {
    if (stage.down) h = layer(stage.down, h);
    for (const c of stage.convs) h = layer(c, h);
    feats.push(h);
  }
  net.spec.decoder.forEach((stage, n) => {
    h = g.op('Add', [layer(stage.up, h), feats[stage.skipLevel]], g.fresh(`${prefix}dec.${n}.skip`));
    for (const c of stage.convs) h = layer(c, h);
  });
  return layer(net.spec.head, h);
}
