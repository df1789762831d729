import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import { InputError, Rng } from '@alhvr/core';
import { VNet3d } from '@alhvr/training';
import { useBackend } from '../../test/export-fixtures.js';
import { ElemType, OnnxGraphBuilder, decodeOnnxModel } from './onnx-graph-builder.js';
import { emitVNet3d, foldVNet3d } from './vnet3d-graph.js';

const WIDTHS = [2, 4, 4, 8, 8];
const CLASSES = 3;

/** A tiny VNet with moved BatchNorm running statistics and random γ/β, so folding is exercised. */
function makeVNet(seed: number): VNet3d {
  const net = new VNet3d({ numClasses: CLASSES, widths: WIDTHS, dropout: 0 }, new Rng(seed));
  const rng = new Rng(seed + 100);
  const x = tf.tensor5d(Float32Array.from({ length: 2 * 16 * 16 * 16 }, () => rng.uniform(-1, 2)), [2, 16, 16, 16, 1]);
  for (let i = 0; i < 3; i++) tf.dispose(net.forward(x, { training: true, rng, auxiliary: false }) as unknown as tf.Tensor[]);
  x.dispose();
  for (const [name, v] of net.params.variables) {
    if (name.endsWith('.gamma') || name.endsWith('.beta')) {
      const [lo, hi] = name.endsWith('.gamma') ? [0.5, 1.5] : [-0.3, 0.3];
      v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => rng.uniform(lo, hi)), v.shape));
    }
  }
  return net;
}

let a: VNet3d;
let b: VNet3d;
let model: Uint8Array;
beforeAll(async () => {
  // The wasm backend the export tests use (its conv3d forward is right; see vnet3d.ts on the transposed conv).
  await useBackend();
  a = makeVNet(1);
  b = makeVNet(2);
  const g = new OnnxGraphBuilder();
  const image = g.input('image', ElemType.FLOAT, ['N', 1, 'D', 'H', 'W']);
  const logits = [a, b].map((net, n) => {
    const label = n === 0 ? 'a' : 'b';
    const out = g.op('Identity', [emitVNet3d(g, foldVNet3d(net, label), image, `${label}/`)], `logits_${label}`);
    g.output(out, ElemType.FLOAT, ['N', CLASSES, 'D', 'H', 'W']);
    return out;
  });
  // Both students in one graph, their softmaxes averaged as the 2D ensemble does.
  const softmax = logits.map((l) => g.op('Softmax', [l], g.fresh(`${l}.softmax`), { axis: 1 }));
  const probabilities = g.op('Mul', [g.op('Add', softmax, 'softmax_sum'), g.floatConstant('half', 0.5)], 'probabilities');
  g.output(probabilities, ElemType.FLOAT, ['N', CLASSES, 'D', 'H', 'W']);
  model = g.build('alhvr_two_student_vnet3d', {}, { name: 'test', version: '0' });
});
afterAll(() => {
  a.dispose();
  b.dispose();
});

/** NDHWC → NCDHW. */
function channelsFirst(t: tf.Tensor5D): Float32Array {
  return tf.tidy(() => tf.transpose(t, [0, 4, 1, 2, 3]).dataSync() as Float32Array);
}

describe('VNet 3D in ONNX', () => {
  test('Conv 3D / ConvTranspose 3D graph: no BatchNorm or Dropout, 2 × 8 transposed convs, 2 × 23 convs', () => {
    const ops = decodeOnnxModel(model).graph!.node.map((n) => n.opType);
    expect(ops).not.toContain('BatchNormalization');
    expect(ops).not.toContain('Dropout');
    expect(ops.filter((o) => o === 'ConvTranspose')).toHaveLength(2 * 4);
    // Encoder 12 convs + 4 down, decoder 9 convs, head 1.
    expect(ops.filter((o) => o === 'Conv')).toHaveLength(2 * (12 + 4 + 9 + 1));
    // Trainable scalars are the network's own (the fold adds none).
    expect(foldVNet3d(a, 'a').trainableParameters).toBe(a.parameterCount());
  });

  test.each([
    [[1, 1, 16, 16, 32]],
    [[2, 1, 32, 16, 16]],
  ])('logits and averaged probabilities match tfjs (eval) within 1e-4 on %j', async (dims) => {
    const rng = new Rng(7);
    const [n, , d, h, w] = dims;
    const input = Float32Array.from({ length: n * d * h * w }, () => rng.uniform(-1, 2));
    const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
    const out = await session.run({ image: new ort.Tensor('float32', input, dims) });
    const x = tf.tensor5d(input, [n, d, h, w, 1]);
    const probs: tf.Tensor[] = [];
    for (const [net, name] of [[a, 'logits_a'], [b, 'logits_b']] as const) {
      const { logits } = net.forward(x, { training: false });
      const expected = channelsFirst(logits);
      const got = out[name].data as Float32Array;
      expect(out[name].dims).toEqual([n, CLASSES, d, h, w]);
      let err = 0;
      let scale = 0;
      for (let v = 0; v < got.length; v++) {
        err = Math.max(err, Math.abs(got[v] - expected[v]));
        scale = Math.max(scale, Math.abs(expected[v]));
      }
      expect(scale).toBeGreaterThan(0.1); // a network whose logits are all ~0 would prove nothing
      expect(err, name).toBeLessThanOrEqual(1e-4);
      probs.push(tf.softmax(logits, -1));
      logits.dispose();
    }
    const mean = tf.mul(tf.add(probs[0], probs[1]), 0.5) as tf.Tensor5D;
    const expected = channelsFirst(mean);
    const got = out.probabilities.data as Float32Array;
    let err = 0;
    for (let v = 0; v < got.length; v++) err = Math.max(err, Math.abs(got[v] - expected[v]));
    expect(err).toBeLessThanOrEqual(1e-4);
    tf.dispose([x, mean, ...probs]);
  });

  test('refuses a network that is not the VNet with one line naming the parameter', () => {
    const wrong = { config: a.config, params: { variables: new Map([...a.params.variables, ['extra.kernel', a.params.get('dec.out.bias')]]) } };
    expect(() => foldVNet3d(wrong, 'b')).toThrow(InputError);
    expect(() => foldVNet3d(wrong, 'b')).toThrow(/"extra.kernel"/);
    expect(() => foldVNet3d({}, 'a')).toThrow(/not an ALHVR VNet3d/);
  });
});
