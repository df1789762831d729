/**
 * The gradients of Sum and Mean with their ones tensor made by the backend. tfjs-core 4.22
 * computes them as dy (reshaped) × ones(x.shape), with the ones filled in JavaScript and copied to
 * the backend for every call; `tf.fill` makes the same ones inside the backend (on wasm, in C).
 * The arithmetic is tfjs's, so the gradients are the same bits. (Broadcasting dy with
 * `tf.broadcastTo` instead ran as the wasm backend's Tile kernel: 20 ms a call, far slower.)
 *
 * Process-wide (gradients are not per backend), registered when the training kernels are.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Mean, Sum, registerGradient, util, type NamedAttrMap } from '@tensorflow/tfjs-core';

/** dy with each reduced axis of x restored as size 1, times ones of x's shape (tfjs's product). */
function spreadOverReducedAxes(dy: tf.Tensor, x: tf.Tensor, attrs: NamedAttrMap): tf.Tensor {
  const expandedShape = x.shape.slice();
  for (const axis of util.parseAxisParam((attrs as unknown as { axis: number | number[] }).axis, x.shape)) expandedShape[axis] = 1;
  return tf.mul(tf.reshape(dy, expandedShape), tf.fill(x.shape, 1, 'float32'));
}

let installed = false;

/** Replaces tfjs-core's Sum and Mean gradients (same arithmetic, see above). Idempotent. */
export function installReductionGradients(): void {
  if (installed) return;
  installed = true;
  registerGradient({
    kernelName: Sum,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => ({ x: () => spreadOverReducedAxes(dy as tf.Tensor, saved[0], attrs) }),
  });
  registerGradient({
    kernelName: Mean,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = util.parseAxisParam((attrs as unknown as { axis: number | number[] }).axis, x.shape);
      const reduceSize = axes.reduce((n, axis) => n * x.shape[axis], 1);
      return { x: () => tf.div(spreadOverReducedAxes(dy as tf.Tensor, x, attrs), reduceSize) };
    },
  });
}
