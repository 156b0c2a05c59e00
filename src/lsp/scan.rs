//! A light scan of a spec's `blocks:` section for completion, which runs on half-written files
//! that may not load or parse: each entry's signature (name, parameters, defaults) and where
//! its body lies. Block style (`blocks:` then one indented `signature: body` line per entry,
//! bodies in any scalar style) and flow style (`blocks: { a(f): conv3(f), … }`) are read; the
//! scan never fails, it finds fewer entries.

use std::ops::Range;

/// One `blocks:` entry as the scan reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedBlock<'a> {
    /// The block's name.
    pub name: &'a str,
    /// The parameters in order, each with its default as written.
    pub params: Vec<ScannedParam<'a>>,
    /// The byte range of the body in the document: from after the key's `:` to the end of
    /// the entry (the next entry, or the end of the section).
    pub body: Range<usize>,
}

/// One parameter of a scanned signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedParam<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its default as written (`1` in `stride=1`), if any.
    pub default: Option<&'a str>,
}

impl ScannedBlock<'_> {
    /// `basic(f, stride)`: the name and the parameter names.
    pub fn signature(&self) -> String {
        let names: Vec<&str> = self.params.iter().map(|param| param.name).collect();
        format!("{}({})", self.name, names.join(", "))
    }

    /// `basic(f, stride=1)`: the signature with its defaults.
    pub fn signature_with_defaults(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|param| match param.default {
                Some(default) => format!("{}={default}", param.name),
                None => param.name.to_string(),
            })
            .collect();
        format!("{}({})", self.name, params.join(", "))
    }
}

/// The entries of the first top-level `blocks:` key of `text`.
pub fn scan_blocks(text: &str) -> Vec<ScannedBlock<'_>> {
    let Some((key_end, section_end)) = section(text, "blocks") else {
        return Vec::new();
    };
    let rest = &text[key_end..section_end];
    let value_start = key_end + (rest.len() - rest.trim_start().len());
    if text[value_start..section_end].starts_with('{') {
        flow_entries(text, value_start + 1, section_end)
    } else {
        block_entries(text, key_end, section_end)
    }
}

/// The byte range of the value of the top-level key `key` (after its `:`), up to the next
/// line that starts in column 0 with something other than a comment.
fn section(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut key_end = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        match key_end {
            None => {
                let Some(after) = line.strip_prefix(key) else {
                    continue;
                };
                if after.trim_start_matches([' ', '\t']).starts_with(':') {
                    let colon = line.find(':').unwrap_or(key.len());
                    key_end = Some(start + colon + 1);
                }
            }
            Some(end) => {
                let top = line
                    .chars()
                    .next()
                    .is_some_and(|ch| !ch.is_whitespace() && ch != '#');
                if top {
                    return Some((end, start));
                }
            }
        }
    }
    key_end.map(|end| (end, text.len()))
}

/// Block-style entries: every line at the first entry's indentation that is not a comment
/// starts an entry.
fn block_entries(text: &str, from: usize, to: usize) -> Vec<ScannedBlock<'_>> {
    // (line start, indentation, line without its break) of each line after `blocks:`.
    let mut lines = Vec::new();
    // The rest of the `blocks:` line itself holds no entry (only a comment, or nothing).
    let mut offset = text[from..to]
        .find('\n')
        .map_or(to, |break_at| from + break_at + 1);
    while offset < to {
        let end = text[offset..to]
            .find('\n')
            .map_or(to, |idx| offset + idx + 1);
        let line = text[offset..end].trim_end_matches(['\n', '\r']);
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        lines.push((offset, indent, line));
        offset = end;
    }
    let content = |line: &str| {
        let trimmed = line.trim_start();
        !trimmed.is_empty() && !trimmed.starts_with('#')
    };
    let Some(entry_indent) = lines
        .iter()
        .find(|(_, _, line)| content(line))
        .map(|(_, indent, _)| *indent)
    else {
        return Vec::new();
    };
    let starts: Vec<(usize, &str)> = lines
        .iter()
        .filter(|(_, indent, line)| *indent == entry_indent && content(line))
        .map(|(start, indent, line)| (start + indent, &line[*indent..]))
        .collect();
    let mut entries = Vec::new();
    for (idx, (start, line)) in starts.iter().enumerate() {
        let end = starts
            .get(idx + 1)
            .map_or(to, |(next, _)| *next - entry_indent);
        let Some(colon) = key_colon(line) else {
            continue;
        };
        if let Some(block) = entry(text, *start, start + colon, end) {
            entries.push(block);
        }
    }
    entries
}

/// Flow-style entries between `{` (at `from`) and the matching `}` or the end of the section.
fn flow_entries(text: &str, from: usize, to: usize) -> Vec<ScannedBlock<'_>> {
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut entry_start = from;
    for (idx, ch) in text[from..to].char_indices() {
        let at = from + idx;
        match (quote, ch) {
            (Some(open), ch) if ch == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            (None, '}') if depth == 0 => {
                flow_entry(text, entry_start, at, &mut entries);
                return entries;
            }
            (None, '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                flow_entry(text, entry_start, at, &mut entries);
                entry_start = at + 1;
            }
            (None, _) => {}
        }
    }
    flow_entry(text, entry_start, to, &mut entries);
    entries
}

/// The flow entry between `start` and `end`, if it is one.
fn flow_entry<'a>(text: &'a str, start: usize, end: usize, entries: &mut Vec<ScannedBlock<'a>>) {
    let segment = &text[start..end];
    let lead = segment.len() - segment.trim_start().len();
    if let Some(colon) = key_colon(&segment[lead..]) {
        let key_start = start + lead;
        if let Some(block) = entry(text, key_start, key_start + colon, end) {
            entries.push(block);
        }
    }
}

/// The byte index of the `:` that ends a mapping key on `line` (followed by a space, a tab or
/// the end), outside quotes; a signature has no `:` of its own.
fn key_colon(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let bytes = line.as_bytes();
    for (idx, ch) in line.char_indices() {
        match (quote, ch) {
            (Some(open), ch) if ch == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, ':') => {
                let next = bytes.get(idx + 1).copied();
                if matches!(next, None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    return Some(idx);
                }
            }
            (None, '#') if idx > 0 && bytes[idx - 1].is_ascii_whitespace() => return None,
            (None, _) => {}
        }
    }
    None
}

/// One entry: the key from `start` to the colon at `colon`, the body up to `end`.
fn entry(text: &str, start: usize, colon: usize, end: usize) -> Option<ScannedBlock<'_>> {
    let key = text[start..colon].trim().trim_matches(['"', '\'']).trim();
    let (name, params) = signature(key)?;
    Some(ScannedBlock {
        name,
        params,
        body: colon + 1..end.max(colon + 1),
    })
}

/// The name and parameters of a signature such as `down(f, stride=2)`; the parameter list
/// may be unclosed (the file is being typed).
fn signature(key: &str) -> Option<(&str, Vec<ScannedParam<'_>>)> {
    let name_len = key
        .char_indices()
        .find(|(idx, ch)| {
            !(ch.is_ascii_alphabetic() || (*idx > 0 && (ch.is_ascii_digit() || *ch == '_')))
        })
        .map_or(key.len(), |(idx, _)| idx);
    if name_len == 0 {
        return None;
    }
    let name = &key[..name_len];
    let rest = key[name_len..].trim_start();
    let Some(inside) = rest.strip_prefix('(') else {
        return rest.is_empty().then(|| (name, Vec::new()));
    };
    let inside = inside.split(')').next().unwrap_or(inside);
    let params = inside
        .split(',')
        .filter_map(|param| {
            let (param_name, default) = match param.split_once('=') {
                Some((param_name, default)) => (param_name.trim(), Some(default.trim())),
                None => (param.trim(), None),
            };
            let valid = param_name
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_alphabetic())
                && param_name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            valid.then_some(ScannedParam {
                name: param_name,
                default: default.filter(|default| !default.is_empty()),
            })
        })
        .collect();
    Some((name, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        scan_blocks(text)
            .iter()
            .map(ScannedBlock::signature_with_defaults)
            .collect()
    }

    #[test]
    fn reads_block_style_entries_in_every_scalar_style() {
        let text = "input: 8x8x3\nblocks:\n  # a comment\n  basic(f, stride=1): conv3(f, stride=stride) relu\n  down(f): |\n    add(conv1(f) -> bn,\n        conv3(f))\n  \"quoted(c)\": bn\n  plain: bn\nmodel: basic(8)\n";
        assert_eq!(
            names(text),
            ["basic(f, stride=1)", "down(f)", "quoted(c)", "plain()"]
        );
        let blocks = scan_blocks(text);
        let body = &text[blocks[1].body.clone()];
        assert!(body.starts_with(" |\n    add(conv1(f)"), "{body:?}");
        assert!(body.ends_with("conv3(f))\n"), "{body:?}");
        assert_eq!(blocks[1].params[0].default, None);
        assert_eq!(blocks[0].params[1].default, Some("1"));
    }

    #[test]
    fn reads_flow_style_and_half_written_entries() {
        assert_eq!(
            names("blocks: { a(f): conv3(f), b(c, r=16): \"add(identity, bn)\" }\nmodel: a(8)"),
            ["a(f)", "b(c, r=16)"]
        );
        assert_eq!(names("blocks:\n  se(c, r=4"), Vec::<String>::new());
        assert_eq!(names("blocks:\n  se(c, r=4: bn"), ["se(c, r=4)"]);
        assert_eq!(names("blocks:\n  se(c): "), ["se(c)"]);
        assert_eq!(names("model: bn\n"), Vec::<String>::new());
        assert_eq!(names("blocks:"), Vec::<String>::new());
        assert_eq!(names("blocks: # none yet\nmodel: bn"), Vec::<String>::new());
    }
}
