//! Inlay hints: the output shape after each stage (`: 112x112x20` after `pool2`), inside
//! merges' branches too; for a repeated group or stage, the shape after its last repetition;
//! after a merge or a block call (`basic(16)x3`, all its calls), the shape it makes. Inside a
//! block body, a hint shows when every call of the block gives that stage the same shape, and
//! only when shape inference got through the whole model (so that every call is counted).

use super::convert::Positions;
use super::definition::called_block;
use super::document::Document;
use crate::catalogue;
use crate::compile::blocks::Blocks;
use crate::ir::{FrameKind, Layer, Shape};
use crate::syntax::ast::{ArgValue, Chain, Stage};
use crate::text::Span;
use lsp_types::{InlayHint, InlayHintKind, InlayHintLabel, Range};
use std::collections::HashMap;

/// The shape hints of `document` whose place lies in `range`.
pub fn inlay_hints(document: &Document, range: Range) -> Vec<InlayHint> {
    let compiled = &document.compiled;
    let outputs = last_outputs(&compiled.layers);
    let mut hints = Vec::new();
    if let Some(chain) = &compiled.ast {
        collect(chain, &compiled.blocks, &outputs, &mut hints);
    }
    if compiled.shapes_complete {
        for block in &compiled.blocks.list {
            if let Some(body) = &block.body {
                collect(body, &compiled.blocks, &outputs, &mut hints);
            }
        }
    }
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

/// The shape a span ends in, or `None` when its expansions disagree (a block body called with
/// different arguments).
type Outputs = HashMap<Span, Option<Shape>>;

/// Output shapes by the span that makes them: a call's span (the last layer made there wins
/// within one expansion), every enclosing repeat, and every block call. Spans expanded more
/// than once with different results map to `None`.
fn last_outputs(layers: &[Layer]) -> Outputs {
    // The output of each expansion instance: (span, frames that led there) → shape.
    let mut instances: HashMap<(Span, Vec<(Span, usize)>), Shape> = HashMap::new();
    for layer in layers {
        let path: Vec<(Span, usize)> = layer
            .origin
            .frames
            .iter()
            .map(|frame| (frame.span, frame.repetition))
            .collect();
        instances.insert((layer.origin.span, path.clone()), layer.output);
        for (depth, frame) in layer.origin.frames.iter().enumerate() {
            let key = match frame.kind {
                FrameKind::Repeat | FrameKind::Call { .. } => (frame.span, path[..depth].to_vec()),
            };
            instances.insert(key, layer.output);
        }
    }
    let mut outputs: Outputs = HashMap::new();
    for ((span, _), shape) in instances {
        outputs
            .entry(span)
            .and_modify(|known| {
                if *known != Some(shape) {
                    *known = None;
                }
            })
            .or_insert(Some(shape));
    }
    outputs
}

/// (offset, shape) after each stage of `chain` and of merges' branches; groups repeated more
/// than once get one hint after the group, groups written once get hints inside too.
fn collect(chain: &Chain, blocks: &Blocks, outputs: &Outputs, hints: &mut Vec<(usize, Shape)>) {
    for stage in &chain.stages {
        match stage {
            Stage::Call(stage) => {
                let is_merge =
                    catalogue::lookup(&stage.call.word.text).is_some_and(|decl| decl.is_merge());
                if is_merge {
                    for arg in &stage.call.args {
                        if let ArgValue::Branch(branch) = &arg.value {
                            collect(branch, blocks, outputs, hints);
                        }
                    }
                }
                if called_block(blocks, &stage.call).is_some() {
                    // A block call's frame covers all its repetitions and its activation.
                    if let Some(Some(shape)) = outputs.get(&stage.call.span) {
                        hints.push((stage.span.end(), *shape));
                    }
                    continue;
                }
                let repeated = stage
                    .repeat
                    .as_ref()
                    .and_then(|repeat| repeat.count)
                    .is_some_and(|count| count > 1);
                let made = if repeated {
                    outputs.get(&stage.span)
                } else {
                    outputs
                        .get(&stage.call.span)
                        .or_else(|| outputs.get(&stage.span))
                };
                let after_activation = stage
                    .activation
                    .as_ref()
                    .and_then(|activation| outputs.get(&activation.span));
                if let Some(Some(shape)) = after_activation.or(made) {
                    hints.push((stage.span.end(), *shape));
                }
            }
            Stage::Group(group) => {
                let count = group.repeat.as_ref().and_then(|repeat| repeat.count);
                if count.is_none_or(|count| count == 1) {
                    collect(&group.chain, blocks, outputs, hints);
                } else if let Some(Some(shape)) = outputs.get(&group.span) {
                    hints.push((group.span.end(), *shape));
                }
            }
        }
    }
}
