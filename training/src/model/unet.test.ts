import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's node bundle registers no gradients; the ESM modules do (loaded through vite here).
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { Rng } from '@alhvr/core';
import { maxAbsDiff, pack, requireTorch, runOracle, unpack, type PackedTensor } from '../../../test/support/python.js';
import { UNet, DEFAULT_WIDTHS } from './unet.js';
import { resizeBilinear } from './resize.js';

// Independent reference: Debian's python3-torch (apt-get install -y python3-torch).
function randomTensor(rng: Rng, shape: number[], lo = -1, hi = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.uniform(lo, hi);
  return tf.tensor(v, shape);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  requireTorch();
});

/** Trainable parameters of the released network, counted by hand from the architecture. */
function expectedParameterCount(widths: number[], inCh: number, classes: number): number {
  const conv = (k: number, cin: number, cout: number) => k * k * cin * cout + cout;
  const bn = (c: number) => 2 * c;
  const block = (cin: number, cout: number) => conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + bn(cout);
  let n = block(inCh, widths[0]);
  for (let l = 1; l < 5; l++) n += block(widths[l - 1], widths[l]);
  for (let u = 1; u <= 4; u++) n += conv(1, widths[5 - u], widths[4 - u]) + block(2 * widths[4 - u], widths[4 - u]);
  return n + conv(3, widths[0], classes);
}

describe('UNet', () => {
  test('parameter count at default widths with C=4 is the hand-counted ≈1.81 M', () => {
    const net = new UNet({ numClasses: 4 }, new Rng(1));
    const expected = expectedParameterCount(DEFAULT_WIDTHS, 1, 4);
    expect(net.parameterCount()).toBe(expected);
    expect(expected).toBeGreaterThan(1.805e6);
    expect(expected).toBeLessThan(1.815e6);
    expect(net.params.names()).toContain('enc.0.conv1.kernel');
    expect(net.params.get('enc.0.bn1.runningVar').trainable).toBe(false);
    net.dispose();
  });

  test('initialisation follows PyTorch defaults: U(±1/√fan_in) weights and biases, BN 1/0', () => {
    const net = new UNet({ numClasses: 4 }, new Rng(2));
    const k = net.params.get('enc.1.conv1.kernel'); // fan_in = 16·9
    const v = k.dataSync();
    const bound = 1 / Math.sqrt(16 * 9);
    let max = 0;
    let sumSq = 0;
    for (const x of v) {
      max = Math.max(max, Math.abs(x));
      sumSq += x * x;
    }
    expect(max).toBeLessThanOrEqual(bound);
    expect(max).toBeGreaterThan(0.98 * bound);
    // variance of U(−b, b) is b²/3
    expect(sumSq / v.length).toBeCloseTo((bound * bound) / 3, 4);
    expect(Array.from(net.params.get('enc.1.bn1.gamma').dataSync()).every((x) => x === 1)).toBe(true);
    expect(Array.from(net.params.get('enc.1.bn1.beta').dataSync()).every((x) => x === 0)).toBe(true);
    net.dispose();
  });

  test('output shapes, eval determinism, training branch differs from the clean one', () => {
    const net = new UNet({ numClasses: 4 }, new Rng(3));
    const x = randomTensor(new Rng(4), [2, 32, 32, 1], 0, 1) as tf.Tensor4D;
    const e1 = net.forward(x, { training: false });
    const e2 = net.forward(x, { training: false });
    expect(e1.logits.shape).toEqual([2, 32, 32, 4]);
    expect(e1.fea.shape).toEqual([2, 4, 4, 64]);
    expect(e1.logitsAux).toBeUndefined();
    expect(maxAbsDiff(e1.logits.dataSync(), e2.logits.dataSync())).toBe(0);

    const rm = net.params.get('enc.0.bn1.runningMean').dataSync().slice();
    const t = net.forward(x, { training: true, rng: new Rng(5) });
    expect(t.logitsAux!.shape).toEqual([2, 32, 32, 4]);
    expect(t.feaAux!.shape).toEqual([2, 4, 4, 64]);
    expect(maxAbsDiff(t.logits.dataSync(), t.logitsAux!.dataSync())).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(t.fea.dataSync(), t.feaAux!.dataSync())).toBeGreaterThan(1e-4);
    // training updated the BN running statistics, eval did not
    expect(maxAbsDiff(rm, net.params.get('enc.0.bn1.runningMean').dataSync())).toBeGreaterThan(0);
    net.dispose();
  });

  test('training without the auxiliary branch: same clean output, nothing perturbed, decoder BN stats moved once', () => {
    const x = randomTensor(new Rng(4), [2, 32, 32, 1], 0, 1) as tf.Tensor4D;
    const full = new UNet({ numClasses: 4, dropout: [0, 0, 0, 0, 0] }, new Rng(3));
    const lean = new UNet({ numClasses: 4, dropout: [0, 0, 0, 0, 0] }, new Rng(3));
    const a = full.forward(x, { training: true, rng: new Rng(5) });
    const b = lean.forward(x, { training: true, rng: new Rng(5), auxiliary: false });
    expect(b.logitsAux).toBeUndefined();
    expect(b.feaAux).toBeUndefined();
    expect(maxAbsDiff(a.logits.dataSync(), b.logits.dataSync())).toBe(0);
    // The decoder ran once instead of twice, so its running mean took one momentum step, not two.
    const once = lean.params.get('dec.up4.bn1.runningMean').dataSync();
    const twice = full.params.get('dec.up4.bn1.runningMean').dataSync();
    expect(maxAbsDiff(once, twice)).toBeGreaterThan(0);
    full.dispose();
    lean.dispose();
  });

  test('both perturbation kinds occur and training is reproducible from the seed and RNG state', () => {
    const x = randomTensor(new Rng(6), [2, 16, 16, 1], 0, 1) as tf.Tensor4D;
    const run = (rng: Rng) => {
      const net = new UNet({ numClasses: 3, widths: [4, 8, 8, 8, 8] }, new Rng(7));
      const out = net.forward(x, { training: true, rng });
      const r = { kind: out.perturbation, aux: Array.from(out.logitsAux!.dataSync()) };
      net.dispose();
      return r;
    };
    const kinds = new Set<string>();
    const rng = new Rng(8);
    for (let i = 0; i < 8; i++) kinds.add(run(rng).kind!);
    expect(kinds).toEqual(new Set(['dropout', 'noise']));

    const saved = new Rng(rng.state());
    const a = run(rng);
    const b = run(saved);
    expect(a.kind).toBe(b.kind);
    expect(maxAbsDiff(a.aux, b.aux)).toBe(0);
  });

  test('rejects inputs the network cannot take', () => {
    const net = new UNet({ numClasses: 2, widths: [2, 2, 2, 2, 2] }, new Rng(9));
    expect(() => net.forward(tf.zeros([1, 24, 24, 1]) as tf.Tensor4D, { training: false })).toThrow(/multiples of 16/);
    expect(() => net.forward(tf.zeros([1, 16, 16, 2]) as tf.Tensor4D, { training: false })).toThrow(/\[batch, height, width, 1\]/);
    expect(() => net.forward(tf.zeros([1, 16, 16, 1]) as tf.Tensor4D, { training: true })).toThrow(/rng/);
    net.dispose();
  });

  test('bilinear resize matches torch F.interpolate (align_corners true and false, up and down)', () => {
    const x = randomTensor(new Rng(10), [2, 5, 7, 3]) as tf.Tensor4D;
    const cases: { size: [number, number]; alignCorners: boolean }[] = [];
    for (const alignCorners of [true, false]) {
      for (const size of [[10, 14], [16, 9], [3, 4]] as [number, number][]) cases.push({ size, alignCorners });
    }
    const ref = runOracle('reference_losses.py', { task: 'resize', x: pack(x), cases });
    cases.forEach(({ size, alignCorners }, i) => {
      const y = resizeBilinear(x, size, alignCorners);
      expect(y.shape).toEqual([2, ...size, 3]);
      expect(maxAbsDiff(y.dataSync(), unpack(ref.ys[i]))).toBeLessThan(1e-6);
    });
  });

  /** Random BN statistics and affine parameters, so eval-mode BN is not the identity. */
  function randomiseBatchNorm(net: UNet, rng: Rng): void {
    for (const name of net.params.names()) {
      const v = net.params.get(name);
      const lohi: Record<string, [number, number]> = {
        gamma: [0.5, 1.5],
        beta: [-0.2, 0.2],
        runningMean: [-0.3, 0.3],
        runningVar: [0.5, 2],
      };
      const r = lohi[name.split('.').pop()!];
      if (r) v.assign(randomTensor(rng, v.shape, r[0], r[1]));
    }
  }

  const weightsOf = (net: UNet) => Object.fromEntries(net.params.names().map((n) => [n, pack(net.params.get(n))]));

  test('eval forward matches a PyTorch port of the network with the same weights', () => {
    const net = new UNet({ numClasses: 4 }, new Rng(11));
    randomiseBatchNorm(net, new Rng(12));
    const x = randomTensor(new Rng(13), [2, 32, 32, 1], 0, 1) as tf.Tensor4D;
    const out = net.forward(x, { training: false });
    const ref = runOracle('reference_unet.py', {
      ...net.config,
      weights: weightsOf(net),
      x: pack(x),
      training: false,
    });
    expect(maxAbsDiff(out.logits.dataSync(), unpack(ref.logits))).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.fea.dataSync(), unpack(ref.fea))).toBeLessThan(1e-4);
    net.dispose();
  });

  test('training-mode clean branch and BN running-stat updates match PyTorch (dropout 0)', () => {
    const config = { numClasses: 3, widths: [8, 12, 16, 20, 24], dropout: [0, 0, 0, 0, 0] };
    const net = new UNet(config, new Rng(14));
    randomiseBatchNorm(net, new Rng(15));
    const x = randomTensor(new Rng(16), [2, 32, 32, 1], 0, 1) as tf.Tensor4D;
    const request = { ...net.config, weights: weightsOf(net), x: pack(x), training: true };
    const out = net.forward(x, { training: true, rng: new Rng(17) });
    const ref = runOracle('reference_unet.py', request);
    expect(maxAbsDiff(out.logits.dataSync(), unpack(ref.logits))).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.fea.dataSync(), unpack(ref.fea))).toBeLessThan(1e-4);
    // Encoder BN ran once in both (the decoder's ran twice here: clean and perturbed).
    for (const [name, packed] of Object.entries(ref.runningStats as Record<string, PackedTensor>)) {
      expect(maxAbsDiff(net.params.get(name).dataSync(), unpack(packed)), name).toBeLessThan(1e-5);
    }
    net.dispose();
  });
});
