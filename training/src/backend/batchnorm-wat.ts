/** WebAssembly text of the fused BatchNorm kernels (see batchnorm-kernels.ts), compiled at backend start. */
export const BATCHNORM_WAT = String.raw`;; BatchNorm (+ LeakyReLU) over NHWC tensors viewed as [rows, c], c a multiple of 4, in wasm SIMD.
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
)
`;
