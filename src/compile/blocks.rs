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
    /// Names of blocks whose signature did not parse (reported), so that their calls are not
    /// reported again as unknown layers.
    broken: Vec<String>,
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

    /// Whether `name` is a block whose signature did not parse.
    pub fn is_broken(&self, name: &str) -> bool {
        self.broken.iter().any(|broken| broken == name)
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
                let name: String = source
                    .signature
                    .text
                    .trim_start()
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                    .collect();
                blocks.broken.push(name);
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
    shadowed_blocks(&blocks, diagnostics);
    for diagnostic in check_calls(&mut blocks) {
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

/// Which blocks `model` calls, directly or through other blocks' bodies (by position in
/// [`Blocks::list`]).
pub fn reachable(blocks: &Blocks, model: &ast::Chain) -> Vec<bool> {
    let mut reached = vec![false; blocks.list.len()];
    let mut work = Vec::new();
    ast::for_each_call(model, &mut |call| {
        if let Some(idx) = blocks.position(&call.word.text) {
            work.push(idx);
        }
    });
    while let Some(idx) = work.pop() {
        if std::mem::replace(&mut reached[idx], true) {
            continue;
        }
        if let Some(block) = blocks.list.get(idx) {
            work.extend(
                calls_of(blocks, block)
                    .into_iter()
                    .map(|(callee, _)| callee),
            );
        }
    }
    reached
}

/// The deepest chain of block calls a model may use (a block calling a block calling …).
pub const MAX_CALL_DEPTH: usize = 32;

/// The blocks each block's body calls: (callee position, the call's name). A bare word that
/// names one of the block's own parameters is the parameter, not a call.
fn calls_of(blocks: &Blocks, block: &Block) -> Vec<(usize, Ident)> {
    let mut calls = Vec::new();
    if let Some(body) = &block.body {
        ast::for_each_call(body, &mut |call| {
            let is_param = call.is_bare()
                && block
                    .signature
                    .params
                    .iter()
                    .any(|param| param.name.text == call.word.text);
            if is_param {
                return;
            }
            if let Some(idx) = blocks.position(&call.word.text) {
                calls.push((idx, call.word.clone()));
            }
        });
    }
    calls
}

/// Reports every loop of calls (a block that calls itself, directly or through others) at the
/// call that closes it, and every block whose calls nest deeper than [`MAX_CALL_DEPTH`]; marks
/// those blocks unusable. Linear in the number of blocks and calls.
fn check_calls(blocks: &mut Blocks) -> Vec<Diagnostic> {
    let edges: Vec<Vec<(usize, Ident)>> = blocks
        .list
        .iter()
        .map(|block| calls_of(blocks, block))
        .collect();
    let mut diagnostics = Vec::new();
    let mut unusable = vec![false; blocks.list.len()];
    for component in strongly_connected(&edges) {
        let looped = component.len() > 1
            || component
                .first()
                .is_some_and(|&idx| edges[idx].iter().any(|(callee, _)| *callee == idx));
        if !looped {
            continue;
        }
        let start = component.iter().copied().min().unwrap_or(0);
        for &idx in &component {
            unusable[idx] = true;
        }
        if let Some(path) = path_back(&edges, start, &component) {
            diagnostics.push(recursion(blocks, start, &path));
        }
    }
    diagnostics.extend(too_deep(blocks, &edges, &mut unusable));
    for (block, unusable) in blocks.list.iter_mut().zip(unusable) {
        block.usable = !unusable;
    }
    diagnostics
}

/// Tarjan's strongly connected components of the call graph, without recursion.
fn strongly_connected(edges: &[Vec<(usize, Ident)>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next_index = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[node] == usize::MAX {
                index[node] = next_index;
                low[node] = next_index;
                next_index += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some((callee, _)) = edges[node].get(*edge) {
                *edge += 1;
                let callee = *callee;
                if index[callee] == usize::MAX {
                    work.push((callee, 0));
                } else if on_stack[callee] {
                    low[node] = low[node].min(index[callee]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// The shortest chain of calls from `start` back to itself inside `component`: (callee, call)
/// steps.
fn path_back(
    edges: &[Vec<(usize, Ident)>],
    start: usize,
    component: &[usize],
) -> Option<Vec<(usize, Ident)>> {
    let inside = |idx: usize| component.contains(&idx);
    let mut previous: std::collections::HashMap<usize, (usize, Ident)> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = std::collections::HashSet::from([start]);
    while let Some(node) = queue.pop_front() {
        for (callee, call) in &edges[node] {
            if *callee == start {
                let mut path = vec![(*callee, call.clone())];
                let mut at = node;
                while at != start {
                    let (from, call) = previous.get(&at)?.clone();
                    path.push((at, call));
                    at = from;
                }
                path.reverse();
                return Some(path);
            }
            if inside(*callee) && seen.insert(*callee) {
                previous.insert(*callee, (node, call.clone()));
                queue.push_back(*callee);
            }
        }
    }
    None
}

/// Reports the blocks whose calls nest deeper than [`MAX_CALL_DEPTH`] and marks them unusable.
fn too_deep(
    blocks: &Blocks,
    edges: &[Vec<(usize, Ident)>],
    unusable: &mut [bool],
) -> Vec<Diagnostic> {
    // The depth of every usable block: 1 + the deepest usable callee, in post-order.
    let n = edges.len();
    let mut depth = vec![0usize; n];
    for root in 0..n {
        if depth[root] != 0 || unusable[root] {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if let Some((callee, _)) = edges[node].get(*edge) {
                *edge += 1;
                if depth[*callee] == 0 && !unusable[*callee] && *callee != node {
                    work.push((*callee, 0));
                }
                continue;
            }
            work.pop();
            let deepest = edges[node]
                .iter()
                .filter(|(callee, _)| !unusable[*callee])
                .map(|(callee, _)| depth[*callee])
                .max()
                .unwrap_or(0);
            depth[node] = deepest + 1;
        }
    }
    let mut diagnostics = Vec::new();
    // Report the blocks just past the limit, at their call of a block at the limit.
    for (idx, block) in blocks.list.iter().enumerate() {
        if depth[idx] != MAX_CALL_DEPTH + 1 {
            continue;
        }
        let call = edges[idx]
            .iter()
            .find(|(callee, _)| depth[*callee] == MAX_CALL_DEPTH)
            .map_or(block.signature.name.span, |(_, call)| call.span);
        diagnostics.push(
            Diagnostic::error(
                codes::BLOCK_DEPTH,
                format!(
                    "block `{}` starts a chain of more than {MAX_CALL_DEPTH} nested block calls",
                    block.name()
                ),
            )
            .with_primary(
                call,
                format!("this call nests {MAX_CALL_DEPTH} more levels of blocks"),
            )
            .with_secondary(block.signature.name.span, "declared here")
            .with_help(
                "flatten the blocks: a chain of calls that deep is hard to read and to check; \
                 repeat with `xN` instead of nesting",
            ),
        );
    }
    for (idx, depth) in depth.iter().enumerate() {
        if *depth > MAX_CALL_DEPTH {
            unusable[idx] = true;
        }
    }
    diagnostics
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

/// Reports parameters named like a block: inside the body, a bare use could not say whether
/// it means the parameter or a call of the block.
fn shadowed_blocks(blocks: &Blocks, diagnostics: &mut Vec<Diagnostic>) {
    for block in &blocks.list {
        for param in &block.signature.params {
            if blocks.get(&param.name.text).is_some() {
                diagnostics.push(
                    Diagnostic::error(
                        codes::BLOCK_SIGNATURE,
                        format!("parameter `{}` has the name of a block", param.name.text),
                    )
                    .with_primary(param.name.span, format!("`{}` is a block", param.name.text))
                    .with_help(
                        "rename the parameter: inside the body the two could not be told apart",
                    ),
                );
            }
        }
    }
}

fn unused_parameters(blocks: &Blocks, diagnostics: &mut Vec<Diagnostic>) {
    for block in &blocks.list {
        let Some(body) = &block.body else {
            continue;
        };
        let mut used: Vec<&str> = Vec::new();
        ast::for_each_word(body, &mut |word, _| used.push(word));
        for param in &block.signature.params {
            if let Some(default) = &param.default {
                ast::expr_words(default, &mut |word, _| used.push(word));
            }
        }
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
