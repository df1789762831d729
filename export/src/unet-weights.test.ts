import { beforeAll, describe, expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import { InputError, Rng } from '@alhvr/core';
import { UNet } from '@alhvr/training';
import { batchNorm, conv } from '../../training/src/model/layers.js';
import { makeStudent, useBackend } from '../../test/export-fixtures.js';
import { ElemType, OnnxGraphBuilder } from './onnx-graph-builder.js';
import { foldUNet } from './unet-weights.js';

let shared: UNet;
beforeAll(async () => {
  await useBackend();
  shared = makeStudent(11);
});

/** Run one folded conv in ONNX Runtime on an NCHW input. */
async function runFoldedConv(net: UNet, layer: string, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const c = foldUNet(net, 'a').convs.get(layer)!;
  const g = new OnnxGraphBuilder();
  const input = g.input('x', ElemType.FLOAT, dims);
  const pad = (c.dims[2] - 1) / 2;
  const w = g.floatTensor('w', c.weight, c.dims);
  const b = g.floatTensor('b', c.bias, [c.dims[0]]);
  const y = g.op('Conv', [input, w, b], 'y', { kernel_shape: [c.dims[2], c.dims[3]], pads: [pad, pad, pad, pad] });
  g.output(y, ElemType.FLOAT, [dims[0], c.dims[0], dims[2], dims[3]]);
  const session = await ort.InferenceSession.create(g.build('one_conv', {}, { name: 'test', version: '0' }));
  const out = await session.run({ x: new ort.Tensor('float32', x, dims) });
  return out.y.data as Float32Array;
}

describe('BatchNorm folding and HWIO → OIHW', () => {
  test.each([
    ['enc.1.conv1', 'enc.1.bn1', 4, 8, 8],
    ['dec.up2.conv2', 'dec.up2.bn2', 16, 8, 8],
    ['dec.up1.reduce', null, 64, 4, 4],
    ['dec.out', null, 4, 8, 8],
  ] as const)('%s: folded conv in ONNX Runtime equals tfjs conv → BatchNorm(eval)', async (layer, bn, cin, h, w) => {
    const net = shared;
    const rng = new Rng(3);
    const nhwc = Float32Array.from({ length: 2 * h * w * cin }, () => rng.uniform(-1, 1));
    const ref = tf.tidy(() => {
      const x = tf.tensor4d(nhwc, [2, h, w, cin]);
      const y = conv(net.params, layer, x);
      return (bn ? batchNorm(net.params, bn, y, { training: false }) : y).transpose([0, 3, 1, 2]).dataSync() as Float32Array;
    });
    const nchw = tf.tidy(() => tf.tensor4d(nhwc, [2, h, w, cin]).transpose([0, 3, 1, 2]).dataSync() as Float32Array);
    const got = await runFoldedConv(net, layer, nchw, [2, cin, h, w]);
    expect(got.length).toBe(ref.length);
    let maxRef = 0;
    let maxDiff = 0;
    for (let i = 0; i < ref.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(ref[i]));
      maxDiff = Math.max(maxDiff, Math.abs(ref[i] - got[i]));
    }
    expect(maxRef).toBeGreaterThan(0.1);
    // Float32 rounding only: folding is exact algebra.
    expect(maxDiff).toBeLessThan(2e-6 * Math.max(1, maxRef));
  });

  test('trainable parameter count matches the architecture formula', () => {
    const widths = [4, 8, 16, 32, 64];
    const net = new UNet({ numClasses: 4, widths }, new Rng(12));
    const convP = (k: number, cin: number, cout: number) => k * k * cin * cout + cout;
    const block = (cin: number, cout: number) => convP(3, cin, cout) + convP(3, cout, cout) + 4 * cout; // + 2 BN × (γ, β)
    let expected = block(1, widths[0]);
    for (let l = 1; l < 5; l++) expected += block(widths[l - 1], widths[l]);
    for (let n = 1; n <= 4; n++) expected += convP(1, widths[5 - n], widths[4 - n]) + block(2 * widths[4 - n], widths[4 - n]);
    expected += convP(3, widths[0], 4);
    expect(foldUNet(net, 'a').trainableParameters).toBe(expected);
    expect(net.parameterCount()).toBe(expected);
    net.dispose();
  });
});

describe('refusals name what cannot be mapped', () => {
  test('an unknown parameter (extra layer) is refused with its name', () => {
    const net = new UNet({ numClasses: 4, widths: [4, 8, 16, 32, 64] }, new Rng(13));
    net.params.add('dec.up2.attention.kernel', tf.zeros([1, 1, 8, 8]), true);
    expect(() => foldUNet(net, 'b')).toThrow(InputError);
    expect(() => foldUNet(net, 'b')).toThrow(/student b has parameter "dec\.up2\.attention\.kernel" \(Variable \[1,1,8,8\]\).*unknown layer/);
    net.dispose();
  });

  test('a missing parameter is refused with its name', () => {
    const net = new UNet({ numClasses: 4, widths: [4, 8, 16, 32, 64] }, new Rng(14));
    net.params.variables.get('enc.3.bn2.runningVar')!.dispose();
    net.params.variables.delete('enc.3.bn2.runningVar');
    expect(() => foldUNet(net, 'a')).toThrow(/missing parameter "enc\.3\.bn2\.runningVar"/);
    net.dispose();
  });

  test('a parameter shape that does not fit the width config is refused', () => {
    const net = new UNet({ numClasses: 4, widths: [4, 8, 16, 32, 64] }, new Rng(15));
    (net.config.widths as number[])[2] = 20; // config no longer describes the weights
    expect(() => foldUNet(net, 'a')).toThrow(/parameter "enc\.2\.conv1\.kernel" has shape \[3,3,8,16\], expected \[3,3,8,20\]/);
    net.dispose();
  });

  test('unsupported configurations and network classes are refused with their class', () => {
    const twoChannel = new UNet({ numClasses: 3, inChannels: 2, widths: [4, 8, 16, 32, 64] }, new Rng(1));
    expect(() => foldUNet(twoChannel, 'a')).toThrow(/2 input channels/);
    twoChannel.dispose();
    class LayersModel {
      layers = [];
    }
    expect(() => foldUNet(new LayersModel(), 'a')).toThrow(/student a is a LayersModel, not an ALHVR UNet/);
    expect(() => foldUNet({ config: { widths: [1, 2, 3] }, params: {} }, 'b')).toThrow(/student b is a Object/);
  });
});
