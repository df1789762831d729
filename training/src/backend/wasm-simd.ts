/**
 * Our own wasm SIMD kernels (wasm-simd-wat.ts), instantiated against the TensorFlow.js wasm
 * backend's linear memory so they read and write its tensors in place. Compiled once per backend
 * from WebAssembly text with wabt (a registry package; no native toolchain).
 */
import wabtInit from 'wabt';
import { wasmHeapMemory, wasmInternals } from './wasm-internals.js';
import { WASM_SIMD_WAT } from './wasm-simd-wat.js';
import type { SimdHelper } from './wasm-simd-helper-node.js';
import type { HelperKernel } from './wasm-simd-wat.js';

/** dw_3x3_RxC of wasm-simd-wat.ts: blocks [from, to) of a 3×3 'same' filter gradient (byte offsets; see there). */
export type FilterGradient3x3 = (x: number, dy: number, rows: number, h: number, w: number, cin: number, cout: number, out: number,
  from: number, to: number, chunkRows: number) => void;

/** conv3x3_C of wasm-simd-wat.ts: output rows [r0, r1) of a 3×3 'same' convolution (byte offsets; see there). */
export type Convolution3x3 = (x: number, w: number, bias: number, out: number, h: number, width: number, cin: number, cout: number,
  r0: number, r1: number) => void;

/** conv1x1_C of wasm-simd-wat.ts: output pixels [p0, p1) of a 1×1 convolution (byte offsets; see there). */
export type Convolution1x1 = (x: number, w: number, bias: number, out: number, cin: number, cout: number, p0: number, p1: number) => void;

/** dw_1x1_RxC of wasm-simd-wat.ts: blocks [from, to) of a 1×1 filter gradient (byte offsets; see there). */
export type FilterGradient1x1 = (x: number, dy: number, rows: number, w: number, cin: number, cout: number, out: number,
  from: number, to: number, chunkRows: number) => void;

/** wino3x3_C of wasm-winograd-wat.ts: groups [from, to) of tiles of a 3×3 'same' convolution by Winograd F(2×2, 3×3) (byte offsets; see there). */
export type Winograd3x3 = (x: number, u: number, bias: number, out: number, h: number, w: number, cin: number, cout: number,
  tiles: number, tilesPerGroup: number, from: number, to: number, scratch: number) => void;

/** wino_dw_RxC of wasm-winograd-wat.ts: halves [from, to) of a 3×3 'same' filter gradient's transformed sums (byte offsets; see there). */
export type WinogradFilterGradient = (x: number, dy: number, sums: number, h: number, w: number, cin: number, cout: number,
  tiles: number, tilesPerGroup: number, from: number, to: number, scratch: number) => void;

export interface WasmSimdExports {
  [winoDw: `wino_dw_${number}x${number}`]: WinogradFilterGradient;
  wino_filter_grad(s0: number, s1: number, out: number, cin: number, cout: number, k0: number, k1: number): void;
  [wino3x3: `wino3x3_${number}`]: Winograd3x3;
  wino_filter(w: number, u: number, cin: number, cout: number, k0: number, k1: number): void;
  [dw1x1: `dw_1x1_${number}x${number}`]: FilterGradient1x1;
  [conv3x3: `conv3x3_${number}`]: Convolution3x3;
  [conv1x1: `conv1x1_${number}`]: Convolution1x1;
  [dw3x3: `dw_3x3_${number}x${number}`]: FilterGradient3x3;
  sum_rows(x: number, rows: number, c: number, acc: number): void;
  sum_sq_centered(x: number, rows: number, c: number, mean: number, acc: number): void;
  affine_leaky(x: number, out: number, rows: number, c: number, scale: number, shift: number, slope: number): void;
  grad_sums(dy: number, y: number, x: number, rows: number, c: number, slope: number, mean: number, rstd: number, accDz: number, accDzx: number): void;
  grad_input(dy: number, y: number, x: number, out: number, rows: number, c: number, slope: number, a: number, b: number, cc: number): void;
  // the same in parts (blocks of rows, ranges of rows), the slope as the bits of its float32
  sum_rows_blocks(x: number, rows: number, c: number, blockRows: number, partials: number, b0: number, b1: number): void;
  sum_sq_centered_blocks(x: number, rows: number, c: number, blockRows: number, mean: number, partials: number, b0: number, b1: number): void;
  grad_sums_blocks(dy: number, y: number, x: number, rows: number, c: number, blockRows: number, slopeBits: number, mean: number, rstd: number,
    partialsDz: number, partialsDzx: number, b0: number, b1: number): void;
  affine_leaky_rows(x: number, out: number, c: number, scale: number, shift: number, slopeBits: number, r0: number, r1: number): void;
  grad_input_rows(dy: number, y: number, x: number, out: number, c: number, slopeBits: number, a: number, b: number, cc: number, r0: number, r1: number): void;
  dw_tap_4x8(x: number, dy: number, pixels: number, cin: number, cout: number, out: number): void;
  maxpool2x2_grad(x: number, dy: number, dx: number, h: number, w: number, c: number, oh: number, ow: number, r0: number, r1: number): void;
  mul_broadcast(big: number, small: number, out: number, c: number, rowwise: number, r0: number, r1: number): void;
  copy_rows(src: number, dst: number, rows: number, bytes: number, srcStride: number, dstStride: number): void;
}

export interface WasmSimd {
  memory: WebAssembly.Memory;
  exports: WasmSimdExports;
  /** A second thread running the same kernels on the same memory (Node, threaded backend); see wasm-simd-helper-node.ts. */
  helper?: SimdHelper;
}

const loaded = new WeakMap<object, WasmSimd>();

/** Compiles and instantiates the kernels for a wasm backend (once). */
export async function loadWasmSimd(backend: object): Promise<WasmSimd> {
  const done = loaded.get(backend);
  if (done) return done;
  const memory = wasmHeapMemory(wasmInternals(backend));
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  const wabt = await wabtInit();
  const text = WASM_SIMD_WAT.replace('__MEMORY__', shared ? '(memory 1 65536 shared)' : '(memory 1)');
  const mod = wabt.parseWat('wasm-simd.wat', text, { simd: true, threads: true });
  try {
    const { buffer } = mod.toBinary({});
    const bytes = new Uint8Array(buffer);
    const { instance } = await WebAssembly.instantiate(bytes as BufferSource, { env: { memory } });
    const simd: WasmSimd = { memory, exports: instance.exports as unknown as WasmSimdExports };
    if (shared && typeof process !== 'undefined' && process.versions?.node) simd.helper = (await import('./wasm-simd-helper-node.js')).startSimdHelper(memory, bytes);
    loaded.set(backend, simd);
    return simd;
  } finally {
    mod.destroy();
  }
}

/**
 * Runs a job of `count` units (rows, blocks) by one of our kernels: `run(from, to)` here, and when
 * there is a helper thread, more than one unit and `worthIt`, the second half on the helper as
 * `kernel(...args, from, to, ...after)`. Every unit is computed whole by one thread, so the result
 * has the bits of one thread. Returns once both halves are done.
 */
export function splitWithHelper(
  simd: WasmSimd, count: number, kernel: HelperKernel, args: readonly number[], run: (from: number, to: number) => void,
  opts: { worthIt?: boolean; after?: readonly number[] } = {},
): void {
  const mine = simd.helper && count > 1 && (opts.worthIt ?? true) ? Math.ceil(count / 2) : count;
  if (mine < count) simd.helper!.start(kernel, [...args, mine, count, ...(opts.after ?? [])]);
  try {
    run(0, mine);
  } finally {
    // Never let the caller free what the helper may still be reading.
    if (mine < count) simd.helper!.finish();
  }
}

/** The kernels of a backend once `loadWasmSimd` has run for it. */
export function wasmSimdOf(backend: object): WasmSimd | undefined {
  return loaded.get(backend);
}
