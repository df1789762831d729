/**
 * Winograd F(2×2, 3×3) for the 3×3 'same' stride-1 convolutions (Lavin & Gray 2016): each 2×2
 * block of output pixels ("tile") is computed from the 4×4 block of input around it as
 * Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, summed over input channels. The 16 element-wise products per tile
 * and channel pair replace the direct convolution's 36 multiply-adds; what the sums cost moves to
 * 16 matrix products (one per element ξ of the 4×4 transformed tile) of tiles × cin by cin × cout,
 * which run on the direct kernels' register tiles (conv_px_4xC of wasm-simd-wat.ts).
 *
 * Tiles are numbered b·tilesH·tilesW + ty·tilesW + tx and taken in groups that fit in cache: a
 * thread transforms a group's inputs into its scratch, multiplies, and transforms the products
 * back into the output while they are still in cache (the group size is chosen for that).
 */

/** Blocks of input × output channels of the Winograd filter gradient: exports `wino_dw_${r}x${c}`. */
export const WINOGRAD_GRADIENT_BLOCKS = [[4, 8], [4, 4]] as const;

/** Bᵀ applied to four rows (or columns) of the input tile. */
const inputRows = (d: readonly string[]) => [
  `(f32x4.sub ${d[0]} ${d[2]})`,
  `(f32x4.add ${d[1]} ${d[2]})`,
  `(f32x4.sub ${d[2]} ${d[1]})`,
  `(f32x4.sub ${d[1]} ${d[3]})`,
];

const half = '(v128.const f32x4 0.5 0.5 0.5 0.5)';
/** G applied to three rows (or columns) of the filter. */
const filterRows = (g: readonly string[]) => [
  g[0],
  `(f32x4.mul ${half} (f32x4.add (f32x4.add ${g[0]} ${g[1]}) ${g[2]}))`,
  `(f32x4.mul ${half} (f32x4.add (f32x4.sub ${g[0]} ${g[1]}) ${g[2]}))`,
  g[2],
];

/** Aᵀ applied to four rows (or columns) of a product tile. */
const outputRows = (m: readonly string[]) => [
  `(f32x4.add (f32x4.add ${m[0]} ${m[1]}) ${m[2]})`,
  `(f32x4.sub (f32x4.sub ${m[1]} ${m[2]}) ${m[3]})`,
];

/** A applied to two rows (or columns) of an output-gradient block. */
const gradientRows = (q: readonly string[]) => [
  q[0],
  `(f32x4.add ${q[0]} ${q[1]})`,
  `(f32x4.sub ${q[0]} ${q[1]})`,
  `(f32x4.neg ${q[1]})`,
];

/** Gᵀ applied to four rows (or columns) of a summed product gradient. */
const filterGradientRows = (u: readonly string[]) => [
  `(f32x4.add ${u[0]} (f32x4.mul ${half} (f32x4.add ${u[1]} ${u[2]})))`,
  `(f32x4.mul ${half} (f32x4.sub ${u[1]} ${u[2]}))`,
  `(f32x4.add (f32x4.mul ${half} (f32x4.add ${u[1]} ${u[2]})) ${u[3]})`,
];

const get = (name: string) => `(local.get ${name})`;
const range = (n: number) => [...Array(n).keys()];

/**
 * The filter transform and the tile-group kernels for output blocks of c channels (c in
 * `blocks`); the filter gradient's kernels for blocks of r input × c output channels (`gradientBlocks`).
 */
export function winogradKernels(blocks: readonly number[], gradientBlocks: readonly (readonly [number, number])[]): string {
  const g = (i: number, j: number) => `$g${i}${j}`;
  const t = (i: number, j: number) => `$t${i}${j}`;
  const d = (i: number, j: number) => `$d${i}${j}`;
  const e = (i: number, j: number) => `$e${i}${j}`;
  /**
   * The head of $wino_output's and $wino_dy's loop over the tiles of a group: for tile i, the
   * output-side block (2×2 pixels of `tensor` [images·h, w, cout]) at row0 and row1, whether its
   * second row and column lie in the image (down, right), and the tile's entry in the group's
   * planes `planes` [16, n, cout] at mp, ms bytes between planes.
   */
  const outputSideTiles = (tensor: string, planes: string) => String.raw`
    (local.set $tilesW (i32.shr_u (i32.add (local.get $w) (i32.const 1)) (i32.const 1)))
    (local.set $perImage (i32.mul (i32.shr_u (i32.add (local.get $h) (i32.const 1)) (i32.const 1)) (local.get $tilesW)))
    (local.set $os (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $w) (local.get $os)))
    (local.set $ms (i32.mul (local.get $n) (local.get $os)))
    (block $done (loop $tiles
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $tile (i32.add (local.get $tile0) (local.get $i)))
      (local.set $y0 (i32.shl (i32.div_u (i32.rem_u (local.get $tile) (local.get $perImage)) (local.get $tilesW)) (i32.const 1)))
      (local.set $x0 (i32.shl (i32.rem_u (local.get $tile) (local.get $tilesW)) (i32.const 1)))
      (local.set $down (i32.lt_u (i32.add (local.get $y0) (i32.const 1)) (local.get $h)))
      (local.set $right (i32.lt_u (i32.add (local.get $x0) (i32.const 1)) (local.get $w)))
      (local.set $base (i32.add (local.get ${tensor}) (i32.add
        (i32.mul (i32.add (i32.mul (i32.div_u (local.get $tile) (local.get $perImage)) (local.get $h)) (local.get $y0)) (local.get $rowBytes))
        (i32.mul (local.get $x0) (local.get $os)))))
      (local.set $mp (i32.add (local.get ${planes}) (i32.mul (local.get $i) (local.get $os))))
      (local.set $row0 (local.get $base))
      (local.set $row1 (i32.add (local.get $base) (local.get $rowBytes)))`;
  /** $wino_input's loop over the input channels of one tile, loads `checked` against rowOk and colOk. */
  const channelLoop = (checked: boolean) => {
    const at = (r: number, c: number) => `(i32.add (local.get $p${r}) ${c === 0 ? '(local.get $ci)' : `(i32.add (local.get $ci) (local.get $c${c}))`})`;
    const load = (r: number, c: number) => (checked
      ? `(if (result v128) (i32.and (i32.ne (i32.and (local.get $rowOk) (i32.const ${1 << r})) (i32.const 0)) (i32.ne (i32.and (local.get $colOk) (i32.const ${1 << c})) (i32.const 0)))
          (then (v128.load ${at(r, c)})) (else (v128.const i32x4 0 0 0 0)))`
      : `(v128.load ${at(r, c)})`);
    return String.raw`
      (local.set $ci (i32.const 0))
      (block $chansDone (loop $chans
        (br_if $chansDone (i32.ge_u (local.get $ci) (local.get $xs)))
${range(4).map((r) => range(4).map((c) => `        (local.set ${d(r, c)} ${load(r, c)})`).join('\n')).join('\n')}
        ;; e = Bᵀ d, then v = e B
${range(4).map((c) => inputRows(range(4).map((r) => get(d(r, c)))).map((v, r) => `        (local.set ${e(r, c)} ${v})`).join('\n')).join('\n')}
        (local.set $q (i32.add (local.get $vp) (local.get $ci)))
        ;; planes ξ = 0, 1, …, 15 in turn, vs bytes apart
${range(4).map((r) => inputRows(range(4).map((c) => get(e(r, c)))).map((v) =>
    `        (v128.store (local.get $q) ${v})\n        (local.set $q (i32.add (local.get $q) (local.get $vs)))`).join('\n')).join('\n')}
        (local.set $ci (i32.add (local.get $ci) (i32.const 16)))
        (br $chans)))`;
  };
  return String.raw`
  ;; The transformed filter u[ξ, ci, co] = (G g Gᵀ)[ξ] of a filter w [3, 3, cin, cout], for the
  ;; groups [k0, k1) of 4 consecutive (ci, co) elements (cout a multiple of 4); ξ = 4·row + column.
  (func (export "wino_filter") (param $w i32) (param $u i32) (param $cin i32) (param $cout i32) (param $k0 i32) (param $k1 i32)
    (local $plane i32) (local $p i32) (local $q i32) (local $k i32)
    ${range(3).map((i) => range(3).map((j) => `(local ${g(i, j)} v128)`).join(' ')).join(' ')}
    ${range(4).map((i) => range(3).map((j) => `(local ${t(i, j)} v128)`).join(' ')).join(' ')}
    (local.set $plane (i32.shl (i32.mul (local.get $cin) (local.get $cout)) (i32.const 2)))
    (local.set $k (local.get $k0))
    (block $done (loop $groups
      (br_if $done (i32.ge_u (local.get $k) (local.get $k1)))
      (local.set $p (i32.add (local.get $w) (i32.shl (local.get $k) (i32.const 4))))
${range(9).map((tap) => `      (local.set ${g(Math.floor(tap / 3), tap % 3)} (v128.load (i32.add (local.get $p) (i32.mul (local.get $plane) (i32.const ${tap})))))`).join('\n')}
      ;; t = G g (4 × 3), then u = t Gᵀ (4 × 4)
${range(3).map((j) => filterRows(range(3).map((i) => get(g(i, j)))).map((v, i) => `      (local.set ${t(i, j)} ${v})`).join('\n')).join('\n')}
      (local.set $q (i32.add (local.get $u) (i32.shl (local.get $k) (i32.const 4))))
${range(4).map((i) => filterRows(range(3).map((j) => get(t(i, j)))).map((v, j) =>
    `      (v128.store (i32.add (local.get $q) (i32.mul (local.get $plane) (i32.const ${4 * i + j}))) ${v})`).join('\n')).join('\n')}
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $groups))))

  ;; v[ξ, i, ci..ci+4] = (Bᵀ d B)[ξ] for tile i of a group of n, d the 4×4 input block from row
  ;; 2·ty - 1 and column 2·tx - 1 of image b (zero outside the image), every input channel.
  (func $wino_input (param $x i32) (param $v i32) (param $h i32) (param $w i32) (param $cin i32)
        (param $tile0 i32) (param $n i32)
    (local $i i32) (local $tile i32) (local $perImage i32) (local $tilesW i32) (local $y0 i32) (local $x0 i32)
    (local $base i32) (local $xs i32) (local $rowBytes i32) (local $vs i32) (local $vp i32) (local $ci i32)
    (local $rowOk i32) (local $colOk i32) (local $q i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $c1 i32) (local $c2 i32) (local $c3 i32)
    ${range(4).map((i) => range(4).map((j) => `(local ${d(i, j)} v128) (local ${e(i, j)} v128)`).join(' ')).join(' ')}
    (local.set $tilesW (i32.shr_u (i32.add (local.get $w) (i32.const 1)) (i32.const 1)))
    (local.set $perImage (i32.mul (i32.shr_u (i32.add (local.get $h) (i32.const 1)) (i32.const 1)) (local.get $tilesW)))
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $w) (local.get $xs)))
    ;; bytes between the planes ξ of the group's transformed input
    (local.set $vs (i32.mul (local.get $n) (local.get $xs)))
    (local.set $c1 (local.get $xs))
    (local.set $c2 (i32.shl (local.get $xs) (i32.const 1)))
    (local.set $c3 (i32.add (local.get $c2) (local.get $xs)))
    (block $done (loop $tiles
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $tile (i32.add (local.get $tile0) (local.get $i)))
      (local.set $y0 (i32.sub (i32.shl (i32.div_u (i32.rem_u (local.get $tile) (local.get $perImage)) (local.get $tilesW)) (i32.const 1)) (i32.const 1)))
      (local.set $x0 (i32.sub (i32.shl (i32.rem_u (local.get $tile) (local.get $tilesW)) (i32.const 1)) (i32.const 1)))
      ;; bit r (c) set: input row y0 + r (column x0 + c) lies in the image
      (local.set $rowOk (i32.const 0))
      (local.set $colOk (i32.const 0))
${range(4).map((r) => `      (if (i32.and (i32.ge_s (i32.add (local.get $y0) (i32.const ${r})) (i32.const 0)) (i32.lt_s (i32.add (local.get $y0) (i32.const ${r})) (local.get $h)))
        (then (local.set $rowOk (i32.or (local.get $rowOk) (i32.const ${1 << r})))))
      (if (i32.and (i32.ge_s (i32.add (local.get $x0) (i32.const ${r})) (i32.const 0)) (i32.lt_s (i32.add (local.get $x0) (i32.const ${r})) (local.get $w)))
        (then (local.set $colOk (i32.or (local.get $colOk) (i32.const ${1 << r})))))`).join('\n')}
      ;; x[b, y0, x0] (an address outside the image is computed but only read where it lies inside)
      (local.set $base (i32.add (local.get $x) (i32.add
        (i32.mul (i32.add (i32.mul (i32.div_u (local.get $tile) (local.get $perImage)) (local.get $h)) (local.get $y0)) (local.get $rowBytes))
        (i32.mul (local.get $x0) (local.get $xs)))))
      (local.set $vp (i32.add (local.get $v) (i32.mul (local.get $i) (local.get $xs))))
      (local.set $p0 (local.get $base))
      (local.set $p1 (i32.add (local.get $p0) (local.get $rowBytes)))
      (local.set $p2 (i32.add (local.get $p1) (local.get $rowBytes)))
      (local.set $p3 (i32.add (local.get $p2) (local.get $rowBytes)))
      ;; a tile inside the image on all sides reads without checks
      (if (i32.eq (i32.and (local.get $rowOk) (local.get $colOk)) (i32.const 15))
        (then ${channelLoop(false)})
        (else ${channelLoop(true)}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tiles))))

  ;; out[2×2 block of tile i, co..co+4] = bias + (Aᵀ m A) for tile i of a group of n, every output
  ;; channel; pixels past the image's last row or column (odd h or w) are not written.
  (func $wino_output (param $m i32) (param $bias i32) (param $out i32) (param $h i32) (param $w i32) (param $cout i32)
        (param $tile0 i32) (param $n i32)
    (local $i i32) (local $tile i32) (local $perImage i32) (local $tilesW i32) (local $y0 i32) (local $x0 i32)
    (local $base i32) (local $os i32) (local $rowBytes i32) (local $ms i32) (local $mp i32) (local $co i32)
    (local $right i32) (local $down i32) (local $b v128) (local $q i32) (local $row0 i32) (local $row1 i32)
    ${range(4).map((i) => range(4).map((j) => `(local ${d(i, j)} v128)`).join(' ')).join(' ')}
    ${range(2).map((i) => range(4).map((j) => `(local ${e(i, j)} v128)`).join(' ')).join(' ')}
${outputSideTiles('$out', '$m')}
      (local.set $co (i32.const 0))
      (block $chansDone (loop $chans
        (br_if $chansDone (i32.ge_u (local.get $co) (local.get $os)))
        (local.set $q (i32.add (local.get $mp) (local.get $co)))
${range(16).map((k) => `${k > 0 ? '        (local.set $q (i32.add (local.get $q) (local.get $ms)))\n' : ''}        (local.set ${d(Math.floor(k / 4), k % 4)} (v128.load (local.get $q)))`).join('\n')}
        (local.set $b (v128.load (i32.add (local.get $bias) (local.get $co))))
        ;; e = Aᵀ m (2 × 4), then the block = e A + bias
${range(4).map((c) => outputRows(range(4).map((r) => get(d(r, c)))).map((v, r) => `        (local.set ${e(r, c)} ${v})`).join('\n')).join('\n')}
${range(2).map((r) => outputRows(range(4).map((c) => get(e(r, c)))).map((v, c) => {
    const at = `(i32.add (local.get $row${r}) (local.get $co))`;
    const store = `(v128.store ${c === 0 ? at : `(i32.add ${at} (local.get $os))`} (f32x4.add ${v} (local.get $b)))`;
    const cond = [r === 1 ? '(local.get $down)' : '', c === 1 ? '(local.get $right)' : ''].filter(Boolean);
    if (cond.length === 0) return `        ${store}`;
    const test = cond.length === 2 ? `(i32.and ${cond[0]} ${cond[1]})` : cond[0];
    return `        (if ${test} (then ${store}))`;
  }).join('\n')).join('\n')}
        (local.set $co (i32.add (local.get $co) (i32.const 16)))
        (br $chans)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tiles))))
${blocks.map((c) => String.raw`
  ;; Groups [from, to) of tilesPerGroup tiles of a 3×3 'same' stride-1 convolution by Winograd
  ;; F(2×2, 3×3): x [images·h, w, cin], u the transformed filter [16, cin, cout] (wino_filter), bias
  ;; [cout], out [images·h, w, cout]; cin a multiple of 4, cout of ${c}. scratch holds this thread's
  ;; transformed input [16, tilesPerGroup, cin], products [16, tilesPerGroup, cout] and cout zeros.
  (func (export "wino3x3_${c}") (param $x i32) (param $u i32) (param $bias i32) (param $out i32) (param $h i32) (param $w i32)
        (param $cin i32) (param $cout i32) (param $tiles i32) (param $tilesPerGroup i32) (param $from i32) (param $to i32) (param $scratch i32)
    (local $group i32) (local $tile0 i32) (local $n i32) (local $m i32) (local $zeros i32) (local $xi i32) (local $co i32)
    (local $t i32) (local $xs i32) (local $ws i32) (local $vp i32) (local $up i32) (local $mp i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ws (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $m (i32.add (local.get $scratch) (i32.shl (i32.mul (local.get $tilesPerGroup) (local.get $xs)) (i32.const 4))))
    (local.set $zeros (i32.add (local.get $m) (i32.shl (i32.mul (local.get $tilesPerGroup) (local.get $ws)) (i32.const 4))))
    (call $zero (local.get $zeros) (local.get $ws))
    (local.set $group (local.get $from))
    (block $done (loop $groups
      (br_if $done (i32.ge_u (local.get $group) (local.get $to)))
      (local.set $tile0 (i32.mul (local.get $group) (local.get $tilesPerGroup)))
      (local.set $n (i32.sub (local.get $tiles) (local.get $tile0)))
      (if (i32.gt_u (local.get $n) (local.get $tilesPerGroup)) (then (local.set $n (local.get $tilesPerGroup))))
      (call $wino_input (local.get $x) (local.get $scratch) (local.get $h) (local.get $w) (local.get $cin) (local.get $tile0) (local.get $n))
      ;; m[ξ] = v[ξ] · u[ξ]: the pixel kernels with the centre tap alone (as conv1x1), tiles for pixels
      (local.set $xi (i32.const 0))
      (block $planesDone (loop $planes
        (br_if $planesDone (i32.ge_u (local.get $xi) (i32.const 16)))
        (local.set $vp (i32.add (local.get $scratch) (i32.mul (i32.mul (local.get $xi) (local.get $n)) (local.get $xs))))
        (local.set $mp (i32.add (local.get $m) (i32.mul (i32.mul (local.get $xi) (local.get $n)) (local.get $ws))))
        (local.set $co (i32.const 0))
        (block $coDone (loop $cos
          (br_if $coDone (i32.ge_u (local.get $co) (local.get $cout)))
          ;; u[ξ, 0, co] handed over 4·cin filter rows back, as the centre tap's
          (local.set $up (i32.sub (i32.add (local.get $u) (i32.add (i32.mul (i32.mul (local.get $xi) (local.get $cin)) (local.get $ws)) (i32.shl (local.get $co) (i32.const 2))))
            (i32.mul (i32.shl (local.get $cin) (i32.const 2)) (local.get $ws))))
          (local.set $t (i32.const 0))
          (block $quadsDone (loop $quads
            (br_if $quadsDone (i32.gt_u (i32.add (local.get $t) (i32.const 4)) (local.get $n)))
            (call $conv_px_4x${c} (i32.add (local.get $vp) (i32.mul (i32.sub (local.get $t) (i32.const 1)) (local.get $xs)))
              (local.get $up) (local.get $cin) (local.get $xs) (i32.const 0) (local.get $ws) (i32.const 1) (i32.const 2) (i32.const 1) (i32.const 2)
              (local.get $zeros) (i32.add (local.get $mp) (i32.add (i32.mul (local.get $t) (local.get $ws)) (i32.shl (local.get $co) (i32.const 2)))) (local.get $ws))
            (local.set $t (i32.add (local.get $t) (i32.const 4)))
            (br $quads)))
          (block $onesDone (loop $ones
            (br_if $onesDone (i32.ge_u (local.get $t) (local.get $n)))
            (call $conv_px_1x${c} (i32.add (local.get $vp) (i32.mul (i32.sub (local.get $t) (i32.const 1)) (local.get $xs)))
              (local.get $up) (local.get $cin) (local.get $xs) (i32.const 0) (local.get $ws) (i32.const 1) (i32.const 2) (i32.const 1) (i32.const 2)
              (local.get $zeros) (i32.add (local.get $mp) (i32.add (i32.mul (local.get $t) (local.get $ws)) (i32.shl (local.get $co) (i32.const 2)))) (local.get $ws))
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (br $ones)))
          (local.set $co (i32.add (local.get $co) (i32.const ${c})))
          (br $cos)))
        (local.set $xi (i32.add (local.get $xi) (i32.const 1)))
        (br $planes)))
      (call $wino_output (local.get $m) (local.get $bias) (local.get $out) (local.get $h) (local.get $w) (local.get $cout) (local.get $tile0) (local.get $n))
      (local.set $group (i32.add (local.get $group) (i32.const 1)))
      (br $groups))))`).join('\n')}

  ;; The filter gradient's side. The gradient of the 16 products of a tile is (A q Aᵀ), q the
  ;; tile's 2×2 block of dy; that of the transformed filter is its sum over tiles times the tile's
  ;; transformed input, and dW = Gᵀ (that sum) G.

  ;; dq[ξ, i, co..co+4] = (A q Aᵀ)[ξ] for tile i of a group of n, q the tile's 2×2 block of dy
  ;; (zero past the image's last row or column), every output channel.
  (func $wino_dy (param $dy i32) (param $dq i32) (param $h i32) (param $w i32) (param $cout i32) (param $tile0 i32) (param $n i32)
    (local $i i32) (local $tile i32) (local $perImage i32) (local $tilesW i32) (local $y0 i32) (local $x0 i32)
    (local $base i32) (local $os i32) (local $rowBytes i32) (local $ms i32) (local $mp i32) (local $co i32)
    (local $right i32) (local $down i32) (local $row0 i32) (local $row1 i32)
    ${range(2).map((i) => range(2).map((j) => `(local ${d(i, j)} v128)`).join(' ')).join(' ')}
    ${range(4).map((i) => range(2).map((j) => `(local ${e(i, j)} v128)`).join(' ')).join(' ')}
${outputSideTiles('$dy', '$dq')}
      (local.set $co (i32.const 0))
      (block $chansDone (loop $chans
        (br_if $chansDone (i32.ge_u (local.get $co) (local.get $os)))
${range(2).map((r) => range(2).map((c) => {
    const at = `(i32.add (local.get $row${r}) (local.get $co))`;
    const load = `(v128.load ${c === 0 ? at : `(i32.add ${at} (local.get $os))`})`;
    const cond = [r === 1 ? '(local.get $down)' : '', c === 1 ? '(local.get $right)' : ''].filter(Boolean);
    if (cond.length === 0) return `        (local.set ${d(r, c)} ${load})`;
    const test = cond.length === 2 ? `(i32.and ${cond[0]} ${cond[1]})` : cond[0];
    return `        (local.set ${d(r, c)} (if (result v128) ${test} (then ${load}) (else (v128.const i32x4 0 0 0 0))))`;
  }).join('\n')).join('\n')}
        ;; e = A q (4 × 2), then dq = e Aᵀ
${range(2).map((c) => gradientRows(range(2).map((r) => get(d(r, c)))).map((v, r) => `        (local.set ${e(r, c)} ${v})`).join('\n')).join('\n')}
${range(4).map((r) => gradientRows(range(2).map((c) => get(e(r, c)))).map((v, c) =>
    `        (v128.store (i32.add (i32.add (local.get $mp) (local.get $co)) (i32.mul (local.get $ms) (i32.const ${4 * r + c}))) ${v})`).join('\n')).join('\n')}
        (local.set $co (i32.add (local.get $co) (i32.const 16)))
        (br $chans)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tiles))))

  ;; dW [3, 3, cin, cout] = Gᵀ (s0 + s1) G for the groups [k0, k1) of 4 consecutive (ci, co)
  ;; elements, s0 and s1 [16, cin, cout] the two halves' sums (wino_dw_RxC).
  (func (export "wino_filter_grad") (param $s0 i32) (param $s1 i32) (param $out i32) (param $cin i32) (param $cout i32)
        (param $k0 i32) (param $k1 i32)
    (local $plane i32) (local $p i32) (local $q i32) (local $k i32) (local $off i32)
    ${range(4).map((i) => range(4).map((j) => `(local ${g(i, j)} v128)`).join(' ')).join(' ')}
    ${range(3).map((i) => range(4).map((j) => `(local ${t(i, j)} v128)`).join(' ')).join(' ')}
    (local.set $plane (i32.shl (i32.mul (local.get $cin) (local.get $cout)) (i32.const 2)))
    (local.set $k (local.get $k0))
    (block $done (loop $groups
      (br_if $done (i32.ge_u (local.get $k) (local.get $k1)))
      (local.set $off (i32.shl (local.get $k) (i32.const 4)))
${range(16).map((xi) => `      (local.set ${g(Math.floor(xi / 4), xi % 4)} (f32x4.add
        (v128.load (i32.add (i32.add (local.get $s0) (local.get $off)) (i32.mul (local.get $plane) (i32.const ${xi}))))
        (v128.load (i32.add (i32.add (local.get $s1) (local.get $off)) (i32.mul (local.get $plane) (i32.const ${xi}))))))`).join('\n')}
      ;; t = Gᵀ s (3 × 4), then dW = t G (3 × 3)
${range(4).map((j) => filterGradientRows(range(4).map((i) => get(g(i, j)))).map((v, i) => `      (local.set ${t(i, j)} ${v})`).join('\n')).join('\n')}
${range(3).map((i) => filterGradientRows(range(4).map((j) => get(t(i, j)))).map((v, j) =>
    `      (v128.store (i32.add (i32.add (local.get $out) (local.get $off)) (i32.mul (local.get $plane) (i32.const ${3 * i + j}))) ${v})`).join('\n')).join('\n')}
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $groups))))
${gradientBlocks.map(([r, c]) => String.raw`
  ;; Halves [from, to) (of 2) of the filter gradient of a 3×3 'same' stride-1 convolution by
  ;; Winograd F(2×2, 3×3): x [images·h, w, cin], dy [images·h, w, cout], cin a multiple of ${r} and
  ;; cout of ${c}. Half k sums the products' gradients over its groups of tiles (the first ⌈groups/2⌉
  ;; or the rest, each in tile order) into sums + k·16·cin·cout floats, [16, cin, cout]; an empty
  ;; half is zeroed. Which thread runs a half does not change its sums. scratch holds the thread's
  ;; transformed input [16, tilesPerGroup, cin] and dy [16, tilesPerGroup, cout].
  (func (export "wino_dw_${r}x${c}") (param $x i32) (param $dy i32) (param $sums i32) (param $h i32) (param $w i32)
        (param $cin i32) (param $cout i32) (param $tiles i32) (param $tilesPerGroup i32) (param $from i32) (param $to i32) (param $scratch i32)
    (local $half i32) (local $groups i32) (local $group i32) (local $end i32) (local $tile0 i32) (local $n i32) (local $dq i32)
    (local $xi i32) (local $ci i32) (local $co i32) (local $xs i32) (local $ds i32) (local $vp i32) (local $dp i32) (local $acc i32)
    (local $first i32)
    (local.set $xs (i32.shl (local.get $cin) (i32.const 2)))
    (local.set $ds (i32.shl (local.get $cout) (i32.const 2)))
    (local.set $dq (i32.add (local.get $scratch) (i32.shl (i32.mul (local.get $tilesPerGroup) (local.get $xs)) (i32.const 4))))
    (local.set $groups (i32.div_u (i32.sub (i32.add (local.get $tiles) (local.get $tilesPerGroup)) (i32.const 1)) (local.get $tilesPerGroup)))
    (local.set $half (local.get $from))
    (block $halvesDone (loop $halves
      (br_if $halvesDone (i32.ge_u (local.get $half) (local.get $to)))
      (local.set $acc (i32.add (local.get $sums) (i32.mul (local.get $half) (i32.shl (i32.mul (local.get $cin) (local.get $ds)) (i32.const 4)))))
      ;; this half's groups [group, end)
      (local.set $group (i32.mul (local.get $half) (i32.shr_u (i32.add (local.get $groups) (i32.const 1)) (i32.const 1))))
      (local.set $end (select (local.get $groups) (i32.shr_u (i32.add (local.get $groups) (i32.const 1)) (i32.const 1)) (local.get $half)))
      (if (i32.ge_u (local.get $group) (local.get $end)) (then
        (call $zero (local.get $acc) (i32.shl (i32.mul (local.get $cin) (local.get $ds)) (i32.const 4)))))
      (local.set $first (i32.const 1))
      (block $done (loop $groupsLoop
        (br_if $done (i32.ge_u (local.get $group) (local.get $end)))
        (local.set $tile0 (i32.mul (local.get $group) (local.get $tilesPerGroup)))
        (local.set $n (i32.sub (local.get $tiles) (local.get $tile0)))
        (if (i32.gt_u (local.get $n) (local.get $tilesPerGroup)) (then (local.set $n (local.get $tilesPerGroup))))
        (call $wino_input (local.get $x) (local.get $scratch) (local.get $h) (local.get $w) (local.get $cin) (local.get $tile0) (local.get $n))
        (call $wino_dy (local.get $dy) (local.get $dq) (local.get $h) (local.get $w) (local.get $cout) (local.get $tile0) (local.get $n))
        ;; acc[ξ, ci.., co..] (+)= sum over the group's tiles of v[ξ, tile, ci..]ᵀ · dq[ξ, tile, co..]
        (local.set $xi (i32.const 0))
        (block $planesDone (loop $planes
          (br_if $planesDone (i32.ge_u (local.get $xi) (i32.const 16)))
          (local.set $vp (i32.add (local.get $scratch) (i32.mul (i32.mul (local.get $xi) (local.get $n)) (local.get $xs))))
          (local.set $dp (i32.add (local.get $dq) (i32.mul (i32.mul (local.get $xi) (local.get $n)) (local.get $ds))))
          (local.set $ci (i32.const 0))
          (block $ciDone (loop $cis
            (br_if $ciDone (i32.ge_u (local.get $ci) (local.get $cin)))
            (local.set $co (i32.const 0))
            (block $coDone (loop $cos
              (br_if $coDone (i32.ge_u (local.get $co) (local.get $cout)))
              (call $dw_run_${r}x${c}
                (i32.add (local.get $vp) (i32.shl (local.get $ci) (i32.const 2)))
                (i32.add (local.get $dp) (i32.shl (local.get $co) (i32.const 2)))
                (local.get $n) (local.get $xs) (local.get $ds)
                (i32.add (local.get $acc) (i32.shl (i32.add (i32.mul (i32.add (i32.mul (local.get $xi) (local.get $cin)) (local.get $ci)) (local.get $cout)) (local.get $co)) (i32.const 2)))
                (local.get $first))
              (local.set $co (i32.add (local.get $co) (i32.const ${c})))
              (br $cos)))
            (local.set $ci (i32.add (local.get $ci) (i32.const ${r})))
            (br $cis)))
          (local.set $xi (i32.add (local.get $xi) (i32.const 1)))
          (br $planes)))
        (local.set $first (i32.const 0))
        (local.set $group (i32.add (local.get $group) (i32.const 1)))
        (br $groupsLoop)))
      (local.set $half (i32.add (local.get $half) (i32.const 1)))
      (br $halves))))`).join('\n')}
`;
}
