//! The graph language end to end, through `strata::compile` and the summary: merges and their
//! shape rules, nesting, groups and repeats inside branches, blocks with parameters and
//! expressions, repeats and suffix activations of calls, the IR's invariants on every spec,
//! summaries of models whose head is wrong, checked arithmetic, and the diagnostics of block
//! calls and quick fixes.
//!
//! Tests named `known_bug_…` assert today's wrong behaviour, with a `FIXME:` saying what it
//! should be; they fail once the bug is fixed, to be flipped then.

use crate::common;

use std::collections::HashSet;
use std::process::Command;
use strata::compile::shapes::{merge_shape, output_shape, params};
use strata::diagnostics::{codes, Diagnostic};
use strata::ir::{Activation, FrameKind, Layer, MergeKind, Model, Op, Padding, Shape, Source};
use strata::summary::{render_table, to_json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn image(height: usize, width: usize, channels: usize) -> Shape {
    Shape::Image {
        height,
        width,
        channels,
    }
}

/// A spec with `input`, the blocks (one `signature: body` per line) and `model`.
fn spec(input: &str, blocks: &str, model: &str) -> String {
    let mut text = format!("input: {input}\n");
    let lines: Vec<&str> = blocks
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if !lines.is_empty() {
        text.push_str("blocks:\n");
        for line in lines {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str("model: ");
    text.push_str(model);
    text.push('\n');
    text
}

fn describe(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("{} {}: {}", d.severity, d.code, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The model of `text`, which must compile without errors; its IR invariants are checked.
fn clean(text: &str) -> Model {
    let compiled = strata::compile(text, "graph");
    assert!(
        !compiled.has_errors(),
        "{text}\n{}",
        describe(&compiled.diagnostics)
    );
    let model = compiled.model.expect("model");
    if let Err(problem) = check_model(&model) {
        panic!("{text}\n{problem}");
    }
    model
}

/// The errors of `text`, which must have some.
fn errors_of(text: &str) -> Vec<Diagnostic> {
    let compiled = strata::compile(text, "graph");
    let errors: Vec<Diagnostic> = compiled
        .diagnostics
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    assert!(!errors.is_empty(), "{text}: no error");
    errors
}

/// The characters of `text` a label covers.
fn covered(text: &str, span: strata::diagnostics::Span) -> &str {
    &text[span.offset..span.end()]
}

fn primary_text<'a>(text: &'a str, diagnostic: &Diagnostic) -> &'a str {
    covered(text, diagnostic.primary().expect("primary label").span)
}

fn layers_of(model: &Model, pred: impl Fn(&Layer) -> bool) -> Vec<&Layer> {
    model.layers.iter().filter(|layer| pred(layer)).collect()
}

fn is_conv(layer: &Layer) -> bool {
    matches!(layer.op, Op::Conv { .. })
}

fn is_merge(layer: &Layer) -> bool {
    matches!(layer.op, Op::Merge(_))
}

fn source_of(layer: &Layer, input: usize) -> Source {
    layer.inputs[input].source
}

// ---------------------------------------------------------------------------------------------
// IR invariants
// ---------------------------------------------------------------------------------------------

/// Structural invariants of inferred layers (a whole model or the part shape inference got
/// through): positions, inputs before the layer, edge shapes equal to their producers', each
/// op's shape rule and parameter count.
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
                    "{at}: edge from {:?} is {} but its producer outputs {produced}",
                    edge.source, edge.shape
                ));
            }
        }
        if layer.input() != layer.inputs[0].shape {
            return Err(format!("{at}: input() is not the first edge's shape"));
        }
        let shapes: Vec<Shape> = layer.inputs.iter().map(|edge| edge.shape).collect();
        match layer.op {
            Op::Merge(kind) => {
                if shapes.len() < 2 {
                    return Err(format!("{at}: a merge of {} inputs", shapes.len()));
                }
                if merge_shape(kind, &shapes) != Ok(layer.output) {
                    return Err(format!(
                        "{at}: {kind:?} of {shapes:?} is not {}",
                        layer.output
                    ));
                }
                check_merge_rule(kind, &shapes, layer.output)
                    .map_err(|why| format!("{at}: {why}"))?;
            }
            op => {
                if shapes.len() != 1 {
                    return Err(format!("{at}: {} inputs", shapes.len()));
                }
                if output_shape(&op, shapes[0]) != Ok(layer.output) {
                    return Err(format!(
                        "{at}: {op:?} on {} does not give {}",
                        shapes[0], layer.output
                    ));
                }
            }
        }
        if params(&layer.op, layer.input()) != Ok(layer.params) {
            return Err(format!("{at}: parameters {:?}", layer.params));
        }
        if layer.origin.implicit && matches!(layer.op, Op::Flatten) {
            let next = layers.get(idx + 1);
            if !next.is_some_and(|next| {
                matches!(next.op, Op::Dense { .. }) && next.inputs[0].source == Source::Layer(idx)
            }) {
                return Err(format!(
                    "{at}: an implicit flatten not read by a dense layer"
                ));
            }
        }
    }
    Ok(())
}

/// The merge rules written out, independently of `merge_shape`.
fn check_merge_rule(kind: MergeKind, inputs: &[Shape], output: Shape) -> Result<(), String> {
    match kind {
        MergeKind::Add => {
            if inputs.iter().any(|shape| *shape != output) {
                return Err(format!("add of {inputs:?} gives {output}"));
            }
        }
        MergeKind::Concat => {
            let total: usize = inputs.iter().map(Shape::features).sum();
            let same_kind = inputs.iter().all(|shape| match (shape, output) {
                (
                    Shape::Image { height, width, .. },
                    Shape::Image {
                        height: h,
                        width: w,
                        ..
                    },
                ) => (*height, *width) == (h, w),
                (Shape::Flat(_), Shape::Flat(_)) => true,
                _ => false,
            });
            if !same_kind || output.features() != total {
                return Err(format!("concat of {inputs:?} gives {output}"));
            }
        }
        MergeKind::Mul => {
            let any_image = inputs
                .iter()
                .any(|shape| matches!(shape, Shape::Image { .. }));
            let fits = inputs.iter().all(|shape| match shape {
                Shape::Image { .. } => *shape == output,
                Shape::Flat(n) => *n == output.features(),
            });
            if !fits || any_image != matches!(output, Shape::Image { .. }) {
                return Err(format!("mul of {inputs:?} gives {output}"));
            }
        }
    }
    Ok(())
}

/// Everything [`check_layers`] checks, plus: the last layer is the output (every other layer is
/// read by a later one, the last by none), names are unique, totals add up, and the summary's
/// JSON names only layers before each layer and its table has "Connected to" only for graphs.
fn check_model(model: &Model) -> Result<(), String> {
    check_layers(model.input, &model.layers)?;
    let n = model.layers.len();
    if n == 0 {
        return Err("no layers".into());
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
        return Err(format!(
            "layer {idx} `{}` is read by no later layer: the last layer is not the only output",
            model.layers[idx].name
        ));
    }
    if read[n - 1] {
        return Err("the last layer is read by another".into());
    }
    let mut names = HashSet::new();
    for layer in &model.layers {
        if !names.insert(layer.name.as_str()) {
            return Err(format!("two layers are called `{}`", layer.name));
        }
    }
    let (trainable, non_trainable) = model.layers.iter().fold((0, 0), |(t, n), layer| {
        (t + layer.params.trainable, n + layer.params.non_trainable)
    });
    if (trainable, non_trainable) != (model.params.trainable, model.params.non_trainable) {
        return Err(format!("totals {:?}", model.params));
    }
    if model.is_chain() != model.layers.iter().all(Layer::reads_previous) {
        return Err("is_chain disagrees with reads_previous".into());
    }
    let json = to_json(model);
    if json.layers.len() != n {
        return Err("the JSON summary has another number of layers".into());
    }
    let mut known: HashSet<&str> = HashSet::from(["input"]);
    for layer in &json.layers {
        for input in &layer.inputs {
            if !known.contains(input.as_str()) {
                return Err(format!(
                    "JSON: `{}` reads `{input}`, which is not an earlier layer",
                    layer.name
                ));
            }
        }
        known.insert(&layer.name);
    }
    if json.total_params != model.params.total() {
        return Err("JSON total".into());
    }
    let table = render_table(model);
    if table.contains("Connected to") == model.is_chain() {
        return Err(format!(
            "\"Connected to\" {} for a {}",
            if model.is_chain() { "shown" } else { "missing" },
            if model.is_chain() { "chain" } else { "graph" }
        ));
    }
    // Between the two `═` rules: the input row and one row per layer.
    let rows = table
        .lines()
        .skip_while(|line| !line.starts_with('═'))
        .skip(1)
        .take_while(|line| !line.starts_with('═'))
        .count();
    if rows != n + 1 {
        return Err(format!("{rows} table rows for {n} layers:\n{table}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Merges
// ---------------------------------------------------------------------------------------------

#[test]
fn each_merge_follows_its_shape_rule() {
    // (input, model, the last merge's output or `None` for a mismatch)
    let cases: &[(&str, &str, Option<Shape>)] = &[
        // add: one shape
        ("8x8x3", "add(identity, conv3(3, pad=same)) -> gap -> dense2 softmax", Some(image(8, 8, 3))),
        ("8x8x3", "add(identity, conv3(3, pad=same), conv1(3) -> bn, identity) -> gap -> dense2 softmax", Some(image(8, 8, 3))),
        ("8x8x3", "gap -> add(dense4, dense4 relu) -> dense2 softmax", Some(Shape::Flat(4))),
        ("8x8x3", "add(identity, conv3(4, pad=same)) -> gap -> dense2 softmax", None),
        ("8x8x3", "add(identity, pool2) -> gap -> dense2 softmax", None),
        ("8x8x3", "add(identity, gap) -> gap -> dense2 softmax", None),
        // concat: channels of one height and width, or flat lengths
        ("8x8x3", "concat(identity, conv3(5, pad=same)) -> gap -> dense2 softmax", Some(image(8, 8, 8))),
        ("8x8x3", "concat(identity, conv3(5, pad=same), pool3(stride=1, pad=same), conv1(2)) -> gap -> dense2 softmax", Some(image(8, 8, 13))),
        ("8x8x3", "conv3(4, stride=2) -> concat(identity, dwconv3(pad=same, multiplier=2)) -> gap -> dense2 softmax", Some(image(3, 3, 12))),
        ("8x8x3", "gap -> concat(identity, dense5, dense2) -> dense2 softmax", Some(Shape::Flat(10))),
        ("8x8x3", "concat(flatten, gap) -> dense2 softmax", Some(Shape::Flat(195))),
        ("8x8x3", "concat(identity, pool2) -> gap -> dense2 softmax", None),
        ("8x8x3", "concat(identity, gap) -> dense2 softmax", None),
        ("8x8x3", "concat(gap, identity) -> dense2 softmax", None),
        // mul: one shape, or an image times a per-channel vector, in either order
        ("8x8x3", "mul(identity, conv1(3)) -> gap -> dense2 softmax", Some(image(8, 8, 3))),
        ("8x8x3", "mul(identity, gap -> dense3 sigmoid) -> gap -> dense2 softmax", Some(image(8, 8, 3))),
        ("8x8x3", "mul(gap -> dense3 sigmoid, identity) -> gap -> dense2 softmax", Some(image(8, 8, 3))),
        ("8x8x3", "mul(gap -> dense3 sigmoid, identity, gap) -> gap -> dense2 softmax", Some(image(8, 8, 3))),
        ("8x8x3", "gap -> mul(identity, dense3 sigmoid) -> dense2 softmax", Some(Shape::Flat(3))),
        ("8x8x3", "mul(identity, gap -> dense4 sigmoid) -> gap -> dense2 softmax", None),
        ("8x8x3", "mul(gap -> dense4 sigmoid, identity) -> gap -> dense2 softmax", None),
        ("8x8x3", "mul(identity, conv1(4)) -> gap -> dense2 softmax", None),
        ("8x8x3", "mul(identity, pool2) -> gap -> dense2 softmax", None),
        ("8x8x3", "gap -> mul(identity, dense4) -> dense2 softmax", None),
    ];
    for (input, model_text, expected) in cases {
        let text = spec(input, "", model_text);
        match expected {
            Some(shape) => {
                let model = clean(&text);
                let merge = model
                    .layers
                    .iter()
                    .rev()
                    .find(|layer| is_merge(layer))
                    .expect("a merge");
                assert_eq!(merge.output, *shape, "{model_text}");
                assert!(!model.is_chain(), "{model_text}: a merge makes a graph");
            }
            None => {
                let errors = errors_of(&text);
                assert_eq!(errors.len(), 1, "{model_text}\n{}", describe(&errors));
                let diagnostic = &errors[0];
                assert_eq!(diagnostic.code, codes::SHAPE_MISMATCH, "{model_text}");
                let merge_name = model_text
                    .split(" -> ")
                    .find_map(|stage| {
                        ["add(", "concat(", "mul("]
                            .into_iter()
                            .find(|m| stage.starts_with(m))
                    })
                    .expect("a merge in the case")
                    .trim_end_matches('(');
                assert_eq!(primary_text(&text, diagnostic), merge_name, "{model_text}");
                assert!(
                    diagnostic.message.starts_with(&format!("`{merge_name}`")),
                    "{}",
                    diagnostic.message
                );
                // One label per branch, with the shape it ends in.
                let branch_labels: Vec<&str> = diagnostic
                    .labels
                    .iter()
                    .filter(|label| label.message.starts_with("branch "))
                    .map(|label| label.message.as_str())
                    .collect();
                assert!(branch_labels.len() >= 2, "{model_text}: {branch_labels:?}");
                for (idx, label) in branch_labels.iter().enumerate() {
                    assert!(
                        label.starts_with(&format!("branch {} ends in ", idx + 1)),
                        "{label}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_mismatch_labels_each_branch_at_its_characters() {
    let text = spec("32x32x3", "", "conv3(16, pad=same) -> add(identity, conv3(32, stride=2, pad=same) -> bn) relu -> gap -> dense10 softmax");
    let errors = errors_of(&text);
    let diagnostic = &errors[0];
    assert_eq!(diagnostic.code, codes::SHAPE_MISMATCH);
    let branches: Vec<(&str, &str)> = diagnostic
        .labels
        .iter()
        .filter(|label| !label.primary)
        .map(|label| (covered(&text, label.span), label.message.as_str()))
        .collect();
    assert_eq!(
        branches,
        vec![
            ("identity", "branch 1 ends in 32x32x16"),
            (
                "conv3(32, stride=2, pad=same) -> bn",
                "branch 2 ends in 16x16x32"
            ),
        ]
    );
}

#[test]
fn merges_nest_and_every_branch_starts_from_the_merge_input() {
    // 0 conv, 1 identity, 2 conv1(1), 3 conv1(2), 4 concat, 5 bn, 6 add, 7 gap, 8 dense
    let model = clean(&spec(
        "8x8x3",
        "",
        "conv1(3) -> add(identity, concat(conv1(1), conv1(2)) -> bn) relu -> gap -> dense2 softmax",
    ));
    let sources: Vec<Vec<Source>> = model
        .layers
        .iter()
        .map(|layer| layer.inputs.iter().map(|edge| edge.source).collect())
        .collect();
    use Source::{Input, Layer as L};
    assert_eq!(
        sources,
        vec![
            vec![Input],
            vec![L(0)],
            vec![L(0)],
            vec![L(0)],
            vec![L(2), L(3)],
            vec![L(4)],
            vec![L(1), L(5)],
            vec![L(6)],
            vec![L(7)],
        ]
    );
    assert_eq!(model.layers[4].op, Op::Merge(MergeKind::Concat));
    assert_eq!(model.layers[4].output, image(8, 8, 3));
    assert_eq!(model.layers[6].activation, Some(Activation::Relu));
    assert_eq!(model.layers[6].name, "add");

    // Three levels: mul(identity, add(identity, concat(…) -> conv) -> gap -> dense sigmoid).
    let model = clean(&spec(
        "8x8x3",
        "",
        "mul(identity, add(identity, concat(identity, identity, conv1(2)) -> conv1(3)) -> gap -> dense3 sigmoid) -> concat(identity, mul(identity, identity)) -> gap -> dense2 softmax",
    ));
    let merges: Vec<(MergeKind, Shape)> = model
        .layers
        .iter()
        .filter_map(|layer| match layer.op {
            Op::Merge(kind) => Some((kind, layer.output)),
            _ => None,
        })
        .collect();
    assert_eq!(
        merges,
        vec![
            (MergeKind::Concat, image(8, 8, 8)),
            (MergeKind::Add, image(8, 8, 3)),
            (MergeKind::Mul, image(8, 8, 3)),
            (MergeKind::Mul, image(8, 8, 3)),
            (MergeKind::Concat, image(8, 8, 6)),
        ]
    );
}

#[test]
fn groups_and_repeats_work_inside_branches() {
    // A repeated group in a branch: three conv -> bn pairs, chained.
    let model = clean(&spec(
        "8x8x3",
        "",
        "add(identity, (conv3(3, pad=same) -> bn relu)x3) -> gap -> dense2 softmax",
    ));
    let convs = layers_of(&model, is_conv);
    assert_eq!(convs.len(), 3);
    for (idx, conv) in convs.iter().enumerate() {
        let frame = conv.origin.frames.last().expect("a repeat frame");
        assert_eq!(frame.kind, FrameKind::Repeat);
        assert_eq!((frame.repetition, frame.count), (idx + 1, 3));
    }
    assert_eq!(source_of(convs[1], 0), Source::Layer(convs[0].index + 1));
    assert_eq!(source_of(convs[2], 0), Source::Layer(convs[1].index + 1));
    let add = layers_of(&model, is_merge)[0];
    assert_eq!(source_of(add, 1), Source::Layer(convs[2].index + 1));

    // A repeated call in a branch.
    let model = clean(&spec(
        "8x8x3",
        "",
        "concat(identity, conv1(2)x3, conv1(1) relu) -> gap -> dense2 softmax",
    ));
    assert_eq!(layers_of(&model, is_conv).len(), 4);
    assert_eq!(layers_of(&model, is_merge)[0].output, image(8, 8, 6));

    // A repeated merge: each copy has its own branch layers and reads the one before.
    let model = clean(&spec(
        "8x8x3",
        "",
        "add(identity, conv1(3))x3 relu -> gap -> dense2 softmax",
    ));
    let adds = layers_of(&model, is_merge);
    assert_eq!(adds.len(), 3);
    assert_eq!(layers_of(&model, is_conv).len(), 3);
    for pair in adds.windows(2) {
        // The next add's identity reads this add.
        let identity = &model.layers[match source_of(pair[1], 0) {
            Source::Layer(idx) => idx,
            Source::Input => panic!("reads the input"),
        }];
        assert_eq!(identity.op, Op::Identity);
        assert_eq!(source_of(identity, 0), Source::Layer(pair[0].index));
    }
    for add in adds {
        assert_eq!(add.activation, Some(Activation::Relu));
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------------------------

fn conv_args(layer: &Layer) -> (usize, (usize, usize), (usize, usize)) {
    match layer.op {
        Op::Conv {
            filters,
            kernel,
            stride,
            ..
        } => (filters, kernel, stride),
        other => panic!("not a conv: {other:?}"),
    }
}

#[test]
fn block_calls_take_positional_named_and_default_arguments_and_expressions() {
    let model = clean(&spec(
        "32x32x3",
        "unit(f, k=3, s=1): conv(f, kernel=k, stride=s, pad=same) -> bn",
        "unit(8) -> unit(8, 5) -> unit(f=16, s=2) -> unit(4*2, k=1+2) -> unit((6+10)/2, s=4/2) -> unit(s=1, k=1, f=2*(3-1)) -> gap -> dense2 softmax",
    ));
    let convs: Vec<_> = layers_of(&model, is_conv)
        .into_iter()
        .map(conv_args)
        .collect();
    assert_eq!(
        convs,
        vec![
            (8, (3, 3), (1, 1)),
            (8, (5, 5), (1, 1)),
            (16, (3, 3), (2, 2)),
            (8, (3, 3), (1, 1)),
            (8, (3, 3), (2, 2)),
            (4, (1, 1), (1, 1)),
        ]
    );
    let last_conv = layers_of(&model, is_conv)[5];
    assert_eq!(last_conv.output, image(8, 8, 4));

    // Defaults computed from earlier parameters, divisions in the body, words as arguments.
    let model = clean(&spec(
        "16x16x3",
        "wide(f, e=f*4, act=relu, pad=same): conv1(e) -> bn act -> conv3(f, pad=pad)
         se(c, r=4): mul(identity, gap -> dense(c/r) relu -> dense(c) sigmoid)",
        "conv1(16) -> wide(8) -> se(8) -> wide(6, act=gelu, pad=valid) -> se(6, r=3) -> se(c=6, r=2) -> gap -> dense2 softmax",
    ));
    let convs: Vec<_> = layers_of(&model, is_conv)
        .into_iter()
        .map(conv_args)
        .collect();
    assert_eq!(convs[1].0, 32);
    assert_eq!(convs[3].0, 24);
    let dense_units: Vec<usize> = model
        .layers
        .iter()
        .filter_map(|layer| match layer.op {
            Op::Dense { units, .. } => Some(units),
            _ => None,
        })
        .collect();
    assert_eq!(dense_units, vec![2, 8, 2, 6, 3, 6, 2]);
    let bns: Vec<Option<Activation>> = model
        .layers
        .iter()
        .filter(|layer| matches!(layer.op, Op::BatchNorm { .. }))
        .map(|layer| layer.activation)
        .collect();
    assert_eq!(bns, vec![Some(Activation::Relu), Some(Activation::Gelu)]);
    let pads: Vec<Padding> = model
        .layers
        .iter()
        .filter_map(|layer| match layer.op {
            Op::Conv {
                kernel: (3, 3),
                pad,
                ..
            } => Some(pad),
            _ => None,
        })
        .collect();
    assert_eq!(pads, vec![Padding::Same, Padding::Valid]);
}

#[test]
fn blocks_may_call_blocks_declared_later() {
    let model = clean(&spec(
        "8x8x3",
        "outer(f, k=3): inner(f*2, k=k) -> middle(f/2 + 1)
         middle(c): inner(c) relu
         inner(c, k=1): conv(c, kernel=k, pad=same) -> bn",
        "outer(4, k=5) -> outer(2) -> gap -> dense2 softmax",
    ));
    let convs: Vec<_> = layers_of(&model, is_conv)
        .into_iter()
        .map(conv_args)
        .collect();
    assert_eq!(
        convs,
        vec![
            (8, (5, 5), (1, 1)),
            (3, (1, 1), (1, 1)),
            (4, (3, 3), (1, 1)),
            (2, (1, 1), (1, 1)),
        ]
    );
    // The innermost conv records every call that led to it, outermost first.
    let blocks: Vec<String> = layers_of(&model, is_conv)[1]
        .origin
        .frames
        .iter()
        .map(|frame| match &frame.kind {
            FrameKind::Call { block } => block.clone(),
            FrameKind::Repeat => "repeat".to_string(),
        })
        .collect();
    assert_eq!(blocks, vec!["outer", "middle", "inner"]);
}

#[test]
fn a_repeated_block_call_makes_distinct_layers_with_their_own_weights() {
    let model = clean(&spec(
        "8x8x3",
        "unit(f): conv3(f, pad=same) -> bn",
        "unit(8)x3 -> gap -> dense2 softmax",
    ));
    let convs = layers_of(&model, is_conv);
    assert_eq!(convs.len(), 3);
    let names: Vec<&str> = convs.iter().map(|layer| layer.name.as_str()).collect();
    assert_eq!(names, vec!["conv", "conv_1", "conv_2"]);
    for (idx, conv) in convs.iter().enumerate() {
        let frame = &conv.origin.frames[0];
        assert_eq!(
            frame.kind,
            FrameKind::Call {
                block: "unit".to_string()
            }
        );
        assert_eq!((frame.repetition, frame.count), (idx + 1, 3));
        assert_eq!(
            conv.params.total(),
            if idx == 0 {
                3 * 9 * 8 + 8
            } else {
                8 * 9 * 8 + 8
            }
        );
    }
    assert_eq!(source_of(convs[1], 0), Source::Layer(convs[0].index + 1));
    // Distinct weights: each copy has its own checkpoint tensors.
    let tensors = strata::backend::checkpoint::expected_tensors(&model);
    let weights: Vec<&str> = tensors
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.ends_with(".weight"))
        .collect();
    assert_eq!(
        weights,
        vec![
            "layers.0.weight",
            "layers.2.weight",
            "layers.4.weight",
            "layers.7.weight"
        ]
    );
}

#[test]
fn a_suffix_activation_after_a_repeated_stage_applies_to_each_copy() {
    let model = clean(&spec(
        "8x8x3",
        "",
        "conv3(8, pad=same)x3 relu -> add(identity, conv1(8))x2 gelu -> gap -> dense2 softmax",
    ));
    let activations: Vec<(String, Option<Activation>)> = model
        .layers
        .iter()
        .filter(|layer| is_conv(layer) || is_merge(layer))
        .map(|layer| (layer.name.clone(), layer.activation))
        .collect();
    assert_eq!(
        activations,
        vec![
            ("conv".to_string(), Some(Activation::Relu)),
            ("conv_1".to_string(), Some(Activation::Relu)),
            ("conv_2".to_string(), Some(Activation::Relu)),
            ("conv_3".to_string(), None),
            ("add".to_string(), Some(Activation::Gelu)),
            ("conv_4".to_string(), None),
            ("add_1".to_string(), Some(Activation::Gelu)),
        ]
    );
    assert!(
        !model
            .layers
            .iter()
            .any(|layer| matches!(layer.op, Op::Activation(_))),
        "a suffix on a layer or merge is not a layer of its own"
    );
}

#[test]
fn a_suffix_activation_after_a_block_call_is_its_own_layer() {
    let model = clean(&spec(
        "8x8x3",
        "unit(f): conv3(f, pad=same) -> bn",
        "unit(8) relu -> unit(8)x2 tanh -> gap -> dense2 softmax",
    ));
    let kinds: Vec<String> = model
        .layers
        .iter()
        .map(|layer| {
            let activation = layer
                .activation
                .map(|activation| format!(" {}", activation.name()))
                .unwrap_or_default();
            format!("{}{activation}", layer.name)
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "conv",
            "bn",
            "relu",
            "conv_1",
            "bn_1",
            "tanh",
            "conv_2",
            "bn_2",
            "tanh_1",
            "gap",
            "dense softmax"
        ]
    );
    let relu = &model.layers[2];
    assert_eq!(relu.op, Op::Activation(Activation::Relu));
    assert_eq!(relu.inputs[0].source, Source::Layer(1));
    assert_eq!(relu.origin.text, "relu");
    // The second copy's activation belongs to the second call.
    let tanh = &model.layers[8];
    let frame = &tanh.origin.frames[0];
    assert_eq!((frame.repetition, frame.count), (2, 2));
}

// ---------------------------------------------------------------------------------------------
// IR invariants and summaries of every spec
// ---------------------------------------------------------------------------------------------

#[test]
fn every_spec_satisfies_the_ir_invariants() {
    let files = common::yaml_files(&common::root().join("specs"));
    assert!(files.len() >= 15, "{} specs", files.len());
    let mut n_graphs = 0;
    for path in files {
        let name = common::relative(&path);
        let text = std::fs::read_to_string(&path).expect("spec readable");
        let compiled = strata::compile(&text, "spec");
        let model = compiled
            .model
            .unwrap_or_else(|| panic!("{name}: {}", describe(&compiled.diagnostics)));
        if let Err(problem) = check_model(&model) {
            panic!("{name}: {problem}");
        }
        n_graphs += usize::from(!model.is_chain());
    }
    assert!(n_graphs >= 10, "only {n_graphs} graph specs");
}

#[test]
fn connected_to_is_shown_for_graphs_only() {
    let chain = clean(&spec(
        "8x8x3",
        "",
        "conv3(4) relu -> (bn -> conv1(4))x2 -> dense2 softmax",
    ));
    assert!(chain.is_chain());
    assert!(!render_table(&chain).contains("Connected to"));
    let graph = clean(&spec(
        "8x8x3",
        "",
        "conv3(4) -> add(identity, conv1(4)) -> dense2 softmax",
    ));
    assert!(!graph.is_chain());
    let table = render_table(&graph);
    assert!(table.contains("Connected to"), "{table}");
    let add_row = table
        .lines()
        .find(|line| line.starts_with("add (Add)"))
        .expect("add row");
    assert!(add_row.contains("identity, conv_1"), "{add_row}");
    let json = serde_json::to_value(to_json(&graph)).expect("json");
    assert_eq!(
        json["layers"][3]["inputs"],
        serde_json::json!(["identity", "conv_1"])
    );
    assert_eq!(json["layers"][0]["inputs"], serde_json::json!(["input"]));
}

#[test]
fn a_model_whose_head_is_wrong_still_has_a_summary() {
    let text = spec(
        "16x16x3",
        "unit(f): conv3(f, pad=same) -> bn",
        "conv3(8) -> add(identity, unit(8)) -> gap -> dense4",
    );
    let compiled = strata::compile(&text, "headless");
    assert!(compiled.has_errors());
    assert!(compiled.model.is_none());
    assert_eq!(
        compiled
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
        vec![codes::MODEL_HEAD]
    );
    let model = compiled.summary_model().expect("a summary model");
    assert_eq!(model.classes, 0);
    assert_eq!(model.layers.len(), 7);
    assert_eq!(model.params.total(), 224 + 584 + 32 + 36);
    check_layers(model.input, &model.layers).expect("invariants");
    let table = render_table(&model);
    assert!(table.contains("Connected to"), "{table}");
    assert!(table.contains("Total params: 876"), "{table}");

    // A model whose shapes do not all check has no summary.
    let broken = spec(
        "16x16x3",
        "",
        "conv3(8) -> add(identity, pool2) -> gap -> dense2 softmax",
    );
    assert!(strata::compile(&broken, "broken").summary_model().is_none());

    // The binary: the table on stdout, then the error on stderr; exit 1.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("headless.yaml");
    std::fs::write(&path, &text).expect("write spec");
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("summary")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("run strata");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.starts_with("Model: \"headless\""), "{stdout}");
    assert!(
        stdout.contains("Connected to") && stdout.contains("Total params: 876"),
        "{stdout}"
    );
    assert!(stderr.contains("strata::model::head"), "{stderr}");
    assert!(stderr.contains("does not end in softmax"), "{stderr}");
    // With --format json both go to stdout: the summary first, then the diagnostic.
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["summary", "--format", "json"])
        .arg(&path)
        .output()
        .expect("run strata");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["total_params"], 876);
    assert_eq!(lines[1]["code"], "strata::model::head");
}

// ---------------------------------------------------------------------------------------------
// Checked arithmetic
// ---------------------------------------------------------------------------------------------

#[test]
fn huge_inputs_are_invalid_values_not_panics() {
    for input in [
        "100000x100000x3",
        "4294967296x4294967296x3",
        "[4294967296, 4294967296, 3]",
    ] {
        let text = spec(input, "", "gap -> dense2 softmax");
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{input}: {}", describe(&errors));
        assert_eq!(errors[0].code, codes::SPEC_INVALID_VALUE, "{input}");
        assert_eq!(primary_text(&text, &errors[0]), input, "{input}");
        assert!(
            errors[0].message.contains("more than the limit"),
            "{}",
            errors[0].message
        );
    }
}

#[test]
fn layers_with_too_many_parameters_are_errors_not_wrapped_counts() {
    for model in [
        "conv65536(16777216, pad=same) -> gap -> dense2 softmax",
        "conv(filters=16777216, kernel=65536x65536, pad=same) -> gap -> dense2 softmax",
        "sepconv65536(16777216, pad=same) -> gap -> dense2 softmax",
        "dense16777216 -> dense2 softmax",
        "conv1(16777216) -> gap -> dense2 softmax",
        "concat(conv1(16777216), conv1(16777216)) -> gap -> dense2 softmax",
    ] {
        let text = spec("16x16x3", "", model);
        let compiled = strata::compile(&text, "huge");
        let errors: Vec<&Diagnostic> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{model}: {}",
            describe(&compiled.diagnostics)
        );
        assert_eq!(errors[0].code, codes::SHAPE_VANISHED, "{model}");
        assert!(
            errors[0]
                .message
                .contains("more than 2147483648 values or parameters"),
            "{model}: {}",
            errors[0].message
        );
        for layer in &compiled.layers {
            assert!(
                layer.params.total() <= 1 << 31,
                "{model}: {} has {:?}",
                layer.name,
                layer.params
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Diagnostics of block calls and repeats
// ---------------------------------------------------------------------------------------------

#[test]
fn a_shape_error_inside_a_block_labels_the_body_and_the_call() {
    let text = spec(
        "16x16x3",
        "shrink(f): conv3(f, pad=same) -> maxpool(size=4)",
        "conv3(8, pad=same) -> shrink(8)x3 -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{}", describe(&errors));
    let diagnostic = &errors[0];
    assert_eq!(diagnostic.code, codes::SHAPE_VANISHED);
    let primary = diagnostic.primary().expect("primary");
    let body_start = text.find("conv3(f").expect("body");
    assert!(
        primary.span.offset > body_start
            && primary.span.offset < text.find("model:").expect("model")
    );
    assert_eq!(covered(&text, primary.span), "maxpool(size=4)");
    let call = diagnostic
        .labels
        .iter()
        .find(|label| !label.primary)
        .expect("a label on the call");
    assert_eq!(covered(&text, call.span), "shrink(8)");
    assert_eq!(call.message, "in `shrink(8)`, called here (call 3 of 3)");
    assert!(
        diagnostic
            .message
            .starts_with("`maxpool(size=4)` in `shrink(8)`, call 3 of 3"),
        "{}",
        diagnostic.message
    );
    assert!(
        diagnostic.message.contains("gets 1x1x8"),
        "{}",
        diagnostic.message
    );
    assert_eq!(
        diagnostic.message,
        "`maxpool(size=4)` in `shrink(8)`, call 3 of 3, gets 1x1x8 and would output 0x0"
    );
}

#[test]
fn an_argument_error_inside_a_block_labels_the_call() {
    let text = spec(
        "16x16x3",
        "se(c, r=16): mul(identity, gap -> dense(c/r) relu -> dense(c) sigmoid)",
        "conv1(64) -> se(64) -> se(64, r=3) -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{}", describe(&errors));
    let diagnostic = &errors[0];
    assert_eq!(diagnostic.code, codes::LAYER_ARGUMENT);
    assert_eq!(primary_text(&text, diagnostic), "c/r");
    assert!(diagnostic
        .primary()
        .expect("primary")
        .message
        .contains("64/3"));
    let secondary: Vec<&str> = diagnostic
        .labels
        .iter()
        .filter(|label| !label.primary)
        .map(|label| covered(&text, label.span))
        .collect();
    assert!(secondary.contains(&"se(64, r=3)"), "{secondary:?}");
}

#[test]
fn nested_repeats_name_their_groups() {
    let text = spec(
        "8x8x3",
        "",
        "((conv3(8, pad=same) -> pool2)x2)x2 -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    let diagnostic = &errors[0];
    assert_eq!(diagnostic.code, codes::SHAPE_VANISHED);
    assert_eq!(
        diagnostic.message,
        "`pool2` in repetition 2 of 2 of `(conv3(8, pad=same) -> pool2)x2`, in repetition 2 of 2 of `((conv3(8, pad=same) -> pool2)x2)x2`, gets 1x1x8 and would output 0x0"
    );
    let repeats: Vec<&str> = diagnostic
        .labels
        .iter()
        .filter(|label| label.message.starts_with("repeated 2 times here"))
        .map(|label| covered(&text, label.span))
        .collect();
    assert_eq!(repeats, vec!["x2", "x2"]);
    // A single repeat says only which repetition.
    let text = spec(
        "8x8x3",
        "",
        "(conv3(8, pad=same) -> pool2)x4 -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(
        errors[0].message,
        "`pool2` in repetition 4 of 4 gets 1x1x8 and would output 0x0"
    );
    // A repeat inside a repeated block call names both.
    let text = spec(
        "8x8x3",
        "down: (conv3(8, pad=same) -> pool2)x2",
        "down x2 -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(
        errors[0].message,
        "`pool2` in repetition 2 of 2, in `down`, call 2 of 2, gets 1x1x8 and would output 0x0"
    );
    let text = spec(
        "8x8x3",
        "down: (conv3(8, pad=same) -> pool2)x2",
        "down -> down -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(
        errors[0].message,
        "`pool2` in repetition 2 of 2, in `down`, gets 1x1x8 and would output 0x0"
    );
    let call = errors[0]
        .labels
        .iter()
        .find(|label| label.message == "in `down`, called here")
        .expect("a label on the call");
    assert_eq!(
        call.span.offset,
        text.rfind("down -> gap").expect("second call")
    );
}

// ---------------------------------------------------------------------------------------------
// Quick fixes and lints
// ---------------------------------------------------------------------------------------------

#[test]
fn quick_fixes_are_offered_only_for_near_certain_typos() {
    // (spec, code, the help contains, the replacement if machine-applicable)
    let cases: &[(String, &str, &str, Option<&str>)] = &[
        (
            spec("16x16x3", "", "conv3(8, kernel_regularizer=l2) -> gap -> dense2 softmax"),
            codes::LAYER_ARGUMENT,
            "did you mean `kernel`?",
            None,
        ),
        (
            format!("{}train: {{ optimizer: nadam }}\n", spec("16x16x3", "", "conv3(8) -> gap -> dense2 softmax")),
            codes::SPEC_INVALID_VALUE,
            "did you mean `adam`?",
            None,
        ),
        (
            spec("16x16x3", "", "conv2d(8) -> gap -> dense2 softmax"),
            codes::LAYER_UNKNOWN,
            "strata calls it `conv`",
            None,
        ),
        (
            spec("16x16x3", "", "cnov3(8) -> gap -> dense2 softmax"),
            codes::LAYER_UNKNOWN,
            "did you mean `conv`?",
            Some("conv"),
        ),
        (
            "input: 16x16x3\ndefaults:\n  conv: { filter: 8 }\nmodel: conv3(8) -> gap -> dense2 softmax\n".to_string(),
            codes::LAYER_ARGUMENT,
            "did you mean `filters`?",
            Some("filters"),
        ),
        (
            spec("16x16x3", "", "conv3(8, pad=sane) -> gap -> dense2 softmax"),
            codes::LAYER_ARGUMENT,
            "did you mean `same`?",
            Some("same"),
        ),
        (
            spec("16x16x3", "unit(filters): conv3(filters)", "unit(filter=8) -> gap -> dense2 softmax"),
            codes::BLOCK_ARGUMENT,
            "did you mean `filters`?",
            Some("filters"),
        ),
    ];
    for (text, code, help, replacement) in cases {
        let compiled = strata::compile(text, "fix");
        let diagnostic = compiled
            .diagnostics
            .iter()
            .find(|d| d.code == *code && d.help.as_deref().is_some_and(|h| h.contains(help)))
            .unwrap_or_else(|| {
                panic!(
                    "{text}: no {code} with the help {help:?} in\n{}",
                    describe(&compiled.diagnostics)
                )
            });
        let got_help = diagnostic.help.as_deref().unwrap_or("");
        assert!(got_help.contains(help), "{text}: help {got_help:?}");
        match replacement {
            None => assert!(
                diagnostic.suggestions.is_empty(),
                "{text}: {:?}",
                diagnostic.suggestions
            ),
            Some(replacement) => {
                assert_eq!(diagnostic.suggestions.len(), 1, "{text}");
                let suggestion = &diagnostic.suggestions[0];
                assert_eq!(suggestion.replacement, *replacement);
                let fixed = format!(
                    "{}{}{}",
                    &text[..suggestion.span.offset],
                    suggestion.replacement,
                    &text[suggestion.span.end()..]
                );
                let after = strata::compile(&fixed, "fix");
                assert!(
                    !after.has_errors(),
                    "{fixed}\n{}",
                    describe(&after.diagnostics)
                );
            }
        }
    }
    // `relu6` is an activation now, not a typo of `relu`.
    let text = spec("16x16x3", "", "conv3(8) relu6 -> gap -> dense2 softmax");
    let model = clean(&text);
    assert_eq!(model.layers[0].activation, Some(Activation::Relu6));
    assert!(strata::compile(&text, "fix").diagnostics.is_empty());
}

#[test]
fn a_pytorch_order_conv_warns() {
    let text = spec("64x64x3", "", "conv(3, 32) -> gap -> dense2 softmax");
    let compiled = strata::compile(&text, "torch");
    assert!(!compiled.has_errors());
    assert_eq!(
        compiled.diagnostics.len(),
        1,
        "{}",
        describe(&compiled.diagnostics)
    );
    let warning = &compiled.diagnostics[0];
    assert_eq!(warning.code, codes::LINT_LARGE_POSITIONAL_KERNEL);
    assert_eq!(
        warning.message,
        "`conv(3, 32)` reads as 3 filters with a 32x32 kernel"
    );
    assert_eq!(primary_text(&text, warning), "32");
    let model = compiled.model.expect("model");
    assert_eq!(conv_args(&model.layers[0]), (3, (32, 32), (1, 1)));
    // Small kernels given by position are normal.
    assert!(strata::compile(
        &spec("64x64x3", "", "conv(32, 3) -> gap -> dense2 softmax"),
        "k"
    )
    .diagnostics
    .is_empty());
}

#[test]
fn a_comment_in_a_folded_model_warns() {
    let text = "input: 16x16x3\nmodel: >\n  conv3(8) relu   # first\n  -> gap -> dense2 softmax\n";
    let compiled = strata::compile(text, "folded");
    let lint = compiled
        .diagnostics
        .iter()
        .find(|d| d.code == codes::LINT_FOLDED_COMMENT)
        .unwrap_or_else(|| panic!("no folded_comment in\n{}", describe(&compiled.diagnostics)));
    assert_eq!(primary_text(text, lint), "-> gap -> dense2 softmax");
    let comment = lint
        .labels
        .iter()
        .find(|label| !label.primary)
        .expect("comment label");
    assert_eq!(covered(text, comment.span), "#");
    // In a literal block each line keeps its comment.
    let literal = text.replace("model: >", "model: |");
    assert!(strata::compile(&literal, "literal").diagnostics.is_empty());
    // The same in a block body.
    let text = "input: 16x16x3\nblocks:\n  unit(f): >\n    conv3(f) # one\n    -> bn\nmodel: unit(8) -> gap -> dense2 softmax\n";
    let compiled = strata::compile(text, "folded");
    assert!(
        compiled
            .diagnostics
            .iter()
            .any(|d| d.code == codes::LINT_FOLDED_COMMENT),
        "{}",
        describe(&compiled.diagnostics)
    );
}

// ---------------------------------------------------------------------------------------------
// Fixed bugs: found by this file, kept as regressions
// ---------------------------------------------------------------------------------------------

#[test]
fn a_block_named_with_digits_is_called_by_its_whole_name() {
    let text = spec(
        "8x8x3",
        "stage2(f): conv3(f, pad=same) -> bn",
        "stage2(8) -> gap -> dense2 softmax",
    );
    let model = clean(&text);
    assert_eq!(conv_args(&model.layers[0]).0, 8);
}

#[test]
fn a_failed_argument_is_not_reported_missing_too() {
    let text = spec(
        "8x8x3",
        "blk(f): conv1(f/0)",
        "blk(3) -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, vec!["division by zero"]);
    // The same for a block argument that is a chain instead of a value.
    let text = spec(
        "8x8x3",
        "blk(f): conv1(f)",
        "blk(conv1(3) -> bn) -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, vec!["`blk` takes values, not a chain of layers"]);
}

#[test]
fn a_whole_float_is_shown_as_a_float() {
    let text = spec(
        "8x8x3",
        "blk(f): conv1(f*1.5)",
        "blk(2) -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].primary().expect("primary").message,
        "`3.0` is not a whole number from 1 to 16777216"
    );
}

#[test]
fn a_parameter_used_only_in_a_default_is_used() {
    let text = spec(
        "8x8x3",
        "blk(f, g=f*2): conv1(g)",
        "blk(3) -> gap -> dense2 softmax",
    );
    let compiled = strata::compile(&text, "graph");
    let model = compiled.model.as_ref().expect("compiles");
    assert_eq!(conv_args(&model.layers[0]).0, 6, "`f` matters: g = f*2");
    assert!(
        compiled.diagnostics.is_empty(),
        "{}",
        describe(&compiled.diagnostics)
    );
}

#[test]
fn a_parameter_may_not_be_named_like_a_block() {
    // Inside `a`, a bare `b` could mean the parameter or the block `b`: refused at the
    // signature, and not mistaken for a recursion.
    let text = spec(
        "8x8x3",
        "a(b=relu): conv1(3) -> b
         b: a",
        "a -> gap -> dense2 softmax",
    );
    let errors = errors_of(&text);
    let codes_found: Vec<&str> = errors.iter().map(|d| d.code).collect();
    assert!(
        codes_found.contains(&codes::BLOCK_SIGNATURE),
        "{}",
        describe(&errors)
    );
    assert!(
        !codes_found.contains(&codes::BLOCK_RECURSION),
        "{}",
        describe(&errors)
    );
}

#[test]
fn the_class_count_of_a_merge_head_is_labelled_at_the_merge_without_a_fix() {
    for model in [
        "gap -> concat(dense1, dense1) softmax",
        "gap -> add(dense2, dense2) softmax",
    ] {
        let text = format!("input: 8x8x3\nclasses: 3\nmodel: {model}\n");
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{model}: {}", describe(&errors));
        let head = &errors[0];
        assert_eq!(
            head.message,
            "the last layer has 2 units but `classes` is 3"
        );
        let primary = head.primary().expect("primary");
        let merge = text
            .find(model.split(" -> ").nth(1).unwrap_or_default())
            .unwrap_or(0);
        assert_eq!(primary.span.offset, merge, "{model}");
        assert!(head.suggestions.is_empty(), "{model}");
    }
}

#[test]
fn a_comment_inside_a_call_is_not_part_of_its_text() {
    let text = "input: 8x8x3\nclasses: 2\nmodel: |\n  add(conv1(3) -> bn,   # the skip\n      identity) relu -> gap -> dense2 softmax\n";
    let model = clean(text);
    let add = layers_of(&model, is_merge)[0];
    assert_eq!(add.origin.text, "add(conv1(3) -> bn, identity)");
    assert!(!render_table(&model).contains("# the skip"));
}

#[test]
fn implicit_flattens_count_towards_the_layer_limit() {
    // Each copy is identity, dense, mul (3 layers counted) plus the flatten the dense needs.
    let text = spec(
        "8x8x3",
        "",
        "mul(identity, dense3 sigmoid)x3332 -> gap -> dense2 softmax",
    );
    let compiled = strata::compile(&text, "graph");
    let codes_found: Vec<&str> = compiled.diagnostics.iter().map(|d| d.code).collect();
    assert!(
        codes_found.contains(&codes::REPEAT_COUNT),
        "{}",
        describe(&compiled.diagnostics)
    );
    assert!(compiled.model.is_none());
}

#[test]
fn a_parenthesised_layer_is_a_branch() {
    clean(&spec(
        "8x8x3",
        "",
        "add(identity, (bn)) -> gap -> dense2 softmax",
    ));
    clean(&spec(
        "8x8x3",
        "",
        "add(identity, (bn)x1) -> gap -> dense2 softmax",
    ));
    clean(&spec(
        "8x8x3",
        "",
        "add(identity, (bn -> relu)) -> gap -> dense2 softmax",
    ));
    // A parenthesised expression followed by an operator stays a value.
    let model = clean(&spec(
        "8x8x3",
        "blk(f): conv1((f+1)*2)",
        "blk(3) -> gap -> dense2 softmax",
    ));
    assert_eq!(conv_args(&model.layers[0]).0, 8);
}
