/**
 * Bilinear resizing with PyTorch `F.interpolate(mode='bilinear')` semantics, written as two
 * matrix products (rows, then columns) instead of tf.image.resizeBilinear: the tfjs CPU
 * gradient kernel of resizeBilinear ignores halfPixelCenters (so align_corners=false would get
 * a wrong gradient) and swaps height/width of the gradient for non-square inputs. Matrix
 * products have exact gradients on every backend.
 */
import * as tf from '@tensorflow/tfjs-core';

const matrixCache = new Map<string, tf.Tensor2D>();

/**
 * The [outSize, inSize] matrix whose row i holds the 1-D bilinear weights of output sample i,
 * following ATen's upsample_bilinear2d source-index rule.
 */
export function bilinearWeights1d(inSize: number, outSize: number, alignCorners: boolean): Float32Array {
  const w = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    let src: number;
    if (alignCorners) {
      src = outSize > 1 ? (i * (inSize - 1)) / (outSize - 1) : 0;
    } else {
      src = Math.max(((i + 0.5) * inSize) / outSize - 0.5, 0);
    }
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
    const l1 = src - i0;
    w[i * inSize + i0] += 1 - l1;
    w[i * inSize + i1] += l1;
  }
  return w;
}

function weightMatrix(inSize: number, outSize: number, alignCorners: boolean): tf.Tensor2D {
  const key = `${tf.getBackend()}:${inSize}:${outSize}:${alignCorners}`;
  let m = matrixCache.get(key);
  if (!m || m.isDisposed) {
    m = tf.keep(tf.tensor2d(bilinearWeights1d(inSize, outSize, alignCorners), [outSize, inSize]));
    matrixCache.set(key, m);
  }
  return m;
}

/** Resize an NHWC tensor to [outH, outW] bilinearly (torch align_corners semantics). */
export function resizeBilinear(x: tf.Tensor4D, size: [number, number], alignCorners: boolean): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const [outH, outW] = size;
  if (outH === h && outW === w) return x;
  return tf.tidy(() => {
    const rh = weightMatrix(h, outH, alignCorners);
    const rw = weightMatrix(w, outW, alignCorners);
    // Rows: [1, outH, h] x [b, h, w*c] -> [b, outH, w*c] (batch broadcast).
    const rows = tf.matMul(tf.expandDims(rh, 0), tf.reshape(x, [b, h, w * c]));
    // Columns: contract w as one plain 2-D product [outW, w] x [w, b*outH*c]; batched tiny
    // products (one per output row) are dominated by per-call overhead on the wasm backend.
    const byColumn = tf.reshape(tf.transpose(tf.reshape(rows, [b * outH, w, c]), [1, 0, 2]), [w, b * outH * c]);
    const mixed = tf.matMul(rw, byColumn);
    const cols = tf.transpose(tf.reshape(mixed, [outW, b * outH, c]), [1, 0, 2]);
    return tf.reshape(cols, [b, outH, outW, c]);
  });
}
