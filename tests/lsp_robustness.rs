//! Half-written documents never break the language server: every prefix of every fixture and
//! example spec (as if typed one character at a time), with hover, completion, inlay hints and
//! code actions at several positions, through the server's handler. Each request gets a
//! response without an error, and each change gets its diagnostics.

mod common;

use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::json;
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
