import { describe, expect, it } from 'vitest';
import { Rng, defaultWindowStride as defaultStride, windowPadBefore as padBefore, windowStartsAlong as windowStarts } from '@alhvr/core';
import { type Dims3, argmaxClasses, gaussianImportance, slidingWindowInference } from './sliding-window.js';

function randomVolume(dims: Dims3, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: dims[0] * dims[1] * dims[2] }, () => rng.uniform(-2, 2));
}

/** A two-class model that looks at each voxel alone: logits (0, 3·v − 1). */
const pointwise = (window: Float32Array) => {
  const out = new Float32Array(2 * window.length);
  window.forEach((v, n) => (out[window.length + n] = 3 * v - 1));
  return out;
};
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Windows covering each voxel, counted from the positions alone (independently of the inference loop). */
function countMap(dims: Dims3, patch: Dims3, stride: Dims3): Uint16Array {
  const starts = [0, 1, 2].map((a) => windowStarts(dims[a], patch[a], stride[a]));
  const pad = [0, 1, 2].map((a) => padBefore(dims[a], patch[a]));
  const counts = new Uint16Array(dims[0] * dims[1] * dims[2]);
  for (const sk of starts[2]) for (const sj of starts[1]) for (const si of starts[0]) {
    for (let k = 0; k < dims[2]; k++) for (let j = 0; j < dims[1]; j++) for (let i = 0; i < dims[0]; i++) {
      const inside = [i + pad[0] - si, j + pad[1] - sj, k + pad[2] - sk].every((d, a) => d >= 0 && d < patch[a]);
      if (inside) counts[(k * dims[1] + j) * dims[0] + i]++;
    }
  }
  return counts;
}

describe('sliding-window positions', () => {
  it('follows the released rule: stride 64 of 96, ⌈(S − 96)/64⌉ + 1 windows, the last on the border', () => {
    expect(defaultStride(96)).toBe(64);
    expect(windowStarts(96, 96, 64)).toEqual([0]);
    expect(windowStarts(97, 96, 64)).toEqual([0, 1]);
    expect(windowStarts(200, 96, 64)).toEqual([0, 64, 104]);
    expect(windowStarts(300, 96, 64)).toEqual([0, 64, 128, 192, 204]);
    // Smaller than the patch: one window over the padded side, padding ⌊(P − S)/2⌋ before.
    expect(windowStarts(40, 96, 64)).toEqual([0]);
    expect(padBefore(41, 96)).toBe(27);
  });

  it('covers every voxel of anisotropic and small volumes, and the inference counts the same windows', async () => {
    const cases: [Dims3, Dims3, Dims3][] = [
      [[45, 30, 7], [16, 16, 16], [10, 12, 11]],
      [[10, 7, 5], [16, 16, 8], [11, 11, 6]],
      [[33, 17, 40], [16, 8, 12], [defaultStride(16), defaultStride(8), defaultStride(12)]],
    ];
    for (const [dims, patch, stride] of cases) {
      const counts = countMap(dims, patch, stride);
      expect(Math.min(...counts), dims.join('×')).toBeGreaterThanOrEqual(1);
      let calls = 0;
      const progress: number[] = [];
      const result = await slidingWindowInference(randomVolume(dims, 1), dims, (w) => (calls++, pointwise(w)), {
        patch,
        stride,
        numClasses: 2,
        onWindow: (done, total) => progress.push(done / total),
      });
      const expectedWindows = [0, 1, 2].reduce((n, a) => n * windowStarts(dims[a], patch[a], stride[a]).length, 1);
      expect(calls).toBe(expectedWindows);
      expect(result.windows).toBe(expectedWindows);
      expect(progress.at(-1)).toBe(1);
      expect(result.probabilities[0]).toHaveLength(dims[0] * dims[1] * dims[2]);
    }
  });
});

describe('sliding-window inference', () => {
  it('averages the softmax of every window covering a voxel (uniform weights) and equals a pointwise model exactly', async () => {
    const dims: Dims3 = [45, 30, 7];
    const patch: Dims3 = [16, 16, 16];
    const stride: Dims3 = [10, 12, 11];
    const data = randomVolume(dims, 2);
    // Class-1 logit = index of the window: each voxel's probability is the mean of sigmoid(n) over its windows.
    let calls = 0;
    const byWindow = (w: Float32Array) => {
      const out = new Float32Array(2 * w.length);
      out.fill(calls++ * 0.1, w.length);
      return out;
    };
    const { probabilities } = await slidingWindowInference(data, dims, byWindow, { patch, stride, numClasses: 2 });
    const starts = [0, 1, 2].map((a) => windowStarts(dims[a], patch[a], stride[a]));
    const pad = [0, 1, 2].map((a) => padBefore(dims[a], patch[a]));
    let maxErr = 0;
    for (const [i, j, k] of [[0, 0, 0], [44, 29, 6], [12, 15, 3], [20, 3, 5], [30, 20, 0]]) {
      let sum = 0;
      let count = 0;
      let n = 0;
      for (const sk of starts[2]) for (const sj of starts[1]) for (const si of starts[0]) {
        const d = [i + pad[0] - si, j + pad[1] - sj, k + pad[2] - sk];
        if (d.every((x, a) => x >= 0 && x < patch[a])) {
          sum += sigmoid(n * 0.1);
          count++;
        }
        n++;
      }
      const v = (k * dims[1] + j) * dims[0] + i;
      maxErr = Math.max(maxErr, Math.abs(probabilities[1][v] - sum / count), Math.abs(probabilities[0][v] - (1 - sum / count)));
    }
    expect(maxErr).toBeLessThan(1e-6);

    for (const gaussian of [false, true]) {
      const r = await slidingWindowInference(data, dims, pointwise, { patch, stride, numClasses: 2, gaussian });
      let err = 0;
      data.forEach((x, v) => (err = Math.max(err, Math.abs(r.probabilities[1][v] - sigmoid(3 * x - 1)))));
      expect(err, `gaussian ${gaussian}`).toBeLessThan(1e-6);
    }
  });

  it('an async model runs the next window while one is added up, gets each window untouched, and gives the synchronous result', async () => {
    const dims: Dims3 = [45, 30, 7];
    const patch: Dims3 = [16, 16, 16];
    const stride: Dims3 = [10, 12, 11];
    const data = randomVolume(dims, 4);
    // Outputs written into one shared buffer once the call settles, as pipeline-3d's model does.
    const shared = new Float32Array(2 * 16 * 16 * 16);
    const events: string[] = [];
    let calls = 0;
    let untouched = true;
    const slow = async (w: Float32Array) => {
      const call = calls++;
      events.push(`run ${call}`);
      const sent = w.slice();
      await new Promise((resolve) => setTimeout(resolve, 2));
      if (!sent.every((v, i) => v === w[i])) untouched = false;
      shared.set(pointwise(sent));
      return shared;
    };
    const r = await slidingWindowInference(data, dims, slow, { patch, stride, numClasses: 2, gaussian: true, onWindow: (done) => events.push(`added ${done}`) });
    const reference = await slidingWindowInference(data, dims, pointwise, { patch, stride, numClasses: 2, gaussian: true });
    expect(untouched).toBe(true);
    expect(r.windows).toBe(calls);
    // Window n + 1 is running before window n is added up.
    const expected = ['run 0'];
    for (let n = 1; n < calls; n++) expected.push(`run ${n}`, `added ${n}`);
    expected.push(`added ${calls}`);
    expect(events).toEqual(expected);
    // A synchronous model computes at the call: each window is added up before the next call.
    const syncEvents: string[] = [];
    let syncCalls = 0;
    await slidingWindowInference(data, dims, (w) => (syncEvents.push(`run ${syncCalls++}`), pointwise(w)), { patch, stride, numClasses: 2, onWindow: (done) => syncEvents.push(`added ${done}`) });
    expect(syncEvents.slice(0, 4)).toEqual(['run 0', 'added 1', 'run 1', 'added 2']);
    expect(r.probabilities[1]).toEqual(reference.probabilities[1]);
    expect(r.waitMs).toBeGreaterThan(0);
  });

  it('Gaussian weighting: nnU-Net’s map (σ = P/8, peak 1 at ⌊P/2⌋) weights each window’s voxels', async () => {
    const patch: Dims3 = [16, 8, 12];
    const g = gaussianImportance(patch);
    const at = (i: number, j: number, k: number) => g[(k * 8 + j) * 16 + i];
    expect(at(8, 4, 6)).toBe(1);
    expect(at(8 + 2, 4, 6)).toBeCloseTo(Math.exp(-(2 ** 2) / (2 * 2 ** 2)), 6);
    expect(at(8, 4, 6 + 3)).toBeCloseTo(Math.exp(-(3 ** 2) / (2 * 1.5 ** 2)), 6);
    expect(Math.min(...g)).toBeGreaterThan(0);
    // Two windows along i on a 20-voxel side: voxel i is the Gaussian-weighted mean of the windows' values.
    const dims: Dims3 = [20, 8, 12];
    let calls = 0;
    const byWindow = (w: Float32Array) => {
      const out = new Float32Array(2 * w.length);
      out.fill(calls++ === 0 ? -2 : 2, w.length);
      return out;
    };
    const { probabilities } = await slidingWindowInference(randomVolume(dims, 3), dims, byWindow, { patch, stride: [4, 8, 12], numClasses: 2, gaussian: true });
    for (const i of [5, 10, 15]) {
      const w0 = Math.exp(-((i - 8) ** 2) / 8);
      const w1 = Math.exp(-((i - 4 - 8) ** 2) / 8);
      const expected = (w0 * sigmoid(-2) + w1 * sigmoid(2)) / (w0 + w1);
      expect(probabilities[1][(6 * 8 + 4) * 20 + i]).toBeCloseTo(expected, 6);
    }
  });

  it('equals one whole-volume forward when the volume fits one window (exactly, and smaller with padding)', async () => {
    // A model with context: logits depend on the voxel, its position in the window and the window mean.
    const contextual = (w: Float32Array, patch: Dims3) => {
      const mean = w.reduce((s, x) => s + x, 0) / w.length;
      const out = new Float32Array(3 * w.length);
      w.forEach((x, n) => {
        const i = n % patch[0];
        out[n] = x;
        out[w.length + n] = mean * 4 + 0.05 * i;
        out[2 * w.length + n] = -x + 0.5;
      });
      return out;
    };
    const patch: Dims3 = [12, 10, 8];
    const softmax3 = (l: number[]) => {
      const m = Math.max(...l);
      const e = l.map((x) => Math.exp(x - m));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / s);
    };
    // Same size: the window is the volume.
    const data = randomVolume(patch, 4);
    const whole = contextual(data, patch);
    const r = await slidingWindowInference(data, patch, contextual, { patch, numClasses: 3 });
    expect(r.windows).toBe(1);
    for (let v = 0; v < data.length; v += 7) {
      const p = softmax3([whole[v], whole[data.length + v], whole[2 * data.length + v]]);
      for (let c = 0; c < 3; c++) expect(r.probabilities[c][v]).toBeCloseTo(p[c], 6);
    }
    // Smaller: the forward of the zero-padded volume (padding ⌊pad/2⌋ before), cut back to the volume.
    const small: Dims3 = [7, 10, 5];
    const smallData = randomVolume(small, 5);
    const padded = new Float32Array(patch[0] * patch[1] * patch[2]);
    const [pi, , pk] = [padBefore(7, 12), 0, padBefore(5, 8)];
    for (let k = 0; k < 5; k++) for (let j = 0; j < 10; j++) for (let i = 0; i < 7; i++) padded[((k + pk) * 10 + j) * 12 + i + pi] = smallData[(k * 10 + j) * 7 + i];
    const paddedOut = contextual(padded, patch);
    const rs = await slidingWindowInference(smallData, small, contextual, { patch, numClasses: 3 });
    let err = 0;
    for (let k = 0; k < 5; k++) for (let j = 0; j < 10; j++) for (let i = 0; i < 7; i++) {
      const q = ((k + pk) * 10 + j) * 12 + i + pi;
      const p = softmax3([paddedOut[q], paddedOut[padded.length + q], paddedOut[2 * padded.length + q]]);
      for (let c = 0; c < 3; c++) err = Math.max(err, Math.abs(rs.probabilities[c][(k * 10 + j) * 7 + i] - p[c]));
    }
    expect(err).toBeLessThan(1e-6);
    // The argmax and its probability.
    const { labels, confidence } = argmaxClasses(rs.probabilities);
    for (let v = 0; v < labels.length; v += 5) {
      const ps = rs.probabilities.map((p) => p[v]);
      expect(confidence[v]).toBe(Math.max(...ps));
      expect(labels[v]).toBe(ps.indexOf(Math.max(...ps)));
    }
  });

  it('passes every input channel, pads with the chosen value, stops on abort and rejects a wrong model output', async () => {
    const dims: Dims3 = [6, 6, 4];
    const voxels = 6 * 6 * 4;
    const data = Float32Array.from({ length: 2 * voxels }, (_, n) => (n < voxels ? 1 : 2));
    const seen: Float32Array[] = [];
    await slidingWindowInference(data, dims, (w) => (seen.push(Float32Array.from(w)), new Float32Array(2 * 8 * 8 * 4)), {
      patch: [8, 8, 4],
      numClasses: 2,
      channels: 2,
      padValue: -7,
    });
    expect(seen).toHaveLength(1);
    const w = seen[0];
    // Channel 0 then channel 1; padding 1 voxel before along i and j.
    expect(w[0]).toBe(-7);
    expect(w[1 * 8 + 1]).toBe(1);
    expect(w[8 * 8 * 4 + 1 * 8 + 1]).toBe(2);
    expect(w[7]).toBe(-7);
    const controller = new AbortController();
    controller.abort();
    await expect(slidingWindowInference(data.subarray(0, voxels), dims, pointwise, { patch: [4, 4, 4], numClasses: 2, signal: controller.signal })).rejects.toThrow();
    await expect(slidingWindowInference(data.subarray(0, voxels), dims, () => new Float32Array(3), { patch: [4, 4, 4], numClasses: 2 })).rejects.toThrow(/returned 3 values/);
  });
});

describe('window ownership', () => {
  it.each([
    [[48, 40, 40], [32, 32, 32], undefined],
    [[20, 24, 12], [32, 32, 32], undefined],
    [[50, 17, 33], [16, 16, 8], [5, 16, 3]],
    [[97, 64, 9], [32, 32, 32], [21, 21, 21]],
  ] as [Dims3, Dims3, Dims3 | undefined][])('%j with patch %j, stride %j: every voxel is owned by exactly one window, inside it', async (dims, patch, stride) => {
    const voxels = dims[0] * dims[1] * dims[2];
    const owners = new Uint16Array(voxels);
    const classes = 2;
    await slidingWindowInference(new Float32Array(voxels), dims, (_w, p, place) => {
      const { origin, owned } = place;
      for (let c = owned.lo[2]; c < owned.hi[2]; c++)
        for (let b = owned.lo[1]; b < owned.hi[1]; b++)
          for (let a = owned.lo[0]; a < owned.hi[0]; a++) {
            const [x, y, z] = [origin[0] + a, origin[1] + b, origin[2] + c];
            if (x < 0 || y < 0 || z < 0 || x >= dims[0] || y >= dims[1] || z >= dims[2]) throw new Error(`owned voxel ${[x, y, z]} outside the volume`);
            owners[(z * dims[1] + y) * dims[0] + x]++;
          }
      return new Float32Array(classes * p[0] * p[1] * p[2]);
    }, { patch, stride, numClasses: classes });
    expect(owners.every((n) => n === 1)).toBe(true);
  });
});
