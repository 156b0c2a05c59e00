//! Language-server features on the seed and fixture specs, through the server's handler:
//! hover on a repeated group, the shape hint after it, and the quick fixes of a vanished shape.

mod common;

use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{json, Value};
use strata::lsp::Server;

const URI: &str = "file:///specs/spec.yaml";

fn open(path: &str) -> (Server, String) {
    let text = std::fs::read_to_string(common::root().join(path)).expect("spec readable");
    let mut server = Server::new();
    server.handle(Message::Notification(Notification::new(
        "textDocument/didOpen".to_string(),
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 1, "text": text}}),
    )));
    (server, text)
}

fn ask(server: &mut Server, method: &str, params: Value) -> Value {
    let request = Request::new(RequestId::from(1), method.to_string(), params);
    match server.handle(Message::Request(request)).pop() {
        Some(Message::Response(response)) => response.result.unwrap_or(Value::Null),
        other => panic!("no response: {other:?}"),
    }
}

/// The line and UTF-16 character of the first `needle` in `text` (ASCII lines here).
fn find(text: &str, needle: &str) -> (u32, u32) {
    let offset = text.find(needle).expect("needle in text");
    let line_start = text[..offset].rfind('\n').map_or(0, |idx| idx + 1);
    (
        text[..offset].matches('\n').count() as u32,
        (offset - line_start) as u32,
    )
}

#[test]
fn hover_on_a_repeat_tells_what_the_group_expands_to() {
    let (mut server, text) = open("specs/seed/deep_bn.yaml");
    let (line, character) = find(&text, ")x7");
    let hover = ask(
        &mut server,
        "textDocument/hover",
        json!({"textDocument": {"uri": URI},
               "position": {"line": line, "character": character + 2}}),
    );
    let value = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(
        value.starts_with("**group** x7 → 14 layers: conv2x2 relu, pool2 …"),
        "{value}"
    );
    assert!(value.contains("224x224x3 → 1x1x20"), "{value}");
}

#[test]
fn the_shape_hint_of_a_repeated_group_follows_the_group() {
    let (mut server, text) = open("specs/seed/deep_bn.yaml");
    let hints = ask(
        &mut server,
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": URI},
               "range": {"start": {"line": 0, "character": 0},
                         "end": {"line": 100, "character": 0}}}),
    );
    let (line, character) = find(&text, ")x7");
    let after_group = json!({"line": line, "character": character + 3});
    let labels: Vec<(Value, Value)> = hints
        .as_array()
        .map(|hints| {
            hints
                .iter()
                .map(|hint| (hint["position"].clone(), hint["label"].clone()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        labels.contains(&(after_group, json!(": 1x1x20"))),
        "{labels:?}"
    );
    assert_eq!(labels.len(), 3, "{labels:?}");
}

#[test]
fn a_vanished_shape_offers_pad_same_and_a_smaller_repeat() {
    let (mut server, text) = open("tests/fixtures/diagnostics/shape.vanished/repetition.yaml");
    let (line, character) = find(&text, "pool2)x8");
    let actions = ask(
        &mut server,
        "textDocument/codeAction",
        json!({"textDocument": {"uri": URI},
               "range": {"start": {"line": line, "character": character},
                         "end": {"line": line, "character": character}},
               "context": {"diagnostics": []}}),
    );
    let titles: Vec<&str> = actions
        .as_array()
        .map(|actions| actions.iter().filter_map(|a| a["title"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(titles, ["repeat 7 times", "give the pool `pad=same`"]);
    let edit = &actions[1]["edit"]["changes"][URI][0];
    assert_eq!(edit["newText"], "(pad=same)");
    let end = json!({"line": line, "character": character + 5});
    assert_eq!(edit["range"], json!({"start": end, "end": end}));
}

#[test]
fn hover_on_defaults_names_the_layer_and_argument() {
    let (mut server, text) = open("specs/seed/deep_bn.yaml");
    let (line, character) = find(&text, "pad: same");
    let hover = ask(
        &mut server,
        "textDocument/hover",
        json!({"textDocument": {"uri": URI},
               "position": {"line": line, "character": character + 1}}),
    );
    let value = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(
        value.starts_with("**defaults.conv.pad** — `valid`"),
        "{value}"
    );
    let (line, character) = find(&text, "conv: {");
    let hover = ask(
        &mut server,
        "textDocument/hover",
        json!({"textDocument": {"uri": URI},
               "position": {"line": line, "character": character + 1}}),
    );
    let value = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(value.contains("- `filters` = required"), "{value}");
}
