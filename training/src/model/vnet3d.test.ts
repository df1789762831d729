import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's node bundle registers no gradients; the ESM modules do (loaded through vite here).
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { Rng } from '@alhvr/core';
import { maxAbs, maxAbsDiff, pack, requireTorch, runOracle, unpack, type PackedTensor } from '../../../test/support/python.js';
import { VNet3d, dropout3d, featureDropout3d } from './vnet3d.js';
import { selectBackend } from '../backend/select-backend.js';
import { VNET_DEFAULT_WIDTHS, vnet3dConvLayers, vnet3dParameterShapes, vnet3dSpec } from './vnet3d-spec.js';

function randomTensor(rng: Rng, shape: number[], lo = -1, hi = 1): tf.Tensor {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = rng.uniform(lo, hi);
  return tf.tensor(v, shape);
}

const TINY = [2, 4, 4, 8, 8];

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('VNet 3D spec', () => {
  test('describes the released vnet_fea_aux: block depths, widths, down/up convs, additive skips, dropout, prototype tap', () => {
    const spec = vnet3dSpec({ inChannels: 1, numClasses: 2, widths: VNET_DEFAULT_WIDTHS });
    expect(spec.encoder.map((s) => [s.down?.cin ?? null, s.down?.cout ?? null, s.convs.length, s.convs[0].cin, s.convs[0].cout, s.dropout])).toEqual([
      [null, null, 1, 1, 16, 0],
      [16, 32, 2, 32, 32, 0],
      [32, 64, 3, 64, 64, 0],
      [64, 128, 3, 128, 128, 0],
      [128, 256, 3, 256, 256, 0.5],
    ]);
    expect(spec.decoder.map((s) => [s.up.cin, s.up.cout, s.skipLevel, s.convs.length, s.dropout, s.prototype])).toEqual([
      [256, 128, 3, 3, 0, true],
      [128, 64, 2, 3, 0, false],
      [64, 32, 1, 2, 0, false],
      [32, 16, 0, 1, 0.5, false],
    ]);
    expect(spec.head).toEqual({ name: 'dec.out', kind: 'conv', kernel: 1, cin: 16, cout: 2 });
    // Every conv but the head is followed by BatchNorm3d + ReLU.
    expect(vnet3dConvLayers(spec).filter((l) => !l.bn).map((l) => l.name)).toEqual(['dec.out']);
    const shapes = vnet3dParameterShapes(spec);
    expect(shapes.get('enc.1.down.kernel')).toEqual([2, 2, 2, 16, 32]);
    expect(shapes.get('dec.0.up.kernel')).toEqual([2, 2, 2, 128, 256]);
    // The published count: i·o·k³ + o per conv, i·o·8 + o per transposed conv, 2o per BN.
    let trainable = 0;
    for (const [name, shape] of shapes) if (!/running/.test(name)) trainable += shape.reduce((a, b) => a * b, 1);
    expect(trainable).toBe(9_448_866);
  });

  test('the model at the released widths creates exactly the spec’s parameters: 9,448,866 trainable', () => {
    const net = new VNet3d({ numClasses: 2 }, new Rng(1));
    const shapes = vnet3dParameterShapes(net.spec);
    expect(net.params.names()).toEqual([...shapes.keys()]);
    for (const [name, v] of net.params.variables) expect(v.shape).toEqual(shapes.get(name));
    expect(net.parameterCount()).toBe(9_448_866);
    // PyTorch's default init bounds: fan_in = cin·k³ (conv), cout·k³ (transposed conv).
    const bound = (name: string) => maxAbs(net.params.get(name).dataSync());
    expect(bound('enc.1.conv1.kernel')).toBeLessThanOrEqual(1 / Math.sqrt(32 * 27));
    expect(bound('enc.1.conv1.kernel')).toBeGreaterThan(0.98 / Math.sqrt(32 * 27));
    expect(bound('dec.0.up.kernel')).toBeLessThanOrEqual(1 / Math.sqrt(128 * 8));
    expect(bound('dec.0.up.kernel')).toBeGreaterThan(0.98 / Math.sqrt(128 * 8));
    net.dispose();
  });
});

describe('VNet 3D model (tiny widths, 16³)', () => {
  test('shapes, eval determinism, non-negative prototype features, the perturbed branch differs', () => {
    const net = new VNet3d({ numClasses: 3, widths: TINY }, new Rng(3));
    const x = randomTensor(new Rng(4), [2, 16, 16, 16, 1], 0, 1) as tf.Tensor5D;
    const e1 = net.forward(x, { training: false });
    const e2 = net.forward(x, { training: false });
    expect(e1.logits.shape).toEqual([2, 16, 16, 16, 3]);
    expect(e1.fea.shape).toEqual([2, 2, 2, 2, 8]);
    expect(e1.logitsAux).toBeUndefined();
    expect(maxAbsDiff(e1.logits.dataSync(), e2.logits.dataSync())).toBe(0);
    const rm = net.params.get('dec.0.bn1.runningMean').dataSync().slice();
    const t = net.forward(x, { training: true, rng: new Rng(5) });
    expect(t.logitsAux!.shape).toEqual([2, 16, 16, 16, 3]);
    expect(t.feaAux!.shape).toEqual([2, 2, 2, 2, 8]);
    expect(Math.min(...t.fea.dataSync())).toBeGreaterThanOrEqual(0);
    expect(maxAbsDiff(t.logits.dataSync(), t.logitsAux!.dataSync())).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(rm, net.params.get('dec.0.bn1.runningMean').dataSync())).toBeGreaterThan(0);
    expect(() => net.forward(tf.zeros([1, 16, 16, 24, 1]) as tf.Tensor5D, { training: false })).toThrow(/multiples of 16/);
    expect(() => net.forward(tf.zeros([1, 16, 16, 16, 1]) as tf.Tensor5D, { training: true })).toThrow(/rng/);
    net.dispose();
  });

  test('Dropout3d zeroes whole channels per sample and doubles the rest; feature dropout zeroes whole locations', () => {
    const x = tf.ones([2, 2, 2, 2, 16]) as tf.Tensor5D;
    const y = dropout3d(x, 0.5, new Rng(11)).arraySync() as number[][][][][];
    for (let b = 0; b < 2; b++) {
      for (let c = 0; c < 16; c++) {
        const values = new Set(y[b].flat(2).map((v) => v[c]));
        expect(values.size).toBe(1);
        expect([0, 2]).toContain([...values][0]);
      }
    }
    const a = randomTensor(new Rng(12), [1, 2, 2, 2, 4], 0, 1) as tf.Tensor5D;
    const d = featureDropout3d(a, 0.8).arraySync() as number[][][][][];
    const mean = tf.mean(a, 4).arraySync() as number[][][][];
    const max = Math.max(...mean[0].flat(2));
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 2; j++) {
        for (let k = 0; k < 2; k++) {
          const zeroed = d[0][i][j][k].every((v) => v === 0);
          expect(zeroed).toBe(mean[0][i][j][k] >= 0.8 * max);
        }
      }
    }
  });

  let oracle: { logits: PackedTensor; fea: PackedTensor; grads: Record<string, PackedTensor>; dx: PackedTensor } | undefined;
  test.each(['cpu', 'wasm'])('clean branch (no dropout) and its gradients match a PyTorch VNet on the same weights (%s backend)', async (backend) => {
    requireTorch();
    if (backend === 'wasm') await selectBackend('wasm', { threads: 1, log: () => {} });
    await tf.setBackend(backend);
    const net = new VNet3d({ numClasses: 2, widths: TINY, dropout: 0 }, new Rng(21));
    // 32×32×16: the deepest BatchNorm sees 8 values per channel (16³ would give it 2, an ill-conditioned case).
    const x = randomTensor(new Rng(22), [2, 32, 32, 16, 1]) as tf.Tensor5D;
    const probe = randomTensor(new Rng(23), [2, 32, 32, 16, 2]);
    const params: Record<string, PackedTensor> = {};
    for (const [name, v] of net.params.variables) params[name] = pack(v);
    // A float64 reference: tfjs' CPU sums run sequentially in float32, so over 32 768 voxels a
    // BatchNorm's gradient sums carry ~5e-4 relative rounding (PyTorch float32 is within 5e-6 of
    // float64 here); a wrong formula or layout gives errors of order one.
    // Same seeds, same weights on either backend: one oracle run serves both.
    oracle ??= runOracle('reference_vnet3d.py', { training: true, params, x: pack(x), probe: pack(probe), float64: true });
    const ref = oracle!;
    const trainable = net.params.trainableVariables();
    const trainingForward = (xi: tf.Tensor) => net.forward(xi as tf.Tensor5D, { training: true, rng: new Rng(1), auxiliary: false });
    const clean = trainingForward(x);
    expect(maxAbsDiff(clean.logits.dataSync(), unpack(ref.logits))).toBeLessThan(1e-4);
    expect(maxAbsDiff(clean.fea.dataSync(), unpack(ref.fea))).toBeLessThan(1e-4);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(trainingForward(x).logits, probe)) as tf.Scalar, trainable);
    const names = net.params.names().filter((n) => net.params.get(n).trainable);
    expect(Object.keys(ref.grads).sort()).toEqual([...names].sort());
    const withBn = new Set(vnet3dConvLayers(net.spec).filter((l) => l.bn).map((l) => `${l.name}.bias`));
    for (const name of names) {
      const g = grads[net.params.get(name).name].dataSync();
      const r = unpack(ref.grads[name]);
      if (withBn.has(name)) {
        // A bias before training-mode BatchNorm has zero gradient (BN removes the mean): both are rounding noise.
        const scale = maxAbs(unpack(ref.grads[name.replace(/bias$/, 'kernel')]));
        expect(maxAbs(g), name).toBeLessThan(1e-3 * scale);
        expect(maxAbs(r), name).toBeLessThan(1e-3 * scale);
      } else {
        expect(maxAbsDiff(g, r) / maxAbs(r), name).toBeLessThan(2e-3);
      }
    }
    const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(trainingForward(xi).logits, probe)))(x);
    expect(maxAbsDiff(dx.dataSync(), unpack(ref.dx)) / maxAbs(unpack(ref.dx))).toBeLessThan(2e-3);
    net.dispose();
    await tf.setBackend('cpu');
  });

  test('eval-mode logits match PyTorch with running statistics', () => {
    requireTorch();
    const net = new VNet3d({ numClasses: 2, widths: TINY, dropout: 0 }, new Rng(31));
    // Non-trivial running statistics: one training forward moves them.
    net.forward(randomTensor(new Rng(32), [2, 16, 16, 16, 1]) as tf.Tensor5D, { training: true, rng: new Rng(2), auxiliary: false });
    const x = randomTensor(new Rng(33), [1, 16, 16, 32, 1]) as tf.Tensor5D;
    const params: Record<string, PackedTensor> = {};
    for (const [name, v] of net.params.variables) params[name] = pack(v);
    const ref = runOracle<{ logits: PackedTensor; fea: PackedTensor }>('reference_vnet3d.py', { training: false, params, x: pack(x) });
    const out = net.forward(x, { training: false });
    expect(out.logits.shape).toEqual([1, 16, 16, 32, 2]);
    expect(maxAbsDiff(out.logits.dataSync(), unpack(ref.logits))).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.fea.dataSync(), unpack(ref.fea))).toBeLessThan(1e-4);
    net.dispose();
  });
});
