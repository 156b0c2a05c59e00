//! The arithmetic of a depthwise convolution on NHWC slices, vectorised over channels.
//!
//! Weights are a `(k_h * k_w, c * m)` row-major matrix (tap `i * k_w + j`, output channel
//! `ci * m + j`), so that one tap of one pixel is a contiguous vector of channels, the same
//! layout as the pixel it multiplies. With a multiplier `m > 1` the input rows a block needs
//! are first copied with every channel repeated `m` times ("wide" rows), and the kernels see a
//! multiplier-1 convolution of `c * m` channels.
//!
//! One kernel, `Correlate`, does the forward pass and the input gradient: each output (or
//! input-gradient) pixel sums its taps in registers, tiles of `TILE` pixels (or `SHORT_TILE`
//! where fewer share their taps, as in a 4x4 image) by two channel vectors, and is written
//! once. The input gradient is the transposed correlation of the
//! output gradient: input pixel `ix` collects the taps `j` with `ix + pad = x * stride + j`,
//! so pixels of one residue class modulo the stride share their taps. The weight gradient
//! (`WeightGrad`) keeps up to eight taps' sums in registers over chunks of pixels, streaming
//! through memory in order.
//!
//! Work is cut into blocks of output rows of one image; in the backward pass each block also
//! owns a disjoint band of input rows whose gradient it computes from the output-gradient rows
//! it needs (a halo of `k_h / stride` rows beyond its own). Blocks never write the same
//! element, every element's sum has a fixed order, and the weight and bias gradients are
//! summed with [`fold_in_order_by`]: the result does not depend on the thread count. A fused relu
//! or relu6 is not recorded: the backward pass recomputes the pre-activations of its rows with
//! the forward kernel, bit for bit, from the input it reads anyway.
//!
//! The input may also come as values and a [`RowMap`] that makes the input of them as a block
//! reads its rows (a batch norm and its activation, run by the op that wrote the values: see
//! `linear_bn`): the mapped rows are made in a scratch buffer, in cache, and the kernels read
//! them as they would read the input itself.

use crate::backend::ops::geometry::{Axis1, Window2};
use crate::backend::ops::lanes::{self, LaneKernel, Lanes};
use crate::backend::ops::reduce::{add_pairs, fold_in_order_by};
use crate::backend::ops::{Input, RowMap, Shape4};
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;

/// Output elements per block: about 64 KiB of output, so a block's rows stay in L2.
const ELEMENTS_PER_BLOCK: usize = 1 << 13;
/// Pixels per tile of the correlation kernel: a tile shares each weight vector it loads
/// among its pixels.
const TILE: usize = 4;
/// The shorter tile, where fewer than [`TILE`] pixels share their taps (a 4x4 image's two
/// interior columns): single pixels there reloaded every weight for every pixel.
const SHORT_TILE: usize = 2;

/// The pixels of the next tile: [`TILE`] or [`SHORT_TILE`] when that many pixels from here
/// share their taps (`fits`), else one.
fn tile_pixels(fits: impl Fn(usize) -> bool) -> usize {
    [TILE, SHORT_TILE]
        .into_iter()
        .find(|&p| fits(p))
        .unwrap_or(1)
}

/// An activation applied to the output inside the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FusedActivation {
    /// None: the output is the convolution (plus bias).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet's activation).
    Relu6,
}

impl FusedActivation {
    /// The clamp `(lo, hi)` of the activation, `None` when linear.
    pub fn bounds(self) -> Option<(f32, f32)> {
        match self {
            FusedActivation::Linear => None,
            FusedActivation::Relu => Some((0.0, f32::INFINITY)),
            FusedActivation::Relu6 => Some((0.0, 6.0)),
        }
    }

    /// The activation of one value.
    pub fn apply(self, x: f32) -> f32 {
        match self.bounds() {
            None => x,
            Some((lo, hi)) => x.max(lo).min(hi),
        }
    }

    /// The derivative of the activation at pre-activation `x` (0 at the kinks, as Keras).
    pub fn derivative(self, x: f32) -> f32 {
        match self.bounds() {
            None => 1.0,
            Some((lo, hi)) => f32::from(u8::from(x > lo && x < hi)),
        }
    }
}

/// Everything the kernels need to know about one depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels `c`.
    pub channels: usize,
    /// Output channels per input channel `m`.
    pub multiplier: usize,
    /// Window placement on the image.
    pub window: Window2,
}

impl DepthwiseGeometry {
    /// Output channels `c * m`.
    pub fn out_channels(&self) -> usize {
        self.channels * self.multiplier
    }
    /// Kernel taps `k_h * k_w`.
    pub fn taps(&self) -> usize {
        self.window.rows.kernel * self.window.cols.kernel
    }
    /// Elements of the weight matrix: `taps * c * m`.
    pub fn weight_len(&self) -> usize {
        self.taps() * self.out_channels()
    }
    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.window.rows.input * self.in_row()
    }
    /// Elements of one input row.
    pub fn in_row(&self) -> usize {
        self.window.cols.input * self.channels
    }
    /// Elements of one wide input row (channels repeated `m` times).
    pub fn wide_row(&self) -> usize {
        self.window.cols.input * self.out_channels()
    }
    /// Elements of one output row.
    pub fn out_row(&self) -> usize {
        self.window.cols.output * self.out_channels()
    }
    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.window.rows.output * self.out_row()
    }
    /// The output batch's shape, `(n, h_out, w_out, channels * multiplier)`.
    pub fn out_shape(&self) -> Shape4 {
        let w = self.window;
        (
            self.batch,
            w.rows.output,
            w.cols.output,
            self.out_channels(),
        )
    }
    /// Output rows per block, for blocks of about `elements` output values (at least `k_h`
    /// rows, so that the halo stays a small part of a block).
    pub(crate) fn rows_per_block(&self, elements: usize) -> usize {
        let rows = self.window.rows;
        (elements / self.out_row().max(1))
            .max(rows.kernel)
            .min(rows.output)
            .max(1)
    }
    /// The input rows that output rows `out_rows` read (clamped to the image).
    pub(crate) fn input_rows(&self, out_rows: &Range<usize>) -> Range<usize> {
        let rows = self.window.rows;
        if out_rows.is_empty() {
            return 0..0;
        }
        let first = (out_rows.start * rows.stride)
            .saturating_sub(rows.pad_before)
            .min(rows.input);
        let last = ((out_rows.end - 1) * rows.stride + rows.kernel)
            .saturating_sub(rows.pad_before)
            .min(rows.input);
        first..last.max(first)
    }
    /// The output rows whose windows read some of input rows `in_rows`.
    pub(crate) fn output_rows(&self, in_rows: &Range<usize>) -> Range<usize> {
        let rows = self.window.rows;
        if in_rows.is_empty() || rows.output == 0 {
            return 0..0;
        }
        // y reads iy when y * s <= iy + pad <= y * s + k - 1.
        let first = (in_rows.start + rows.pad_before + 1)
            .saturating_sub(rows.kernel)
            .div_ceil(rows.stride);
        let last = ((in_rows.end - 1 + rows.pad_before) / rows.stride).min(rows.output - 1);
        first.min(last + 1)..last + 1
    }
    /// The input rows whose gradient the block of output rows `out_rows` computes: from
    /// `out_rows.start * stride` (0 for the first block) to the next block's start (the
    /// image's end for the last block).
    pub(crate) fn owned_input_rows(&self, out_rows: &Range<usize>) -> Range<usize> {
        let rows = self.window.rows;
        let start = |y: usize| {
            if y == 0 {
                0
            } else {
                (y * rows.stride).min(rows.input)
            }
        };
        let end = if out_rows.end >= rows.output {
            rows.input
        } else {
            start(out_rows.end)
        };
        start(out_rows.start)..end
    }
}

thread_local! {
    static SCRATCH: Cell<DwScratch> = const { Cell::new(DwScratch::new()) };
}

/// Per-thread scratch buffers of the depthwise and separable kernels, taken at the start of a
/// task and given back at its end.
#[derive(Default)]
pub(crate) struct DwScratch {
    /// Wide input rows (multiplier > 1).
    pub wide: Vec<f32>,
    /// One row of wide input gradient.
    pub grad_wide: Vec<f32>,
    /// A block of depthwise output (separable: the intermediate).
    pub mid: Vec<f32>,
    /// The gradient of a block's depthwise output (through the activation).
    pub grad_mid: Vec<f32>,
    /// A block's input rows made by a [`RowMap`].
    pub mapped: Vec<f32>,
}

impl DwScratch {
    const fn new() -> Self {
        Self {
            wide: Vec::new(),
            grad_wide: Vec::new(),
            mid: Vec::new(),
            grad_mid: Vec::new(),
            mapped: Vec::new(),
        }
    }
    /// Takes this thread's buffers.
    pub fn take() -> Self {
        SCRATCH.with(Cell::take)
    }
    /// Gives the buffers back to this thread.
    pub fn give(self) {
        SCRATCH.with(|cell| cell.set(self));
    }
}

/// The first `len` elements of `buffer`, growing it when needed (contents unspecified).
#[inline]
pub(crate) fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// Rows of an image held in a buffer: row `first + r` starts at `r * row_len`.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    data: &'a [f32],
    first: usize,
    row_len: usize,
}

impl<'a> Source<'a> {
    /// Rows from `first` held in `data`, `row_len` elements each.
    pub(crate) fn rows(data: &'a [f32], first: usize, row_len: usize) -> Self {
        Source {
            data,
            first,
            row_len,
        }
    }

    /// Where row `iy` starts.
    ///
    /// # Panics
    /// When the row is not held (a bug in the block plan).
    #[inline]
    fn offset(&self, iy: usize) -> usize {
        let held = iy
            .checked_sub(self.first)
            .filter(|&r| (r + 1) * self.row_len <= self.data.len());
        match held {
            Some(r) => r * self.row_len,
            None => panic!("depthwise block reads row {iy} it does not hold"),
        }
    }
}

/// Copies rows `src` (c channels) into `wide`, each channel repeated `m` times.
fn widen(g: &DepthwiseGeometry, src: &[f32], wide: &mut [f32]) {
    let m = g.multiplier;
    for (dst, &v) in wide.chunks_exact_mut(m).zip(src) {
        dst.fill(v);
    }
}

/// Adds a wide gradient row into an image gradient row, summing each channel's `m` copies.
fn narrow(g: &DepthwiseGeometry, grad_wide: &[f32], grad_image: &mut [f32]) {
    let m = g.multiplier;
    for (dst, src) in grad_image.iter_mut().zip(grad_wide.chunks_exact(m)) {
        *dst += src.iter().sum::<f32>();
    }
}

/// The input rows `rows` of one image as the kernels read them: the image itself (multiplier
/// 1, no map), or its rows made by `map` in `mapped`, widened in `wide` (multiplier > 1).
pub(crate) fn source<'a>(
    g: &DepthwiseGeometry,
    (image, map): (&'a [f32], Option<&RowMap<'_>>),
    rows: Range<usize>,
    (wide, mapped): (&'a mut Vec<f32>, &'a mut Vec<f32>),
) -> Source<'a> {
    let rows_of = |data: &'a [f32]| &data[rows.start * g.in_row()..rows.end * g.in_row()];
    let src: &'a [f32] = match map {
        None if g.multiplier == 1 => {
            return Source {
                data: image,
                first: 0,
                row_len: g.in_row(),
            }
        }
        None => rows_of(image),
        Some(map) => {
            let out = sized(mapped, rows.len() * g.in_row());
            map(rows_of(image), out);
            out
        }
    };
    if g.multiplier == 1 {
        return Source {
            data: src,
            first: rows.start,
            row_len: g.in_row(),
        };
    }
    let wide = sized(wide, rows.len() * g.wide_row());
    widen(g, src, wide);
    Source {
        data: wide,
        first: rows.start,
        row_len: g.wide_row(),
    }
}

/// The column tiles of one kind of row pass: where each tile's pixels write and which column
/// taps they read.
pub(crate) struct ColumnPlan {
    /// Tiles: destination offset of pixel 0 in its row, pixel count, taps (range of `taps`).
    tiles: Vec<(usize, usize, Range<usize>)>,
    /// Column taps `(j, offset of pixel 0's tap in a source row)`.
    taps: Vec<(usize, usize)>,
    /// Source elements between neighbouring pixels of a tile.
    src_step: usize,
    /// Destination elements between neighbouring pixels of a tile.
    dst_step: usize,
    /// The largest `offset + (pixels - 1) * src_step` of any tile's tap.
    src_extent: usize,
    /// The largest `dst + (pixels - 1) * dst_step` of any tile.
    dst_extent: usize,
    /// Interior output pixels (every column tap valid), for [`WeightGrad`].
    interior: Range<usize>,
}

impl ColumnPlan {
    fn new(src_step: usize, dst_step: usize, interior: Range<usize>) -> Self {
        ColumnPlan {
            tiles: Vec::new(),
            taps: Vec::new(),
            src_step,
            dst_step,
            src_extent: 0,
            dst_extent: 0,
            interior,
        }
    }

    fn push(&mut self, dst: usize, pixels: usize, taps: impl Iterator<Item = (usize, usize)>) {
        let start = self.taps.len();
        for (j, offset) in taps {
            self.src_extent = self.src_extent.max(offset + (pixels - 1) * self.src_step);
            self.taps.push((j, offset));
        }
        self.dst_extent = self.dst_extent.max(dst + (pixels - 1) * self.dst_step);
        self.tiles.push((dst, pixels, start..self.taps.len()));
    }

    /// The forward pass over output pixels: tiles of [`TILE`] interior pixels, single pixels
    /// at the borders with their valid taps.
    pub(crate) fn forward(g: &DepthwiseGeometry) -> Self {
        let cols = g.window.cols;
        let cm = g.out_channels();
        let inner = interior(&cols);
        let mut plan = ColumnPlan::new(cols.stride * cm, cm, inner.clone());
        let mut x = 0;
        while x < cols.output {
            let pixels = tile_pixels(|p| inner.contains(&x) && x + p <= inner.end);
            // The taps of pixel x; interior tiles share them.
            let taps = cols.valid_taps(x);
            let first = x * cols.stride;
            plan.push(
                x * cm,
                pixels,
                taps.map(|j| (j, (first + j - cols.pad_before) * cm)),
            );
            x += pixels;
        }
        plan
    }

    /// The input gradient over input pixels: each residue class of columns modulo the stride
    /// in tiles of [`TILE`] pixels that share their taps (`x = (ix + pad - j) / stride`).
    pub(crate) fn transposed(g: &DepthwiseGeometry) -> Self {
        let cols = g.window.cols;
        let (s, pad, k) = (cols.stride, cols.pad_before, cols.kernel);
        let cm = g.out_channels();
        let mut plan = ColumnPlan::new(cm, s * cm, 0..0);
        // The taps of input pixel ix: (j, x).
        let taps_of = |ix: usize| {
            let q = ix + pad;
            (q % s..k.min(q + 1))
                .step_by(s)
                .map(move |j| (j, (q - j) / s))
                .filter(|&(_, x)| x < cols.output)
        };
        // Every tap of its residue class reaches an output pixel: tiles of such pixels share
        // their taps (pixel p of a tile reads x + p).
        let full = |ix: usize| taps_of(ix).count() == ((ix + pad) % s..k).step_by(s).count();
        for class in 0..s.min(cols.input) {
            let mut ix = class;
            while ix < cols.input {
                let pixels = tile_pixels(|p| {
                    let last = ix + (p - 1) * s;
                    last < cols.input && full(ix) && full(last)
                });
                plan.push(ix * cm, pixels, taps_of(ix).map(|(j, x)| (j, x * cm)));
                ix += pixels * s;
            }
        }
        plan
    }
}

/// The columns `x` whose whole window lies inside the image.
fn interior(cols: &Axis1) -> Range<usize> {
    let full = |x: usize| cols.valid_taps(x) == (0..cols.kernel);
    let start = (0..cols.output).find(|&x| full(x)).unwrap_or(cols.output);
    let end = (start..cols.output)
        .find(|&x| !full(x))
        .unwrap_or(cols.output);
    start..end
}

/// The kernel rows of output row `y`: `(i, offset of input row)` for the rows inside.
fn forward_rows(g: &DepthwiseGeometry, src: &Source<'_>, y: usize, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let rows = g.window.rows;
    out.extend((0..rows.kernel).filter_map(|i| Some((i, src.offset(rows.source(y, i)?)))));
}

/// The kernel rows that reach input row `iy`: `(i, offset of output-gradient row y)` with
/// `y * stride + i = iy + pad`, for `y` inside the output.
fn transposed_rows(
    g: &DepthwiseGeometry,
    grad: &Source<'_>,
    iy: usize,
    out: &mut Vec<(usize, usize)>,
) {
    out.clear();
    let rows = g.window.rows;
    let q = iy + rows.pad_before;
    let taps = (q % rows.stride..rows.kernel.min(q + 1)).step_by(rows.stride);
    out.extend(
        taps.map(|i| (i, (q - i) / rows.stride))
            .filter(|&(_, y)| y < rows.output)
            .map(|(i, y)| (i, grad.offset(y))),
    );
}

/// `dst (one row) [+]= bias + Σ taps src * weight`, clamped when asked: one row of the
/// forward pass (plan [`ColumnPlan::forward`]) or of the input gradient
/// ([`ColumnPlan::transposed`], accumulating).
struct Correlate<'a> {
    src: &'a [f32],
    /// Kernel rows `(i, offset of their source row)`.
    rows: &'a [(usize, usize)],
    plan: &'a ColumnPlan,
    weight: &'a [f32],
    kw: usize,
    cm: usize,
    bias: Option<&'a [f32]>,
    bounds: Option<(f32, f32)>,
    accumulate: bool,
    dst: &'a mut [f32],
}

impl LaneKernel for Correlate<'_> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Self {
            src,
            rows,
            plan,
            weight,
            kw,
            cm,
            bias,
            bounds,
            accumulate,
            dst,
        } = self;
        if plan.tiles.is_empty() || cm == 0 {
            return;
        }
        // Bounds of every access below.
        let max_row = rows.iter().map(|&(_, r)| r).max().unwrap_or(0);
        let max_i = rows.iter().map(|&(i, _)| i).max().unwrap_or(0);
        let max_j = plan.taps.iter().map(|&(j, _)| j).max().unwrap_or(0);
        assert!(
            rows.is_empty() || max_row + plan.src_extent + cm <= src.len(),
            "source too short"
        );
        assert!(
            plan.taps.is_empty() || (max_i * kw + max_j + 1) * cm <= weight.len(),
            "weight too short"
        );
        assert!(max_j < kw, "column tap past the kernel");
        assert!(plan.dst_extent + cm <= dst.len(), "destination too short");
        assert!(bias.is_none_or(|b| b.len() >= cm), "bias too short");
        let vectors = cm.div_ceil(L::N);
        let bounds = bounds.map(|(lo, hi)| (l.splat(lo), l.splat(hi)));
        let k = Kernel {
            src: src.as_ptr(),
            rows,
            weight: weight.as_ptr(),
            bias: bias.map(<[f32]>::as_ptr),
            kw,
            cm,
            src_step: plan.src_step,
            dst_step: plan.dst_step,
            bounds,
            accumulate,
        };
        for (at, pixels, taps) in &plan.tiles {
            let cols = &plan.taps[taps.clone()];
            // SAFETY: `at + (pixels - 1) * dst_step + cm <= dst.len()` (dst_extent).
            let out = unsafe { dst.as_mut_ptr().add(*at) };
            let mut v0 = 0;
            while v0 < vectors {
                let two = vectors - v0 >= 2;
                // SAFETY: every source offset is a row offset plus a tap offset plus at most
                // `(pixels - 1) * src_step`, plus channels below `cm` (masked), all checked
                // above against `src.len()`; weights and bias likewise; `out` as above.
                unsafe {
                    match (*pixels, two) {
                        (TILE, true) => k.tile::<L, TILE, 2>(l, cols, v0, out),
                        (TILE, false) => k.tile::<L, TILE, 1>(l, cols, v0, out),
                        (SHORT_TILE, true) => k.tile::<L, SHORT_TILE, 2>(l, cols, v0, out),
                        (SHORT_TILE, false) => k.tile::<L, SHORT_TILE, 1>(l, cols, v0, out),
                        (_, true) => k.tile::<L, 1, 2>(l, cols, v0, out),
                        (_, false) => k.tile::<L, 1, 1>(l, cols, v0, out),
                    }
                }
                v0 += if two { 2 } else { 1 };
            }
        }
    }
}

/// The operands of [`Correlate`] as pointers.
struct Kernel<'a, V> {
    src: *const f32,
    rows: &'a [(usize, usize)],
    weight: *const f32,
    bias: Option<*const f32>,
    kw: usize,
    cm: usize,
    src_step: usize,
    dst_step: usize,
    bounds: Option<(V, V)>,
    accumulate: bool,
}

impl<V: Copy> Kernel<'_, V> {
    /// One tile: `P` pixels by channel vectors `v0..v0 + W`.
    ///
    /// # Safety
    /// See [`Correlate::run`].
    #[inline(always)]
    unsafe fn tile<L: Lanes<V = V>, const P: usize, const W: usize>(
        &self,
        l: L,
        cols: &[(usize, usize)],
        v0: usize,
        out: *mut f32,
    ) {
        let cm = self.cm;
        let masks: [L::M; W] = std::array::from_fn(|v| l.mask(cm - (v0 + v) * L::N));
        let zero = l.splat(0.0);
        let mut init = [zero; W];
        if let Some(bias) = self.bias {
            for (v, acc) in init.iter_mut().enumerate() {
                // SAFETY: the bias holds `cm` values and the mask keeps to them.
                *acc = unsafe { l.load(bias.add((v0 + v) * L::N), masks[v]) };
            }
        }
        let mut acc = [init; P];
        for &(i, row) in self.rows {
            for &(j, col) in cols {
                let tap = (i * self.kw + j) * cm;
                let mut w = [zero; W];
                for (v, wv) in w.iter_mut().enumerate() {
                    // SAFETY: see `Correlate::run`.
                    *wv = unsafe { l.load(self.weight.add(tap + (v0 + v) * L::N), masks[v]) };
                }
                for (p, acc) in acc.iter_mut().enumerate() {
                    let px = row + col + p * self.src_step;
                    for (v, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: see `Correlate::run`.
                        let x = unsafe { l.load(self.src.add(px + (v0 + v) * L::N), masks[v]) };
                        *acc = l.fma(x, w[v], *acc);
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                // SAFETY: see `Correlate::run`.
                unsafe {
                    let at = out.add(p * self.dst_step + (v0 + v) * L::N);
                    let value = match self.bounds {
                        Some((lo, hi)) => l.clamp(a, lo, hi),
                        None if self.accumulate => l.add(l.load(at, masks[v]), a),
                        None => a,
                    };
                    l.store(at, value, masks[v]);
                }
            }
        }
    }
}

/// `dw [taps x cm] += Σ_x src(tap, x) * dz(x)` and `db += Σ_x dz(x)` over one output row.
struct WeightGrad<'a> {
    src: &'a [f32],
    rows: &'a [(usize, usize)],
    plan: &'a ColumnPlan,
    dz: &'a [f32],
    kw: usize,
    cm: usize,
    dw: &'a mut [f32],
    db: &'a mut [f32],
}

/// Most taps summed in registers at once.
const TAPS_IN_REGISTERS: usize = 8;

impl LaneKernel for WeightGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Self {
            src,
            rows,
            plan,
            dz,
            kw,
            cm,
            dw,
            db,
        } = self;
        if plan.tiles.is_empty() || cm == 0 {
            return;
        }
        let max_row = rows.iter().map(|&(_, r)| r).max().unwrap_or(0);
        let max_i = rows.iter().map(|&(i, _)| i).max().unwrap_or(0);
        assert!(
            rows.is_empty() || max_row + plan.src_extent + cm <= src.len(),
            "source too short"
        );
        assert!(
            (max_i + 1) * kw * cm <= dw.len(),
            "weight gradient too short"
        );
        assert!(plan.dst_extent + cm <= dz.len(), "gradient row too short");
        assert!(db.len() >= cm, "bias gradient too short");
        assert!(plan.interior.end * cm <= dz.len(), "interior past the row");
        // The interior's taps: (weight offset, source offset at the first interior pixel).
        let x0 = plan.interior.start;
        let run = plan.interior.len();
        let mut taps = Vec::with_capacity(rows.len() * kw);
        if run > 0 {
            let first = plan
                .tiles
                .iter()
                .find(|(at, _, _)| *at == x0 * cm)
                .map_or(0..0, |(_, _, taps)| taps.clone());
            for &(i, row) in rows {
                for &(j, col) in &plan.taps[first.clone()] {
                    taps.push(((i * kw + j) * cm, row + col));
                }
            }
            // Every interior tap of the last interior pixel lies within the source.
            let last = (run - 1) * plan.src_step + cm;
            assert!(
                taps.iter().all(|&(_, at)| at + last <= src.len()),
                "interior taps past the source"
            );
        }
        let vectors = cm.div_ceil(L::N);
        let (src, dz) = (src.as_ptr(), dz.as_ptr());
        let (dw, db) = (dw.as_mut_ptr(), db.as_mut_ptr());
        // Border pixels, tap by tap.
        for (at, _, cols) in plan.tiles.iter().filter(|(at, _, _)| {
            let x = at / cm;
            !plan.interior.contains(&x)
        }) {
            for v in 0..vectors {
                let lane = v * L::N;
                let m = l.mask(cm - lane);
                // SAFETY: border tiles are single pixels; their taps were checked against the
                // source (src_extent), `dz` (dst_extent) and `dw` above; the mask keeps to
                // `cm`.
                unsafe {
                    let g = l.load(dz.add(at + lane), m);
                    l.store(db.add(lane), l.add(l.load(db.add(lane), m), g), m);
                    for &(i, row) in rows {
                        for &(j, col) in &plan.taps[cols.clone()] {
                            let tap = dw.add((i * kw + j) * cm + lane);
                            let x = l.load(src.add(row + col + lane), m);
                            l.store(tap, l.fma(x, g, l.load(tap, m)), m);
                        }
                    }
                }
            }
        }
        // The interior in chunks of pixels (streaming through memory in order), each channel
        // vector's taps summed in registers over the chunk, up to eight at a time.
        let groups = taps.len().div_ceil(TAPS_IN_REGISTERS);
        for c0 in (0..run).step_by(CHUNK_PIXELS) {
            let pixels = (run - c0).min(CHUNK_PIXELS);
            for v in 0..vectors {
                let lane = v * L::N;
                let m = l.mask(cm - lane);
                let mut start = 0;
                for group in 0..groups {
                    let len = (taps.len() - start).div_ceil(groups - group);
                    let chunk = &taps[start..start + len];
                    start += len;
                    let args = RunArgs {
                        src: src.wrapping_add(c0 * plan.src_step + lane),
                        dz: dz.wrapping_add((x0 + c0) * cm + lane),
                        src_step: plan.src_step,
                        dz_step: cm,
                        pixels,
                        lane,
                        mask: m,
                        db: (group == 0).then_some(db),
                    };
                    // SAFETY: the interior taps were checked above for all `run` pixels, `dz`
                    // for the interior pixels, `dw` and `db` for every tap and channel.
                    unsafe {
                        match len {
                            1 => tap_sums::<L, 1>(l, chunk, &args, dw),
                            2 => tap_sums::<L, 2>(l, chunk, &args, dw),
                            3 => tap_sums::<L, 3>(l, chunk, &args, dw),
                            4 => tap_sums::<L, 4>(l, chunk, &args, dw),
                            5 => tap_sums::<L, 5>(l, chunk, &args, dw),
                            6 => tap_sums::<L, 6>(l, chunk, &args, dw),
                            7 => tap_sums::<L, 7>(l, chunk, &args, dw),
                            _ => tap_sums::<L, 8>(l, chunk, &args, dw),
                        }
                    }
                }
                if groups == 0 {
                    // No tap inside (cannot happen for an output pixel), still the bias.
                    let args = RunArgs {
                        src,
                        dz: dz.wrapping_add((x0 + c0) * cm + lane),
                        src_step: 0,
                        dz_step: cm,
                        pixels,
                        lane,
                        mask: m,
                        db: Some(db),
                    };
                    // SAFETY: as above; no tap is read.
                    unsafe { tap_sums::<L, 0>(l, &[], &args, dw) };
                }
            }
        }
    }
}

/// Interior pixels per chunk of [`WeightGrad`].
const CHUNK_PIXELS: usize = 8;

/// The operands of [`tap_sums`].
struct RunArgs<M> {
    /// The source at the chunk's first pixel and the vector's first lane (add a tap's offset).
    src: *const f32,
    /// The output gradient at the chunk's first pixel and the vector's first lane.
    dz: *const f32,
    src_step: usize,
    dz_step: usize,
    pixels: usize,
    /// The vector's first lane (for `dw` and `db`).
    lane: usize,
    mask: M,
    /// Where to add the sum of the gradient (the bias gradient), for one tap group only.
    db: Option<*mut f32>,
}

/// `dw[tap] += Σ_x src[tap + x * step] * dz[x]` for `C` taps over a chunk of pixels, and
/// `db += Σ_x dz[x]` when asked.
///
/// # Safety
/// Every tap's source offset plus `(pixels - 1) * src_step` plus the mask's lanes lies within
/// the source, the chunk's gradient pixels within `dz`, and every tap's channels within `dw`.
#[inline(always)]
unsafe fn tap_sums<L: Lanes, const C: usize>(
    l: L,
    taps: &[(usize, usize)],
    a: &RunArgs<L::M>,
    dw: *mut f32,
) {
    let m = a.mask;
    let at: [usize; C] = std::array::from_fn(|c| taps[c].1);
    let mut sums = [l.splat(0.0); C];
    let mut bias = l.splat(0.0);
    for x in 0..a.pixels {
        // SAFETY: forwarded from the caller.
        unsafe {
            let g = l.load(a.dz.add(x * a.dz_step), m);
            for (sum, &t) in sums.iter_mut().zip(&at) {
                *sum = l.fma(l.load(a.src.add(t + x * a.src_step), m), g, *sum);
            }
            if a.db.is_some() {
                bias = l.add(bias, g);
            }
        }
    }
    for (c, sum) in sums.iter().enumerate() {
        // SAFETY: forwarded from the caller.
        unsafe {
            let tap = dw.add(taps[c].0 + a.lane);
            l.store(tap, l.add(l.load(tap, m), *sum), m);
        }
    }
    if let Some(db) = a.db {
        // SAFETY: forwarded from the caller.
        unsafe {
            let db = db.add(a.lane);
            l.store(db, l.add(l.load(db, m), bias), m);
        }
    }
}

/// The column plans of one geometry, made once per call.
pub(crate) struct Plans {
    /// Over output pixels.
    pub forward: ColumnPlan,
    /// Over input pixels, for the input gradient.
    pub transposed: ColumnPlan,
}

impl Plans {
    pub(crate) fn new(g: &DepthwiseGeometry) -> Self {
        Plans {
            forward: ColumnPlan::forward(g),
            transposed: ColumnPlan::transposed(g),
        }
    }
}

/// Output rows `out_rows` (`out`: their `c * m`-channel rows) from the held input rows `src`:
/// bias plus taps, clamped to `bounds`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_rows_into(
    g: &DepthwiseGeometry,
    plans: &Plans,
    src: &Source<'_>,
    out_rows: Range<usize>,
    weight: &[f32],
    bias: Option<&[f32]>,
    bounds: Option<(f32, f32)>,
    out: &mut [f32],
) {
    assert_eq!(
        out.len(),
        out_rows.len() * g.out_row(),
        "rows of the wrong length"
    );
    correlate_rows(g, plans, src, out_rows, (weight, bias, bounds), false, out);
}

/// Adds the convolution of output rows `out_rows` (no bias, no activation) to `out`.
pub(crate) fn add_rows_into(
    g: &DepthwiseGeometry,
    plans: &Plans,
    src: &Source<'_>,
    out_rows: Range<usize>,
    weight: &[f32],
    out: &mut [f32],
) {
    assert_eq!(
        out.len(),
        out_rows.len() * g.out_row(),
        "rows of the wrong length"
    );
    correlate_rows(g, plans, src, out_rows, (weight, None, None), true, out);
}

/// Weights, bias and clamp of a correlation.
type Taps<'a> = (&'a [f32], Option<&'a [f32]>, Option<(f32, f32)>);

/// The forward correlation of rows `out_rows`, written or added into `out`.
fn correlate_rows(
    g: &DepthwiseGeometry,
    plans: &Plans,
    src: &Source<'_>,
    out_rows: Range<usize>,
    (weight, bias, bounds): Taps<'_>,
    accumulate: bool,
    out: &mut [f32],
) {
    let mut rows = Vec::with_capacity(g.window.rows.kernel);
    for (y, out_row) in out_rows.zip(out.chunks_exact_mut(g.out_row().max(1))) {
        forward_rows(g, src, y, &mut rows);
        lanes::dispatch(Correlate {
            src: src.data,
            rows: &rows,
            plan: &plans.forward,
            weight,
            kw: g.window.cols.kernel,
            cm: g.out_channels(),
            bias,
            bounds,
            accumulate,
            dst: out_row,
        });
    }
}

/// The output-gradient rows a backward block of `out_rows` reads: its own, and when it
/// computes the input gradient, those of [`DepthwiseGeometry::owned_input_rows`].
pub(crate) fn gradient_rows(
    g: &DepthwiseGeometry,
    out_rows: &Range<usize>,
    want_input: bool,
) -> Range<usize> {
    if !want_input {
        return out_rows.clone();
    }
    let halo = g.output_rows(&g.owned_input_rows(out_rows));
    if halo.is_empty() {
        return out_rows.clone();
    }
    out_rows.start.min(halo.start)..out_rows.end.max(halo.end)
}

/// The gradients of one backward block.
///
/// `src` holds the input rows of `out_rows` (wide when `m > 1`), `dz` the gradient of the
/// pre-activations of [`gradient_rows`]. Adds into `dw`, `db` and, when given, the gradient of
/// input rows [`DepthwiseGeometry::owned_input_rows`] of `out_rows` — or, `fresh`, writes
/// that gradient over whatever the rows held: each row is zeroed just before its sums are
/// added in, while it is in cache, so the bits are those of adding into a zeroed gradient
/// without a pass over the whole gradient to zero it and another to read the zeros back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_rows(
    g: &DepthwiseGeometry,
    plans: &Plans,
    src: &Source<'_>,
    weight: &[f32],
    dz: &Source<'_>,
    out_rows: Range<usize>,
    (grad_input, fresh): (Option<&mut [f32]>, bool),
    (dw, db): (&mut [f32], &mut [f32]),
    grad_wide: &mut Vec<f32>,
) {
    let (kw, cm) = (g.window.cols.kernel, g.out_channels());
    let mut rows = Vec::with_capacity(g.window.rows.kernel);
    for y in out_rows.clone() {
        forward_rows(g, src, y, &mut rows);
        let at = dz.offset(y);
        lanes::dispatch(WeightGrad {
            src: src.data,
            rows: &rows,
            plan: &plans.forward,
            dz: &dz.data[at..at + g.out_row()],
            kw,
            cm,
            dw: &mut *dw,
            db: &mut *db,
        });
    }
    let Some(grad_input) = grad_input else {
        return;
    };
    let in_rows = g.owned_input_rows(&out_rows);
    assert_eq!(
        grad_input.len(),
        in_rows.len() * g.in_row(),
        "gradient rows of the wrong length"
    );
    for (iy, grad_row) in in_rows.zip(grad_input.chunks_exact_mut(g.in_row().max(1))) {
        if fresh {
            grad_row.fill(0.0);
        }
        transposed_rows(g, dz, iy, &mut rows);
        if rows.is_empty() {
            continue;
        }
        let wide = g.multiplier > 1;
        let dst = if wide {
            sized(grad_wide, g.wide_row())
        } else {
            &mut *grad_row
        };
        lanes::dispatch(Correlate {
            src: dz.data,
            rows: &rows,
            plan: &plans.transposed,
            weight,
            kw,
            cm,
            bias: None,
            bounds: None,
            // Every pixel of the row has a tile: a wide row is overwritten.
            accumulate: !wide,
            dst,
        });
        if wide {
            narrow(g, &grad_wide[..g.wide_row()], grad_row);
        }
    }
}

/// Forward of output rows `out_rows` of one image into `out_block` (their `c * m`-channel
/// output, activation applied).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_block(
    g: &DepthwiseGeometry,
    plans: &Plans,
    image: (&[f32], Option<&RowMap<'_>>),
    out_rows: Range<usize>,
    weight: &[f32],
    bias: Option<&[f32]>,
    act: FusedActivation,
    out_block: &mut [f32],
    scratch: &mut DwScratch,
) {
    let buffers = (&mut scratch.wide, &mut scratch.mapped);
    let src = source(g, image, g.input_rows(&out_rows), buffers);
    forward_rows_into(
        g,
        plans,
        &src,
        out_rows,
        weight,
        bias,
        act.bounds(),
        out_block,
    );
}

/// `depthwise(input)`: `out` (`batch x out_image`) is the convolution plus bias, activated.
/// An input with a map is made as it is read, each block's rows in a scratch buffer.
///
/// # Panics
/// When a slice does not match the geometry.
pub fn forward(
    g: &DepthwiseGeometry,
    Input { values: input, map }: Input<'_>,
    weight: &[f32],
    bias: Option<&[f32]>,
    act: FusedActivation,
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
    let plans = Plans::new(g);
    let block_rows = g.rows_per_block(ELEMENTS_PER_BLOCK);
    out.par_chunks_mut(g.out_image())
        .zip(input.par_chunks(g.in_image()))
        .for_each(|(out_image, image)| {
            out_image
                .par_chunks_mut(block_rows * g.out_row())
                .enumerate()
                .for_each(|(b, block)| {
                    let y0 = b * block_rows;
                    let rows = y0..y0 + block.len() / g.out_row();
                    let mut scratch = DwScratch::take();
                    forward_block(
                        g,
                        &plans,
                        (image, map),
                        rows,
                        weight,
                        bias,
                        act,
                        block,
                        &mut scratch,
                    );
                    scratch.give();
                })
        });
}

fn check_lengths(g: &DepthwiseGeometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) {
    assert_eq!(
        input.len(),
        g.batch * g.in_image(),
        "input of the wrong length"
    );
    assert_eq!(weight.len(), g.weight_len(), "weight of the wrong length");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), g.out_channels(), "bias of the wrong length");
    }
}

/// One backward block: output rows `rows` of image `image`, and the gradient of the input
/// rows it owns ([`DepthwiseGeometry::owned_input_rows`]) when the input gradient is wanted.
pub(crate) struct Block<'a> {
    /// The image.
    pub image: usize,
    /// Its output rows.
    pub rows: Range<usize>,
    /// The gradient of its input rows.
    pub grad_input: Option<&'a mut [f32]>,
}

/// The backward blocks, `block_rows` output rows each, with their disjoint slices of
/// `grad_input` (a batch of images of `in_row` elements per row).
pub(crate) fn blocks<'a>(
    g: &DepthwiseGeometry,
    block_rows: usize,
    grad_input: Option<&'a mut [f32]>,
    in_row: usize,
) -> Vec<Block<'a>> {
    let ho = g.window.rows.output;
    let ranges: Vec<Range<usize>> = (0..ho)
        .step_by(block_rows.max(1))
        .map(|y0| y0..(y0 + block_rows).min(ho))
        .collect();
    let mut out = Vec::with_capacity(g.batch * ranges.len());
    let mut slots: Vec<Option<&'a mut [f32]>> = match grad_input {
        Some(grad) => grad
            .chunks_mut((g.window.rows.input * in_row).max(1))
            .map(Some)
            .collect(),
        None => (0..g.batch).map(|_| None).collect(),
    };
    for (image, slot) in slots.iter_mut().enumerate() {
        let mut rest = slot.take();
        for rows in &ranges {
            let owned = g.owned_input_rows(rows);
            let grad_input = rest.take().map(|tail| {
                // INVARIANT: the owned input rows of consecutive blocks tile the image in
                // order, so each block's rows start where the previous block's ended.
                let (mine, tail) = tail.split_at_mut(owned.len() * in_row);
                rest = Some(tail);
                mine
            });
            out.push(Block {
                image,
                rows: rows.clone(),
                grad_input,
            });
        }
    }
    out
}

/// Gradients of a depthwise convolution, given the gradient of its (activated) output.
///
/// Adds into `grad_weight` (`taps x c*m`), `grad_bias` (`c*m`) and, when given, `grad_input`.
/// `bias` and `act` are the forward pass's (the pre-activation is recomputed).
///
/// # Panics
/// When a slice does not match the geometry.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &DepthwiseGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: FusedActivation,
    grad_out: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    backward_into(
        g,
        (input.into(), weight, bias, act),
        grad_out,
        (grad_input, false),
        grad_weight,
        grad_bias,
    );
}

/// [`backward`], the input gradient written over when `fresh`, whatever it held, with the
/// bits adding into a zeroed gradient gives (see [`backward_rows`]).
///
/// # Panics
/// As [`backward`].
pub(crate) fn backward_into(
    g: &DepthwiseGeometry,
    (input, weight, bias, act): (Input<'_>, &[f32], Option<&[f32]>, FusedActivation),
    grad_out: &[f32],
    (grad_input, fresh): (Option<&mut [f32]>, bool),
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) {
    let Input { values: input, map } = input;
    check_lengths(g, input, weight, bias);
    assert_eq!(
        grad_out.len(),
        g.batch * g.out_image(),
        "gradient of the wrong length"
    );
    assert_eq!(
        grad_weight.len(),
        g.weight_len(),
        "weight gradient of the wrong length"
    );
    if let Some(grad_input) = &grad_input {
        assert_eq!(
            grad_input.len(),
            input.len(),
            "input gradient of the wrong length"
        );
    }
    let plans = Plans::new(g);
    let want_input = grad_input.is_some();
    let block_rows = g.rows_per_block(ELEMENTS_PER_BLOCK);
    let items = blocks(g, block_rows, grad_input, g.in_row());
    let (wl, cm) = (g.weight_len(), g.out_channels());
    let (dw, db) = fold_in_order_by(
        items,
        |block| block.image,
        || (vec![0.0f32; wl], vec![0.0f32; cm]),
        |(mut dw, mut db), _, block| {
            let image = &input[block.image * g.in_image()..][..g.in_image()];
            let grad_image = &grad_out[block.image * g.out_image()..][..g.out_image()];
            let dz_rows = gradient_rows(g, &block.rows, want_input);
            let mut scratch = DwScratch::take();
            let DwScratch {
                wide,
                grad_wide,
                grad_mid,
                mapped,
                ..
            } = &mut scratch;
            let src = source(g, (image, map), g.input_rows(&dz_rows), (wide, mapped));
            let dz = match act.bounds() {
                None => Source {
                    data: grad_image,
                    first: 0,
                    row_len: g.out_row(),
                },
                Some((lo, hi)) => {
                    // Recompute the pre-activations of the rows, then pass the gradient where
                    // the clamp did not bind.
                    let pre = sized(grad_mid, dz_rows.len() * g.out_row());
                    forward_rows_into(g, &plans, &src, dz_rows.clone(), weight, bias, None, pre);
                    let go = &grad_image[dz_rows.start * g.out_row()..dz_rows.end * g.out_row()];
                    for (p, &go) in pre.iter_mut().zip(go) {
                        *p = if *p > lo && *p < hi { go } else { 0.0 };
                    }
                    Source {
                        data: pre,
                        first: dz_rows.start,
                        row_len: g.out_row(),
                    }
                }
            };
            backward_rows(
                g,
                &plans,
                &src,
                weight,
                &dz,
                block.rows,
                (block.grad_input, fresh),
                (&mut dw, &mut db),
                grad_wide,
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::geometry::Padding;
    use crate::backend::ops::test_values;

    #[test]
    fn blocks_own_every_input_row_once_and_see_their_readers() {
        for (h, k, s, padding) in [
            (9, 3, 1, Padding::Same),
            (10, 5, 2, Padding::Same),
            (7, 2, 1, Padding::Valid),
            (30, 7, 3, Padding::Same),
            (31, 3, 2, Padding::Valid),
            (5, 1, 3, Padding::Valid),
        ] {
            let window = Window2::new((h, 4), (k, 1), (s, 1), padding).expect("fits");
            let rows = window.rows;
            let g = DepthwiseGeometry {
                batch: 2,
                channels: 1,
                multiplier: 1,
                window,
            };
            // Brute force: the output rows reading each input row.
            let readers = |iy: usize| -> Vec<usize> {
                (0..rows.output)
                    .filter(|&y| (0..k).any(|i| rows.source(y, i) == Some(iy)))
                    .collect()
            };
            for block_rows in 1..=rows.output {
                let mut grad = vec![0.0; g.batch * g.in_image()];
                // Splitting panics if the owned rows do not tile each image.
                let blocks = blocks(&g, block_rows, Some(&mut grad), g.in_row());
                assert_eq!(blocks.len(), 2 * rows.output.div_ceil(block_rows));
                let mut next = 0;
                for b in blocks.iter().filter(|b| b.image == 0) {
                    let owned = g.owned_input_rows(&b.rows);
                    assert_eq!(owned.start, next);
                    next = owned.end;
                    let needed = gradient_rows(&g, &b.rows, true);
                    for iy in owned {
                        for y in readers(iy) {
                            assert!(needed.contains(&y), "{h} {k} {s}: {iy} read by {y}");
                        }
                    }
                }
                assert_eq!(next, h);
            }
            for iy in 0..h {
                let expected = readers(iy);
                let found: Vec<usize> = g.output_rows(&(iy..iy + 1)).collect();
                assert!(expected.iter().all(|y| found.contains(y)), "{iy}");
            }
        }
    }

    /// `len` values in -2..=2, a different sequence for each `seed`.
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0) * 2.0)
            .collect()
    }

    /// A case of the tests below: (input, kernel, stride, padding, channels, multiplier).
    type Case = (
        (usize, usize),
        (usize, usize),
        (usize, usize),
        Padding,
        usize,
        usize,
    );

    /// The geometry of `case` on `batch` images.
    fn geometry(batch: usize, case: Case) -> DepthwiseGeometry {
        let (input, kernel, stride, padding, channels, multiplier) = case;
        DepthwiseGeometry {
            batch,
            channels,
            multiplier,
            window: Window2::new(input, kernel, stride, padding).expect("the window fits"),
        }
    }

    /// Forward output and all gradients of one random case.
    fn run_case(g: &DepthwiseGeometry, act: FusedActivation) -> [Vec<f32>; 4] {
        let input = values(g.batch * g.in_image(), 1);
        let weight = values(g.weight_len(), 2);
        let bias = values(g.out_channels(), 3);
        let grad_out = values(g.batch * g.out_image(), 4);
        let mut out = vec![0.0; g.batch * g.out_image()];
        forward(g, input[..].into(), &weight, Some(&bias), act, &mut out);
        let mut gx = vec![0.5; input.len()];
        let mut gw = vec![0.0; weight.len()];
        let mut gb = vec![0.0; bias.len()];
        backward(
            g,
            &input,
            &weight,
            Some(&bias),
            act,
            &grad_out,
            Some(&mut gx),
            &mut gw,
            Some(&mut gb),
        );
        [out, gx, gw, gb]
    }

    #[test]
    fn every_vector_kind_agrees() {
        use crate::backend::ops::lanes::{force, Kind};
        let mut cases = Vec::new();
        for case in [
            ((9, 14), (3, 3), (1, 1), Padding::Same, 19, 1),
            ((8, 11), (2, 3), (2, 2), Padding::Same, 3, 2),
            ((7, 13), (3, 2), (2, 1), Padding::Valid, 40, 1),
        ] {
            let g = geometry(2, case);
            for act in [FusedActivation::Linear, FusedActivation::Relu6] {
                cases.push((g, act));
            }
        }
        let _kinds = lanes::kind_lock();
        let widest: Vec<_> = cases.iter().map(|(g, act)| run_case(g, *act)).collect();
        for kind in [Kind::Avx2, Kind::Scalar] {
            force(Some(kind));
            let results: Vec<_> = cases.iter().map(|(g, act)| run_case(g, *act)).collect();
            force(None);
            for ((r, w), case) in results.iter().zip(&widest).zip(&cases) {
                for (a, b) in r.iter().zip(w) {
                    for (x, y) in a.iter().zip(b) {
                        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{kind:?} {case:?}");
                    }
                }
            }
        }
    }

    /// Written over a gradient full of NaN, the input gradient has the bits of adding into a
    /// zeroed one: every row of every image is written (a row no output reads included), and
    /// the weight and bias gradients are unchanged.
    #[test]
    fn an_overwritten_input_gradient_is_the_one_added_into_zeros() {
        // Both runs must take one vector kind (`every_vector_kind_agrees` forces others).
        let _kinds = lanes::kind_lock();
        for case in [
            ((9, 14), (3, 3), (1, 1), Padding::Same, 19, 1),
            ((16, 16), (3, 3), (2, 2), Padding::Same, 40, 1),
            ((8, 11), (2, 3), (2, 2), Padding::Same, 3, 2),
            ((7, 13), (3, 2), (2, 1), Padding::Valid, 40, 1),
            // Stride 3, valid: the last input row and column reach no output.
            ((8, 8), (2, 2), (3, 3), Padding::Valid, 5, 1),
        ] {
            let g = geometry(3, case);
            let x = values(g.batch * g.in_image(), 1);
            let weight = values(g.weight_len(), 2);
            let grad_out = values(g.batch * g.out_image(), 4);
            let act = FusedActivation::Linear;
            let run = |fresh: bool| {
                let mut gx = vec![if fresh { f32::NAN } else { 0.0 }; x.len()];
                let mut gw = vec![0.0; weight.len()];
                let mut gb = vec![0.0; g.out_channels()];
                let operands = (x[..].into(), &weight[..], None, act);
                let grad_input = (Some(&mut gx[..]), fresh);
                backward_into(&g, operands, &grad_out, grad_input, &mut gw, Some(&mut gb));
                [gx, gw, gb].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
            };
            assert_eq!(run(true), run(false), "{g:?}");
        }
    }

    /// An input made by a row map as the blocks read their rows gives the bits of the map
    /// applied to the whole batch first: the output and all three gradients.
    #[test]
    fn a_mapped_input_is_the_batch_mapped_first() {
        // Both runs must take one vector kind (`every_vector_kind_agrees` forces others).
        let _kinds = lanes::kind_lock();
        for case in [
            ((9, 14), (3, 3), (1, 1), Padding::Same, 19, 1),
            ((16, 16), (3, 3), (2, 2), Padding::Same, 40, 1),
            ((8, 11), (2, 3), (2, 2), Padding::Same, 3, 2),
            ((7, 13), (3, 2), (2, 1), Padding::Valid, 40, 1),
        ] {
            let g = geometry(3, case);
            let c = g.channels;
            let raw = values(g.batch * g.in_image(), 1);
            let (scale, shift) = (values(c, 5), values(c, 6));
            let map = test_values::per_channel_map(&scale, &shift);
            let mut mapped = vec![0.0; raw.len()];
            map(&raw, &mut mapped);
            let weight = values(g.weight_len(), 2);
            let bias = values(g.out_channels(), 3);
            let grad_out = values(g.batch * g.out_image(), 4);
            for act in [FusedActivation::Linear, FusedActivation::Relu6] {
                let run = |input: Input<'_>| {
                    let mut out = vec![0.0; g.batch * g.out_image()];
                    forward(&g, input, &weight, Some(&bias), act, &mut out);
                    let mut gx = vec![0.0; raw.len()];
                    let mut gw = vec![0.0; weight.len()];
                    let mut gb = vec![0.0; bias.len()];
                    let operands = (input, &weight[..], Some(&bias[..]), act);
                    let grad_input = (Some(&mut gx[..]), false);
                    backward_into(&g, operands, &grad_out, grad_input, &mut gw, Some(&mut gb));
                    [out, gx, gw, gb].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
                };
                let made = run(Input {
                    values: &raw,
                    map: Some(&map),
                });
                assert_eq!(made, run(mapped[..].into()), "{g:?} {act:?}");
                assert_ne!(made, run(raw[..].into()), "{g:?} {act:?}: the map matters");
            }
        }
    }

    #[test]
    fn interior_columns_have_every_tap() {
        let cols = Axis1::new(7, 3, 2, Padding::Same).expect("fits");
        let inner = interior(&cols);
        for x in 0..cols.output {
            assert_eq!(inner.contains(&x), cols.valid_taps(x) == (0..3), "{x}");
        }
    }
}
