//! The differentiable merges of branches: element-wise sum, concatenation along channels (or
//! features), and element-wise product, where an image may be multiplied by per-channel vectors
//! (squeeze-and-excitation).
//!
//! # API
//!
//! A merge reads several stored activations and writes one. The graph executor keeps its
//! activations without a tape and holds the one tape of the pass, so every merge takes its
//! inputs as tapeless [`Operand`]s (an image `(n, h, w, c)` or a flat batch `(n, f)`) plus that
//! tape, and returns a [`Merged`] output that carries the tape on, like every other op. The
//! backward pass *adds* into each input's gradient slot, once per occurrence: an input listed
//! twice (`add(x, x)`, `mul(x, x)`) gets both contributions.
//!
//! - [`add`]: `x_0 + x_1 + ...`, all inputs of one shape, summed left to right (Keras `Add`).
//! - [`concat`]: images of one height and width side by side along the channels (per pixel,
//!   the inputs' channel vectors one after another), or flat batches along the features (Keras
//!   `Concatenate(axis=-1)`).
//! - [`mul`]: `x_0 * x_1 * ...`, left to right (Keras `Multiply`), all inputs of one shape, or
//!   images of one shape mixed with `(n, c)` vectors, each vector scaling its sample's channels
//!   at every pixel (Keras `Multiply` after `Reshape((1, 1, c))`), in any order. A vector's
//!   gradient is the sum over the pixels, added in pixel order one sample at a time, so it is
//!   the same bits on any thread count.
//! - [`merge`]: the three above chosen by the IR's [`MergeKind`].
//! - [`check`]: the shape rules as a `Result`, without running anything; the merges panic with
//!   its message when the inputs do not fit (the compiler's `merge_shape` rejects such models).

use crate::backend::ops::buffers;
use crate::backend::ops::depthwise_kernels::FusedActivation;
use crate::backend::ops::profile;
use crate::backend::ops::tape::{self, GradSlot, Grads};
use crate::backend::ops::{Flat, Image};
use crate::ir::MergeKind;
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, CpuError, NoneTape, PutTape, Tape, Tensor, TensorFromVec};
use rayon::prelude::*;
use std::fmt;

/// Elements per parallel chunk (rounded to whole rows).
const CHUNK: usize = 1 << 15;

/// One input of a merge: a stored activation without a tape.
#[derive(Debug, Clone)]
pub enum Operand {
    /// An NHWC image batch `(n, h, w, c)`.
    Image(Image<NoneTape>),
    /// A flat batch `(n, f)`; in a product with images, one scale per channel.
    Flat(Flat<NoneTape>),
}

impl From<Image<NoneTape>> for Operand {
    fn from(x: Image<NoneTape>) -> Self {
        Operand::Image(x)
    }
}

impl From<Flat<NoneTape>> for Operand {
    fn from(x: Flat<NoneTape>) -> Self {
        Operand::Flat(x)
    }
}

impl Operand {
    /// The shape with the batch axis: `[n, h, w, c]` or `[n, f]`.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Operand::Image(x) => {
                let (n, h, w, c) = *x.shape();
                vec![n, h, w, c]
            }
            Operand::Flat(x) => {
                let (n, f) = *x.shape();
                vec![n, f]
            }
        }
    }
}

/// The output of a merge, carrying the tape.
#[derive(Debug)]
pub enum Merged<T: Tape<f32, Cpu>> {
    /// An image batch (any merge of images; a product with at least one image).
    Image(Image<T>),
    /// A flat batch (a merge of flat batches only).
    Flat(Flat<T>),
}

impl<T: Tape<f32, Cpu>> Merged<T> {
    /// The image, if the merge made one.
    pub fn into_image(self) -> Option<Image<T>> {
        match self {
            Merged::Image(x) => Some(x),
            Merged::Flat(_) => None,
        }
    }

    /// The flat batch, if the merge made one.
    pub fn into_flat(self) -> Option<Flat<T>> {
        match self {
            Merged::Flat(x) => Some(x),
            Merged::Image(_) => None,
        }
    }
}

/// Why a merge's inputs do not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// A merge of no inputs.
    NoInputs(MergeKind),
    /// Inputs whose shapes the merge cannot combine (shapes with the batch axis, in order).
    Mismatch {
        /// The merge.
        kind: MergeKind,
        /// Every input's shape, batch axis first.
        shapes: Vec<Vec<usize>>,
    },
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::NoInputs(kind) => write!(f, "{kind:?} merge of no inputs"),
            MergeError::Mismatch { kind, shapes } => {
                write!(f, "{kind:?} merge of inputs that do not fit: {shapes:?}")
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// The output layout of a merge: `batch` samples of `pixels` rows of `width` values (a flat
/// batch is one pixel per sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    batch: usize,
    pixels: usize,
    width: usize,
    /// `(h, w)` for an image output, `None` for a flat one.
    image: Option<(usize, usize)>,
}

impl Layout {
    fn rows(&self) -> usize {
        self.batch * self.pixels
    }

    /// Rows per parallel chunk.
    fn rows_per_chunk(&self) -> usize {
        (CHUNK / self.width.max(1)).max(1)
    }
}

/// Checks `inputs` against the rules of `kind` (the compiler's `merge_shape`, plus one batch
/// size for all): `Add` one shape for all; `Concat` images of one height and width, or flat
/// batches; `Mul` one shape for all, or images of one shape with `(n, c)` vectors.
pub fn check(kind: MergeKind, inputs: &[Operand]) -> Result<(), MergeError> {
    layout(kind, inputs).map(|_| ())
}

fn layout(kind: MergeKind, inputs: &[Operand]) -> Result<Layout, MergeError> {
    let mismatch = || MergeError::Mismatch {
        kind,
        shapes: inputs.iter().map(Operand::dims).collect(),
    };
    let Some(first) = inputs.first() else {
        return Err(MergeError::NoInputs(kind));
    };
    let dims: Vec<Vec<usize>> = inputs.iter().map(Operand::dims).collect();
    let batch = dims[0][0];
    if dims.iter().any(|d| d[0] != batch) {
        return Err(mismatch());
    }
    let image_of = |d: &[usize]| match *d {
        [_, h, w, c] => Some((h, w, c)),
        _ => None,
    };
    match kind {
        MergeKind::Add => {
            if dims.iter().any(|d| *d != dims[0]) {
                return Err(mismatch());
            }
            Ok(match image_of(&dims[0]) {
                Some((h, w, c)) => image_layout(batch, h, w, c),
                None => flat_layout(batch, dims[0][1]),
            })
        }
        MergeKind::Concat => match first {
            Operand::Image(_) => {
                let (h, w, _) = image_of(&dims[0]).ok_or_else(mismatch)?;
                let mut channels = 0usize;
                for d in &dims {
                    match image_of(d) {
                        Some((hh, ww, c)) if (hh, ww) == (h, w) => {
                            channels = channels.checked_add(c).ok_or_else(mismatch)?;
                        }
                        _ => return Err(mismatch()),
                    }
                }
                Ok(image_layout(batch, h, w, channels))
            }
            Operand::Flat(_) => {
                let mut features = 0usize;
                for d in &dims {
                    match *d.as_slice() {
                        [_, f] => features = features.checked_add(f).ok_or_else(mismatch)?,
                        _ => return Err(mismatch()),
                    }
                }
                Ok(flat_layout(batch, features))
            }
        },
        MergeKind::Mul => {
            let image = dims.iter().find(|d| d.len() == 4);
            match image {
                Some(image) => {
                    let (h, w, c) = image_of(image).ok_or_else(mismatch)?;
                    let fits = dims
                        .iter()
                        .all(|d| d == image || (d.len() == 2 && d[1] == c));
                    if !fits {
                        return Err(mismatch());
                    }
                    Ok(image_layout(batch, h, w, c))
                }
                None => {
                    if dims.iter().any(|d| *d != dims[0]) {
                        return Err(mismatch());
                    }
                    Ok(flat_layout(batch, dims[0][1]))
                }
            }
        }
    }
}

fn image_layout(batch: usize, h: usize, w: usize, c: usize) -> Layout {
    Layout {
        batch,
        pixels: h * w,
        width: c,
        image: Some((h, w)),
    }
}

fn flat_layout(batch: usize, features: usize) -> Layout {
    Layout {
        batch,
        pixels: 1,
        width: features,
        image: None,
    }
}

/// Runs the merge `kind` on `inputs` (see [`add`], [`concat`], [`mul`]).
///
/// # Panics
/// When the inputs do not fit ([`check`] says why); the compiler rejects such models.
pub fn merge<T: Tape<f32, Cpu>>(kind: MergeKind, inputs: Vec<Operand>, tape: T) -> Merged<T> {
    match kind {
        MergeKind::Add => add(inputs, tape),
        MergeKind::Concat => concat(inputs, tape),
        MergeKind::Mul => mul(inputs, tape),
    }
}

/// Element-wise sum of inputs of one shape, added left to right (`((x0 + x1) + x2) ...`, as
/// Keras `Add`). Each input's gradient gets the output gradient, once per occurrence.
///
/// # Panics
/// When the inputs are empty or differ in shape.
pub fn add<T: Tape<f32, Cpu>>(inputs: Vec<Operand>, tape: T) -> Merged<T> {
    add_activated(inputs, FusedActivation::Linear, tape)
}

/// [`add`] followed by a `relu` or `relu6` in the same pass (`add(…) relu`, the end of a
/// residual block): the output is clamped as it is written, and the backward passes on the
/// output gradient where the activation's derivative is 1 (`lo < y < hi` on the output, as
/// TensorFlow's `ReluGrad`/`Relu6Grad` test it), 0 elsewhere.
///
/// # Panics
/// When the inputs are empty or differ in shape.
pub fn add_activated<T: Tape<f32, Cpu>>(
    inputs: Vec<Operand>,
    activation: FusedActivation,
    tape: T,
) -> Merged<T> {
    let _timer = profile::scope("merge.add.forward");
    let layout = fitting(MergeKind::Add, &inputs);
    let Parts {
        device,
        data,
        slots,
        ..
    } = read_parts(inputs);
    let mut out = buffers::take(layout.rows() * layout.width);
    let chunk = layout.rows_per_chunk() * layout.width.max(1);
    out.par_chunks_mut(chunk).enumerate().for_each(|(k, o)| {
        let (start, len) = (k * chunk, o.len());
        o.copy_from_slice(&data[0][start..][..len]);
        for part in &data[1..] {
            o.iter_mut()
                .zip(&part[start..][..len])
                .for_each(|(a, b)| *a += b);
        }
        if let Some((lo, hi)) = activation.bounds() {
            o.iter_mut().for_each(|v| *v = v.max(lo).min(hi));
        }
    });
    data.into_iter().for_each(buffers::give);
    // Where the activation passes the gradient on, read off the output (kept as one byte an
    // element, not the output itself).
    let passes: Option<Vec<u8>> = match activation.bounds() {
        Some((lo, hi)) if T::OWNS_TAPE => Some(
            out.par_iter()
                .map(|&y| u8::from(y > lo && y < hi))
                .collect(),
        ),
        Some(_) | None => None,
    };
    let backward = move |grad_out: &[f32], grads: &mut Grads| {
        let masked = passes.as_ref().map(|passes| {
            let mut masked = buffers::take(grad_out.len());
            masked
                .par_chunks_mut(CHUNK)
                .zip(grad_out.par_chunks(CHUNK))
                .zip(passes.par_chunks(CHUNK))
                .for_each(|((m, g), p)| {
                    m.iter_mut()
                        .zip(g)
                        .zip(p)
                        .for_each(|((m, &g), &p)| *m = if p == 1 { g } else { 0.0 });
                });
            masked
        });
        let grad = masked.as_deref().unwrap_or(grad_out);
        for slot in &slots {
            tape::add_into(slot(grads)?, grad);
        }
        if let Some(masked) = masked {
            buffers::give(masked);
        }
        Ok(())
    };
    finish(device, layout, out, tape, "merge.add.backward", backward)
}

/// Concatenation along the last axis: images of one `(n, h, w)` give `(n, h, w, c_0 + c_1 +
/// ...)`, each output pixel the inputs' channel vectors in input order; flat batches of one `n`
/// give `(n, f_0 + f_1 + ...)`. Each input's gradient is its slice of the output gradient.
///
/// # Panics
/// When the inputs are empty, mix images and flat batches, or differ in batch, height or width.
pub fn concat<T: Tape<f32, Cpu>>(inputs: Vec<Operand>, tape: T) -> Merged<T> {
    let _timer = profile::scope("merge.concat.forward");
    let layout = fitting(MergeKind::Concat, &inputs);
    let Parts {
        device,
        data,
        widths,
        slots,
    } = read_parts(inputs);
    let offsets: Vec<usize> = widths
        .iter()
        .scan(0, |acc, w| {
            let at = *acc;
            *acc += w;
            Some(at)
        })
        .collect();
    let width = layout.width;
    let rows_per_chunk = layout.rows_per_chunk();
    let mut out = buffers::take(layout.rows() * width);
    if width > 0 {
        out.par_chunks_mut(rows_per_chunk * width)
            .enumerate()
            .for_each(|(k, o)| {
                let first_row = k * rows_per_chunk;
                for (r, row) in o.chunks_exact_mut(width).enumerate() {
                    for ((part, &w), &at) in data.iter().zip(&widths).zip(&offsets) {
                        row[at..at + w].copy_from_slice(&part[(first_row + r) * w..][..w]);
                    }
                }
            });
    }
    data.into_iter().for_each(buffers::give);
    let backward = move |grad_out: &[f32], grads: &mut Grads| {
        for ((slot, &w), &at) in slots.iter().zip(&widths).zip(&offsets) {
            if w == 0 {
                continue;
            }
            let grad_in: &mut [f32] = slot(grads)?;
            grad_in
                .par_chunks_mut(rows_per_chunk * w)
                .zip(grad_out.par_chunks(rows_per_chunk * width))
                .for_each(|(gi, go)| {
                    for (gi, go) in gi.chunks_exact_mut(w).zip(go.chunks_exact(width)) {
                        gi.iter_mut()
                            .zip(&go[at..at + w])
                            .for_each(|(d, g)| *d += g);
                    }
                });
        }
        Ok(())
    };
    finish(device, layout, out, tape, "merge.concat.backward", backward)
}

/// Element-wise product, multiplied left to right (`((x0 * x1) * x2) ...`, as Keras
/// `Multiply`): inputs of one shape, or images of one shape `(n, h, w, c)` together with
/// `(n, c)` vectors in any order, a vector scaling its sample's channel `ch` at every pixel.
///
/// Gradients: input `i` gets `g * prod_{j != i} x_j` (per occurrence, so `mul(x, x)` gives
/// `2 g x`); a vector gets that summed over the pixels of its sample, in pixel order (one
/// sample per task, so the sum is the same bits on any thread count).
///
/// # Panics
/// When the inputs are empty or do not fit as above.
pub fn mul<T: Tape<f32, Cpu>>(inputs: Vec<Operand>, tape: T) -> Merged<T> {
    let _timer = profile::scope("merge.mul.forward");
    let layout = fitting(MergeKind::Mul, &inputs);
    // Vectors in a product with images: one value per sample and channel, for every pixel.
    let broadcast: Vec<bool> = inputs
        .iter()
        .map(|x| layout.image.is_some() && matches!(x, Operand::Flat(_)))
        .collect();
    let Parts {
        device,
        data,
        slots,
        ..
    } = read_parts(inputs);
    let is_vector = broadcast.clone();
    let (width, pixels) = (layout.width, layout.pixels);
    let rows_per_chunk = layout.rows_per_chunk();
    // The start of the row of input `i` that multiplies output row `r`.
    let row_of = move |i: usize, r: usize| -> usize {
        if broadcast[i] {
            r / pixels * width
        } else {
            r * width
        }
    };
    let mut out = buffers::take(layout.rows() * width);
    if width > 0 {
        out.par_chunks_mut(rows_per_chunk * width)
            .enumerate()
            .for_each(|(k, o)| {
                for (r, row) in o.chunks_exact_mut(width).enumerate() {
                    let r = k * rows_per_chunk + r;
                    row.copy_from_slice(&data[0][row_of(0, r)..][..width]);
                    for (i, part) in data.iter().enumerate().skip(1) {
                        let src = &part[row_of(i, r)..][..width];
                        row.iter_mut().zip(src).for_each(|(a, b)| *a *= b);
                    }
                }
            });
    }
    if !T::OWNS_TAPE || width == 0 || pixels == 0 {
        data.into_iter().for_each(buffers::give);
        let nothing = |_: &[f32], _: &mut Grads| Ok(());
        return finish(device, layout, out, tape, "merge.mul.backward", nothing);
    }
    let backward = move |grad_out: &[f32], grads: &mut Grads| {
        // The product of every input but `skip` at output row `r`, in input order.
        let others = |skip: usize, r: usize, into: &mut [f32]| {
            into.fill(1.0);
            for (j, part) in data.iter().enumerate() {
                if j != skip {
                    let src = &part[row_of(j, r)..][..width];
                    into.iter_mut().zip(src).for_each(|(a, b)| *a *= b);
                }
            }
        };
        for (i, slot) in slots.iter().enumerate() {
            let grad_in: &mut [f32] = slot(grads)?;
            if is_vector[i] {
                // One vector per sample: the sum over its pixels, in pixel order.
                grad_in
                    .par_chunks_mut(width)
                    .zip(grad_out.par_chunks(pixels * width))
                    .enumerate()
                    .for_each(|(n, (gi, go))| {
                        let mut prod = vec![0.0f32; width];
                        let mut sum = vec![0.0f32; width];
                        for (p, go) in go.chunks_exact(width).enumerate() {
                            others(i, n * pixels + p, &mut prod);
                            for ((s, g), q) in sum.iter_mut().zip(go).zip(&prod) {
                                *s += g * q;
                            }
                        }
                        gi.iter_mut().zip(&sum).for_each(|(d, s)| *d += s);
                    });
            } else {
                // The output's shape: one gradient row per output row.
                grad_in
                    .par_chunks_mut(rows_per_chunk * width)
                    .zip(grad_out.par_chunks(rows_per_chunk * width))
                    .enumerate()
                    .for_each(|(k, (gi, go))| {
                        let mut prod = vec![0.0f32; width];
                        let rows = gi.chunks_exact_mut(width).zip(go.chunks_exact(width));
                        for (r, (gi, go)) in rows.enumerate() {
                            others(i, k * rows_per_chunk + r, &mut prod);
                            for ((d, g), q) in gi.iter_mut().zip(go).zip(&prod) {
                                *d += g * q;
                            }
                        }
                    });
            }
        }
        data.into_iter().for_each(buffers::give);
        Ok(())
    };
    finish(device, layout, out, tape, "merge.mul.backward", backward)
}

/// The layout of a merge whose inputs must fit.
fn fitting(kind: MergeKind, inputs: &[Operand]) -> Layout {
    match layout(kind, inputs) {
        Ok(layout) => layout,
        // INVARIANT: the compiler's `merge_shape` accepts only inputs that fit.
        Err(err) => panic!("{err}"),
    }
}

/// Finds an input's gradient slot in the gradient store.
type SlotFn = Box<dyn Fn(&mut Grads) -> Result<&mut GradSlot, CpuError>>;

fn slot_fn(f: impl Fn(&mut Grads) -> Result<&mut GradSlot, CpuError> + 'static) -> SlotFn {
    Box::new(f)
}

/// The inputs, read: their values, row widths (last axis) and the ways to their gradients.
struct Parts {
    device: Cpu,
    data: Vec<Vec<f32>>,
    widths: Vec<usize>,
    slots: Vec<SlotFn>,
}

fn read_parts(inputs: Vec<Operand>) -> Parts {
    let mut parts = Parts {
        device: match inputs.first() {
            Some(Operand::Image(x)) => x.device().clone(),
            Some(Operand::Flat(x)) => x.device().clone(),
            None => Cpu::default(),
        },
        data: Vec::with_capacity(inputs.len()),
        widths: Vec::with_capacity(inputs.len()),
        slots: Vec::with_capacity(inputs.len()),
    };
    for input in inputs {
        match input {
            Operand::Image(x) => parts.push(x, |&(_, _, _, c)| c),
            Operand::Flat(x) => parts.push(x, |&(_, f)| f),
        }
    }
    parts
}

impl Parts {
    fn push<S: Shape>(&mut self, x: Tensor<S, f32, Cpu>, width: impl Fn(&S) -> usize) {
        let ghost = x.ghost();
        self.data.push(buffers::read(&x));
        self.widths.push(width(x.shape()));
        self.slots
            .push(slot_fn(move |grads| grads.get_or_alloc_mut(&ghost)));
    }
}

/// Makes the output tensor and, on a tape that records, registers `backward(grad_out, grads)`.
fn finish<T: Tape<f32, Cpu>>(
    device: Cpu,
    layout: Layout,
    out: Vec<f32>,
    mut tape: T,
    name: &'static str,
    backward: impl FnOnce(&[f32], &mut Grads) -> Result<(), CpuError> + 'static,
) -> Merged<T> {
    match layout.image {
        Some((h, w)) => {
            let out = device.tensor_from_vec(out, (layout.batch, h, w, layout.width));
            if T::OWNS_TAPE {
                let out_ghost = out.ghost();
                tape.add_backward_op(move |grads| {
                    let _timer = profile::scope(name);
                    let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
                    backward(&grad_out, grads)?;
                    tape::release(grad_out);
                    Ok(())
                });
            }
            Merged::Image(out.put_tape(tape))
        }
        None => {
            let out = device.tensor_from_vec(out, (layout.batch, layout.width));
            if T::OWNS_TAPE {
                let out_ghost = out.ghost();
                tape.add_backward_op(move |grads| {
                    let _timer = profile::scope(name);
                    let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
                    backward(&grad_out, grads)?;
                    tape::release(grad_out);
                    Ok(())
                });
            }
            Merged::Flat(out.put_tape(tape))
        }
    }
}
