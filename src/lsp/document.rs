//! One open spec file: its text, version, line index and what the checker made of it.

use super::convert::LineIndex;
use crate::compile::{compile, Compiled};
use lsp_types::Uri;

/// An open document, checked after every change.
#[derive(Clone, Debug)]
pub struct Document {
    /// The whole text as the editor holds it.
    pub text: String,
    /// The editor's version number of the text.
    pub version: i32,
    /// Line starts of `text`.
    pub index: LineIndex,
    /// The checker's result for `text`.
    pub compiled: Compiled,
}

impl Document {
    /// Checks `text`; `uri` names the model when the spec has no `name`.
    pub fn new(uri: &Uri, text: String, version: i32) -> Document {
        let compiled = compile(&text, &default_name(uri));
        Document {
            index: LineIndex::new(&text),
            text,
            version,
            compiled,
        }
    }
}

/// The file stem of a document URI (`specs/deep_bn.yaml` → `deep_bn`), as `strata check`
/// names a model without `name:`.
pub fn default_name(uri: &Uri) -> String {
    let path = uri.path().as_str();
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file,
    };
    if stem.is_empty() {
        "model".to_string()
    } else {
        stem.to_string()
    }
}
