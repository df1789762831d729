/**
 * aᵀ·b per batch item, [B, N, K] and [B, N, D] → [B, K, D], in the operand order the active
 * backend is fast with. The wasm backend's GEMM (XNNPACK) packs its right operand on every call,
 * so there it computes (bᵀ·a)ᵀ, which packs `a`: the losses call it with a one-hot `a` that is a
 * small fraction of the size of `b`. Other backends take the product as written.
 */
import * as tf from '@tensorflow/tfjs-core';

export function transposedProduct(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  if (tf.getBackend() === 'wasm') return tf.transpose(tf.matMul(b, a, true, false), [0, 2, 1]) as tf.Tensor3D;
  return tf.matMul(a, b, true, false);
}
