//! Where a layer came from: the characters of its call, and the chain of block calls and
//! repetitions that expanded it (as rustc records a macro's call sites), so that a message can
//! say "`pool2` in `shrink(8)`, call 3 of 3" and label each step.

use crate::text::Span;
use std::sync::Arc;

/// Where a layer came from in the spec file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The call as written, whitespace folded (`conv2x2(20)`); for messages.
    pub text: String,
    /// The call's characters (for an implicit flatten: the dense layer that needs it; for a
    /// merge: the whole merge).
    pub span: Span,
    /// The name's characters.
    pub name_span: Span,
    /// The enclosing repetitions and block calls, outermost first. Shared: every layer of one
    /// expansion step holds the same list.
    pub frames: Arc<[Frame]>,
    /// Whether the compiler inserted it (an implicit flatten before `dense`).
    pub implicit: bool,
}

/// One step of the expansion that produced a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// A repetition or a block call.
    pub kind: FrameKind,
    /// The repeated group or stage, or the call, as written (folded, shortened).
    pub text: String,
    /// Its characters.
    pub span: Span,
    /// The `xN` characters (the span itself when there is no repeat).
    pub count_span: Span,
    /// Which repetition or call (1-based).
    pub repetition: usize,
    /// How many.
    pub count: usize,
}

/// The kinds of expansion step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A repeated group `(…)xN` or stage `add(…)xN`.
    Repeat,
    /// A call of the named block, repeated `count` times when written `name(…)xN`.
    Call {
        /// The block's name.
        block: String,
    },
}

impl Frame {
    /// `in repetition 2 of 7` (with `of `(…)x7`` when `name_repeat`), or `in `down(256)``
    /// (with `, call 2 of 3` when repeated).
    fn describe(&self, name_repeat: bool) -> Option<String> {
        match &self.kind {
            FrameKind::Repeat if self.count <= 1 => None,
            FrameKind::Repeat if name_repeat => Some(format!(
                "in repetition {} of {} of `{}`",
                self.repetition, self.count, self.text
            )),
            FrameKind::Repeat => Some(format!(
                "in repetition {} of {}",
                self.repetition, self.count
            )),
            FrameKind::Call { .. } if self.count > 1 => Some(format!(
                "in `{}`, call {} of {}",
                self.text, self.repetition, self.count
            )),
            FrameKind::Call { .. } => Some(format!("in `{}`", self.text)),
        }
    }

    /// The secondary label for this step, if it adds something: the call site, or the repeat.
    pub fn label(&self) -> Option<(Span, String)> {
        match &self.kind {
            FrameKind::Repeat if self.count <= 1 => None,
            FrameKind::Repeat => Some((
                self.count_span,
                format!(
                    "repeated {} times here (this is repetition {})",
                    self.count, self.repetition
                ),
            )),
            FrameKind::Call { .. } if self.count > 1 => Some((
                self.span,
                format!(
                    "in `{}`, called here (call {} of {})",
                    self.text, self.repetition, self.count
                ),
            )),
            FrameKind::Call { .. } => Some((self.span, format!("in `{}`, called here", self.text))),
        }
    }
}

impl Origin {
    /// [`Origin::context`] ready to be followed by a verb: with a closing comma when the
    /// fragment has commas of its own (`in `shrink(8)`, call 3 of 3, gets …`).
    pub fn context_before_verb(&self) -> String {
        let context = self.context();
        if context.contains(',') {
            format!("{context},")
        } else {
            context
        }
    }

    /// The chain of expansion steps, innermost first, as a message fragment with a leading
    /// space: ` in `shrink(8)`, call 3 of 3, in repetition 2 of 2`; empty outside groups and
    /// blocks. When several repetitions enclose the layer, each names its group.
    pub fn context(&self) -> String {
        let n_repeats = self
            .frames
            .iter()
            .filter(|frame| frame.kind == FrameKind::Repeat && frame.count > 1)
            .count();
        let parts: Vec<String> = self
            .frames
            .iter()
            .rev()
            .filter_map(|frame| frame.describe(n_repeats > 1))
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" {}", parts.join(", "))
        }
    }

    /// The secondary labels of the expansion steps, innermost first.
    pub fn frame_labels(&self) -> Vec<(Span, String)> {
        self.frames.iter().rev().filter_map(Frame::label).collect()
    }

    /// Whether the layer was expanded inside the block call or repeat at `span`.
    pub fn within(&self, span: Span) -> bool {
        self.frames.iter().any(|frame| frame.span == span)
    }
}
