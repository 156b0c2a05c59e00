//! A register-blocked matrix product for the narrow shapes of small convolutions (a few dozen
//! output columns, K of 4 to a few hundred), with AVX2+FMA when the CPU has it.
//!
//! `c (m x n_pad) [+]= a (m x k, strided or gathered) * b (k x n_pad)` where `n_pad` is a multiple of 8 and
//! `b`, `c` are row-major with rows of `n_pad`. General gemm libraries tile for large squares
//! and waste most of a 16-row micro-tile on 20 filters; here a tile is 4 rows by 24 columns,
//! 6 by 16 or 12 by 8 (AVX2) or up to 12 rows by 64 columns (AVX-512, whose masked loads also take the
//! half vector at the end of a row) and the reduction runs straight through.

/// Lanes per vector.
pub const LANES: usize = 8;

/// `n` rounded up to whole vectors.
pub fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Where the rows, or the reduction steps, of a left operand start in its slice.
pub trait Offsets: Copy {
    /// The offset of index `i`.
    ///
    /// # Safety
    /// `i` must be below the count that [`Offsets::max_offset`] was checked for.
    unsafe fn at(self, i: usize) -> usize;
    /// The largest offset of the first `n` indexes (`n` > 0), or `None` when there are fewer.
    fn max_offset(self, n: usize) -> Option<usize>;
}

/// Offsets `i * step`: a plain strided matrix.
#[derive(Clone, Copy)]
pub struct Stride(pub usize);

impl Offsets for Stride {
    #[inline(always)]
    unsafe fn at(self, i: usize) -> usize {
        i * self.0
    }
    fn max_offset(self, n: usize) -> Option<usize> {
        Some((n - 1) * self.0)
    }
}

/// Offsets read from a table: a gathered matrix, such as the patches of a convolution read
/// straight from a padded image (no im2col copy).
#[derive(Clone, Copy)]
pub struct Table<'a>(pub &'a [usize]);

impl Offsets for Table<'_> {
    #[inline(always)]
    unsafe fn at(self, i: usize) -> usize {
        // SAFETY: the caller keeps `i` below the length checked by `max_offset`.
        unsafe { *self.0.get_unchecked(i) }
    }
    fn max_offset(self, n: usize) -> Option<usize> {
        self.0.get(..n)?.iter().copied().max()
    }
}

/// An `m x k` left operand: element `(r, kk)` is `data[rows.at(r) + cols.at(kk)]`.
#[derive(Clone, Copy)]
pub struct Lhs<'a, R = Stride, C = Stride> {
    /// Backing slice.
    pub data: &'a [f32],
    /// Where each row starts.
    pub rows: R,
    /// Where each step of the reduction lies within a row.
    pub cols: C,
}

impl<'a> Lhs<'a> {
    /// A strided operand: element `(r, kk)` is `data[r * row_stride + kk * col_stride]`.
    pub fn strided(data: &'a [f32], row_stride: usize, col_stride: usize) -> Self {
        Lhs {
            data,
            rows: Stride(row_stride),
            cols: Stride(col_stride),
        }
    }
}

impl<R: Offsets, C: Offsets> Lhs<'_, R, C> {
    /// Where row `r` starts; add `cols.at(kk)` for element `(r, kk)`.
    ///
    /// # Safety
    /// `r` must lie within the rows checked by [`small_gemm`].
    #[inline(always)]
    unsafe fn row(&self, r: usize) -> *const f32 {
        // SAFETY: a checked row's offset is at most the checked maximum, below `data.len()`.
        unsafe { self.data.as_ptr().add(self.rows.at(r)) }
    }
}

/// `c [+]= a * b`; see the module doc for the layouts.
pub fn small_gemm<R: Offsets, C: Offsets>(
    m: usize,
    n_pad: usize,
    k: usize,
    a: Lhs<'_, R, C>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    small_gemm_into_rows(m, n_pad, k, a, b, (c, n_pad), accumulate);
}

/// [`small_gemm`] with `c`'s rows `ldc` values apart (at least `n_pad`): row `r` of the
/// product is `c[r * ldc..][..n_pad]`, and the values between rows are left as they are.
pub fn small_gemm_into_rows<R: Offsets, C: Offsets>(
    m: usize,
    n_pad: usize,
    k: usize,
    a: Lhs<'_, R, C>,
    b: &[f32],
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    assert_eq!(n_pad % LANES, 0, "columns must be padded to whole vectors");
    assert!(ldc >= n_pad, "rows of the product overlap");
    let c_len = if m == 0 { 0 } else { (m - 1) * ldc + n_pad };
    assert!(
        b.len() >= k * n_pad && c.len() >= c_len,
        "operands too small"
    );
    if m > 0 && k > 0 {
        let last = a
            .rows
            .max_offset(m)
            .zip(a.cols.max_offset(k))
            .map(|(r, c)| r + c);
        assert!(
            last.is_some_and(|last| last < a.data.len()),
            "left operand out of bounds"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked above), and every index the kernel
        // touches lies within the extents asserted above.
        unsafe { avx512::gemm(m, n_pad, k, a, b, (c, ldc), accumulate) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked above), and every index the kernel
        // touches lies within the extents asserted above.
        unsafe { avx2::gemm(m, n_pad, k, a, b, (c, ldc), accumulate) };
        return;
    }
    portable(m, n_pad, k, a, b, (c, ldc), accumulate);
}

fn portable<R: Offsets, C: Offsets>(
    m: usize,
    n_pad: usize,
    k: usize,
    a: Lhs<'_, R, C>,
    b: &[f32],
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    for r in 0..m {
        let row = &mut c[r * ldc..][..n_pad];
        if !accumulate {
            row.fill(0.0);
        }
        for kk in 0..k {
            // SAFETY: `r < m` and `kk < k`, the extents `small_gemm` checked.
            let scale = unsafe { *a.row(r).add(a.cols.at(kk)) };
            row.iter_mut()
                .zip(&b[kk * n_pad..][..n_pad])
                .for_each(|(c, b)| *c += scale * b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lhs, Offsets, LANES};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA must be available and the operands within the extents checked by the
    /// caller.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm<R: Offsets, C: Offsets>(
        m: usize,
        n_pad: usize,
        k: usize,
        a: Lhs<'_, R, C>,
        b: &[f32],
        (c, ldc): (&mut [f32], usize),
        acc: bool,
    ) {
        let vectors = n_pad / LANES;
        let mut v0 = 0;
        while v0 < vectors {
            // Columns go in panels of 3 or 2 vectors (one only when the row is one vector):
            // 4 x 3, 6 x 2 and 12 x 1 tiles each keep 12 sums in flight, enough to cover the
            // FMA's latency at two a cycle, in the 16 registers with the panel's vectors and
            // a broadcast. A lone 1-vector panel (4 rows: 4 sums) ran at under half speed.
            let width = match vectors - v0 {
                4 => 2,
                left => left.min(3),
            };
            let args = (m, v0, k, (n_pad, ldc), a, b, &mut *c, acc);
            match width {
                3 => rows::<4, 3, _, _>(args),
                2 => rows::<6, 2, _, _>(args),
                _ => rows::<12, 1, _, _>(args),
            }
            v0 += width;
        }
    }

    type Args<'a, 'c, RO, CO> = (
        usize,
        usize,
        usize,
        (usize, usize),
        Lhs<'a, RO, CO>,
        &'a [f32],
        &'c mut [f32],
        bool,
    );

    /// All rows for vectors `v0..v0+V`: tiles of `R` rows, then of 4 (when `R` is more),
    /// then single rows.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const R: usize, const V: usize, RO: Offsets, CO: Offsets>(
        (m, v0, k, n_pad, a, b, c, acc): Args<'_, '_, RO, CO>,
    ) {
        let mut r0 = 0;
        while r0 + R <= m {
            tile::<R, V, _, _>(r0, v0, k, n_pad, a, b, c, acc);
            r0 += R;
        }
        while R > 4 && r0 + 4 <= m {
            tile::<4, V, _, _>(r0, v0, k, n_pad, a, b, c, acc);
            r0 += 4;
        }
        while r0 < m {
            tile::<1, V, _, _>(r0, v0, k, n_pad, a, b, c, acc);
            r0 += 1;
        }
    }

    /// One `R x V` tile of vectors: rows `r0..r0+R`, vectors `v0..v0+V`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const V: usize, RO: Offsets, CO: Offsets>(
        r0: usize,
        v0: usize,
        k: usize,
        (n_pad, ldc): (usize, usize),
        a: Lhs<'_, RO, CO>,
        b: &[f32],
        c: &mut [f32],
        accumulate: bool,
    ) {
        let (b_ptr, c_ptr) = (b.as_ptr(), c.as_mut_ptr());
        let rows: [*const f32; R] = std::array::from_fn(|r| a.row(r0 + r));
        let mut sums = [[_mm256_setzero_ps(); V]; R];
        if accumulate {
            for (r, row) in sums.iter_mut().enumerate() {
                for (v, sum) in row.iter_mut().enumerate() {
                    *sum = _mm256_loadu_ps(c_ptr.add((r0 + r) * ldc + (v0 + v) * LANES));
                }
            }
        }
        for kk in 0..k {
            let mut bs = [_mm256_setzero_ps(); V];
            for (v, bv) in bs.iter_mut().enumerate() {
                *bv = _mm256_loadu_ps(b_ptr.add(kk * n_pad + (v0 + v) * LANES));
            }
            for (r, row) in sums.iter_mut().enumerate() {
                let scale = _mm256_set1_ps(*rows[r].add(a.cols.at(kk)));
                for (sum, bv) in row.iter_mut().zip(&bs) {
                    *sum = _mm256_fmadd_ps(scale, *bv, *sum);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (v, sum) in row.iter().enumerate() {
                _mm256_storeu_ps(c_ptr.add((r0 + r) * ldc + (v0 + v) * LANES), *sum);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Lhs, Offsets};
    use std::arch::x86_64::*;

    /// Lanes of a 512-bit vector.
    const WIDE: usize = 16;

    /// # Safety
    /// AVX-512F must be available and the operands within the extents checked by the caller.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm<RO: Offsets, CO: Offsets>(
        m: usize,
        n_pad: usize,
        k: usize,
        a: Lhs<'_, RO, CO>,
        b: &[f32],
        (c, ldc): (&mut [f32], usize),
        acc: bool,
    ) {
        let vectors = n_pad.div_ceil(WIDE);
        let mut v0 = 0;
        while v0 < vectors {
            // Up to 24 accumulators of the 32 registers: 6x4, 8x3, 12x2 or 12x1 vectors.
            let width = (vectors - v0).min(4);
            let args = (m, v0, k, (n_pad, ldc), a, b, c.as_mut_ptr(), acc);
            match width {
                4 => rows::<6, 4, _, _>(args),
                3 => rows::<8, 3, _, _>(args),
                2 => rows::<12, 2, _, _>(args),
                _ => rows::<12, 1, _, _>(args),
            }
            v0 += width;
        }
    }

    type Args<'a, RO, CO> = (
        usize,
        usize,
        usize,
        (usize, usize),
        Lhs<'a, RO, CO>,
        &'a [f32],
        *mut f32,
        bool,
    );

    /// All rows for vectors `v0..v0+V`: tiles of `R` rows, then of 4, then single rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize, const V: usize, RO: Offsets, CO: Offsets>(
        args: Args<'_, RO, CO>,
    ) {
        let m = args.0;
        let mut r0 = 0;
        while r0 + R <= m {
            tile::<R, V, _, _>(r0, args);
            r0 += R;
        }
        while r0 + 4 <= m {
            tile::<4, V, _, _>(r0, args);
            r0 += 4;
        }
        while r0 < m {
            tile::<1, V, _, _>(r0, args);
            r0 += 1;
        }
    }

    /// One `R x V` tile: rows `r0..r0+R`, vectors `v0..v0+V`; a vector that reaches past
    /// `n_pad` (half of the last one when `n_pad` is an odd multiple of 8) is masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const V: usize, RO: Offsets, CO: Offsets>(
        r0: usize,
        (_, v0, k, (n_pad, ldc), a, b, c_ptr, accumulate): Args<'_, RO, CO>,
    ) {
        let b_ptr = b.as_ptr();
        let rows: [*const f32; R] = std::array::from_fn(|r| a.row(r0 + r));
        let mut masks = [0xFFFF_u16; V];
        for (v, mask) in masks.iter_mut().enumerate() {
            let left = n_pad - (v0 + v) * WIDE;
            if left < WIDE {
                *mask = (1u16 << left) - 1;
            }
        }
        let mut sums = [[_mm512_setzero_ps(); V]; R];
        if accumulate {
            for (r, row) in sums.iter_mut().enumerate() {
                for (v, sum) in row.iter_mut().enumerate() {
                    let at = c_ptr.add((r0 + r) * ldc + (v0 + v) * WIDE);
                    *sum = _mm512_maskz_loadu_ps(masks[v], at);
                }
            }
        }
        for kk in 0..k {
            let mut bs = [_mm512_setzero_ps(); V];
            for (v, bv) in bs.iter_mut().enumerate() {
                *bv = _mm512_maskz_loadu_ps(masks[v], b_ptr.add(kk * n_pad + (v0 + v) * WIDE));
            }
            for (r, row) in sums.iter_mut().enumerate() {
                let scale = _mm512_set1_ps(*rows[r].add(a.cols.at(kk)));
                for (sum, bv) in row.iter_mut().zip(&bs) {
                    *sum = _mm512_fmadd_ps(scale, *bv, *sum);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (v, sum) in row.iter().enumerate() {
                let at = c_ptr.add((r0 + r) * ldc + (v0 + v) * WIDE);
                _mm512_mask_storeu_ps(at, masks[v], *sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_portable_on_every_tile_shape() {
        for n_pad in [8, 16, 24, 32, 40, 64, 72, 104] {
            for m in [1, 3, 4, 5, 6, 7, 11, 12, 13, 25, 64] {
                let k = 11;
                let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
                let b: Vec<f32> = (0..k * n_pad).map(|i| (i % 5) as f32 * 0.5).collect();
                let lhs = Lhs::strided(&a, k, 1);
                for accumulate in [true, false] {
                    // One spare row past the product must stay untouched.
                    let mut fast = vec![2.0; (m + 1) * n_pad];
                    let mut slow = fast.clone();
                    small_gemm(m, n_pad, k, lhs, &b, &mut fast, accumulate);
                    portable(m, n_pad, k, lhs, &b, (&mut slow, n_pad), accumulate);
                    assert_eq!(fast, slow, "m {m}, n_pad {n_pad}, accumulate {accumulate}");
                }
            }
        }
    }

    #[test]
    fn rows_apart_match_the_packed_product_and_leave_the_gaps() {
        for (m, n_pad, ldc) in [(7, 24, 40), (13, 64, 64 * 36), (1, 8, 8), (25, 16, 17 * 8)] {
            let k = 5;
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n_pad).map(|i| (i % 5) as f32 * 0.5).collect();
            let lhs = Lhs::strided(&a, k, 1);
            for accumulate in [true, false] {
                let mut packed = vec![2.0; m * n_pad];
                small_gemm(m, n_pad, k, lhs, &b, &mut packed, accumulate);
                let mut apart = vec![2.0; (m - 1) * ldc + n_pad];
                small_gemm_into_rows(m, n_pad, k, lhs, &b, (&mut apart, ldc), accumulate);
                let mut slow = apart.clone();
                slow.fill(2.0);
                portable(m, n_pad, k, lhs, &b, (&mut slow, ldc), accumulate);
                for (r, row) in packed.chunks(n_pad).enumerate() {
                    assert_eq!(row, &apart[r * ldc..][..n_pad], "m {m}, row {r}");
                }
                assert_eq!(apart, slow, "m {m}, n_pad {n_pad}, ldc {ldc}");
                let gaps = apart
                    .chunks(ldc)
                    .flat_map(|row| row.get(n_pad..).unwrap_or(&[]));
                assert!(gaps.into_iter().all(|&v| v == 2.0), "gaps written");
            }
        }
    }

    #[test]
    fn matches_portable() {
        let (m, n_pad, k) = (7, 24, 13);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n_pad).map(|i| (i % 5) as f32 * 0.5).collect();
        for (row_stride, col_stride) in [(k, 1), (1, m)] {
            let lhs = Lhs::strided(&a, row_stride, col_stride);
            let mut fast = vec![1.0; m * n_pad];
            let mut slow = vec![1.0; m * n_pad];
            small_gemm(m, n_pad, k, lhs, &b, &mut fast, true);
            portable(m, n_pad, k, lhs, &b, (&mut slow, n_pad), true);
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn gathered_operand_reads_through_its_tables() {
        // A 5 x 4 operand scattered through a larger slice, in no particular order.
        let (m, n_pad, k) = (5, 40, 4);
        let data: Vec<f32> = (0..64).map(|i| (i % 9) as f32 - 4.0).collect();
        let rows = [7, 0, 30, 12, 21];
        let cols = [3, 1, 20, 0];
        let gathered = Lhs {
            data: &data,
            rows: Table(&rows),
            cols: Table(&cols),
        };
        let dense: Vec<f32> = rows
            .iter()
            .flat_map(|r| cols.iter().map(|c| data[r + c]).collect::<Vec<_>>())
            .collect();
        let b: Vec<f32> = (0..k * n_pad).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut fast = vec![1.0; m * n_pad];
        let mut slow = fast.clone();
        small_gemm(m, n_pad, k, gathered, &b, &mut fast, true);
        portable(
            m,
            n_pad,
            k,
            Lhs::strided(&dense, k, 1),
            &b,
            (&mut slow, n_pad),
            true,
        );
        assert_eq!(fast, slow);
    }

    #[test]
    #[should_panic(expected = "left operand out of bounds")]
    fn a_table_reaching_past_the_data_is_refused() {
        let data = [0.0; 16];
        let lhs = Lhs {
            data: &data,
            rows: Table(&[0, 8]),
            cols: Table(&[0, 8]),
        };
        let mut c = [0.0; 16];
        small_gemm(2, 8, 2, lhs, &[0.0; 16], &mut c, false);
    }
}
