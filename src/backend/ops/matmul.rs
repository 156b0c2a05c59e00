//! A safe, bounds-checked front for `gemm::gemm` on row-major `f32` slices.

use gemm::Parallelism;

/// A strided read-only matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The backing slice.
    pub data: &'a [f32],
    /// Step between rows.
    pub row_stride: usize,
    /// Step between columns.
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major view with rows of `cols` elements.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with rows of `cols` elements.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst (m x n, row-major) = [dst +] lhs (m x k) * rhs (k x n)`.
///
/// `threads` > 1 lets gemm split the product itself; use 1 inside rayon tasks.
pub fn gemm(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= m * n, "destination too small");
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    lhs.check(m, k);
    rhs.check(k, n);
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the three views were bounds-checked above for the (m, k), (k, n) and (m, n)
    // extents gemm reads and writes; `dst` is borrowed mutably so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// [`gemm`] for a product whose rows are the images of a batch (`lhs` and `dst` by rows, `rhs`
/// row-major): each row comes out with the same bits whatever the number of rows, so a batch
/// and its halves give the same per-image results (a data-parallel rank computes a half).
/// The crate takes other paths for a column-major `rhs` and for a single row, which round
/// differently; a single row is computed here as two equal rows.
pub fn gemm_by_rows(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    threads: usize,
) {
    if m != 1 {
        return gemm(dst, (m, n, k), lhs, rhs, accumulate, threads);
    }
    lhs.check(1, k);
    let twice = View {
        data: lhs.data,
        row_stride: 0,
        col_stride: lhs.col_stride,
    };
    let mut out = Vec::with_capacity(2 * n);
    out.extend_from_slice(&dst[..n]);
    out.extend_from_slice(&dst[..n]);
    gemm(&mut out, (2, n, k), twice, rhs, accumulate, threads);
    dst[..n].copy_from_slice(&out[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 997.0 - 0.5)
            .collect()
    }

    #[test]
    fn rows_have_the_same_bits_in_any_number_of_rows() {
        for (k, n) in [(3, 7), (10, 64), (256, 10), (1568, 64)] {
            let (a, b) = (values(8 * k, 1), values(k * n, 2));
            for accumulate in [false, true] {
                let mut full = values(8 * n, 3);
                let start = full.clone();
                gemm_by_rows(
                    &mut full,
                    (8, n, k),
                    View::rows(&a, k),
                    View::rows(&b, n),
                    accumulate,
                    2,
                );
                for m in [1, 2, 3, 4] {
                    let first = 8 - m;
                    let mut part = start[first * n..].to_vec();
                    let lhs = View::rows(&a[first * k..], k);
                    gemm_by_rows(&mut part, (m, n, k), lhs, View::rows(&b, n), accumulate, 1);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&part), bits(&full[first * n..]), "k {k} n {n} m {m}");
                }
            }
        }
    }
}
