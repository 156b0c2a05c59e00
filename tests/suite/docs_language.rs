//! docs/language.md is checked, example by example: every ```yaml block is a complete spec that
//! compiles with no diagnostic at all, or, when marker lines such as
//! `<!-- error: strata::shape::mismatch -->` stand right above it, reports exactly the marked
//! codes with the marked severities. Together the examples must show every layer, merge and
//! activation and every form of the language; the layer tables must agree with the catalogue
//! (what `strata layers` prints), and the printed summary with `strata summary`.

use std::collections::BTreeSet;
use strata::catalogue::{LayerDecl, ShorthandRole, LAYERS};
use strata::diagnostics::Severity;
use strata::ir::{FrameKind, Head, Op};
use strata::syntax::ast::{self, ArgValue, ExprKind};
use strata::Compiled;

const PAGE: &str = include_str!("../../docs/language.md");

/// One fenced block of the page.
struct Block {
    /// The fence's language (`yaml`, `text`).
    lang: String,
    /// The text between the fences.
    body: String,
    /// The 1-based line of the opening fence.
    line: usize,
    /// The `(severity, code)` pairs of the marker lines right above it.
    expected: BTreeSet<(String, String)>,
    /// Whether a `<!-- summary of the spec above -->` line stands right above it.
    summary: bool,
}

/// The fenced blocks of `page` with the markers above each. Markers are HTML comments on the
/// lines before the fence (blank lines between are allowed); any other text resets them.
fn blocks(page: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut expected = BTreeSet::new();
    let mut summary = false;
    let mut lines = page.lines().enumerate();
    while let Some((idx, line)) = lines.next() {
        let trimmed = line.trim();
        if let Some(marker) = trimmed
            .strip_prefix("<!--")
            .and_then(|rest| rest.strip_suffix("-->"))
        {
            let marker = marker.trim();
            if let Some((severity, code)) = marker.split_once(": ") {
                if severity == "error" || severity == "warning" {
                    expected.insert((severity.to_string(), code.trim().to_string()));
                    continue;
                }
            }
            if marker == "summary of the spec above" {
                summary = true;
            }
            continue;
        }
        if let Some(lang) = trimmed.strip_prefix("```") {
            let mut body = String::new();
            for (_, inner) in lines.by_ref() {
                if inner.trim() == "```" {
                    break;
                }
                body.push_str(inner);
                body.push('\n');
            }
            found.push(Block {
                lang: lang.to_string(),
                body,
                line: idx + 1,
                expected: std::mem::take(&mut expected),
                summary: std::mem::take(&mut summary),
            });
            continue;
        }
        if !trimmed.is_empty() {
            expected.clear();
            summary = false;
        }
    }
    found
}

fn yaml_blocks() -> Vec<Block> {
    blocks(PAGE)
        .into_iter()
        .filter(|block| block.lang == "yaml")
        .collect()
}

fn reported(compiled: &Compiled) -> BTreeSet<(String, String)> {
    compiled
        .diagnostics
        .iter()
        .map(|diagnostic| {
            let severity = match diagnostic.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            (severity.to_string(), diagnostic.code.to_string())
        })
        .collect()
}

#[test]
fn every_yaml_example_compiles_as_marked() {
    let examples = yaml_blocks();
    assert!(examples.len() >= 20, "only {} examples", examples.len());
    let mut failures = Vec::new();
    for block in &examples {
        let compiled = strata::compile(&block.body, "example");
        let got = reported(&compiled);
        if got != block.expected {
            failures.push(format!(
                "docs/language.md:{}: expected {:?}, got {:?}\n{}\n{:#?}",
                block.line, block.expected, got, block.body, compiled.diagnostics
            ));
        }
        if block.expected.is_empty() {
            assert!(compiled.model.is_some(), "line {}: no model", block.line);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn markers_name_known_codes() {
    let known: Vec<&str> = strata::diagnostics::codes::ALL.to_vec();
    for block in yaml_blocks() {
        for (_, code) in &block.expected {
            assert!(
                known.contains(&code.as_str()),
                "line {}: `{code}` is not a code",
                block.line
            );
        }
    }
}

#[test]
fn the_printed_summary_is_what_strata_prints() {
    let all = blocks(PAGE);
    let mut checked = 0;
    for (idx, block) in all.iter().enumerate().filter(|(_, block)| block.summary) {
        let spec = all[..idx]
            .iter()
            .rev()
            .find(|earlier| earlier.lang == "yaml")
            .expect("a spec above the summary");
        let compiled = strata::compile(&spec.body, "example");
        let model = compiled.model.expect("the spec compiles");
        assert_eq!(
            strata::summary::render_table(&model),
            block.body,
            "docs/language.md:{}",
            block.line
        );
        checked += 1;
    }
    assert!(checked >= 1, "no summary checked");
}

/// The clean examples, compiled.
fn clean_models() -> Vec<(Block, Compiled)> {
    yaml_blocks()
        .into_iter()
        .filter(|block| block.expected.is_empty())
        .map(|block| {
            let compiled = strata::compile(&block.body, "example");
            (block, compiled)
        })
        .collect()
}

#[test]
fn the_examples_show_every_layer_merge_and_activation() {
    let models = clean_models();
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    for (_, compiled) in &models {
        let model = compiled.model.as_ref().expect("model");
        for layer in &model.layers {
            if layer.origin.implicit {
                continue;
            }
            let kind = layer.op.kind();
            seen.insert(strata::catalogue::decl_of(kind).name);
            if let Some(activation) = layer.activation {
                let op = Op::Activation(activation);
                seen.insert(strata::catalogue::decl_of(op.kind()).name);
            }
        }
    }
    let missing: Vec<&str> = LAYERS
        .iter()
        .map(|decl| decl.name)
        .filter(|name| !seen.contains(name))
        .collect();
    assert!(missing.is_empty(), "no example uses {missing:?}");
    let written: String = models
        .iter()
        .map(|(block, _)| block.body.as_str())
        .collect();
    for decl in LAYERS {
        for alias in decl.aliases {
            assert!(
                PAGE.contains(&format!("`{alias}`")),
                "the page never names `{alias}`"
            );
        }
    }
    assert!(written.contains("swish"), "no example writes `swish`");
}

/// Whether any clean example satisfies `check`.
fn some_example(what: &str, check: impl Fn(&str, &Compiled) -> bool) {
    let models = clean_models();
    assert!(
        models
            .iter()
            .any(|(block, compiled)| check(&block.body, compiled)),
        "no clean example shows {what}"
    );
}

fn contains(outer: strata::text::Span, inner: strata::text::Span) -> bool {
    outer.offset <= inner.offset && inner.end() <= outer.end() && outer != inner
}

fn merges(compiled: &Compiled) -> Vec<&strata::ir::Layer> {
    compiled
        .layers
        .iter()
        .filter(|layer| matches!(layer.op, Op::Merge(_)))
        .collect()
}

#[test]
fn the_examples_show_every_form() {
    some_example("a merge inside a merge's branch", |_, compiled| {
        let merges = merges(compiled);
        merges.iter().any(|outer| {
            merges
                .iter()
                .any(|inner| contains(outer.origin.span, inner.origin.span))
        })
    });
    some_example("a repeated group inside a merge's branch", |_, compiled| {
        merges(compiled).iter().any(|merge| {
            compiled.layers.iter().any(|layer| {
                layer.origin.frames.iter().any(|frame| {
                    frame.kind == FrameKind::Repeat
                        && frame.count > 1
                        && contains(merge.origin.span, frame.span)
                })
            })
        })
    });
    some_example("a repeated merge", |_, compiled| {
        merges(compiled).iter().any(|merge| {
            merge
                .origin
                .frames
                .iter()
                .any(|frame| frame.count > 1 && contains(frame.span, merge.origin.span))
        })
    });
    some_example("a merge of flat vectors", |_, compiled| {
        merges(compiled)
            .iter()
            .any(|merge| matches!(merge.output, strata::ir::Shape::Flat(_)))
    });
    some_example("`mul` of an image and a vector", |_, compiled| {
        merges(compiled).iter().any(|merge| {
            matches!(merge.op, Op::Merge(strata::ir::MergeKind::Mul))
                && merge
                    .inputs
                    .iter()
                    .any(|edge| matches!(edge.shape, strata::ir::Shape::Flat(_)))
                && matches!(merge.output, strata::ir::Shape::Image { .. })
        })
    });
    some_example("a grouped convolution", |_, compiled| {
        compiled
            .layers
            .iter()
            .any(|layer| matches!(layer.op, Op::Conv { groups, .. } if groups > 1))
    });
    some_example("the binary head", |_, compiled| {
        compiled
            .model
            .as_ref()
            .is_some_and(|model| model.head == Head::Sigmoid)
    });
    some_example("a repeated block call", |_, compiled| {
        compiled.layers.iter().any(|layer| {
            layer
                .origin
                .frames
                .iter()
                .any(|frame| matches!(frame.kind, FrameKind::Call { .. }) && frame.count > 1)
        })
    });
    some_example(
        "an activation suffix after a block call",
        |text, compiled| {
            compiled.ast.as_ref().is_some_and(|chain| {
                chain.stages.iter().any(|stage| match stage {
                    ast::Stage::Call(stage) => {
                        stage.activation.is_some()
                            && compiled.blocks.get(&stage.call.word.text).is_some()
                    }
                    ast::Stage::Group(_) => false,
                })
            }) && !text.is_empty()
        },
    );
    some_example(
        "a block calling a block declared after it",
        |_, compiled| {
            let list = &compiled.blocks.list;
            list.iter().enumerate().any(|(idx, block)| {
                let mut later = false;
                if let Some(body) = &block.body {
                    ast::for_each_call(body, &mut |call| {
                        if let Some(callee) = compiled.blocks.position(&call.word.text) {
                            later |= callee > idx;
                        }
                    });
                }
                later
            })
        },
    );
    some_example(
        "a parameter default that uses another parameter",
        |_, compiled| {
            compiled.blocks.list.iter().any(|block| {
                block.signature.params.iter().any(|param| {
                    param
                        .default
                        .as_ref()
                        .is_some_and(|default| matches!(default.kind, ExprKind::Binary(..)))
                })
            })
        },
    );
    let block_calls = |compiled: &Compiled, check: &dyn Fn(&ast::Call) -> bool| {
        let mut any = false;
        let mut visit = |call: &ast::Call| {
            if compiled.blocks.get(&call.word.text).is_some() && check(call) {
                any = true;
            }
        };
        if let Some(chain) = &compiled.ast {
            ast::for_each_call(chain, &mut visit);
        }
        for block in &compiled.blocks.list {
            if let Some(body) = &block.body {
                ast::for_each_call(body, &mut visit);
            }
        }
        any
    };
    some_example(
        "a block call with positional and named arguments",
        |_, compiled| {
            block_calls(compiled, &|call| {
                call.args.iter().any(|arg| arg.name.is_none())
                    && call.args.iter().any(|arg| arg.name.is_some())
            })
        },
    );
    some_example("a block call relying on a default", |_, compiled| {
        block_calls(compiled, &|call| {
            compiled
                .blocks
                .get(&call.word.text)
                .is_some_and(|block| block.signature.params.len() > call.args.len())
        })
    });
    some_example("an integer expression in a block body", |_, compiled| {
        compiled.blocks.list.iter().any(|block| {
            let mut found = false;
            if let Some(body) = &block.body {
                ast::for_each_call(body, &mut |call| {
                    found |= call.args.iter().any(|arg| {
                        matches!(&arg.value, ArgValue::Expr(expr) if matches!(expr.kind, ExprKind::Binary(..)))
                    });
                });
            }
            found
        })
    });
    some_example("a parameter used as an activation", |_, compiled| {
        compiled.blocks.list.iter().any(|block| {
            let params: Vec<&str> = block
                .signature
                .params
                .iter()
                .map(|param| param.name.text.as_str())
                .collect();
            let mut found = false;
            if let Some(body) = &block.body {
                ast::for_each_call(body, &mut |call| {
                    found |= call.is_bare() && params.contains(&call.word.text.as_str());
                });
            }
            found
        })
    });
    some_example("a suffix after a repeated layer", |_, compiled| {
        compiled.layers.iter().any(|layer| {
            layer.activation.is_some()
                && !matches!(layer.op, Op::Merge(_))
                && layer
                    .origin
                    .frames
                    .iter()
                    .any(|frame| frame.count > 1 && frame.span.offset == layer.origin.span.offset)
        })
    });
    some_example("`identity`", |_, compiled| {
        compiled
            .layers
            .iter()
            .any(|layer| matches!(layer.op, Op::Identity))
    });
}

/// The cells of the Markdown table rows under the heading `heading`.
fn table_rows(heading: &str) -> Vec<Vec<String>> {
    let start = PAGE
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section `{heading}`"));
    PAGE[start..]
        .lines()
        .skip(2)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim()
                .trim_start_matches('|')
                .trim_end_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// `` `a`, `b` `` → `["a", "b"]`.
fn code_list(cell: &str) -> Vec<String> {
    cell.split(", ")
        .filter(|part| !part.is_empty())
        .map(|part| part.trim_matches('`').to_string())
        .collect()
}

/// The call as `strata layers` prints it: `conv(filters, kernel, stride=1, …)`.
fn call_text(decl: &LayerDecl) -> String {
    if decl.is_merge() {
        return format!("{}(branch, branch, …)", decl.name);
    }
    if decl.args.is_empty() {
        return decl.name.to_string();
    }
    let args: Vec<String> = decl
        .args
        .iter()
        .map(|arg| match arg.default {
            Some(default) => format!("{}={default}", arg.name),
            None => arg.name.to_string(),
        })
        .collect();
    format!("{}({})", decl.name, args.join(", "))
}

fn decl(name: &str) -> &'static LayerDecl {
    strata::catalogue::lookup(name).unwrap_or_else(|| panic!("`{name}` is not in the catalogue"))
}

#[test]
fn the_layer_table_matches_the_catalogue() {
    let rows = table_rows("Layers");
    let mut listed = Vec::new();
    for row in &rows {
        let [name, also, shorthand, call, positional, keras, params] = row.as_slice() else {
            panic!("row {row:?} has {} cells", row.len());
        };
        let decl = decl(name.trim_matches('`'));
        assert_eq!(decl.name, name.trim_matches('`'), "{row:?}");
        assert!(!decl.is_activation(), "{row:?}");
        let aliases: Vec<String> = decl.aliases.iter().map(|a| a.to_string()).collect();
        assert_eq!(code_list(also), aliases, "{row:?}");
        assert_eq!(
            shorthand.is_empty(),
            decl.shorthand == ShorthandRole::None,
            "{row:?}"
        );
        if let ShorthandRole::Window(fills) | ShorthandRole::Count(fills) = decl.shorthand {
            assert!(shorthand.ends_with(&format!(": {fills}")), "{row:?}");
        }
        assert_eq!(call.trim_matches('`'), call_text(decl), "{row:?}");
        let by_position: Vec<&str> = decl.args[..decl.n_positional]
            .iter()
            .map(|arg| arg.name)
            .collect();
        if decl.is_merge() {
            assert_eq!(positional, "branches", "{row:?}");
        } else {
            assert_eq!(positional.as_str(), by_position.join(", "), "{row:?}");
        }
        assert_eq!(keras, decl.keras, "{row:?}");
        let rule = if decl.param_rule == "-" {
            String::new()
        } else {
            format!("`{}`", decl.param_rule)
        };
        assert_eq!(params, &rule, "{row:?}");
        listed.push(decl.name);
    }
    let rows = table_rows("Activations");
    for row in &rows {
        let [name, also, arguments, keras] = row.as_slice() else {
            panic!("row {row:?} has {} cells", row.len());
        };
        let decl = decl(name.trim_matches('`'));
        assert_eq!(decl.name, name.trim_matches('`'), "{row:?}");
        assert!(decl.is_activation(), "{row:?}");
        let aliases: Vec<String> = decl.aliases.iter().map(|a| a.to_string()).collect();
        assert_eq!(code_list(also), aliases, "{row:?}");
        let expected = if decl.args.is_empty() {
            String::new()
        } else {
            format!("`{}`", call_text(decl))
        };
        assert_eq!(arguments, &expected, "{row:?}");
        assert_eq!(keras, decl.keras, "{row:?}");
        listed.push(decl.name);
    }
    let expected: Vec<&str> = LAYERS.iter().map(|decl| decl.name).collect();
    assert_eq!(
        listed, expected,
        "the tables list the catalogue in its order"
    );
}
