/**
 * Linear resizing of channels-last tensors with PyTorch `F.interpolate` semantics (bilinear,
 * trilinear; align_corners true or false), never tf.image.resizeBilinear: the tfjs CPU gradient
 * kernel of resizeBilinear ignores halfPixelCenters (so align_corners=false would get a wrong
 * gradient) and swaps height/width of the gradient for non-square inputs.
 *
 * Where the backend has the two-tap kernels of backend/wasm-resize-kernel.ts (wasm, cpu) they
 * run, with their adjoint as the gradient. Elsewhere (tensorflow) each axis is a matrix product
 * with the dense interpolation matrix, whose gradients are exact on every backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { hasLinearResizeKernels, linearTaps, registerCpuResizeKernels, RESIZE_LINEAR } from '../backend/wasm-resize-kernel.js';

// The cpu kernels need no backend instance; the wasm ones come with the wasm training kernels.
registerCpuResizeKernels();

const matrixCache = new Map<string, tf.Tensor2D>();

/**
 * The [outSize, inSize] matrix whose row i holds the 1-D linear weights of output sample i,
 * built from the kernels' taps (ATen's source-index rule, see linearTaps).
 */
export function bilinearWeights1d(inSize: number, outSize: number, alignCorners: boolean): Float32Array {
  const w = new Float32Array(outSize * inSize);
  const taps = linearTaps(inSize, outSize, alignCorners);
  for (let i = 0; i < outSize; i++) {
    w[i * inSize + taps.i0[i]] += taps.w0[i];
    w[i * inSize + taps.i1[i]] += taps.w1[i];
  }
  return w;
}

/** The transposed weights [inSize, outSize], cached per backend: a constant GEMM operand. */
function weightMatrixT(inSize: number, outSize: number, alignCorners: boolean): tf.Tensor2D {
  const key = `${tf.getBackend()}:${inSize}:${outSize}:${alignCorners}`;
  let m = matrixCache.get(key);
  if (!m || m.isDisposed) {
    const w = bilinearWeights1d(inSize, outSize, alignCorners);
    const t = new Float32Array(inSize * outSize);
    for (let i = 0; i < outSize; i++) for (let j = 0; j < inSize; j++) t[j * outSize + i] = w[i * inSize + j];
    m = tf.keep(tf.tensor2d(t, [inSize, outSize]));
    matrixCache.set(key, m);
  }
  return m;
}

/**
 * Resize an NHWC tensor to [outH, outW] bilinearly (torch align_corners semantics).
 */
export function resizeBilinear(x: tf.Tensor4D, size: [number, number], alignCorners: boolean): tf.Tensor4D {
  return resizeLinear(x, size, alignCorners);
}

/**
 * The matrix-product form of resizeBilinear. Each axis is contracted as
 * [pixels·channels, in] × [in, out]: the activation is the GEMM's input and the small constant
 * matrix its weights, which XNNPACK packs once and keeps (with the
 * activation as the packed operand, every call repacked megabytes).
 */
function resizeBilinearByProducts(x: tf.Tensor4D, size: [number, number], alignCorners: boolean): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const [outH, outW] = size;
  if (outH === h && outW === w) return x;
  return tf.tidy(() => {
    // Rows: [b, h, w, c] → [b·w·c, h] × [h, outH] → laid out [b, w, c, outH].
    const byRow = tf.reshape(tf.transpose(x, [0, 2, 3, 1]), [b * w * c, h]);
    const rows = tf.matMul(byRow, weightMatrixT(h, outH, alignCorners));
    // Columns: [b, w, c, outH] → [b·outH·c, w] × [w, outW] → laid out [b, outH, c, outW].
    const byColumn = tf.reshape(tf.transpose(tf.reshape(rows, [b, w, c, outH]), [0, 3, 2, 1]), [b * outH * c, w]);
    const cols = tf.matMul(byColumn, weightMatrixT(w, outW, alignCorners));
    return tf.transpose(tf.reshape(cols, [b, outH, c, outW]), [0, 1, 3, 2]);
  });
}

/** The weights [1, outSize, inSize], cached per backend: the broadcast left operand of a batched product. */
function weightMatrix(inSize: number, outSize: number, alignCorners: boolean): tf.Tensor3D {
  const key = `${tf.getBackend()}:${inSize}:${outSize}:${alignCorners}:left`;
  let m = matrixCache.get(key) as unknown as tf.Tensor3D | undefined;
  if (!m || m.isDisposed) {
    m = tf.keep(tf.tensor3d(bilinearWeights1d(inSize, outSize, alignCorners), [1, outSize, inSize]));
    matrixCache.set(key, m as unknown as tf.Tensor2D);
  }
  return m;
}

/**
 * Linear resizing of a channels-last tensor at any spatial rank ([B, H, W, C] bilinear,
 * [B, D, H, W, C] trilinear) with torch's align_corners rule; gradients are exact on every
 * backend. Float32 tensors on a backend with the two-tap kernels go through them (one autograd
 * node, the adjoint kernel as its gradient); the rest through resizeLinearByProducts.
 */
export function resizeLinear<T extends tf.Tensor>(x: T, size: readonly number[], alignCorners: boolean): T {
  const spatial = x.shape.slice(1, -1);
  if (size.length !== spatial.length) throw new RangeError(`resizeLinear: ${size.length} target sides for ${spatial.length} spatial axes`);
  if (x.rank !== 4 && x.rank !== 5) throw new RangeError(`resizeLinear: rank ${x.rank} (expected 4 or 5)`);
  if (spatial.every((s, i) => s === size[i])) return x;
  if (x.dtype === 'float32' && hasLinearResizeKernels(tf.getBackend())) {
    const attrs = { size: [...size], alignCorners, inputSize: spatial };
    return tf.engine().runKernel(RESIZE_LINEAR, { x }, attrs as unknown as tf.NamedAttrMap) as T;
  }
  return resizeLinearByProducts(x, size, alignCorners);
}

/**
 * resizeLinear as matrix products, for backends without the kernels (and as the tests' reference).
 * The 2D case is resizeBilinearByProducts. In 3D each axis is one batched product with the
 * small weight matrix on the left — D on [B, D, H·W·C], H on [B·D', H, W·C], W on [B·D'·H', W, C] —
 * so no transpose is needed and the only full-size tensor is the result.
 */
export function resizeLinearByProducts<T extends tf.Tensor>(x: T, size: readonly number[], alignCorners: boolean): T {
  const spatial = x.shape.slice(1, -1);
  if (spatial.every((s, i) => s === size[i])) return x;
  if (x.rank === 4) return resizeBilinearByProducts(x as unknown as tf.Tensor4D, size as [number, number], alignCorners) as unknown as T;
  const [b, d, h, w, c] = x.shape;
  const [outD, outH, outW] = size;
  return tf.tidy(() => {
    const alongD = tf.matMul(weightMatrix(d, outD, alignCorners), tf.reshape(x, [b, d, h * w * c]));
    const alongH = tf.matMul(weightMatrix(h, outH, alignCorners), tf.reshape(alongD, [b * outD, h, w * c]));
    const alongW = tf.matMul(weightMatrix(w, outW, alignCorners), tf.reshape(alongH, [b * outD * outH, w, c]));
    return tf.reshape(alongW, [b, outD, outH, outW, c]) as T;
  });
}
