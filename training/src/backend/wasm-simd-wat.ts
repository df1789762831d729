import { WINOGRAD_GRADIENT_BLOCKS, winogradKernels } from './wasm-winograd-wat.js';

/** Blocks of input × output channels the filter-gradient kernels come in: exports `dw_3x3_${r}x${c}` and `dw_1x1_${r}x${c}` each. */
export const FILTER_GRADIENT_BLOCKS = [[4, 8], [4, 4], [1, 8], [1, 4]] as const;

/**
 * The 3×3 filter-gradient kernels for blocks of r input × c output channels (c a multiple of 4):
 * r·c/4 accumulators (at most 8, so that with dy's c/4 vectors and the splat they fit the 16
 * SIMD registers of x64).
 */
function filterGradientKernels(r: number, c: number): string {
  const name = `${r}x${c}`;
  const rows = [...Array(r).keys()];
  const vecs = [...Array(c / 4).keys()];
  const acc = (i: number, v: number) => `$a${i}${v}`;
  const rowsOfOut = (f: (i: number, v: number) => string) => rows.map((i) => [
    ...(i > 0 ? ['      (local.set $o (i32.add (local.get $o) (local.get $ds)))'] : []),
    ...vecs.map((v) => f(i, v)),
  ].join('\n')).join('\n');
  return String.raw`
  ;; One ${name} block of the 3×3 filter gradient over n pixels: out[${r} rows, ${c}] (+)= sum over the
  ;; pixels of x[p, ${r} input channels]ᵀ · dy[p, ${c} output channels], x and dy stepping by xs and ds
  ;; bytes. first = 1 starts from zero, otherwise from what out holds (the sums of earlier chunks:
  ;; stored and reloaded exactly, so a chunked sum is bit for bit the one-pass sum).
  (func $dw_run_${name} (param $x i32) (param $dy i32) (param $n i32) (param $xs i32) (param $ds i32)
        (param $out i32) (param $first i32)
    (local $s v128) (local $o i32) ${vecs.map((v) => `(local $d${v} v128)`).join(' ')}
    ${rows.map((i) => vecs.map((v) => `(local ${acc(i, v)} v128)`).join(' ')).join(' ')}
    (local.set $o (local.get $out))
    (if (i32.eqz (local.get $first)) (then
${rowsOfOut((i, v) => `      (local.set ${acc(i, v)} (v128.load offset=${16 * v} (local.get $o)))`)}))
    (block $done (loop $px
      (br_if $done (i32.eqz (local.get $n)))
${vecs.map((v) => `      (local.set $d${v} (v128.load offset=${16 * v} (local.get $dy)))`).join('\n')}
${rows.map((i) => [`      (local.set $s (v128.load32_splat offset=${4 * i} (local.get $x)))`,
    ...vecs.map((v) => `      (local.set ${acc(i, v)} (f32x4.add (local.get ${acc(i, v)}) (f32x4.mul (local.get $s) (local.get $d${v}))))`)].join('\n')).join('\n')}
      (local.set $x (i32.add (local.get $x) (local.get $xs)))
      (local.set $dy (i32.add (local.get $dy) (local.get $ds)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $px)))
    (local.set $o (local.get $out))
${rowsOfOut((i, v) => `      (v128.store offset=${16 * v} (local.get $o) (local.get ${acc(i, v)}))`)})

  ;; Rows [r0, r0 + n) of one ${name} block (tap kh, kw; see dw_3x3_${name}), added to out: for each
  ;; output row r = b·h + oh whose input row oh + kh - 1 lies in the image, the run of output
  ;; columns whose input column lies in it too. x and dy point to channel ci and co of pixel 0.
  (func $dw_rows_${name} (param $x i32) (param $dy i32) (param $r0 i32) (param $n i32) (param $h i32) (param $w i32)
        (param $kh i32) (param $kw i32) (param $xs i32) (param $ds i32) (param $out i32)
    (local $r i32) (local $end i32) (local $ih i32) (local $c0 i32) (local $cols i32)
    ;; valid output columns [c0, c0 + cols): kw = 0 misses the first, kw = 2 the last
    (local.set $c0 (i32.eqz (local.get $kw)))
    (local.set $cols (i32.sub (local.get $w) (i32.ne (local.get $kw) (i32.const 1))))
    (local.set $r (local.get $r0))
    (local.set $end (i32.add (local.get $r0) (local.get $n)))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $r) (local.get $end)))
      (local.set $ih (i32.sub (i32.add (i32.rem_u (local.get $r) (local.get $h)) (local.get $kh)) (i32.const 1)))
      (if (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.lt_s (local.get $ih) (local.get $h))) (then
        (call $dw_run_${name}
          ;; x[b, ih, c0 + kw - 1] = x[(r + kh - 1)·w + c0 + kw - 1]
          (i32.add (local.get $x) (i32.mul (i32.sub (i32.add (i32.add (i32.mul (i32.add (local.get $r) (local.get $kh)) (local.get $w))
            (local.get $c0)) (local.get $kw)) (i32.add (local.get $w) (i32.const 1))) (local.get $xs)))
          (i32.add (local.get $dy) (i32.mul (i32.add (i32.mul (local.get $r) (local.get $w)) (local.get $c0)) (local.get $ds)))
          (local.get $cols) (local.get $xs) (local.get $ds) (local.get $out) (i32.const 0))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))

  ;; Blocks [from, to) of the filter gradient of a 3×3, stride-1, 'same' convolution: x [rows, w,
  ;; cin] and dy [rows, w, cout], rows = batch·h, block j being (tap, block of ${r} input channels,
  ;; block of ${c} output channels) in that order: dW[tap, ci..ci+${r}, co..co+${c}] += the sum over output
  ;; pixels of x at the tap's input pixel (inside the image) · dy. The rows go by in chunks, every
  ;; block of this thread per chunk, so a chunk of x and dy is read from cache by all of them
  ;; instead of once per block from memory. out must start zeroed. Pixels are summed in row-major
  ;; order: the same sums as over a zero-padded grid.
  (func (export "dw_3x3_${name}") (param $x i32) (param $dy i32) (param $rows i32) (param $h i32) (param $w i32)
        (param $cin i32) (param $cout i32) (param $out i32) (param $from i32) (param $to i32) (param $chunkRows i32)
    (local $xs i32) (local $ds i32) (local $r0 i32) (local $n i32) (local $j i32) (local $perTap i32)
    (local $coBlocks i32) (local $tap i32) (local $rem i32) (local $ci i32) (local $co i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ds (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $coBlocks (i32.div_u (local.get $cout) (i32.const ${c})))
    (local.set $perTap (i32.mul (i32.div_u (local.get $cin) (i32.const ${r})) (local.get $coBlocks)))
    (block $done (loop $chunks
      (br_if $done (i32.ge_u (local.get $r0) (local.get $rows)))
      (local.set $n (i32.sub (local.get $rows) (local.get $r0)))
      (if (i32.gt_u (local.get $n) (local.get $chunkRows)) (then (local.set $n (local.get $chunkRows))))
      (local.set $j (local.get $from))
      (block $blocksDone (loop $blocks
        (br_if $blocksDone (i32.ge_u (local.get $j) (local.get $to)))
        (local.set $tap (i32.div_u (local.get $j) (local.get $perTap)))
        (local.set $rem (i32.rem_u (local.get $j) (local.get $perTap)))
        (local.set $ci (i32.mul (i32.div_u (local.get $rem) (local.get $coBlocks)) (i32.const ${r})))
        (local.set $co (i32.mul (i32.rem_u (local.get $rem) (local.get $coBlocks)) (i32.const ${c})))
        (call $dw_rows_${name}
          (i32.add (local.get $x) (i32.shl (local.get $ci) (i32.const 2)))
          (i32.add (local.get $dy) (i32.shl (local.get $co) (i32.const 2)))
          (local.get $r0) (local.get $n) (local.get $h) (local.get $w)
          (i32.div_u (local.get $tap) (i32.const 3)) (i32.rem_u (local.get $tap) (i32.const 3))
          (local.get $xs) (local.get $ds)
          (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (i32.add (i32.mul (local.get $tap) (local.get $cin)) (local.get $ci)) (local.get $cout)) (local.get $co)) (i32.const 2))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $blocks)))
      (local.set $r0 (i32.add (local.get $r0) (local.get $n)))
      (br $chunks))))

  ;; The same for a 1×1 convolution: its one tap is the 3×3's centre, every pixel inside the image;
  ;; block j is (block of ${r} input channels, block of ${c} output channels), dW [cin, cout].
  (func (export "dw_1x1_${name}") (param $x i32) (param $dy i32) (param $rows i32) (param $w i32)
        (param $cin i32) (param $cout i32) (param $out i32) (param $from i32) (param $to i32) (param $chunkRows i32)
    (local $xs i32) (local $ds i32) (local $r0 i32) (local $n i32) (local $j i32) (local $coBlocks i32) (local $ci i32) (local $co i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ds (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $coBlocks (i32.div_u (local.get $cout) (i32.const ${c})))
    (block $done (loop $chunks
      (br_if $done (i32.ge_u (local.get $r0) (local.get $rows)))
      (local.set $n (i32.sub (local.get $rows) (local.get $r0)))
      (if (i32.gt_u (local.get $n) (local.get $chunkRows)) (then (local.set $n (local.get $chunkRows))))
      (local.set $j (local.get $from))
      (block $blocksDone (loop $blocks
        (br_if $blocksDone (i32.ge_u (local.get $j) (local.get $to)))
        (local.set $ci (i32.mul (i32.div_u (local.get $j) (local.get $coBlocks)) (i32.const ${r})))
        (local.set $co (i32.mul (i32.rem_u (local.get $j) (local.get $coBlocks)) (i32.const ${c})))
        ;; one row of the whole chunk: every pixel of it is a valid centre-tap pixel
        (call $dw_run_${name}
          (i32.add (local.get $x) (i32.shl (i32.add (i32.mul (i32.mul (local.get $r0) (local.get $w)) (local.get $cin)) (local.get $ci)) (i32.const 2)))
          (i32.add (local.get $dy) (i32.shl (i32.add (i32.mul (i32.mul (local.get $r0) (local.get $w)) (local.get $cout)) (local.get $co)) (i32.const 2)))
          (i32.mul (local.get $n) (local.get $w)) (local.get $xs) (local.get $ds)
          (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $ci) (local.get $cout)) (local.get $co)) (i32.const 2)))
          (i32.const 0))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $blocks)))
      (local.set $r0 (i32.add (local.get $r0) (local.get $n)))
      (br $chunks))))
`;
}

/** Output-channel blocks of the convolution kernels: exports `conv3x3_${c}` and `conv1x1_${c}` each. */
export const CONVOLUTION_BLOCKS = [8, 4] as const;

/**
 * 3×3 'same' and 1×1 stride-1 convolutions of NHWC tensors for blocks of c output channels: p
 * pixels of one row at a time (4 in a row's interior, 1 at its edges), the p·c/4 accumulators in
 * registers over every tap and input channel, started from the bias.
 */
function convolutionKernels(c: number): string {
  const vecs = [...Array(c / 4).keys()];
  const pixelKernel = (p: number) => {
    const px = [...Array(p).keys()];
    const acc = (i: number, v: number) => `$a${i}${v}`;
    const xAt = (i: number) => (i === 0 ? '(local.get $xp)' : `(i32.add (local.get $xp) (local.get $xs${i}))`);
    return String.raw`
  ;; out[i, co..co+${c}] = bias + sum over the taps (kh, kw) in [kh0, kh1) × [kw0, kw1) and the input
  ;; channels of x[i + tap] · w[tap, ci, co..co+${c}], for the ${p} pixel(s) i of a row starting at x, the
  ;; input element of pixel 0 under tap (0, 0) (xs bytes a pixel, rowBytes a row; ws bytes a filter row).
  (func $conv_px_${p}x${c} (param $x i32) (param $w i32) (param $cin i32) (param $xs i32) (param $rowBytes i32) (param $ws i32)
        (param $kh0 i32) (param $kh1 i32) (param $kw0 i32) (param $kw1 i32) (param $bias i32) (param $out i32) (param $os i32)
    (local $kh i32) (local $kw i32) (local $xp i32) (local $wp i32) (local $end i32) (local $s v128)
    (local $xs1 i32) (local $xs2 i32) (local $xs3 i32) ${vecs.map((v) => `(local $w${v} v128)`).join(' ')}
    ${px.map((i) => vecs.map((v) => `(local ${acc(i, v)} v128)`).join(' ')).join(' ')}
    (local.set $xs1 (local.get $xs))
    (local.set $xs2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $xs3 (i32.add (local.get $xs2) (local.get $xs)))
${vecs.map((v) => `    (local.set $w${v} (v128.load offset=${16 * v} (local.get $bias)))`).join('\n')}
${px.map((i) => vecs.map((v) => `    (local.set ${acc(i, v)} (local.get $w${v}))`).join('\n')).join('\n')}
    (local.set $kh (local.get $kh0))
    (block $khDone (loop $khLoop
      (br_if $khDone (i32.ge_u (local.get $kh) (local.get $kh1)))
      (local.set $kw (local.get $kw0))
      (block $kwDone (loop $kwLoop
        (br_if $kwDone (i32.ge_u (local.get $kw) (local.get $kw1)))
        (local.set $xp (i32.add (local.get $x) (i32.add (i32.mul (local.get $kh) (local.get $rowBytes)) (i32.mul (local.get $kw) (local.get $xs)))))
        (local.set $wp (i32.add (local.get $w) (i32.mul (i32.mul (i32.add (i32.mul (local.get $kh) (i32.const 3)) (local.get $kw)) (local.get $cin)) (local.get $ws))))
        (local.set $end (i32.add (local.get $xp) (i32.shl (local.get $cin) (i32.const 2))))
        (loop $ci
${vecs.map((v) => `          (local.set $w${v} (v128.load offset=${16 * v} (local.get $wp)))`).join('\n')}
${px.map((i) => [`          (local.set $s (v128.load32_splat ${xAt(i)}))`,
    ...vecs.map((v) => `          (local.set ${acc(i, v)} (f32x4.add (local.get ${acc(i, v)}) (f32x4.mul (local.get $s) (local.get $w${v}))))`)].join('\n')).join('\n')}
          (local.set $xp (i32.add (local.get $xp) (i32.const 4)))
          (local.set $wp (i32.add (local.get $wp) (local.get $ws)))
          (br_if $ci (i32.lt_u (local.get $xp) (local.get $end))))
        (local.set $kw (i32.add (local.get $kw) (i32.const 1)))
        (br $kwLoop)))
      (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
      (br $khLoop)))
${px.map((i) => [...(i > 0 ? ['    (local.set $out (i32.add (local.get $out) (local.get $os)))'] : []),
    ...vecs.map((v) => `    (v128.store offset=${16 * v} (local.get $out) (local.get ${acc(i, v)}))`)].join('\n')).join('\n')})
`;
  };
  return String.raw`${pixelKernel(4)}${pixelKernel(1)}
  ;; Output rows [r0, r1) (row r = b·h + oh) of a 3×3 'same' stride-1 convolution, x [rows, w, cin],
  ;; filter [3, 3, cin, cout], bias [cout], out [rows, w, cout], cout a multiple of ${c}. Taps outside
  ;; the image are skipped (zero padding).
  (func (export "conv3x3_${c}") (param $x i32) (param $w i32) (param $bias i32) (param $out i32) (param $h i32) (param $width i32)
        (param $cin i32) (param $cout i32) (param $r0 i32) (param $r1 i32)
    (local $xs i32) (local $ws i32) (local $rowBytes i32) (local $r i32) (local $oh i32) (local $kh0 i32) (local $kh1 i32)
    (local $xrow i32) (local $orow i32) (local $co i32) (local $col i32) (local $wc i32) (local $bc i32) (local $oc i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ws (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $width) (local.get $xs)))
    (local.set $r (local.get $r0))
    (block $rowsDone (loop $rows
      (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $r1)))
      (local.set $oh (i32.rem_u (local.get $r) (local.get $h)))
      (local.set $kh0 (i32.eqz (local.get $oh)))
      (local.set $kh1 (i32.sub (i32.const 3) (i32.eq (local.get $oh) (i32.sub (local.get $h) (i32.const 1)))))
      ;; pixel (r, 0) under tap (0, 0): x[r - 1, -1] (never read itself)
      (local.set $xrow (i32.add (local.get $x) (i32.mul (i32.sub (i32.mul (i32.sub (local.get $r) (i32.const 1)) (local.get $width)) (i32.const 1)) (local.get $xs))))
      (local.set $orow (i32.add (local.get $out) (i32.mul (i32.mul (local.get $r) (local.get $width)) (local.get $ws))))
      (local.set $co (i32.const 0))
      (block $coDone (loop $cos
        (br_if $coDone (i32.ge_u (local.get $co) (local.get $cout)))
        (local.set $wc (i32.add (local.get $w) (i32.shl (local.get $co) (i32.const 2))))
        (local.set $bc (i32.add (local.get $bias) (i32.shl (local.get $co) (i32.const 2))))
        (local.set $oc (i32.add (local.get $orow) (i32.shl (local.get $co) (i32.const 2))))
        ;; column 0 has no left neighbour (nor a right one when the row is one pixel)
        (call $conv_px_1x${c} (local.get $xrow) (local.get $wc) (local.get $cin) (local.get $xs) (local.get $rowBytes) (local.get $ws)
          (local.get $kh0) (local.get $kh1) (i32.const 1) (i32.sub (i32.const 3) (i32.eq (local.get $width) (i32.const 1)))
          (local.get $bc) (local.get $oc) (local.get $ws))
        (local.set $col (i32.const 1))
        (block $quadsDone (loop $quads
          (br_if $quadsDone (i32.gt_s (i32.add (local.get $col) (i32.const 4)) (i32.sub (local.get $width) (i32.const 1))))
          (call $conv_px_4x${c} (i32.add (local.get $xrow) (i32.mul (local.get $col) (local.get $xs))) (local.get $wc) (local.get $cin)
            (local.get $xs) (local.get $rowBytes) (local.get $ws) (local.get $kh0) (local.get $kh1) (i32.const 0) (i32.const 3)
            (local.get $bc) (i32.add (local.get $oc) (i32.mul (local.get $col) (local.get $ws))) (local.get $ws))
          (local.set $col (i32.add (local.get $col) (i32.const 4)))
          (br $quads)))
        (block $onesDone (loop $ones
          (br_if $onesDone (i32.ge_s (local.get $col) (i32.sub (local.get $width) (i32.const 1))))
          (call $conv_px_1x${c} (i32.add (local.get $xrow) (i32.mul (local.get $col) (local.get $xs))) (local.get $wc) (local.get $cin)
            (local.get $xs) (local.get $rowBytes) (local.get $ws) (local.get $kh0) (local.get $kh1) (i32.const 0) (i32.const 3)
            (local.get $bc) (i32.add (local.get $oc) (i32.mul (local.get $col) (local.get $ws))) (local.get $ws))
          (local.set $col (i32.add (local.get $col) (i32.const 1)))
          (br $ones)))
        ;; the last column has no right neighbour
        (if (i32.gt_u (local.get $width) (i32.const 1)) (then
          (call $conv_px_1x${c} (i32.add (local.get $xrow) (i32.mul (local.get $col) (local.get $xs))) (local.get $wc) (local.get $cin)
            (local.get $xs) (local.get $rowBytes) (local.get $ws) (local.get $kh0) (local.get $kh1) (i32.const 0) (i32.const 2)
            (local.get $bc) (i32.add (local.get $oc) (i32.mul (local.get $col) (local.get $ws))) (local.get $ws))))
        (local.set $co (i32.add (local.get $co) (i32.const ${c})))
        (br $cos)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rows))))

  ;; Output pixels [p0, p1) of a 1×1 convolution, x [pixels, cin], filter [cin, cout], bias [cout],
  ;; out [pixels, cout]: the 3×3 pixel kernels with the centre tap alone.
  (func (export "conv1x1_${c}") (param $x i32) (param $w i32) (param $bias i32) (param $out i32) (param $cin i32) (param $cout i32)
        (param $p0 i32) (param $p1 i32)
    (local $xs i32) (local $ws i32) (local $p i32) (local $co i32) (local $wc i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ws (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $co (i32.const 0))
    (block $coDone (loop $cos
      (br_if $coDone (i32.ge_u (local.get $co) (local.get $cout)))
      ;; the pixel kernels read tap (1, 1): the filter 4·cin rows on from w, and the pixel one pixel on
      ;; from its origin (rows 0 bytes apart): both are handed over shifted back by that much
      (local.set $wc (i32.sub (i32.add (local.get $w) (i32.shl (local.get $co) (i32.const 2)))
        (i32.mul (i32.shl (local.get $cin) (i32.const 2)) (local.get $ws))))
      (local.set $p (local.get $p0))
      (block $quadsDone (loop $quads
        (br_if $quadsDone (i32.gt_u (i32.add (local.get $p) (i32.const 4)) (local.get $p1)))
        (call $conv_px_4x${c} (i32.add (local.get $x) (i32.mul (i32.sub (local.get $p) (i32.const 1)) (local.get $xs)))
          (local.get $wc) (local.get $cin) (local.get $xs) (i32.const 0) (local.get $ws) (i32.const 1) (i32.const 2) (i32.const 1) (i32.const 2)
          (i32.add (local.get $bias) (i32.shl (local.get $co) (i32.const 2)))
          (i32.add (local.get $out) (i32.add (i32.mul (local.get $p) (local.get $ws)) (i32.shl (local.get $co) (i32.const 2)))) (local.get $ws))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $quads)))
      (block $onesDone (loop $ones
        (br_if $onesDone (i32.ge_u (local.get $p) (local.get $p1)))
        (call $conv_px_1x${c} (i32.add (local.get $x) (i32.mul (i32.sub (local.get $p) (i32.const 1)) (local.get $xs)))
          (local.get $wc) (local.get $cin) (local.get $xs) (i32.const 0) (local.get $ws) (i32.const 1) (i32.const 2) (i32.const 1) (i32.const 2)
          (i32.add (local.get $bias) (i32.shl (local.get $co) (i32.const 2)))
          (i32.add (local.get $out) (i32.add (i32.mul (local.get $p) (local.get $ws)) (i32.shl (local.get $co) (i32.const 2)))) (local.get $ws))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $ones)))
      (local.set $co (i32.add (local.get $co) (i32.const ${c})))
      (br $cos))))
`;
}

/** The exports the helper thread (wasm-simd-helper-node.ts) may run. */
export const HELPER_KERNELS = [
  ...FILTER_GRADIENT_BLOCKS.map(([r, c]) => `dw_3x3_${r}x${c}` as const),
  ...FILTER_GRADIENT_BLOCKS.map(([r, c]) => `dw_1x1_${r}x${c}` as const),
  ...CONVOLUTION_BLOCKS.map((c) => `conv3x3_${c}` as const),
  ...CONVOLUTION_BLOCKS.map((c) => `conv1x1_${c}` as const),
  ...CONVOLUTION_BLOCKS.map((c) => `wino3x3_${c}` as const),
  ...WINOGRAD_GRADIENT_BLOCKS.map(([r, c]) => `wino_dw_${r}x${c}` as const),
  'maxpool2x2_grad',
  'sum_rows_blocks', 'sum_sq_centered_blocks', 'grad_sums_blocks', 'affine_leaky_rows', 'grad_input_rows',
  'mul_broadcast',
] as const;
export type HelperKernel = (typeof HELPER_KERNELS)[number];

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
  (func $sum_rows (export "sum_rows") (param $x i32) (param $rows i32) (param $c i32) (param $acc i32)
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
  (func $sum_sq_centered (export "sum_sq_centered") (param $x i32) (param $rows i32) (param $c i32) (param $mean i32) (param $acc i32)
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
  (func $affine_leaky (export "affine_leaky") (param $x i32) (param $out i32) (param $rows i32) (param $c i32)
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
  (func $grad_sums (export "grad_sums") (param $dy i32) (param $y i32) (param $x i32) (param $rows i32) (param $c i32)
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
  (func $grad_input (export "grad_input") (param $dy i32) (param $y i32) (param $x i32) (param $out i32) (param $rows i32) (param $c i32)
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
  ;; One pass over all pixels; dw_3x3 below runs the whole gradient chunk by chunk instead.
  (func (export "dw_tap_4x8") (param $x i32) (param $dy i32) (param $pixels i32) (param $cin i32) (param $cout i32)
        (param $out i32)
    (call $dw_run_4x8 (local.get $x) (local.get $dy) (local.get $pixels) (i32.shl (local.get $cin) (i32.const 2))
      (i32.shl (local.get $cout) (i32.const 2)) (local.get $out) (i32.const 1)))

${FILTER_GRADIENT_BLOCKS.map(([r, c]) => filterGradientKernels(r, c)).join('\n')}
${CONVOLUTION_BLOCKS.map((c) => convolutionKernels(c)).join('\n')}
${winogradKernels(CONVOLUTION_BLOCKS, WINOGRAD_GRADIENT_BLOCKS)}
;; The gradient of 2×2, stride-2 max pooling without padding, NHWC, c a multiple of 4, for output
  ;; rows [r0, r1) (r = b·oh_count + oh): each window's four dx values are dy where that element
  ;; is the window's first maximum (scan order (0,0), (0,1), (1,0), (1,1), a later one winning only
  ;; when strictly greater, so NaN or ties keep the earlier) and 0 elsewhere. Input rows and columns
  ;; past 2·oh_count and 2·ow_count are not written.
  (func (export "maxpool2x2_grad") (param $x i32) (param $dy i32) (param $dx i32) (param $h i32) (param $w i32) (param $c i32)
        (param $oh i32) (param $ow i32) (param $r0 i32) (param $r1 i32)
    (local $rowBytes i32) (local $cb i32) (local $r i32) (local $in i32) (local $o i32) (local $q i32) (local $k i32) (local $d i32)
    (local $a v128) (local $b v128) (local $cc v128) (local $dd v128) (local $m v128) (local $g v128)
    (local $gB v128) (local $gC v128) (local $gD v128) (local $dv v128)
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $w) (local.get $cb)))
    (local.set $r (local.get $r0))
    (block $rowsDone (loop $rows
      (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $r1)))
      ;; input row 2·oh of image b = (r / oh)·h + 2·(r % oh)
      (local.set $in (i32.mul (i32.add (i32.mul (i32.div_u (local.get $r) (local.get $oh)) (local.get $h))
        (i32.shl (i32.rem_u (local.get $r) (local.get $oh)) (i32.const 1))) (local.get $rowBytes)))
      (local.set $o (i32.mul (i32.mul (local.get $r) (local.get $ow)) (local.get $cb)))
      (local.set $q (i32.const 0))
      (block $colsDone (loop $cols
        (br_if $colsDone (i32.ge_u (local.get $q) (local.get $ow)))
        (local.set $k (i32.const 0))
        (loop $chans
          (local.set $d (i32.add (local.get $in) (local.get $k)))
          (local.set $a (v128.load (i32.add (local.get $x) (local.get $d))))
          (local.set $b (v128.load (i32.add (local.get $x) (i32.add (local.get $d) (local.get $cb)))))
          (local.set $cc (v128.load (i32.add (local.get $x) (i32.add (local.get $d) (local.get $rowBytes)))))
          (local.set $dd (v128.load (i32.add (local.get $x) (i32.add (local.get $d) (i32.add (local.get $rowBytes) (local.get $cb))))))
          (local.set $gB (f32x4.gt (local.get $b) (local.get $a)))
          (local.set $m (v128.bitselect (local.get $b) (local.get $a) (local.get $gB)))
          (local.set $gC (f32x4.gt (local.get $cc) (local.get $m)))
          (local.set $m (v128.bitselect (local.get $cc) (local.get $m) (local.get $gC)))
          (local.set $gD (f32x4.gt (local.get $dd) (local.get $m)))
          (local.set $dv (v128.load (i32.add (local.get $dy) (i32.add (local.get $o) (local.get $k)))))
          ;; winners: d if gD; c if gC and not gD; b if gB and neither; a if none
          (local.set $g (v128.or (local.get $gC) (local.get $gD)))
          (v128.store (i32.add (local.get $dx) (i32.add (local.get $d) (i32.add (local.get $rowBytes) (local.get $cb))))
            (v128.and (local.get $dv) (local.get $gD)))
          (v128.store (i32.add (local.get $dx) (i32.add (local.get $d) (local.get $rowBytes)))
            (v128.and (local.get $dv) (v128.andnot (local.get $gC) (local.get $gD))))
          (v128.store (i32.add (local.get $dx) (i32.add (local.get $d) (local.get $cb)))
            (v128.and (local.get $dv) (v128.andnot (local.get $gB) (local.get $g))))
          (v128.store (i32.add (local.get $dx) (local.get $d))
            (v128.andnot (local.get $dv) (v128.or (local.get $gB) (local.get $g))))
          (local.set $k (i32.add (local.get $k) (i32.const 16)))
          (br_if $chans (i32.lt_u (local.get $k) (local.get $cb))))
        (local.set $in (i32.add (local.get $in) (i32.shl (local.get $cb) (i32.const 1))))
        (local.set $o (i32.add (local.get $o) (local.get $cb)))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $cols)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rows))))

;; The BatchNorm passes in parts, for two threads (batchnorm-kernels.ts): the sums per block of
  ;; blockRows rows, blocks [b0, b1), each block's sums into partials + b·c floats; the element-wise
  ;; passes over rows [r0, r1). The LeakyReLU slope comes as the bits of its float32.
${[
  ['sum_rows', '(param $x i32) (param $rows i32) (param $c i32) (param $blockRows i32) (param $partials i32)',
    '(i32.add (local.get $x) (local.get $skip)) (local.get $n) (local.get $c) (local.get $part)'],
  ['sum_sq_centered', '(param $x i32) (param $rows i32) (param $c i32) (param $blockRows i32) (param $mean i32) (param $partials i32)',
    '(i32.add (local.get $x) (local.get $skip)) (local.get $n) (local.get $c) (local.get $mean) (local.get $part)'],
  ['grad_sums', '(param $dy i32) (param $y i32) (param $x i32) (param $rows i32) (param $c i32) (param $blockRows i32) (param $slope i32) (param $mean i32) (param $rstd i32) (param $partials i32) (param $partials2 i32)',
    '(i32.add (local.get $dy) (local.get $skip)) (i32.add (local.get $y) (local.get $skip)) (i32.add (local.get $x) (local.get $skip)) (local.get $n) (local.get $c) (f32.reinterpret_i32 (local.get $slope)) (local.get $mean) (local.get $rstd) (local.get $part) (i32.add (local.get $partials2) (i32.sub (local.get $part) (local.get $partials)))'],
].map(([name, params, args]) => String.raw`
  (func (export "${name}_blocks") ${params} (param $b0 i32) (param $b1 i32)
    (local $b i32) (local $n i32) (local $skip i32) (local $part i32)
    (local.set $b (local.get $b0))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $b) (local.get $b1)))
      (local.set $n (i32.sub (local.get $rows) (i32.mul (local.get $b) (local.get $blockRows))))
      (if (i32.gt_u (local.get $n) (local.get $blockRows)) (then (local.set $n (local.get $blockRows))))
      (local.set $skip (i32.shl (i32.mul (i32.mul (local.get $b) (local.get $blockRows)) (local.get $c)) (i32.const 2)))
      (local.set $part (i32.add (local.get $partials) (i32.shl (i32.mul (local.get $b) (local.get $c)) (i32.const 2))))
      (call $${name} ${args})
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $blocks))))`).join('\n')}

  (func (export "affine_leaky_rows") (param $x i32) (param $out i32) (param $c i32) (param $scale i32) (param $shift i32)
        (param $slope i32) (param $r0 i32) (param $r1 i32)
    (local $skip i32)
    (local.set $skip (i32.shl (i32.mul (local.get $r0) (local.get $c)) (i32.const 2)))
    (call $affine_leaky (i32.add (local.get $x) (local.get $skip)) (i32.add (local.get $out) (local.get $skip))
      (i32.sub (local.get $r1) (local.get $r0)) (local.get $c) (local.get $scale) (local.get $shift) (f32.reinterpret_i32 (local.get $slope))))

  (func (export "grad_input_rows") (param $dy i32) (param $y i32) (param $x i32) (param $out i32) (param $c i32)
        (param $slope i32) (param $A i32) (param $B i32) (param $C i32) (param $r0 i32) (param $r1 i32)
    (local $skip i32)
    (local.set $skip (i32.shl (i32.mul (local.get $r0) (local.get $c)) (i32.const 2)))
    (call $grad_input (i32.add (local.get $dy) (local.get $skip)) (i32.add (local.get $y) (local.get $skip))
      (i32.add (local.get $x) (local.get $skip)) (i32.add (local.get $out) (local.get $skip))
      (i32.sub (local.get $r1) (local.get $r0)) (local.get $c) (f32.reinterpret_i32 (local.get $slope))
      (local.get $A) (local.get $B) (local.get $C)))

;; out[r, k] = big[r, k] · small[r] (rowwise = 1: a [..., 1] factor) or · small[k] (rowwise = 0: a
  ;; [C] factor) for rows [r0, r1) of [rows, c], c a multiple of 4.
  (func (export "mul_broadcast") (param $big i32) (param $small i32) (param $out i32) (param $c i32) (param $rowwise i32)
        (param $r0 i32) (param $r1 i32)
    (local $bytes i32) (local $p i32) (local $end i32) (local $k i32) (local $s v128) (local $sp i32)
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (local.set $p (i32.mul (local.get $r0) (local.get $bytes)))
    (local.set $end (i32.mul (local.get $r1) (local.get $bytes)))
    (local.set $sp (i32.add (local.get $small) (i32.shl (local.get $r0) (i32.const 2))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $s (v128.load32_splat (local.get $sp)))
      (local.set $k (i32.const 0))
      (loop $col
        (if (i32.eqz (local.get $rowwise)) (then (local.set $s (v128.load (i32.add (local.get $small) (local.get $k))))))
        (v128.store (i32.add (local.get $out) (i32.add (local.get $p) (local.get $k)))
          (f32x4.mul (v128.load (i32.add (local.get $big) (i32.add (local.get $p) (local.get $k)))) (local.get $s)))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br_if $col (i32.lt_u (local.get $k) (local.get $bytes))))
      (local.set $p (i32.add (local.get $p) (local.get $bytes)))
      (local.set $sp (i32.add (local.get $sp) (i32.const 4)))
      (br $row))))

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
