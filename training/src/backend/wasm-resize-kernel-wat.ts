/** WebAssembly text of the linear-resize kernels (see wasm-resize-kernel.ts), compiled when the wasm backend starts. */
export const WASM_RESIZE_WAT = String.raw`;; Linear resizing along one axis of a tensor viewed as [outer, n, inner] (inner: the floats of
;; every later axis, channels included, one contiguous row), and its adjoint. Each output row is
;; w0·x[i0] + w1·x[i1]; the taps come from a table of m entries of 16 bytes
;; {i32 byte offset of row i0, i32 byte offset of row i1, f32 w0, f32 w1}, offsets within one
;; [n, inner] slab. Runs on the TensorFlow.js wasm backend's heap (the memory is imported); every
;; pointer is a byte offset. The memory declaration is filled in by the loader.
(module
  (import "env" "memory" __MEMORY__)

  ;; out[o, i, :] = w0[i]·x[o, i0[i], :] + w1[i]·x[o, i1[i], :]
  (func (export "lerp_axis") (param $x i32) (param $out i32) (param $outer i32) (param $slabIn i32)
        (param $m i32) (param $rowBytes i32) (param $table i32)
    (local $o i32) (local $t i32) (local $tEnd i32) (local $a i32) (local $b i32) (local $k i32)
    (local $vecEnd i32) (local $s0 f32) (local $s1 f32) (local $w0 v128) (local $w1 v128)
    (local.set $tEnd (i32.add (local.get $table) (i32.shl (local.get $m) (i32.const 4))))
    (local.set $vecEnd (i32.and (local.get $rowBytes) (i32.const -16)))
    (block $doneO (loop $nextO
      (br_if $doneO (i32.ge_u (local.get $o) (local.get $outer)))
      (local.set $t (local.get $table))
      (block $doneI (loop $nextI
        (br_if $doneI (i32.ge_u (local.get $t) (local.get $tEnd)))
        (local.set $a (i32.add (local.get $x) (i32.load (local.get $t))))
        (local.set $b (i32.add (local.get $x) (i32.load offset=4 (local.get $t))))
        (local.set $s0 (f32.load offset=8 (local.get $t)))
        (local.set $s1 (f32.load offset=12 (local.get $t)))
        (local.set $w0 (f32x4.splat (local.get $s0)))
        (local.set $w1 (f32x4.splat (local.get $s1)))
        (local.set $k (i32.const 0))
        (block $doneV (loop $nextV
          (br_if $doneV (i32.ge_u (local.get $k) (local.get $vecEnd)))
          (v128.store (i32.add (local.get $out) (local.get $k))
            (f32x4.add (f32x4.mul (local.get $w0) (v128.load (i32.add (local.get $a) (local.get $k))))
                       (f32x4.mul (local.get $w1) (v128.load (i32.add (local.get $b) (local.get $k))))))
          (local.set $k (i32.add (local.get $k) (i32.const 16)))
          (br $nextV)))
        (block $doneS (loop $nextS
          (br_if $doneS (i32.ge_u (local.get $k) (local.get $rowBytes)))
          (f32.store (i32.add (local.get $out) (local.get $k))
            (f32.add (f32.mul (local.get $s0) (f32.load (i32.add (local.get $a) (local.get $k))))
                     (f32.mul (local.get $s1) (f32.load (i32.add (local.get $b) (local.get $k))))))
          (local.set $k (i32.add (local.get $k) (i32.const 4)))
          (br $nextS)))
        (local.set $out (i32.add (local.get $out) (local.get $rowBytes)))
        (local.set $t (i32.add (local.get $t) (i32.const 16)))
        (br $nextI)))
      (local.set $x (i32.add (local.get $x) (local.get $slabIn)))
      (local.set $o (i32.add (local.get $o) (i32.const 1)))
      (br $nextO))))

  ;; The adjoint, into a zeroed dx: dx[o, i0[i], :] += w0[i]·dy[o, i, :], then dx[o, i1[i], :] += w1[i]·dy[o, i, :]
  ;; (the second update reads the first, so i0 = i1 is right).
  (func (export "lerp_axis_adjoint") (param $dy i32) (param $dx i32) (param $outer i32) (param $slabIn i32)
        (param $m i32) (param $rowBytes i32) (param $table i32)
    (local $o i32) (local $t i32) (local $tEnd i32) (local $a i32) (local $b i32) (local $k i32)
    (local $vecEnd i32) (local $s0 f32) (local $s1 f32) (local $w0 v128) (local $w1 v128) (local $v v128) (local $s f32)
    (local.set $tEnd (i32.add (local.get $table) (i32.shl (local.get $m) (i32.const 4))))
    (local.set $vecEnd (i32.and (local.get $rowBytes) (i32.const -16)))
    (block $doneO (loop $nextO
      (br_if $doneO (i32.ge_u (local.get $o) (local.get $outer)))
      (local.set $t (local.get $table))
      (block $doneI (loop $nextI
        (br_if $doneI (i32.ge_u (local.get $t) (local.get $tEnd)))
        (local.set $a (i32.add (local.get $dx) (i32.load (local.get $t))))
        (local.set $b (i32.add (local.get $dx) (i32.load offset=4 (local.get $t))))
        (local.set $s0 (f32.load offset=8 (local.get $t)))
        (local.set $s1 (f32.load offset=12 (local.get $t)))
        (local.set $w0 (f32x4.splat (local.get $s0)))
        (local.set $w1 (f32x4.splat (local.get $s1)))
        (local.set $k (i32.const 0))
        (block $doneV (loop $nextV
          (br_if $doneV (i32.ge_u (local.get $k) (local.get $vecEnd)))
          (local.set $v (v128.load (i32.add (local.get $dy) (local.get $k))))
          (v128.store (i32.add (local.get $a) (local.get $k))
            (f32x4.add (v128.load (i32.add (local.get $a) (local.get $k))) (f32x4.mul (local.get $w0) (local.get $v))))
          (v128.store (i32.add (local.get $b) (local.get $k))
            (f32x4.add (v128.load (i32.add (local.get $b) (local.get $k))) (f32x4.mul (local.get $w1) (local.get $v))))
          (local.set $k (i32.add (local.get $k) (i32.const 16)))
          (br $nextV)))
        (block $doneS (loop $nextS
          (br_if $doneS (i32.ge_u (local.get $k) (local.get $rowBytes)))
          (local.set $s (f32.load (i32.add (local.get $dy) (local.get $k))))
          (f32.store (i32.add (local.get $a) (local.get $k))
            (f32.add (f32.load (i32.add (local.get $a) (local.get $k))) (f32.mul (local.get $s0) (local.get $s))))
          (f32.store (i32.add (local.get $b) (local.get $k))
            (f32.add (f32.load (i32.add (local.get $b) (local.get $k))) (f32.mul (local.get $s1) (local.get $s))))
          (local.set $k (i32.add (local.get $k) (i32.const 4)))
          (br $nextS)))
        (local.set $dy (i32.add (local.get $dy) (local.get $rowBytes)))
        (local.set $t (i32.add (local.get $t) (i32.const 16)))
        (br $nextI)))
      (local.set $dx (i32.add (local.get $dx) (local.get $slabIn)))
      (local.set $o (i32.add (local.get $o) (i32.const 1)))
      (br $nextO))))
)
`;
