//! Half-written documents never break the language server: every prefix of every fixture and
//! example spec (as if typed one character at a time), with hover, completion, go to
//! definition, inlay hints and code actions at several positions, through the server's
//! handler. Each request gets a response without an error, and each change gets its
//! diagnostics.

use crate::common;

use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{json, Value};
use strata::lsp::Server;

const URI: &str = "file:///specs/typing.yaml";

fn request(id: i32, method: &str, params: serde_json::Value) -> Message {
    Message::Request(Request::new(
        RequestId::from(id),
        method.to_string(),
        params,
    ))
}

fn spec_files() -> Vec<std::path::PathBuf> {
    let root = common::root();
    let mut files = common::yaml_files(&root.join("tests/fixtures/diagnostics"));
    files.extend(common::yaml_files(&root.join("specs")));
    // Every prefix of a file is quadratic in its size: the megabyte `spec.too_large` fixture is
    // left to tests/hostile_input.rs.
    files.retain(|path| std::fs::metadata(path).is_ok_and(|meta| meta.len() <= 64 * 1024));
    files
}

#[test]
fn every_prefix_of_every_spec_gets_answers() {
    let mut server = Server::new();
    server.handle(Message::Notification(Notification::new(
        "textDocument/didOpen".to_string(),
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 0, "text": ""}}),
    )));
    let mut version = 0;
    for path in spec_files() {
        let text = std::fs::read_to_string(&path).expect("spec readable");
        // Every character boundary, with a little noise typed after it.
        for end in (0..=text.len()).filter(|end| text.is_char_boundary(*end)) {
            let typed = format!("{}é🚀(", &text[..end]);
            for prefix in [&text[..end], typed.as_str()] {
                version += 1;
                let answers = server.handle(Message::Notification(Notification::new(
                    "textDocument/didChange".to_string(),
                    json!({"textDocument": {"uri": URI, "version": version},
                           "contentChanges": [{"text": prefix}]}),
                )));
                assert_eq!(answers.len(), 1, "no diagnostics for {path:?} at {end}");
                let lines = prefix.lines().count() as u32;
                for (line, character) in [
                    (0, 0),
                    (lines / 2, 3),
                    (lines.saturating_sub(1), 99),
                    (999, 0),
                ] {
                    let position = json!({"line": line, "character": character});
                    let document = json!({"uri": URI});
                    let range = json!({"start": {"line": 0, "character": 0}, "end": position});
                    for message in [
                        request(
                            1,
                            "textDocument/hover",
                            json!({"textDocument": document, "position": position}),
                        ),
                        request(
                            2,
                            "textDocument/completion",
                            json!({"textDocument": document, "position": position}),
                        ),
                        request(
                            3,
                            "textDocument/inlayHint",
                            json!({"textDocument": document, "range": range}),
                        ),
                        request(
                            5,
                            "textDocument/definition",
                            json!({"textDocument": document, "position": position}),
                        ),
                        request(
                            4,
                            "textDocument/codeAction",
                            json!({"textDocument": document, "range": range, "context": {"diagnostics": []}}),
                        ),
                    ] {
                        for answer in server.handle(message) {
                            let Message::Response(response) = answer else {
                                panic!("not a response");
                            };
                            assert!(response.error.is_none(), "{path:?} at {end}: {response:?}");
                        }
                    }
                }
            }
        }
    }
}

/// Every character of every spec with blocks (fixtures, examples, the zoo), in full: hover,
/// completion and go to definition at each one get an answer without an error, and every
/// definition lands on a block's or a parameter's name in `blocks:` whose text is the word
/// under the cursor.
#[test]
fn every_position_of_every_block_spec_gets_answers() {
    let files: Vec<_> = spec_files()
        .into_iter()
        .filter(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains("\nblocks:")))
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("spec readable");
        let mut server = Server::new();
        server.handle(Message::Notification(Notification::new(
            "textDocument/didOpen".to_string(),
            json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 0, "text": text}}),
        )));
        let lines: Vec<&str> = text.split('\n').collect();
        let mut definitions = 0;
        for (line, line_text) in lines.iter().enumerate() {
            let units = line_text.encode_utf16().count();
            for character in 0..=units {
                let position = json!({"line": line, "character": character});
                let params = json!({"textDocument": {"uri": URI}, "position": position});
                for (id, method) in [
                    (1, "textDocument/hover"),
                    (2, "textDocument/completion"),
                    (3, "textDocument/definition"),
                ] {
                    let answers = server.handle(request(id, method, params.clone()));
                    let Some(Message::Response(response)) = answers.first() else {
                        panic!("no response");
                    };
                    assert!(
                        response.error.is_none(),
                        "{path:?} {line}:{character} {method}: {response:?}"
                    );
                    let result = response.result.clone().unwrap_or_default();
                    if method == "textDocument/definition" && !result.is_null() {
                        definitions += 1;
                        let target = &result["range"];
                        let target_line =
                            lines[target["start"]["line"].as_u64().unwrap_or(0) as usize];
                        let slice = |start: &Value, end: &Value| -> String {
                            let units: Vec<u16> = target_line.encode_utf16().collect();
                            let (start, end) = (
                                start.as_u64().unwrap_or(0) as usize,
                                end.as_u64().unwrap_or(0) as usize,
                            );
                            String::from_utf16_lossy(&units[start.min(end)..end])
                        };
                        let name =
                            slice(&target["start"]["character"], &target["end"]["character"]);
                        // The word under the cursor.
                        let chars: Vec<u16> = line_text.encode_utf16().collect();
                        let is_word = |unit: &u16| {
                            char::from_u32(u32::from(*unit))
                                .is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                        };
                        let start = chars[..character.min(chars.len())]
                            .iter()
                            .rposition(|unit| !is_word(unit))
                            .map_or(0, |idx| idx + 1);
                        let end = chars[start..]
                            .iter()
                            .position(|unit| !is_word(unit))
                            .map_or(chars.len(), |idx| start + idx);
                        let word = String::from_utf16_lossy(&chars[start..end]);
                        assert_eq!(name, word, "{path:?} {line}:{character}: {result}");
                    }
                }
            }
        }
        // The example and zoo specs compile, so each has calls to go from.
        if !path.starts_with(common::root().join("tests")) {
            assert!(definitions > 0, "{path:?}: no definitions found");
        }
    }
}
