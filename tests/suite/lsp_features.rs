//! Language-server features on the seed and fixture specs, through the server's handler:
//! hover on a repeated group, the shape hint after it, and the quick fixes of a vanished shape.

use crate::common;

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

// ---------------------------------------------------------------------------------------
// Graphs and blocks
// ---------------------------------------------------------------------------------------

/// A small ResNet with blocks: `basic` is called from the model (`basic(16)x3`, `basic(32)x2`)
/// and from `down`'s body (`basic(e)`, once per call of `down`), at three different shapes;
/// `stem` is called once. Non-ASCII comments sit on the lines before and after the calls.
const GRAPH: &str = "# résumé 🚀 — blocks and merges
name: tiny
input: 16x16x3
classes: 10
defaults:
  conv: { pad: same, bias: false }
blocks:
  stem: conv3(16) -> bn relu   # é 🚀
  basic(f, stride=1, act=relu): add(identity, conv3(f, stride=stride) -> bn act -> conv3(f) -> bn) relu
  down(f, e=f*2): |
    add(conv1(e, stride=2) -> bn,
        conv3(f*2, stride=2) -> bn relu -> basic(e)) relu
model: |
  stem                          # é 🚀
  -> basic(16)x3
  -> down(16) -> basic(32)x2
  -> add(identity, conv3(32) -> bn) relu
  -> down(32)
  -> gap -> dense10 softmax
";

fn open_text(text: &str) -> Server {
    let mut server = Server::new();
    let published = server.handle(Message::Notification(Notification::new(
        "textDocument/didOpen".to_string(),
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 1, "text": text}}),
    )));
    assert_eq!(published.len(), 1, "{published:?}");
    server
}

/// The LSP position (line, UTF-16 character) of byte `offset` of `text`.
fn utf16_position(text: &str, offset: usize) -> Value {
    let line_start = text[..offset].rfind('\n').map_or(0, |idx| idx + 1);
    json!({"line": text[..offset].matches('\n').count(),
           "character": text[line_start..offset].encode_utf16().count()})
}

/// The position `delta` bytes into the `nth` (0-based) `needle` of `text`.
fn at(text: &str, needle: &str, nth: usize, delta: usize) -> Value {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .map(|(offset, _)| offset)
        .unwrap_or_else(|| panic!("no {nth}th `{needle}`"));
    utf16_position(text, offset + delta)
}

/// The range of the `nth` `needle` of `text`.
fn range_of(text: &str, needle: &str, nth: usize) -> Value {
    json!({"start": at(text, needle, nth, 0), "end": at(text, needle, nth, needle.len())})
}

fn position_params(position: Value) -> Value {
    json!({"textDocument": {"uri": URI}, "position": position})
}

fn hover_text(server: &mut Server, position: Value) -> String {
    let hover = ask(server, "textDocument/hover", position_params(position));
    hover["contents"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The range `textDocument/definition` answers at `position` (null when there is none).
fn definition(server: &mut Server, position: Value) -> Value {
    let answer = ask(server, "textDocument/definition", position_params(position));
    if answer.is_null() {
        return Value::Null;
    }
    assert_eq!(answer["uri"], URI, "{answer}");
    answer["range"].clone()
}

fn completion_items(server: &mut Server, position: Value) -> Vec<Value> {
    let answer = ask(server, "textDocument/completion", position_params(position));
    answer.as_array().cloned().unwrap_or_default()
}

fn completion_labels(server: &mut Server, position: Value) -> Vec<String> {
    completion_items(server, position)
        .iter()
        .filter_map(|item| item["label"].as_str().map(str::to_string))
        .collect()
}

/// Every inlay hint of the document: (position, label).
fn all_hints(server: &mut Server) -> Vec<(Value, String)> {
    let hints = ask(
        server,
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": URI},
               "range": {"start": {"line": 0, "character": 0},
                         "end": {"line": 1000, "character": 0}}}),
    );
    hints
        .as_array()
        .map(|hints| {
            hints
                .iter()
                .map(|hint| {
                    let label = hint["label"].as_str().unwrap_or_default().to_string();
                    (hint["position"].clone(), label)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_graph_spec_compiles_without_errors() {
    let compiled = strata::compile::compile(GRAPH, "tiny");
    assert!(!compiled.has_errors(), "{:#?}", compiled.diagnostics);
    assert!(compiled.model.is_some());
}

#[test]
fn initialize_advertises_go_to_definition() {
    let mut server = Server::new();
    let init = ask(
        &mut server,
        "initialize",
        json!({"capabilities": {}, "processId": null}),
    );
    assert_eq!(init["capabilities"]["definitionProvider"], true);
}

#[test]
fn definition_goes_from_a_block_call_to_its_signature() {
    let mut server = open_text(GRAPH);
    let basic = range_of(GRAPH, "basic", 0);
    // From the model: on the name, and with the cursor right after it.
    assert_eq!(
        definition(&mut server, at(GRAPH, "basic(16)x3", 0, 2)),
        basic
    );
    assert_eq!(
        definition(&mut server, at(GRAPH, "basic(32)x2", 0, 5)),
        basic
    );
    // From another block's body (a `|` scalar, inside a merge's branch).
    assert_eq!(definition(&mut server, at(GRAPH, "basic(e)", 0, 1)), basic);
    // A call without arguments, before a non-ASCII comment.
    let stem = range_of(GRAPH, "stem", 0);
    assert_eq!(definition(&mut server, at(GRAPH, "  stem   ", 0, 3)), stem);
    let down = range_of(GRAPH, "down", 0);
    assert_eq!(definition(&mut server, at(GRAPH, "down(32)", 0, 0)), down);
    // A layer, a merge and an argument are not references.
    assert_eq!(definition(&mut server, at(GRAPH, "gap", 0, 1)), Value::Null);
    assert_eq!(
        definition(&mut server, at(GRAPH, "add(identity, conv3(32)", 0, 1)),
        Value::Null
    );
    assert_eq!(
        definition(&mut server, at(GRAPH, "(16)x3", 0, 2)),
        Value::Null
    );
}

#[test]
fn definition_goes_from_a_parameter_to_the_signature() {
    let mut server = open_text(GRAPH);
    let signature = "basic(f, stride=1, act=relu)";
    let f = at(GRAPH, signature, 0, 6);
    let f_range = json!({"start": f, "end": at(GRAPH, signature, 0, 7)});
    let stride_range =
        json!({"start": at(GRAPH, signature, 0, 9), "end": at(GRAPH, signature, 0, 15)});
    let act_range =
        json!({"start": at(GRAPH, signature, 0, 19), "end": at(GRAPH, signature, 0, 22)});
    // A lone-word argument (`conv3(f)`), the value of a named argument (`stride=stride`) and a
    // bare stage used as an activation (`bn act`).
    assert_eq!(
        definition(&mut server, at(GRAPH, "conv3(f)", 0, 6)),
        f_range
    );
    assert_eq!(
        definition(&mut server, at(GRAPH, "conv3(f, stride", 0, 6)),
        f_range
    );
    assert_eq!(
        definition(&mut server, at(GRAPH, "stride=stride", 0, 8)),
        stride_range
    );
    assert_eq!(
        definition(&mut server, at(GRAPH, "bn act", 0, 4)),
        act_range
    );
    // The argument's name is not the parameter: it names the layer's argument.
    assert_eq!(
        definition(&mut server, at(GRAPH, "stride=stride", 0, 1)),
        Value::Null
    );
    // In `down`: a word of an expression (`f*2`), a parameter in a merge's branch, and a
    // parameter used in a later parameter's default (`e=f*2`).
    let down = "down(f, e=f*2)";
    let down_f = json!({"start": at(GRAPH, down, 0, 5), "end": at(GRAPH, down, 0, 6)});
    let down_e = json!({"start": at(GRAPH, down, 0, 8), "end": at(GRAPH, down, 0, 9)});
    assert_eq!(
        definition(&mut server, at(GRAPH, "f*2, stride", 0, 0)),
        down_f
    );
    assert_eq!(definition(&mut server, at(GRAPH, "conv1(e", 0, 6)), down_e);
    assert_eq!(definition(&mut server, at(GRAPH, "basic(e)", 0, 6)), down_e);
    assert_eq!(definition(&mut server, at(GRAPH, "e=f*2", 0, 2)), down_f);
}

#[test]
fn definition_counts_utf16_units_after_non_ascii_text_on_the_same_line() {
    // A one-line flow mapping: `é` is 1 UTF-16 unit (2 bytes), `🚀` 2 units (4 bytes).
    let text = "{name: \"é🚀é\", input: 8x8x3, classes: 2, blocks: {\"unit(f)\": \"conv3(f) -> bn relu\"}, model: \"unit(4) -> gap -> dense2 softmax\"}\n";
    let mut server = open_text(text);
    let call = text.find("unit(4)").unwrap_or_default();
    let position = utf16_position(text, call + 1);
    // The call starts 3 units before its byte offset would say (2 + 4 + 2 bytes → 4 units).
    assert_eq!(position["character"], json!(call + 1 - 4));
    let target = definition(&mut server, position);
    assert_eq!(target, range_of(text, "unit", 0));
    assert_eq!(
        target["start"]["character"],
        json!(text.find("unit").unwrap_or(0) - 4)
    );
    let f = text.find("conv3(f)").unwrap_or_default() + 6;
    let parameter = definition(&mut server, utf16_position(text, f));
    assert_eq!(parameter["start"], at(text, "(f)", 0, 1));
    let hover = ask(
        &mut server,
        "textDocument/hover",
        position_params(utf16_position(text, call + 2)),
    );
    assert_eq!(hover["range"], range_of(text, "unit", 1));
}

#[test]
fn completion_offers_blocks_where_layers_go_with_their_signature() {
    let text = GRAPH.replace("  -> down(32)\n", "  -> down(32) -> \n");
    let mut server = open_text(&text);
    let items = completion_items(&mut server, at(&text, "down(32) -> ", 0, 12));
    let detail = |label: &str| {
        items
            .iter()
            .find(|item| item["label"] == label)
            .map(|item| item["detail"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(detail("basic"), "basic(f, stride, act)");
    assert_eq!(detail("down"), "down(f, e)");
    assert_eq!(detail("stem"), "stem()");
    let labels: Vec<&str> = items
        .iter()
        .filter_map(|item| item["label"].as_str())
        .collect();
    for name in [
        "conv", "add", "concat", "mul", "identity", "dwconv", "sepconv", "avgpool",
    ] {
        assert!(labels.contains(&name), "{name} missing: {labels:?}");
    }
    // No parameters outside a block body.
    assert!(!labels.contains(&"f"), "{labels:?}");
}

#[test]
fn completion_inside_a_block_call_offers_its_parameters() {
    // The file does not compile: completion reads the `blocks:` text, not the checker's blocks.
    let text = "input: 8x8x3\nblocks:\n  basic(f, stride=1, act=relu): |\n    conv3(f, stride=stride) act\n  down(c): conv1(c)\nmodel: conv3(8) -> basic(";
    let mut server = open_text(text);
    let items = completion_items(&mut server, utf16_position(text, text.len()));
    let labels: Vec<&str> = items
        .iter()
        .filter_map(|item| item["label"].as_str())
        .collect();
    assert_eq!(labels, ["f", "stride", "act"]);
    assert_eq!(items[1]["insertText"], "stride=");
    assert_eq!(
        items[1]["detail"],
        "parameter of `basic(f, stride=1, act=relu)` (default 1)"
    );
    // Positional and named arguments already given are left out.
    let text = format!("{text}8, act=relu, ");
    let mut server = open_text(&text);
    assert_eq!(
        completion_labels(&mut server, utf16_position(&text, text.len())),
        ["stride"]
    );
    // A block whose name ends in digits is looked up whole.
    let text = "blocks:\n  stage2(c): conv1(c)\nmodel: stage2(";
    let mut server = open_text(text);
    assert_eq!(
        completion_labels(&mut server, utf16_position(text, text.len())),
        ["c"]
    );
}

#[test]
fn completion_inside_a_merge_offers_branches() {
    let text = "input: 8x8x3\nblocks:\n  se(c): mul(identity, gap -> dense(c) sigmoid)\nmodel: conv3(8) -> add(";
    for (typed, layers) in [
        ("", true),
        ("identity, ", true),
        ("identity, conv3(8) ", false),
    ] {
        let text = format!("{text}{typed}");
        let mut server = open_text(&text);
        let labels = completion_labels(&mut server, utf16_position(&text, text.len()));
        if layers {
            for name in ["identity", "conv", "se", "add", "bn"] {
                assert!(labels.contains(&name.to_string()), "{typed:?}: {labels:?}");
            }
        } else {
            // After a layer in a branch: activations and `->`.
            assert!(labels.contains(&"relu".to_string()), "{labels:?}");
            assert!(labels.contains(&"->".to_string()), "{labels:?}");
            assert!(!labels.contains(&"conv".to_string()), "{labels:?}");
        }
        // Never argument names.
        assert!(!labels.contains(&"filters".to_string()), "{labels:?}");
    }
}

#[test]
fn completion_inside_a_block_body_offers_its_parameters_as_values() {
    let text = "input: 8x8x3\nblocks:\n  other(k): conv1(k)\n  unit(f, stride=1, act=relu): |\n    conv3(f) -> bn act  # é 🚀\n    -> conv3(";
    let end = |text: &str| utf16_position(text, text.len());
    let mut server = open_text(text);
    let labels = completion_labels(&mut server, end(text));
    // The conv's argument names, and the block's parameters as values.
    for name in ["filters", "stride", "pad", "f", "act"] {
        assert!(labels.contains(&name.to_string()), "{name}: {labels:?}");
    }
    assert!(!labels.contains(&"k".to_string()), "{labels:?}");
    // After `name=`: the argument's words and the parameters.
    let named = format!("{text}f, pad=");
    let mut server = open_text(&named);
    assert_eq!(
        completion_labels(&mut server, end(&named)),
        ["valid", "same", "f", "stride", "act"]
    );
    // At a stage: layers, other blocks (not the block itself) and the parameters.
    let stage = text.replace("-> conv3(", "-> ");
    let mut server = open_text(&stage);
    let labels = completion_labels(&mut server, end(&stage));
    for name in ["conv", "other", "f", "act"] {
        assert!(labels.contains(&name.to_string()), "{name}: {labels:?}");
    }
    assert!(!labels.contains(&"unit".to_string()), "{labels:?}");
    // On a plain one-line body, after a layer: activations, parameters and `->`.
    let plain = "blocks:\n  unit(f, act=relu): conv3(f) ";
    let mut server = open_text(plain);
    let labels = completion_labels(&mut server, end(plain));
    for name in ["relu", "act", "->"] {
        assert!(labels.contains(&name.to_string()), "{name}: {labels:?}");
    }
    assert!(!labels.contains(&"conv".to_string()), "{labels:?}");
    // On the signature itself: nothing.
    let key = "blocks:\n  unit(f";
    let mut server = open_text(key);
    assert_eq!(
        completion_labels(&mut server, end(key)),
        Vec::<String>::new()
    );
}

#[test]
fn hover_on_a_repeated_block_call_shows_the_call_s_shape_and_parameters() {
    let mut server = open_text(GRAPH);
    let value = hover_text(&mut server, at(GRAPH, "basic(16)x3", 0, 1));
    println!("{value}");
    assert!(
        value.starts_with("**block** `basic(f, stride=1, act=relu)`"),
        "{value}"
    );
    assert!(
        value.contains("`basic(16)` x3: 3 calls → 18 layers (6 per call)"),
        "{value}"
    );
    assert!(value.contains("**shape** 16x16x16 → 16x16x16"), "{value}");
    // Per call: two 3x3 convolutions of 16 filters without bias, two batch norms.
    let per_call = 2 * 16 * 16 * 9 + 2 * 4 * 16;
    let trainable = 3 * (2 * 16 * 16 * 9 + 2 * 2 * 16);
    assert!(
        value.contains(&format!(
            "**params** {} ({trainable} trainable, {} non-trainable)",
            3 * per_call,
            3 * 2 * 2 * 16
        )),
        "{value}"
    );
    let value = hover_text(&mut server, at(GRAPH, "basic(32)x2", 0, 1));
    assert!(value.contains("**shape** 8x8x32 → 8x8x32"), "{value}");
}

#[test]
fn hover_on_a_block_call_inside_a_body_shows_each_expansion() {
    let mut server = open_text(GRAPH);
    let value = hover_text(&mut server, at(GRAPH, "basic(e)", 0, 2));
    println!("{value}");
    assert!(value.contains("`basic(e)` → 6 layers"), "{value}");
    assert!(value.contains("expanded 2 times"), "{value}");
    assert!(
        value.contains("| 1 | `down(16)` | 8x8x32 → 8x8x32 |"),
        "{value}"
    );
    assert!(
        value.contains("| 1 | `down(32)` | 4x4x64 → 4x4x64 |"),
        "{value}"
    );
    // `stem` is called once: one shape.
    let value = hover_text(&mut server, at(GRAPH, "  stem   ", 0, 3));
    assert!(value.contains("**shape** 16x16x3 → 16x16x16"), "{value}");
}

#[test]
fn hover_on_a_block_signature_lists_parameters_and_calls() {
    let mut server = open_text(GRAPH);
    let value = hover_text(&mut server, at(GRAPH, "basic(f,", 0, 2));
    println!("{value}");
    assert!(value.contains("- `f` (required)"), "{value}");
    assert!(value.contains("- `stride` = `1`"), "{value}");
    assert!(value.contains("- `act` = `relu`"), "{value}");
    assert!(
        value.contains("7 calls in this model, 6 layers each (42 in all)"),
        "{value}"
    );
    assert!(
        value.contains("| `basic(16)` | 3 | 16x16x16 → 16x16x16 |"),
        "{value}"
    );
    assert!(
        value.contains("| `basic(e)` in `down(16)` | 1 | 8x8x32 → 8x8x32 |"),
        "{value}"
    );
    assert!(
        value.contains("| `basic(e)` in `down(32)` | 1 | 4x4x64 → 4x4x64 |"),
        "{value}"
    );
    assert!(
        value.contains("| `basic(32)` | 2 | 8x8x32 → 8x8x32 |"),
        "{value}"
    );
    let value = hover_text(&mut server, at(GRAPH, "down(f, e=f*2)", 0, 1));
    assert!(value.contains("- `e` = `f*2`"), "{value}");
    assert!(value.contains("2 calls in this model"), "{value}");
}

#[test]
fn hover_on_a_merge_shows_each_branch_s_shape() {
    let mut server = open_text(GRAPH);
    let value = hover_text(&mut server, at(GRAPH, "add(identity, conv3(32)", 0, 1));
    println!("{value}");
    assert!(
        value.starts_with("**add** — the sum of its branches"),
        "{value}"
    );
    assert!(value.contains("| 1 `identity` | 8x8x32 |"), "{value}");
    assert!(
        value.contains("| 2 `conv3(32) -> bn` | 8x8x32 |"),
        "{value}"
    );
    assert!(
        value.contains("**shape** (8x8x32, 8x8x32) → 8x8x32, then `relu`"),
        "{value}"
    );
    let hover = ask(
        &mut server,
        "textDocument/hover",
        position_params(at(GRAPH, "add(identity, conv3(32)", 0, 1)),
    );
    assert_eq!(hover["range"], range_of(GRAPH, "add", 2));
    // In a body called at three shapes: one row per form.
    let value = hover_text(&mut server, at(GRAPH, "add(identity, conv3(f", 0, 1));
    println!("{value}");
    assert!(
        value.contains("7 copies (one per repetition or block call) in 3 forms"),
        "{value}"
    );
    assert!(
        value.contains("| 3 | `basic(16)` ×3 | (16x16x16, 16x16x16) → 16x16x16 |"),
        "{value}"
    );
}

#[test]
fn hover_on_a_layer_in_a_block_body_shows_the_forms_of_its_calls() {
    let mut server = open_text(GRAPH);
    let value = hover_text(&mut server, at(GRAPH, "conv3(f, stride=stride)", 0, 1));
    println!("{value}");
    assert!(value.starts_with("**conv** — "), "{value}");
    // Arguments every copy shares stay in the table; `filters` varies by call.
    assert!(value.contains("| `stride` | `1x1` |"), "{value}");
    assert!(!value.contains("| `filters` | `16` |"), "{value}");
    assert!(
        value.contains("7 copies (one per repetition or block call) in 3 forms"),
        "{value}"
    );
    assert!(
        value.contains("| 3 | `basic(16)` ×3 | `16` | 16x16x16 → 16x16x16 | 2304 |"),
        "{value}"
    );
    assert!(
        value.contains(
            "| 3 | `basic(e)` in `down(16)`, `basic(32)` ×2 | `32` | 8x8x32 → 8x8x32 | 9216 |"
        ),
        "{value}"
    );
    // In a block called once, a plain hover.
    let value = hover_text(&mut server, at(GRAPH, "conv3(16) -> bn relu", 0, 1));
    assert!(value.contains("**shape** 16x16x3 → 16x16x16"), "{value}");
    assert!(!value.contains("copies"), "{value}");
    // A parameter used in the body.
    let value = hover_text(&mut server, at(GRAPH, "stride=stride", 0, 9));
    assert!(
        value.starts_with("**parameter** `stride` of block `basic(f, stride=1, act=relu)`"),
        "{value}"
    );
    assert!(value.contains("default `1`"), "{value}");
}

#[test]
fn hover_in_a_block_that_is_never_called_says_so() {
    let text = GRAPH.replace("  stem: ", "  idle: conv3(8) -> bn\n  stem: ");
    let mut server = open_text(&text);
    let value = hover_text(&mut server, at(&text, "conv3(8) -> bn", 0, 1));
    assert!(value.contains("block `idle` is not called"), "{value}");
    let value = hover_text(&mut server, at(&text, "idle", 0, 1));
    assert!(value.contains("not called in this model"), "{value}");
}

#[test]
fn inlay_hints_follow_block_calls_merge_branches_and_consistent_bodies() {
    let mut server = open_text(GRAPH);
    let hints = all_hints(&mut server);
    let hint_after =
        |needle: &str, nth: usize| (at(GRAPH, needle, nth, needle.len()), String::new());
    let has = |needle: &str, nth: usize, shape: &str| {
        let (position, _) = hint_after(needle, nth);
        hints.contains(&(position, format!(": {shape}")))
    };
    let none_after = |needle: &str, nth: usize| {
        let (position, _) = hint_after(needle, nth);
        !hints.iter().any(|(at, _)| *at == position)
    };
    // The model: block calls (repeated too) and a merge with its branches.
    assert!(has("  stem", 1, "16x16x16"), "{hints:?}");
    assert!(has("basic(16)x3", 0, "16x16x16"), "{hints:?}");
    assert!(has("down(16)", 0, "8x8x32"), "{hints:?}");
    assert!(has("basic(32)x2", 0, "8x8x32"), "{hints:?}");
    assert!(
        has("add(identity, conv3(32) -> bn) relu", 0, "8x8x32"),
        "{hints:?}"
    );
    assert!(has("add(identity", 1, "8x8x32"), "{hints:?}");
    assert!(has("conv3(32) -> bn", 0, "8x8x32"), "{hints:?}");
    assert!(has("down(32)", 0, "4x4x64"), "{hints:?}");
    // `stem` is called once: hints in its body.
    assert!(has("conv3(16)", 0, "16x16x16"), "{hints:?}");
    assert!(has("conv3(16) -> bn relu", 0, "16x16x16"), "{hints:?}");
    // `basic` and `down` are called at different shapes: no hints in their bodies.
    assert!(none_after("conv3(f)", 0), "{hints:?}");
    assert!(none_after("basic(e)", 0), "{hints:?}");
    assert!(
        none_after(
            "add(identity, conv3(f, stride=stride) -> bn act -> conv3(f) -> bn) relu",
            0
        ),
        "{hints:?}"
    );
    // Hints lie inside the requested range only.
    let line = at(GRAPH, "basic(16)x3", 0, 0)["line"].clone();
    let ranged = ask(
        &mut server,
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": URI},
               "range": {"start": {"line": line, "character": 0},
                         "end": {"line": line, "character": 99}}}),
    );
    assert_eq!(ranged.as_array().map(Vec::len), Some(1), "{ranged}");
}

#[test]
fn inlay_hints_in_block_bodies_need_every_call_s_shape() {
    // Called twice at one shape: hints; a shape error later in the model: none in bodies.
    let text = "input: 8x8x3\nblocks:\n  unit(f): conv3(f, pad=same) -> bn relu\nmodel: unit(4) -> unit(4) -> gap -> dense2 softmax\n";
    let mut server = open_text(text);
    let hints = all_hints(&mut server);
    let after = |needle: &str| at(text, needle, 0, needle.len());
    assert!(
        hints.contains(&(after("conv3(f, pad=same)"), ": 8x8x4".to_string())),
        "{hints:?}"
    );
    let broken = text.replace("-> gap", "-> pool9 -> gap");
    let mut server = open_text(&broken);
    let hints = all_hints(&mut server);
    assert!(
        !hints.iter().any(|(position, _)| position["line"] == 2),
        "{hints:?}"
    );
    assert!(
        hints.contains(&(at(&broken, "unit(4)", 1, 7), ": 8x8x4".to_string())),
        "{hints:?}"
    );
}

#[test]
fn hover_on_a_group_in_a_block_body_shows_each_expansion() {
    let text = "input: 8x8x3\nblocks:\n  twice(f): (conv3(f, pad=same) -> bn relu)x2\nmodel: twice(4) -> twice(8) -> gap -> dense2 softmax\n";
    let mut server = open_text(text);
    let value = hover_text(&mut server, at(text, ")x2", 0, 2));
    assert!(
        value.starts_with("**group** x2 → 4 layers: conv3(f, pad=same), bn relu …"),
        "{value}"
    );
    assert!(
        value.contains("expanded 2 times (once per call of the block it is in) in 2 forms"),
        "{value}"
    );
    assert!(
        value.contains("| 1 | `twice(4)` | 8x8x3 → 8x8x4 |"),
        "{value}"
    );
    assert!(
        value.contains("| 1 | `twice(8)` | 8x8x4 → 8x8x8 |"),
        "{value}"
    );
}
