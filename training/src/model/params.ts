/**
 * Named parameters of a network: a flat, ordered map from a stable dotted name
 * (e.g. `enc.0.conv1.kernel`, `dec.up2.bn1.runningVar`) to a tf.Variable. Checkpoints and the
 * ONNX exporter walk this map; nothing else holds weights.
 *
 * Layout conventions (tfjs, NHWC): conv kernels are [kh, kw, cin, cout] (PyTorch's
 * [cout, cin, kh, kw] is kernel.transpose(3, 2, 0, 1)); biases and BatchNorm vectors are [c].
 * BatchNorm running statistics are non-trainable variables.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { UniformSource } from './random-source.js';

let storeCounter = 0;

export class ParameterStore {
  /** Insertion-ordered: module creation order, the same order PyTorch's state_dict uses. */
  readonly variables = new Map<string, tf.Variable>();
  /** Prefix of the tfjs-global variable names (tfjs requires them unique per process). */
  readonly scope: string;

  constructor(scope?: string) {
    this.scope = scope ?? `alhvr_params_${storeCounter++}`;
  }

  add(name: string, init: tf.Tensor, trainable: boolean): tf.Variable {
    if (this.variables.has(name)) throw new Error(`ParameterStore: duplicate parameter name ${name}`);
    const v = tf.variable(init, trainable, `${this.scope}/${name}`);
    init.dispose();
    this.variables.set(name, v);
    return v;
  }

  get(name: string): tf.Variable {
    const v = this.variables.get(name);
    if (!v) throw new Error(`ParameterStore: no parameter named ${name}`);
    return v;
  }

  names(): string[] {
    return [...this.variables.keys()];
  }

  trainableVariables(): tf.Variable[] {
    return [...this.variables.values()].filter((v) => v.trainable);
  }

  /** Number of scalar values, trainable only (the figure papers quote) or all. */
  count(trainableOnly = true): number {
    let n = 0;
    for (const v of this.variables.values()) if (!trainableOnly || v.trainable) n += v.size;
    return n;
  }

  /** Copy values in (shapes must match exactly); used to load checkpoints or reference weights. */
  assign(values: Record<string, tf.Tensor | Float32Array | number[]>): void {
    for (const [name, value] of Object.entries(values)) {
      const v = this.get(name);
      const t = value instanceof tf.Tensor ? value : tf.tensor(value, v.shape, 'float32');
      if (!tf.util.arraysEqual(t.shape, v.shape)) {
        throw new Error(`ParameterStore.assign: ${name} has shape [${t.shape}], expected [${v.shape}]`);
      }
      v.assign(t);
      if (!(value instanceof tf.Tensor)) t.dispose();
    }
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}

/**
 * PyTorch's default Conv2d initialisation: kaiming_uniform_(a=√5) on the weight, which is
 * U(−1/√fan_in, 1/√fan_in), and the same bound for the bias; fan_in = cin·kh·kw.
 */
export function addConv(
  store: ParameterStore,
  prefix: string,
  kernelSize: number,
  cin: number,
  cout: number,
  rng: UniformSource,
): void {
  const fanIn = cin * kernelSize * kernelSize;
  const bound = 1 / Math.sqrt(fanIn);
  const w = new Float32Array(kernelSize * kernelSize * cin * cout);
  for (let i = 0; i < w.length; i++) w[i] = (2 * rng.next() - 1) * bound;
  const b = new Float32Array(cout);
  for (let i = 0; i < b.length; i++) b[i] = (2 * rng.next() - 1) * bound;
  store.add(`${prefix}.kernel`, tf.tensor4d(w, [kernelSize, kernelSize, cin, cout]), true);
  store.add(`${prefix}.bias`, tf.tensor1d(b), true);
}

/** BatchNorm2d: gamma 1, beta 0 (trainable); running mean 0, running var 1 (not trainable). */
export function addBatchNorm(store: ParameterStore, prefix: string, channels: number): void {
  store.add(`${prefix}.gamma`, tf.ones([channels]), true);
  store.add(`${prefix}.beta`, tf.zeros([channels]), true);
  store.add(`${prefix}.runningMean`, tf.zeros([channels]), false);
  store.add(`${prefix}.runningVar`, tf.ones([channels]), false);
}
