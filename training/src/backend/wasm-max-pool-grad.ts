/**
 * `MaxPoolGrad` for the wasm backend. tfjs-backend-wasm 4.22 has one, but it is wrong whenever a
 * pooling window holds only negative values (it routes the gradient to the wrong element — its
 * running maximum evidently does not start at −∞); after LeakyReLU that is most windows, so we
 * replace it: the U-Net's 2×2 stride-2 pooling by our SIMD kernel (maxpool2x2_grad in
 * wasm-simd-wat.ts, channels in 4s, both threads), anything else by a JS loop on the wasm heap.
 */
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { heapOffset, wasmInternals, type WasmBackendInternals } from './wasm-internals.js';
import { splitWithHelper, wasmSimdOf } from './wasm-simd.js';

/**
 * dx[b, argmax of window, c] += dy[b, oh, ow, c], the first maximum winning ties (as the cpu
 * backend and PyTorch do); windows are scanned channel-vectorised to stay cache-friendly in NHWC.
 */
export const maxPoolGradWasm: KernelFunc = ({ inputs, backend: b, attrs }) => {
  const backend = wasmInternals(b);
  const dy = inputs.dy as TensorInfo;
  const input = inputs.input as TensorInfo;
  const a = attrs as unknown as {
    filterSize: [number, number] | number; strides: [number, number] | number; pad: 'same' | 'valid' | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const info = backend_util.computePool2DInfo(
    input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW,
    strideHeight: sh, strideWidth: sw, effectiveFilterHeight: KH, effectiveFilterWidth: KW } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const pool2x2 = KH === 2 && KW === 2 && sh === 2 && sw === 2 && pt === 0 && pl === 0 && OH * 2 <= H && OW * 2 <= W;
  if (pool2x2 && C % 4 === 0 && wasmSimdOf(backend) !== undefined) return maxPool2x2GradSimd(backend, input, dy, info);
  const dx = backend.makeOutput([...input.shape], 'float32');
  const xv = backend.typedArrayFromHeap(input);
  const dyv = backend.typedArrayFromHeap(dy);
  const dxv = backend.typedArrayFromHeap(dx);
  dxv.fill(0);
  if (pool2x2) {
    maxPool2x2Grad(xv, dyv, dxv, B, H, W, C, OH, OW);
    return dx;
  }
  const best = new Float32Array(C);
  const where = new Int32Array(C);
  for (let bi = 0; bi < B; bi++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        best.fill(-Infinity);
        where.fill(-1);
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh - pt + kh;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * sw - pl + kw;
            if (iw < 0 || iw >= W) continue;
            const base = ((bi * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) {
              const v = xv[base + c];
              if (where[c] < 0 || v > best[c]) {
                best[c] = v;
                where[c] = base + c;
              }
            }
          }
        }
        const o = ((bi * OH + oh) * OW + ow) * C;
        for (let c = 0; c < C; c++) if (where[c] >= 0) dxv[where[c]] += dyv[o + c];
      }
    }
  }
  return dx;
};

/**
 * The U-Net's 2×2, stride-2 pooling without padding: the same rule (scan order (0,0), (0,1),
 * (1,0), (1,1); a later element wins only when strictly greater, so the first maximum wins ties
 * and a NaN first element keeps the window) with the four candidates in locals instead of the
 * per-channel best/where arrays, which the general loop fills and rescans for every window.
 */
function maxPool2x2Grad(
  xv: Float32Array, dyv: Float32Array, dxv: Float32Array, B: number, H: number, W: number, C: number, OH: number, OW: number,
): void {
  const row = W * C;
  for (let bi = 0; bi < B; bi++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const p00 = ((bi * H + 2 * oh) * W + 2 * ow) * C;
        const o = ((bi * OH + oh) * OW + ow) * C;
        for (let c = 0; c < C; c++) {
          const a = p00 + c;
          let at = a;
          let m = xv[a];
          if (xv[a + C] > m) {
            m = xv[a + C];
            at = a + C;
          }
          if (xv[a + row] > m) {
            m = xv[a + row];
            at = a + row;
          }
          if (xv[a + row + C] > m) at = a + row + C;
          dxv[at] += dyv[o + c];
        }
      }
    }
  }
}


/** The 2×2 case by the SIMD kernel, the second half of the output rows on the helper thread. */
function maxPool2x2GradSimd(backend: WasmBackendInternals, input: TensorInfo, dy: TensorInfo, info: backend_util.Conv2DInfo): TensorInfo {
  const simd = wasmSimdOf(backend)!;
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const dx = backend.makeOutput([...input.shape], 'float32');
  // the kernel writes every element of a window; rows and columns past the last window stay 0
  if (OH * 2 < H || OW * 2 < W) backend.typedArrayFromHeap(dx).fill(0);
  const args = [heapOffset(backend, input), heapOffset(backend, dy), heapOffset(backend, dx), H, W, C, OH, OW] as const;
  splitWithHelper(simd, B * OH, 'maxpool2x2_grad', args, (from, to) => simd.exports.maxpool2x2_grad(...args, from, to));
  return dx;
}
