//! What is under the cursor: a call (layer, merge or block), its activation suffix, a group,
//! a block's signature, or a spec key. The model and every block body are searched.

use crate::catalogue;
use crate::compile::blocks::Block;
use crate::compile::Compiled;
use crate::ir::{FrameKind, Layer};
use crate::spec::SpecFile;
use crate::syntax::ast::{ArgValue, Call, Chain, Group, Stage};
use crate::text::Span;

/// A node of a syntax tree at an offset.
#[derive(Clone, Copy, Debug)]
pub enum ModelNode<'a> {
    /// A call (`conv2x2(20)`, `add(…)`, `basic(64)`).
    Call(&'a Call),
    /// The activation suffix of a stage (`relu` in `conv3 relu`), after its call.
    Activation(&'a Call, &'a Call),
    /// A group (`( … )x7`) when the offset is on its parentheses or repeat.
    Group(&'a Group),
}

/// Whether `offset` is in `span`, its end included (a cursor right after a word is on it).
pub fn touches(span: Span, offset: usize) -> bool {
    span.touches(offset)
}

/// The innermost node of `chain` at `offset`.
pub fn node_at(chain: &Chain, offset: usize) -> Option<ModelNode<'_>> {
    for stage in &chain.stages {
        match stage {
            Stage::Call(stage) if touches(stage.span, offset) => {
                if let Some(activation) = &stage.activation {
                    if touches(activation.span, offset) {
                        return Some(ModelNode::Activation(&stage.call, activation));
                    }
                }
                let is_merge =
                    catalogue::lookup(&stage.call.word.text).is_some_and(|decl| decl.is_merge());
                for arg in &stage.call.args {
                    match &arg.value {
                        ArgValue::Branch(branch)
                            if touches(branch.span, offset)
                                && (is_merge || arg.value.lone_word().is_none()) =>
                        {
                            if let Some(node) = node_at(branch, offset) {
                                return Some(node);
                            }
                        }
                        ArgValue::Branch(_) | ArgValue::Expr(_) => {}
                    }
                }
                if touches(stage.call.span, offset) {
                    return Some(ModelNode::Call(&stage.call));
                }
            }
            Stage::Group(group) if touches(group.span, offset) => {
                return node_at(&group.chain, offset).or(Some(ModelNode::Group(group)));
            }
            Stage::Call(_) | Stage::Group(_) => {}
        }
    }
    None
}

/// The node at `offset` in the model or in a block body, with the block it is in.
pub fn node_in_spec(compiled: &Compiled, offset: usize) -> Option<(ModelNode<'_>, Option<&Block>)> {
    if let Some(node) = compiled.ast.as_ref().and_then(|ast| node_at(ast, offset)) {
        return Some((node, None));
    }
    compiled.blocks.list.iter().find_map(|block| {
        let body = block.body.as_ref()?;
        node_at(body, offset).map(|node| (node, Some(block)))
    })
}

/// The block whose signature's name is at `offset`.
pub fn block_name_at(compiled: &Compiled, offset: usize) -> Option<&Block> {
    compiled
        .blocks
        .list
        .iter()
        .find(|block| touches(block.signature.name.span, offset))
}

/// The IR layers made from the call at `span` (one per repetition and call of its block),
/// implicit flattens left out.
pub fn layers_of_call(layers: &[Layer], span: Span) -> Vec<&Layer> {
    layers
        .iter()
        .filter(|layer| layer.origin.span == span && !layer.origin.implicit)
        .collect()
}

/// The IR layers a block call at `span` expanded, all repetitions.
pub fn layers_of_block_call(layers: &[Layer], span: Span) -> Vec<&Layer> {
    layers
        .iter()
        .filter(|layer| {
            layer
                .origin
                .frames
                .iter()
                .any(|frame| frame.span == span && matches!(frame.kind, FrameKind::Call { .. }))
        })
        .collect()
}

/// The IR layers made from a group, all repetitions, implicit flattens included.
pub fn layers_of_group(layers: &[Layer], group_span: Span) -> Vec<&Layer> {
    layers
        .iter()
        .filter(|layer| layer.origin.within(group_span))
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
        entry.args.iter().find_map(|arg| {
            touches(arg.name.span, offset).then(|| {
                let path = format!("defaults.{}.{}", entry.layer.text, arg.name.text);
                (path, arg.name.span)
            })
        })
    })
}
