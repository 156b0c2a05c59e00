//! In training, a linear convolution (plain or depthwise) and the batch norm that alone reads
//! its output, as one op: `activation(batch_norm(conv(x)) [+ skip])`, with the batch norm's
//! activation and a block's residual add run inside the batch norm as
//! [`batch_norm_add`](super::batch_norm::batch_norm_add) runs them.
//!
//! Run as two ops, the convolution's output becomes a tensor that the batch norm copies back
//! out, and in the backward the batch norm adds its input gradient into a zeroed gradient on
//! the tape, which the convolution's backward then takes. Here the output goes straight to the
//! batch norm, and the batch norm writes its input gradient over a pooled buffer that the
//! convolution's backward reads: two passes over the convolution's output fewer each way. The
//! values, the gradients and the moving statistics have the same bits as the two ops'.
//!
//! dfdx gives no borrowed view of a tensor's data, so an op that reads a tensor copies it out
//! first, on one thread. When one fused op feeds another (the convolutions of a residual
//! block, a block's input read again as its skip), the writer hands on its output as a
//! [`Mirror`] instead of a tensor: the values in a buffer of the pool, which the readers read
//! in place (and keep for their backward), and a cell where they sum the output's gradient
//! for the writer's backward. A reader that needs a tensor gets one made from the values
//! ([`Mirror::tensor`]); from then on every reader's gradient goes to that tensor's slot on
//! the tape, as if there had been no mirror, so the sums are added in the same order.
//!
//! When the one reader is a fused depthwise convolution, the writer does not write its output
//! at all ([`Handoff::Deferred`]): the mirror holds the batch norm's input and its
//! [`Normalisation`], and the depthwise kernels make each block's input rows of them as they
//! read them, in cache, in the forward and again in the backward. A MobileNetV2 block's
//! expanded activations, its largest tensors, are then never written to memory and read back;
//! the values are the same bits.

use crate::backend::ops::batch_norm::{
    self, BatchNormConfig, BatchNormParams, GradInput, Normalisation,
};
use crate::backend::ops::batch_norm_kernels::{ImageMoments, Periods};
use crate::backend::ops::buffers;
use crate::backend::ops::conv2d::{self, Conv2dConfig, Conv2dParams};
use crate::backend::ops::conv_kernels::{self, ConvGeometry};
use crate::backend::ops::depthwise::{self, DepthwiseConfig, DepthwiseParams};
use crate::backend::ops::depthwise_kernels::{self, DepthwiseGeometry, FusedActivation};
use crate::backend::ops::profile;
use crate::backend::ops::tape::{self, GradSlot, Grads};
use crate::backend::ops::winograd;
use crate::backend::ops::{Flat, Image, Input, Shape4, Vector};
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, CpuError, NoneTape, PutTape, SplitTape, Tape, TensorFromVec};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

/// A fused op's output handed to the ops that read it next without a tensor: its values,
/// and where its gradient is summed (see the module's documentation). Clones share both.
#[derive(Clone)]
pub struct Mirror {
    /// The output's values, or with `deferred`, the values it is made of.
    values: Arc<Vec<f32>>,
    /// The normalisation that makes the output of `values` ([`Handoff::Deferred`]).
    deferred: Option<Arc<Deferred>>,
    shape: Shape4,
    grad: Arc<GradCell>,
}

/// A deferred output: its normalisation, and the output made once for a reader that reads
/// the values themselves (the depthwise reader it is deferred for makes its rows instead).
struct Deferred {
    normalisation: Normalisation,
    made: OnceLock<Vec<f32>>,
}

/// How a fused op hands its output on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// As a tensor.
    Tensor,
    /// As a [`Mirror`] of the output's values.
    Mirror,
    /// As a [`Mirror`] of the batch norm's input and normalisation, the output never written:
    /// for a fused depthwise convolution that alone reads it (see the module's
    /// documentation). With a skip, as [`Handoff::Mirror`].
    Deferred,
}

/// Where the gradient of a mirrored output is summed.
#[derive(Default)]
struct GradCell {
    /// The readers' sum so far: `None` until the first reader's backward writes it.
    sum: Mutex<Option<Vec<f32>>>,
    /// The slots on the tape of the tensors made for readers that read one. Once there is
    /// one, every mirror reader's gradient goes to the first instead of `sum`. An identity
    /// hands a mirror on as it is stored, so the identity's readers and the writer's other
    /// readers may each make one: the later ones' readers' gradients land in their slots, and
    /// the writer adds them to the first's.
    tensors: Mutex<Vec<SlotOf>>,
}

impl GradCell {
    fn tensors(&self) -> std::sync::MutexGuard<'_, Vec<SlotOf>> {
        self.tensors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Finds (or makes) a tensor's gradient slot on the tape.
type SlotOf =
    Box<dyn for<'g> Fn(&'g mut Grads) -> Result<&'g mut GradSlot, CpuError> + Send + Sync>;

impl Mirror {
    fn new(values: Vec<f32>, shape: Shape4) -> Mirror {
        Mirror {
            values: Arc::new(values),
            deferred: None,
            shape,
            grad: Arc::default(),
        }
    }

    /// The output `normalisation(values)`, not made yet.
    fn deferred(values: Arc<Vec<f32>>, normalisation: Normalisation, shape: Shape4) -> Mirror {
        let deferred = Deferred {
            normalisation,
            made: OnceLock::new(),
        };
        Mirror {
            values,
            deferred: Some(Arc::new(deferred)),
            shape,
            grad: Arc::default(),
        }
    }

    /// When the output is deferred, the values it is made of and how.
    fn deferred_parts(&self) -> Option<(&[f32], &Normalisation)> {
        let deferred = self.deferred.as_deref()?;
        Some((&self.values, &deferred.normalisation))
    }

    /// The values as a tensor on `device`, for a reader that reads a tensor: moved into it
    /// when no other reader holds them, else copied. Make it once per stored output, and
    /// hand the same tensor to every such reader: the writer reads the gradient from the
    /// first such tensor's slot (and adds any later one's, see [`GradCell::tensors`]).
    pub fn tensor(self, device: &Cpu) -> Image<NoneTape> {
        let (grad, shape) = (Arc::clone(&self.grad), self.shape);
        let tensor = device.tensor_from_vec(self.into_values(), shape);
        let ghost = tensor.ghost();
        let slot: SlotOf = Box::new(move |grads| grads.get_or_alloc_mut(&ghost));
        grad.tensors().push(slot);
        tensor
    }

    /// The values, moved out when no other reader holds them, else copied into a pooled
    /// buffer (a deferred output's made into one).
    pub fn into_values(self) -> Vec<f32> {
        if let Some(deferred) = &self.deferred {
            let mut out = buffers::take(self.values.len());
            match deferred.made.get() {
                Some(made) => buffers::copy(&mut out, made),
                None => deferred.normalisation.batch(&self.values, &mut out),
            }
            self.release();
            return out;
        }
        Arc::try_unwrap(self.values).unwrap_or_else(|values| {
            let mut copy = buffers::take(values.len());
            buffers::copy(&mut copy, &values);
            copy
        })
    }

    /// This reader is done with the values: their buffer goes back to the pool unless another
    /// reader still holds them.
    pub fn release(self) {
        buffers::give_shared(self.values);
    }

    /// The output's values (a deferred output is made on the first call).
    pub fn values(&self) -> &[f32] {
        match &self.deferred {
            None => &self.values,
            Some(deferred) => deferred.made.get_or_init(|| {
                let mut out = vec![0.0; self.values.len()];
                deferred.normalisation.batch(&self.values, &mut out);
                out
            }),
        }
    }

    /// `(n, h, w, c)`.
    pub fn shape(&self) -> Shape4 {
        self.shape
    }

    /// Where the readers' backward passes put the gradient, and the writer's reads it; the
    /// values are not kept for it (they go back to the pool when the last reader is done).
    fn gradient(&self) -> MirrorGradient {
        MirrorGradient {
            grad: Arc::clone(&self.grad),
            len: self.values.len(),
        }
    }
}

/// The gradient of a mirrored output (see [`Mirror::gradient`]).
struct MirrorGradient {
    grad: Arc<GradCell>,
    len: usize,
}

impl MirrorGradient {
    /// The gradient slot of the first tensor made from the values, when a reader read one.
    fn slot<'g>(&self, grads: &'g mut Grads) -> Result<Option<&'g mut Vec<f32>>, CpuError> {
        match self.grad.tensors().first() {
            Some(slot) => Ok(Some(&mut **slot(grads)?)),
            None => Ok(None),
        }
    }

    fn lock_sum(&self) -> std::sync::MutexGuard<'_, Option<Vec<f32>>> {
        self.grad
            .sum
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds a reader's gradient `grad` in: into the tensor's slot when one was made, else
    /// into the sum (`grad` becomes the sum when it is the first).
    fn add(&self, grads: &mut Grads, grad: Vec<f32>) -> Result<(), CpuError> {
        if let Some(slot) = self.slot(grads)? {
            tape::add_into(slot, &grad);
            tape::release(grad);
            return Ok(());
        }
        let mut sum = self.lock_sum();
        match sum.as_mut() {
            Some(sum) => {
                tape::add_into(sum, &grad);
                tape::release(grad);
            }
            None => *sum = Some(grad),
        }
        Ok(())
    }

    /// The summed gradient, for the writer: from the tensor's slot when one was made, else
    /// the readers' sum (zeros if no reader gave one).
    fn take(&self, grads: &mut Grads) -> Result<Vec<f32>, CpuError> {
        if let Some(slot) = self.slot(grads)? {
            let mut total = std::mem::take(slot);
            let tensors = self.grad.tensors();
            for slot in tensors.iter().skip(1) {
                let grad = tape::take(slot(grads)?);
                tape::add_into(&mut total, &grad);
                tape::release(grad);
            }
            return Ok(total);
        }
        let sum = self.lock_sum().take();
        Ok(sum.unwrap_or_else(|| buffers::take_zeroed(self.len)))
    }
}

/// An image batch on the tape: a tensor carrying the tape, or a mirrored output and the tape.
pub enum Traced<T> {
    Tensor(Image<T>),
    Mirror(Mirror, T),
}

impl Traced<NoneTape> {
    /// The batch, carrying `tape`.
    pub fn put_tape<T>(self, tape: T) -> Traced<T>
    where
        T: Tape<f32, Cpu>,
    {
        match self {
            Traced::Tensor(x) => Traced::Tensor(x.put_tape(tape)),
            Traced::Mirror(mirror, _) => Traced::Mirror(mirror, tape),
        }
    }

    /// The batch as a skip operand.
    pub fn as_skip(&self) -> Skip<'_> {
        match self {
            Traced::Tensor(x) => Skip::Tensor(x),
            Traced::Mirror(mirror, _) => Skip::Mirror(mirror),
        }
    }
}

/// A skip operand: a tensor, or a mirrored output.
#[derive(Clone, Copy)]
pub enum Skip<'a> {
    Tensor(&'a Image<NoneTape>),
    Mirror(&'a Mirror),
}

/// A linear convolution as the first half of the fused op.
trait Linear: Send + Sync + 'static {
    /// The profile's names of the forward and the backward.
    const NAMES: (&'static str, &'static str);
    /// The output batch's shape.
    fn out_shape(&self) -> Shape4;
    /// Values of one input image.
    fn in_image(&self) -> usize;
    /// Whether it reads an [`Input`] with a map (a deferred mirror's values, see [`Handoff`])
    /// as it reads its rows; if not, every input it is given is the values themselves.
    fn maps_input(&self) -> bool;
    /// Writes the output of `images` input images `input` over `out` (each image's output is
    /// the same whatever the batch it is computed in).
    fn forward(&self, images: usize, input: Input<'_>, out: &mut [f32]);
    /// The weight's and the bias's gradients, and the input's put where `grad_input` says.
    fn backward(
        &self,
        input: Input<'_>,
        grad_out: &[f32],
        grad_input: GradInput<'_>,
    ) -> (Vec<f32>, Vec<f32>);
}

/// A plain convolution, its weight and bias read out.
struct Conv {
    geometry: ConvGeometry,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Linear for Conv {
    const NAMES: (&'static str, &'static str) = ("conv2d.forward", "conv2d.backward");

    fn maps_input(&self) -> bool {
        winograd::applies_to_conv(&self.geometry)
    }

    fn out_shape(&self) -> Shape4 {
        self.geometry.out_shape()
    }

    fn in_image(&self) -> usize {
        self.geometry.in_image()
    }

    fn forward(&self, images: usize, input: Input<'_>, out: &mut [f32]) {
        let g = ConvGeometry {
            batch: images,
            ..self.geometry
        };
        let bias = self.bias.as_deref();
        conv_kernels::forward_residual(&g, input, &self.weight, bias, None, None, out, None);
    }

    fn backward(
        &self,
        input: Input<'_>,
        grad_out: &[f32],
        grad_input: GradInput<'_>,
    ) -> (Vec<f32>, Vec<f32>) {
        conv2d::parameter_and_input_gradients(
            &self.geometry,
            input,
            &self.weight,
            grad_out,
            grad_input,
        )
    }
}

/// A depthwise convolution, its weight and bias read out.
struct Depthwise {
    geometry: DepthwiseGeometry,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Linear for Depthwise {
    const NAMES: (&'static str, &'static str) = ("depthwise.forward", "depthwise.backward");

    fn maps_input(&self) -> bool {
        true
    }

    fn out_shape(&self) -> Shape4 {
        self.geometry.out_shape()
    }

    fn in_image(&self) -> usize {
        self.geometry.in_image()
    }

    fn forward(&self, images: usize, input: Input<'_>, out: &mut [f32]) {
        let g = DepthwiseGeometry {
            batch: images,
            ..self.geometry
        };
        let (weight, bias) = (&self.weight, self.bias.as_deref());
        depthwise_kernels::forward(&g, input, weight, bias, FusedActivation::Linear, out);
    }

    fn backward(
        &self,
        input: Input<'_>,
        grad_out: &[f32],
        grad_input: GradInput<'_>,
    ) -> (Vec<f32>, Vec<f32>) {
        depthwise::parameter_and_input_gradients(
            &self.geometry,
            (input, &self.weight, self.bias.as_deref()),
            FusedActivation::Linear,
            grad_out,
            grad_input,
        )
    }
}

/// `activation(batch_norm(conv2d(x)) [+ skip])` in training, `bn_cfg.activation` the
/// activation; `conv_cfg.relu` must be off (the convolution is linear). The output is handed
/// on as `handoff` says.
///
/// # Panics
/// As [`conv2d::conv2d`] does, and when `skip` differs from the output in shape.
pub fn conv2d_batch_norm<T: Tape<f32, Cpu>>(
    x: Traced<T>,
    (conv, conv_cfg): (&Conv2dParams, &Conv2dConfig),
    (bn, bn_cfg): (&mut BatchNormParams, &BatchNormConfig),
    (skip, handoff): (Option<Skip<'_>>, Handoff),
) -> Traced<T> {
    assert!(
        !conv_cfg.relu,
        "the convolution before a batch norm is linear"
    );
    let linear = Conv {
        geometry: conv2d::geometry(traced_shape(&x), conv, conv_cfg),
        weight: buffers::to_vec(&conv.weight),
        bias: conv.bias.as_ref().map(buffers::to_vec),
    };
    let keys = (&conv.weight, conv.bias.as_ref());
    with_batch_norm(
        x,
        linear,
        keys,
        conv_cfg.input_grad,
        (bn, bn_cfg),
        (skip, handoff),
    )
}

/// `activation(batch_norm(depthwise_conv2d(x)) [+ skip])` in training, `bn_cfg.activation`
/// the activation; `dw_cfg.activation` must be linear. Mirrors as [`conv2d_batch_norm`].
///
/// # Panics
/// As [`depthwise::depthwise_conv2d`] does, and when `skip` differs from the output in shape.
pub fn depthwise_batch_norm<T: Tape<f32, Cpu>>(
    x: Traced<T>,
    (dw, dw_cfg): (&DepthwiseParams, &DepthwiseConfig),
    (bn, bn_cfg): (&mut BatchNormParams, &BatchNormConfig),
    (skip, handoff): (Option<Skip<'_>>, Handoff),
) -> Traced<T> {
    assert_eq!(
        dw_cfg.activation,
        FusedActivation::Linear,
        "the convolution before a batch norm is linear"
    );
    let linear = Depthwise {
        geometry: depthwise::geometry(traced_shape(&x), dw_cfg, *dw.weight.shape()),
        weight: buffers::to_vec(&dw.weight),
        bias: dw.bias.as_ref().map(buffers::to_vec),
    };
    let keys = (&dw.weight, dw.bias.as_ref());
    with_batch_norm(
        x,
        linear,
        keys,
        dw_cfg.input_grad,
        (bn, bn_cfg),
        (skip, handoff),
    )
}

/// The shape of a traced batch.
fn traced_shape<T>(x: &Traced<T>) -> Shape4 {
    match x {
        Traced::Tensor(x) => *x.shape(),
        Traced::Mirror(mirror, _) => mirror.shape(),
    }
}

/// Where a gradient of the fused op goes (its input's, its skip's) or comes from (its
/// output's): the slot of a tensor, whose ghost is `G`, or a mirror's.
enum Key<G> {
    Tensor(G),
    Mirror(MirrorGradient),
}

/// The fused op of `linear`, whose parameters' gradients go to `keys` (weight, bias).
fn with_batch_norm<T: Tape<f32, Cpu>, L: Linear>(
    x: Traced<T>,
    linear: L,
    (weight_key, bias_key): (&Flat<NoneTape>, Option<&Vector>),
    input_grad: bool,
    (bn, bn_cfg): (&mut BatchNormParams, &BatchNormConfig),
    (skip, handoff): (Option<Skip<'_>>, Handoff),
) -> Traced<T> {
    let timer = profile::scope(L::NAMES.0);
    let device = weight_key.device().clone();
    // The input's values, kept for the backward (a tensor's are copied out, into a mirror of
    // this op's own), and where its gradient goes.
    let (input, input_key, mut tape) = match x {
        Traced::Tensor(x) => {
            let (x, tape) = x.split_tape();
            let values = Mirror::new(buffers::read(&x), *x.shape());
            (values, Key::Tensor(x.ghost()), tape)
        }
        Traced::Mirror(values, tape) => {
            let key = Key::Mirror(values.gradient());
            (values, key, tape)
        }
    };
    let shape = linear.out_shape();
    let mut linear_out = buffers::take(shape.0 * shape.1 * shape.2 * shape.3);
    let moments = read_input(&input, linear.maps_input(), |values| {
        forward_taking_moments(&linear, values, &mut linear_out, bn_cfg)
    });
    drop(timer);
    let (skip_data, skip_key) = match skip {
        Some(Skip::Tensor(skip)) => {
            assert_eq!(*skip.shape(), shape, "the skip has the output's shape");
            let values = Cow::Owned(buffers::read(skip));
            (Some(values), Some(Key::Tensor(skip.ghost())))
        }
        Some(Skip::Mirror(skip)) => {
            assert_eq!(skip.shape(), shape, "the skip has the output's shape");
            let values = Cow::Borrowed(skip.values());
            (Some(values), Some(Key::Mirror(skip.gradient())))
        }
        None => (None, None),
    };
    let (out, normalised) = match (handoff, skip_data) {
        (Handoff::Deferred, None) => {
            let (values, normalisation, normalised) =
                batch_norm::forward_deferred((linear_out, moments), shape.0, bn, bn_cfg);
            let out = Output::Mirror(Mirror::deferred(values, normalisation, shape));
            (out, normalised)
        }
        (handoff, skip_data) => {
            let (out, normalised) = batch_norm::forward_values(
                (linear_out, moments),
                skip_data.as_deref(),
                shape.0,
                bn,
                bn_cfg,
                T::OWNS_TAPE,
            );
            if let Some(Cow::Owned(skip)) = skip_data {
                buffers::give(skip);
            }
            let out = match handoff {
                Handoff::Tensor => Output::Tensor(device.tensor_from_vec(out, shape)),
                Handoff::Mirror | Handoff::Deferred => Output::Mirror(Mirror::new(out, shape)),
            };
            (out, normalised)
        }
    };
    if !T::OWNS_TAPE {
        normalised.release();
        input.release();
        return out.traced(tape);
    }
    let out_key = match &out {
        Output::Tensor(tensor) => Key::Tensor(tensor.ghost()),
        Output::Mirror(mirror) => Key::Mirror(mirror.gradient()),
    };
    let (weight_key, bias_key) = (weight_key.clone(), bias_key.cloned());
    let (gamma_key, beta_key) = (bn.gamma.clone(), bn.beta.clone());
    tape.add_backward_op(move |grads| {
        let mut grad_out = match &out_key {
            Key::Tensor(ghost) => tape::take(grads.get_or_alloc_mut(ghost)?),
            Key::Mirror(mirror) => mirror.take(grads)?,
        };
        let mut grad_linear = buffers::take(grad_out.len());
        let (grad_gamma, grad_beta) =
            normalised.backward(&mut grad_out, GradInput::Overwrite(&mut grad_linear));
        match &skip_key {
            Some(Key::Tensor(ghost)) => {
                tape::add_into(grads.get_or_alloc_mut(ghost)?, &grad_out);
                tape::release(grad_out);
            }
            Some(Key::Mirror(skip)) => skip.add(grads, grad_out)?,
            None => tape::release(grad_out),
        }
        tape::add_into(grads.get_or_alloc_mut(&gamma_key)?, &grad_gamma);
        tape::add_into(grads.get_or_alloc_mut(&beta_key)?, &grad_beta);
        let _timer = profile::scope(L::NAMES.1);
        let (grad_weight, grad_bias) = read_input(&input, linear.maps_input(), |values| {
            let grad_linear = &grad_linear[..];
            Ok::<_, CpuError>(match (input_grad, &input_key) {
                (false, _) => linear.backward(values, grad_linear, GradInput::None),
                (true, Key::Tensor(ghost)) => {
                    let grad_input = grads.get_or_alloc_mut(ghost)?;
                    linear.backward(values, grad_linear, GradInput::AddTo(grad_input))
                }
                (true, Key::Mirror(mirror)) => match mirror.slot(grads)? {
                    Some(slot) => linear.backward(values, grad_linear, GradInput::AddTo(slot)),
                    // Into the readers' sum itself, as into a slot: the same additions in the
                    // same order. The first reader's gradient is written over a fresh buffer,
                    // with the bits adding into zeros gives.
                    None => {
                        let mut sum = mirror.lock_sum();
                        match sum.as_mut() {
                            Some(sum) => {
                                linear.backward(values, grad_linear, GradInput::AddTo(sum))
                            }
                            None => {
                                let mut fresh = buffers::take(values.values.len());
                                let target = GradInput::Overwrite(&mut fresh);
                                let grads = linear.backward(values, grad_linear, target);
                                *sum = Some(fresh);
                                grads
                            }
                        }
                    }
                },
            })
        })?;
        buffers::give(grad_linear);
        tape::add_weight_and_bias(
            grads,
            (&weight_key, &grad_weight),
            (bias_key.as_ref(), &grad_bias),
        )?;
        input.release();
        Ok(())
    });
    out.traced(tape)
}

/// Runs `run` on the input as `linear` reads it: a deferred mirror's values and the map that
/// makes its output rows of them, when `maps` ([`Linear::maps_input`]), else the output's
/// values.
fn read_input<R>(input: &Mirror, maps: bool, run: impl FnOnce(Input<'_>) -> R) -> R {
    match input.deferred_parts().filter(|_| maps) {
        Some((values, normalisation)) => {
            let map = |rows: &[f32], out: &mut [f32]| normalisation.rows(rows, out);
            run(Input {
                values,
                map: Some(&map),
            })
        }
        None => run(input.values().into()),
    }
}

/// The output of at most this many bytes of images is computed at a time when the batch
/// norm's statistics are taken as it is written (see [`forward_taking_moments`]): it stays in
/// the core's L2 cache (1 MiB or more on the CPUs measured) for the statistics to read.
const MOMENTS_GROUP_BYTES: usize = 512 << 10;

/// Writes `linear`'s output of `input` over `out`; in training, when this thread runs the op
/// alone (a rank of a split step, or one thread), a few images at a time, each group's batch
/// norm statistics ([`Periods::image_moments`]) taken while it is still in cache, saving the
/// batch norm a pass over the output from memory. The moments are the same bits either way.
fn forward_taking_moments<L: Linear>(
    linear: &L,
    input: Input<'_>,
    out: &mut [f32],
    bn_cfg: &BatchNormConfig,
) -> Option<Vec<ImageMoments>> {
    let shape = linear.out_shape();
    let (batch, features) = (shape.0, shape.3);
    let out_image = shape.1 * shape.2 * shape.3;
    if !bn_cfg.training || out_image == 0 || rayon::current_num_threads() > 1 {
        linear.forward(batch, input, out);
        return None;
    }
    let group = (MOMENTS_GROUP_BYTES / (out_image * 4)).clamp(1, batch);
    let layout = Periods::new(features);
    let mut moments = Vec::with_capacity(batch);
    let groups = input
        .values
        .chunks(group * linear.in_image())
        .zip(out.chunks_mut(group * out_image));
    for (values, out) in groups {
        let images = out.len() / out_image;
        let input = Input { values, ..input };
        linear.forward(images, input, out);
        moments.extend(layout.image_moments(out, images));
    }
    Some(moments)
}

/// The fused op's output.
enum Output {
    Tensor(Image<NoneTape>),
    Mirror(Mirror),
}

impl Output {
    fn traced<T: Tape<f32, Cpu>>(self, tape: T) -> Traced<T> {
        match self {
            Output::Tensor(tensor) => Traced::Tensor(tensor.put_tape(tape)),
            Output::Mirror(mirror) => Traced::Mirror(mirror, tape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::geometry::{Padding, Window2};
    use crate::backend::ops::test_values::uniform as values;

    /// On one thread in training the output is computed a group of images at a time, each
    /// group's statistics taken as it is written: the same output and the same moments as
    /// the whole batch at once, then its moments.
    #[test]
    fn moments_taken_group_by_group_are_the_batch_moments() {
        // 3x3 same convolutions of 8 to 40 channels on 40x40 images: 256 KiB of output an
        // image, two to a group; 5 images make three groups, the last one short.
        let (batch, c_in, filters, side) = (5, 8, 40, 40);
        let window =
            Window2::new((side, side), (3, 3), (1, 1), Padding::Same).expect("a 3x3 window fits");
        let geometry = ConvGeometry::for_weight(batch, c_in, window, (9 * c_in, filters));
        let conv = Conv {
            geometry,
            weight: values(9 * c_in * filters, 1),
            bias: None,
        };
        let input = values(batch * geometry.in_image(), 2);
        let out_len = batch * geometry.out_image();
        let bn_cfg = BatchNormConfig {
            training: true,
            ..BatchNormConfig::default()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool");
        let mut grouped = vec![0.0f32; out_len];
        let moments = pool
            .install(|| forward_taking_moments(&conv, input[..].into(), &mut grouped, &bn_cfg))
            .expect("one thread in training takes the moments");
        assert_eq!(moments.len(), batch);
        let mut whole = vec![0.0f32; out_len];
        conv.forward(batch, input[..].into(), &mut whole);
        assert_eq!(grouped, whole);
        let expected = Periods::new(filters).image_moments(&whole, batch);
        for (got, want) in moments.iter().zip(&expected) {
            assert_eq!(got.sum, want.sum);
            assert_eq!(got.centred, want.centred);
        }
        // In inference, or with more than one thread, the batch norm takes them itself.
        let inference = BatchNormConfig {
            training: false,
            ..bn_cfg
        };
        let none = pool
            .install(|| forward_taking_moments(&conv, input[..].into(), &mut grouped, &inference));
        assert!(none.is_none());
    }
}
