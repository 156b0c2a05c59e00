//! Maps each byte of a decoded YAML scalar back to a byte of the spec file, so that
//! diagnostics inside the `model` text point at the file's characters whatever the scalar
//! style (plain, quoted, `|` or `>`).
//!
//! The decoded value and its source text differ only in whitespace (indentation, line
//! folding, chomping), escapes (`\t`, `\x41`, `\"`) and doubled quotes (`''`). The mapping
//! walks both in step: every other character appears verbatim and in order in the source.

use super::Span;

/// A decoded scalar with the file offset of each of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedText {
    /// The decoded value, as YAML defines it.
    pub text: String,
    /// `offsets[i]` is the file byte offset of `text`'s byte `i`; one extra entry at the end
    /// gives the offset just past the scalar's last character.
    offsets: Vec<usize>,
}

impl MappedText {
    /// Aligns `decoded` with the file `source` inside `span` (the scalar's characters).
    pub fn new(source: &str, span: Span, decoded: &str) -> MappedText {
        let region = source.get(span.offset..span.end()).unwrap_or("");
        let offsets = align(region, decoded)
            .map(|relative| relative.into_iter().map(|at| at + span.offset).collect())
            .unwrap_or_else(|| vec![span.offset; decoded.len() + 1]);
        MappedText {
            text: decoded.to_string(),
            offsets,
        }
    }

    /// A text whose bytes sit at consecutive file offsets starting at `offset`.
    pub fn verbatim(text: &str, offset: usize) -> MappedText {
        MappedText {
            text: text.to_string(),
            offsets: (offset..=offset + text.len()).collect(),
        }
    }

    /// The file span of the text's bytes `start..end`.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let last = self.offsets.len() - 1;
        let file_start = self.offsets[start.min(last)];
        if end <= start {
            return Span::new(file_start, file_start);
        }
        // The end is one past the file position of the last byte in the range, so that a
        // range ending just before folded whitespace does not stretch over it.
        let file_end = self.offsets[(end - 1).min(last)] + 1;
        Span::new(file_start, file_end.max(file_start))
    }
}

/// Per-byte offsets of `decoded` into `region`, or `None` when they do not align.
fn align(region: &str, decoded: &str) -> Option<Vec<usize>> {
    let bytes = region.as_bytes();
    let mut offsets = Vec::with_capacity(decoded.len() + 1);
    let mut at = 0;
    for ch in decoded.chars() {
        if ch.is_whitespace() && bytes.get(at).is_none_or(|b| *b != b'\\') {
            // Whitespace may be folded or chomped: point it at the source position reached.
            let here = at.min(region.len());
            offsets.extend(std::iter::repeat_n(here, ch.len_utf8()));
            if starts_with_char(&region[here..], ch) {
                at = here + ch.len_utf8();
            }
            continue;
        }
        at = skip_layout(region, at);
        let rest = region.get(at..)?;
        if starts_with_char(rest, ch) {
            offsets.extend((0..ch.len_utf8()).map(|idx| at + idx));
            at += ch.len_utf8();
            if ch == '\'' && region[at..].starts_with('\'') {
                at += 1;
            }
        } else if rest.starts_with('\\') {
            offsets.extend(std::iter::repeat_n(at, ch.len_utf8()));
            at += escape_len(rest);
        } else {
            return None;
        }
    }
    offsets.push(region.len());
    Some(offsets)
}

/// Whether `text` starts with `ch`; an ASCII character is compared as one byte, without the
/// slice comparison call `str::starts_with` makes (this runs for every byte of the model).
fn starts_with_char(text: &str, ch: char) -> bool {
    match u8::try_from(ch) {
        Ok(byte) if byte.is_ascii() => text.as_bytes().first() == Some(&byte),
        _ => text.starts_with(ch),
    }
}

/// Skips whitespace and escaped line breaks in the source from `at`.
fn skip_layout(region: &str, mut at: usize) -> usize {
    loop {
        let rest = &region[at.min(region.len())..];
        if let Some(ch) = rest.chars().next().filter(|ch| ch.is_whitespace()) {
            at += ch.len_utf8();
        } else if rest.starts_with("\\\n") {
            at += 2;
        } else if rest.starts_with("\\\r\n") {
            at += 3;
        } else {
            return at;
        }
    }
}

/// The length in bytes of the escape sequence at the start of `rest` (which starts with `\`).
fn escape_len(rest: &str) -> usize {
    let digits = match rest.as_bytes().get(1) {
        Some(b'x') => 2,
        Some(b'u') => 4,
        Some(b'U') => 8,
        _ => 0,
    };
    let after_backslash = rest[1..].chars().next().map_or(0, char::len_utf8);
    (1 + after_backslash + digits).min(rest.len())
}

#[cfg(test)]
mod tests {
    use super::MappedText;
    use crate::text::Span;

    fn span_of(source: &str, decoded: &str, word: &str) -> String {
        let quoted = source.starts_with(['\'', '"']);
        let inner = if quoted {
            Span::new(1, source.len() - 1)
        } else {
            Span::new(0, source.len())
        };
        let mapped = MappedText::new(source, inner, decoded);
        let at = mapped.text.find(word).expect("word in decoded text");
        let span = mapped.span(at, at + word.len());
        source[span.offset..span.end()].to_string()
    }

    #[test]
    fn quoted_and_escaped_text_maps_back_to_the_file() {
        assert_eq!(span_of("'it''s dense'", "it's dense", "dense"), "dense");
        assert_eq!(span_of("\"a\\tdense2\"", "a\tdense2", "dense2"), "dense2");
        assert_eq!(span_of("\"\\x41 pool\"", "A pool", "pool"), "pool");
    }

    #[test]
    fn folded_lines_map_back_to_the_file() {
        let source = "bn ->\n    dense2\n\n    relu";
        assert_eq!(span_of(source, "bn -> dense2\nrelu", "relu"), "relu");
    }

    #[test]
    fn text_that_does_not_align_maps_to_the_scalar_start() {
        let mapped = MappedText::new("xyz", Span::new(0, 3), "abc");
        assert_eq!(mapped.span(1, 2), Span::new(0, 1));
    }
}
