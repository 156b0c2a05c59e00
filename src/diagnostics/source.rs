//! A spec file's name and text, which diagnostics point into.

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
