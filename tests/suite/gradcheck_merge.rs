//! Gradient checks and forward values of the merges (add, concat, mul with per-channel
//! broadcast), including an input listed twice, and of global max pooling (ties share the
//! gradient, as TensorFlow's `reduce_max`).

use crate::common;

use common::gradcheck::{check, weighted_sum, Grads, Rng};
use dfdx::prelude::*;
use strata::backend::ops::merge::{self, Merged, Operand};
use strata::backend::ops::pool2d::global_max_pool;
use strata::backend::ops::{Flat, Image};
use strata::ir::MergeKind;

type Tape = OwnedTape<f32, Cpu>;

fn tensor(dev: &Cpu, dims: &[usize], values: &[f32]) -> Operand {
    match *dims {
        [n, h, w, c] => Operand::Image(dev.tensor_from_vec(values.to_vec(), (n, h, w, c))),
        [n, f] => Operand::Flat(dev.tensor_from_vec(values.to_vec(), (n, f))),
        _ => panic!("2 or 4 dims"),
    }
}

fn grad_of(grads: &Grads, x: &Operand) -> Vec<f32> {
    match x {
        Operand::Image(x) => grads.get(x).as_vec(),
        Operand::Flat(x) => grads.get(x).as_vec(),
    }
}

fn run(kind: MergeKind, inputs: Vec<Operand>) -> Merged<Tape> {
    merge::merge(kind, inputs, Tape::default())
}

/// The weighted-sum loss of a merged output and its gradients.
fn loss_of(out: Merged<Tape>, weights: &[f32]) -> (f64, Grads) {
    match out {
        Merged::Image(x) => weighted_sum(x, weights),
        Merged::Flat(x) => weighted_sum(x, weights),
    }
}

fn len(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// Finite-difference check of `kind` on the tensors `shapes` (4 dims: image, 2 dims: flat),
/// merged in the order `inputs` lists their indices (an index twice: the same tensor twice).
fn merge_case(name: &str, kind: MergeKind, shapes: &[&'static [usize]], inputs: &[usize]) {
    let dev = Cpu::default();
    let mut rng = Rng::new(name.len() as u64 * 31 + 7);
    // Values away from 0 so that the product's relative error bound stays meaningful.
    let values: Vec<Vec<f32>> = shapes
        .iter()
        .map(|dims| {
            rng.vec(len(dims), 0.3, 1.2)
                .into_iter()
                .map(|v| if rng.uniform(0.0, 1.0) < 0.5 { -v } else { v })
                .collect()
        })
        .collect();
    let make = |v: &[Vec<f32>]| -> (Vec<Operand>, Vec<Operand>) {
        let tensors: Vec<Operand> = shapes
            .iter()
            .zip(v)
            .map(|(dims, v)| tensor(&dev, dims, v))
            .collect();
        let inputs = inputs.iter().map(|&idx| tensors[idx].clone()).collect();
        (tensors, inputs)
    };
    let (_, probe) = make(&values);
    let out_len = match run(kind, probe) {
        Merged::Image(x) => x.as_vec().len(),
        Merged::Flat(x) => x.as_vec().len(),
    };
    let loss_weights = rng.vec(out_len, -1.0, 1.0);
    check(name, values, 1e-3, (1e-3, 1e-2), |v| {
        let (tensors, inputs) = make(v);
        let (loss, grads) = loss_of(run(kind, inputs), &loss_weights);
        (loss, tensors.iter().map(|x| grad_of(&grads, x)).collect())
    });
}

const IMG: &[usize] = &[2, 3, 5, 4];
const VEC4: &[usize] = &[2, 4];
const FLAT: &[usize] = &[3, 7];

#[test]
fn add_gradients() {
    merge_case("add 3 images", MergeKind::Add, &[IMG, IMG, IMG], &[0, 1, 2]);
    merge_case("add 2 flat", MergeKind::Add, &[FLAT, FLAT], &[0, 1]);
}

#[test]
fn add_repeated_input() {
    merge_case("add(x, x)", MergeKind::Add, &[IMG], &[0, 0]);
    merge_case("add(x, y, x)", MergeKind::Add, &[FLAT, FLAT], &[0, 1, 0]);
    // The analytic gradient of add(x, x) under sum(out * w) is exactly 2 w.
    let dev = Cpu::default();
    let x: Image<NoneTape> = dev.tensor_from_vec((0..6).map(|v| v as f32).collect(), (1, 1, 2, 3));
    let w: Vec<f32> = (0..6).map(|v| 0.5 + v as f32).collect();
    let out = run(
        MergeKind::Add,
        vec![Operand::Image(x.clone()), Operand::Image(x.clone())],
    );
    let (_, grads) = loss_of(out, &w);
    let expected: Vec<f32> = w.iter().map(|v| 2.0 * v).collect();
    assert_eq!(grads.get(&x).as_vec(), expected);
}

#[test]
fn concat_gradients_three_inputs_different_channels() {
    const A: &[usize] = &[2, 3, 5, 1];
    const B: &[usize] = &[2, 3, 5, 4];
    const C: &[usize] = &[2, 3, 5, 3];
    merge_case(
        "concat channels 1+4+3",
        MergeKind::Concat,
        &[A, B, C],
        &[0, 1, 2],
    );
    const F1: &[usize] = &[3, 2];
    const F2: &[usize] = &[3, 5];
    merge_case(
        "concat flat 2+5+2 (first twice)",
        MergeKind::Concat,
        &[F1, F2],
        &[0, 1, 0],
    );
}

#[test]
fn mul_gradients() {
    merge_case("mul 3 images", MergeKind::Mul, &[IMG, IMG, IMG], &[0, 1, 2]);
    merge_case("mul 2 flat", MergeKind::Mul, &[FLAT, FLAT], &[0, 1]);
}

#[test]
fn mul_repeated_input() {
    merge_case("mul(x, x)", MergeKind::Mul, &[IMG], &[0, 0]);
    merge_case("mul(x, x, x) flat", MergeKind::Mul, &[FLAT], &[0, 0, 0]);
    // mul(x, x) has gradient 2 x w exactly (each occurrence adds x w).
    let dev = Cpu::default();
    let x: Flat<NoneTape> = dev.tensor_from_vec(vec![1.5, -2.0, 0.25], (1, 3));
    let w = [1.0, 2.0, -4.0];
    let out = run(
        MergeKind::Mul,
        vec![Operand::Flat(x.clone()), Operand::Flat(x.clone())],
    );
    let (_, grads) = loss_of(out, &w);
    assert_eq!(grads.get(&x).as_vec(), vec![3.0, -8.0, -2.0]);
}

#[test]
fn mul_broadcast_either_order() {
    merge_case("image * vector", MergeKind::Mul, &[IMG, VEC4], &[0, 1]);
    merge_case("vector * image", MergeKind::Mul, &[IMG, VEC4], &[1, 0]);
    merge_case(
        "vector * image * vector * image",
        MergeKind::Mul,
        &[IMG, VEC4, VEC4],
        &[1, 0, 2, 0],
    );
    // An odd 1-pixel image: the vector's gradient is a one-term sum.
    const ONE: &[usize] = &[3, 1, 1, 5];
    const V5: &[usize] = &[3, 5];
    merge_case("1x1 image * vector", MergeKind::Mul, &[ONE, V5], &[0, 1]);
}

#[test]
fn merge_forward_values() {
    let dev = Cpu::default();
    // Two 1x2x2 images with 2 and 1 channels; pixel p of a has channels (10p, 10p + 1), b has
    // 100 + p.
    let a = dev.tensor_from_vec(vec![0., 1., 10., 11., 20., 21., 30., 31.], (1, 2, 2, 2));
    let b = dev.tensor_from_vec(vec![100., 101., 102., 103.], (1, 2, 2, 1));
    let cat = merge::concat(
        vec![Operand::Image(b.clone()), Operand::Image(a.clone())],
        NoneTape,
    )
    .into_image()
    .expect("image");
    assert_eq!(cat.shape(), &(1, 2, 2, 3));
    assert_eq!(
        cat.as_vec(),
        vec![100., 0., 1., 101., 10., 11., 102., 20., 21., 103., 30., 31.]
    );
    let f1 = dev.tensor_from_vec(vec![1., 2., 3., 4.], (2, 2));
    let f2 = dev.tensor_from_vec(vec![5., 6., 7., 8., 9., 10.], (2, 3));
    let cat = merge::merge(
        MergeKind::Concat,
        vec![Operand::Flat(f1.clone()), Operand::Flat(f2)],
        NoneTape,
    )
    .into_flat()
    .expect("flat");
    assert_eq!(cat.as_vec(), vec![1., 2., 5., 6., 7., 3., 4., 8., 9., 10.]);
    let sum = merge::add(
        vec![
            Operand::Flat(f1.clone()),
            Operand::Flat(f1.clone()),
            Operand::Flat(f1.clone()),
        ],
        NoneTape,
    )
    .into_flat()
    .expect("flat");
    assert_eq!(sum.as_vec(), vec![3., 6., 9., 12.]);
    // Squeeze-and-excitation: a (2, 1, 2, 2) image times (2, 2) per-channel scales.
    let img = dev.tensor_from_vec(vec![1., 2., 3., 4., 5., 6., 7., 8.], (2, 1, 2, 2));
    let scale = dev.tensor_from_vec(vec![10., 100., -1., 0.5], (2, 2));
    let expected = vec![10., 200., 30., 400., -5., 3., -7., 4.];
    for inputs in [
        vec![Operand::Image(img.clone()), Operand::Flat(scale.clone())],
        vec![Operand::Flat(scale.clone()), Operand::Image(img.clone())],
    ] {
        let out = merge::mul(inputs, NoneTape).into_image().expect("image");
        assert_eq!(out.shape(), &(2, 1, 2, 2));
        assert_eq!(out.as_vec(), expected);
    }
}

#[test]
fn broadcast_mul_vector_gradient_is_the_pixel_sum() {
    // sum(out * w) with out = x * s: ds[n, c] = sum_p w[n, p, c] * x[n, p, c].
    let dev = Cpu::default();
    let (n, h, w, c) = (2, 3, 2, 3);
    let mut rng = Rng::new(3);
    let x_values = rng.vec(n * h * w * c, -1.0, 1.0);
    let s_values = rng.vec(n * c, -1.0, 1.0);
    let weights = rng.vec(n * h * w * c, -1.0, 1.0);
    let x: Image<NoneTape> = dev.tensor_from_vec(x_values.clone(), (n, h, w, c));
    let s: Flat<NoneTape> = dev.tensor_from_vec(s_values.clone(), (n, c));
    let out = run(
        MergeKind::Mul,
        vec![Operand::Flat(s.clone()), Operand::Image(x.clone())],
    );
    let (_, grads) = loss_of(out, &weights);
    let mut expected = vec![0.0f32; n * c];
    for b in 0..n {
        for p in 0..h * w {
            for ch in 0..c {
                let i = (b * h * w + p) * c + ch;
                expected[b * c + ch] += weights[i] * x_values[i];
            }
        }
    }
    assert_eq!(grads.get(&s).as_vec(), expected);
    let dx: Vec<f32> = (0..n * h * w * c)
        .map(|i| weights[i] * s_values[(i / (h * w * c)) * c + i % c])
        .collect();
    assert_eq!(grads.get(&x).as_vec(), dx);
}

#[test]
fn mismatched_inputs_are_reported() {
    let dev = Cpu::default();
    let img =
        |c: usize| Operand::Image(dev.tensor_from_vec(vec![0.0; 2 * 3 * 3 * c], (2, 3, 3, c)));
    let flat = |n: usize, f: usize| Operand::Flat(dev.tensor_from_vec(vec![0.0; n * f], (n, f)));
    assert!(merge::check(MergeKind::Add, &[img(2), img(2)]).is_ok());
    assert!(merge::check(MergeKind::Add, &[img(2), img(3)]).is_err());
    assert!(merge::check(MergeKind::Add, &[img(2), flat(2, 2)]).is_err());
    assert!(merge::check(MergeKind::Concat, &[img(2), img(3)]).is_ok());
    assert!(merge::check(MergeKind::Concat, &[img(2), flat(2, 2)]).is_err());
    assert!(merge::check(MergeKind::Concat, &[flat(2, 2), flat(3, 2)]).is_err());
    assert!(merge::check(MergeKind::Mul, &[flat(2, 4), img(4)]).is_ok());
    assert!(merge::check(MergeKind::Mul, &[img(4), flat(2, 3)]).is_err());
    assert!(merge::check(MergeKind::Mul, &[flat(2, 4), flat(2, 3)]).is_err());
    assert_eq!(
        merge::check(MergeKind::Mul, &[]),
        Err(merge::MergeError::NoInputs(MergeKind::Mul))
    );
}

#[test]
fn global_max_pool_gradients() {
    let mut rng = Rng::new(17);
    let shape = (3, 5, 3, 4);
    let dev = Cpu::default();
    let loss_weights = rng.vec(3 * 4, -1.0, 1.0);
    check(
        "gmp",
        vec![rng.distinct(3 * 5 * 3 * 4)],
        1e-3,
        (1e-3, 1e-2),
        |v| {
            let x = dev.tensor_from_vec(v[0].clone(), shape);
            let (loss, grads) = weighted_sum(global_max_pool(x.leaky_trace()), &loss_weights);
            (loss, vec![grads.get(&x).as_vec()])
        },
    );
}

#[test]
fn global_max_pool_values_and_ties() {
    let dev = Cpu::default();
    // (1, 2, 2, 2): channel 0 is 1, 3, 3, 3 (three-way tie); channel 1 is 2, 2, 0.5, 2.
    let x = dev.tensor_from_vec(vec![1., 2., 3., 2., 3., 0.5, 3., 2.], (1, 2, 2, 2));
    let out = global_max_pool(x.leaky_trace());
    assert_eq!(out.as_vec(), vec![3.0, 2.0]);
    let (_, grads) = weighted_sum(out, &[1.0, 10.0]);
    // Keras 3 GlobalMaxPooling2D on TensorFlow gives these (each tie gets grad / count):
    // [[[[0, 3.3333335], [0.33333334, 3.3333335]], [[0.33333334, 0], [0.33333334, 3.3333335]]]]
    let third = 1.0f32 / 3.0;
    let expected = [
        0.0,
        third * 10.0,
        third,
        third * 10.0,
        third,
        0.0,
        third,
        third * 10.0,
    ];
    assert_eq!(grads.get(&x).as_vec(), expected);
    // Odd sizes and negative values: the maximum of each channel over all pixels.
    let values: Vec<f32> = (0..18).map(|v| -((v * 7 % 11) as f32)).collect();
    let out = global_max_pool(dev.tensor_from_vec(values.clone(), (2, 3, 1, 3))).as_vec();
    let mut expected = vec![f32::NEG_INFINITY; 6];
    for (i, v) in values.iter().enumerate() {
        let (n, ch) = (i / 9, i % 3);
        expected[n * 3 + ch] = expected[n * 3 + ch].max(*v);
    }
    assert_eq!(out, expected);
}

/// Naive loops over inputs larger than one parallel chunk (2^15 elements), so that the chunked
/// row indexing of the forward and backward passes is exercised.
#[test]
fn large_inputs_match_naive_loops() {
    let dev = Cpu::default();
    let (n, h, w) = (2, 40, 41);
    let pixels = h * w;
    let mut rng = Rng::new(23);
    let chans = [13, 6, 1];
    let images: Vec<Vec<f32>> = chans
        .iter()
        .map(|c| rng.vec(n * pixels * c, -1.0, 1.0))
        .collect();
    let tensors: Vec<Image<NoneTape>> = images
        .iter()
        .zip(chans)
        .map(|(v, c)| dev.tensor_from_vec(v.clone(), (n, h, w, c)))
        .collect();
    // Concat 13 + 6 + 1 channels.
    let total: usize = chans.iter().sum();
    let weights = rng.vec(n * pixels * total, -1.0, 1.0);
    let out = run(
        MergeKind::Concat,
        tensors.iter().cloned().map(Operand::Image).collect(),
    );
    let Merged::Image(out) = out else {
        panic!("image")
    };
    let got = out.as_vec();
    let (_, grads) = weighted_sum(out, &weights);
    let mut offset = 0;
    for ((values, c), x) in images.iter().zip(chans).zip(&tensors) {
        let grad = grads.get(x).as_vec();
        for row in 0..n * pixels {
            for ch in 0..c {
                let o = row * total + offset + ch;
                assert_eq!(got[o], values[row * c + ch]);
                assert_eq!(grad[row * c + ch], weights[o]);
            }
        }
        offset += c;
    }
    // Image * vector * image (13 channels), and the sum of the two images.
    let c = chans[0];
    let scale = rng.vec(n * c, -1.0, 1.0);
    let other = rng.vec(n * pixels * c, -1.0, 1.0);
    let x = tensors[0].clone();
    let s: Flat<NoneTape> = dev.tensor_from_vec(scale.clone(), (n, c));
    let y: Image<NoneTape> = dev.tensor_from_vec(other.clone(), (n, h, w, c));
    let weights = rng.vec(n * pixels * c, -1.0, 1.0);
    let out = run(
        MergeKind::Mul,
        vec![
            Operand::Image(x.clone()),
            Operand::Flat(s.clone()),
            Operand::Image(y.clone()),
        ],
    );
    let Merged::Image(out) = out else {
        panic!("image")
    };
    let got = out.as_vec();
    let (_, grads) = weighted_sum(out, &weights);
    let (dx, ds, dy) = (
        grads.get(&x).as_vec(),
        grads.get(&s).as_vec(),
        grads.get(&y).as_vec(),
    );
    let mut ds_expected = vec![0.0f32; n * c];
    for i in 0..n * pixels * c {
        let v = (i / (pixels * c)) * c + i % c;
        let (a, b, d) = (images[0][i], scale[v], other[i]);
        assert_eq!(got[i], a * b * d);
        assert_eq!(dx[i], weights[i] * (b * d));
        assert_eq!(dy[i], weights[i] * (a * b));
        ds_expected[v] += weights[i] * (a * d);
    }
    assert_eq!(ds, ds_expected);
    let sum = merge::add(vec![Operand::Image(x), Operand::Image(y)], NoneTape)
        .into_image()
        .expect("image")
        .as_vec();
    let expected: Vec<f32> = images[0].iter().zip(&other).map(|(a, b)| a + b).collect();
    assert_eq!(sum, expected);
}
