//! Editor latency: a `textDocument/didChange` through the language server's handler until the
//! `publishDiagnostics` message is built and serialised (what goes on the wire), for a
//! hand-written spec of a few hundred layers and for a ResNet-style graph spec of 300 block
//! calls (several block kinds, nested calls, merges; 2,500 layers once expanded).
//! Target: under 20 ms. Also inlay hints, hover, completion and go to definition on the same
//! specs. Run with `cargo bench --bench lsp`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::json;
use strata::lsp::Server;

const URI: &str = "file:///bench/big.yaml";

/// A spec with `n_blocks` × 4 layers written out over several lines with comments.
fn generated_spec(n_blocks: usize, typo: bool) -> String {
    let mut model = String::from("  bn\n");
    for block in 0..n_blocks {
        let conv = if typo && block == n_blocks / 2 {
            "cnov"
        } else {
            "conv"
        };
        model.push_str(&format!(
            "  -> {conv}3({}, pad=same) relu   # block {block} é 🚀\n  -> bn -> dropout(0.1) -> leakyrelu(alpha=0.2)\n",
            8 + block % 8
        ));
    }
    model.push_str("  -> gap -> dense10 softmax\n");
    format!("name: big\ninput: 32x32x3\nclasses: 10\nmodel: |\n{model}train:\n  lr: 0.01\n")
}

/// A ResNet-style spec: a stem, then three stages, each a strided `down` block and then
/// `n_calls / 3 - 1` block calls cycling through `basic`, `bottleneck` and `unit` (which calls
/// `basic` and `se`), one call per line with a comment; a head. With `typo`, one call in the
/// middle names a block that does not exist.
fn graph_spec(n_calls: usize, typo: bool) -> String {
    let mut model = String::from("  conv3(16) -> bn relu\n");
    let per_stage = n_calls / 3;
    let mut written = 0;
    for (stage, filters) in [16, 32, 64].into_iter().enumerate() {
        model.push_str(&format!("  -> down({filters})   # stage {stage} é 🚀\n"));
        written += 1;
        for idx in 1..per_stage {
            let call = match idx % 3 {
                _ if typo && written == n_calls / 2 => format!("basci({filters})"),
                0 => format!("basic({filters})"),
                1 => format!("bottleneck({filters})"),
                _ => format!("unit({filters}, r=4)"),
            };
            model.push_str(&format!("  -> {call}   # call {written}\n"));
            written += 1;
        }
    }
    model.push_str("  -> gap -> dense10 softmax\n");
    format!(
        "name: graph\ninput: 64x64x3\nclasses: 10\n\
         defaults:\n  conv: {{ pad: same, bias: false }}\n\
         blocks:\n\
         \x20 basic(f, stride=1): add(identity, conv3(f, stride=stride) -> bn relu -> conv3(f) -> bn) relu\n\
         \x20 down(f): |\n\
         \x20   add(conv1(f, stride=2) -> bn,\n\
         \x20       conv3(f, stride=2) -> bn relu -> conv3(f) -> bn) relu\n\
         \x20 bottleneck(f, e=4): |\n\
         \x20   add(identity,\n\
         \x20       conv1(f/e) -> bn relu -> conv3(f/e) -> bn relu -> conv1(f) -> bn) relu\n\
         \x20 se(c, r=4): mul(identity, gap -> dense(c/r) relu -> dense(c) sigmoid)\n\
         \x20 unit(f, r=4): basic(f) -> se(f, r=r)\n\
         model: |\n{model}train:\n  lr: 0.01\n"
    )
}

fn notification(method: &str, params: serde_json::Value) -> Message {
    Message::Notification(Notification::new(method.to_string(), params))
}

fn opened(text: &str) -> Server {
    let mut server = Server::new();
    server.handle(notification(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "yaml", "version": 0, "text": text}}),
    ));
    server
}

/// didChange → the serialised publishDiagnostics; returns its length.
fn change(server: &mut Server, text: &str, version: i32) -> usize {
    let answers = server.handle(notification(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"text": text}]}),
    ));
    answers
        .iter()
        .map(|message| serde_json::to_string(message).map_or(0, |json| json.len()))
        .sum()
}

fn bench_change(c: &mut Criterion) {
    for (label, typo) in [("clean", false), ("with_error", true)] {
        let text = generated_spec(75, typo);
        let mut server = opened(&text);
        let mut version = 1;
        c.bench_function(&format!("lsp/change_to_publish/300_layers/{label}"), |b| {
            b.iter(|| {
                version += 1;
                black_box(change(&mut server, black_box(&text), version))
            })
        });
    }
}

fn bench_graph_change(c: &mut Criterion) {
    for (label, typo) in [("clean", false), ("with_error", true)] {
        let text = graph_spec(300, typo);
        let compiled = strata::compile::compile(&text, "graph");
        assert_eq!(
            compiled.has_errors(),
            typo,
            "{:#?}",
            compiled.diagnostics.first()
        );
        let mut server = opened(&text);
        let mut version = 1;
        c.bench_function(
            &format!("lsp/change_to_publish/300_block_calls/{label}"),
            |b| {
                b.iter(|| {
                    version += 1;
                    black_box(change(&mut server, black_box(&text), version))
                })
            },
        );
    }
    // The compiler alone, for comparison.
    let text = graph_spec(300, false);
    c.bench_function("lsp/compile_only/300_block_calls", |b| {
        b.iter(|| black_box(strata::compile::compile(black_box(&text), "graph")))
    });
}

fn request(id: i32, method: &str, params: serde_json::Value) -> Message {
    Message::Request(Request::new(
        RequestId::from(id),
        method.to_string(),
        params,
    ))
}

/// The LSP position of the first `needle` in `text` (ASCII before it on its line).
fn position_of(text: &str, needle: &str, delta: usize) -> serde_json::Value {
    let offset = text.find(needle).unwrap_or(0) + delta;
    let line_start = text[..offset].rfind('\n').map_or(0, |idx| idx + 1);
    json!({"line": text[..offset].matches('\n').count(), "character": offset - line_start})
}

fn bench_graph_requests(c: &mut Criterion) {
    let text = graph_spec(300, false);
    let mut server = opened(&text);
    let document = json!({"uri": URI});
    let mut time = |name: &str, message: &dyn Fn() -> Message| {
        // Each request must find something, or the timing would flatter an empty answer.
        let answer = server.handle(message());
        let found = match answer.first() {
            Some(Message::Response(response)) => response
                .result
                .as_ref()
                .is_some_and(|result| !result.is_null() && result != &json!([])),
            _ => false,
        };
        assert!(found, "{name}: {answer:?}");
        c.bench_function(&format!("lsp/{name}/300_block_calls"), |b| {
            b.iter(|| black_box(server.handle(message())))
        });
    };
    time("inlay_hints", &|| {
        request(
            1,
            "textDocument/inlayHint",
            json!({"textDocument": document,
                   "range": {"start": {"line": 0, "character": 0},
                             "end": {"line": 400, "character": 0}}}),
        )
    });
    let hovers = [
        ("hover_block_call", position_of(&text, "-> basic(32)", 4)),
        (
            "hover_block_signature",
            position_of(&text, "basic(f, stride", 1),
        ),
        (
            "hover_layer_in_body",
            position_of(&text, "conv3(f, stride=stride)", 1),
        ),
    ];
    for (name, position) in hovers {
        time(name, &|| {
            request(
                2,
                "textDocument/hover",
                json!({"textDocument": document, "position": position}),
            )
        });
    }
    let call = position_of(&text, "-> unit(32", 5);
    time("definition", &|| {
        request(
            3,
            "textDocument/definition",
            json!({"textDocument": document, "position": call}),
        )
    });
    let inside_call = position_of(&text, "-> unit(32, ", 12);
    time("completion_in_block_call", &|| {
        request(
            4,
            "textDocument/completion",
            json!({"textDocument": document, "position": inside_call}),
        )
    });
}

fn bench_requests(c: &mut Criterion) {
    let text = generated_spec(75, false);
    let mut server = opened(&text);
    c.bench_function("lsp/inlay_hints/300_layers", |b| {
        b.iter(|| {
            let request = Request::new(
                RequestId::from(1),
                "textDocument/inlayHint".to_string(),
                json!({"textDocument": {"uri": URI},
                       "range": {"start": {"line": 0, "character": 0},
                                 "end": {"line": 400, "character": 0}}}),
            );
            black_box(server.handle(Message::Request(request)))
        })
    });
    c.bench_function("lsp/hover/300_layers", |b| {
        b.iter(|| {
            let request = Request::new(
                RequestId::from(2),
                "textDocument/hover".to_string(),
                json!({"textDocument": {"uri": URI},
                       "position": {"line": 150, "character": 8}}),
            );
            black_box(server.handle(Message::Request(request)))
        })
    });
}

criterion_group!(
    benches,
    bench_change,
    bench_requests,
    bench_graph_change,
    bench_graph_requests
);
criterion_main!(benches);
