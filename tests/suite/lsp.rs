//! The language server end to end: the built `strata lsp` binary driven through a real
//! JSON-RPC session over pipes, with Content-Length framing. Every read has a timeout, so a
//! server that hangs fails the test instead of stalling it.

use crate::common;

use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
const URI: &str = "file:///work/specs/demo.strata.yaml";

/// Non-ASCII text before the errors: on earlier lines (`é` is 2 bytes and 1 UTF-16 unit, `🚀`
/// 4 bytes and 2 units) and on the error's own line (the `data:` line).
const V1: &str = "# spec with é and 🚀 — comments before the errors
input: 28x28x1
classes: 10
model: |
  bn # é 🚀 here too
  -> cnov3(8) relu -> pool2
  -> dense2 softmax
data: { train: \"dé🚀/x\", validation_spilt: 0.2 }
";

const V2: &str = "# spec with é and 🚀 — comments before the errors
input: 28x28x1
classes: 10
model: |
  bn # é 🚀 here too
  -> conv3(8) relu -> pool2
  -> dense2 softmax
data: { train: \"dé🚀/x\", validation_split: 0.2 }
";

struct Session {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Session {
    fn start() -> Session {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("strata lsp starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = common::read_frame(&mut reader) {
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its whole response (other messages are skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.wait_for(|message| message["id"] == json!(id))
    }

    fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self
                .messages
                .recv_timeout(TIMEOUT)
                .expect("the server answers in time");
            if wanted(&message) {
                return message;
            }
        }
    }

    fn diagnostics(&self) -> Value {
        let message =
            self.wait_for(|message| message["method"] == "textDocument/publishDiagnostics");
        assert_eq!(message["params"]["uri"], URI);
        message["params"].clone()
    }
}

fn range(start: (u32, u32), end: (u32, u32)) -> Value {
    json!({"start": {"line": start.0, "character": start.1},
           "end": {"line": end.0, "character": end.1}})
}

fn position(line: u32, character: u32) -> Value {
    json!({"textDocument": {"uri": URI}, "position": {"line": line, "character": character}})
}

fn by_code<'a>(diagnostics: &'a Value, code: &str) -> &'a Value {
    diagnostics["diagnostics"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["code"] == code))
        .unwrap_or_else(|| panic!("no {code} in {diagnostics:#}"))
}

fn labels(response: &Value) -> Vec<String> {
    response["result"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["label"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_whole_session_over_pipes() {
    let mut session = Session::start();
    let init = session.request("initialize", json!({"capabilities": {}, "processId": null}));
    let capabilities = &init["result"]["capabilities"];
    assert_eq!(capabilities["textDocumentSync"]["change"], 1);
    assert_eq!(capabilities["hoverProvider"], true);
    session.notify("initialized", json!({}));

    // didOpen → diagnostics at exact UTF-16 ranges.
    session.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 1, "text": V1}}),
    );
    let published = session.diagnostics();
    assert_eq!(published["version"], 1);
    let unknown_layer = by_code(&published, "strata::layer::unknown");
    assert_eq!(unknown_layer["range"], range((5, 5), (5, 9)));
    assert_eq!(unknown_layer["severity"], 1);
    assert_eq!(unknown_layer["source"], "strata");
    let href = unknown_layer["codeDescription"]["href"]
        .as_str()
        .unwrap_or_default();
    assert!(
        href.ends_with("docs/diagnostics.md#stratalayerunknown"),
        "{href}"
    );
    // `data: { train: "dé🚀/x", ` is 25 UTF-16 units (24 characters, 28 bytes).
    let unknown_key = by_code(&published, "strata::spec::unknown_key");
    assert_eq!(unknown_key["range"], range((7, 25), (7, 41)));

    // didChange (full text) → new diagnostics; the head error has related information.
    session.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2},
               "contentChanges": [{"text": V2}]}),
    );
    let published = session.diagnostics();
    assert_eq!(published["version"], 2);
    assert_eq!(published["diagnostics"].as_array().map(Vec::len), Some(1));
    let head = by_code(&published, "strata::model::head");
    assert_eq!(head["range"], range((6, 5), (6, 11)));
    let related = &head["relatedInformation"][0];
    assert_eq!(related["location"]["range"], range((2, 9), (2, 11)));
    assert_eq!(related["message"], "10 classes");

    // didSave (with the text) → diagnostics again.
    session.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": URI}, "text": V2}),
    );
    let published = session.diagnostics();
    assert_eq!(published["diagnostics"].as_array().map(Vec::len), Some(1));

    // Hover on a layer: kind, arguments with defaults, shapes, parameters.
    let hover = session.request("textDocument/hover", position(5, 7));
    let text = hover["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("2-D convolution"), "{text}");
    assert!(text.contains("| `pad` | `valid` |"), "{text}");
    assert!(text.contains("28x28x1 → 26x26x8"), "{text}");
    assert!(text.contains("**params** 80"), "{text}");
    assert_eq!(hover["result"]["range"], range((5, 5), (5, 13)));
    // Hover on a spec key.
    let hover = session.request("textDocument/hover", position(2, 3));
    let text = hover["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("number of classes"), "{text}");

    // Completion: argument names inside a call, layer names after `->`.
    let inside_call = labels(&session.request("textDocument/completion", position(5, 12)));
    assert!(
        inside_call.contains(&"stride".to_string()),
        "{inside_call:?}"
    );
    let after_arrow = labels(&session.request("textDocument/completion", position(6, 5)));
    assert!(
        after_arrow.contains(&"maxpool".to_string()),
        "{after_arrow:?}"
    );

    // Inlay hints: the shape after each stage.
    let hints = session.request(
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": URI}, "range": range((0, 0), (9, 0))}),
    );
    let hints: Vec<(u64, u64, String)> = hints["result"]
        .as_array()
        .map(|hints| {
            hints
                .iter()
                .map(|hint| {
                    (
                        hint["position"]["line"].as_u64().unwrap_or(99),
                        hint["position"]["character"].as_u64().unwrap_or(99),
                        hint["label"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected = [
        (4, 4, ": 28x28x1"),
        (5, 18, ": 26x26x8"),
        (5, 27, ": 13x13x8"),
        (6, 19, ": 2"),
    ];
    let expected: Vec<(u64, u64, String)> = expected
        .iter()
        .map(|(line, character, label)| (*line, *character, label.to_string()))
        .collect();
    assert_eq!(hints, expected);

    // Code action: the head's fix, as an edit at the right UTF-16 range.
    let actions = session.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": URI}, "range": range((6, 6), (6, 6)),
               "context": {"diagnostics": []}}),
    );
    let action = &actions["result"][0];
    assert_eq!(action["title"], "write `dense10`");
    assert_eq!(action["kind"], "quickfix");
    let edit = &action["edit"]["changes"][URI][0];
    assert_eq!(edit["range"], range((6, 5), (6, 11)));
    assert_eq!(edit["newText"], "dense10");

    // Unknown requests, bad parameters and garbage frames get answers, not a crash.
    let unknown = session.request("textDocument/frobnicate", json!({}));
    assert_eq!(unknown["error"]["code"], -32601);
    let bad = session.request("textDocument/hover", json!({"nonsense": true}));
    assert_eq!(bad["error"]["code"], -32602);
    session.send_raw(b"Content-Length: 7\r\n\r\n{not js");
    let not_open = session.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": "file:///nowhere.yaml"},
               "position": {"line": 0, "character": 0}}),
    );
    assert_eq!(not_open["result"], Value::Null);

    let shutdown = session.request("shutdown", Value::Null);
    assert_eq!(shutdown["result"], Value::Null);
    session.notify("exit", Value::Null);
    let status = wait_with_timeout(&mut session.child);
    assert_eq!(status, Some(0));
}

#[test]
fn a_code_action_offers_the_did_you_mean_after_non_ascii_text() {
    let mut session = Session::start();
    session.request("initialize", json!({"capabilities": {}}));
    session.notify("initialized", json!({}));
    session.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 1, "text": V1}}),
    );
    session.diagnostics();
    let actions = session.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": URI}, "range": range((7, 30), (7, 30)),
               "context": {"diagnostics": []}}),
    );
    let action = &actions["result"][0];
    assert_eq!(action["title"], "replace with `validation_split`");
    let edit = &action["edit"]["changes"][URI][0];
    assert_eq!(edit["range"], range((7, 25), (7, 41)));
    // Exit without shutdown: the protocol's abnormal end, status 1.
    session.notify("exit", Value::Null);
    assert_eq!(wait_with_timeout(&mut session.child), Some(1));
}

fn wait_with_timeout(child: &mut Child) -> Option<i32> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    None
}

#[test]
fn every_code_has_a_docs_section_where_its_link_points() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diagnostics.md"))
        .expect("docs/diagnostics.md");
    let codes = strata::diagnostics::codes::ALL
        .iter()
        .chain(strata::diagnostics::codes::DATA)
        .chain(strata::diagnostics::codes::RUN)
        .chain(strata::diagnostics::codes::CHECKPOINT);
    for code in codes {
        assert!(
            docs.lines().any(|line| line == format!("## {code}")),
            "docs/diagnostics.md has no section `## {code}`"
        );
        let link = strata::lsp::docs_link(code);
        assert!(link.ends_with(&format!("#{}", strata::lsp::anchor(code))));
    }
    assert_eq!(
        strata::lsp::anchor("strata::lint::softmax_not_last"),
        "stratalintsoftmax_not_last"
    );
}
