//! Repeat expansion: the resolved tree of stages → a flat list of layers, each knowing its
//! group and repetition. The expanded size is computed before anything is expanded, so a
//! `x1000000000` is refused at once.

use super::args::{resolve_call, Defaults, Resolved};
use crate::catalogue::LayerDecl;
use crate::diagnostics::{codes, Diagnostic, Span};
use crate::ir::{Activation, Op, Origin, RepeatFrame};
use crate::syntax::ast::{Chain, LayerStage, Stage};

/// The most layers a model may expand to.
pub const MAX_LAYERS: u64 = 10_000;

/// A layer before shape inference.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The operation; `None` when the call did not resolve (its error is reported).
    pub op: Option<Op>,
    /// The suffix activation.
    pub activation: Option<Activation>,
    /// Where it came from.
    pub origin: Origin,
    /// The suffix activation's characters.
    pub activation_span: Option<Span>,
}

/// A stage after name and argument resolution, before expansion.
enum TreeStage {
    Layer(Box<Pending>),
    Group {
        stages: Vec<TreeStage>,
        count: u64,
        group_span: Span,
        count_span: Span,
    },
}

/// Resolves and expands `chain`. Returns `None` (after reporting) when a repeat count is
/// invalid or the model would be too large.
pub fn expand(
    chain: &Chain,
    source: &str,
    defaults: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<Pending>> {
    let mut counts_ok = true;
    let tree = resolve_chain(chain, source, defaults, diagnostics, &mut counts_ok);
    if !counts_ok {
        return None;
    }
    let total = expanded_len(&tree);
    if total > MAX_LAYERS {
        diagnostics.push(too_many_layers(&tree, chain.span, total));
        return None;
    }
    let mut layers = Vec::new();
    flatten_into(&tree, &mut Vec::new(), &mut layers);
    Some(layers)
}

fn resolve_chain(
    chain: &Chain,
    source: &str,
    defaults: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
    counts_ok: &mut bool,
) -> Vec<TreeStage> {
    chain
        .stages
        .iter()
        .map(|stage| match stage {
            Stage::Layer(layer) => TreeStage::Layer(Box::new(resolve_stage(
                layer,
                source,
                defaults,
                diagnostics,
            ))),
            Stage::Group(group) => {
                let stages = resolve_chain(&group.chain, source, defaults, diagnostics, counts_ok);
                let (count, count_span) = match &group.repeat {
                    None => (1, group.span),
                    Some(repeat) => {
                        match repeat.count {
                            Some(0) | None => {
                                *counts_ok = false;
                                diagnostics.push(bad_count(repeat.count, repeat.span, group.span));
                            }
                            _ => {}
                        }
                        (repeat.count.unwrap_or(0), repeat.span)
                    }
                };
                TreeStage::Group {
                    stages,
                    count,
                    group_span: group.span,
                    count_span,
                }
            }
        })
        .collect()
}

fn resolve_stage(
    stage: &LayerStage,
    source: &str,
    defaults: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
) -> Pending {
    let resolved = resolve_call(&stage.layer, defaults, diagnostics);
    let activation = stage.activation.as_ref().and_then(|call| {
        match resolve_call(call, defaults, diagnostics) {
            Some((_, Resolved::Activation(activation))) => Some(activation),
            Some((decl, Resolved::Op(_))) => {
                diagnostics.push(not_an_activation(
                    decl,
                    &stage.layer.name.text,
                    call.name.text.as_str(),
                    call.span,
                ));
                None
            }
            None => None,
        }
    });
    let op = match resolved {
        Some((_, Resolved::Op(op))) => Some(op),
        Some((decl, Resolved::Activation(activation))) => {
            if let Some(call) = &stage.activation {
                diagnostics.push(activation_with_suffix(decl, call.span));
            }
            Some(Op::Activation(activation))
        }
        None => None,
    };
    let written = written_text(source, stage.layer.span, &stage.layer.name.text);
    Pending {
        op,
        activation,
        origin: Origin {
            text: written,
            span: stage.layer.span,
            name_span: stage.layer.name.span,
            repeats: Vec::new(),
            implicit: false,
        },
        activation_span: stage.activation.as_ref().map(|call| call.span),
    }
}

/// The characters of `span` with whitespace folded, or `fallback`.
fn written_text(source: &str, span: Span, fallback: &str) -> String {
    source
        .get(span.offset..span.end())
        .unwrap_or(fallback)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The number of layers `stages` expand to, saturating.
fn expanded_len(stages: &[TreeStage]) -> u64 {
    stages.iter().fold(0u64, |total, stage| {
        let len = match stage {
            TreeStage::Layer(_) => 1,
            TreeStage::Group { stages, count, .. } => count.saturating_mul(expanded_len(stages)),
        };
        total.saturating_add(len)
    })
}

fn flatten_into(stages: &[TreeStage], frames: &mut Vec<RepeatFrame>, out: &mut Vec<Pending>) {
    for stage in stages {
        match stage {
            TreeStage::Layer(pending) => {
                let mut pending = (**pending).clone();
                pending.origin.repeats = frames.clone();
                out.push(pending);
            }
            TreeStage::Group {
                stages,
                count,
                group_span,
                count_span,
            } => {
                for repetition in 1..=*count as usize {
                    frames.push(RepeatFrame {
                        group_span: *group_span,
                        count_span: *count_span,
                        repetition,
                        count: *count as usize,
                    });
                    flatten_into(stages, frames, out);
                    frames.pop();
                }
            }
        }
    }
}

/// The diagnostic for a model past [`MAX_LAYERS`], at the innermost group that alone is too big.
fn too_many_layers(stages: &[TreeStage], model_span: Span, total: u64) -> Diagnostic {
    fn oversized(stages: &[TreeStage]) -> Option<(Span, Span, u64)> {
        stages.iter().find_map(|stage| match stage {
            TreeStage::Group {
                stages,
                count,
                group_span,
                count_span,
            } => {
                let len = count.saturating_mul(expanded_len(stages));
                oversized(stages).or((len > MAX_LAYERS).then_some((*group_span, *count_span, len)))
            }
            TreeStage::Layer(_) => None,
        })
    }
    let shown = |n: u64| {
        if n == u64::MAX {
            "more than 18 quintillion".to_string()
        } else {
            n.to_string()
        }
    };
    let diagnostic = Diagnostic::error(
        codes::REPEAT_COUNT,
        format!(
            "the model expands to {} layers, more than the limit of {MAX_LAYERS}",
            shown(total)
        ),
    );
    match oversized(stages) {
        Some((group_span, count_span, len)) => diagnostic
            .with_primary(
                count_span,
                format!("this repeat makes {} layers", shown(len)),
            )
            .with_secondary(group_span, "the group repeated")
            .with_help("use a smaller repeat count"),
        None => diagnostic
            .with_primary(model_span, "this model")
            .with_help("use smaller repeat counts"),
    }
}

fn bad_count(count: Option<u64>, span: Span, group_span: Span) -> Diagnostic {
    let (message, label) = match count {
        Some(_) => (
            "a group repeated 0 times".to_string(),
            "`x0` removes the group",
        ),
        None => ("a repeat count too large to read".to_string(), "this count"),
    };
    Diagnostic::error(codes::REPEAT_COUNT, message)
        .with_primary(span, label)
        .with_secondary(group_span, "the group")
        .with_help("repeat a group at least once (`x1`), or delete it")
}

fn not_an_activation(decl: &LayerDecl, layer: &str, written: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_UNKNOWN,
        format!("`{written}` after `{layer}` is not an activation"),
    )
    .with_primary(span, format!("`{}` is a layer", decl.name))
    .with_help(format!("join stages with `->`: `{layer} -> {written}`"))
}

fn activation_with_suffix(decl: &LayerDecl, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_UNKNOWN,
        format!(
            "the activation `{}` cannot take another activation",
            decl.name
        ),
    )
    .with_primary(span, "a second activation")
    .with_help("join stages with `->` or keep one activation")
}
