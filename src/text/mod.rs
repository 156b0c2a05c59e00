//! Text types every stage shares: byte [`Span`]s of the spec file, [`MappedText`] (a decoded
//! YAML scalar whose bytes know their file offsets), [`LineIndex`] (offsets → lines), names
//! with their span ([`Ident`]), the one literal parser ([`parse_literal`]) and the escaping of
//! text bound for a terminal ([`escape_control`]).
//!
//! This module sits below `spec`, `syntax`, `diagnostics` and the compiler, and uses none of
//! them, so that no stage has to import another stage to talk about text.

mod lines;
mod literal;
mod mapped;
mod terminal;

pub use lines::LineIndex;
pub use literal::{parse_literal, Literal};
pub use mapped::MappedText;
pub use terminal::{escape_control, is_terminal_control};

/// A byte range of the spec file: `offset` bytes from its start, `len` bytes long.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (0 for a point).
    pub len: usize,
}

impl Span {
    /// A span from `start` (inclusive) to `end` (exclusive) byte offsets.
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            offset: start,
            len: end.saturating_sub(start),
        }
    }

    /// The byte offset one past the last byte.
    pub fn end(&self) -> usize {
        self.offset.saturating_add(self.len)
    }

    /// The smallest span covering both.
    pub fn cover(self, other: Span) -> Span {
        Span::new(self.offset.min(other.offset), self.end().max(other.end()))
    }

    /// Whether `offset` lies in the span, its end included (a cursor right after a word is on
    /// it).
    pub fn touches(&self, offset: usize) -> bool {
        self.offset <= offset && offset <= self.end()
    }

    /// Whether `other` lies wholly inside this span.
    pub fn contains(&self, other: Span) -> bool {
        self.offset <= other.offset && other.end() <= self.end()
    }
}

/// A name with its span (`conv`, `pad`, `same`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident {
    /// The name as written.
    pub text: String,
    /// Where it is written.
    pub span: Span,
}

/// The text of `span` in `source` with `#` comments dropped and runs of whitespace folded to
/// one space, or `fallback` when the span is not inside the source; for messages that quote
/// what the user wrote.
pub fn folded(source: &str, span: Span, fallback: &str) -> String {
    source
        .get(span.offset..span.end())
        .unwrap_or(fallback)
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}
