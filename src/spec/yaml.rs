//! The span source for spec files: a small YAML node tree built from saphyr-parser's events,
//! whose markers give the byte range of every key and value.
//!
//! serde_yaml checks that the file is YAML and converts scalars to typed values; it reports
//! no positions for values it accepts, so this tree is where every span comes from.

use super::guard::{too_deep, MAX_YAML_NESTING};
use super::typed::to_value;
use crate::diagnostics::{codes, Diagnostic, Span};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// A YAML node with the byte span of its text in the file.
#[derive(Clone, Debug)]
pub enum Node {
    /// A scalar: its decoded value, its style and its span.
    Scalar {
        /// The decoded value (escapes and folding applied).
        value: String,
        /// Plain, quoted, literal or folded.
        style: ScalarStyle,
        /// The scalar's characters in the file (indicators and quotes included).
        span: Span,
    },
    /// A mapping with its entries in file order.
    Map {
        /// Key and value pairs.
        entries: Vec<(Node, Node)>,
        /// From the first key to the end of the last value.
        span: Span,
    },
    /// A sequence.
    Seq {
        /// The items.
        items: Vec<Node>,
        /// The sequence's characters.
        span: Span,
    },
}

impl Node {
    /// The node's span in the file.
    pub fn span(&self) -> Span {
        match self {
            Node::Scalar { span, .. } | Node::Map { span, .. } | Node::Seq { span, .. } => *span,
        }
    }

    /// A short description of the node's kind for messages (`a mapping`, `a list`, `text`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a single value",
            Node::Map { .. } => "a mapping",
            Node::Seq { .. } => "a list",
        }
    }

    /// The scalar's text, if this node is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Whether the node is a plain `null`/`~`/empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { value, style: ScalarStyle::Plain, .. }
            if value.is_empty() || value == "~" || value == "null" || value == "Null" || value == "NULL")
    }
}

/// Parses `text` into its first document's root node, or a `strata::yaml::syntax` diagnostic.
/// A byte-order mark at the start is skipped; spans are still offsets into `text`.
///
/// An empty document gives `Ok(None)`. Nesting deeper than [`MAX_YAML_NESTING`] is refused
/// here too, as soon as the parser reaches it (the spec loader's scan has refused it before).
pub fn parse_tree(text: &str) -> Result<Option<Node>, TreeError> {
    let body_start = bom_len(text);
    let body = &text[body_start..];
    let offsets = CharOffsets::new(body);
    let byte = |char_index: usize| body_start + offsets.byte(char_index);
    let mut builder = TreeBuilder::default();
    for event in Parser::new_from_str(body) {
        let (event, span) = event.map_err(|err| {
            let at = byte(err.marker().index());
            TreeError::Syntax(syntax_error(err.info(), Span::new(at, at)))
        })?;
        let span = Span::new(byte(span.start.index()), byte(span.end.index()));
        if builder.push(event, span)? {
            break;
        }
    }
    Ok(builder.root)
}

/// Why the span tree could not be built.
#[derive(Debug)]
pub enum TreeError {
    /// The text is not YAML saphyr-parser reads, or has an alias.
    Syntax(Diagnostic),
    /// The text nests deeper than [`MAX_YAML_NESTING`]: no other parser should run on it.
    TooDeep(Diagnostic),
}

impl TreeError {
    /// The diagnostic to report.
    pub fn into_diagnostic(self) -> Diagnostic {
        match self {
            TreeError::Syntax(diagnostic) | TreeError::TooDeep(diagnostic) => diagnostic,
        }
    }
}

/// The length of the UTF-8 byte-order mark at the start of `text`: 3, or 0 without one.
pub fn bom_len(text: &str) -> usize {
    if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    }
}

/// The first key given twice in one mapping of the tree (keys compare as YAML values, so `1`
/// and `"1"` differ), as a `strata::yaml::syntax` diagnostic at the second key.
pub fn duplicate_key(root: &Option<Node>) -> Option<Diagnostic> {
    let mut stack: Vec<&Node> = root.iter().collect();
    while let Some(node) = stack.pop() {
        match node {
            Node::Scalar { .. } => {}
            Node::Seq { items, .. } => stack.extend(items.iter().rev()),
            Node::Map { entries, .. } => {
                let mut seen: HashMap<serde_yaml::Value, Span> = HashMap::new();
                for (key, _) in entries {
                    if let Some(first) = seen.insert(to_value(key), key.span()) {
                        return Some(duplicate(key, first));
                    }
                }
                for (key, value) in entries.iter().rev() {
                    stack.push(value);
                    stack.push(key);
                }
            }
        }
    }
    None
}

/// The diagnostic for `key`, given a second time after the key at `first`.
fn duplicate(key: &Node, first: Span) -> Diagnostic {
    let name = key.as_scalar().unwrap_or("this key");
    Diagnostic::error(
        codes::YAML_SYNTAX,
        format!("the key `{name}` is given twice"),
    )
    .with_primary(key.span(), "given again here")
    .with_secondary(first, "first given here")
    .with_help("keep one of the two: a mapping has each key once")
}

/// The `strata::yaml::syntax` diagnostic.
pub fn syntax_error(detail: &str, span: Span) -> Diagnostic {
    Diagnostic::error(codes::YAML_SYNTAX, "the spec file is not valid YAML")
        .with_primary(span, detail.to_string())
        .with_help(
            "check the indentation, colons and brackets around here; keys of one mapping line up",
        )
}

/// Character index → byte offset, for markers that count characters.
struct CharOffsets {
    /// Byte offset of each character, plus the text length at the end.
    bytes: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> CharOffsets {
        let mut bytes: Vec<usize> = text.char_indices().map(|(idx, _)| idx).collect();
        bytes.push(text.len());
        CharOffsets { bytes }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.bytes
            .get(char_index)
            .or(self.bytes.last())
            .copied()
            .unwrap_or(0)
    }
}

/// Open collections while events arrive.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Open>,
    root: Option<Node>,
}

enum Open {
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        start: usize,
    },
    Seq {
        items: Vec<Node>,
        start: usize,
    },
}

impl TreeBuilder {
    /// Takes one event; returns true when the first document is complete.
    fn push(&mut self, event: Event<'_>, span: Span) -> Result<bool, TreeError> {
        match event {
            Event::Scalar(value, style, _, _) => self.add(Node::Scalar {
                value: value.into_owned(),
                style,
                span,
            }),
            Event::Alias(_) => {
                return Err(TreeError::Syntax(
                    Diagnostic::error(
                        codes::YAML_SYNTAX,
                        "aliases (`*name`) are not supported in spec files",
                    )
                    .with_primary(span, "alias here")
                    .with_help("write the value out in full"),
                ))
            }
            Event::MappingStart(..) | Event::SequenceStart(..)
                if self.stack.len() >= MAX_YAML_NESTING =>
            {
                return Err(TreeError::TooDeep(too_deep(span)))
            }
            Event::MappingStart(..) => self.stack.push(Open::Map {
                entries: Vec::new(),
                pending_key: None,
                start: span.offset,
            }),
            Event::SequenceStart(..) => self.stack.push(Open::Seq {
                items: Vec::new(),
                start: span.offset,
            }),
            Event::MappingEnd | Event::SequenceEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Map { entries, start, .. }) => {
                        let end = entries.last().map_or(span.end(), |(_, v)| v.span().end());
                        Node::Map {
                            entries,
                            span: Span::new(start, end.max(start)),
                        }
                    }
                    Some(Open::Seq { items, start }) => {
                        let end = items.last().map_or(span.end(), |v| v.span().end());
                        Node::Seq {
                            items,
                            span: Span::new(start, span.end().max(end)),
                        }
                    }
                    None => return Ok(false),
                };
                self.add(node);
            }
            Event::DocumentEnd => return Ok(self.root.is_some()),
            _ => {}
        }
        Ok(false)
    }

    fn add(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}
