//! Positions: byte offsets into the spec file ↔ LSP line and UTF-16 character positions.
//!
//! The protocol counts characters in UTF-16 code units by default: `é` is one, `🚀` is two,
//! while in the file's bytes they are two and four. Every span the compiler reports is a byte
//! range, so each one is converted here and nowhere else.

use crate::text::Span;
use lsp_types::{Position, Range};

pub use crate::text::LineIndex;

/// LSP positions for the shared [`LineIndex`]: UTF-16 code units within a line.
pub trait Positions {
    /// The position of byte `offset` in `text`; an offset inside a character counts from that
    /// character's start, one past the end clamps to the end.
    fn position(&self, text: &str, offset: usize) -> Position;

    /// The range of a byte span.
    fn range(&self, text: &str, span: Span) -> Range {
        Range::new(
            self.position(text, span.offset),
            self.position(text, span.end()),
        )
    }

    /// The byte offset of `position` in `text`. A character past the end of its line clamps to
    /// the line's end (before its line break); a line past the last clamps to the text's end;
    /// a position inside a surrogate pair counts from the start of its character.
    fn offset(&self, text: &str, position: Position) -> usize;
}

impl Positions for LineIndex {
    fn position(&self, text: &str, offset: usize) -> Position {
        let offset = char_floor(text, offset.min(text.len()));
        let (line, start) = self.line_of(offset);
        let character = text
            .get(start..offset)
            .map_or(0, |prefix| prefix.encode_utf16().count());
        Position::new(to_u32(line), to_u32(character))
    }

    fn offset(&self, text: &str, position: Position) -> usize {
        let Some(start) = self.line_start(position.line as usize) else {
            return text.len();
        };
        let line_end = self
            .line_start(position.line as usize + 1)
            .map_or(text.len(), |next| next - 1);
        let line = text.get(start..line_end).unwrap_or_default();
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut units = 0usize;
        for (idx, ch) in line.char_indices() {
            let next = units + ch.len_utf16();
            if next > position.character as usize {
                return start + idx;
            }
            units = next;
        }
        start + line.len()
    }
}

/// The largest character boundary at or before `offset`.
fn char_floor(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_utf16_units_after_non_ascii_text() {
        let text = "# é 🚀\nmodel: x 🚀 cnov3\n";
        let index = LineIndex::new(text);
        let offset = text.find("cnov").unwrap_or_default();
        // `model: x ` is 9 units, the rocket 2 and the space 1.
        assert_eq!(index.position(text, offset), Position::new(1, 12));
        assert_eq!(index.offset(text, Position::new(1, 12)), offset);
        assert_eq!(index.position(text, 5), Position::new(0, 4));
        assert_eq!(index.position(text, 6), Position::new(0, 4));
    }

    #[test]
    fn clamps_positions_outside_the_text() {
        let text = "ab\r\ncd";
        let index = LineIndex::new(text);
        assert_eq!(index.offset(text, Position::new(0, 99)), 2);
        assert_eq!(index.offset(text, Position::new(7, 0)), text.len());
        assert_eq!(index.position(text, 99), Position::new(1, 2));
    }
}
