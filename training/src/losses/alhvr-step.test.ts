import { beforeAll, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { Rng } from '@alhvr/core';
import { UNet } from '../model/unet.js';
import { alhvrLoss, type StudentOutputs } from './alhvr.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

test('one ALHVR step on two students: finite loss, gradient for every trainable variable, no tensor leak', () => {
  const config = { numClasses: 4, widths: [4, 8, 8, 8, 8] };
  const a = new UNet(config, new Rng(1));
  const b = new UNet(config, new Rng(2));
  const rng = new Rng(3);
  const data = new Rng(4);
  const x = tf.tensor4d(Float32Array.from({ length: 4 * 16 * 16 }, () => data.next()), [4, 16, 16, 1]);
  const labels = tf.tensor3d(Int32Array.from({ length: 2 * 16 * 16 }, () => data.int(0, 3)), [2, 16, 16], 'int32');
  const vars = [...a.params.trainableVariables(), ...b.params.trainableVariables()];
  const optimizer = tf.train.momentum(0.01, 0.9);

  const step = (iteration: number) => {
    const { value, grads } = tf.variableGrads(() => {
      const oa = a.forward(x, { training: true, rng }) as StudentOutputs;
      const ob = b.forward(x, { training: true, rng }) as StudentOutputs;
      return alhvrLoss(oa, ob, labels, { labeledCount: 2, iteration }).loss;
    }, vars);
    const loss = value.dataSync()[0];
    const zeroGrad = vars.filter((v) => tf.tidy(() => tf.max(tf.abs(grads[v.name])).dataSync()[0]) === 0).map((v) => v.name);
    optimizer.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
    return { loss, zeroGrad };
  };

  const first = step(30000);
  expect(Number.isFinite(first.loss)).toBe(true);
  expect(first.zeroGrad).toEqual([]);
  const before = tf.memory().numTensors;
  const second = step(30001);
  expect(Number.isFinite(second.loss)).toBe(true);
  expect(tf.memory().numTensors).toBe(before);
  a.dispose();
  b.dispose();
});
