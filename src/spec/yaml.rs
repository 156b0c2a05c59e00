//! The span source for spec files: a small YAML node tree built from saphyr-parser's events,
//! whose markers give the byte range of every key and value.
//!
//! serde_yaml checks that the file is YAML and converts scalars to typed values; it reports
//! no positions for values it accepts, so this tree is where every span comes from.

use crate::diagnostics::{codes, Diagnostic, Span};
use saphyr_parser::{Event, Parser, ScalarStyle};

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
///
/// An empty document gives `Ok(None)`.
pub fn parse_tree(text: &str) -> Result<Option<Node>, Diagnostic> {
    let offsets = CharOffsets::new(text);
    let mut builder = TreeBuilder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|err| {
            let at = offsets.byte(err.marker().index());
            syntax_error(err.info(), Span::new(at, at))
        })?;
        let span = Span::new(
            offsets.byte(span.start.index()),
            offsets.byte(span.end.index()),
        );
        if builder.push(event, span)? {
            break;
        }
    }
    Ok(builder.root)
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
    fn push(&mut self, event: Event<'_>, span: Span) -> Result<bool, Diagnostic> {
        match event {
            Event::Scalar(value, style, _, _) => self.add(Node::Scalar {
                value: value.into_owned(),
                style,
                span,
            }),
            Event::Alias(_) => {
                return Err(Diagnostic::error(
                    codes::YAML_SYNTAX,
                    "aliases (`*name`) are not supported in spec files",
                )
                .with_primary(span, "alias here")
                .with_help("write the value out in full"))
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
