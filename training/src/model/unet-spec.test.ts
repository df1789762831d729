import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@alhvr/core';
import { UNet } from './unet.js';
import { unetConvLayers, unetParameterShapes, unetSpec } from './unet-spec.js';

describe('U-Net spec', () => {
  test('the model creates exactly the spec’s parameters, with its shapes, in its order', async () => {
    await tf.setBackend('cpu');
    const net = new UNet({ numClasses: 4, widths: [2, 4, 6, 8, 10] }, new Rng(1));
    const shapes = unetParameterShapes(net.spec);
    expect(net.params.names()).toEqual([...shapes.keys()]);
    for (const [name, v] of net.params.variables) expect(v.shape).toEqual(shapes.get(name));
    net.dispose();
  });

  test('describes the released UNet_fea_aux clean branch', () => {
    const spec = unetSpec({ inChannels: 1, numClasses: 4, widths: [16, 32, 64, 128, 256] });
    expect(spec.encoder.map((s) => [s.pool, s.block.name, s.block.conv1.cin, s.block.conv2.cout])).toEqual([
      [false, 'enc.0', 1, 16],
      [true, 'enc.1', 16, 32],
      [true, 'enc.2', 32, 64],
      [true, 'enc.3', 64, 128],
      [true, 'enc.4', 128, 256],
    ]);
    expect(spec.decoder.map((s) => [s.name, s.reduce.cin, s.reduce.cout, s.skipLevel, s.block.conv1.cin, s.prototype])).toEqual([
      ['dec.up1', 256, 128, 3, 256, false],
      ['dec.up2', 128, 64, 2, 128, true],
      ['dec.up3', 64, 32, 1, 64, false],
      ['dec.up4', 32, 16, 0, 32, false],
    ]);
    expect(spec.head).toEqual({ name: 'dec.out', kernel: 3, cin: 16, cout: 4 });
    const layers = unetConvLayers(spec);
    expect(layers).toHaveLength(10 + 4 * 3 + 1);
    // Every 3×3 conv but the head is followed by BatchNorm + LeakyReLU; the 1×1 reduce convs and the head are linear.
    expect(layers.filter((l) => !l.bn).map((l) => l.name)).toEqual(['dec.up1.reduce', 'dec.up2.reduce', 'dec.up3.reduce', 'dec.up4.reduce', 'dec.out']);
  });
});
