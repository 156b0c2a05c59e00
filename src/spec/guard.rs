//! Checks a spec's text before any YAML parser sees it: its size, and how deep its YAML nests.
//!
//! Both YAML parsers slow down more than linearly on deep nesting (32,000 levels took seconds,
//! 100,000 did not finish in a minute), and a language server parses on every keystroke. So,
//! as the model text's parentheses are counted before pest runs, a linear scan here refuses a
//! spec larger than [`MAX_SPEC_BYTES`] or nested deeper than [`MAX_YAML_NESTING`], and no
//! parser runs on it.
//!
//! The scan is not a YAML parser: it counts each indentation level of block collections (one
//! level per column, and one per `- ` or `? ` on a line) plus each open `[` or `{`, and skips
//! comments, quoted scalars and block scalars (`|`, `>`). It may count a level or two more than
//! YAML's own depth (a sequence at its parent key's column, a plain scalar continued on a
//! deeper line) and never fewer than half of it, which is what a limit on pathological input
//! needs; real spec files nest 4 or 5 deep.

use crate::diagnostics::{codes, Diagnostic, Span};

/// The largest spec file read: 1 MiB. The largest useful spec is a few kilobytes; the layer
/// limit (10,000 layers) is reached long before this.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// The deepest YAML nesting counted by the scan. Spec files nest 4 or 5 levels deep.
pub const MAX_YAML_NESTING: usize = 64;

/// Refuses a text over [`MAX_SPEC_BYTES`] or nested deeper than [`MAX_YAML_NESTING`].
pub fn check(text: &str) -> Result<(), Diagnostic> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(too_large(text));
    }
    let mut scan = Scan::default();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        scan.line(line.trim_end_matches(['\n', '\r']), line_start)?;
        line_start += line.len();
    }
    Ok(())
}

/// The `strata::spec::too_large` diagnostic of a whole text.
fn too_large(text: &str) -> Diagnostic {
    too_large_file(text, Some(text.len() as u64))
}

/// The `strata::spec::too_large` diagnostic of a file of `bytes` bytes (`None`: more than the
/// limit, its size unknown, as for a pipe), labelled on the first line of `head`, the text read
/// from its start.
pub(super) fn too_large_file(head: &str, bytes: Option<u64>) -> Diagnostic {
    let mut end = 0;
    while end < head.len() && !head[end..].starts_with('\n') && end < 80 {
        end += head[end..].chars().next().map_or(1, char::len_utf8);
    }
    let message = match bytes {
        Some(bytes) => format!("the spec file has {bytes} bytes; the limit is {MAX_SPEC_BYTES}"),
        None => format!("the spec file has more than {MAX_SPEC_BYTES} bytes, the limit"),
    };
    Diagnostic::error(codes::SPEC_TOO_LARGE, message)
        .with_primary(Span::new(0, end), "nothing in this file was read")
        .with_help(
            "a spec needs a few kilobytes: move repeated stages into a repeat `(…)xN` or a block \
         under `blocks:`",
        )
}

/// The deep-nesting `strata::yaml::syntax` diagnostic at `span` (also reported by the span tree
/// of [`super::yaml`], which checks the depth as it builds).
pub(super) fn too_deep(span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::YAML_SYNTAX,
        format!("the YAML nests more than {MAX_YAML_NESTING} levels deep"),
    )
    .with_primary(span, "too deep here")
    .with_help(
        "a spec file nests a few levels (`train:` then its keys); look for runaway indentation \
         or unclosed `[` and `{`",
    )
}

/// Where the scan is, between lines.
#[derive(Default)]
struct Scan {
    /// The columns of the open block collections, innermost last.
    indents: Vec<usize>,
    /// Open `[` and `{`.
    flow: usize,
    /// The quote character of a quoted scalar that continues on the next line.
    quote: Option<char>,
    /// Inside a block scalar whose lines are indented more than this column.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Scans one line (without its line break) that starts at byte `start` of the text.
    fn line(&mut self, line: &str, start: usize) -> Result<(), Diagnostic> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if let Some(parent) = self.block_scalar {
            if rest.is_empty() || indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        if self.quote.is_some() || self.flow > 0 {
            return self.inline(line, 0, start, false);
        }
        if rest.is_empty() || rest.starts_with('#') {
            return Ok(());
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
            self.indents.clear();
            return self.inline(line, 3, start, true);
        }
        while self.indents.last().is_some_and(|&open| open >= indent) {
            self.indents.pop();
        }
        self.push_level(indent, start + indent)?;
        let mut col = indent;
        while let Some(after) = entry_indicator(&line[col..]) {
            col += after;
            self.push_level(col, start + col)?;
        }
        self.inline(line, col, start, true)
    }

    /// Opens a block level at column `col` (byte `at` of the text).
    fn push_level(&mut self, col: usize, at: usize) -> Result<(), Diagnostic> {
        self.indents.push(col);
        self.check_depth(at)
    }

    fn check_depth(&self, at: usize) -> Result<(), Diagnostic> {
        if self.indents.len() + self.flow > MAX_YAML_NESTING {
            return Err(too_deep(Span::new(at, at + 1)));
        }
        Ok(())
    }

    /// Scans `line` from byte `from` for quotes, brackets, comments and block scalar headers;
    /// `node_start` says whether a node may begin at `from`.
    fn inline(
        &mut self,
        line: &str,
        from: usize,
        start: usize,
        mut node_start: bool,
    ) -> Result<(), Diagnostic> {
        let mut prev = if from == 0 { ' ' } else { 'x' };
        let mut chars = line[from..]
            .char_indices()
            .map(|(idx, ch)| (from + idx, ch));
        while let Some((idx, ch)) = chars.next() {
            if let Some(quote) = self.quote {
                match ch {
                    '\\' if quote == '"' => {
                        chars.next();
                    }
                    _ if ch == quote => self.quote = None,
                    _ => {}
                }
                // A `''` inside single quotes closes and at once reopens: the same state.
                prev = ch;
                continue;
            }
            match ch {
                '#' if prev == ' ' || prev == '\t' => return Ok(()),
                ' ' | '\t' => {
                    prev = ch;
                    continue;
                }
                '"' | '\'' if node_start => self.quote = Some(ch),
                '[' | '{' if node_start || self.flow > 0 => {
                    self.flow += 1;
                    self.check_depth(start + idx)?;
                    node_start = true;
                    prev = ch;
                    continue;
                }
                ']' | '}' if self.flow > 0 => self.flow -= 1,
                ',' if self.flow > 0 => {
                    node_start = true;
                    prev = ch;
                    continue;
                }
                '|' | '>' if node_start && self.flow == 0 => {
                    self.block_scalar = Some(self.indents.last().copied().unwrap_or(0));
                    return Ok(());
                }
                ':' | '?' | '-' => {
                    // `key: value`, `? key` and `- item` begin a node after the indicator
                    // when a space or the end of the line follows it.
                    let next = line[idx + 1..].chars().next();
                    if matches!(next, None | Some(' ' | '\t'))
                        || (self.flow > 0 && matches!(next, Some(',' | ']' | '}')))
                    {
                        node_start = true;
                        prev = ch;
                        continue;
                    }
                }
                _ => {}
            }
            node_start = false;
            prev = ch;
        }
        Ok(())
    }
}

/// The length of a block entry indicator (`- `, `? `, `: ` with its spaces, or a lone `-` at
/// the end of the line) at the start of `rest`.
fn entry_indicator(rest: &str) -> Option<usize> {
    let mut chars = rest.chars();
    let first = chars.next()?;
    if !matches!(first, '-' | '?' | ':') {
        return None;
    }
    match chars.next() {
        None => Some(1),
        Some(' ') => Some(1 + rest[1..].len() - rest[1..].trim_start_matches(' ').len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> bool {
        check(text).is_err()
    }

    #[test]
    fn ordinary_specs_pass() {
        let spec = "name: demo\ninput: 28x28x1\nmodel: |\n  bn -> [[[[[[\n  -> dense2\n\
                    train:\n  early_stopping:\n    patience: 3\n  class_weight: { a: [1, 2] }\n\
                    data: { train: \"[[[[\", rescale: '{{{{' }\n- - - - x\n";
        assert!(check(spec).is_ok());
    }

    #[test]
    fn deep_flow_and_block_nesting_are_refused() {
        let deep = MAX_YAML_NESTING + 1;
        assert!(depth_error(&format!(
            "a: {}1{}\n",
            "[".repeat(deep),
            "]".repeat(deep)
        )));
        assert!(depth_error(&format!("a: {}1\n", "{b: ".repeat(deep))));
        let block: String = (0..deep)
            .map(|idx| format!("{}k:\n", " ".repeat(idx)))
            .collect();
        assert!(depth_error(&block));
        assert!(depth_error(&format!("{}x\n", "- ".repeat(deep))));
        // A quote that opens inside a scalar does not hide the brackets after it.
        assert!(depth_error(&format!("a: b'\nc: {}\n", "[".repeat(deep))));
        let shallow = MAX_YAML_NESTING / 2;
        assert!(!depth_error(&format!(
            "a: {}1{}\n",
            "[".repeat(shallow),
            "]".repeat(shallow)
        )));
    }

    #[test]
    fn the_label_points_at_the_bracket_that_goes_too_deep() {
        let text = format!("a: {}\n", "[".repeat(100));
        let diagnostic = check(&text).expect_err("too deep");
        let label = diagnostic.primary().expect("label");
        assert_eq!(label.span.offset, 3 + MAX_YAML_NESTING - 1);
    }
}
