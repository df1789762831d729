import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Rng } from '@alhvr/core';
import { batchNormTrainBackward, batchNormTrainForward } from './batchnorm-training.js';
import { hasFusedBatchNorm, registerCpuBatchNormKernels } from './batchnorm-kernels.js';

/** Forward and backward of one random case, as plain arrays. */
async function run(slope: number): Promise<number[][]> {
  const rng = new Rng(3);
  const random = (shape: number[], lo: number, hi: number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.uniform(lo, hi)), shape);
  const x = random([2, 3, 5, 4], -2, 3) as tf.Tensor4D;
  const gamma = random([4], 0.5, 1.5) as tf.Tensor1D;
  const beta = random([4], -0.5, 0.5) as tf.Tensor1D;
  const dy = random([2, 3, 5, 4], -1, 1);
  const forward = batchNormTrainForward(x, gamma, beta, slope, 1e-5);
  const [y, mean, , rstd] = forward;
  const backward = batchNormTrainBackward(dy, x, y, mean, rstd, gamma, slope);
  const out = await Promise.all([...forward, ...backward].map(async (t) => Array.from(await t.data())));
  tf.dispose([x, gamma, beta, dy, ...forward, ...backward]);
  return out;
}

describe('training BatchNorm as the backend provides it', () => {
  it('the tfjs-op formulas (backends without the fused kernels) give what the fused kernels give', async () => {
    await tf.setBackend('cpu');
    expect(hasFusedBatchNorm('cpu')).toBe(false);
    const ops = [await run(1), await run(0.01)];
    registerCpuBatchNormKernels();
    expect(hasFusedBatchNorm('cpu')).toBe(true);
    const fused = [await run(1), await run(0.01)];
    for (let c = 0; c < 2; c++) {
      // y, mean, variance, rstd, dx, dGamma, dBeta
      expect(fused[c]).toHaveLength(7);
      fused[c].forEach((values, n) => {
        expect(values.length).toBe(ops[c][n].length);
        values.forEach((v, i) => expect(v).toBeCloseTo(ops[c][n][i], 4));
      });
    }
    // The slope matters: LeakyReLU changes the output of negative values.
    expect(ops[1][0]).not.toEqual(ops[0][0]);
  });
});
