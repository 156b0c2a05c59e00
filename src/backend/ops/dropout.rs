//! Dropout with masks drawn per image: each image's mask comes from its own random stream,
//! keyed by the pass, the layer and the image's place in the whole batch. So a batch split
//! over the ranks of a data-parallel run draws the masks one process draws for it, and the
//! masks do not depend on the thread count (dfdx's dropout draws one stream for the batch).
//! Kept values are scaled by `1 / (1 - rate)`, as Keras's `Dropout` does.

use crate::backend::ops::buffers;
use crate::backend::ops::profile;
use crate::backend::ops::tape;
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// What a training pass's dropout masks are drawn from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropoutKey {
    /// The pass: the run's seed, epoch and step, mixed.
    pub pass: u64,
    /// The place in the whole batch of this process's first image (a rank's share starts
    /// there; 0 in one process).
    pub first_image: usize,
}

/// SplitMix64's finaliser: spreads a combination of keys over all 64 bits.
pub fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `x` with each value dropped (set to 0) with probability `rate` and the others scaled by
/// `1 / (1 - rate)`; `layer` tells the layers' masks apart.
pub fn dropout<S: Shape, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
    rate: f32,
    key: DropoutKey,
    layer: usize,
) -> Tensor<S, f32, Cpu, T> {
    let _timer = profile::scope("dropout.forward");
    let shape = *x.shape();
    let images = shape.concrete().into_iter().next().unwrap_or(1).max(1);
    let (x, mut tape) = x.split_tape();
    let device = x.device().clone();
    let x_ghost = x.ghost();
    let input = buffers::read(&x);
    drop(x);
    let per_image = input.len() / images;
    let scale = 1.0 / (1.0 - rate);
    let layer_key = mix(key.pass ^ mix(layer as u64));
    // The factor of every value: 0 or `scale`.
    let mut factors = vec![0.0f32; input.len()];
    factors
        .par_chunks_mut(per_image.max(1))
        .enumerate()
        .for_each(|(n, factors)| {
            let image = (key.first_image + n) as u64;
            let mut rng = ChaCha8Rng::seed_from_u64(mix(layer_key ^ mix(image)));
            for factor in factors {
                *factor = if rng.gen::<f32>() < rate { 0.0 } else { scale };
            }
        });
    let mut out = buffers::take(input.len());
    out.par_iter_mut()
        .zip(input.par_iter())
        .zip(factors.par_iter())
        .for_each(|((o, &v), &f)| *o = v * f);
    buffers::give(input);
    let out = device.tensor_from_vec(out, shape);
    if !T::OWNS_TAPE {
        return out.put_tape(tape);
    }
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        let _timer = profile::scope("dropout.backward");
        let grad_out = tape::take(grads.get_or_alloc_mut(&out_ghost)?);
        let grad_input: &mut [f32] = grads.get_or_alloc_mut(&x_ghost)?;
        grad_input
            .par_iter_mut()
            .zip(grad_out.par_iter())
            .zip(factors.par_iter())
            .for_each(|((gi, &go), &f)| *gi += go * f);
        tape::release(grad_out);
        Ok(())
    });
    out.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::{dropout, DropoutKey};
    use dfdx::prelude::*;

    fn masks(images: usize, first_image: usize, pass: u64) -> Vec<f32> {
        let device = Cpu::default();
        let x = device.tensor_from_vec(vec![1.0f32; images * 1000], (images, 1000));
        let key = DropoutKey { pass, first_image };
        dropout(x, 0.25, key, 3).as_vec()
    }

    #[test]
    fn a_batch_draws_the_masks_of_its_halves() {
        let whole = masks(4, 0, 9);
        let first = masks(2, 0, 9);
        let second = masks(2, 2, 9);
        assert_eq!(whole, [first, second].concat());
    }

    #[test]
    fn masks_drop_at_the_rate_and_scale_the_rest() {
        let values = masks(8, 0, 1);
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.25).abs() < 0.02, "{dropped}");
        assert!(values.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
        // Another image, pass or layer draws another mask.
        assert_ne!(masks(1, 0, 1), masks(1, 1, 1));
        assert_ne!(masks(1, 0, 1), masks(1, 0, 2));
    }

    #[test]
    fn the_gradient_passes_where_the_value_was_kept() {
        let device = Cpu::default();
        let x = device.tensor_from_vec(vec![2.0f32; 2 * 500], (2, 500));
        let key = DropoutKey {
            pass: 5,
            first_image: 0,
        };
        let y = dropout(x.leaky_trace(), 0.5, key, 0);
        let kept = y.as_vec();
        let grads = y.sum().backward();
        let g = grads.get(&x).as_vec();
        for (v, g) in kept.iter().zip(&g) {
            assert_eq!(*g, if *v == 0.0 { 0.0 } else { 2.0 });
        }
    }
}
