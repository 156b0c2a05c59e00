//! A register-blocked matrix product for the narrow shapes of small convolutions (a few dozen
//! output columns, K of 4 to a few hundred), with AVX2+FMA when the CPU has it.
//!
//! `c (m x n_pad) [+]= a (m x k, strided) * b (k x n_pad)` where `n_pad` is a multiple of 8 and
//! `b`, `c` are row-major with rows of `n_pad`. General gemm libraries tile for large squares
//! and waste most of a 16-row micro-tile on 20 filters; here a tile is 4 rows by up to 24
//! columns (AVX2) or up to 12 rows by 64 columns (AVX-512, whose masked loads also take the
//! half vector at the end of a row) and the reduction runs straight through.

/// Lanes per vector.
pub const LANES: usize = 8;

/// `n` rounded up to whole vectors.
pub fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// A strided `m x k` left operand: element `(r, kk)` is `data[r * row_stride + kk * col_stride]`.
#[derive(Clone, Copy)]
pub struct Lhs<'a> {
    /// Backing slice.
    pub data: &'a [f32],
    /// Step between rows.
    pub row_stride: usize,
    /// Step along the reduction.
    pub col_stride: usize,
}

/// `c [+]= a * b`; see the module doc for the layouts.
pub fn small_gemm(
    m: usize,
    n_pad: usize,
    k: usize,
    a: Lhs<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    assert_eq!(n_pad % LANES, 0, "columns must be padded to whole vectors");
    assert!(
        b.len() >= k * n_pad && c.len() >= m * n_pad,
        "operands too small"
    );
    if m > 0 && k > 0 {
        let last = (m - 1) * a.row_stride + (k - 1) * a.col_stride;
        assert!(last < a.data.len(), "left operand out of bounds");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked above), and every index the kernel
        // touches lies within the extents asserted above.
        unsafe { avx512::gemm(m, n_pad, k, a, b, c, accumulate) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked above), and every index the kernel
        // touches lies within the extents asserted above.
        unsafe { avx2::gemm(m, n_pad, k, a, b, c, accumulate) };
        return;
    }
    portable(m, n_pad, k, a, b, c, accumulate);
}

fn portable(
    m: usize,
    n_pad: usize,
    k: usize,
    a: Lhs<'_>,
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    for r in 0..m {
        let row = &mut c[r * n_pad..][..n_pad];
        if !accumulate {
            row.fill(0.0);
        }
        for kk in 0..k {
            let scale = a.data[r * a.row_stride + kk * a.col_stride];
            row.iter_mut()
                .zip(&b[kk * n_pad..][..n_pad])
                .for_each(|(c, b)| *c += scale * b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lhs, LANES};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA must be available and the operands within the extents checked by the
    /// caller.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm(
        m: usize,
        n_pad: usize,
        k: usize,
        a: Lhs<'_>,
        b: &[f32],
        c: &mut [f32],
        acc: bool,
    ) {
        let vectors = n_pad / LANES;
        let mut v0 = 0;
        while v0 < vectors {
            let width = (vectors - v0).min(3);
            let mut r0 = 0;
            while r0 + 4 <= m {
                match width {
                    3 => tile::<4, 3>(r0, v0, k, n_pad, a, b, c, acc),
                    2 => tile::<4, 2>(r0, v0, k, n_pad, a, b, c, acc),
                    _ => tile::<4, 1>(r0, v0, k, n_pad, a, b, c, acc),
                }
                r0 += 4;
            }
            while r0 < m {
                match width {
                    3 => tile::<1, 3>(r0, v0, k, n_pad, a, b, c, acc),
                    2 => tile::<1, 2>(r0, v0, k, n_pad, a, b, c, acc),
                    _ => tile::<1, 1>(r0, v0, k, n_pad, a, b, c, acc),
                }
                r0 += 1;
            }
            v0 += width;
        }
    }

    /// One `R x V` tile of vectors: rows `r0..r0+R`, vectors `v0..v0+V`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const V: usize>(
        r0: usize,
        v0: usize,
        k: usize,
        n_pad: usize,
        a: Lhs<'_>,
        b: &[f32],
        c: &mut [f32],
        accumulate: bool,
    ) {
        let (a_ptr, b_ptr, c_ptr) = (a.data.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        let mut sums = [[_mm256_setzero_ps(); V]; R];
        if accumulate {
            for (r, row) in sums.iter_mut().enumerate() {
                for (v, sum) in row.iter_mut().enumerate() {
                    *sum = _mm256_loadu_ps(c_ptr.add((r0 + r) * n_pad + (v0 + v) * LANES));
                }
            }
        }
        for kk in 0..k {
            let mut bs = [_mm256_setzero_ps(); V];
            for (v, bv) in bs.iter_mut().enumerate() {
                *bv = _mm256_loadu_ps(b_ptr.add(kk * n_pad + (v0 + v) * LANES));
            }
            for (r, row) in sums.iter_mut().enumerate() {
                let scale = _mm256_set1_ps(*a_ptr.add((r0 + r) * a.row_stride + kk * a.col_stride));
                for (sum, bv) in row.iter_mut().zip(&bs) {
                    *sum = _mm256_fmadd_ps(scale, *bv, *sum);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (v, sum) in row.iter().enumerate() {
                _mm256_storeu_ps(c_ptr.add((r0 + r) * n_pad + (v0 + v) * LANES), *sum);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Lhs;
    use std::arch::x86_64::*;

    /// Lanes of a 512-bit vector.
    const WIDE: usize = 16;

    /// # Safety
    /// AVX-512F must be available and the operands within the extents checked by the caller.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm(
        m: usize,
        n_pad: usize,
        k: usize,
        a: Lhs<'_>,
        b: &[f32],
        c: &mut [f32],
        acc: bool,
    ) {
        let vectors = n_pad.div_ceil(WIDE);
        let mut v0 = 0;
        while v0 < vectors {
            // Up to 24 accumulators of the 32 registers: 6x4, 8x3, 12x2 or 12x1 vectors.
            let width = (vectors - v0).min(4);
            let args = (m, v0, k, n_pad, a, b, c.as_mut_ptr(), acc);
            match width {
                4 => rows::<6, 4>(args),
                3 => rows::<8, 3>(args),
                2 => rows::<12, 2>(args),
                _ => rows::<12, 1>(args),
            }
            v0 += width;
        }
    }

    type Args<'a> = (
        usize,
        usize,
        usize,
        usize,
        Lhs<'a>,
        &'a [f32],
        *mut f32,
        bool,
    );

    /// All rows for vectors `v0..v0+V`: tiles of `R` rows, then of 4, then single rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize, const V: usize>(args: Args<'_>) {
        let m = args.0;
        let mut r0 = 0;
        while r0 + R <= m {
            tile::<R, V>(r0, args);
            r0 += R;
        }
        while r0 + 4 <= m {
            tile::<4, V>(r0, args);
            r0 += 4;
        }
        while r0 < m {
            tile::<1, V>(r0, args);
            r0 += 1;
        }
    }

    /// One `R x V` tile: rows `r0..r0+R`, vectors `v0..v0+V`; a vector that reaches past
    /// `n_pad` (half of the last one when `n_pad` is an odd multiple of 8) is masked.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const V: usize>(
        r0: usize,
        (_, v0, k, n_pad, a, b, c_ptr, accumulate): Args<'_>,
    ) {
        let b_ptr = b.as_ptr();
        let a_ptr = a.data.as_ptr();
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
                    let at = c_ptr.add((r0 + r) * n_pad + (v0 + v) * WIDE);
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
                let scale = _mm512_set1_ps(*a_ptr.add((r0 + r) * a.row_stride + kk * a.col_stride));
                for (sum, bv) in row.iter_mut().zip(&bs) {
                    *sum = _mm512_fmadd_ps(scale, *bv, *sum);
                }
            }
        }
        for (r, row) in sums.iter().enumerate() {
            for (v, sum) in row.iter().enumerate() {
                let at = c_ptr.add((r0 + r) * n_pad + (v0 + v) * WIDE);
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
            for m in [1, 3, 4, 5, 7, 12, 13, 25] {
                let k = 11;
                let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
                let b: Vec<f32> = (0..k * n_pad).map(|i| (i % 5) as f32 * 0.5).collect();
                let lhs = Lhs {
                    data: &a,
                    row_stride: k,
                    col_stride: 1,
                };
                for accumulate in [true, false] {
                    // One spare row past the product must stay untouched.
                    let mut fast = vec![2.0; (m + 1) * n_pad];
                    let mut slow = fast.clone();
                    small_gemm(m, n_pad, k, lhs, &b, &mut fast, accumulate);
                    portable(m, n_pad, k, lhs, &b, &mut slow, accumulate);
                    assert_eq!(fast, slow, "m {m}, n_pad {n_pad}, accumulate {accumulate}");
                }
            }
        }
    }

    #[test]
    fn matches_portable() {
        let (m, n_pad, k) = (7, 24, 13);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n_pad).map(|i| (i % 5) as f32 * 0.5).collect();
        for (row_stride, col_stride) in [(k, 1), (1, m)] {
            let lhs = Lhs {
                data: &a,
                row_stride,
                col_stride,
            };
            let mut fast = vec![1.0; m * n_pad];
            let mut slow = vec![1.0; m * n_pad];
            small_gemm(m, n_pad, k, lhs, &b, &mut fast, true);
            portable(m, n_pad, k, lhs, &b, &mut slow, true);
            assert_eq!(fast, slow);
        }
    }
}
