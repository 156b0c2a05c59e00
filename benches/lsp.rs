//! Editor latency: a `textDocument/didChange` through the language server's handler until the
//! `publishDiagnostics` message is built and serialised (what goes on the wire), for a
//! hand-written spec of a few hundred layers. Target: under 20 ms. Also inlay hints and hover
//! on the same spec. Run with `cargo bench --bench lsp`.

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

criterion_group!(benches, bench_change, bench_requests);
criterion_main!(benches);
