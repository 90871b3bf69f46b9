;; SIMD softmax of rows of P in place, in the shared softmax memory (the calling side is tasks.ts).
;; For each of `rows` rows of `cols` float32 values at `addr` + i * `stride` bytes:
;;   x_j <- exp(a x_j - m) / sum_k exp(a x_k - m),  m = max_k a x_k,
;; the sum in float64, the division as a product with 1 / sum. exp is Cephes' expf (range reduction by ln 2 in two parts, degree-5
;; polynomial, 2^n built in the exponent bits; relative error ~1 float32 ulp); arguments below
;; -87 (results under float32's smallest normal number) give 0. Why not onnxruntime: its Softmax
;; needs a private copy of every block in and out (onnxruntime-node refuses shared memory), and
;; the copies cost as much as the exps. Returns the index of the first row holding a NaN or an
;; infinity (whose result is then not to be used), or -1.
(module
  (import "env" "mem" (memory 1 65536 shared))
  (func $exp4 (param $t v128) (result v128)
    (local $n v128) (local $r v128) (local $p v128) (local $r2 v128)
    (local.set $n (f32x4.nearest (f32x4.mul (local.get $t) (f32x4.splat (f32.const 1.44269504088896341)))))
    (local.set $r (f32x4.sub (local.get $t) (f32x4.mul (local.get $n) (f32x4.splat (f32.const 0.693359375)))))
    (local.set $r (f32x4.sub (local.get $r) (f32x4.mul (local.get $n) (f32x4.splat (f32.const -2.12194440e-4)))))
    (local.set $p (f32x4.splat (f32.const 1.9875691500e-4)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 1.3981999507e-3))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 8.3334519073e-3))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 4.1665795894e-2))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 1.6666665459e-1))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 5.0000001201e-1))))
    (local.set $r2 (f32x4.mul (local.get $r) (local.get $r)))
    (local.set $p (f32x4.add (f32x4.add (f32x4.mul (local.get $p) (local.get $r2)) (local.get $r)) (f32x4.splat (f32.const 1))))
    ;; p * 2^n, and 0 where t < -87. n is integral and small: n + 1.5 * 2^23 holds n in its low
    ;; mantissa bits, so its bits minus those of 1.5 * 2^23 are n as an int32 (cheaper than a
    ;; saturating conversion); (n + 127) << 23 is then the float 2^n.
    (v128.and
      (f32x4.mul (local.get $p)
        (i32x4.shl
          (i32x4.add
            (i32x4.sub (f32x4.add (local.get $n) (f32x4.splat (f32.const 12582912))) (i32x4.splat (i32.const 0x4b400000)))
            (i32x4.splat (i32.const 127)))
          (i32.const 23)))
      (f32x4.ge (local.get $t) (f32x4.splat (f32.const -87)))))
  (func (export "softmax_rows")
    (param $addr i32) (param $rows i32) (param $cols i32) (param $stride i32) (param $a f32)
    (result i32)
    (local $i i32) (local $row i32) (local $j i32) (local $vend i32) (local $end i32)
    (local $va v128) (local $vm v128) (local $bad v128) (local $v v128) (local $e v128)
    (local $s0 v128) (local $s1 v128)
    (local $m f32) (local $x f32) (local $sum f64) (local $sumf f32) (local $badf f32)
    (local.set $va (f32x4.splat (local.get $a)))
    (block $rows_done (loop $rows_loop
      (br_if $rows_done (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $row (i32.add (local.get $addr) (i32.mul (local.get $i) (local.get $stride))))
      (local.set $end (i32.add (local.get $row) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $vend (i32.add (local.get $row) (i32.shl (i32.and (local.get $cols) (i32.const -4)) (i32.const 2))))
      ;; pass 1: m = max a x; bad = sum (x - x) (NaN exactly when some x is NaN or infinite)
      (local.set $vm (f32x4.splat (f32.const -inf)))
      (local.set $bad (f32x4.splat (f32.const 0)))
      (local.set $j (local.get $row))
      (block $p1_done (loop $p1
        (br_if $p1_done (i32.ge_u (local.get $j) (local.get $vend)))
        (local.set $v (v128.load (local.get $j)))
        (local.set $bad (f32x4.add (local.get $bad) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $vm (f32x4.max (local.get $vm) (f32x4.mul (local.get $va) (local.get $v))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $p1)))
      (local.set $m (f32.max (f32.max (f32x4.extract_lane 0 (local.get $vm)) (f32x4.extract_lane 1 (local.get $vm)))
                             (f32.max (f32x4.extract_lane 2 (local.get $vm)) (f32x4.extract_lane 3 (local.get $vm)))))
      (local.set $badf (f32.add (f32.add (f32x4.extract_lane 0 (local.get $bad)) (f32x4.extract_lane 1 (local.get $bad)))
                                (f32.add (f32x4.extract_lane 2 (local.get $bad)) (f32x4.extract_lane 3 (local.get $bad)))))
      (block $t1_done (loop $t1
        (br_if $t1_done (i32.ge_u (local.get $j) (local.get $end)))
        (local.set $x (f32.load (local.get $j)))
        (local.set $badf (f32.add (local.get $badf) (f32.sub (local.get $x) (local.get $x))))
        (local.set $m (f32.max (local.get $m) (f32.mul (local.get $a) (local.get $x))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $t1)))
      (if (f32.ne (local.get $badf) (local.get $badf)) (then (return (local.get $i))))
      ;; pass 2: e = exp(a x - m), stored; the sum in float64
      (local.set $vm (f32x4.splat (local.get $m)))
      (local.set $s0 (f64x2.splat (f64.const 0)))
      (local.set $s1 (f64x2.splat (f64.const 0)))
      (local.set $j (local.get $row))
      (block $p2_done (loop $p2
        (br_if $p2_done (i32.ge_u (local.get $j) (local.get $vend)))
        (local.set $e (call $exp4 (f32x4.sub (f32x4.mul (local.get $va) (v128.load (local.get $j))) (local.get $vm))))
        (v128.store (local.get $j) (local.get $e))
        (local.set $s0 (f64x2.add (local.get $s0) (f64x2.promote_low_f32x4 (local.get $e))))
        (local.set $s1 (f64x2.add (local.get $s1)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $p2)))
      (local.set $sum (f64.add (f64.add (f64x2.extract_lane 0 (local.get $s0)) (f64x2.extract_lane 1 (local.get $s0)))
                               (f64.add (f64x2.extract_lane 0 (local.get $s1)) (f64x2.extract_lane 1 (local.get $s1)))))
      (block $t2_done (loop $t2
        (br_if $t2_done (i32.ge_u (local.get $j) (local.get $end)))
        (local.set $x (f32x4.extract_lane 0
          (call $exp4 (f32x4.splat (f32.sub (f32.mul (local.get $a) (f32.load (local.get $j))) (local.get $m))))))
        (f32.store (local.get $j) (local.get $x))
        (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (local.get $x))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $t2)))
      ;; pass 3: divide by the sum
      ;; times 1 / sum (rounded once in float64): within one float32 ulp of the quotient, without a division per value
      (local.set $sumf (f32.demote_f64 (f64.div (f64.const 1) (local.get $sum))))
      (local.set $vm (f32x4.splat (local.get $sumf)))
      (local.set $j (local.get $row))
      (block $p3_done (loop $p3
        (br_if $p3_done (i32.ge_u (local.get $j) (local.get $vend)))
        (v128.store (local.get $j) (f32x4.mul (v128.load (local.get $j)) (local.get $vm)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $p3)))
      (block $t3_done (loop $t3
        (br_if $t3_done (i32.ge_u (local.get $j) (local.get $end)))
        (f32.store (local.get $j) (f32.mul (f32.load (local.get $j)) (local.get $sumf)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $t3)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rows_loop)))
    (i32.const -1))
  ;; row_stats: for P kept whole elsewhere (float16, softmax-input.ts "blocked"): per row of `rows` rows
;; at `addr` + i * `stride`, the m and 1 / sum that softmax_rows would use, as two float32 at
;; `stats` + 8 i, computed with the same operations in the same order (so exp_scale below gives
;; softmax_rows' values bit for bit). The row is left as it is. Returns the first bad row or -1.
  (func (export "row_stats")
    (param $addr i32) (param $rows i32) (param $cols i32) (param $stride i32) (param $a f32) (param $stats i32)
    (result i32)
    (local $i i32) (local $row i32) (local $j i32) (local $vend i32) (local $end i32)
    (local $va v128) (local $vm v128) (local $bad v128) (local $v v128) (local $e v128)
    (local $s0 v128) (local $s1 v128)
    (local $m f32) (local $x f32) (local $sum f64) (local $badf f32)
    (local.set $va (f32x4.splat (local.get $a)))
    (block $rows_done (loop $rows_loop
      (br_if $rows_done (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $row (i32.add (local.get $addr) (i32.mul (local.get $i) (local.get $stride))))
      (local.set $end (i32.add (local.get $row) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $vend (i32.add (local.get $row) (i32.shl (i32.and (local.get $cols) (i32.const -4)) (i32.const 2))))
      (local.set $vm (f32x4.splat (f32.const -inf)))
      (local.set $bad (f32x4.splat (f32.const 0)))
      (local.set $j (local.get $row))
      (block $p1_done (loop $p1
        (br_if $p1_done (i32.ge_u (local.get $j) (local.get $vend)))
        (local.set $v (v128.load (local.get $j)))
        (local.set $bad (f32x4.add (local.get $bad) (f32x4.sub (local.get $v) (local.get $v))))
        (local.set $vm (f32x4.max (local.get $vm) (f32x4.mul (local.get $va) (local.get $v))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $p1)))
      (local.set $m (f32.max (f32.max (f32x4.extract_lane 0 (local.get $vm)) (f32x4.extract_lane 1 (local.get $vm)))
                             (f32.max (f32x4.extract_lane 2 (local.get $vm)) (f32x4.extract_lane 3 (local.get $vm)))))
      (local.set $badf (f32.add (f32.add (f32x4.extract_lane 0 (local.get $bad)) (f32x4.extract_lane 1 (local.get $bad)))
                                (f32.add (f32x4.extract_lane 2 (local.get $bad)) (f32x4.extract_lane 3 (local.get $bad)))))
      (block $t1_done (loop $t1
        (br_if $t1_done (i32.ge_u (local.get $j) (local.get $end)))
        (local.set $x (f32.load (local.get $j)))
        (local.set $badf (f32.add (local.get $badf) (f32.sub (local.get $x) (local.get $x))))
        (local.set $m (f32.max (local.get $m) (f32.mul (local.get $a) (local.get $x))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $t1)))
      (if (f32.ne (local.get $badf) (local.get $badf)) (then (return (local.get $i))))
      (local.set $vm (f32x4.splat (local.get $m)))
      (local.set $s0 (f64x2.splat (f64.const 0)))
      (local.set $s1 (f64x2.splat (f64.const 0)))
      (local.set $j (local.get $row))
      (block $p2_done (loop $p2
        (br_if $p2_done (i32.ge_u (local.get $j) (local.get $vend)))
        (local.set $e (call $exp4 (f32x4.sub (f32x4.mul (local.get $va) (v128.load (local.get $j))) (local.get $vm))))
        (local.set $s0 (f64x2.add (local.get $s0) (f64x2.promote_low_f32x4 (local.get $e))))
        (local.set $s1 (f64x2.add (local.get $s1)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $p2)))
      (local.set $sum (f64.add (f64.add (f64x2.extract_lane 0 (local.get $s0)) (f64x2.extract_lane 1 (local.get $s0)))
                               (f64.add (f64x2.extract_lane 0 (local.get $s1)) (f64x2.extract_lane 1 (local.get $s1)))))
      (block $t2_done (loop $t2
        (br_if $t2_done (i32.ge_u (local.get $j) (local.get $end)))
        (local.set $x (f32x4.extract_lane 0
          (call $exp4 (f32x4.splat (f32.sub (f32.mul (local.get $a) (f32.load (local.get $j))) (local.get $m))))))
        (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (local.get $x))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $t2)))
      (f32.store (i32.add (local.get $stats) (i32.shl (local.get $i) (i32.const 3))) (local.get $m))
      (f32.store (i32.add (local.get $stats) (i32.add (i32.shl (local.get $i) (i32.const 3)) (i32.const 4)))
        (f32.demote_f64 (f64.div (f64.const 1) (local.get $sum))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rows_loop)))
    (i32.const -1))
;; exp_scale: x <- exp(a x - m_i) * inv_i in place, for `rows` rows of `cols` values at `addr` +
;; i * `stride` (a block of concepts of every image), with (m_i, inv_i) of image `row0` + i from
;; row_stats: softmax_rows' values for these columns, bit for bit (exp is elementwise; the product is one rounding).
  (func (export "exp_scale")
    (param $addr i32) (param $rows i32) (param $cols i32) (param $stride i32) (param $a f32) (param $stats i32)
    (local $i i32) (local $row i32) (local $j i32) (local $vend i32) (local $end i32)
    (local $va v128) (local $vm v128) (local $vs v128) (local $m f32) (local $inv f32)
    (local.set $va (f32x4.splat (local.get $a)))
    (block $rows_done (loop $rows_loop
      (br_if $rows_done (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $row (i32.add (local.get $addr) (i32.mul (local.get $i) (local.get $stride))))
      (local.set $end (i32.add (local.get $row) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $vend (i32.add (local.get $row) (i32.shl (i32.and (local.get $cols) (i32.const -4)) (i32.const 2))))
      (local.set $m (f32.load (i32.add (local.get $stats) (i32.shl (local.get $i) (i32.const 3)))))
      (local.set $inv (f32.load (i32.add (local.get $stats) (i32.add (i32.shl (local.get $i) (i32.const 3)) (i32.const 4)))))
      (local.set $vm (f32x4.splat (local.get $m)))
      (local.set $vs (f32x4.splat (local.get $inv)))
      (local.set $j (local.get $row))
      (block $p_done (loop $p
        (br_if $p_done (i32.ge_u (local.get $j) (local.get $vend)))
        (v128.store (local.get $j)
          (f32x4.mul (call $exp4 (f32x4.sub (f32x4.mul (local.get $va) (v128.load (local.get $j))) (local.get $vm))) (local.get $vs)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $p)))
      (block $t_done (loop $t
        (br_if $t_done (i32.ge_u (local.get $j) (local.get $end)))
        (f32.store (local.get $j)
          (f32.mul (f32x4.extract_lane 0
            (call $exp4 (f32x4.splat (f32.sub (f32.mul (local.get $a) (f32.load (local.get $j))) (local.get $m))))) (local.get $inv)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $t)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rows_loop)))))
