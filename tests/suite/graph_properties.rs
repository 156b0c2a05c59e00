//! Properties of the graph language on generated programs: random graph models (chains of
//! layers, merges of 2-4 branches nested a few levels, groups with repeats) and random block
//! programs (signatures, bodies that call other blocks, argument expressions with divisions,
//! calls with wrong, missing or unknown arguments, recursion). For every one, `compile` does not
//! panic, answers within a time bound, puts every label inside the text on character
//! boundaries, and a model without errors satisfies the IR invariants. Then deterministic edge
//! cases: deep nesting on a small stack, and models of thousands of block calls.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::time::{Duration, Instant};
use strata::compile::shapes::{merge_shape, output_shape, params};
use strata::diagnostics::{codes, render_human, render_json, HumanStyle, SourceFile};
use strata::ir::{Layer, MergeKind, Model, Op, Shape, Source};

/// A hang guard per generated case, in release builds (`cargo test --release`); debug builds
/// are slower, so they get more.
const CASE_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(2000)
} else {
    Duration::from_millis(200)
};

/// The language server compiles on a thread with a small stack; the deep cases run on one.
const SMALL_STACK: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Checks shared by every case
// ---------------------------------------------------------------------------------------------

fn input_of(compiled: &strata::Compiled) -> Option<Shape> {
    let input = compiled.spec.as_ref()?.input?;
    Some(Shape::Image {
        height: usize::try_from(input.height).ok()?,
        width: usize::try_from(input.width).ok()?,
        channels: usize::try_from(input.channels).ok()?,
    })
}

/// Compiles `text` within [`CASE_BOUND`] and checks every property; `Err` says which failed.
fn check_case(text: &str) -> Result<strata::Compiled, String> {
    let start = Instant::now();
    let compiled = strata::compile(text, "generated");
    let elapsed = start.elapsed();
    if elapsed > CASE_BOUND {
        return Err(format!("took {elapsed:?}"));
    }
    for diagnostic in &compiled.diagnostics {
        if diagnostic.primary().is_none() && !diagnostic.labels.is_empty() {
            return Err(format!(
                "`{}`: labels but no primary one",
                diagnostic.message
            ));
        }
        let spans = diagnostic
            .labels
            .iter()
            .map(|label| label.span)
            .chain(diagnostic.suggestions.iter().map(|s| s.span));
        for span in spans {
            let end = span.offset.checked_add(span.len);
            let inside = end.is_some_and(|end| end <= text.len());
            if !inside
                || !text.is_char_boundary(span.offset)
                || !text.is_char_boundary(span.offset + span.len)
            {
                return Err(format!(
                    "`{}` ({}): span {span:?} is not inside the text on character boundaries",
                    diagnostic.message, diagnostic.code
                ));
            }
        }
        if diagnostic.message.is_empty() || diagnostic.message.contains('\n') {
            return Err(format!("message {:?} is not one line", diagnostic.message));
        }
    }
    // Whatever shape inference got through is well-formed, errors or not.
    if let Some(input) = input_of(&compiled) {
        check_layers(input, &compiled.layers).map_err(|why| format!("partial layers: {why}"))?;
    }
    match &compiled.model {
        Some(model) => check_model(model)?,
        None if !compiled.has_errors()
            && compiled.spec.as_ref().is_some_and(|s| s.input.is_some()) =>
        {
            return Err("no errors, but no model".into())
        }
        None => {}
    }
    if compiled.model.is_some() && compiled.has_errors() {
        return Err("a model despite errors".into());
    }
    Ok(compiled)
}

/// Renders the first diagnostics as a user would see them (miette and JSON), which must not
/// panic on any label.
fn render_some(text: &str, compiled: &strata::Compiled) {
    let source = SourceFile::new("generated.yaml", text.to_string());
    for diagnostic in compiled.diagnostics.iter().take(3) {
        let human = render_human(diagnostic, &source, HumanStyle::Test);
        assert!(human.contains(diagnostic.code), "{human}");
        let json = render_json(diagnostic, &source);
        let value: serde_json::Value = serde_json::from_str(&json).expect("JSON diagnostic");
        assert_eq!(value["code"], diagnostic.code);
    }
}

fn check_layers(input: Shape, layers: &[Layer]) -> Result<(), String> {
    for (idx, layer) in layers.iter().enumerate() {
        let at = format!("layer {idx} `{}` (`{}`)", layer.name, layer.origin.text);
        if layer.index != idx {
            return Err(format!("{at}: index {}", layer.index));
        }
        if layer.inputs.is_empty() {
            return Err(format!("{at}: no inputs"));
        }
        for edge in &layer.inputs {
            let produced = match edge.source {
                Source::Input => input,
                Source::Layer(source) if source < idx => layers[source].output,
                Source::Layer(source) => {
                    return Err(format!("{at}: reads layer {source}, not before it"))
                }
            };
            if edge.shape != produced {
                return Err(format!(
                    "{at}: an edge of {} from a producer of {produced}",
                    edge.shape
                ));
            }
        }
        if layer.input() != layer.inputs[0].shape {
            return Err(format!("{at}: input() is not the first edge's shape"));
        }
        let shapes: Vec<Shape> = layer.inputs.iter().map(|edge| edge.shape).collect();
        match layer.op {
            Op::Merge(kind) => {
                if shapes.len() < 2 || merge_shape(kind, &shapes) != Ok(layer.output) {
                    return Err(format!(
                        "{at}: {kind:?} of {shapes:?} gives {}",
                        layer.output
                    ));
                }
                let consistent = match kind {
                    MergeKind::Add => shapes.iter().all(|shape| *shape == layer.output),
                    MergeKind::Concat => {
                        shapes.iter().map(Shape::features).sum::<usize>() == layer.output.features()
                    }
                    MergeKind::Mul => shapes.iter().all(|shape| match shape {
                        Shape::Image { .. } => *shape == layer.output,
                        Shape::Flat(n) => *n == layer.output.features(),
                    }),
                };
                if !consistent {
                    return Err(format!(
                        "{at}: {kind:?} of {shapes:?} gives {}",
                        layer.output
                    ));
                }
            }
            op => {
                if shapes.len() != 1 || output_shape(&op, shapes[0]) != Ok(layer.output) {
                    return Err(format!("{at}: {op:?} on {shapes:?} gives {}", layer.output));
                }
            }
        }
        if params(&layer.op, layer.input()) != Ok(layer.params) {
            return Err(format!("{at}: parameters {:?}", layer.params));
        }
    }
    Ok(())
}

fn check_model(model: &Model) -> Result<(), String> {
    check_layers(model.input, &model.layers)?;
    let n = model.layers.len();
    if n == 0 || n as u64 > 10_000 {
        return Err(format!("{n} layers"));
    }
    let mut read = vec![false; n];
    for layer in &model.layers {
        for edge in &layer.inputs {
            if let Source::Layer(idx) = edge.source {
                read[idx] = true;
            }
        }
    }
    if let Some(idx) = read[..n - 1].iter().position(|read| !read) {
        return Err(format!("layer {idx} is read by no later layer"));
    }
    if read[n - 1] {
        return Err("the last layer is read by another".into());
    }
    let mut names = std::collections::HashSet::new();
    if let Some(layer) = model.layers.iter().find(|layer| !names.insert(&layer.name)) {
        return Err(format!("two layers are called `{}`", layer.name));
    }
    let total: u64 = model.layers.iter().map(|layer| layer.params.total()).sum();
    if total != model.params.total() {
        return Err("totals".into());
    }
    let json = strata::summary::to_json(model);
    let mut known = std::collections::HashSet::from(["input".to_string()]);
    for layer in &json.layers {
        if let Some(input) = layer.inputs.iter().find(|input| !known.contains(*input)) {
            return Err(format!("JSON: `{}` reads unknown `{input}`", layer.name));
        }
        known.insert(layer.name.clone());
    }
    let table = strata::summary::render_table(model);
    if table.contains("Connected to") == model.is_chain() {
        return Err("\"Connected to\" shown for a chain or missing for a graph".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random graph models
// ---------------------------------------------------------------------------------------------

/// Layers that keep a 3-channel image's shape, so that merges of them fit.
const KEEP_SHAPE: &[&str] = &[
    "identity",
    "identity",
    "conv3(3, pad=same)",
    "conv1(3)",
    "bn",
    "bn relu",
    "relu",
    "relu6",
    "silu",
    "avgpool3(stride=1, pad=same)",
    "dwconv3(pad=same)",
    "sepconv3(3, pad=same) relu",
    "conv(3, kernel=1, groups=3)",
    "dropout(0.1)",
    "conv1(3)x2",
    "bn x3",
];

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        // Layers that keep the shape, so that merges often fit.
        12 => prop::sample::select(KEEP_SHAPE),
        // Layers that change it.
        2 => prop::sample::select(vec![
            "conv1(4) relu",
            "conv3(3, stride=2, pad=same)",
            "pool2",
            "pool2(pad=same)",
        ]),
        // Layers that flatten it.
        1 => prop::sample::select(vec!["gmp", "gap", "dense3", "dense3 sigmoid", "flatten"]),
        // Mistakes.
        1 => prop::sample::select(vec![
            "conv3",
            "pool9",
            "dense0",
            "cnov3(3)",
            "add(identity)",
            "conv(3, 32)",
            "cönv3(3)",
            "conv3(3, pad=sané)",
            "relu(alpha=1)",
            "dropout(1.5)",
            "conv1(3)x0",
            "basic(8)",
            "conv1(f*2)",
            "conv1(3/0)",
            "conv1(7/2)",
        ]),
    ]
    .prop_map(String::from)
}

/// A chain of stages, with merges, groups and repeats nested up to `depth` levels.
fn chain() -> impl Strategy<Value = String> {
    let base = prop::collection::vec(leaf(), 1..4).prop_map(|stages| stages.join(" -> "));
    base.prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            // A merge of 2-4 branches, maybe repeated, maybe with a suffix activation.
            (
                prop::sample::select(vec!["add", "add", "concat", "mul"]),
                prop::collection::vec(inner.clone(), 2..5),
                prop::option::weighted(0.2, 1u32..4),
                prop::option::weighted(0.3, prop::sample::select(vec!["relu", "gelu", "sigmoid"])),
            )
                .prop_map(|(kind, branches, repeat, activation)| {
                    let repeat = repeat.map(|n| format!("x{n}")).unwrap_or_default();
                    let activation = activation.map(|a| format!(" {a}")).unwrap_or_default();
                    format!("{kind}({}){repeat}{activation}", branches.join(", "))
                }),
            // A group, maybe repeated.
            (inner.clone(), prop::option::weighted(0.7, 1u32..4)).prop_map(|(chain, repeat)| {
                format!(
                    "({chain}){}",
                    repeat.map(|n| format!("x{n}")).unwrap_or_default()
                )
            }),
            // Two chains one after the other, over several lines.
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a}\n  -> {b}")),
        ]
    })
}

/// A chain whose merges always fit on a 3-channel image: layers that keep the shape, `add` and
/// `mul` of them, `concat` followed by a 1x1 conv back to 3 channels, groups with repeats.
fn fitting_chain() -> impl Strategy<Value = String> {
    let base = prop::collection::vec(prop::sample::select(KEEP_SHAPE), 1..3)
        .prop_map(|stages| stages.join(" -> "));
    base.prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec!["add", "mul", "add"]),
                prop::collection::vec(inner.clone(), 2..5),
                prop::option::weighted(0.2, 1u32..4),
                prop::option::weighted(0.3, prop::sample::select(vec!["relu", "sigmoid"])),
            )
                .prop_map(|(kind, branches, repeat, activation)| {
                    let repeat = repeat.map(|n| format!("x{n}")).unwrap_or_default();
                    let activation = activation.map(|a| format!(" {a}")).unwrap_or_default();
                    format!("{kind}({}){repeat}{activation}", branches.join(", "))
                }),
            prop::collection::vec(inner.clone(), 2..5)
                .prop_map(|branches| format!("concat({}) -> conv1(3)", branches.join(", "))),
            (inner.clone(), prop::option::weighted(0.7, 1u32..4)).prop_map(|(chain, repeat)| {
                format!(
                    "({chain}){}",
                    repeat.map(|n| format!("x{n}")).unwrap_or_default()
                )
            }),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a}\n  -> {b}")),
        ]
    })
}

fn graph_spec() -> impl Strategy<Value = String> {
    let any_chain = (
        prop::sample::select(vec!["8x8x3", "16x16x3", "9x7x3", "2x2x3", "16x16x1"]),
        chain(),
    );
    let fitting = (
        prop::sample::select(vec!["8x8x3", "16x16x3", "9x7x3"]),
        fitting_chain(),
    );
    (
        prop_oneof![any_chain, fitting],
        prop::sample::select(vec![
            " -> gap -> dense2 softmax",
            " -> gap -> dense2 softmax",
            " -> dense2 softmax",
            " -> flatten -> dense1 sigmoid",
            "",
            " -> gap -> dense2 softmax  # é",
        ]),
        any::<bool>(),
    )
        .prop_map(|((input, chain), tail, literal)| {
            if literal {
                format!("input: {input}\nclasses: 2\nmodel: |\n  {chain}{tail}\n")
            } else {
                // A folded scalar: the chain on one line (a `#` would hide the rest).
                let one_line = chain.replace("\n  ", " ");
                let tail = tail.split('#').next().unwrap_or("");
                format!("input: {input}\nmodel: >\n  {one_line}{tail}\n")
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Random block programs, read from a tape of choices
// ---------------------------------------------------------------------------------------------

/// Reads choices from a byte tape; past its end every choice is 0, the simplest, so that
/// shrinking the tape simplifies the program.
struct Tape<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Tape<'_> {
    fn below(&mut self, n: usize) -> usize {
        let byte = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(byte) % n.max(1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.below(options.len())]
    }
}

#[derive(Clone, Debug)]
struct Signature {
    name: String,
    /// (name, has a default)
    params: Vec<(String, bool)>,
}

const BLOCK_NAMES: &[&str] = &["unit", "down", "mix", "tower", "squeeze", "stem"];
const PARAMS: &[&str] = &["f", "k", "s", "act"];

struct Program<'t, 'a> {
    tape: &'t mut Tape<'a>,
    signatures: Vec<Signature>,
    /// Stages written so far in the current text, to keep programs small.
    budget: usize,
    /// The block whose body is being written (`None` for the model).
    current: Option<usize>,
}

impl Program<'_, '_> {
    /// A whole-number expression over the parameters in `scope`; mostly sensible, sometimes
    /// zero, negative, fractional, a float, a word or a division by zero.
    fn int_expr(&mut self, scope: &[String]) -> String {
        let numeric: Vec<&String> = scope.iter().filter(|p| *p != "act").collect();
        let param = |tape: &mut Tape<'_>| -> String {
            if numeric.is_empty() {
                (1 + tape.below(8)).to_string()
            } else {
                numeric[tape.below(numeric.len())].clone()
            }
        };
        match self.tape.below(16) {
            0..=3 => (1 + self.tape.below(16)).to_string(),
            4..=7 => param(self.tape),
            8 | 9 => format!("{}*2", param(self.tape)),
            10 => format!("{}/2", param(self.tape)),
            11 => format!("({}+{})/2", param(self.tape), param(self.tape)),
            12 => format!("{}-{}", param(self.tape), self.tape.below(4)),
            13 => format!("{}+{}", param(self.tape), self.tape.below(4)),
            _ => self.wild_expr(scope, 2),
        }
    }

    /// Any expression: the full grammar of values and operators.
    fn wild_expr(&mut self, scope: &[String], depth: usize) -> String {
        if depth == 0 || self.tape.chance(30) {
            return match self.tape.below(9) {
                0 => self.tape.below(20).to_string(),
                1 => "0".to_string(),
                2 => "0.5".to_string(),
                3 => "same".to_string(),
                4 => "3x3".to_string(),
                5 => "9223372036854775807".to_string(),
                6 => "1e3".to_string(),
                _ if !scope.is_empty() => scope[self.tape.below(scope.len())].clone(),
                _ => "q".to_string(),
            };
        }
        let a = self.wild_expr(scope, depth - 1);
        let b = self.wild_expr(scope, depth - 1);
        match self.tape.below(6) {
            0 => format!("{a}+{b}"),
            1 => format!("{a}-{b}"),
            2 => format!("{a}*{b}"),
            3 => format!("{a}/{b}"),
            4 => format!("({a})"),
            _ => format!("-{a}"),
        }
    }

    fn window_expr(&mut self, scope: &[String]) -> String {
        match self.tape.below(6) {
            0 => "1".to_string(),
            1 => "3".to_string(),
            2 if scope.iter().any(|p| p == "k") => "k".to_string(),
            3 if scope.iter().any(|p| p == "s") => "s".to_string(),
            4 => "2x1".to_string(),
            _ => self.int_expr(scope),
        }
    }

    fn activation(&mut self, scope: &[String]) -> String {
        if scope.iter().any(|p| p == "act") && self.tape.chance(50) {
            return "act".to_string();
        }
        self.tape
            .pick(&["relu", "gelu", "relu6", "silu", "tanh", "bogus", "dense"])
            .to_string()
    }

    /// A block call of any declared block (itself included) with arguments that are mostly
    /// right and sometimes missing, extra, unknown, given twice or out of order.
    fn call(&mut self, scope: &[String]) -> String {
        // Mostly a block declared after the current one (no recursion), sometimes any.
        let n = self.signatures.len();
        let target = match self.current {
            Some(current) if current + 1 < n && !self.tape.chance(10) => {
                current + 1 + self.tape.below(n - current - 1)
            }
            Some(_) if !self.tape.chance(10) => return "identity".to_string(),
            _ => self.tape.below(n),
        };
        let target = self.signatures[target].clone();
        let mut args: Vec<String> = Vec::new();
        let value = |this: &mut Self, param: &str| -> String {
            if param == "act" {
                this.tape
                    .pick(&["relu", "gelu", "tanh", "relu6", "identity", "nope", "3"])
                    .to_string()
            } else if param == "k" || param == "s" {
                this.window_expr(scope)
            } else {
                this.int_expr(scope)
            }
        };
        for (name, has_default) in &target.params {
            if *has_default {
                if self.tape.chance(40) {
                    let v = value(self, name);
                    args.push(format!("{name}={v}"));
                }
            } else {
                let v = value(self, name);
                args.push(v);
            }
        }
        match self.tape.below(12) {
            0 if !args.is_empty() => {
                let at = self.tape.below(args.len());
                args.remove(at);
            }
            1 => args.push(self.int_expr(scope)),
            2 => args.push("zz=1".to_string()),
            3 if !target.params.is_empty() => {
                let name = target.params[0].0.clone();
                args.push(format!("{name}=2"));
            }
            4 if !args.is_empty() => {
                args.insert(0, "f=4".to_string());
            }
            5 => args.push("conv1(3) -> bn".to_string()),
            _ => {}
        }
        let mut text = if args.is_empty() && self.tape.chance(70) {
            target.name.clone()
        } else {
            format!("{}({})", target.name, args.join(", "))
        };
        if self.tape.chance(20) {
            text.push_str(&format!("x{}", 1 + self.tape.below(3)));
        }
        if self.tape.chance(20) {
            text.push(' ');
            text.push_str(&self.activation(scope));
        }
        text
    }

    fn stage(&mut self, scope: &[String], depth: usize, mode: Mode) -> String {
        self.budget = self.budget.saturating_sub(1);
        let nested = depth < 3 && self.budget > 0;
        if mode == Mode::KeepShape {
            // Inside an `add` branch: stages that keep the shape, and nested adds.
            return match self.tape.below(if nested { 7 } else { 6 }) {
                0 => "bn".to_string(),
                1 => self.activation(scope),
                2 => "identity".to_string(),
                3 => "dwconv3(pad=same)".to_string(),
                4 => "dropout(0.2)".to_string(),
                5 => "bn relu".to_string(),
                _ => self.merge("add", scope, depth, Mode::KeepShape),
            };
        }
        match self.tape.below(if nested { 14 } else { 9 }) {
            0 | 1 => {
                let filters = self.int_expr(scope);
                let mut text = format!("conv({filters}");
                if self.tape.chance(90) {
                    text.push_str(&format!(", kernel={}", self.window_expr(scope)));
                }
                if mode == Mode::Any && self.tape.chance(30) {
                    text.push_str(&format!(", stride={}", self.window_expr(scope)));
                }
                if self.tape.chance(90) {
                    text.push_str(", pad=same");
                }
                text.push(')');
                if self.tape.chance(30) {
                    text.push(' ');
                    text.push_str(&self.activation(scope));
                }
                text
            }
            2 => "bn".to_string(),
            3 => self.activation(scope),
            4 => "identity".to_string(),
            5 if mode == Mode::KeepHw => "dropout(0.2)".to_string(),
            5 => self
                .tape
                .pick(&[
                    "pool2(pad=same)",
                    "dropout(0.2)",
                    "dwconv3(pad=same)",
                    "pool2",
                ])
                .to_string(),
            6 if mode == Mode::KeepHw => "dwconv3(pad=same)".to_string(),
            6 => format!("dense({})", self.int_expr(scope)),
            7 | 8 => self.call(scope),
            9 => self.merge("add", scope, depth, Mode::KeepShape),
            10 => self.merge("concat", scope, depth, Mode::KeepHw),
            11 => self.merge("add", scope, depth, mode),
            12 => format!(
                "mul(identity, gap -> dense({}) sigmoid)",
                self.int_expr(scope)
            ),
            _ => format!(
                "({})x{}",
                self.chain(scope, depth + 1, mode),
                1 + self.tape.below(3)
            ),
        }
    }

    /// `kind(identity, …)` with 2-4 branches written in `mode`.
    fn merge(&mut self, kind: &str, scope: &[String], depth: usize, mode: Mode) -> String {
        let n = 2 + self.tape.below(3);
        let mut branches: Vec<String> = Vec::new();
        for idx in 0..n {
            if idx == 0 && self.tape.chance(70) {
                branches.push("identity".to_string());
            } else {
                branches.push(self.chain(scope, depth + 1, mode));
            }
        }
        format!("{kind}({})", branches.join(", "))
    }

    fn chain(&mut self, scope: &[String], depth: usize, mode: Mode) -> String {
        let n = 1 + self.tape.below(3);
        let stages: Vec<String> = (0..n).map(|_| self.stage(scope, depth, mode)).collect();
        stages.join(" -> ")
    }
}

/// What a branch must keep so that its merge fits (mostly: calls and arbitrary arguments
/// still break it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Anything.
    Any,
    /// Height and width (a `concat` branch).
    KeepHw,
    /// The whole shape (an `add` branch).
    KeepShape,
}

/// A spec with random blocks and a model calling them, read from `bytes`.
fn block_program(bytes: &[u8]) -> String {
    let mut tape = Tape { bytes, at: 0 };
    let n_blocks = 1 + tape.below(5);
    let offset = tape.below(BLOCK_NAMES.len());
    let mut signatures = Vec::new();
    for idx in 0..n_blocks {
        let name = match tape.below(100) {
            99 => "stage2".to_string(),
            98 => "conv".to_string(),
            97 if idx > 0 => BLOCK_NAMES[offset].to_string(),
            _ => BLOCK_NAMES[(offset + idx) % BLOCK_NAMES.len()].to_string(),
        };
        let n_params = tape.below(PARAMS.len() + 1);
        let first_default = tape.below(n_params + 2);
        let params = PARAMS[..n_params]
            .iter()
            .enumerate()
            .map(|(idx, param)| (param.to_string(), idx >= first_default))
            .collect();
        signatures.push(Signature { name, params });
    }
    let mut program = Program {
        tape: &mut tape,
        signatures: signatures.clone(),
        budget: 0,
        current: None,
    };
    let mut text = format!(
        "input: {}\nclasses: 2\nblocks:\n",
        program.tape.pick(&["16x16x3", "8x8x1", "5x5x3"])
    );
    for (idx, signature) in signatures.iter().enumerate() {
        program.current = Some(idx);
        let scope: Vec<String> = signature
            .params
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let mut params = Vec::new();
        for (idx, (name, has_default)) in signature.params.iter().enumerate() {
            if *has_default {
                let default = match name.as_str() {
                    "act" => program.tape.pick(&["relu", "gelu", "same"]).to_string(),
                    _ => program.int_expr(&scope[..idx]),
                };
                params.push(format!("{name}={default}"));
            } else {
                params.push(name.clone());
            }
        }
        let head = if params.is_empty() && program.tape.chance(60) {
            signature.name.clone()
        } else {
            format!("{}({})", signature.name, params.join(", "))
        };
        program.budget = 8;
        let body = program.chain(&scope, 0, Mode::Any);
        if program.tape.chance(20) {
            // A literal block over two lines, with a comment.
            let body = body.replacen(" -> ", " # é\n    -> ", 1);
            text.push_str(&format!("  {head}: |\n    {body}\n"));
        } else {
            text.push_str(&format!("  {head}: {body}\n"));
        }
    }
    program.budget = 10;
    program.current = None;
    let model = program.chain(&[], 0, Mode::Any);
    let tail = program
        .tape
        .pick(&[" -> gap -> dense2 softmax", " -> dense1 sigmoid", ""]);
    text.push_str(&format!("model: {model}{tail}\n"));
    text
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_graph_models_compile_soundly(text in graph_spec()) {
        match check_case(&text) {
            Ok(compiled) => render_some(&text, &compiled),
            Err(why) => return Err(TestCaseError::fail(format!("{why}\n{text}"))),
        }
    }

    #[test]
    fn random_block_programs_compile_soundly(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = block_program(&bytes);
        match check_case(&text) {
            Ok(compiled) => render_some(&text, &compiled),
            Err(why) => return Err(TestCaseError::fail(format!("{why}\n{text}"))),
        }
    }

    #[test]
    fn mutated_block_programs_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..5), 1..4),
    ) {
        let mut text = block_program(&bytes);
        for (at, kind) in edits {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match kind {
                0 => text.insert(at, '('),
                1 => text.insert(at, ')'),
                2 => text.insert(at, 'é'),
                3 => text.insert_str(at, ", "),
                _ => text.insert_str(at, "x99"),
            }
        }
        if let Err(why) = check_case(&text) {
            return Err(TestCaseError::fail(format!("{why}\n{text}")));
        }
    }
}

/// The generators make programs without errors often enough for the invariant checks to
/// mean something, and programs of every kind of error.
#[test]
fn the_generators_reach_clean_models_and_errors() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut clean = [0usize; 2];
    let mut graphs = [0usize; 2];
    let mut codes_seen = std::collections::BTreeSet::new();
    let graph = graph_spec();
    let bytes = prop::collection::vec(any::<u8>(), 0..400);
    for _ in 0..300 {
        let texts = [
            graph.new_tree(&mut runner).expect("value").current(),
            block_program(&bytes.new_tree(&mut runner).expect("value").current()),
        ];
        for (kind, text) in texts.iter().enumerate() {
            let compiled = check_case(text).unwrap_or_else(|why| panic!("{why}\n{text}"));
            if let Some(model) = &compiled.model {
                clean[kind] += 1;
                graphs[kind] += usize::from(!model.is_chain());
            }
            codes_seen.extend(compiled.diagnostics.iter().map(|d| d.code));
        }
    }
    eprintln!("of 300 each: clean {clean:?}, clean graphs {graphs:?}");
    assert!(
        graphs[0] >= 30,
        "graph models: only {} of 300 are clean graphs",
        graphs[0]
    );
    assert!(
        graphs[1] >= 15,
        "block programs: only {} of 300 are clean graphs",
        graphs[1]
    );
    for code in [
        codes::SHAPE_MISMATCH,
        codes::BLOCK_ARGUMENT,
        codes::BLOCK_RECURSION,
        codes::LAYER_ARGUMENT,
        codes::LAYER_UNKNOWN,
        codes::SHAPE_VANISHED,
    ] {
        assert!(
            codes_seen.contains(code),
            "{code} never reported: {codes_seen:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic edge cases
// ---------------------------------------------------------------------------------------------

/// Runs `f` on a thread with the language server's small stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic or overflow")
}

fn nested(depth: usize, merge: &str, inner: &str) -> String {
    let mut model = inner.to_string();
    for _ in 0..depth {
        model = format!("{merge}(identity, {model})");
    }
    model
}

#[test]
fn sixty_four_nested_merges_compile_on_a_small_stack() {
    for merge in ["add", "mul", "concat"] {
        let text = format!(
            "input: 8x8x3\nmodel: {} -> gap -> dense2 softmax\n",
            nested(64, merge, "identity")
        );
        let compiled = on_small_stack(move || {
            let compiled = check_case(&text).unwrap_or_else(|why| panic!("{why}"));
            (
                compiled
                    .model
                    .map(|m| (m.layers.len(), m.layers.last().map(|l| l.output))),
                compiled.diagnostics.len(),
            )
        });
        // 64 merges, 65 identities, gap, dense.
        let (model, n_diagnostics) = compiled;
        let (n_layers, _) = model.unwrap_or_else(|| panic!("{merge}: {n_diagnostics} diagnostics"));
        assert_eq!(n_layers, 64 + 65 + 2, "{merge}");
    }
    // Deep concat grows the channels: 3 * 65.
    let text = format!(
        "input: 8x8x3\nmodel: {} -> gap -> dense2 softmax\n",
        nested(64, "concat", "identity")
    );
    let model = on_small_stack(move || strata::compile(&text, "deep").model).expect("model");
    let merge = model
        .layers
        .iter()
        .rev()
        .find(|l| matches!(l.op, Op::Merge(_)))
        .expect("merge");
    assert_eq!(merge.output.features(), 3 * 65);
    // Groups and merges mixed, 64 parentheses deep in all.
    let mut model = "conv1(3)".to_string();
    for level in 0..32 {
        model = if level % 2 == 0 {
            format!("({model})x1")
        } else {
            format!("add(identity, {model} -> bn)")
        };
    }
    let mut model = format!("add(identity, {model})");
    for _ in 0..30 {
        model = format!("({model})");
    }
    let text = format!("input: 8x8x3\nmodel: {model} -> gap -> dense2 softmax\n");
    on_small_stack(move || {
        let compiled = check_case(&text).unwrap_or_else(|why| panic!("{why}"));
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    });
}

#[test]
fn sixty_five_nested_merges_get_the_nesting_diagnostic() {
    for depth in [65, 66, 100, 5000] {
        let text = format!(
            "input: 8x8x3\nmodel: {} -> gap -> dense2 softmax\n",
            nested(depth, "add", "identity")
        );
        let expected_at = {
            // The 65th opening parenthesis.
            text.match_indices('(')
                .nth(64)
                .map(|(at, _)| at)
                .expect("65 parentheses")
        };
        let diagnostics = on_small_stack(move || {
            check_case(&text)
                .unwrap_or_else(|why| panic!("{why}"))
                .diagnostics
        });
        assert_eq!(diagnostics.len(), 1, "{depth}: {diagnostics:?}");
        assert_eq!(diagnostics[0].code, codes::SYNTAX_PARSE);
        assert_eq!(diagnostics[0].message, "parentheses nest more than 64 deep");
        assert_eq!(
            diagnostics[0].primary().expect("primary").span.offset,
            expected_at,
            "{depth}"
        );
    }
    // In a block body too.
    let text = format!(
        "input: 8x8x3\nblocks:\n  deep: {}\nmodel: deep -> gap -> dense2 softmax\n",
        nested(65, "add", "identity")
    );
    let diagnostics = on_small_stack(move || strata::compile(&text, "deep").diagnostics);
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message == "parentheses nest more than 64 deep"),
        "{diagnostics:?}"
    );
}

/// Block names without digits: `blka`, `blkb`, … `blkaa`, …
fn block_name(mut idx: usize) -> String {
    let mut name = String::new();
    idx += 1;
    while idx > 0 {
        idx -= 1;
        name.insert(0, char::from(b'a' + (idx % 26) as u8));
        idx /= 26;
    }
    format!("blk{name}")
}

/// `depth` blocks, each calling the next once; the last is a conv.
fn block_chain(depth: usize) -> String {
    let mut text = String::from("input: 8x8x3\nblocks:\n");
    for idx in 0..depth - 1 {
        text.push_str(&format!("  {}: {}\n", block_name(idx), block_name(idx + 1)));
    }
    text.push_str(&format!("  {}: conv1(3)\n", block_name(depth - 1)));
    text.push_str(&format!(
        "model: {} -> gap -> dense2 softmax\n",
        block_name(0)
    ));
    text
}

#[test]
fn block_calls_nested_to_the_limit_compile_on_a_small_stack() {
    let depth = strata::compile::blocks::MAX_CALL_DEPTH;
    let text = block_chain(depth);
    let model = on_small_stack(move || {
        let compiled = check_case(&text).unwrap_or_else(|why| panic!("{why}"));
        compiled.model
    })
    .expect("compiles");
    assert_eq!(model.layers.len(), 3);
    assert_eq!(model.layers[0].origin.frames.len(), depth);
}

#[test]
fn block_calls_nested_deeper_than_the_limit_get_a_diagnostic() {
    // One past the limit, and a thousand deep: a diagnostic at once, not a stack overflow
    // (`strata check` with a 1 MiB main-thread stack), in time linear in the blocks.
    let depth = strata::compile::blocks::MAX_CALL_DEPTH;
    for chain in [depth + 1, 1_000, 20_000] {
        let text = block_chain(chain);
        let start = Instant::now();
        let compiled = on_small_stack(move || strata::compile(&text, "deep"));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{chain}: took {:?}",
            start.elapsed()
        );
        let codes_found: Vec<&str> = compiled.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes_found, [codes::BLOCK_DEPTH], "{chain}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("deep_blocks.yaml");
    std::fs::write(&path, block_chain(1_000)).expect("write spec");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -s 1024 && exec \"$0\" check \"$1\"")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg(&path)
        .output()
        .expect("run strata");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("strata::block::depth"), "{stderr}");
}

#[test]
fn a_thousand_block_calls_answer_at_once() {
    let calls = vec!["unit(8)"; 1000].join(" -> ");
    let text = format!(
        "input: 32x32x3\nblocks:\n  unit(f): conv3(f, pad=same) -> bn relu\nmodel: conv1(8) -> {calls} -> gap -> dense2 softmax\n"
    );
    let start = Instant::now();
    let compiled = strata::compile(&text, "calls");
    let elapsed = start.elapsed();
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let model = compiled.model.expect("model");
    assert_eq!(model.layers.len(), 1 + 2000 + 2);
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    check_model(&model).expect("invariants");
    // The 1000th call is named in its layers' origins.
    let last_conv = &model.layers[1 + 2 * 999];
    assert!(
        last_conv.origin.context().contains("in `unit(8)`"),
        "{}",
        last_conv.origin.context()
    );
}

/// Four levels of blocks, each calling the next `fanout` times.
fn fanout_program(model: &str) -> String {
    format!(
        "input: 8x8x3\nblocks:\n  one: two x10\n  two: three x10\n  three: four x10\n  four: conv1(3)\nmodel: {model} -> gap -> dense2 softmax\n"
    )
}

#[test]
fn blocks_calling_blocks_are_sized_before_they_are_expanded() {
    // 9,000 + 900 + 90 + 8 + gap + dense: exactly the limit.
    let text = fanout_program("one x9 -> two x9 -> three x9 -> four x8");
    let start = Instant::now();
    let compiled = strata::compile(&text, "fanout");
    let elapsed = start.elapsed();
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    assert_eq!(
        compiled.model.as_ref().map(|m| m.layers.len()),
        Some(10_000)
    );
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    // One layer more.
    let text = fanout_program("one x9 -> two x9 -> three x9 -> four x9");
    let compiled = strata::compile(&text, "fanout");
    assert_eq!(compiled.diagnostics.len(), 1, "{:?}", compiled.diagnostics);
    assert_eq!(compiled.diagnostics[0].code, codes::REPEAT_COUNT);
    assert_eq!(
        compiled.diagnostics[0].message,
        "the model expands to 10001 layers, more than the limit of 10000"
    );

    // 10,002 layers, 11,002 layers: refused at once, at the model (no single stage makes more
    // than 10,000 layers); 11,002 in one stage: at its repeat.
    for (model, label) in [
        ("one x10", "one x10 -> gap -> dense2 softmax"),
        ("one x10 -> one", "one x10 -> one -> gap -> dense2 softmax"),
        ("one x11", "x11"),
        ("(one x10 -> two)x2", "x2"),
    ] {
        let text = fanout_program(model);
        let start = Instant::now();
        let compiled = strata::compile(&text, "fanout");
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_millis(100),
            "{model}: took {elapsed:?}"
        );
        assert_eq!(
            compiled.diagnostics.len(),
            1,
            "{model}: {:?}",
            compiled.diagnostics
        );
        let diagnostic = &compiled.diagnostics[0];
        assert_eq!(diagnostic.code, codes::REPEAT_COUNT, "{model}");
        let span = diagnostic.primary().expect("primary").span;
        assert_eq!(&text[span.offset..span.end()], label, "{model}");
    }

    // Blocks whose calls multiply past any integer are refused at once too.
    let mut text = String::from("input: 8x8x3\nblocks:\n");
    for idx in 0..30 {
        text.push_str(&format!(
            "  {}: {} x1000\n",
            block_name(idx),
            block_name(idx + 1)
        ));
    }
    text.push_str(&format!("  {}: conv1(3)\n", block_name(30)));
    text.push_str(&format!(
        "model: {} -> gap -> dense2 softmax\n",
        block_name(0)
    ));
    let start = Instant::now();
    let compiled = strata::compile(&text, "explode");
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(compiled.diagnostics.len(), 1, "{:?}", compiled.diagnostics);
    assert_eq!(
        compiled.diagnostics[0].message,
        "the model expands to more than 18 quintillion layers layers, more than the limit of 10000"
            .replace("layers layers", "layers")
    );
}

#[test]
fn recursive_blocks_are_refused_without_expanding() {
    for (blocks, message) in [
        (
            "deeper(f): conv3(f) -> deeper(f*2)",
            "block `deeper` calls itself",
        ),
        (
            "ping: conv1(3) -> pong\n  pong: add(identity, ping)",
            "block `ping` calls itself through `pong`",
        ),
        (
            "a: b\n  b: c\n  c: d x3\n  d: a",
            "block `a` calls itself through `b`, `c` or `d`",
        ),
    ] {
        let first = blocks
            .split(':')
            .next()
            .unwrap_or("")
            .split('(')
            .next()
            .unwrap_or("")
            .to_string();
        let text = format!(
            "input: 8x8x3\nblocks:\n  {blocks}\nmodel: {first}{} -> gap -> dense2 softmax\n",
            if first == "deeper" { "(3)" } else { "" }
        );
        let compiled = check_case(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
        let recursion: Vec<_> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.code == codes::BLOCK_RECURSION)
            .collect();
        assert_eq!(recursion.len(), 1, "{text}\n{:?}", compiled.diagnostics);
        assert_eq!(recursion[0].message, message);
    }
}
