//! A spec file's name and text, and byte offset → line/column conversion.

use std::sync::Arc;

/// A named source text that diagnostics point into.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The name shown to the user (usually the path as given).
    pub name: String,
    /// The whole file text.
    pub text: Arc<str>,
}

impl SourceFile {
    /// A source file named `name` with `text`.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Byte offsets of line starts, for 1-based line and column numbers.
#[derive(Clone, Debug)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the line starts of `text`.
    pub fn new(text: &str) -> LineIndex {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(idx, _)| idx + 1));
        LineIndex { line_starts }
    }

    /// 0-based line and the byte offset of its start, for a byte `offset`.
    pub fn line_of(&self, offset: usize) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        };
        (line, self.line_starts[line])
    }

    /// 1-based line and 1-based column in characters, for a byte `offset` into `text`.
    pub fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let (line, start) = self.line_of(offset);
        let column = text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line + 1, column + 1)
    }
}
