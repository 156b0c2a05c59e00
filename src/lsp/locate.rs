//! What is under the cursor: a layer call, its activation suffix, a group, or a spec key.

use crate::diagnostics::Span;
use crate::ir::Layer;
use crate::spec::SpecFile;
use crate::syntax::ast::{Chain, Group, LayerCall, Stage};

/// A node of the model's syntax tree at an offset.
#[derive(Clone, Copy, Debug)]
pub enum ModelNode<'a> {
    /// A layer call (`conv2x2(20)`).
    Layer(&'a LayerCall),
    /// The activation suffix of a layer stage (`relu` in `conv3 relu`), after its layer.
    Activation(&'a LayerCall, &'a LayerCall),
    /// A group (`( … )x7`) when the offset is on its parentheses or repeat.
    Group(&'a Group),
}

/// Whether `offset` is in `span`, its end included (a cursor right after a word is on it).
pub fn touches(span: Span, offset: usize) -> bool {
    span.offset <= offset && offset <= span.end()
}

/// The innermost node of `chain` at `offset`.
pub fn node_at(chain: &Chain, offset: usize) -> Option<ModelNode<'_>> {
    for stage in &chain.stages {
        match stage {
            Stage::Layer(stage) if touches(stage.span, offset) => {
                if let Some(activation) = &stage.activation {
                    if touches(activation.span, offset) {
                        return Some(ModelNode::Activation(&stage.layer, activation));
                    }
                }
                if touches(stage.layer.span, offset) {
                    return Some(ModelNode::Layer(&stage.layer));
                }
            }
            Stage::Group(group) if touches(group.span, offset) => {
                return node_at(&group.chain, offset).or(Some(ModelNode::Group(group)));
            }
            _ => {}
        }
    }
    None
}

/// The IR layers made from the call at `span` (one per repetition), implicit flattens left out.
pub fn layers_of_call(layers: &[Layer], span: Span) -> Vec<&Layer> {
    layers
        .iter()
        .filter(|layer| layer.origin.span == span && !layer.origin.implicit)
        .collect()
}

/// The IR layers made from a group, all repetitions, implicit flattens included.
pub fn layers_of_group(layers: &[Layer], group_span: Span) -> Vec<&Layer> {
    layers
        .iter()
        .filter(|layer| {
            layer
                .origin
                .repeats
                .iter()
                .any(|frame| frame.group_span == group_span)
        })
        .collect()
}

/// The dotted path of the spec key whose name is at `offset` (`train.lr`).
pub fn key_at(spec: &SpecFile, offset: usize) -> Option<&str> {
    spec.spans.iter().find_map(|(path, span)| {
        let key = path.strip_suffix(":key")?;
        touches(*span, offset).then_some(key)
    })
}

/// The dotted path and span of the `defaults:` layer or argument name at `offset`
/// (`defaults.conv`, `defaults.conv.pad`).
pub fn defaults_key_at(spec: &SpecFile, offset: usize) -> Option<(String, Span)> {
    spec.defaults.iter().find_map(|entry| {
        if touches(entry.layer.span, offset) {
            return Some((format!("defaults.{}", entry.layer.text), entry.layer.span));
        }
        entry.args.iter().find_map(|(name, _)| {
            touches(name.span, offset).then(|| {
                let path = format!("defaults.{}.{}", entry.layer.text, name.text);
                (path, name.span)
            })
        })
    })
}
