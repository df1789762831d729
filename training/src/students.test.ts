import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { Rng } from '@alhvr/core';
import { Students } from './students.js';

const make = (seed: number, count: 1 | 2) => {
  const root = new Rng(seed);
  return new Students({
    count,
    net: { numClasses: 3, widths: [2, 2, 2, 2, 2], dropout: [0.1, 0.1, 0.1, 0.1, 0.1] },
    optimiser: { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 },
    init: [root.fork(1), root.fork(2)],
    forward: [root.fork(3), root.fork(4)],
  });
};

/** One step of a toy objective that needs every student's clean and perturbed branches. */
function stepOnce(students: Students, x: tf.Tensor4D): number {
  const step = students.gradients(() => {
    const outs = students.forward(x, true);
    const loss = tf.addN(outs.map((o) => tf.add(tf.mean(tf.square(o.logits)), tf.mean(tf.square(o.logitsAux!))))) as tf.Scalar;
    return { loss, terms: { first: tf.mean(outs[0].logits) as tf.Scalar } };
  });
  const value = step.loss.dataSync()[0];
  students.step(step.grads);
  tf.dispose([step.loss, ...Object.values(step.terms)]);
  return value;
}

const snapshot = (s: Students) => Object.fromEntries(Object.entries(s.state()).flatMap(([g, m]) => [...m].map(([n, t]) => [`${g}/${n}`, Array.from(t.dataSync())])));

describe('Students', () => {
  it('routes each student its own gradients, and state/restore continues a run exactly', async () => {
    await tf.setBackend('cpu');
    const x = tf.randomUniform([2, 16, 16, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
    const run = make(7, 2);
    const before = snapshot(run);
    stepOnce(run, x);
    const after = snapshot(run);
    // Both students moved, and both have momentum for every trainable parameter.
    for (const key of ['a', 'b']) {
      expect(after[`${key}.params/enc.0.conv1.kernel`]).not.toEqual(before[`${key}.params/enc.0.conv1.kernel`]);
      expect(Object.keys(after).filter((k) => k.startsWith(`${key}.momentum/`)).length).toBe(run.nets()[0].net.params.trainableVariables().length);
    }
    const groups = Object.fromEntries(Object.entries(run.state()).map(([g, m]) => [g, new Map([...m].map(([n, t]) => [n, { shape: t.shape, data: Float32Array.from(t.dataSync()) }]))]));
    const rng = run.rngState();
    const nextLoss = stepOnce(run, x);
    const next = snapshot(run);
    run.dispose();

    // Fresh students of another seed, restored, take exactly the same next step.
    const resumed = make(99, 2);
    resumed.restore(groups, rng);
    expect(snapshot(resumed)).toEqual(after);
    expect(stepOnce(resumed, x)).toBe(nextLoss);
    expect(snapshot(resumed)).toEqual(next);
    resumed.dispose();
    x.dispose();
  });

  it('a one-student run has a alone and keeps b\'s stream for the checkpoint', () => {
    const one = make(7, 1);
    expect(one.b).toBeUndefined();
    expect(Object.keys(one.state()).sort()).toEqual(['a.momentum', 'a.params']);
    const root = new Rng(7);
    [1, 2, 3].forEach((k) => root.fork(k));
    expect(one.rngState().netB).toEqual(root.fork(4).state());
    one.dispose();
  });
});

describe('Students with the 3D VNet', () => {
  it("build the VNet with the config's Dropout3d rate, the released 0.5 when unset", async () => {
    await tf.setBackend('cpu');
    const build = (vnetDropout?: number) => {
      const root = new Rng(3);
      return new Students({
        count: 2,
        network: 'vnet3d',
        net: { numClasses: 2, widths: [2, 2, 2, 2, 2], dropout: [0, 0, 0, 0, 0], vnetDropout },
        optimiser: { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 },
        init: [root.fork(1), root.fork(2)],
        forward: [root.fork(3), root.fork(4)],
      });
    };
    for (const [asked, used] of [[undefined, 0.5], [0, 0], [0.2, 0.2]] as const) {
      const s = build(asked);
      for (const { net } of s.nets()) expect((net as unknown as { config: { dropout: number } }).config.dropout).toBe(used);
      s.dispose();
    }
  });
});
