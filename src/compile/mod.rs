//! The checker: spec file text → checked [`ir::Model`] and diagnostics.
//!
//! Passes, in order: load the spec ([`crate::spec`]), parse the model text and the blocks
//! ([`crate::syntax`], [`blocks`]), check `defaults:`, resolve names and arguments, expand
//! groups, repeats, merges and block calls into a graph ([`expand`]), infer shapes and
//! parameters ([`shapes`]), check the head ([`head`]) and run the lints ([`lints`]). Each pass
//! reports what it finds and the next runs on what is left, so one run reports every problem
//! it can.

pub mod args;
pub mod blocks;
pub mod eval;
pub mod expand;
pub mod head;
pub mod lints;
pub mod shapes;

use crate::catalogue::decl_of;
use crate::diagnostics::{codes, has_errors, Diagnostic};
use crate::ir::{self, Head, Layer, Shape, MAX_VALUES};
use crate::settings::LossKind;
use crate::spec::{self, SpecFile};
use crate::syntax::{self, ast};
use blocks::Blocks;
use std::collections::HashSet;

/// Everything the checker learned about one spec file.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The spec as read (`None` when the file is not a YAML mapping).
    pub spec: Option<SpecFile>,
    /// The model text's syntax tree, when it parses.
    pub ast: Option<ast::Chain>,
    /// The declared blocks, with their parsed signatures and bodies.
    pub blocks: Blocks,
    /// The layers whose shapes are known (all of them when shape inference got through), for
    /// the summary and the editor even when a later layer fails.
    pub layers: Vec<Layer>,
    /// Whether every layer's shape is known (the head may still be wrong).
    pub shapes_complete: bool,
    /// The checked model, when there are no errors.
    pub model: Option<ir::Model>,
    /// Errors and warnings, in the order of their place in the file.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        has_errors(&self.diagnostics)
    }

    /// The checked model, or, when only its head or a later check failed, the model as far as
    /// its shapes go (for the summary of a backbone); `classes` is then 0.
    pub fn summary_model(&self) -> Option<ir::Model> {
        if let Some(model) = &self.model {
            return Some(model.clone());
        }
        let spec = self.spec.as_ref()?;
        if !self.shapes_complete || self.layers.is_empty() {
            return None;
        }
        Some(ir::Model {
            name: spec.name.clone(),
            input: input_shape(spec)?,
            classes: 0,
            head: Head::Softmax,
            layers: self.layers.clone(),
            train: spec.train.clone(),
            data: spec.data.clone(),
            params: total_params(&self.layers),
        })
    }
}

/// Checks the spec file `text`; `default_name` (the file stem) names a model without `name`.
pub fn compile(text: &str, default_name: &str) -> Compiled {
    let (spec, mut diagnostics) = spec::load(text, default_name);
    let mut compiled = Compiled {
        spec: None,
        ast: None,
        blocks: Blocks::default(),
        layers: Vec::new(),
        shapes_complete: false,
        model: None,
        diagnostics: Vec::new(),
    };
    if let Some(spec) = spec {
        check_model(&spec, text, &mut compiled, &mut diagnostics);
        compiled.spec = Some(spec);
    }
    compiled.diagnostics = dedup_and_sort(diagnostics);
    compiled
}

fn input_shape(spec: &SpecFile) -> Option<Shape> {
    let input = spec.input?;
    Some(Shape::Image {
        height: usize::try_from(input.height).ok()?,
        width: usize::try_from(input.width).ok()?,
        channels: usize::try_from(input.channels).ok()?,
    })
}

/// The input shape, checked against the per-layer value limit.
fn checked_input(spec: &SpecFile, diagnostics: &mut Vec<Diagnostic>) -> Option<Shape> {
    let input = spec.input?;
    let values = u128::from(input.height) * u128::from(input.width) * u128::from(input.channels);
    if values > MAX_VALUES as u128 {
        let span = spec.value_span("input").unwrap_or_default();
        diagnostics.push(
            Diagnostic::error(
                codes::SPEC_INVALID_VALUE,
                format!(
                    "`input` {}x{}x{} has {values} values, more than the limit of {MAX_VALUES} per image",
                    input.height, input.width, input.channels
                ),
            )
            .with_primary(span, "too large")
            .with_help("train on smaller images: resize them, as `input` does for every image it reads"),
        );
        return None;
    }
    input_shape(spec)
}

fn check_model(
    spec: &SpecFile,
    text: &str,
    compiled: &mut Compiled,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let defaults = args::check_defaults(&spec.defaults, diagnostics);
    compiled.blocks = blocks::collect(spec, diagnostics);
    let lines = crate::text::LineIndex::new(text);
    for block in &spec.blocks {
        if let Some(body) = &block.body {
            lints::folded_comment(body, &lines, diagnostics);
        }
    }
    let input = checked_input(spec, diagnostics);
    let Some(model_text) = &spec.model else {
        return;
    };
    lints::folded_comment(model_text, &lines, diagnostics);
    let chain = match syntax::parse(model_text) {
        Ok(chain) => chain,
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            return;
        }
    };
    let expansion = expand::expand(&chain, text, &defaults, &compiled.blocks, diagnostics);
    let reached = blocks::reachable(&compiled.blocks, &chain);
    compiled.ast = Some(chain);
    unused_blocks(&compiled.blocks, &reached, diagnostics);
    let Some(expansion) = expansion else {
        return;
    };
    let Some(input) = input else {
        return;
    };
    let (mut layers, complete) = shapes::infer(expansion.layers, input, diagnostics);
    if layers.len() as u64 > expand::MAX_LAYERS {
        // The expanded size is checked before expansion; implicit flattens can add more.
        diagnostics.push(
            Diagnostic::error(
                codes::REPEAT_COUNT,
                format!(
                    "the model expands to {} layers with its implicit flattens, more than the limit of {}",
                    layers.len(),
                    expand::MAX_LAYERS
                ),
            )
            .with_primary(model_text.span(0, model_text.text.len()), "this model")
            .with_help("use smaller repeat counts, or `flatten`/`gap` once before repeated dense layers"),
        );
        return;
    }
    name_layers(&mut layers);
    lints::lint(&layers, diagnostics);
    compiled.shapes_complete = complete;
    let head = if complete {
        head::check_head(&layers, spec, diagnostics)
    } else {
        None
    };
    if let (Some((classes, head)), false) = (head, has_errors(diagnostics)) {
        let mut train = spec.train.clone();
        train.loss = match head {
            Head::Softmax => LossKind::CategoricalCrossentropy,
            Head::Sigmoid => LossKind::BinaryCrossentropy,
        };
        compiled.model = Some(ir::Model {
            name: spec.name.clone(),
            input,
            classes,
            head,
            layers: layers.clone(),
            train,
            data: spec.data.clone(),
            params: total_params(&layers),
        });
    }
    compiled.layers = layers;
}

fn total_params(layers: &[Layer]) -> ir::ParamCount {
    layers
        .iter()
        .fold(ir::ParamCount::default(), |total, layer| {
            total.checked_add(layer.params).unwrap_or(ir::ParamCount {
                trainable: u64::MAX,
                non_trainable: u64::MAX,
            })
        })
}

/// Warns about blocks the model never calls, directly or through other blocks.
fn unused_blocks(blocks: &Blocks, used: &[bool], diagnostics: &mut Vec<Diagnostic>) {
    for (block, used) in blocks.list.iter().zip(used) {
        if !used && block.usable {
            diagnostics.push(
                Diagnostic::warning(
                    codes::LINT_UNUSED_BLOCK,
                    format!("block `{}` is never called", block.name()),
                )
                .with_primary(block.signature.name.span, "declared here")
                .with_help(format!(
                    "call it in the model (`-> {}`), or remove it",
                    block.signature_text()
                )),
            );
        }
    }
}

/// Numbers the layers and names them as Keras does: `conv`, `conv_1`, `conv_2`, …
fn name_layers(layers: &mut [Layer]) {
    // A model uses a handful of kinds: a list beats hashing a name per layer.
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    for (index, layer) in layers.iter_mut().enumerate() {
        let base = decl_of(layer.op.kind()).name;
        let at = match seen.iter().position(|(known, _)| *known == base) {
            Some(at) => at,
            None => {
                seen.push((base, 0));
                seen.len() - 1
            }
        };
        let count = &mut seen[at].1;
        layer.index = index;
        layer.name = if *count == 0 {
            base.to_string()
        } else {
            format!("{base}_{count}")
        };
        *count += 1;
    }
}

/// Drops repeats of the same diagnostic (a layer expanded many times warns once) and orders
/// them by their place in the file.
fn dedup_and_sort(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Diagnostic> = diagnostics
        .into_iter()
        .filter(|diagnostic| {
            seen.insert((
                diagnostic.code,
                diagnostic.primary().map(|label| label.span),
            ))
        })
        .collect();
    kept.sort_by_key(|diagnostic| diagnostic.primary().map_or(0, |label| label.span.offset));
    kept
}
