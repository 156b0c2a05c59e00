//! The checker: spec file text → checked [`ir::Model`] and diagnostics.
//!
//! Passes, in order: load the spec ([`crate::spec`]), parse the model text
//! ([`crate::syntax`]), check `defaults:`, resolve names and arguments and expand repeats
//! ([`expand`]), infer shapes and parameters ([`shapes`]), check the head ([`head`]) and run
//! the lints ([`lints`]). Each pass reports what it finds and the next runs on what is left,
//! so one run reports every problem it can.

pub mod args;
pub mod expand;
pub mod head;
pub mod lints;
pub mod shapes;

use crate::catalogue::decl_of;
use crate::diagnostics::{has_errors, Diagnostic};
use crate::ir::{self, Layer, Shape};
use crate::spec::{self, SpecFile};
use crate::syntax::{self, ast};
use std::collections::{HashMap, HashSet};

/// Everything the checker learned about one spec file.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The spec as read (`None` when the file is not a YAML mapping).
    pub spec: Option<SpecFile>,
    /// The model text's syntax tree, when it parses.
    pub ast: Option<ast::Chain>,
    /// The layers whose shapes are known (all of them when the model checks), for the
    /// summary and the editor even when a later layer fails.
    pub layers: Vec<Layer>,
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
}

/// Checks the spec file `text`; `default_name` (the file stem) names a model without `name`.
pub fn compile(text: &str, default_name: &str) -> Compiled {
    let (spec, mut diagnostics) = spec::load(text, default_name);
    let mut compiled = Compiled {
        spec: None,
        ast: None,
        layers: Vec::new(),
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

fn check_model(
    spec: &SpecFile,
    text: &str,
    compiled: &mut Compiled,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let defaults = args::check_defaults(&spec.defaults, diagnostics);
    let Some(model_text) = &spec.model else {
        return;
    };
    let chain = match syntax::parse(model_text) {
        Ok(chain) => chain,
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            return;
        }
    };
    let pending = expand::expand(&chain, text, &defaults, diagnostics);
    compiled.ast = Some(chain);
    let (Some(pending), Some(input)) = (pending, spec.input) else {
        return;
    };
    let input = Shape::Image {
        height: input.height as usize,
        width: input.width as usize,
        channels: input.channels as usize,
    };
    let (mut layers, complete) = shapes::infer(&pending, input, diagnostics);
    name_layers(&mut layers);
    lints::lint(&layers, diagnostics);
    let classes = if complete {
        head::check_head(&layers, spec, diagnostics)
    } else {
        None
    };
    if let (Some(classes), false) = (classes, has_errors(diagnostics)) {
        let params = layers
            .iter()
            .fold(ir::ParamCount::default(), |total, layer| {
                total + layer.params
            });
        compiled.model = Some(ir::Model {
            name: spec.name.clone(),
            input,
            classes,
            layers: layers.clone(),
            train: spec.train.clone(),
            data: spec.data.clone(),
            params,
        });
    }
    compiled.layers = layers;
}

/// Numbers the layers and names them as Keras does: `conv`, `conv_1`, `conv_2`, …
fn name_layers(layers: &mut [Layer]) {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for (index, layer) in layers.iter_mut().enumerate() {
        let base = decl_of(layer.op.kind()).name;
        let count = seen.entry(base).or_insert(0);
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
