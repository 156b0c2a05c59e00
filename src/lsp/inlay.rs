//! Inlay hints: the output shape after each stage of the model (`: 112x112x20` after
//! `pool2`); for a repeated group, the shape after the whole group.

use super::document::Document;
use crate::diagnostics::Span;
use crate::ir::{Layer, Shape};
use crate::syntax::ast::{Chain, Stage};
use lsp_types::{InlayHint, InlayHintKind, InlayHintLabel, Range};
use std::collections::HashMap;

/// The shape hints of `document` whose place lies in `range`.
pub fn inlay_hints(document: &Document, range: Range) -> Vec<InlayHint> {
    let compiled = &document.compiled;
    let Some(chain) = &compiled.ast else {
        return Vec::new();
    };
    let outputs = last_outputs(&compiled.layers);
    let mut hints = Vec::new();
    collect(chain, &outputs, &mut hints);
    let start = document.index.offset(&document.text, range.start);
    let end = document.index.offset(&document.text, range.end);
    hints
        .into_iter()
        .filter(|(offset, _)| (start..=end).contains(offset))
        .map(|(offset, shape)| InlayHint {
            position: document.index.position(&document.text, offset),
            label: InlayHintLabel::String(format!(": {shape}")),
            kind: Some(InlayHintKind::TYPE),
            text_edits: None,
            tooltip: None,
            padding_left: Some(false),
            padding_right: Some(true),
            data: None,
        })
        .collect()
}

/// Output shapes by the span they end: a layer call's span, and every enclosing group's span
/// (the last layer of the group wins, so a repeated group gets the shape after its last
/// repetition).
fn last_outputs(layers: &[Layer]) -> HashMap<Span, Shape> {
    let mut outputs = HashMap::new();
    for layer in layers {
        outputs.insert(layer.origin.span, layer.output);
        for frame in &layer.origin.repeats {
            outputs.insert(frame.group_span, layer.output);
        }
    }
    outputs
}

/// (offset, shape) after each stage of `chain`; groups repeated more than once get one hint
/// after the group, groups written once get hints inside too.
fn collect(chain: &Chain, outputs: &HashMap<Span, Shape>, hints: &mut Vec<(usize, Shape)>) {
    for stage in &chain.stages {
        match stage {
            Stage::Layer(stage) => {
                if let Some(shape) = outputs.get(&stage.layer.span) {
                    hints.push((stage.span.end(), *shape));
                }
            }
            Stage::Group(group) => {
                let count = group.repeat.as_ref().and_then(|repeat| repeat.count);
                if count.is_none_or(|count| count == 1) {
                    collect(&group.chain, outputs, hints);
                } else if let Some(shape) = outputs.get(&group.span) {
                    hints.push((group.span.end(), *shape));
                }
            }
        }
    }
}
