//! The arithmetic of a grouped 2-D convolution on NHWC slices, two ways.
//!
//! Wide groups (`Path::Gemm`): im2col in group order, one product per group and block of
//! pixels, and the transposed products backward. A pixel's patch is laid out
//! `[group][tap][channel of the group]`, so that group `g`'s patches are the contiguous columns
//! `g * K_g .. (g + 1) * K_g` (`K_g = k_h * k_w * c_in / groups`) of the patch matrix, a plain
//! strided operand for the `gemm` crate; products write straight into the group's columns of
//! the output (row stride `filters`).
//!
//! Narrow or many groups (`Path::Lanes`, e.g. ResNeXt's 32 groups of 4 channels), whose
//! products are too small for `gemm`: for each of the `c_in / groups` input channels `k` of a
//! group, a depthwise convolution over all filters at once of a "wide" input in which filter
//! `f`'s lane holds channel `(f / fg) * cg + k`, by the depthwise kernels
//! ([`crate::backend::ops::depthwise_kernels`]), vectorised over filters.
//!
//! Weights are a `(groups * K_g, filters / groups)` row-major matrix: group `g`'s HWIO matrix
//! in rows `g * K_g ..`. Both paths sum every gradient in a fixed order.

use crate::backend::ops::conv_kernels::sized;
use crate::backend::ops::depthwise_kernels::{
    self as dk, DepthwiseGeometry, DwScratch, Plans, Source,
};
use crate::backend::ops::geometry::Window2;
use crate::backend::ops::matmul::View;
use crate::backend::ops::reduce::{add_pairs, fold_in_order, fold_in_order_by};
use crate::backend::ops::simd;
use gemm::Parallelism;
use rayon::prelude::*;
use std::ops::Range;

/// Output pixels per block: large enough for the products, small enough to stay in L2.
const PIXELS_PER_BLOCK: usize = 256;

/// Everything the kernels need to know about one grouped convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupedGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels (all groups).
    pub c_in: usize,
    /// Output channels (all groups).
    pub filters: usize,
    /// Groups; divides `c_in` and `filters`.
    pub groups: usize,
    /// Window placement on the image.
    pub window: Window2,
}

impl GroupedGeometry {
    /// Input channels per group.
    pub fn group_in(&self) -> usize {
        self.c_in / self.groups
    }
    /// Filters per group.
    pub fn group_filters(&self) -> usize {
        self.filters / self.groups
    }
    /// Kernel taps `k_h * k_w`.
    pub fn taps(&self) -> usize {
        self.window.rows.kernel * self.window.cols.kernel
    }
    /// Patch length of one group: `taps * c_in / groups`.
    pub fn group_k(&self) -> usize {
        self.taps() * self.group_in()
    }
    /// Patch length of all groups: `taps * c_in`.
    pub fn k(&self) -> usize {
        self.taps() * self.c_in
    }
    /// The weight matrix's shape: `(groups * K_g, filters / groups)`.
    pub fn weight_shape(&self) -> (usize, usize) {
        (self.groups * self.group_k(), self.group_filters())
    }
    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.window.rows.input * self.window.cols.input * self.c_in
    }
    /// Elements of one output row.
    pub fn out_row(&self) -> usize {
        self.window.cols.output * self.filters
    }
    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.window.rows.output * self.out_row()
    }
    /// Output rows per block.
    fn rows_per_block(&self) -> usize {
        (PIXELS_PER_BLOCK / self.window.cols.output.max(1)).max(1)
    }
    /// Whether the channel counts are consistent (groups divide both).
    pub fn is_valid(&self) -> bool {
        self.groups > 0
            && self.c_in.is_multiple_of(self.groups)
            && self.filters.is_multiple_of(self.groups)
    }
}

/// Writes the group-ordered patches of output rows `rows` (all columns) of one image.
fn im2col(g: &GroupedGeometry, image: &[f32], rows: std::ops::Range<usize>, patches: &mut [f32]) {
    let (wr, wc) = (g.window.rows, g.window.cols);
    let (cg, kg, k, kw) = (g.group_in(), g.group_k(), g.k(), wc.kernel);
    let width = wc.output;
    for (p, patch) in patches.chunks_exact_mut(k).enumerate() {
        let (y, x) = (rows.start + p / width, p % width);
        for i in 0..wr.kernel {
            let iy = wr.source(y, i);
            for j in 0..kw {
                let tap = (i * kw + j) * cg;
                let pixel = iy
                    .zip(wc.source(x, j))
                    .map(|(iy, ix)| &image[(iy * wc.input + ix) * g.c_in..][..g.c_in]);
                for gi in 0..g.groups {
                    let dst = &mut patch[gi * kg + tap..][..cg];
                    match pixel {
                        Some(px) => dst.copy_from_slice(&px[gi * cg..][..cg]),
                        None => dst.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Adds group-ordered patch gradients of output rows `rows` back onto one image's gradient.
fn col2im(
    g: &GroupedGeometry,
    grad_patches: &[f32],
    rows: std::ops::Range<usize>,
    grad: &mut [f32],
) {
    let (wr, wc) = (g.window.rows, g.window.cols);
    let (cg, kg, k, kw) = (g.group_in(), g.group_k(), g.k(), wc.kernel);
    let width = wc.output;
    for (p, patch) in grad_patches.chunks_exact(k).enumerate() {
        let (y, x) = (rows.start + p / width, p % width);
        for i in 0..wr.kernel {
            let Some(iy) = wr.source(y, i) else {
                continue;
            };
            for j in 0..kw {
                let Some(ix) = wc.source(x, j) else {
                    continue;
                };
                let tap = (i * kw + j) * cg;
                let px = &mut grad[(iy * wc.input + ix) * g.c_in..][..g.c_in];
                for gi in 0..g.groups {
                    px[gi * cg..][..cg]
                        .iter_mut()
                        .zip(&patch[gi * kg + tap..][..cg])
                        .for_each(|(d, s)| *d += s);
                }
            }
        }
    }
}

/// `dst (m x n, rows `dst_stride` apart) [+]= lhs (m x k) * rhs (k x n)` on one thread.
///
/// # Panics
/// When a view or the destination is too short for the extents.
fn gemm_into(
    dst: &mut [f32],
    dst_stride: usize,
    (m, n, k): (usize, usize, usize),
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= dst_stride && (m - 1) * dst_stride + n <= dst.len(),
        "destination too small"
    );
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_stride)
                .take(m)
                .for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let fits = |v: &View<'_>, rows: usize, cols: usize| {
        (rows - 1) * v.row_stride + (cols - 1) * v.col_stride < v.data.len()
    };
    assert!(fits(&lhs, m, k), "left operand out of bounds");
    assert!(fits(&rhs, k, n), "right operand out of bounds");
    // SAFETY: the views were bounds-checked above for the (m, k) and (k, n) extents gemm
    // reads, the destination for (m, n) with rows `dst_stride` apart; `dst` is borrowed
    // mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
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
            Parallelism::None,
        )
    }
}

fn check_lengths(g: &GroupedGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) {
    assert!(
        g.is_valid(),
        "groups must divide the channels and the filters"
    );
    assert_eq!(
        input.len(),
        g.batch * g.in_image(),
        "input of the wrong length"
    );
    let (rows, cols) = g.weight_shape();
    assert_eq!(weight.len(), rows * cols, "weight of the wrong length");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), g.filters, "bias of the wrong length");
    }
}

/// Forward: `out = grouped_conv(input, weight) + bias` (`batch x out_image`), before any
/// activation.
///
/// # Panics
/// When a slice does not match the geometry.
pub fn forward(
    g: &GroupedGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    match Path::of(g) {
        Path::Gemm => gemm_forward(g, input, weight, bias, out),
        Path::Lanes => lanes_forward(g, input, weight, bias, out),
    }
}

/// Gradients of a grouped convolution, given the output gradient (already through the
/// activation).
///
/// Adds into `grad_weight` (`groups * K_g x filters / groups`), `grad_bias` (`filters`) and,
/// when given, `grad_input`; every sum has a fixed order, whatever the thread count.
///
/// # Panics
/// When a slice does not match the geometry.
pub fn backward(
    g: &GroupedGeometry,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    let args = (grad_out, grad_input, grad_weight, grad_bias);
    match Path::of(g) {
        Path::Gemm => gemm_backward(g, input, weight, args),
        Path::Lanes => lanes_backward(g, input, weight, args),
    }
}

/// How a grouped convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// One product per group and block of pixels.
    Gemm,
    /// As `c_in / groups` depthwise convolutions over all filters (see [`lanes_forward`]).
    Lanes,
}

impl Path {
    /// Narrow or many groups make products too small for `gemm`, whose per-call cost then
    /// dominates; their convolution runs through the depthwise kernels instead. Measured on
    /// 28x28 images, batch 32, 3x3 (2 cores, AVX-512, forward + backward): 32 groups of 4
    /// channels to 4 filters 2.1x faster, 16 of 16 to 16 1.4x, 16 of 8 to 8 1.2x; 8 groups of
    /// 16 to 16 1.6x slower, so those stay products.
    fn of(g: &GroupedGeometry) -> Path {
        let narrow = (g.group_filters() <= LANES_MAX_FILTERS && g.groups >= LANES_NARROW_GROUPS)
            || g.groups >= LANES_MIN_GROUPS;
        if narrow && g.group_in() <= LANES_MAX_IN {
            Path::Lanes
        } else {
            Path::Gemm
        }
    }
}

/// Groups of at most this many filters take [`Path::Lanes`] ...
const LANES_MAX_FILTERS: usize = 8;
/// ... when there are at least this many (fewer, larger products still suit `gemm`) ...
const LANES_NARROW_GROUPS: usize = 4;
/// ... as do this many groups or more ...
const LANES_MIN_GROUPS: usize = 16;
/// ... when the groups have at most this many input channels (one pass over the filters
/// each).
const LANES_MAX_IN: usize = 16;

/// The product path of [`forward`].
fn gemm_forward(
    g: &GroupedGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    check_lengths(g, input, weight, bias);
    assert_eq!(
        out.len(),
        g.batch * g.out_image(),
        "output of the wrong length"
    );
    if out.is_empty() {
        return;
    }
    let (k, kg, f, fg) = (g.k(), g.group_k(), g.filters, g.group_filters());
    let block_rows = g.rows_per_block();
    out.par_chunks_mut(g.out_image())
        .zip(input.par_chunks(g.in_image()))
        .for_each(|(out_image, image)| {
            out_image
                .par_chunks_mut(block_rows * g.out_row())
                .enumerate()
                .for_each(|(b, block)| {
                    let y0 = b * block_rows;
                    let pixels = block.len() / f;
                    let rows = y0..y0 + block.len() / g.out_row();
                    let mut scratch = DwScratch::take();
                    let patches = sized(&mut scratch.wide, pixels * k);
                    im2col(g, image, rows, patches);
                    if let Some(bias) = bias {
                        block
                            .chunks_exact_mut(f)
                            .for_each(|px| px.copy_from_slice(bias));
                    }
                    simd::fast(|| {
                        for gi in 0..g.groups {
                            gemm_into(
                                &mut block[gi * fg..],
                                f,
                                (pixels, fg, kg),
                                View {
                                    data: &patches[gi * kg..],
                                    row_stride: k,
                                    col_stride: 1,
                                },
                                View::rows(&weight[gi * kg * fg..][..kg * fg], fg),
                                bias.is_some(),
                            );
                        }
                    });
                    scratch.give();
                })
        });
}

/// The gradients of the product path, arguments as [`backward`]'s.
type GradArgs<'a> = (
    &'a [f32],
    Option<&'a mut [f32]>,
    &'a mut [f32],
    Option<&'a mut [f32]>,
);

/// The product path of [`backward`]: parallel over images (each image's input gradient is
/// its own); the weight and bias partials are summed in a fixed order.
fn gemm_backward(
    g: &GroupedGeometry,
    input: &[f32],
    weight: &[f32],
    (grad_out, grad_input, grad_weight, grad_bias): GradArgs<'_>,
) {
    check_lengths(g, input, weight, None);
    assert_eq!(
        grad_out.len(),
        g.batch * g.out_image(),
        "gradient of the wrong length"
    );
    assert_eq!(
        grad_weight.len(),
        weight.len(),
        "weight gradient of the wrong length"
    );
    if let Some(grad_input) = &grad_input {
        assert_eq!(
            grad_input.len(),
            input.len(),
            "input gradient of the wrong length"
        );
    }
    let (k, kg, f, fg) = (g.k(), g.group_k(), g.filters, g.group_filters());
    let (ho, wo) = (g.window.rows.output, g.window.cols.output);
    let block_rows = g.rows_per_block();
    let slots: Vec<Option<&mut [f32]>> = match grad_input {
        Some(grad) => grad.chunks_mut(g.in_image().max(1)).map(Some).collect(),
        None => (0..g.batch).map(|_| None).collect(),
    };
    let (dw, db) = fold_in_order(
        slots,
        || (vec![0.0f32; weight.len()], vec![0.0f32; f]),
        |(mut dw, mut db), n, mut grad_image| {
            let image = &input[n * g.in_image()..][..g.in_image()];
            let grad_out_image = &grad_out[n * g.out_image()..][..g.out_image()];
            let mut scratch = DwScratch::take();
            for y0 in (0..ho).step_by(block_rows) {
                let y1 = (y0 + block_rows).min(ho);
                let pixels = (y1 - y0) * wo;
                let go = &grad_out_image[y0 * g.out_row()..y1 * g.out_row()];
                go.chunks_exact(f.max(1))
                    .for_each(|px| db.iter_mut().zip(px).for_each(|(d, v)| *d += v));
                let DwScratch {
                    wide, grad_wide, ..
                } = &mut scratch;
                let patches = sized(wide, pixels * k);
                im2col(g, image, y0..y1, patches);
                simd::fast(|| {
                    for gi in 0..g.groups {
                        gemm_into(
                            &mut dw[gi * kg * fg..][..kg * fg],
                            fg,
                            (kg, fg, pixels),
                            View {
                                data: &patches[gi * kg..],
                                row_stride: 1,
                                col_stride: k,
                            },
                            View {
                                data: &go[gi * fg..],
                                row_stride: f,
                                col_stride: 1,
                            },
                            true,
                        );
                    }
                    if let Some(grad_image) = grad_image.as_deref_mut() {
                        let grad_patches = sized(grad_wide, pixels * k);
                        for gi in 0..g.groups {
                            gemm_into(
                                &mut grad_patches[gi * kg..],
                                k,
                                (pixels, kg, fg),
                                View {
                                    data: &go[gi * fg..],
                                    row_stride: f,
                                    col_stride: 1,
                                },
                                View {
                                    data: &weight[gi * kg * fg..][..kg * fg],
                                    row_stride: 1,
                                    col_stride: fg,
                                },
                                false,
                            );
                        }
                        col2im(g, grad_patches, y0..y1, grad_image);
                    }
                });
            }
            scratch.give();
            (dw, db)
        },
        add_pairs,
    );
    grad_weight.iter_mut().zip(&dw).for_each(|(a, b)| *a += b);
    if let Some(grad_bias) = grad_bias {
        grad_bias.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
    }
}

/// The depthwise geometry of [`Path::Lanes`]: one "channel" per filter.
fn lanes_geometry(g: &GroupedGeometry) -> DepthwiseGeometry {
    DepthwiseGeometry {
        batch: g.batch,
        channels: g.filters,
        multiplier: 1,
        window: g.window,
    }
}

/// The weights as `c_in / groups` depthwise matrices `(taps, filters)`, one after another:
/// matrix `k` holds, for filter `f`, its weight on its group's input channel `k`.
fn split_weight(g: &GroupedGeometry, weight: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; weight.len()];
    for_each_lane_weight(g, |lane, matrix| out[lane] = weight[matrix]);
    out
}

/// Calls `f(index in the split weights, index in the weight matrix)` for every weight.
fn for_each_lane_weight(g: &GroupedGeometry, mut f: impl FnMut(usize, usize)) {
    let (cg, fg, kg, taps, filters) = (
        g.group_in(),
        g.group_filters(),
        g.group_k(),
        g.taps(),
        g.filters,
    );
    for k in 0..cg {
        for tap in 0..taps {
            for filter in 0..filters {
                let (gi, fo) = (filter / fg, filter % fg);
                let lane = (k * taps + tap) * filters + filter;
                f(lane, (gi * kg + tap * cg + k) * fg + fo);
            }
        }
    }
}

/// `wide[r][x][f] = image[r][x][(f / fg) * cg + k]` for the image rows `rows`.
fn widen_channel(
    g: &GroupedGeometry,
    image: &[f32],
    rows: &Range<usize>,
    k: usize,
    wide: &mut [f32],
) {
    let (c, cg, fg, f) = (g.c_in, g.group_in(), g.group_filters(), g.filters);
    let w = g.window.cols.input;
    let src = &image[rows.start * w * c..rows.end * w * c];
    for (dst, px) in wide.chunks_exact_mut(f).zip(src.chunks_exact(c)) {
        for (dst, &v) in dst.chunks_exact_mut(fg).zip(px[k..].iter().step_by(cg)) {
            dst.fill(v);
        }
    }
}

/// `grad[r][x][g * cg + k] += Σ_fo wide[r][x][g * fg + fo]`.
fn narrow_channel(g: &GroupedGeometry, wide: &[f32], k: usize, grad: &mut [f32]) {
    let (c, cg, fg, f) = (g.c_in, g.group_in(), g.group_filters(), g.filters);
    for (px, src) in grad.chunks_exact_mut(c).zip(wide.chunks_exact(f)) {
        for (dst, src) in px[k..].iter_mut().step_by(cg).zip(src.chunks_exact(fg)) {
            *dst += src.iter().sum::<f32>();
        }
    }
}

/// Output elements per block of [`Path::Lanes`].
const LANES_ELEMENTS_PER_BLOCK: usize = 1 << 14;

/// [`forward`] for narrow groups. Filter `f` of group `g` sums, over its group's input
/// channels `k`, a `k_h x k_w` convolution of channel `g * cg + k`: for each `k` that is a
/// depthwise convolution over all filters at once of a "wide" input in which filter `f`'s
/// lane holds channel `(f / fg) * cg + k`. The depthwise kernels vectorise it over filters.
fn lanes_forward(
    g: &GroupedGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    check_lengths(g, input, weight, bias);
    assert_eq!(
        out.len(),
        g.batch * g.out_image(),
        "output of the wrong length"
    );
    if out.is_empty() {
        return;
    }
    let dg = lanes_geometry(g);
    let plans = Plans::new(&dg);
    let split = split_weight(g, weight);
    let per_k = g.taps() * g.filters;
    let wide_row = g.window.cols.input * g.filters;
    let block_rows = dg.rows_per_block(LANES_ELEMENTS_PER_BLOCK);
    out.par_chunks_mut(g.out_image())
        .zip(input.par_chunks(g.in_image()))
        .for_each(|(out_image, image)| {
            out_image
                .par_chunks_mut(block_rows * g.out_row())
                .enumerate()
                .for_each(|(b, block)| {
                    let y0 = b * block_rows;
                    let rows = y0..y0 + block.len() / g.out_row();
                    let in_rows = dg.input_rows(&rows);
                    let mut scratch = DwScratch::take();
                    for k in 0..g.group_in() {
                        let wide = dk::sized(&mut scratch.wide, in_rows.len() * wide_row);
                        widen_channel(g, image, &in_rows, k, wide);
                        let src = Source::rows(wide, in_rows.start, wide_row);
                        let w = &split[k * per_k..][..per_k];
                        if k == 0 {
                            dk::forward_rows_into(
                                &dg,
                                &plans,
                                &src,
                                rows.clone(),
                                w,
                                bias,
                                None,
                                block,
                            );
                        } else {
                            dk::add_rows_into(&dg, &plans, &src, rows.clone(), w, block);
                        }
                    }
                    scratch.give();
                })
        });
}

/// [`backward`] for narrow groups: the depthwise backward of each wide input (see
/// [`lanes_forward`]), blocks of rows owning disjoint input rows as in the depthwise op.
fn lanes_backward(
    g: &GroupedGeometry,
    input: &[f32],
    weight: &[f32],
    (grad_out, grad_input, grad_weight, grad_bias): GradArgs<'_>,
) {
    check_lengths(g, input, weight, None);
    assert_eq!(
        grad_out.len(),
        g.batch * g.out_image(),
        "gradient of the wrong length"
    );
    assert_eq!(
        grad_weight.len(),
        weight.len(),
        "weight gradient of the wrong length"
    );
    if let Some(grad_input) = &grad_input {
        assert_eq!(
            grad_input.len(),
            input.len(),
            "input gradient of the wrong length"
        );
    }
    let dg = lanes_geometry(g);
    let plans = Plans::new(&dg);
    let split = split_weight(g, weight);
    let (f, cg) = (g.filters, g.group_in());
    let per_k = g.taps() * f;
    let (w, wide_row) = (g.window.cols.input, g.window.cols.input * f);
    let want_input = grad_input.is_some();
    let block_rows = dg.rows_per_block(LANES_ELEMENTS_PER_BLOCK);
    let items = dk::blocks(&dg, block_rows, grad_input, w * g.c_in);
    let (d_split, db) = fold_in_order_by(
        items,
        |block| block.image,
        || (vec![0.0f32; split.len()], vec![0.0f32; f]),
        |(mut d_split, mut db), _, block| {
            let image = &input[block.image * g.in_image()..][..g.in_image()];
            let grad_image = &grad_out[block.image * g.out_image()..][..g.out_image()];
            let dz = Source::rows(grad_image, 0, g.out_row());
            let in_rows = dg.input_rows(&block.rows);
            let owned = dg.owned_input_rows(&block.rows);
            let mut grad_input = block.grad_input;
            let mut scratch = DwScratch::take();
            let DwScratch {
                wide,
                grad_wide,
                grad_mid,
                ..
            } = &mut scratch;
            let mut spare_db = vec![0.0f32; f];
            for k in 0..cg {
                let wide = dk::sized(wide, in_rows.len() * wide_row);
                widen_channel(g, image, &in_rows, k, wide);
                let src = Source::rows(wide, in_rows.start, wide_row);
                let grad_rows = want_input.then(|| {
                    let rows = dk::sized(grad_mid, owned.len() * wide_row);
                    rows.fill(0.0);
                    rows
                });
                // The bias gradient is the same for every k: taken once.
                let db = if k == 0 { &mut db } else { &mut spare_db };
                dk::backward_rows(
                    &dg,
                    &plans,
                    &src,
                    &split[k * per_k..][..per_k],
                    &dz,
                    block.rows.clone(),
                    (grad_rows, false),
                    (&mut d_split[k * per_k..][..per_k], db),
                    grad_wide,
                );
                if let Some(grad_input) = grad_input.as_deref_mut() {
                    narrow_channel(g, &grad_mid[..owned.len() * wide_row], k, grad_input);
                }
            }
            scratch.give();
            (d_split, db)
        },
        add_pairs,
    );
    for_each_lane_weight(g, |lane, matrix| grad_weight[matrix] += d_split[lane]);
    if let Some(grad_bias) = grad_bias {
        grad_bias.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::geometry::Padding;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Both paths on one geometry: forward output and all gradients.
    fn run(g: &GroupedGeometry, path: Path) -> [Vec<f32>; 4] {
        let (rows, cols) = g.weight_shape();
        let input = values(g.batch * g.in_image(), 1);
        let weight = values(rows * cols, 2);
        let bias = values(g.filters, 3);
        let grad_out = values(g.batch * g.out_image(), 4);
        let mut out = vec![0.0; grad_out.len()];
        let mut gx = vec![0.25; input.len()];
        let mut gw = vec![0.0; weight.len()];
        let mut gb = vec![0.0; bias.len()];
        let args = (
            &grad_out[..],
            Some(&mut gx[..]),
            &mut gw[..],
            Some(&mut gb[..]),
        );
        match path {
            Path::Gemm => {
                gemm_forward(g, &input, &weight, Some(&bias), &mut out);
                gemm_backward(g, &input, &weight, args);
            }
            Path::Lanes => {
                lanes_forward(g, &input, &weight, Some(&bias), &mut out);
                lanes_backward(g, &input, &weight, args);
            }
        }
        [out, gx, gw, gb]
    }

    #[test]
    fn both_paths_agree() {
        for (c_in, filters, groups, input, kernel, stride, padding) in [
            (8, 8, 4, (9, 11), (3, 3), (1, 1), Padding::Same),
            (12, 20, 4, (7, 5), (2, 3), (2, 2), Padding::Same),
            (32, 32, 8, (10, 13), (3, 3), (2, 1), Padding::Valid),
            (6, 3, 3, (8, 6), (1, 1), (1, 1), Padding::Valid),
            (34, 14, 2, (40, 9), (5, 3), (1, 1), Padding::Same),
        ] {
            let window = Window2::new(input, kernel, stride, padding).expect("fits");
            let g = GroupedGeometry {
                batch: 2,
                c_in,
                filters,
                groups,
                window,
            };
            let gemm = run(&g, Path::Gemm);
            let lanes = run(&g, Path::Lanes);
            for (which, (a, b)) in gemm.iter().zip(&lanes).enumerate() {
                let scale = 1.0 + a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * scale,
                        "{g:?} tensor {which}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
