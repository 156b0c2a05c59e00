//! Random graph models, written by a seeded generator whose merges fit by construction (chains
//! of convolutions of every kind, batch norms with fused activations, pools, residual `add`s,
//! `mul`s by a squeeze-and-excitation vector, `concat`s of images and of flat vectors, strides,
//! `valid` convolutions and odd sizes, wide enough to reach the Winograd and grouped kernels):
//! every one must compile without an error; be built with its layers' real shapes equal to the
//! compiler's; train two steps on a batch big enough to be split over the cores, evaluate and
//! predict without a panic, with finite losses and probabilities that sum to one; give the same
//! weights, bit for bit, when its steps are split over two cores as in one pass; and export to
//! ONNX that tract runs to strata's probabilities. A failure prints the seed and the spec.
//!
//! `STRATA_GRAPH_FUZZ_CASES`, `STRATA_GRAPH_FUZZ_SPLITS` and `STRATA_GRAPH_FUZZ_EXPORTS` set the
//! number of models of each test (48, 12 and 12 by default; 10,000, 1,400 and 2,800 ran clean
//! when the tests were written), and `STRATA_GRAPH_FUZZ_SEED` the first seed. The split test
//! found its first failure at 41 models: a pointwise convolution reading one channel (see
//! `gemm_by_rows`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata::backend::network::Network;
use strata::backend::optimizer::Optimizer;

/// Writes random graph models whose merges fit by construction: the generator tracks the
/// channels (and, through strides, the size) of the tensor each layer reads.
struct Writer {
    rng: ChaCha8Rng,
}

impl Writer {
    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.rng.gen_range(0..options.len())]
    }

    fn width(&mut self) -> usize {
        [2, 3, 4, 6, 8, 12, 16, 24, 32, 48][self.rng.gen_range(0..10)]
    }

    fn activation(&mut self) -> &'static str {
        self.pick(&[
            "relu",
            "relu6",
            "silu",
            "hardswish",
            "hardsigmoid",
            "elu",
            "gelu",
            "sigmoid",
            "tanh",
            "",
        ])
    }

    /// One layer keeping the spatial size; returns its text and output channels.
    fn layer(&mut self, channels: usize) -> (String, usize) {
        let act = self.activation();
        match self.rng.gen_range(0..12) {
            0 | 1 => {
                let f = self.width();
                (format!("conv3({f}, pad=same) {act}"), f)
            }
            2 | 3 => {
                let f = self.width();
                let bias = self.pick(&["", ", bias=false"]);
                (format!("conv1({f}{bias}) {act}"), f)
            }
            4 => ("bn relu".into(), channels),
            5 => (
                format!("bn {}", self.pick(&["", "relu6", "relu"])),
                channels,
            ),
            6 => {
                let m = self.pick(&["", ", multiplier=2"]);
                let out = if m.is_empty() { channels } else { 2 * channels };
                (format!("dwconv3(pad=same{m}) {act}"), out)
            }
            7 => {
                let f = self.width();
                (format!("sepconv3({f}, pad=same) {act}"), f)
            }
            8 => {
                // Grouped: groups dividing both the input's channels and the filters.
                let groups = [4, 3, 2]
                    .into_iter()
                    .find(|g| channels.is_multiple_of(*g))
                    .unwrap_or(1);
                let f = groups * self.rng.gen_range(1..5);
                let k = self.pick(&["1", "3"]);
                (
                    format!("conv({f}, kernel={k}, groups={groups}, pad=same) {act}"),
                    f,
                )
            }
            9 => (
                format!("{}3(stride=1, pad=same)", self.pick(&["avgpool", "pool"])),
                channels,
            ),
            10 => (
                self.pick(&["identity", "dropout(0.2)", "relu6", "silu"])
                    .into(),
                channels,
            ),
            _ => {
                let f = self.width();
                (format!("conv2({f}, pad=same) {act}"), f)
            }
        }
    }

    /// A chain of layers and merges, `depth` levels of merges deep at most, keeping the size.
    fn chain(&mut self, mut channels: usize, depth: usize) -> (String, usize) {
        let mut parts = Vec::new();
        for _ in 0..self.rng.gen_range(1..4) {
            let (text, out) = if depth > 0 && self.rng.gen_bool(0.35) {
                self.merge(channels, depth - 1)
            } else {
                self.layer(channels)
            };
            parts.push(text);
            channels = out;
        }
        (parts.join(" -> "), channels)
    }

    /// A merge of branches that all read `channels` channels.
    fn merge(&mut self, channels: usize, depth: usize) -> (String, usize) {
        let branches = self.rng.gen_range(2..4);
        match self.rng.gen_range(0..4) {
            // add / mul: every branch ends at the same width.
            0 | 1 => {
                let kind = self.pick(&["add", "add", "mul"]);
                let target = if self.rng.gen_bool(0.5) {
                    channels
                } else {
                    self.width()
                };
                let texts: Vec<String> = (0..branches)
                    .map(|idx| {
                        if idx == 0 && target == channels && self.rng.gen_bool(0.5) {
                            return "identity".into();
                        }
                        let (text, out) = self.chain(channels, depth);
                        if out == target {
                            text
                        } else {
                            format!("{text} -> conv1({target}) -> bn")
                        }
                    })
                    .collect();
                let suffix = self.pick(&["", " relu", " relu6"]);
                (format!("{kind}({}){suffix}", texts.join(", ")), target)
            }
            // concat: channels add up.
            2 => {
                let mut total = 0;
                let texts: Vec<String> = (0..branches)
                    .map(|_| {
                        let (text, out) = self.chain(channels, depth);
                        total += out;
                        text
                    })
                    .collect();
                (format!("concat({})", texts.join(", ")), total)
            }
            // squeeze and excitation: the image times a per-channel vector.
            _ => {
                let squeeze = (channels / 2).max(1);
                let gate = self.pick(&["sigmoid", "hardsigmoid"]);
                (
                    format!(
                        "mul(identity, gap -> dense({squeeze}) relu -> dense({channels}) {gate})"
                    ),
                    channels,
                )
            }
        }
    }

    /// A layer that halves the size.
    fn down(&mut self, channels: usize) -> (String, usize) {
        match self.rng.gen_range(0..5) {
            0 => {
                let f = self.width();
                (format!("conv3({f}, stride=2, pad=same) -> bn relu"), f)
            }
            1 => ("pool2".into(), channels),
            2 => ("dwconv3(stride=2, pad=same) -> bn relu6".into(), channels),
            3 => {
                let f = self.width();
                (
                    format!(
                        "add(conv1({f}, stride=2, pad=same) -> bn, conv3({f}, stride=2, pad=same) -> bn relu -> conv3({f}, pad=same) -> bn) relu"
                    ),
                    f,
                )
            }
            _ => ("avgpool2(pad=same)".into(), channels),
        }
    }

    fn spec(&mut self) -> (String, usize) {
        let (h, w) =
            [(8, 8), (9, 7), (12, 12), (7, 10), (16, 16), (5, 5)][self.rng.gen_range(0..6)];
        let c = [1, 3][self.rng.gen_range(0..2)];
        let mut channels = c;
        let mut parts = Vec::new();
        let mut size: usize = h.min(w);
        for _ in 0..self.rng.gen_range(1..4) {
            let (text, out) = self.chain(channels, 2);
            parts.push(text);
            channels = out;
            if size >= 5 && self.rng.gen_bool(0.2) {
                // A `valid` convolution: two rows and columns fewer.
                let f = self.width();
                let k = self.pick(&["conv3", "dwconv3", "sepconv3"]);
                let (text, out) = match k {
                    "dwconv3" => (format!("dwconv3 -> bn {}", self.activation()), channels),
                    _ => (format!("{k}({f}) -> bn relu"), f),
                };
                parts.push(text);
                channels = out;
                size -= 2;
            }
            if size >= 4 && self.rng.gen_bool(0.5) {
                let (text, out) = self.down(channels);
                parts.push(text);
                channels = out;
                size = size.div_ceil(2);
            }
        }
        let classes = self.rng.gen_range(2..5);
        let head = match self.rng.gen_range(0..5) {
            0 => format!("gap -> dense{classes} softmax"),
            4 => {
                // Merges of flat vectors.
                let (a, b) = (self.width(), self.width());
                let merge = match self.rng.gen_range(0..3) {
                    0 => format!(
                        "concat(dense({a}) relu, dense({b}) {}, identity)",
                        self.activation()
                    ),
                    1 => format!("add(identity, dense({a}) relu -> dense({a}))"),
                    _ => format!("mul(dense({a}) sigmoid, dense({a}) tanh)"),
                };
                format!(
                    "{} -> dense({a}) relu -> {merge} -> dense{classes} softmax",
                    self.pick(&["gap", "flatten", "gmp"])
                )
            }
            1 => format!("gmp -> dropout(0.3) -> dense{classes} softmax"),
            2 => format!("flatten -> dense{classes} softmax"),
            _ => "gap -> dense1 sigmoid".into(),
        };
        let classes = if head.ends_with("sigmoid") {
            2
        } else {
            classes
        };
        let optimizer = self.pick(&["adam", "sgd", "rmsprop", "adamw"]);
        let text = format!(
            "input: {h}x{w}x{c}\nclasses: {classes}\nmodel: |\n  {} -> {head}\ntrain:\n  optimizer: {optimizer}\n  lr: 0.01\n",
            parts.join("\n  -> ")
        );
        (text, classes)
    }
}

/// The model the generator writes from `seed`, and its classes.
fn generated(seed: u64) -> (String, usize) {
    Writer {
        rng: ChaCha8Rng::seed_from_u64(seed),
    }
    .spec()
}

/// Images per training batch: enough for most models to be split over two cores.
const BATCH: usize = 24;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_graph_models_export_to_what_strata_computes() {
    use crate::export_onnx::{random_weights_difference, RELATIVE_TOLERANCE, TOLERANCE};
    let cases = env_usize("STRATA_GRAPH_FUZZ_EXPORTS", 12);
    let first = env_usize("STRATA_GRAPH_FUZZ_SEED", 0) as u64;
    for seed in first..first + cases as u64 {
        let (text, _) = generated(seed);
        let outcome = std::panic::catch_unwind(|| random_weights_difference(&text, "fuzz"));
        match outcome {
            Ok((difference, relative)) => assert!(
                difference <= TOLERANCE && relative <= RELATIVE_TOLERANCE,
                "seed {seed}: |tract - strata| {difference:.2e} (relative {relative:.2e})\n{text}"
            ),
            Err(_) => panic!("seed {seed}: the export or tract failed\n{text}"),
        }
    }
}

#[test]
fn random_graph_models_that_compile_also_train() {
    let cases = env_usize("STRATA_GRAPH_FUZZ_CASES", 48);
    let first = env_usize("STRATA_GRAPH_FUZZ_SEED", 0) as u64;
    let mut split = 0;
    for seed in first..first + cases as u64 {
        let (text, classes) = generated(seed);
        let compiled = strata::compile(&text, "fuzz");
        let errors: Vec<&str> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.as_str())
            .collect();
        let Some(model) = compiled.model.filter(|_| errors.is_empty()) else {
            panic!("seed {seed}: a model that fits does not compile: {errors:?}\n{text}");
        };
        if strata::backend::split::ranks_for(&model, BATCH) > 1 {
            split += 1;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut network = Network::new(&model, seed);
            let len = model.input.len();
            let batch = BATCH;
            let images: Vec<f32> = (0..batch * len)
                .map(|v| ((v * 37 + seed as usize) % 101) as f32 / 101.0)
                .collect();
            let labels: Vec<usize> = (0..batch).map(|n| n % classes).collect();
            let real = network.layer_shapes(images[..2 * len].to_vec(), 2);
            let expected: Vec<Vec<usize>> = model
                .layers
                .iter()
                .map(|layer| layer.output.dims())
                .collect();
            assert_eq!(real, expected, "layer shapes");
            let mut optimizer = Optimizer::new(&model.train);
            for _ in 0..2 {
                let stats = network
                    .train_step(images.clone(), &labels, &mut optimizer)
                    .expect("step");
                assert!(stats.loss.is_finite(), "loss {}", stats.loss);
            }
            let stats = network.evaluate(images.clone(), &labels);
            assert!(stats.loss.is_finite(), "evaluation loss {}", stats.loss);
            for row in network.predict(images[..3 * len].to_vec(), 3) {
                let total: f32 = row.iter().sum();
                assert!(row.iter().all(|p| p.is_finite()), "{row:?}");
                assert!((total - 1.0).abs() < 1e-3 || row.len() == 1, "{row:?}");
            }
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("seed {seed}: {message}\n{text}");
        }
    }
    eprintln!("{cases} models trained, {split} of them split over the cores");
    // On one core nothing splits; on two or more, most of these models do (64% of 10,000).
    if rayon::current_num_threads() > 1 {
        assert!(
            split * 4 >= cases,
            "only {split} of {cases} models split over the cores"
        );
    }
}

/// Two training steps of `model` (seed 7) on `images` inside a rayon pool of `threads`
/// threads: the weights with the moving statistics, and each step's loss bits.
fn steps_on_threads(
    model: &strata::ir::Model,
    (images, labels): (&[f32], &[usize]),
    threads: usize,
) -> (Vec<strata::backend::checkpoint::NamedTensor>, Vec<u64>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| {
        let mut network = Network::new(model, 7);
        let mut optimizer = Optimizer::new(&model.train);
        let losses = (0..2)
            .map(|_| {
                let stats = network
                    .train_step(images.to_vec(), labels, &mut optimizer)
                    .expect("step");
                stats.loss.to_bits()
            })
            .collect();
        (
            strata::backend::params::to_tensors(model, &network.params),
            losses,
        )
    })
}

#[test]
fn random_graph_models_split_over_the_cores_train_bit_for_bit() {
    let cases = env_usize("STRATA_GRAPH_FUZZ_SPLITS", 12);
    let first = env_usize("STRATA_GRAPH_FUZZ_SEED", 0) as u64;
    let mut split = 0;
    for seed in first..first + cases as u64 {
        let (text, classes) = generated(seed);
        let model = strata::compile(&text, "fuzz").model.expect("compiles");
        let threads = 2;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        if pool.install(|| strata::backend::split::ranks_for(&model, BATCH)) < 2 {
            continue;
        }
        split += 1;
        let len = model.input.len();
        let images: Vec<f32> = (0..BATCH * len)
            .map(|v| ((v * 7919 + seed as usize) % 1000) as f32 / 1000.0)
            .collect();
        let labels: Vec<usize> = (0..BATCH).map(|n| n % classes).collect();
        let whole = steps_on_threads(&model, (&images, &labels), 1);
        let halves = steps_on_threads(&model, (&images, &labels), threads);
        assert!(
            whole == halves,
            "seed {seed}: two ranks differ from one pass\n{text}"
        );
    }
    assert!(split * 2 >= cases, "only {split} of {cases} models split");
}
