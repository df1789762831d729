import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { Rng } from '@alhvr/core';
import { UNet } from '../model/unet.js';
import { alhvrLoss, type StudentOutputs } from '../losses/alhvr.js';
import { leanVariableGrads } from './lean-gradients.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const CONFIG = { numClasses: 4, widths: [4, 8, 8, 8, 8] };

/** One ALHVR objective on two small students; the same seeds give the same dropout and perturbations. */
function setup() {
  const a = new UNet(CONFIG, new Rng(1), 'lean_a');
  const b = new UNet(CONFIG, new Rng(2), 'lean_b');
  const data = new Rng(4);
  const x = tf.tensor4d(Float32Array.from({ length: 4 * 16 * 16 }, () => data.next()), [4, 16, 16, 1]);
  const labels = tf.tensor3d(Int32Array.from({ length: 2 * 16 * 16 }, () => data.int(0, 3)), [2, 16, 16], 'int32');
  const vars = [...a.params.trainableVariables(), ...b.params.trainableVariables()];
  const loss = () => {
    const rng = new Rng(3);
    const oa = a.forward(x, { training: true, rng }) as StudentOutputs;
    const ob = b.forward(x, { training: true, rng }) as StudentOutputs;
    return alhvrLoss(oa, ob, labels, { labeledCount: 2, iteration: 30000 }).loss;
  };
  const dispose = () => {
    a.dispose();
    b.dispose();
    tf.dispose([x, labels]);
  };
  return { vars, loss, dispose };
}

describe('leanVariableGrads', () => {
  test('gives exactly the value and gradients of tf.variableGrads, with no tensor left behind', () => {
    const s = setup();
    const ref = tf.variableGrads(s.loss, s.vars);
    const before = tf.memory().numTensors;
    const lean = leanVariableGrads(s.loss, s.vars);
    expect(lean.value.dataSync()[0]).toBe(ref.value.dataSync()[0]);
    expect(Object.keys(lean.grads).sort()).toEqual(Object.keys(ref.grads).sort());
    for (const name of Object.keys(ref.grads)) {
      expect(Array.from(lean.grads[name].dataSync()), name).toEqual(Array.from(ref.grads[name].dataSync()));
    }
    // What the call added is exactly its result: the value and one gradient per variable.
    expect(tf.memory().numTensors - before).toBe(1 + Object.keys(lean.grads).length);
    tf.dispose([ref.value, lean.value, ...Object.values(ref.grads), ...Object.values(lean.grads)]);
    s.dispose();
  });

  test('holds far less memory at its peak than tf.variableGrads', async () => {
    const s = setup();
    const peak = async (grads: typeof leanVariableGrads) =>
      (await tf.profile(() => {
        const r = grads(s.loss, s.vars);
        tf.dispose([r.value, ...Object.values(r.grads)]);
      })).peakBytes;
    const ref = await peak(tf.variableGrads as typeof leanVariableGrads);
    const lean = await peak(leanVariableGrads);
    expect(lean).toBeLessThan(0.7 * ref);
    s.dispose();
  });

  test('a gradient function that hands back one tensor for two inputs does not lose either', () => {
    const w = tf.variable(tf.tensor1d([1, 2, 3]), true, 'lean_shared');
    const v = tf.variable(tf.tensor1d([4, 5, 6]), true, 'lean_shared_v');
    // d/dw and d/dv of sum((w + v)·w): the Add node's gradient returns dy for both inputs.
    const same = tf.customGrad((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
      save([]);
      return { value: tf.add(a, b), gradFunc: (dy: tf.Tensor) => [dy, dy] };
    });
    const { value, grads } = leanVariableGrads(() => tf.sum(tf.mul(same(w, v) as tf.Tensor, w)) as tf.Scalar, [w, v]);
    expect(value.dataSync()[0]).toBe(1 * 5 + 2 * 7 + 3 * 9);
    expect(Array.from(grads[w.name].dataSync())).toEqual([6, 9, 12]); // 2w + v
    expect(Array.from(grads[v.name].dataSync())).toEqual([1, 2, 3]); // w
    tf.dispose([value, ...Object.values(grads), w, v]);
  });
});
