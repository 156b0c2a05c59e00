//! Hostile input to the spec loader and the language server's transport: deep YAML, huge
//! files, byte-order marks, duplicate keys, overflowing numbers, bytes that are not UTF-8,
//! endless header lines and bodies, messages of the wrong shape, requests after `shutdown`.
//! Each case asserts the answer (the diagnostic code, the error code or the exit status), that
//! nothing panics, and that the answer comes within a time bound; the bounds are hang guards
//! generous enough for a loaded two-core machine, not speed targets. Allocation is counted per
//! thread by a wrapping allocator, so the transport's memory limits are checked, not assumed.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::peak_allocation;
use lsp_server::{ErrorCode, Message, Notification, Request, RequestId};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{json, Value};
use std::io::{self, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata::diagnostics::codes;
use strata::lsp::transport::{read_message, Incoming, MAX_BODY, MAX_HEADER_LINE};
use strata::lsp::Server;
use strata::spec::{MAX_SPEC_BYTES, MAX_YAML_NESTING};

/// The bound on one check of one spec, however hostile.
const HANG_GUARD: Duration = Duration::from_secs(2);

#[test]
fn the_allocation_counter_counts() {
    let (kept, peak) = peak_allocation(|| vec![1u8; 1 << 20]);
    assert_eq!(kept.len(), 1 << 20);
    assert!(peak >= 1 << 20, "{peak}");
    let ((), peak) = peak_allocation(|| drop(vec![1u8; 4 << 20]));
    assert!(peak >= 4 << 20, "{peak}");
}

// ---------------------------------------------------------------------------------------------
// The spec loader

fn compile_timed(text: &str) -> strata::Compiled {
    let start = Instant::now();
    let compiled = strata::compile(text, "hostile");
    assert!(
        start.elapsed() < HANG_GUARD,
        "took {:?} on {} bytes",
        start.elapsed(),
        text.len()
    );
    compiled
}

fn codes_of(compiled: &strata::Compiled) -> Vec<&'static str> {
    compiled.diagnostics.iter().map(|d| d.code).collect()
}

/// The text under a diagnostic's primary label.
fn labelled<'a>(text: &'a str, compiled: &strata::Compiled, idx: usize) -> &'a str {
    let label = compiled.diagnostics[idx]
        .primary()
        .expect("a primary label");
    &text[label.span.offset..label.span.end()]
}

#[test]
fn deep_yaml_is_refused_before_any_parser_runs() {
    let flow = |depth: usize| format!("input: 8x8x1\nmodel: dense2\nx: {}1\n", "[".repeat(depth));
    let flow_maps = |depth: usize| format!("input: 8x8x1\nx: {}\n", "{a: ".repeat(depth));
    let compact = |depth: usize| format!("input: 8x8x1\nx:\n{}1\n", "- ".repeat(depth));
    let indented = |depth: usize| -> String {
        (0..depth)
            .map(|idx| format!("{}k:\n", " ".repeat(idx)))
            .collect()
    };
    for (name, text) in [
        ("flow 32k", flow(32_000)),
        ("flow 500k", flow(500_000)),
        ("flow maps 100k", flow_maps(100_000)),
        ("compact sequences 100k", compact(100_000)),
        ("indentation 1400", indented(1_400)),
        ("just past the limit", flow(MAX_YAML_NESTING + 1)),
    ] {
        assert!(text.len() <= MAX_SPEC_BYTES, "{name}: {} bytes", text.len());
        let compiled = compile_timed(&text);
        assert_eq!(codes_of(&compiled), [codes::YAML_SYNTAX], "{name}");
        let message = &compiled.diagnostics[0].message;
        assert!(message.contains("nests more than"), "{name}: {message}");
    }
    // Nesting at the limit's half is ordinary YAML, checked as usual.
    let depth = MAX_YAML_NESTING / 2;
    let text = format!(
        "input: 8x8x1\nmodel: dense2 softmax\nname: {}\n",
        "[".repeat(depth) + &"]".repeat(depth)
    );
    assert_eq!(codes_of(&compile_timed(&text)), [codes::SPEC_INVALID_VALUE]);
}

#[test]
fn a_spec_over_the_size_limit_is_refused_at_once() {
    // 1.2 million stages, 12 MB: refused before YAML or the layer limit sees it.
    let mut text = String::from("input: 8x8x1\nmodel: |\n  dense2");
    while text.len() < 12_000_000 {
        text.push_str("\n  -> dense2");
    }
    let start = Instant::now();
    let (compiled, peak) = peak_allocation(|| strata::compile(&text, "huge"));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(peak < 1 << 20, "{peak} bytes allocated");
    assert_eq!(codes_of(&compiled), [codes::SPEC_TOO_LARGE]);
    assert_eq!(labelled(&text, &compiled, 0), "input: 8x8x1");
    // At the limit itself the file is read (and the layer limit answers).
    text.truncate(MAX_SPEC_BYTES);
    let compiled = compile_timed(&text);
    assert!(!codes_of(&compiled).contains(&codes::SPEC_TOO_LARGE));
    assert!(
        codes_of(&compiled).contains(&codes::REPEAT_COUNT),
        "{:?}",
        codes_of(&compiled)
    );
}

#[test]
fn a_byte_order_mark_is_accepted_and_spans_still_fit() {
    let clean = "\u{feff}input: 8x8x1\nmodel: dense2 softmax\n";
    let compiled = compile_timed(clean);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let typo = "\u{feff}input: 8x8x1\nmodel: dense2 sofmax\ntrain: { lr: fast }\n";
    let compiled = compile_timed(typo);
    let mut found: Vec<(&str, &str)> = (0..compiled.diagnostics.len())
        .map(|idx| {
            (
                compiled.diagnostics[idx].code,
                labelled(typo, &compiled, idx),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (codes::LAYER_UNKNOWN, "sofmax"),
            (codes::MODEL_HEAD, "dense2"),
            (codes::SPEC_INVALID_VALUE, "fast")
        ]
    );
    // A syntax error after the mark points at the right character too.
    let broken = "\u{feff}input: 8x8x1\nmodel: [dense2\n";
    let compiled = compile_timed(broken);
    assert_eq!(codes_of(&compiled), [codes::YAML_SYNTAX]);
    let label = compiled.diagnostics[0].primary().expect("label");
    assert!(
        label.span.offset >= broken.find('[').unwrap_or(0),
        "{label:?}"
    );
}

#[test]
fn a_duplicate_key_points_at_the_second_and_names_the_first() {
    let text = "input: 8x8x1\nmodel: dense2 softmax\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n";
    let compiled = compile_timed(text);
    assert_eq!(codes_of(&compiled), [codes::YAML_SYNTAX]);
    let diagnostic = &compiled.diagnostics[0];
    assert!(
        diagnostic.message.contains("`lr`"),
        "{}",
        diagnostic.message
    );
    let second = text.rfind("lr").unwrap_or(0);
    let first = text.find("lr").unwrap_or(0);
    let spans: Vec<(usize, bool)> = diagnostic
        .labels
        .iter()
        .map(|label| (label.span.offset, label.primary))
        .collect();
    assert_eq!(spans, [(second, true), (first, false)]);
    // Top-level and flow duplicates too.
    let text = "input: 8x8x1\nmodel: dense2 softmax\ninput: 4x4x1\n";
    let compiled = compile_timed(text);
    let label = compiled.diagnostics[0].primary().expect("label");
    assert_eq!(label.span.offset, text.rfind("input").unwrap_or(0));
    let text = "input: 8x8x1\nmodel: dense2 softmax\ndata: { rescale: 1, rescale: 2 }\n";
    let compiled = compile_timed(text);
    assert_eq!(codes_of(&compiled), [codes::YAML_SYNTAX]);
    let label = compiled.diagnostics[0].primary().expect("label");
    assert_eq!(label.span.offset, text.rfind("rescale").unwrap_or(0));
}

#[test]
fn every_number_in_a_spec_has_a_finite_range() {
    let base = "input: 8x8x1\nmodel: dense2 softmax\n";
    for (setting, value) in [
        ("data: { rescale: VALUE }", "1e39"),
        ("data: { rescale: VALUE }", "1001"),
        ("data: { rescale: VALUE }", "1e39/1"),
        ("data: { rescale: VALUE }", ".inf"),
        ("data: { rescale: VALUE }", ".nan"),
        ("train: { lr: VALUE }", "1e39"),
        ("train: { lr: VALUE }", "11"),
        ("train: { lr: VALUE }", ".nan"),
        ("train: { momentum: VALUE }", "1e39"),
        ("train: { weight_decay: VALUE }", ".inf"),
        ("train: { label_smoothing: VALUE }", ".nan"),
        ("train: { class_weight: { a: VALUE } }", "1e300"),
        ("train: { reduce_lr_on_plateau: { min_lr: VALUE } }", "1e39"),
        (
            "train: { reduce_lr_on_plateau: { min_delta: VALUE } }",
            ".inf",
        ),
        ("train: { reduce_lr_on_plateau: { factor: VALUE } }", ".nan"),
        ("train: { early_stopping: { min_delta: VALUE } }", ".inf"),
        (
            "train: { schedule: { kind: cosine, warmup_epochs: VALUE } }",
            ".inf",
        ),
        (
            "train: { schedule: { kind: exponential, rate: VALUE } }",
            "1e39",
        ),
        ("data: { validation_split: VALUE }", ".nan"),
        ("augment: { zoom: VALUE }", "1e39"),
    ] {
        let text = format!("{base}{}\n", setting.replace("VALUE", value));
        let compiled = compile_timed(&text);
        assert_eq!(
            codes_of(&compiled),
            [codes::SPEC_INVALID_VALUE],
            "{setting} with {value}"
        );
        assert_eq!(labelled(&text, &compiled, 0), value, "{setting}");
    }
    // The layer arguments of type float are bounded by the catalogue.
    for model in [
        "dropout(1e39)",
        "leakyrelu(alpha=1e39)",
        "elu(alpha=1e7)",
        "bn(eps=1e39)",
        "bn(momentum=1e39)",
    ] {
        let text = format!("input: 8x8x1\nmodel: dense2 -> {model} -> dense2 softmax\n");
        let compiled = compile_timed(&text);
        assert_eq!(codes_of(&compiled), [codes::LAYER_ARGUMENT], "{model}");
    }
    // The bounds themselves are accepted.
    for setting in [
        "data: { rescale: 1000 }",
        "data: { rescale: 1/255 }",
        "train: { lr: 10 }",
        "train: { class_weight: { a: 1000000, b: 1 } }",
        "train: { reduce_lr_on_plateau: { min_lr: 10 } }",
    ] {
        let compiled = compile_timed(&format!("{base}{setting}\n"));
        assert!(
            compiled.diagnostics.is_empty(),
            "{setting}: {:?}",
            compiled.diagnostics
        );
    }
}

#[test]
fn strata_check_answers_hostile_files_with_exit_status_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text, code) in [
        (
            "deep.yaml",
            format!("input: 8x8x1\nx: {}\n", "[".repeat(100_000)),
            codes::YAML_SYNTAX,
        ),
        (
            "huge.yaml",
            format!("input: 8x8x1\n#{}\n", "x".repeat(2 * MAX_SPEC_BYTES)),
            codes::SPEC_TOO_LARGE,
        ),
        (
            "rescale.yaml",
            "input: 8x8x1\nmodel: dense2 softmax\ndata: { rescale: 1e39 }\n".to_string(),
            codes::SPEC_INVALID_VALUE,
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).expect("write spec");
        let start = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["check", "--format", "json"])
            .arg(&path)
            .output()
            .expect("strata runs");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: {:?}",
            start.elapsed()
        );
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(code), "{name}: {stdout}");
    }
    let path = dir.path().join("bom.yaml");
    std::fs::write(&path, "\u{feff}input: 8x8x1\nmodel: dense2 softmax\n").expect("write spec");
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("strata runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The language server, in process

const URI: &str = "file:///specs/hostile.yaml";

fn did_change(version: i32, text: &str) -> Message {
    Message::Notification(Notification::new(
        "textDocument/didChange".to_string(),
        json!({"textDocument": {"uri": URI, "version": version},
               "contentChanges": [{"text": text}]}),
    ))
}

fn request(id: i32, method: &str, params: Value) -> Message {
    Message::Request(Request::new(
        RequestId::from(id),
        method.to_string(),
        params,
    ))
}

#[test]
fn every_keystroke_on_a_deeply_nested_spec_answers_fast() {
    let mut server = Server::new();
    let mut text = format!(
        "input: 8x8x1\nmodel: dense2 softmax\nx: {}",
        "[".repeat(100_000)
    );
    server.handle(Message::Notification(Notification::new(
        "textDocument/didOpen".to_string(),
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 0, "text": text}}),
    )));
    let start = Instant::now();
    for version in 1..=50 {
        text.push(if version % 2 == 0 { '[' } else { '{' });
        let answers = server.handle(did_change(version, &text));
        let [Message::Notification(published)] = answers.as_slice() else {
            panic!("no diagnostics: {answers:?}");
        };
        let code = &published.params["diagnostics"][0]["code"];
        assert_eq!(code, codes::YAML_SYNTAX);
        let position =
            json!({"textDocument": {"uri": URI}, "position": {"line": 2, "character": 50_000}});
        for (id, method) in [(1, "textDocument/hover"), (2, "textDocument/completion")] {
            let answers = server.handle(request(id, method, position.clone()));
            let [Message::Response(response)] = answers.as_slice() else {
                panic!("no response: {answers:?}");
            };
            assert!(response.error.is_none(), "{response:?}");
        }
    }
    // 50 keystrokes, each with a hover and a completion, on a 100 KB line.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn requests_after_shutdown_are_invalid() {
    let mut server = Server::new();
    let answers = server.handle(request(1, "shutdown", Value::Null));
    let [Message::Response(response)] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert!(response.error.is_none());
    for (id, method) in [
        (2, "textDocument/hover"),
        (3, "shutdown"),
        (4, "initialize"),
    ] {
        let answers = server.handle(request(id, method, json!({})));
        let [Message::Response(response)] = answers.as_slice() else {
            panic!("{answers:?}");
        };
        let code = response.error.as_ref().map(|error| error.code);
        assert_eq!(code, Some(ErrorCode::InvalidRequest as i32), "{method}");
    }
    assert!(server.handle(did_change(1, "input: 8x8x1\n")).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The transport

/// Reads every frame of `reader`, returning what came and the log lines.
fn read_all(reader: impl Read) -> (Vec<Incoming>, Vec<String>) {
    let mut reader = BufReader::new(reader);
    let mut notes = Vec::new();
    let mut found = Vec::new();
    loop {
        match read_message(&mut reader, &mut |note| notes.push(note)) {
            Ok(Incoming::End) => return (found, notes),
            Ok(incoming) => found.push(incoming),
            Err(err) => panic!("read error: {err}"),
        }
    }
}

fn frame(body: &str) -> Vec<u8> {
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#;

#[test]
fn a_300_megabyte_header_line_is_read_past_in_constant_memory() {
    let line = io::repeat(b'x').take(300 << 20);
    let stream = io::Cursor::new(b"Content-Type: ".to_vec())
        .chain(line)
        .chain(io::Cursor::new(b"\r\n".to_vec()))
        .chain(io::Cursor::new(frame(INITIALIZED)));
    let start = Instant::now();
    let ((found, notes), peak) = peak_allocation(|| read_all(stream));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(peak < 256 * 1024, "{peak} bytes allocated");
    assert!(
        matches!(found.as_slice(), [Incoming::Message(_)]),
        "{found:?}"
    );
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[test]
fn a_body_over_the_limit_or_longer_than_the_stream_is_not_allocated() {
    // Over the limit: read past without being kept.
    let length = MAX_BODY + 1;
    let stream = io::Cursor::new(format!("Content-Length: {length}\r\n\r\n").into_bytes())
        .chain(io::repeat(b' ').take(length))
        .chain(io::Cursor::new(frame(INITIALIZED)));
    let ((found, notes), peak) = peak_allocation(|| read_all(stream));
    assert!(peak < 256 * 1024, "{peak} bytes allocated");
    assert!(
        matches!(found.as_slice(), [Incoming::Message(_)]),
        "{found:?}"
    );
    assert!(notes[0].contains("limit"), "{notes:?}");
    // A length far past what the stream holds: nothing is reserved for it.
    for length in [u64::MAX, 1 << 40, MAX_BODY] {
        let stream = format!("Content-Length: {length}\r\n\r\n{{}}").into_bytes();
        let ((found, _), peak) = peak_allocation(|| read_all(io::Cursor::new(stream)));
        assert!(peak < 256 * 1024, "{length}: {peak} bytes allocated");
        assert!(found.is_empty());
    }
}

/// One piece of a fuzzed stream.
fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(frame(INITIALIZED)),
        Just(frame(r#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#)),
        Just(frame(r#"{"id":77,"method":5}"#)),
        Just(frame(r#"{"id":[1],"method":"x"}"#)),
        Just(frame(r#"[1,2,3]"#)),
        Just(b"\r\n".to_vec()),
        Just(b"Content-Length: 18446744073709551615\r\n\r\n".to_vec()),
        Just(b"Content-Length: -1\r\n\r\n".to_vec()),
        Just(b"content-length:3\n\n{}}".to_vec()),
        Just(b"\xff\xfe\xfd\r\n".to_vec()),
        (0usize..3 * MAX_HEADER_LINE).prop_map(|n| vec![b'h'; n]),
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        (0u64..200).prop_map(|n| format!("Content-Length: {n}\r\n\r\n").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x5747_a7a1),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Any byte stream ends in `End` without a panic or an I/O error, within the allocation
    /// limits: never more than a header line and the stream's own length in bodies (and what
    /// serde_json makes of them), however large the lengths it declares.
    #[test]
    fn arbitrary_streams_never_panic_or_over_allocate(
        pieces in prop::collection::vec(stream_piece(), 0..24)
    ) {
        let stream: Vec<u8> = pieces.concat();
        let n_bytes = stream.len();
        let start = Instant::now();
        let ((found, _), peak) = peak_allocation(|| read_all(io::Cursor::new(stream)));
        prop_assert!(start.elapsed() < HANG_GUARD);
        prop_assert!(peak < 4 * MAX_HEADER_LINE + 64 * n_bytes + 64 * 1024, "{} bytes", peak);
        for incoming in found {
            if let Incoming::Invalid(response) = incoming {
                let code = response.error.as_ref().map(|error| error.code);
                prop_assert_eq!(code, Some(ErrorCode::InvalidRequest as i32));
            }
        }
    }

    /// Arbitrary text (as lossy UTF-8) never panics the loader and answers in time.
    #[test]
    fn arbitrary_bytes_never_panic_the_loader(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        compile_timed(&String::from_utf8_lossy(&bytes));
    }

    /// YAML-ish text built from the characters that matter to nesting, quoting and block
    /// scalars never panics the loader and answers in time.
    #[test]
    fn yaml_like_text_never_panics_the_loader(
        tokens in prop::collection::vec(yaml_token(), 0..400)
    ) {
        let text = format!("input: 8x8x1\nmodel: dense2 softmax\n{}", tokens.concat());
        let compiled = compile_timed(&text);
        // Whatever the text, at most one YAML error is reported.
        let n_yaml = compiled.diagnostics.iter().filter(|d| d.code == codes::YAML_SYNTAX).count();
        prop_assert!(n_yaml <= 1);
    }
}

fn yaml_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("? ".to_string()),
        Just("\n".to_string()),
        Just("\n  ".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just(" #".to_string()),
        Just("|\n".to_string()),
        Just(">-\n".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("\u{feff}".to_string()),
        Just("---\n".to_string()),
        "[a-z]{1,6}",
        " {1,8}",
        "[0-9.e+-]{1,6}",
    ]
}

// ---------------------------------------------------------------------------------------------
// The language server binary

/// Runs `strata lsp` on `input`, each chunk written the number of times paired with it (from
/// another thread), and returns its exit status, the messages it wrote, its stderr and its peak
/// resident memory in KiB (Linux only).
fn serve(
    input: Vec<(Vec<u8>, usize)>,
    timeout: Duration,
) -> (Option<i32>, Vec<Value>, String, Option<u64>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata lsp starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        for (chunk, times) in input {
            for _ in 0..times {
                if stdin.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut messages = Vec::new();
        while let Some(message) = common::read_frame(&mut reader) {
            messages.push(message);
        }
        messages
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let mut peak_kib = None;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let high_water = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok());
            peak_kib = high_water.or(peak_kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("strata lsp did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let messages = reader.join().expect("reader");
    (
        status.code(),
        messages,
        log.join().unwrap_or_default(),
        peak_kib,
    )
}

fn json_frame(value: Value) -> Vec<u8> {
    frame(&value.to_string())
}

fn response(messages: &[Value], id: i64) -> &Value {
    messages
        .iter()
        .find(|message| message["id"] == json!(id) && message.get("method").is_none())
        .unwrap_or_else(|| panic!("no response to {id}: {messages:?}"))
}

#[test]
fn the_server_survives_bad_bytes_and_ends_cleanly_after_shutdown() {
    let once = |bytes: Vec<u8>| (bytes, 1);
    let input = vec![
        once(json_frame(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}),
        )),
        once(b"Content-Length: 2\r\n\xff\xfe\xc3\x28\r\n\r\n{}".to_vec()),
        once(b"X-Junk: ".to_vec()),
        (vec![b'x'; 1 << 20], 300),
        once(b"\r\n".to_vec()),
        once(json_frame(json!({"id": 77, "method": 5}))),
        once(json_frame(
            json!({"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover",
            "params": {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}}}),
        )),
        once(json_frame(
            json!({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}),
        )),
        once(json_frame(
            json!({"jsonrpc": "2.0", "id": 4, "method": "textDocument/hover",
            "params": {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}}}),
        )),
        once(json_frame(json!({"jsonrpc": "2.0", "method": "exit"}))),
    ];
    let (status, messages, log, peak_kib) = serve(input, Duration::from_secs(60));
    assert_eq!(status, Some(0), "{log}");
    assert!(response(&messages, 1)["result"]["capabilities"].is_object());
    assert_eq!(response(&messages, 77)["error"]["code"], json!(-32600));
    assert!(response(&messages, 2)["error"].is_null());
    assert!(response(&messages, 3)["error"].is_null());
    assert_eq!(response(&messages, 4)["error"]["code"], json!(-32600));
    assert!(log.contains("not UTF-8"), "{log}");
    assert!(log.contains("longer than"), "{log}");
    let logged = messages
        .iter()
        .filter(|message| message["method"] == "window/logMessage")
        .count();
    assert!(logged >= 3, "{messages:?}");
    if let Some(peak_kib) = peak_kib {
        // A 300 MB header line once cost 850 MB; it is now read past a buffer at a time.
        assert!(peak_kib < 100 * 1024, "peak resident memory {peak_kib} KiB");
    }
}

#[test]
fn exit_without_shutdown_ends_with_status_1() {
    let input = vec![(json_frame(json!({"jsonrpc": "2.0", "method": "exit"})), 1)];
    let (status, _, log, _) = serve(input, Duration::from_secs(20));
    assert_eq!(status, Some(1), "{log}");
    // A stream that just ends is not a clean end either, and garbage alone does not crash it.
    let input = vec![(b"\xff\xff\xff\r\n\r\nContent-Length: x\r\n\r\n".to_vec(), 1)];
    let (status, _, log, _) = serve(input, Duration::from_secs(20));
    assert_eq!(status, Some(1), "{log}");
}

#[test]
fn the_server_answers_keystrokes_on_a_deep_spec_in_time() {
    let mut text = format!(
        "input: 8x8x1\nmodel: dense2 softmax\nx: {}",
        "[".repeat(100_000)
    );
    let mut input = vec![(
        json_frame(json!({"jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": {"textDocument": {"uri": URI, "languageId": "yaml", "version": 0, "text": text}}})),
        1,
    )];
    for version in 1..=20 {
        text.push('[');
        let change = json!({"jsonrpc": "2.0", "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": URI, "version": version},
                       "contentChanges": [{"text": text}]}});
        input.push((json_frame(change), 1));
    }
    input.push((
        json_frame(json!({"jsonrpc": "2.0", "id": 1, "method": "shutdown"})),
        1,
    ));
    input.push((json_frame(json!({"jsonrpc": "2.0", "method": "exit"})), 1));
    let start = Instant::now();
    let (status, messages, log, _) = serve(input, Duration::from_secs(30));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status, Some(0), "{log}");
    let published: Vec<&Value> = messages
        .iter()
        .filter(|message| message["method"] == "textDocument/publishDiagnostics")
        .collect();
    assert_eq!(published.len(), 21);
    for message in published {
        assert_eq!(
            message["params"]["diagnostics"][0]["code"],
            codes::YAML_SYNTAX
        );
    }
}
