/** WebAssembly text of the SIMD training kernels (see wasm-simd.ts), compiled when the wasm backend starts. */
export const WASM_SIMD_WAT = String.raw`;; Training kernels in wasm SIMD: BatchNorm (+ LeakyReLU) over NHWC tensors viewed as [rows, c],
;; c a multiple of 4 (batchnorm-kernels.ts), the filter gradient of a 3×3 convolution
;; (wasm-training-kernels.ts), and strided row copies (last-axis Concat/SplitV, wasm-layout-kernels.ts).
;; Runs on the TensorFlow.js wasm backend's own heap (the memory is imported), so tensors are
;; read and written in place. Every pointer is a byte offset; per-channel vectors are c floats.
;; The memory declaration below is filled in by the loader: shared for the threaded build, plain otherwise.
(module
  (import "env" "memory" __MEMORY__)

  ;; acc[k] = 0 for k < c
  (func $zero (param $acc i32) (param $bytes i32)
    (local $k i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $k) (local.get $bytes)))
      (v128.store (i32.add (local.get $acc) (local.get $k)) (v128.const i32x4 0 0 0 0))
      (local.set $k (i32.add (local.get $k) (i32.const 16)))
      (br $next))))

  ;; acc[k] = sum over rows of x[r, k]
  (func (export "sum_rows") (param $x i32) (param $rows i32) (param $c i32) (param $acc i32)
    (local $bytes i32) (local $end i32) (local $k i32) (local $a i32)
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (call $zero (local.get $acc) (local.get $bytes))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $bytes))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (local.set $k (i32.const 0))
      (loop $col
        (local.set $a (i32.add (local.get $acc) (local.get $k)))
        (v128.store (local.get $a)
          (f32x4.add (v128.load (local.get $a)) (v128.load (i32.add (local.get $x) (local.get $k)))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (br $row))))

  ;; acc[k] = sum over rows of (x[r, k] - mean[k])^2
  (func (export "sum_sq_centered") (param $x i32) (param $rows i32) (param $c i32) (param $mean i32) (param $acc i32)
    (local $bytes i32) (local $end i32) (local $k i32) (local $a i32) (local $d v128)
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (call $zero (local.get $acc) (local.get $bytes))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $bytes))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (local.set $k (i32.const 0))
      (loop $col
        (local.set $a (i32.add (local.get $acc) (local.get $k)))
        (local.set $d (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $k)))
                                 (v128.load (i32.add (local.get $mean) (local.get $k)))))
        (v128.store (local.get $a) (f32x4.add (v128.load (local.get $a)) (f32x4.mul (local.get $d) (local.get $d))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (br $row))))

  ;; out[r, k] = max(v, slope * v) with v = x[r, k] * scale[k] + shift[k]  (slope 1: no activation)
  (func (export "affine_leaky") (param $x i32) (param $out i32) (param $rows i32) (param $c i32)
        (param $scale i32) (param $shift i32) (param $slope f32)
    (local $bytes i32) (local $end i32) (local $k i32) (local $v v128) (local $s v128)
    (local.set $s (f32x4.splat (local.get $slope)))
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $bytes))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (local.set $k (i32.const 0))
      (loop $col
        (local.set $v (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $k))) (v128.load (i32.add (local.get $scale) (local.get $k))))
          (v128.load (i32.add (local.get $shift) (local.get $k)))))
        (v128.store (i32.add (local.get $out) (local.get $k))
          (f32x4.max (local.get $v) (f32x4.mul (local.get $s) (local.get $v))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (local.set $out (i32.add (local.get $out) (local.get $bytes)))
      (br $row))))

  ;; dz = dy * (y > 0 ? 1 : slope); xhat = (x - mean) * rstd;
  ;; accDz[k] = sum dz, accDzx[k] = sum dz * xhat
  (func (export "grad_sums") (param $dy i32) (param $y i32) (param $x i32) (param $rows i32) (param $c i32)
        (param $slope f32) (param $mean i32) (param $rstd i32) (param $accDz i32) (param $accDzx i32)
    (local $bytes i32) (local $end i32) (local $k i32) (local $a i32) (local $dz v128) (local $xhat v128) (local $s v128)
    (local.set $s (f32x4.splat (local.get $slope)))
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (call $zero (local.get $accDz) (local.get $bytes))
    (call $zero (local.get $accDzx) (local.get $bytes))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $bytes))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (local.set $k (i32.const 0))
      (loop $col
        (local.set $dz (f32x4.mul
          (v128.load (i32.add (local.get $dy) (local.get $k)))
          (v128.bitselect (v128.const f32x4 1 1 1 1) (local.get $s)
            (f32x4.gt (v128.load (i32.add (local.get $y) (local.get $k))) (v128.const f32x4 0 0 0 0)))))
        (local.set $xhat (f32x4.mul
          (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $k))) (v128.load (i32.add (local.get $mean) (local.get $k))))
          (v128.load (i32.add (local.get $rstd) (local.get $k)))))
        (local.set $a (i32.add (local.get $accDz) (local.get $k)))
        (v128.store (local.get $a) (f32x4.add (v128.load (local.get $a)) (local.get $dz)))
        (local.set $a (i32.add (local.get $accDzx) (local.get $k)))
        (v128.store (local.get $a) (f32x4.add (v128.load (local.get $a)) (f32x4.mul (local.get $dz) (local.get $xhat))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $dy (i32.add (local.get $dy) (local.get $bytes)))
      (local.set $y (i32.add (local.get $y) (local.get $bytes)))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (br $row))))

  ;; out = A * dz + B * x + C, dz as in grad_sums
  (func (export "grad_input") (param $dy i32) (param $y i32) (param $x i32) (param $out i32) (param $rows i32) (param $c i32)
        (param $slope f32) (param $A i32) (param $B i32) (param $C i32)
    (local $bytes i32) (local $end i32) (local $k i32) (local $dz v128) (local $s v128)
    (local.set $s (f32x4.splat (local.get $slope)))
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $bytes))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (local.set $k (i32.const 0))
      (loop $col
        (local.set $dz (f32x4.mul
          (v128.load (i32.add (local.get $dy) (local.get $k)))
          (v128.bitselect (v128.const f32x4 1 1 1 1) (local.get $s)
            (f32x4.gt (v128.load (i32.add (local.get $y) (local.get $k))) (v128.const f32x4 0 0 0 0)))))
        (v128.store (i32.add (local.get $out) (local.get $k))
          (f32x4.add
            (f32x4.add
              (f32x4.mul (v128.load (i32.add (local.get $A) (local.get $k))) (local.get $dz))
              (f32x4.mul (v128.load (i32.add (local.get $B) (local.get $k))) (v128.load (i32.add (local.get $x) (local.get $k)))))
            (v128.load (i32.add (local.get $C) (local.get $k)))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $dy (i32.add (local.get $dy) (local.get $bytes)))
      (local.set $y (i32.add (local.get $y) (local.get $bytes)))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (local.set $out (i32.add (local.get $out) (local.get $bytes)))
      (br $row))))

  ;; Filter gradient of a 3×3, stride-1 convolution for one tap, 4 input and 8 output channels:
  ;; out[tap, ci0+i, co0+j] = sum over p < pixels of xpad[p + off, ci0+i] * dy[p, co0+j].
  ;; xpad: [pixels + off, cin] (input zero-padded, on the same padded pixel grid as dy);
  ;; dy: [pixels, cout] (zero outside the real output). The 8 accumulators stay in registers.
  ;; x and dy are byte pointers to element (off, ci0) and (0, co0); out to (tap, ci0, co0).
  (func (export "dw_tap_4x8") (param $x i32) (param $dy i32) (param $pixels i32) (param $cin i32) (param $cout i32)
        (param $out i32)
    (local $xs i32) (local $ds i32) (local $xv v128) (local $d0 v128) (local $d1 v128) (local $s v128)
    (local $a00 v128) (local $a01 v128) (local $a10 v128) (local $a11 v128)
    (local $a20 v128) (local $a21 v128) (local $a30 v128) (local $a31 v128) (local $os i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ds (i32.shl (local.get $cout) (i32.const 2)))
    (block $done (loop $px
      (br_if $done (i32.eqz (local.get $pixels)))
      (local.set $xv (v128.load (local.get $x)))
      (local.set $d0 (v128.load (local.get $dy)))
      (local.set $d1 (v128.load offset=16 (local.get $dy)))
      (local.set $s (i8x16.shuffle 0 1 2 3 0 1 2 3 0 1 2 3 0 1 2 3 (local.get $xv) (local.get $xv)))
      (local.set $a00 (f32x4.add (local.get $a00) (f32x4.mul (local.get $s) (local.get $d0))))
      (local.set $a01 (f32x4.add (local.get $a01) (f32x4.mul (local.get $s) (local.get $d1))))
      (local.set $s (i8x16.shuffle 4 5 6 7 4 5 6 7 4 5 6 7 4 5 6 7 (local.get $xv) (local.get $xv)))
      (local.set $a10 (f32x4.add (local.get $a10) (f32x4.mul (local.get $s) (local.get $d0))))
      (local.set $a11 (f32x4.add (local.get $a11) (f32x4.mul (local.get $s) (local.get $d1))))
      (local.set $s (i8x16.shuffle 8 9 10 11 8 9 10 11 8 9 10 11 8 9 10 11 (local.get $xv) (local.get $xv)))
      (local.set $a20 (f32x4.add (local.get $a20) (f32x4.mul (local.get $s) (local.get $d0))))
      (local.set $a21 (f32x4.add (local.get $a21) (f32x4.mul (local.get $s) (local.get $d1))))
      (local.set $s (i8x16.shuffle 12 13 14 15 12 13 14 15 12 13 14 15 12 13 14 15 (local.get $xv) (local.get $xv)))
      (local.set $a30 (f32x4.add (local.get $a30) (f32x4.mul (local.get $s) (local.get $d0))))
      (local.set $a31 (f32x4.add (local.get $a31) (f32x4.mul (local.get $s) (local.get $d1))))
      (local.set $x (i32.add (local.get $x) (local.get $xs)))
      (local.set $dy (i32.add (local.get $dy) (local.get $ds)))
      (local.set $pixels (i32.sub (local.get $pixels) (i32.const 1)))
      (br $px)))
    ;; rows of out are cout floats apart
    (local.set $os (local.get $ds))
    (v128.store (local.get $out) (local.get $a00))
    (v128.store offset=16 (local.get $out) (local.get $a01))
    (local.set $out (i32.add (local.get $out) (local.get $os)))
    (v128.store (local.get $out) (local.get $a10))
    (v128.store offset=16 (local.get $out) (local.get $a11))
    (local.set $out (i32.add (local.get $out) (local.get $os)))
    (v128.store (local.get $out) (local.get $a20))
    (v128.store offset=16 (local.get $out) (local.get $a21))
    (local.set $out (i32.add (local.get $out) (local.get $os)))
    (v128.store (local.get $out) (local.get $a30))
    (v128.store offset=16 (local.get $out) (local.get $a31)))

  ;; rows times: copy bytes (a multiple of 16) from src to dst, then step src by srcStride and dst
  ;; by dstStride bytes: one input's channels into (or out of) a last-axis concatenation.
  (func (export "copy_rows") (param $src i32) (param $dst i32) (param $rows i32) (param $bytes i32)
        (param $srcStride i32) (param $dstStride i32)
    (local $k i32)
    (block $done (loop $row
      (br_if $done (i32.eqz (local.get $rows)))
      (local.set $k (i32.const 0))
      (loop $col
        (v128.store (i32.add (local.get $dst) (local.get $k)) (v128.load (i32.add (local.get $src) (local.get $k))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $src (i32.add (local.get $src) (local.get $srcStride)))
      (local.set $dst (i32.add (local.get $dst) (local.get $dstStride)))
      (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
      (br $row)))))
`;
