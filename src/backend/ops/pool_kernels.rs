//! The arithmetic of max and average pooling on NHWC slices.
//!
//! Max pooling ignores padding (as Keras, padding never wins); average pooling divides by the
//! number of window elements inside the input (Keras `same` averages only valid elements).

use crate::backend::ops::geometry::Window2;
use crate::backend::ops::simd;
use rayon::prelude::*;

/// Everything the kernels need to know about one pooling.
#[derive(Debug, Clone, Copy)]
pub struct PoolGeometry {
    /// Batch size.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Window placement on the image.
    pub window: Window2,
}

impl PoolGeometry {
    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.window.rows.input * self.window.cols.input * self.channels
    }
    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.window.rows.output * self.window.cols.output * self.channels
    }
}

/// Max pooling forward; `argmax` (when given) gets, per output element, the index of the
/// winning input element within its image.
pub fn max_forward(g: &PoolGeometry, input: &[f32], out: &mut [f32], argmax: Option<&mut [u32]>) {
    let (rows, c) = (g.window.rows, g.channels);
    assert!(
        g.in_image() <= u32::MAX as usize,
        "image too large for u32 argmax"
    );
    let row_len = g.window.cols.output * c;
    let body = |row_idx: usize, out_row: &mut [f32], arg_row: Option<&mut [u32]>| {
        let (n, y) = (row_idx / rows.output, row_idx % rows.output);
        let image = &input[n * g.in_image()..][..g.in_image()];
        let mut winners = vec![0.0f32; c];
        simd::fast(|| max_row(g, image, y, out_row, arg_row, &mut winners));
    };
    match argmax {
        Some(argmax) => out
            .par_chunks_mut(row_len)
            .zip(argmax.par_chunks_mut(row_len))
            .enumerate()
            .for_each(|(r, (o, a))| body(r, o, Some(a))),
        None => out
            .par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, o)| body(r, o, None)),
    }
}

/// One output row of max pooling. Winners are tracked as f32 tap numbers (exact: windows are
/// far below 2^24 elements) so that the compare-and-select vectorises.
#[inline(always)]
fn max_row(
    g: &PoolGeometry,
    image: &[f32],
    y: usize,
    out_row: &mut [f32],
    mut arg_row: Option<&mut [u32]>,
    winners: &mut [f32],
) {
    let (rows, cols, c) = (g.window.rows, g.window.cols, g.channels);
    for x in 0..cols.output {
        let best = &mut out_row[x * c..][..c];
        best.fill(f32::NEG_INFINITY);
        winners.fill(0.0);
        let (taps_y, taps_x) = (rows.valid_taps(y), cols.valid_taps(x));
        let offset = |i: usize, j: usize| {
            let iy = y * rows.stride + i - rows.pad_before;
            let ix = x * cols.stride + j - cols.pad_before;
            (iy * cols.input + ix) * c
        };
        for i in taps_y.clone() {
            for j in taps_x.clone() {
                let src = &image[offset(i, j)..][..c];
                let tap = (i * cols.kernel + j) as f32;
                for ((b, w), &s) in best.iter_mut().zip(winners.iter_mut()).zip(src) {
                    let better = s > *b;
                    *b = if better { s } else { *b };
                    *w = if better { tap } else { *w };
                }
            }
        }
        if let Some(arg_row) = arg_row.as_deref_mut() {
            let arg = &mut arg_row[x * c..][..c];
            let first = offset(taps_y.start, taps_x.start) as u32;
            for (ch, (a, &w)) in arg.iter_mut().zip(winners.iter()).enumerate() {
                let tap = w as usize;
                // A window whose inputs are all -inf keeps its first tap.
                *a = if best[ch] == f32::NEG_INFINITY && tap == 0 {
                    first + ch as u32
                } else {
                    (offset(tap / cols.kernel, tap % cols.kernel) + ch) as u32
                };
            }
        }
    }
}

/// Max pooling backward: adds each output gradient onto its winning input element.
pub fn max_backward(g: &PoolGeometry, argmax: &[u32], grad_out: &[f32], grad_input: &mut [f32]) {
    grad_input
        .par_chunks_mut(g.in_image())
        .zip(grad_out.par_chunks(g.out_image()))
        .zip(argmax.par_chunks(g.out_image()))
        .for_each(|((gi, go), arg)| {
            go.iter().zip(arg).for_each(|(&v, &a)| gi[a as usize] += v);
        });
}

/// Average pooling forward.
pub fn avg_forward(g: &PoolGeometry, input: &[f32], out: &mut [f32]) {
    let (rows, cols, c) = (g.window.rows, g.window.cols, g.channels);
    out.par_chunks_mut(cols.output * c)
        .enumerate()
        .for_each(|(row_idx, out_row)| {
            let (n, y) = (row_idx / rows.output, row_idx % rows.output);
            let image = &input[n * g.in_image()..][..g.in_image()];
            for x in 0..cols.output {
                let acc = &mut out_row[x * c..][..c];
                acc.fill(0.0);
                let (taps_y, taps_x) = (rows.valid_taps(y), cols.valid_taps(x));
                for i in taps_y.clone() {
                    let iy = y * rows.stride + i - rows.pad_before;
                    for j in taps_x.clone() {
                        let ix = x * cols.stride + j - cols.pad_before;
                        let src = &image[(iy * cols.input + ix) * c..][..c];
                        acc.iter_mut().zip(src).for_each(|(a, s)| *a += s);
                    }
                }
                let scale = 1.0 / (taps_y.len() * taps_x.len()) as f32;
                acc.iter_mut().for_each(|a| *a *= scale);
            }
        });
}

/// Average pooling backward: spreads each output gradient over its valid window elements.
pub fn avg_backward(g: &PoolGeometry, grad_out: &[f32], grad_input: &mut [f32]) {
    let (rows, cols, c) = (g.window.rows, g.window.cols, g.channels);
    grad_input
        .par_chunks_mut(g.in_image())
        .zip(grad_out.par_chunks(g.out_image()))
        .for_each(|(gi, go)| {
            for y in 0..rows.output {
                for x in 0..cols.output {
                    let src = &go[(y * cols.output + x) * c..][..c];
                    let (taps_y, taps_x) = (rows.valid_taps(y), cols.valid_taps(x));
                    let scale = 1.0 / (taps_y.len() * taps_x.len()) as f32;
                    for i in taps_y {
                        let iy = y * rows.stride + i - rows.pad_before;
                        for j in taps_x.clone() {
                            let ix = x * cols.stride + j - cols.pad_before;
                            let dst = &mut gi[(iy * cols.input + ix) * c..][..c];
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s * scale);
                        }
                    }
                }
            }
        });
}
