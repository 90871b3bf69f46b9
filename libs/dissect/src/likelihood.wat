;; SIMD kernel of the (soft_)wpmi likelihood; the calling side is likelihood-kernel.ts.
;; For one neuron and one block of concepts it computes, per concept j of the block,
;;   out[j] = prod_{r = r0}^{r1 - 1} (c_r + p_r * Sm[i_r, j])
;; Rows are streamed one after another (r outer, concepts inner) so that every load is sequential
;; and the partial products stay in L1. Factors are multiplied in float32 lanes `chunk` rows at a
;; time (chunk is chosen by the caller so that a chunk product stays in float32's normal range),
;; then folded into float64 products; the caller then takes one log per (neuron, concept) instead
;; of one log per factor.
(module
  (import "env" "mem" (memory 1 65536 shared))
  (func (export "likelihood")
    (param $sm i32)    ;; byte address of Sm[0, j0] (row-major)
    (param $groups i32);; number of 8-concept groups in the block
    (param $offs i32)  ;; byte address of int32[r]: byte offset of the r-th ranked image's row
    (param $cp i32)    ;; byte address of 32 bytes per r: f32x4 splat of c_r, then of p_r
    (param $r0 i32) (param $r1 i32) (param $chunk i32)
    (param $q i32)     ;; byte address of f32[8 * groups] scratch: the running chunk products
    (param $out i32)   ;; byte address of f64[8 * groups]: the products
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
      (br $chunks)))))
