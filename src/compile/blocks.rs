//! Named blocks: the `blocks:` entries of a spec → a table of checked signatures and parsed
//! bodies. Names that clash with layers, activations, merges, values or other blocks,
//! malformed signatures and recursion are reported here, once per block, before any call is
//! expanded. Blocks are macros: a call expands the body with the arguments bound
//! (`compile/expand.rs`).

use crate::catalogue::{self, ArgType, LAYERS};
use crate::diagnostics::{codes, Diagnostic};
use crate::spec::SpecFile;
use crate::syntax::{self, ast};
use crate::text::{Ident, Span};
use std::collections::HashMap;

/// One declared block.
#[derive(Clone, Debug)]
pub struct Block {
    /// The signature (name, parameters with their defaults).
    pub signature: ast::Signature,
    /// The body, when it parses.
    pub body: Option<ast::Chain>,
    /// The body's characters.
    pub body_span: Span,
    /// Whether calls may expand it: `false` for a block that is part of a recursion (already
    /// reported), so that its calls are not reported again.
    pub usable: bool,
}

impl Block {
    /// The block's name.
    pub fn name(&self) -> &str {
        &self.signature.name.text
    }

    /// `basic(f, stride=1)`, for messages and hover.
    pub fn signature_text(&self) -> String {
        let params: Vec<&str> = self
            .signature
            .params
            .iter()
            .map(|param| param.name.text.as_str())
            .collect();
        format!("{}({})", self.name(), params.join(", "))
    }
}

/// The blocks of a spec, by name.
#[derive(Clone, Debug, Default)]
pub struct Blocks {
    /// The blocks in file order (those whose signature parses and whose name is free).
    pub list: Vec<Block>,
    index: HashMap<String, usize>,
}

impl Blocks {
    /// The block called `name`.
    pub fn get(&self, name: &str) -> Option<&Block> {
        self.index.get(name).and_then(|idx| self.list.get(*idx))
    }

    /// The position of the block called `name` in [`Blocks::list`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Every block name, for suggestions.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(Block::name).collect()
    }
}

/// Reads and checks the spec's `blocks:`.
pub fn collect(spec: &SpecFile, diagnostics: &mut Vec<Diagnostic>) -> Blocks {
    let mut blocks = Blocks::default();
    for source in &spec.blocks {
        let signature = match syntax::parse_signature(&source.signature) {
            Ok(signature) => signature,
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                continue;
            }
        };
        if let Err(diagnostic) = check_name(&signature.name, &blocks) {
            diagnostics.push(*diagnostic);
            continue;
        }
        check_params(&signature, diagnostics);
        let body = source
            .body
            .as_ref()
            .and_then(|text| match syntax::parse(text) {
                Ok(chain) => Some(chain),
                Err(diagnostic) => {
                    diagnostics.push(diagnostic);
                    None
                }
            });
        blocks
            .index
            .insert(signature.name.text.clone(), blocks.list.len());
        blocks.list.push(Block {
            signature,
            body,
            body_span: source.body_span,
            usable: true,
        });
    }
    for diagnostic in find_recursion(&mut blocks) {
        diagnostics.push(diagnostic);
    }
    unused_parameters(&blocks, diagnostics);
    blocks
}

/// The words a parameter may not be called: layer, activation and merge names, and the words
/// arguments take (`same`, `true`), which a parameter of that name would hide.
fn reserved_word(name: &str) -> Option<String> {
    if let Some(decl) = catalogue::lookup(name) {
        let what = if decl.is_activation() {
            "an activation"
        } else if decl.is_merge() {
            "a merge"
        } else {
            "a layer"
        };
        return Some(what.to_string());
    }
    let is_value = LAYERS
        .iter()
        .flat_map(|decl| decl.args)
        .any(|arg| match arg.ty {
            ArgType::Choice(words) => words.contains(&name),
            ArgType::Bool => name == "true" || name == "false",
            _ => false,
        });
    is_value.then(|| "an argument value".to_string())
}

fn check_name(name: &Ident, blocks: &Blocks) -> Result<(), Box<Diagnostic>> {
    if let Some(first) = blocks.get(&name.text) {
        return Err(Box::new(
            Diagnostic::error(
                codes::BLOCK_NAME,
                format!("block `{}` is declared twice", name.text),
            )
            .with_primary(name.span, "declared again here")
            .with_secondary(first.signature.name.span, "first declared here")
            .with_help("rename one of them, or delete one"),
        ));
    }
    if let Some(what) = reserved_word(&name.text) {
        return Err(Box::new(
            Diagnostic::error(
                codes::BLOCK_NAME,
                format!("block `{}` has the name of {what}", name.text),
            )
            .with_primary(name.span, format!("`{}` is {what}", name.text))
            .with_help(format!(
                "rename the block, e.g. `{}_block`: a call could not tell the two apart",
                name.text
            )),
        ));
    }
    Ok(())
}

fn check_params(signature: &ast::Signature, diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let mut defaulted: Option<Span> = None;
    for param in &signature.params {
        let name = &param.name;
        if let Some(first) = seen.get(name.text.as_str()) {
            diagnostics.push(
                Diagnostic::error(
                    codes::BLOCK_SIGNATURE,
                    format!(
                        "parameter `{}` appears twice in `{}`",
                        name.text, signature.name.text
                    ),
                )
                .with_primary(name.span, "again here")
                .with_secondary(*first, "first here")
                .with_help("give each parameter its own name"),
            );
            continue;
        }
        seen.insert(&name.text, name.span);
        if name.text == signature.name.text {
            diagnostics.push(
                Diagnostic::error(
                    codes::BLOCK_SIGNATURE,
                    format!("parameter `{}` has the block's own name", name.text),
                )
                .with_primary(name.span, "the block's name")
                .with_help("rename the parameter"),
            );
        } else if let Some(what) = reserved_word(&name.text) {
            diagnostics.push(
                Diagnostic::error(
                    codes::BLOCK_SIGNATURE,
                    format!("parameter `{}` has the name of {what}", name.text),
                )
                .with_primary(name.span, format!("`{}` is {what}", name.text))
                .with_help("rename the parameter: inside the body the two could not be told apart"),
            );
        }
        match (&param.default, defaulted) {
            (Some(_), _) => defaulted = defaulted.or(Some(param.span)),
            (None, Some(first_default)) => diagnostics.push(
                Diagnostic::error(
                    codes::BLOCK_SIGNATURE,
                    format!(
                        "parameter `{}` without a default after one with a default",
                        name.text
                    ),
                )
                .with_primary(name.span, "no default")
                .with_secondary(first_default, "has a default")
                .with_help("put the parameters with defaults last, or give this one a default"),
            ),
            (None, None) => {}
        }
    }
}

/// The blocks each block's body calls: (callee position, the call's name).
fn calls_of(blocks: &Blocks, block: &Block) -> Vec<(usize, Ident)> {
    let mut calls = Vec::new();
    if let Some(body) = &block.body {
        ast::for_each_call(body, &mut |call| {
            if let Some(idx) = blocks.position(&call.word.text) {
                calls.push((idx, call.word.clone()));
            }
        });
    }
    calls
}

/// Reports every block that calls itself, directly or through others, at the call that closes
/// the loop, and marks the blocks of each loop unusable.
fn find_recursion(blocks: &mut Blocks) -> Vec<Diagnostic> {
    let edges: Vec<Vec<(usize, Ident)>> = blocks
        .list
        .iter()
        .map(|block| calls_of(blocks, block))
        .collect();
    let mut diagnostics = Vec::new();
    let mut in_loop = vec![false; blocks.list.len()];
    for start in 0..blocks.list.len() {
        if in_loop[start] {
            continue;
        }
        let Some(path) = path_back(&edges, start) else {
            continue;
        };
        for (idx, _) in &path {
            in_loop[*idx] = true;
        }
        in_loop[start] = true;
        diagnostics.push(recursion(blocks, start, &path));
    }
    for (block, recursive) in blocks.list.iter_mut().zip(in_loop) {
        block.usable = !recursive;
    }
    diagnostics
}

/// The shortest chain of calls from `start` back to itself: (callee, call) steps.
fn path_back(edges: &[Vec<(usize, Ident)>], start: usize) -> Option<Vec<(usize, Ident)>> {
    let mut previous: Vec<Option<(usize, Ident)>> = vec![None; edges.len()];
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = vec![false; edges.len()];
    while let Some(node) = queue.pop_front() {
        for (callee, call) in &edges[node] {
            if *callee == start {
                let mut path = vec![(*callee, call.clone())];
                let mut at = node;
                while at != start {
                    let (from, call) = previous[at].clone()?;
                    path.push((at, call));
                    at = from;
                }
                path.reverse();
                return Some(path);
            }
            if !seen[*callee] {
                seen[*callee] = true;
                previous[*callee] = Some((node, call.clone()));
                queue.push_back(*callee);
            }
        }
    }
    None
}

fn recursion(blocks: &Blocks, start: usize, path: &[(usize, Ident)]) -> Diagnostic {
    let name = blocks.list[start].name();
    let through: Vec<String> = path[..path.len().saturating_sub(1)]
        .iter()
        .map(|(idx, _)| format!("`{}`", blocks.list[*idx].name()))
        .collect();
    let message = if through.is_empty() {
        format!("block `{name}` calls itself")
    } else {
        format!(
            "block `{name}` calls itself through {}",
            crate::suggest::either(&through)
        )
    };
    let closing = path.last().map(|(_, call)| call.span).unwrap_or_default();
    let mut diagnostic = Diagnostic::error(codes::BLOCK_RECURSION, message)
        .with_primary(closing, format!("calls `{name}` again"))
        .with_secondary(blocks.list[start].signature.name.span, "declared here");
    for (callee, call) in &path[..path.len().saturating_sub(1)] {
        diagnostic = diagnostic.with_secondary(
            call.span,
            format!("calls `{}`", blocks.list[*callee].name()),
        );
    }
    diagnostic.with_help(
        "a block expands in place, so a loop of calls never ends: \
         write the repetition with `xN` instead (`basic(64)x3`)",
    )
}

fn unused_parameters(blocks: &Blocks, diagnostics: &mut Vec<Diagnostic>) {
    for block in &blocks.list {
        let Some(body) = &block.body else {
            continue;
        };
        let mut used: Vec<&str> = Vec::new();
        ast::for_each_word(body, &mut |word, _| used.push(word));
        for param in &block.signature.params {
            if !used.contains(&param.name.text.as_str()) {
                diagnostics.push(
                    Diagnostic::warning(
                        codes::LINT_UNUSED_PARAMETER,
                        format!(
                            "parameter `{}` of `{}` is not used in its body",
                            param.name.text,
                            block.name()
                        ),
                    )
                    .with_primary(param.name.span, "never used")
                    .with_secondary(block.body_span, "the body")
                    .with_help("use it in the body, or remove it from the signature"),
                );
            }
        }
    }
}
