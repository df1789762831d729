/**
 * Gradient barriers. tfjs-core has no stopGradient, and its comparison kernels (Less, Greater,
 * ...) have no gradient at all: if one sits on a path between a variable and the loss, the
 * backward pass throws. Every mask or index computed from differentiable tensors must therefore
 * be built inside {@link noGrad}, which records a single tape node with a zero gradient.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Evaluate `compute(...inputs)` as a constant: no gradient flows back into `inputs`. */
export function noGrad<T extends tf.Tensor>(compute: (...xs: tf.Tensor[]) => T, ...inputs: tf.Tensor[]): T {
  const f = tf.customGrad((...args: unknown[]) => {
    const xs = args.slice(0, inputs.length) as tf.Tensor[];
    return { value: compute(...xs), gradFunc: () => xs.map((x) => tf.zeros(x.shape, 'float32')) };
  });
  return f(...inputs) as T;
}

/** Identity in the forward pass, zero gradient in the backward pass. */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return noGrad((a) => tf.clone(a) as T, x);
}
