//! The Winograd transforms of F(2x2, 3x3) and F(2x2, 2x2): `Bᵀ d B` of input tiles, `Aᵀ M A`
//! of output tiles (finished by pooling or by the plain convolution's epilogue), `G g Gᵀ` of
//! filters, and their adjoints for the backward pass, on tiles of vectors held in registers
//! (`pulp` picks the vectors: AVX-512, AVX2, NEON or scalar). A tile lives in the top-left
//! `α x α` corner of a 6x6 grid of slots (slot `GRID i + j`).

use super::{chunks, Tiles, GRID, SLOTS};
use crate::backend::ops::buffers;
use crate::backend::ops::conv_pool_kernels::{transpose_padded, NO_WINNER};
use pulp::{Arch, Simd, WithSimd};
use std::marker::PhantomData;

/// One vector's worth of channels or filters: from `start`, `width` lanes of which the first
/// `len` are real (the rest is padding to a whole vector).
#[derive(Clone, Copy)]
pub(super) struct Lanes {
    start: usize,
    width: usize,
    len: usize,
}

impl Lanes {
    #[inline(always)]
    pub(super) fn new(start: usize, width: usize, real: usize) -> Self {
        let len = real.saturating_sub(start).min(width);
        Self { start, width, len }
    }
}

/// A 6x6 tile of vectors, row-major; the transforms work on it in place.
type Tile<S> = [<S as Simd>::f32s; SLOTS];

/// A tile of zeros, written with vector stores. A literal zero made every such tile a call to
/// `memset` (2.3 KB, which glibc writes with `rep stosb`). Through `black_box` the compiler
/// does not know the value is zero and stores it as any other vector: `memset` fell from 4.3%
/// to 1.1% of a `fashion_resnet` bench's samples, for under 1% of a step's time.
#[inline(always)]
fn zeroed_tile<S: Simd>(s: S) -> Tile<S> {
    [s.splat_f32s(std::hint::black_box(0.0)); SLOTS]
}

/// One Winograd algorithm F(m x m, r x r): the output tile size, the kernel size, the input
/// tile size `α = m + r - 1` and the one-axis transforms.
pub(super) trait Variant {
    /// Output tile rows and columns.
    const M: usize;
    /// Kernel rows and columns.
    const R: usize;
    /// Input tile rows and columns.
    const ALPHA: usize = Self::M + Self::R - 1;
    /// Positions of a transformed tile (`α²`): the products per block.
    const XI: usize = Self::ALPHA * Self::ALPHA;
    type Bt: Axis;
    type BtAdjoint: Axis;
    type At: Axis;
    type AtAdjoint: Axis;
    type Gt: Axis;
    type GtAdjoint: Axis;
}

/// F(2x2, 3x3): 16 multiplications per tile and channel pair instead of 36.
pub(super) struct F23;
/// F(4x4, 3x3): 36 multiplications per tile and channel pair instead of 144.
pub(super) struct F43;
/// F(2x2, 2x2): 9 instead of 16.
pub(super) struct F22;

impl Variant for F23 {
    const M: usize = 2;
    const R: usize = 3;
    type Bt = BtF23;
    type BtAdjoint = BtF23Adjoint;
    type At = AtF23;
    type AtAdjoint = AtF23Adjoint;
    type Gt = GtF23;
    type GtAdjoint = GtF23Adjoint;
}

impl Variant for F43 {
    const M: usize = 4;
    const R: usize = 3;
    type Bt = BtF43;
    type BtAdjoint = BtF43Adjoint;
    type At = AtF43;
    type AtAdjoint = AtF43Adjoint;
    type Gt = GtF43;
    type GtAdjoint = GtF43Adjoint;
}

impl Variant for F22 {
    const M: usize = 2;
    const R: usize = 2;
    type Bt = BtF22;
    type BtAdjoint = BtF22Adjoint;
    type At = AtF22;
    type AtAdjoint = AtF22Adjoint;
    type Gt = GtF22;
    type GtAdjoint = GtF22Adjoint;
}

/// The slot of transformed position `xi` (row-major over the `α x α` tile).
#[inline(always)]
pub(super) fn slot<V: Variant>(xi: usize) -> usize {
    (xi / V::ALPHA) * GRID + xi % V::ALPHA
}

/// A one-axis transform of `IN` points to `OUT`, applied to a row or column of slots of a
/// tile, or of an array of vectors such as one column held on its own (reading the first
/// `IN` of `slots`, writing the first `OUT`). A trait rather than closures, so that every
/// step inlines into the vectorised caller (a closure is its own function, compiled without
/// the caller's vector features).
pub(super) trait Axis {
    const IN: usize;
    const OUT: usize;
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], slots: [usize; GRID]);
}

/// `T x Tᵀ` for the matrix `T` of `A`: `A` along the columns of the tile's top-left
/// `IN x IN` corner, then along the rows; the result is the top-left `OUT x OUT` corner.
#[inline(always)]
fn two_d<S: Simd, A: Axis>(s: S, tile: &mut Tile<S>) {
    for j in 0..A::IN {
        A::apply(s, tile, std::array::from_fn(|i| GRID * i + j));
    }
    for i in 0..A::OUT {
        A::apply(s, tile, std::array::from_fn(|j| GRID * i + j));
    }
}

/// F(2x2, 3x3)'s `Bᵀ d` (4 points to 4).
pub(super) struct BtF23;
/// The adjoint of [`BtF23`].
pub(super) struct BtF23Adjoint;
/// F(2x2, 3x3)'s `Aᵀ m` (4 points to 2).
pub(super) struct AtF23;
/// The adjoint of [`AtF23`] (2 points to 4).
pub(super) struct AtF23Adjoint;
/// F(2x2, 3x3)'s `G g` (3 points to 4).
pub(super) struct GtF23;
/// The adjoint of [`GtF23`] (4 points to 3).
pub(super) struct GtF23Adjoint;

impl Axis for BtF23 {
    const IN: usize = 4;
    const OUT: usize = 4;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(
        s: S,
        t: &mut [S::f32s; N],
        [p0, p1, p2, p3, ..]: [usize; GRID],
    ) {
        let (d0, d1, d2, d3) = (t[p0], t[p1], t[p2], t[p3]);
        t[p0] = s.sub_f32s(d0, d2);
        t[p1] = s.add_f32s(d1, d2);
        t[p2] = s.sub_f32s(d2, d1);
        t[p3] = s.sub_f32s(d1, d3);
    }
}

impl Axis for BtF23Adjoint {
    const IN: usize = 4;
    const OUT: usize = 4;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(
        s: S,
        t: &mut [S::f32s; N],
        [p0, p1, p2, p3, ..]: [usize; GRID],
    ) {
        let (v0, v1, v2, v3) = (t[p0], t[p1], t[p2], t[p3]);
        t[p1] = s.add_f32s(s.sub_f32s(v1, v2), v3);
        t[p2] = s.sub_f32s(s.add_f32s(v1, v2), v0);
        t[p3] = s.neg_f32s(v3);
    }
}

impl Axis for AtF23 {
    const IN: usize = 4;
    const OUT: usize = 2;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(
        s: S,
        t: &mut [S::f32s; N],
        [p0, p1, p2, p3, ..]: [usize; GRID],
    ) {
        let (m0, m1, m2, m3) = (t[p0], t[p1], t[p2], t[p3]);
        t[p0] = s.add_f32s(s.add_f32s(m0, m1), m2);
        t[p1] = s.sub_f32s(s.sub_f32s(m1, m2), m3);
    }
}

impl Axis for AtF23Adjoint {
    const IN: usize = 2;
    const OUT: usize = 4;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(
        s: S,
        t: &mut [S::f32s; N],
        [p0, p1, p2, p3, ..]: [usize; GRID],
    ) {
        let (y0, y1) = (t[p0], t[p1]);
        t[p1] = s.add_f32s(y0, y1);
        t[p2] = s.sub_f32s(y0, y1);
        t[p3] = s.neg_f32s(y1);
    }
}

impl Axis for GtF23 {
    const IN: usize = 3;
    const OUT: usize = 4;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(
        s: S,
        t: &mut [S::f32s; N],
        [p0, p1, p2, p3, ..]: [usize; GRID],
    ) {
        let (g0, g1, g2) = (t[p0], t[p1], t[p2]);
        let (outer, half) = (s.add_f32s(g0, g2), s.splat_f32s(0.5));
        t[p1] = s.mul_f32s(half, s.add_f32s(outer, g1));
        t[p2] = s.mul_f32s(half, s.sub_f32s(outer, g1));
        t[p3] = g2;
    }
}

impl Axis for GtF23Adjoint {
    const IN: usize = 4;
    const OUT: usize = 3;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(
        s: S,
        t: &mut [S::f32s; N],
        [p0, p1, p2, p3, ..]: [usize; GRID],
    ) {
        let (u0, u1, u2, u3) = (t[p0], t[p1], t[p2], t[p3]);
        let half = s.splat_f32s(0.5);
        let (sum, diff) = (
            s.mul_f32s(half, s.add_f32s(u1, u2)),
            s.mul_f32s(half, s.sub_f32s(u1, u2)),
        );
        t[p0] = s.add_f32s(u0, sum);
        t[p1] = diff;
        t[p2] = s.add_f32s(sum, u3);
    }
}

/// F(4x4, 3x3)'s `Bᵀ d` (6 points to 6; Lavin and Gray's points 0, ±1, ±2).
pub(super) struct BtF43;
/// The adjoint of [`BtF43`].
pub(super) struct BtF43Adjoint;
/// F(4x4, 3x3)'s `Aᵀ m` (6 points to 4).
pub(super) struct AtF43;
/// The adjoint of [`AtF43`] (4 points to 6).
pub(super) struct AtF43Adjoint;
/// F(4x4, 3x3)'s `G g` (3 points to 6).
pub(super) struct GtF43;
/// The adjoint of [`GtF43`] (6 points to 3).
pub(super) struct GtF43Adjoint;

impl Axis for BtF43 {
    const IN: usize = 6;
    const OUT: usize = 6;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], p: [usize; GRID]) {
        let (d0, d1, d2, d3, d4, d5) = (t[p[0]], t[p[1]], t[p[2]], t[p[3]], t[p[4]], t[p[5]]);
        let (four, five, two) = (s.splat_f32s(4.0), s.splat_f32s(5.0), s.splat_f32s(2.0));
        // d4 - 4 d2 ± (d3 - 4 d1), d4 - d2 ± 2 (d3 - d1)
        let outer = s.sub_f32s(d4, s.mul_f32s(four, d2));
        let inner = s.sub_f32s(d3, s.mul_f32s(four, d1));
        let near = s.sub_f32s(d4, d2);
        let far = s.mul_f32s(two, s.sub_f32s(d3, d1));
        t[p[0]] = s.add_f32s(s.sub_f32s(s.mul_f32s(four, d0), s.mul_f32s(five, d2)), d4);
        t[p[1]] = s.add_f32s(outer, inner);
        t[p[2]] = s.sub_f32s(outer, inner);
        t[p[3]] = s.add_f32s(near, far);
        t[p[4]] = s.sub_f32s(near, far);
        t[p[5]] = s.add_f32s(s.sub_f32s(s.mul_f32s(four, d1), s.mul_f32s(five, d3)), d5);
    }
}

impl Axis for BtF43Adjoint {
    const IN: usize = 6;
    const OUT: usize = 6;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], p: [usize; GRID]) {
        let (v0, v1, v2, v3, v4, v5) = (t[p[0]], t[p[1]], t[p[2]], t[p[3]], t[p[4]], t[p[5]]);
        let (four, five, two) = (s.splat_f32s(4.0), s.splat_f32s(5.0), s.splat_f32s(2.0));
        let (sum12, diff21) = (s.add_f32s(v1, v2), s.sub_f32s(v2, v1));
        let (sum34, diff43) = (s.add_f32s(v3, v4), s.sub_f32s(v4, v3));
        t[p[0]] = s.mul_f32s(four, v0);
        // -4 v1 + 4 v2 - 2 v3 + 2 v4 + 4 v5
        t[p[1]] = s.add_f32s(
            s.mul_f32s(four, s.add_f32s(diff21, v5)),
            s.mul_f32s(two, diff43),
        );
        // -5 v0 - 4 (v1 + v2) - (v3 + v4)
        t[p[2]] = s.neg_f32s(s.add_f32s(
            s.add_f32s(s.mul_f32s(five, v0), s.mul_f32s(four, sum12)),
            sum34,
        ));
        // (v1 - v2) + 2 (v3 - v4) - 5 v5
        t[p[3]] = s.sub_f32s(
            s.sub_f32s(s.neg_f32s(diff21), s.mul_f32s(two, diff43)),
            s.mul_f32s(five, v5),
        );
        t[p[4]] = s.add_f32s(s.add_f32s(v0, sum12), sum34);
        t[p[5]] = v5;
    }
}

impl Axis for AtF43 {
    const IN: usize = 6;
    const OUT: usize = 4;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], p: [usize; GRID]) {
        let (m0, m1, m2, m3, m4, m5) = (t[p[0]], t[p[1]], t[p[2]], t[p[3]], t[p[4]], t[p[5]]);
        let (two, four, eight) = (s.splat_f32s(2.0), s.splat_f32s(4.0), s.splat_f32s(8.0));
        let (a, b) = (s.add_f32s(m1, m2), s.sub_f32s(m1, m2));
        let (c, d) = (s.add_f32s(m3, m4), s.sub_f32s(m3, m4));
        t[p[0]] = s.add_f32s(s.add_f32s(m0, a), c);
        t[p[1]] = s.add_f32s(b, s.mul_f32s(two, d));
        t[p[2]] = s.add_f32s(a, s.mul_f32s(four, c));
        t[p[3]] = s.add_f32s(s.add_f32s(b, s.mul_f32s(eight, d)), m5);
    }
}

impl Axis for AtF43Adjoint {
    const IN: usize = 4;
    const OUT: usize = 6;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], p: [usize; GRID]) {
        let (y0, y1, y2, y3) = (t[p[0]], t[p[1]], t[p[2]], t[p[3]]);
        let (two, four, eight) = (s.splat_f32s(2.0), s.splat_f32s(4.0), s.splat_f32s(8.0));
        let (even1, odd1) = (s.add_f32s(y0, y2), s.add_f32s(y1, y3));
        let even2 = s.add_f32s(y0, s.mul_f32s(four, y2));
        let odd2 = s.add_f32s(s.mul_f32s(two, y1), s.mul_f32s(eight, y3));
        t[p[0]] = y0;
        t[p[1]] = s.add_f32s(even1, odd1);
        t[p[2]] = s.sub_f32s(even1, odd1);
        t[p[3]] = s.add_f32s(even2, odd2);
        t[p[4]] = s.sub_f32s(even2, odd2);
        t[p[5]] = y3;
    }
}

impl Axis for GtF43 {
    const IN: usize = 3;
    const OUT: usize = 6;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], p: [usize; GRID]) {
        let (g0, g1, g2) = (t[p[0]], t[p[1]], t[p[2]]);
        let outer = s.add_f32s(g0, g2);
        let sixth = s.splat_f32s(1.0 / 6.0);
        // (g0 / 4 + g2) / 6 ± g1 / 12
        let quarter_outer = s.mul_f32s(sixth, s.add_f32s(s.mul_f32s(s.splat_f32s(0.25), g0), g2));
        let half_g1 = s.mul_f32s(s.splat_f32s(1.0 / 12.0), g1);
        t[p[0]] = s.mul_f32s(s.splat_f32s(0.25), g0);
        t[p[1]] = s.neg_f32s(s.mul_f32s(sixth, s.add_f32s(outer, g1)));
        t[p[2]] = s.neg_f32s(s.mul_f32s(sixth, s.sub_f32s(outer, g1)));
        t[p[3]] = s.add_f32s(quarter_outer, half_g1);
        t[p[4]] = s.sub_f32s(quarter_outer, half_g1);
        t[p[5]] = g2;
    }
}

impl Axis for GtF43Adjoint {
    const IN: usize = 6;
    const OUT: usize = 3;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], p: [usize; GRID]) {
        let (u0, u1, u2, u3, u4, u5) = (t[p[0]], t[p[1]], t[p[2]], t[p[3]], t[p[4]], t[p[5]]);
        let sixth = s.splat_f32s(1.0 / 6.0);
        let (sum12, diff21) = (s.add_f32s(u1, u2), s.sub_f32s(u2, u1));
        let (sum34, diff34) = (s.add_f32s(u3, u4), s.sub_f32s(u3, u4));
        // u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24
        t[p[0]] = s.add_f32s(
            s.mul_f32s(s.splat_f32s(0.25), u0),
            s.mul_f32s(
                sixth,
                s.sub_f32s(s.mul_f32s(s.splat_f32s(0.25), sum34), sum12),
            ),
        );
        // (u2 - u1) / 6 + (u3 - u4) / 12
        t[p[1]] = s.mul_f32s(
            sixth,
            s.add_f32s(diff21, s.mul_f32s(s.splat_f32s(0.5), diff34)),
        );
        // (u3 + u4 - u1 - u2) / 6 + u5
        t[p[2]] = s.add_f32s(s.mul_f32s(sixth, s.sub_f32s(sum34, sum12)), u5);
    }
}

/// F(2x2, 2x2)'s `Bᵀ d` (3 points to 3).
pub(super) struct BtF22;
/// The adjoint of [`BtF22`].
pub(super) struct BtF22Adjoint;
/// F(2x2, 2x2)'s `Aᵀ m` (3 points to 2).
pub(super) struct AtF22;
/// The adjoint of [`AtF22`] (2 points to 3).
pub(super) struct AtF22Adjoint;
/// F(2x2, 2x2)'s `G g` (2 points to 3).
pub(super) struct GtF22;
/// The adjoint of [`GtF22`] (3 points to 2).
pub(super) struct GtF22Adjoint;

impl Axis for BtF22 {
    const IN: usize = 3;
    const OUT: usize = 3;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], [p0, p1, p2, ..]: [usize; GRID]) {
        let (d0, d1, d2) = (t[p0], t[p1], t[p2]);
        t[p0] = s.sub_f32s(d0, d1);
        t[p2] = s.sub_f32s(d2, d1);
    }
}

impl Axis for BtF22Adjoint {
    const IN: usize = 3;
    const OUT: usize = 3;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], [p0, p1, p2, ..]: [usize; GRID]) {
        let (v0, v1, v2) = (t[p0], t[p1], t[p2]);
        t[p1] = s.sub_f32s(v1, s.add_f32s(v0, v2));
    }
}

impl Axis for AtF22 {
    const IN: usize = 3;
    const OUT: usize = 2;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], [p0, p1, p2, ..]: [usize; GRID]) {
        let (m0, m1, m2) = (t[p0], t[p1], t[p2]);
        t[p0] = s.add_f32s(m0, m1);
        t[p1] = s.add_f32s(m1, m2);
    }
}

impl Axis for AtF22Adjoint {
    const IN: usize = 2;
    const OUT: usize = 3;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], [p0, p1, p2, ..]: [usize; GRID]) {
        let (y0, y1) = (t[p0], t[p1]);
        t[p1] = s.add_f32s(y0, y1);
        t[p2] = y1;
    }
}

impl Axis for GtF22 {
    const IN: usize = 2;
    const OUT: usize = 3;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], [p0, p1, p2, ..]: [usize; GRID]) {
        let (g0, g1) = (t[p0], t[p1]);
        t[p1] = s.add_f32s(g0, g1);
        t[p2] = g1;
    }
}

impl Axis for GtF22Adjoint {
    const IN: usize = 3;
    const OUT: usize = 2;
    #[inline(always)]
    fn apply<S: Simd, const N: usize>(s: S, t: &mut [S::f32s; N], [p0, p1, p2, ..]: [usize; GRID]) {
        let (u0, u1, u2) = (t[p0], t[p1], t[p2]);
        t[p0] = s.add_f32s(u0, u1);
        t[p1] = s.add_f32s(u1, u2);
    }
}

/// `src` (at most one vector) as a vector, zero past its end: a plain load when it fills the
/// vector (pulp's masked load is a call).
#[inline(always)]
fn load<S: Simd>(s: S, src: &[f32]) -> S::f32s {
    match S::as_simd_f32s(src).0.first() {
        Some(&full) => full,
        None => s.partial_load_f32s(src),
    }
}

/// Stores the first `dst.len()` lanes of `value` (at most one vector).
#[inline(always)]
fn store<S: Simd>(s: S, dst: &mut [f32], value: S::f32s) {
    match S::as_mut_simd_f32s(dst).0.first_mut() {
        Some(full) => *full = value,
        None => s.partial_store_f32s(dst, value),
    }
}

/// Where an `α x α` input tile lies in its image: its pixel `(i, j)` starts at
/// `at + (i - rows.0) * row_step + (j - cols.0) * col_step` for `i` in `rows.0..rows.1` and
/// `j` in `cols.0..cols.1`, the tile's rows and columns inside the image; the others lie on
/// padding (zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    /// Where pixel `(rows.0, cols.0)` starts.
    pub at: usize,
    pub row_step: usize,
    pub col_step: usize,
    pub rows: (usize, usize),
    pub cols: (usize, usize),
}

impl Window {
    /// Where pixel `(i, j)` of the tile starts, if it lies inside the image.
    #[inline(always)]
    fn pixel(&self, i: usize, j: usize) -> Option<usize> {
        let inside =
            (self.rows.0..self.rows.1).contains(&i) && (self.cols.0..self.cols.1).contains(&j);
        inside.then(|| {
            self.at + (i - self.rows.0) * self.row_step + (j - self.cols.0) * self.col_step
        })
    }
}

/// The transform `Bᵀ d B` of one tile's input channels `lanes`, into the tile's `[ξ][c_s]`
/// slice.
///
/// The steps of [`two_d`] (`Bᵀ` along each column, then along each row) on the same values,
/// so the same bits, but a column at a time straight from the image and a row at a time
/// straight to `out`, without the whole tile as one array zeroed first.
#[inline(always)]
pub(super) fn input_tile<S: Simd, V: Variant>(
    s: S,
    image: &[f32],
    window: Window,
    lanes: Lanes,
    out: &mut [f32],
    c_s: usize,
) {
    let zero = s.splat_f32s(0.0);
    let mut mid = [[zero; GRID]; GRID];
    let slots: [usize; GRID] = std::array::from_fn(|k| k);
    for j in 0..V::ALPHA {
        let mut column = [zero; GRID];
        for (i, value) in column.iter_mut().enumerate().take(V::ALPHA) {
            if let Some(at) = window.pixel(i, j) {
                *value = load(s, &image[at + lanes.start..][..lanes.len]);
            }
        }
        <V::Bt as Axis>::apply(s, &mut column, slots);
        for (row, &value) in mid.iter_mut().zip(&column).take(V::ALPHA) {
            row[j] = value;
        }
    }
    for (i, row) in mid.iter_mut().enumerate().take(V::ALPHA) {
        <V::Bt as Axis>::apply(s, row, slots);
        for (j, &value) in row.iter().enumerate().take(V::ALPHA) {
            let xi = i * V::ALPHA + j;
            store(s, &mut out[xi * c_s + lanes.start..][..lanes.width], value);
        }
    }
}

/// Where one tile's rows lie in a `[ξ][tile][len_s]` matrix: (tile, floats from one ξ's block
/// to the next, len_s); row ξ of the tile starts at `ξ * stride + tile * len_s`.
pub(super) type Place = (usize, usize, usize);

/// The `α²` vectors of `lanes` of one tile in a `[ξ][tile][len_s]` matrix.
#[inline(always)]
fn load_tile<S: Simd, V: Variant>(
    s: S,
    m: &[f32],
    (tile, stride, len_s): Place,
    lanes: Lanes,
) -> Tile<S> {
    let mut t: Tile<S> = zeroed_tile(s);
    for xi in 0..V::XI {
        let at = xi * stride + tile * len_s + lanes.start;
        t[slot::<V>(xi)] = load(s, &m[at..][..lanes.width]);
    }
    t
}

/// Output transform, bias, relu and 2x2 max of one tile's filters `lanes`.
#[inline(always)]
pub(super) fn output_tile<S: Simd, V: Variant>(
    s: S,
    m: &[f32],
    place: Place,
    lanes: Lanes,
    bias: Option<&[f32]>,
    (pooled, arg): (&mut [f32], Option<&mut [u16]>),
    relu: bool,
) {
    let mut y = load_tile::<S, V>(s, m, place, lanes);
    two_d::<S, V::At>(s, &mut y);
    // The window's taps in the pool's order (0, 0), (0, 1), (1, 0), (1, 1); ties keep the
    // first, as the direct path does.
    let (mut best, mut winner) = (y[0], s.splat_f32s(0.0));
    for (tap, slot) in [(1.0, 1), (2.0, GRID), (3.0, GRID + 1)] {
        let better = s.greater_than_f32s(y[slot], best);
        best = s.select_f32s(better, y[slot], best);
        winner = s.select_f32s(better, s.splat_f32s(tap), winner);
    }
    let (real, len) = (lanes.start..lanes.start + lanes.len, lanes.len);
    if let Some(bias) = bias {
        best = s.add_f32s(best, load(s, &bias[real.clone()]));
    }
    if relu {
        let dead = s.less_than_or_equal_f32s(best, s.splat_f32s(0.0));
        best = s.select_f32s(dead, s.splat_f32s(0.0), best);
        winner = s.select_f32s(dead, s.splat_f32s(f32::from(NO_WINNER)), winner);
    }
    store(s, &mut pooled[real.clone()], best);
    if let Some(arg) = arg {
        let mut winners = [0.0f32; MAX_LANES];
        store(s, &mut winners[..len.min(MAX_LANES)], winner);
        for (a, w) in arg[real].iter_mut().zip(winners) {
            *a = w as u16;
        }
    }
}

/// Lanes of the widest vector [`pulp`] offers (AVX-512: 16 `f32`).
const MAX_LANES: usize = 16;

/// The pooled gradient of one tile's filters `lanes` spread to its winners (`dY`), into
/// `dM = A dY Aᵀ`; adds the bias gradient.
#[inline(always)]
pub(super) fn grad_tile<S: Simd, V: Variant>(
    s: S,
    (go, arg): (&[f32], &[u16]),
    lanes: Lanes,
    db: &mut [f32],
    dm: &mut [f32],
    place: Place,
) {
    let real = lanes.start..lanes.start + lanes.len;
    let g = load(s, &go[real.clone()]);
    let mut winners = [f32::from(NO_WINNER); MAX_LANES];
    for (w, &a) in winners.iter_mut().zip(&arg[real]) {
        *w = f32::from(a);
    }
    let winner = load(s, &winners[..lanes.width.min(MAX_LANES)]);
    let zero = s.splat_f32s(0.0);
    let mut d: Tile<S> = zeroed_tile(s);
    for (tap, slot) in [(0.0, 0), (1.0, 1), (2.0, GRID), (3.0, GRID + 1)] {
        d[slot] = s.select_f32s(s.equal_f32s(winner, s.splat_f32s(tap)), g, zero);
    }
    add_grad_tile::<S, V>(s, d, lanes, db, dm, place);
}

/// Adds the bias gradient of a tile's output gradient `dY` (filters `lanes`, in the top-left
/// `m x m` slots) into `db` and writes `dM = A dY Aᵀ` into the tile's rows of `dm`.
#[inline(always)]
fn add_grad_tile<S: Simd, V: Variant>(
    s: S,
    mut d: Tile<S>,
    lanes: Lanes,
    db: &mut [f32],
    dm: &mut [f32],
    (tile, stride, f_s): Place,
) {
    // A plain loop, not `Iterator::fold`: the closure of a `fold` is compiled outside this
    // function's target features, so every vector add became a call (8% of a 16-channel
    // layer's training step).
    let passed = if V::M == 2 {
        s.add_f32s(s.add_f32s(d[0], d[1]), s.add_f32s(d[GRID], d[GRID + 1]))
    } else {
        let mut sum = s.splat_f32s(0.0);
        for k in 0..V::M * V::M {
            sum = s.add_f32s(sum, d[(k / V::M) * GRID + k % V::M]);
        }
        sum
    };
    let db = &mut db[lanes.start..][..lanes.len];
    store(s, db, s.add_f32s(load(s, db), passed));
    two_d::<S, V::AtAdjoint>(s, &mut d);
    for xi in 0..V::XI {
        let at = xi * stride + tile * f_s + lanes.start;
        store(s, &mut dm[at..][..lanes.width], d[slot::<V>(xi)]);
    }
}

/// Where the output pixels of one tile of the plain convolution lie in a slice of its NHWC
/// output (or output gradient): pixel `(i, j)` of the tile starts at
/// `at + i * row_step + j * col_step`, for `i < rows` and `j < cols` (the tile size each, but
/// fewer on the last tile row or column of an output that is not a whole number of tiles).
#[derive(Clone, Copy)]
pub(super) struct Pixels {
    /// Where the tile's top-left pixel starts.
    pub at: usize,
    /// From one output row to the next.
    pub row_step: usize,
    /// From one output pixel to the next (the filters).
    pub col_step: usize,
    /// The tile's rows and columns inside the output.
    pub rows: usize,
    pub cols: usize,
}

impl Pixels {
    /// The slot (`GRID i + j`) and start of each of the tile's pixels inside the output, row by
    /// row.
    #[inline(always)]
    fn inside(self) -> impl Iterator<Item = (usize, usize)> {
        (0..self.rows).flat_map(move |i| {
            (0..self.cols).map(move |j| {
                (
                    GRID * i + j,
                    self.at + i * self.row_step + j * self.col_step,
                )
            })
        })
    }
}

/// What finishes each output pixel of the plain convolution: `bias` (per filter) and
/// `residual` (the output slice's shape) added, then clamped to `bounds` (lo, hi).
#[derive(Clone, Copy)]
pub(super) struct Epilogue<'a> {
    /// One bias per filter.
    pub bias: Option<&'a [f32]>,
    /// Added before the clamp, laid out as the output slice written.
    pub residual: Option<&'a [f32]>,
    /// The activation's clamp (relu: `(0, inf)`, relu6: `(0, 6)`).
    pub bounds: Option<(f32, f32)>,
}

/// Output transform of one tile's filters `lanes` for the plain convolution, finished by the
/// epilogue and written to the tile's pixels inside the output; `mask` (when given) records
/// `lo < out < hi` (everywhere, without bounds).
#[inline(always)]
pub(super) fn conv_output_tile<S: Simd, V: Variant>(
    s: S,
    m: &[f32],
    place: Place,
    lanes: Lanes,
    px: Pixels,
    epilogue: Epilogue<'_>,
    (out, mut mask): (&mut [f32], Option<&mut [u8]>),
) {
    let mut y = load_tile::<S, V>(s, m, place, lanes);
    two_d::<S, V::At>(s, &mut y);
    let (start, len) = (lanes.start, lanes.len);
    let bias = epilogue.bias.map(|b| load(s, &b[start..][..len]));
    let (lo, hi) = epilogue
        .bounds
        .unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    for (slot, at) in px.inside() {
        let at = at + start;
        let mut value = y[slot];
        if let Some(bias) = bias {
            value = s.add_f32s(value, bias);
        }
        if let Some(residual) = epilogue.residual {
            value = s.add_f32s(value, load(s, &residual[at..][..len]));
        }
        if epilogue.bounds.is_some() {
            value = s.max_f32s(value, s.splat_f32s(lo));
            value = s.min_f32s(value, s.splat_f32s(hi));
        }
        let dst = &mut out[at..][..len];
        store(s, dst, value);
        if let Some(mask) = mask.as_deref_mut() {
            // Clamped values lie in [lo, hi]: strictly inside exactly where they were.
            for (m, &o) in mask[at..][..len].iter_mut().zip(&*dst) {
                *m = u8::from(o > lo && o < hi);
            }
        }
    }
}

/// The plain convolution's output gradient of one tile's filters `lanes` (`dY`: its pixels
/// read from `grad` as `px` places them, zero outside the output), into `dM = A dY Aᵀ`; adds
/// the bias gradient.
#[inline(always)]
pub(super) fn conv_grad_tile<S: Simd, V: Variant>(
    s: S,
    (grad, px): (&[f32], Pixels),
    lanes: Lanes,
    db: &mut [f32],
    dm: &mut [f32],
    place: Place,
) {
    let mut d: Tile<S> = zeroed_tile(s);
    for (slot, at) in px.inside() {
        d[slot] = load(s, &grad[at + lanes.start..][..lanes.len]);
    }
    add_grad_tile::<S, V>(s, d, lanes, db, dm, place);
}

/// `B dV Bᵀ` of one tile's channels `lanes`, added into the input pixels it covers.
///
/// As [`input_tile`]: the steps of [`two_d`], a column of `dV` at a time from `dv` and a row
/// at a time into the image's gradient.
#[inline(always)]
pub(super) fn input_grad_tile<S: Simd, V: Variant>(
    s: S,
    dv: &[f32],
    (tile, stride, len_s): Place,
    lanes: Lanes,
    window: Window,
    grad_image: &mut [f32],
) {
    let zero = s.splat_f32s(0.0);
    let mut mid = [[zero; GRID]; GRID];
    let slots: [usize; GRID] = std::array::from_fn(|k| k);
    for j in 0..V::ALPHA {
        let mut column = [zero; GRID];
        for (i, value) in column.iter_mut().enumerate().take(V::ALPHA) {
            let at = (i * V::ALPHA + j) * stride + tile * len_s + lanes.start;
            *value = load(s, &dv[at..][..lanes.width]);
        }
        <V::BtAdjoint as Axis>::apply(s, &mut column, slots);
        for (row, &value) in mid.iter_mut().zip(&column).take(V::ALPHA) {
            row[j] = value;
        }
    }
    for (i, row) in mid.iter_mut().enumerate().take(V::ALPHA) {
        <V::BtAdjoint as Axis>::apply(s, row, slots);
        for (j, &value) in row.iter().enumerate().take(V::ALPHA) {
            if let Some(at) = window.pixel(i, j) {
                let dst = &mut grad_image[at + lanes.start..][..lanes.len];
                store(s, dst, s.add_f32s(load(s, dst), value));
            }
        }
    }
}

/// `U = G g Gᵀ` as `[ξ][c_in][f_s]` (padding filters 0), in a pooled buffer (every value is
/// written; give it back with [`buffers::give`]).
pub(super) fn transform_weight<V: Variant>(t: &Tiles, weight: &[f32]) -> Vec<f32> {
    let mut u = buffers::take(V::XI * t.c_in * t.f_s);
    Arch::new().dispatch(TransformWeight::<V> {
        variant: PhantomData,
        t,
        weight,
        u: &mut u,
    });
    u
}

/// `Uᵀ` as `[ξ][filters][c_s]` (padding channels 0): the weight with its channels and filters
/// swapped (`r² x filters x c_in`), transformed as [`transform_weight`] transforms a weight.
/// Each value is the same transform of the same nine taps as in `U`, so the same bits. Swapping
/// the weight moves `r² c_in filters` values; transposing `U` moved `α²/r²` times as many (4 for
/// F(4x4, 3x3)), one at a time across its rows, on every backward pass.
pub(super) fn transform_weight_transposed<V: Variant>(t: &Tiles, weight: &[f32]) -> Vec<f32> {
    let mut swapped_weight = Vec::with_capacity(weight.len());
    for tap in weight.chunks_exact(t.c_in * t.filters) {
        swapped_weight.extend(transpose_padded(tap, t.c_in, t.filters, t.c_in));
    }
    let swapped = Tiles {
        c_in: t.filters,
        filters: t.c_in,
        c_s: t.f_s,
        f_s: t.c_s,
        ..*t
    };
    transform_weight::<V>(&swapped, &swapped_weight)
}

/// Writes `Gᵀ dU G`, the filter gradient, over the HWIO `grad_weight` (every value); `du` is
/// `[c_in][ξ][f_s]`.
pub(super) fn write_weight_gradient<V: Variant>(t: &Tiles, du: &[f32], grad_weight: &mut [f32]) {
    Arch::new().dispatch(WriteWeightGradient::<V> {
        variant: PhantomData,
        t,
        du,
        grad_weight,
    });
}

/// Input channels [`TransformWeight`] transforms before it writes them to `U`.
const STAGED_CHANNELS: usize = 4;

/// `G g Gᵀ` of every filter, by vectors of filters: an HWIO weight keeps the filters of one
/// tap and channel contiguous, as `U` does. Run through [`pulp`] (see the module doc).
struct TransformWeight<'a, V> {
    variant: PhantomData<V>,
    t: &'a Tiles,
    weight: &'a [f32],
    u: &'a mut [f32],
}

impl<V: Variant> WithSimd for TransformWeight<'_, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Self { t, weight, u, .. } = self;
        // A few channels at a time go to `staged` as `[c][ξ][f_s]`, then to `U` a position at
        // a time. Written straight to `U`, one channel's `α²` positions were `c_in f_s`
        // floats apart (16 KB for 64 channels and filters): every store landed in the same
        // few cache sets, and a 64x64 layer's transform took about 100 µs.
        let row = t.f_s;
        let mut staged = buffers::take(STAGED_CHANNELS * V::XI * row);
        for c0 in (0..t.c_in).step_by(STAGED_CHANNELS) {
            let channels = STAGED_CHANNELS.min(t.c_in - c0);
            for dc in 0..channels {
                let c = c0 + dc;
                for (f0, width) in chunks(row, S::F32_LANES) {
                    let lanes = Lanes::new(f0, width, t.filters);
                    let mut g: Tile<S> = zeroed_tile(s);
                    for k in 0..V::R * V::R {
                        let at = (k * t.c_in + c) * t.filters + lanes.start;
                        g[(k / V::R) * GRID + k % V::R] = load(s, &weight[at..][..lanes.len]);
                    }
                    two_d::<S, V::Gt>(s, &mut g);
                    for xi in 0..V::XI {
                        let at = (dc * V::XI + xi) * row + lanes.start;
                        store(s, &mut staged[at..][..lanes.width], g[slot::<V>(xi)]);
                    }
                }
            }
            for xi in 0..V::XI {
                let out = &mut u[(xi * t.c_in + c0) * row..][..channels * row];
                for (dc, out) in out.chunks_exact_mut(row).enumerate() {
                    out.copy_from_slice(&staged[(dc * V::XI + xi) * row..][..row]);
                }
            }
        }
        buffers::give(staged);
    }
}

/// `Gᵀ dU G` of every filter written over the HWIO weight gradient, by vectors of filters
/// (see [`TransformWeight`]).
struct WriteWeightGradient<'a, V> {
    variant: PhantomData<V>,
    t: &'a Tiles,
    du: &'a [f32],
    grad_weight: &'a mut [f32],
}

impl<V: Variant> WithSimd for WriteWeightGradient<'_, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Self {
            t, du, grad_weight, ..
        } = self;
        for c in 0..t.c_in {
            for (f0, width) in chunks(t.f_s, S::F32_LANES) {
                let lanes = Lanes::new(f0, width, t.filters);
                // Built at once rather than zeroed and then loaded: zeroing the tile first
                // (36 vectors, more than the registers) was a run of stores to the stack on
                // every filter vector; the 8x8 layers of `resnet_small` took 38 instead of 31
                // microseconds an image here with it.
                let zero = s.splat_f32s(0.0);
                let mut d: Tile<S> = std::array::from_fn(|at| {
                    let (i, j) = (at / GRID, at % GRID);
                    if i < V::ALPHA && j < V::ALPHA {
                        let at = (c * V::XI + V::ALPHA * i + j) * t.f_s + lanes.start;
                        load(s, &du[at..][..lanes.width])
                    } else {
                        zero
                    }
                });
                two_d::<S, V::GtAdjoint>(s, &mut d);
                for k in 0..V::R * V::R {
                    let at = (k * t.c_in + c) * t.filters + lanes.start;
                    let dst = &mut grad_weight[at..][..lanes.len];
                    store(s, dst, d[(k / V::R) * GRID + k % V::R]);
                }
            }
        }
    }
}
