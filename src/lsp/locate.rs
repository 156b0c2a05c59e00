//! What is under the cursor: a call (layer, merge or block), its activation suffix, a group,
//! a block's signature, or a spec key. The model and every block body are searched.

use crate::catalogue;
use crate::compile::blocks::Block;
use crate::compile::Compiled;
use crate::ir::{Frame, FrameKind, Layer};
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

/// The layers one expansion of a frame made, with that frame (as the first layer records it).
#[derive(Clone, Debug)]
pub struct Expansion<'a> {
    /// The frame (a block call or a repetition) of the first layer.
    pub frame: &'a Frame,
    /// The frames that enclose it, outermost first.
    pub outer: &'a [Frame],
    /// The layers, in expansion order.
    pub layers: Vec<&'a Layer>,
}

impl Expansion<'_> {
    /// The shape the expansion reads (its first layer's first input).
    pub fn input(&self) -> Option<crate::ir::Shape> {
        self.layers.first().map(|layer| layer.input())
    }

    /// The shape it makes (its last layer's output).
    pub fn output(&self) -> Option<crate::ir::Shape> {
        self.layers.last().map(|layer| layer.output)
    }

    /// Its parameters, all layers together.
    pub fn params(&self) -> crate::ir::ParamCount {
        self.layers
            .iter()
            .fold(crate::ir::ParamCount::default(), |total, layer| {
                total
                    .checked_add(layer.params)
                    .unwrap_or(crate::ir::ParamCount {
                        trainable: u64::MAX,
                        non_trainable: u64::MAX,
                    })
            })
    }
}

/// The expansions of the frames that `pick` chooses (the outermost such frame of each layer),
/// in expansion order. With `per_repetition`, each repetition of a frame (each call of
/// `basic(16)x3`) is its own expansion; without, one expansion holds all the repetitions made
/// in one place (a call site in the model makes one; a call site in a block body makes one
/// per call of that block).
pub fn expansions<'a>(
    layers: &'a [Layer],
    pick: impl Fn(&Frame) -> bool,
    per_repetition: bool,
) -> Vec<Expansion<'a>> {
    let mut found: Vec<Expansion<'a>> = Vec::new();
    let mut open = false;
    for layer in layers {
        let frames = &layer.origin.frames[..];
        let Some(depth) = frames.iter().position(&pick) else {
            open = false;
            continue;
        };
        let (frame, outer) = (&frames[depth], &frames[..depth]);
        let continues = open
            && found.last().is_some_and(|last| {
                last.frame.span == frame.span
                    && (!per_repetition || last.frame.repetition == frame.repetition)
                    && same_frames(last.outer, outer)
            });
        if continues {
            if let Some(last) = found.last_mut() {
                last.layers.push(layer);
            }
        } else {
            found.push(Expansion {
                frame,
                outer,
                layers: vec![layer],
            });
        }
        open = true;
    }
    found
}

/// Whether two chains of frames are the same expansion steps (places and repetitions).
fn same_frames(a: &[Frame], b: &[Frame]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.span == b.span && a.repetition == b.repetition)
}

/// Whether a frame is a call of the block `name`.
pub fn is_call_of(frame: &Frame, name: &str) -> bool {
    matches!(&frame.kind, FrameKind::Call { block } if block == name)
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
