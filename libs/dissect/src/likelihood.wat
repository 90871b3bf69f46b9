;; SIMD kernel of the (soft_)wpmi likelihood; the calling side is likelihood-kernel.ts.
;; For one neuron and one block of concepts it computes, per concept j of the block,
;;   out[j] = prod_{r = r0}^{r1 - 1} (c_r + p_r * Sm[i_r, j])
;; Rows are streamed one after another (r outer, concepts inner) so that every load is sequential
;; and the partial products stay in L1. Factors are multiplied in float32 lanes `chunk` rows at a
;; time (chunk is chosen by the caller so that a chunk product stays in float32's normal range),
;; then folded into float64 products. At the end each product is added to tot[j] (when tot != 0:
;; the logsumexp over neurons then needs no exp) and replaced by its natural log (log_f64x2 below),
;; so there is one log per (neuron, concept) instead of one per factor, and no JavaScript Math.log.
(module
  (import "env" "mem" (memory 1 65536 shared))
  (func (export "likelihood")
    (param $sm i32)    ;; byte address of Sm[0, j0] (row-major)
    (param $groups i32);; number of 8-concept groups in the block
    (param $offs i32)  ;; byte address of int32[r]: byte offset of the r-th ranked image's row
    (param $cp i32)    ;; byte address of 32 bytes per r: f32x4 splat of c_r, then of p_r
    (param $r0 i32) (param $r1 i32) (param $chunk i32)
    (param $q i32)     ;; byte address of f32[8 * groups] scratch: the running chunk products
    (param $out i32)   ;; byte address of f64[8 * groups]: log of the products
    (param $tot i32)   ;; byte address of f64[8 * groups] running sums of the products, or 0
    (local $g i32) (local $r i32) (local $end i32) (local $row i32) (local $cpr i32)
    (local $qa i32) (local $oa i32) (local $first i32)
    (local $c v128) (local $p v128) (local $v0 v128) (local $v1 v128)
    ;; out = 1
    (local.set $g (i32.const 0))
    (block $init_done (loop $init
      (br_if $init_done (i32.ge_u (local.get $g) (local.get $groups)))
      (local.set $oa (i32.add (local.get $out) (i32.shl (local.get $g) (i32.const 6))))
      (v128.store (local.get $oa) (f64x2.splat (f64.const 1)))
      (v128.store offset=16 (local.get $oa) (f64x2.splat (f64.const 1)))
      (v128.store offset=32 (local.get $oa) (f64x2.splat (f64.const 1)))
      (v128.store offset=48 (local.get $oa) (f64x2.splat (f64.const 1)))
      (local.set $g (i32.add (local.get $g) (i32.const 1)))
      (br $init)))
    (local.set $r (local.get $r0))
    (block $chunks_done (loop $chunks
      (br_if $chunks_done (i32.ge_u (local.get $r) (local.get $r1)))
      (local.set $end (i32.add (local.get $r) (local.get $chunk)))
      (if (i32.gt_u (local.get $end) (local.get $r1)) (then (local.set $end (local.get $r1))))
      (local.set $first (i32.const 1))
      ;; q = prod over the chunk's rows of (c_r + p_r * Sm[i_r, .])
      (loop $rows
        (local.set $row (i32.add (local.get $sm)
          (i32.load (i32.add (local.get $offs) (i32.shl (local.get $r) (i32.const 2))))))
        (local.set $cpr (i32.add (local.get $cp) (i32.shl (local.get $r) (i32.const 5))))
        (local.set $c (v128.load (local.get $cpr)))
        (local.set $p (v128.load offset=16 (local.get $cpr)))
        (local.set $g (i32.const 0))
        (block $cols_done (loop $cols
          (br_if $cols_done (i32.ge_u (local.get $g) (local.get $groups)))
          (local.set $qa (i32.add (local.get $q) (i32.shl (local.get $g) (i32.const 5))))
          (local.set $v0 (f32x4.add (local.get $c) (f32x4.mul (local.get $p) (v128.load (local.get $row)))))
          (local.set $v1 (f32x4.add (local.get $c) (f32x4.mul (local.get $p) (v128.load offset=16 (local.get $row)))))
          (if (i32.eqz (local.get $first)) (then
            (local.set $v0 (f32x4.mul (local.get $v0) (v128.load (local.get $qa))))
            (local.set $v1 (f32x4.mul (local.get $v1) (v128.load offset=16 (local.get $qa))))))
          (v128.store (local.get $qa) (local.get $v0))
          (v128.store offset=16 (local.get $qa) (local.get $v1))
          (local.set $row (i32.add (local.get $row) (i32.const 32)))
          (local.set $g (i32.add (local.get $g) (i32.const 1)))
          (br $cols)))
        (local.set $first (i32.const 0))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $r) (local.get $end))))
      ;; out *= q (float64)
      (local.set $g (i32.const 0))
      (block $fold_done (loop $fold
        (br_if $fold_done (i32.ge_u (local.get $g) (local.get $groups)))
        (local.set $qa (i32.add (local.get $q) (i32.shl (local.get $g) (i32.const 5))))
        (local.set $oa (i32.add (local.get $out) (i32.shl (local.get $g) (i32.const 6))))
        (local.set $v0 (v128.load (local.get $qa)))
        (local.set $v1 (v128.load offset=16 (local.get $qa)))
        (v128.store (local.get $oa) (f64x2.mul (v128.load (local.get $oa)) (f64x2.promote_low_f32x4 (local.get $v0))))
        (v128.store offset=16 (local.get $oa) (f64x2.mul (v128.load offset=16 (local.get $oa))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v0) (local.get $v0)))))
        (v128.store offset=32 (local.get $oa) (f64x2.mul (v128.load offset=32 (local.get $oa)) (f64x2.promote_low_f32x4 (local.get $v1))))
        (v128.store offset=48 (local.get $oa) (f64x2.mul (v128.load offset=48 (local.get $oa))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v1) (local.get $v1)))))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $fold)))
      (br $chunks)))
    ;; tot += out; out = log(out), two f64 lanes at a time
    (local.set $g (i32.const 0))
    (block $log_done (loop $logs
      (br_if $log_done (i32.ge_u (local.get $g) (i32.shl (local.get $groups) (i32.const 2))))
      (local.set $oa (i32.add (local.get $out) (i32.shl (local.get $g) (i32.const 4))))
      (local.set $v0 (v128.load (local.get $oa)))
      (if (local.get $tot) (then
        (local.set $qa (i32.add (local.get $tot) (i32.shl (local.get $g) (i32.const 4))))
        (v128.store (local.get $qa) (f64x2.add (v128.load (local.get $qa)) (local.get $v0)))))
      (v128.store (local.get $oa) (call $log_f64x2 (local.get $v0)))
      (local.set $g (i32.add (local.get $g) (i32.const 1)))
      (br $logs))))
  ;; Natural log of two positive normal float64 values (products here are >= 1e-300 by construction):
  ;; x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172,
  ;; by its odd series to s^15 (truncation < 1e-13). 0 gives -inf (log of an exact zero product).
  (func $log_f64x2 (param $x v128) (result v128)
    (local $e v128) (local $m v128) (local $big v128) (local $s v128) (local $s2 v128) (local $poly v128)
    ;; e = exponent field - 1023 (as f64), m = mantissa with exponent 0
    (local.set $e (i64x2.sub (i64x2.shr_u (local.get $x) (i32.const 52)) (i64x2.splat (i64.const 1023))))
    (local.set $m (v128.or (v128.and (local.get $x) (i64x2.splat (i64.const 0x000fffffffffffff))) (i64x2.splat (i64.const 0x3ff0000000000000))))
    ;; m >= sqrt 2: halve m, increment e
    (local.set $big (f64x2.ge (local.get $m) (f64x2.splat (f64.const 1.4142135623730951))))
    (local.set $m (v128.bitselect (f64x2.mul (local.get $m) (f64x2.splat (f64.const 0.5))) (local.get $m) (local.get $big)))
    (local.set $e (i64x2.sub (local.get $e) (local.get $big)))
    (local.set $s (f64x2.div (f64x2.sub (local.get $m) (f64x2.splat (f64.const 1))) (f64x2.add (local.get $m) (f64x2.splat (f64.const 1)))))
    (local.set $s2 (f64x2.mul (local.get $s) (local.get $s)))
    (local.set $poly (f64x2.splat (f64.const 0.06666666666666667)))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 0.07692307692307693)) (f64x2.mul (local.get $poly) (local.get $s2))))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 0.09090909090909091)) (f64x2.mul (local.get $poly) (local.get $s2))))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 0.1111111111111111)) (f64x2.mul (local.get $poly) (local.get $s2))))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 0.14285714285714285)) (f64x2.mul (local.get $poly) (local.get $s2))))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 0.2)) (f64x2.mul (local.get $poly) (local.get $s2))))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 0.3333333333333333)) (f64x2.mul (local.get $poly) (local.get $s2))))
    (local.set $poly (f64x2.add (f64x2.splat (f64.const 1)) (f64x2.mul (local.get $poly) (local.get $s2))))
    ;; log x = e ln 2 + 2 s poly
    (v128.bitselect
      (f64x2.splat (f64.const -inf))
      (f64x2.add
        (f64x2.mul (f64x2.convert_low_i32x4_s (i8x16.shuffle 0 1 2 3 8 9 10 11 0 1 2 3 0 1 2 3 (local.get $e) (local.get $e))) (f64x2.splat (f64.const 0.6931471805599453)))
        (f64x2.mul (f64x2.mul (f64x2.splat (f64.const 2)) (local.get $s)) (local.get $poly)))
      (f64x2.eq (local.get $x) (f64x2.splat (f64.const 0))))))
