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

/// Rows and columns up to which the `gemm` crate takes its small-product path, whose depth
/// blocks are at most [`SMALL_DEPTH`] (past it, the blocks follow the caches: gemm-common's
/// `gemm_basic_generic`).
const SMALL: usize = 64;
/// The small path's depth block.
const SMALL_DEPTH: usize = 512;

/// [`gemm`] for a product whose rows are the images of a batch (`lhs` and `dst` by rows, `rhs`
/// row-major): each row comes out with the same bits whatever the number of rows and wherever
/// it sits among them, so a batch and its halves give the same per-image results (a
/// data-parallel rank, or a core given a share of the batch, computes a part). The crate
/// rounds otherwise on some paths, which are steered around here:
/// - a single row (a vector-matrix path): computed as two equal rows;
/// - a single column (a matrix-vector path, whose rounding depends on where a row falls
///   among the rows): computed as two equal columns;
/// - at most [`SMALL`] columns and more than [`SMALL_DEPTH`] of depth: the crate sums the depth
///   in blocks of [`SMALL_DEPTH`] for at most [`SMALL`] rows and in blocks sized by the caches
///   (whatever the rows) for more, so fewer rows are padded past [`SMALL`] with copies of the
///   last one.
pub fn gemm_by_rows(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return gemm(dst, (m, n, k), lhs, rhs, accumulate, threads);
    }
    if n == 1 {
        rhs.check(k, 1);
        assert!(dst.len() >= m, "destination too small");
        // Row-major with a row stride of 2: a row stride of 1 would take another path again.
        let column = (0..k).flat_map(|row| {
            let value = rhs.data[row * rhs.row_stride];
            [value, value]
        });
        let twice: Vec<f32> = column.collect();
        let mut out: Vec<f32> = dst[..m].iter().flat_map(|&v| [v, v]).collect();
        gemm_by_rows(
            &mut out,
            (m, 2, k),
            lhs,
            View::rows(&twice, 2),
            accumulate,
            threads,
        );
        for (d, pair) in dst[..m].iter_mut().zip(out.chunks_exact(2)) {
            *d = pair[0];
        }
        return;
    }
    if n <= SMALL && k > SMALL_DEPTH && m <= SMALL {
        // Padded to one row past the small path with copies of the last row.
        lhs.check(m, k);
        assert!(dst.len() >= m * n, "destination too small");
        let rows = SMALL + 1;
        let mut padded = Vec::with_capacity(rows * k);
        for row in (0..rows).map(|row| row.min(m - 1)) {
            padded.extend((0..k).map(|col| lhs.data[row * lhs.row_stride + col * lhs.col_stride]));
        }
        let mut out = dst[..m * n].to_vec();
        out.resize(rows * n, 0.0);
        gemm(
            &mut out,
            (rows, n, k),
            View::rows(&padded, k),
            rhs,
            accumulate,
            threads,
        );
        dst[..m * n].copy_from_slice(&out[..m * n]);
        return;
    }
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
        // One output column and one input column too: the crate's single-column path rounds a
        // row by where it falls in its blocks of rows (seen at 70 rows an image).
        let shapes = [
            (3, 7),
            (10, 64),
            (256, 10),
            (1568, 64),
            (12, 1),
            (24, 1),
            (1, 1),
            (12, 2),
        ];
        for (k, n) in shapes {
            let total = 300;
            let (a, b) = (values(total * k, 1), values(k * n, 2));
            for accumulate in [false, true] {
                let mut full = values(total * n, 3);
                let start = full.clone();
                gemm_by_rows(
                    &mut full,
                    (total, n, k),
                    View::rows(&a, k),
                    View::rows(&b, n),
                    accumulate,
                    1,
                );
                for (first, m) in [
                    (299, 1),
                    (296, 4),
                    (292, 8),
                    (70, 70),
                    (35, 140),
                    (3, 257),
                    (100, 33),
                ] {
                    let mut part = start[first * n..(first + m) * n].to_vec();
                    let lhs = View::rows(&a[first * k..], k);
                    gemm_by_rows(&mut part, (m, n, k), lhs, View::rows(&b, n), accumulate, 1);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&part),
                        bits(&full[first * n..(first + m) * n]),
                        "k {k} n {n} rows {first}..{}, accumulate {accumulate}",
                        first + m
                    );
                }
            }
        }
    }
}
