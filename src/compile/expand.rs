//! Expansion: the model's chain → the layers in expansion order, each naming its inputs.
//!
//! Groups and repeated stages are copied, block calls are expanded with their arguments bound
//! (blocks are macros), and a merge's branches are expanded left to right before the merge
//! itself, so the list is in topological order. Every layer records the repetitions and calls
//! that produced it ([`Frame`]). The expanded size is computed before anything is expanded,
//! so `x1000000000` or blocks that multiply past the limit are refused at once.

use super::args::{self, resolve_call, Defaults, Resolution, Resolved};
use super::blocks::{Block, Blocks};
use super::eval::{evaluate, Bound, Scope, Value};
use crate::catalogue::{self, LayerDecl};
use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{Activation, Frame, FrameKind, Op, Origin, Source};
use crate::suggest;
use crate::syntax::ast::{self, ArgValue, Call, CallStage, Chain, Stage};
use crate::text::{folded, Span};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// The most layers a model may expand to.
pub const MAX_LAYERS: u64 = 10_000;

/// The longest call or group text quoted in a message or a summary row.
const MAX_QUOTED: usize = 48;

/// A layer before shape inference.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The operation; `None` when the call did not resolve (its error is reported).
    pub op: Option<Op>,
    /// The suffix activation.
    pub activation: Option<Activation>,
    /// What it reads: the input, or earlier pending layers (by position in the list).
    pub inputs: Vec<Source>,
    /// Where it came from.
    pub origin: Origin,
    /// For a merge: the characters of each branch, in input order.
    pub branches: Vec<Span>,
    /// How its positional arguments were read, when that may surprise.
    pub reading: Option<String>,
}

/// The expanded model.
#[derive(Clone, Debug, Default)]
pub struct Expansion {
    /// The layers in expansion order.
    pub layers: Vec<Pending>,
}

/// Resolves and expands `chain`. Returns `None` (after reporting) when a repeat count is
/// invalid or the model would be too large.
pub fn expand(
    chain: &Chain,
    source: &str,
    defaults: &Defaults,
    blocks: &Blocks,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Expansion> {
    let mut sizer = Sizer {
        blocks,
        memo: vec![None; blocks.list.len()],
    };
    if !valid_counts(chain, blocks, diagnostics) {
        return None;
    }
    let total = sizer.chain(chain);
    if total > MAX_LAYERS {
        diagnostics.push(too_many_layers(&mut sizer, chain, source, total));
        return None;
    }
    let mut expander = Expander {
        source,
        defaults,
        blocks,
        diagnostics,
        // At most MAX_LAYERS (checked above), so that the list does not grow by copies.
        layers: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
        frames: Vec::new(),
        shared: None,
        quoted: FastMap::default(),
        resolved: FastMap::default(),
    };
    expander.chain(chain, Source::Input, &Scope::default());
    Some(Expansion {
        layers: expander.layers,
    })
}

/// What a call names.
enum Callee {
    /// A catalogue entry (layer, activation or merge), and whether its shorthand is part of
    /// the name (`relu6`) rather than an argument (`conv3`).
    Catalogue(&'static LayerDecl, bool),
    /// A block, by position, and whether its name's digits are part of the name (`stage2`).
    Block(usize, bool),
    /// Nothing (reported).
    Unknown,
}

struct Expander<'a> {
    source: &'a str,
    defaults: &'a Defaults,
    blocks: &'a Blocks,
    diagnostics: &'a mut Vec<Diagnostic>,
    layers: Vec<Pending>,
    /// The repetitions and block calls being expanded, outermost first.
    frames: Vec<Frame>,
    /// `frames` as the layers made now share it; `None` after it changed.
    shared: Option<Arc<[Frame]>>,
    /// [`Expander::quoted`] by span: a block body's calls are quoted once, not per expansion.
    quoted: FastMap<Span, String>,
    /// Resolutions that reported nothing, by [`memo_key`]: a call in a block body resolves
    /// once per distinct set of parameter values, not once per expansion.
    resolved: FastMap<u64, Vec<Memo>>,
}

/// A call's resolution, for the next expansion of the same call with the same values.
struct Memo {
    /// The call's address in the syntax tree.
    call: usize,
    /// The callee's address in the catalogue.
    decl: usize,
    /// Whether the shorthand was part of the name.
    whole_word: bool,
    /// The parameters in scope and their values.
    values: Vec<(String, Value)>,
    /// What it resolved to.
    resolution: Resolution,
}

impl Memo {
    fn matches(&self, call: usize, decl: usize, whole_word: bool, scope: &Scope) -> bool {
        self.call == call
            && self.decl == decl
            && self.whole_word == whole_word
            && self.values.len() == scope.values().len()
            && self
                .values
                .iter()
                .zip(scope.values())
                .all(|((name, value), (known, bound))| name == known && same(value, bound))
    }
}

/// Whether two values are the same input (floats by their bits: `-0.0` is not `0.0` here).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
        _ => a == b,
    }
}

/// The memo key of resolving `call` (at address `call`) as `decl` (at address `decl`) in
/// `scope`: where it is written and the values of the parameters it may read (not where they
/// were given, which only diagnostics mention).
fn memo_key(call: usize, decl: usize, whole_word: bool, scope: &Scope) -> u64 {
    let mut hasher = FastHasher::default();
    (call, decl, whole_word).hash(&mut hasher);
    for (name, value) in scope.values() {
        name.hash(&mut hasher);
        match value {
            Value::Number(num, den) => (0u8, num, den).hash(&mut hasher),
            Value::Float(float) => (1u8, float.to_bits()).hash(&mut hasher),
            Value::Pair(first, second) => (2u8, first, second).hash(&mut hasher),
            Value::Word(word) => (3u8, word).hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// A hash map with [`FastHasher`].
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A multiply-rotate hasher (FxHash's) for the expander's own keys: spans, addresses and
/// values that are compared in full on a hit, so a collision costs time, never a wrong answer.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for byte in chunks.remainder() {
            self.add(u64::from(*byte));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

impl Expander<'_> {
    fn chain(&mut self, chain: &Chain, input: Source, scope: &Scope) -> Source {
        chain
            .stages
            .iter()
            .fold(input, |x, stage| self.stage(stage, x, scope))
    }

    fn stage(&mut self, stage: &Stage, mut x: Source, scope: &Scope) -> Source {
        match stage {
            Stage::Group(group) => {
                let count = repeat_count(group.repeat.as_ref());
                let text = self.quoted(group.span);
                let count_span = group.repeat.as_ref().map_or(group.span, |r| r.span);
                for repetition in 1..=count {
                    self.enter(Frame {
                        kind: FrameKind::Repeat,
                        text: text.clone(),
                        span: group.span,
                        count_span,
                        repetition,
                        count,
                    });
                    x = self.chain(&group.chain, x, scope);
                    self.leave();
                }
                x
            }
            Stage::Call(stage) => self.call_stage(stage, x, scope),
        }
    }

    fn call_stage(&mut self, stage: &CallStage, x: Source, scope: &Scope) -> Source {
        match self.callee(&stage.call, scope) {
            Callee::Unknown => self.unresolved(&stage.call, x),
            Callee::Block(idx, whole_word) => self.block_call(stage, idx, whole_word, x, scope),
            Callee::Catalogue(decl, _) if decl.is_merge() => self.merge(stage, decl, x, scope),
            Callee::Catalogue(decl, whole_word) => self.layer(stage, decl, whole_word, x, scope),
        }
    }

    /// Runs `body` once per repetition of `stage`, with a repeat frame when it repeats.
    fn repeated(
        &mut self,
        stage: &CallStage,
        mut x: Source,
        mut body: impl FnMut(&mut Self, Source) -> Source,
    ) -> Source {
        let count = repeat_count(stage.repeat.as_ref());
        if count == 1 {
            return body(self, x);
        }
        let text = self.quoted(stage.span);
        let count_span = stage.repeat.as_ref().map_or(stage.span, |r| r.span);
        for repetition in 1..=count {
            self.enter(Frame {
                kind: FrameKind::Repeat,
                text: text.clone(),
                span: stage.span,
                count_span,
                repetition,
                count,
            });
            x = body(self, x);
            self.leave();
        }
        x
    }

    fn layer(
        &mut self,
        stage: &CallStage,
        decl: &'static LayerDecl,
        whole_word: bool,
        x: Source,
        scope: &Scope,
    ) -> Source {
        let call = &stage.call;
        let n_before = self.diagnostics.len();
        let resolution = self.resolve(decl, call, whole_word, scope);
        let suffix = self.suffix(stage, decl, scope);
        self.label_calls(n_before);
        let (op, reading) = match resolution {
            Some(Resolution {
                resolved: Resolved::Op(op),
                reading,
            }) => (Some(op), reading),
            Some(Resolution {
                resolved: Resolved::Activation(activation),
                reading,
            }) => {
                if let Some(activation_call) = &stage.activation {
                    self.diagnostics
                        .push(activation_with_suffix(decl, activation_call.span));
                }
                (Some(Op::Activation(activation)), reading)
            }
            None => (None, None),
        };
        let mut origin = self.origin(call, call.span);
        if !whole_word {
            // `dense` of `dense2`: the name, so that a fix can rewrite the shorthand after it.
            origin.name_span = call.name.span;
        }
        self.repeated(stage, x, |this, x| {
            let origin = this.framed(&origin);
            this.push(Pending {
                op,
                activation: suffix,
                inputs: vec![x],
                origin,
                branches: Vec::new(),
                reading: reading.clone(),
            })
        })
    }

    fn merge(
        &mut self,
        stage: &CallStage,
        decl: &'static LayerDecl,
        x: Source,
        scope: &Scope,
    ) -> Source {
        let call = &stage.call;
        if let Some(shorthand) = &call.shorthand {
            self.diagnostics
                .push(args::bad_shorthand(decl, call, shorthand.span));
        }
        let mut ok = call.shorthand.is_none();
        let mut branches: Vec<&Chain> = Vec::new();
        for (position, arg) in call.args.iter().enumerate() {
            match (&arg.name, &arg.value) {
                (Some(name), _) => {
                    ok = false;
                    self.diagnostics.push(named_merge_argument(decl, name.span));
                }
                (None, ArgValue::Branch(chain)) => branches.push(chain),
                (None, ArgValue::Expr(expr)) => {
                    ok = false;
                    self.diagnostics
                        .push(value_as_branch(decl, position, expr.span, self.source));
                }
            }
        }
        if branches.len() < 2 && ok {
            ok = false;
            self.diagnostics.push(too_few_branches(decl, call));
        }
        let suffix = self.suffix(stage, decl, scope);
        if !ok {
            return self.unresolved(call, x);
        }
        let origin = self.origin(call, call.span);
        let kind = match decl.kind {
            catalogue::LayerKind::Merge(kind) => kind,
            _ => return self.unresolved(call, x),
        };
        self.repeated(stage, x, |this, x| {
            let inputs: Vec<Source> = branches
                .iter()
                .map(|branch| this.chain(branch, x, scope))
                .collect();
            let origin = this.framed(&origin);
            this.push(Pending {
                op: Some(Op::Merge(kind)),
                activation: suffix,
                inputs,
                origin,
                branches: branches.iter().map(|branch| branch.span).collect(),
                reading: None,
            })
        })
    }

    fn block_call(
        &mut self,
        stage: &CallStage,
        idx: usize,
        whole_word: bool,
        mut x: Source,
        scope: &Scope,
    ) -> Source {
        let blocks = self.blocks;
        let Some(block) = blocks.list.get(idx) else {
            return self.unresolved(&stage.call, x);
        };
        let call = &stage.call;
        let n_before = self.diagnostics.len();
        let bound = self.bind(block, call, whole_word, scope);
        self.label_calls(n_before);
        let suffix = stage
            .activation
            .as_ref()
            .and_then(|activation| self.activation(activation, block.name(), scope));
        let (Some(bound), Some(body), true) = (bound, &block.body, block.usable) else {
            return self.unresolved(call, x);
        };
        let count = repeat_count(stage.repeat.as_ref());
        let text = self.quoted(call.span);
        let count_span = stage.repeat.as_ref().map_or(call.span, |r| r.span);
        for repetition in 1..=count {
            self.enter(Frame {
                kind: FrameKind::Call {
                    block: block.name().to_string(),
                },
                text: text.clone(),
                span: call.span,
                count_span,
                repetition,
                count,
            });
            x = self.chain(body, x, &bound);
            if let (Some(activation), Some(activation_call)) = (suffix, &stage.activation) {
                let origin = Origin {
                    frames: self.shared_frames(),
                    ..self.origin(activation_call, activation_call.span)
                };
                x = self.push(Pending {
                    op: Some(Op::Activation(activation)),
                    activation: None,
                    inputs: vec![x],
                    origin,
                    branches: Vec::new(),
                    reading: None,
                });
            }
            self.leave();
        }
        x
    }

    /// Binds a block call's arguments to the block's parameters, in a new scope; `None` after
    /// reporting a missing, unknown, duplicate or mistyped argument.
    fn bind(
        &mut self,
        block: &Block,
        call: &Call,
        whole_word: bool,
        scope: &Scope,
    ) -> Option<Scope> {
        let name = block.name();
        let params = &block.signature.params;
        let mut ok = true;
        if let (Some(shorthand), false) = (&call.shorthand, whole_word) {
            ok = false;
            self.diagnostics.push(
                Diagnostic::error(
                    codes::BLOCK_ARGUMENT,
                    format!("block `{name}` takes no shorthand"),
                )
                .with_primary(shorthand.span, "a shorthand")
                .with_help(format!(
                    "pass it as an argument: `{name}({})`",
                    shorthand.first
                )),
            );
        }
        let mut given: Vec<Option<(Bound, Span)>> = vec![None; params.len()];
        let mut failed = vec![false; params.len()];
        let mut seen_named: Option<Span> = None;
        let mut position = 0;
        for arg in &call.args {
            let slot = match &arg.name {
                Some(arg_name) => {
                    seen_named.get_or_insert(arg.span);
                    match params.iter().position(|p| p.name.text == arg_name.text) {
                        Some(slot) => slot,
                        None => {
                            ok = false;
                            self.diagnostics.push(unknown_parameter(
                                block,
                                &arg_name.text,
                                arg_name.span,
                            ));
                            continue;
                        }
                    }
                }
                None => {
                    if let Some(named) = seen_named {
                        ok = false;
                        self.diagnostics.push(
                            Diagnostic::error(
                                codes::BLOCK_ARGUMENT,
                                format!("positional argument after a named one in `{name}`"),
                            )
                            .with_primary(arg.span, "positional argument")
                            .with_secondary(named, "named argument before it")
                            .with_help("put positional arguments first, or name this one"),
                        );
                        continue;
                    }
                    position += 1;
                    if position > params.len() {
                        ok = false;
                        self.diagnostics
                            .push(too_many_block_arguments(block, arg.span));
                        continue;
                    }
                    position - 1
                }
            };
            if let Some((_, first)) = &given[slot] {
                ok = false;
                self.diagnostics.push(
                    Diagnostic::error(
                        codes::BLOCK_ARGUMENT,
                        format!("`{}` is given twice to `{name}`", params[slot].name.text),
                    )
                    .with_primary(arg.span, "given again here")
                    .with_secondary(*first, "first given here")
                    .with_help("keep one of them"),
                );
                continue;
            }
            match args::item_value(&arg.value, scope, name) {
                Ok(value) => {
                    given[slot] = Some((
                        Bound {
                            value: value.value,
                            span: arg.span,
                        },
                        arg.span,
                    ))
                }
                Err(diagnostic) => {
                    ok = false;
                    failed[slot] = true;
                    self.diagnostics.push(*diagnostic);
                }
            }
        }
        let mut bound = Scope::default();
        for ((param, value), failed) in params.iter().zip(given).zip(failed) {
            match (value, &param.default) {
                // Written, but its value failed (reported): not missing too.
                (None, _) if failed => {}
                (Some((value, _)), _) => bound.bind(&param.name.text, value),
                (None, Some(default)) => match evaluate(default, &bound) {
                    Ok(value) => bound.bind(
                        &param.name.text,
                        Bound {
                            value: value.value,
                            span: default.span,
                        },
                    ),
                    Err(diagnostic) => {
                        ok = false;
                        self.diagnostics.push(*diagnostic);
                    }
                },
                (None, None) => {
                    ok = false;
                    self.diagnostics
                        .push(missing_parameter(block, &param.name, call));
                }
            }
        }
        ok.then_some(bound)
    }

    /// Resolves a call of the layer or activation `decl` ([`resolve_call`]), or reuses the
    /// resolution of an earlier expansion of the same call with the same parameter values
    /// that reported nothing.
    fn resolve(
        &mut self,
        decl: &'static LayerDecl,
        call: &Call,
        whole_word: bool,
        scope: &Scope,
    ) -> Option<Resolution> {
        let (call_at, decl_at) = (
            call as *const Call as usize,
            decl as *const LayerDecl as usize,
        );
        let key = memo_key(call_at, decl_at, whole_word, scope);
        if let Some(memo) = self.resolved.get(&key).and_then(|memos| {
            memos
                .iter()
                .find(|memo| memo.matches(call_at, decl_at, whole_word, scope))
        }) {
            return Some(memo.resolution.clone());
        }
        let shorthand = if whole_word {
            None
        } else {
            call.shorthand.as_ref()
        };
        let n_before = self.diagnostics.len();
        let resolution = resolve_call(
            decl,
            call,
            shorthand,
            scope,
            self.defaults,
            self.diagnostics,
        )?;
        if self.diagnostics.len() == n_before {
            self.resolved.entry(key).or_default().push(Memo {
                call: call_at,
                decl: decl_at,
                whole_word,
                values: scope
                    .values()
                    .map(|(name, value)| (name.to_string(), value.clone()))
                    .collect(),
                resolution: resolution.clone(),
            });
        }
        Some(resolution)
    }

    /// The suffix activation of a layer or merge stage.
    fn suffix(&mut self, stage: &CallStage, decl: &LayerDecl, scope: &Scope) -> Option<Activation> {
        let activation = stage.activation.as_ref()?;
        self.activation(activation, decl.name, scope)
    }

    /// Resolves the activation call written after `after`.
    fn activation(&mut self, call: &Call, after: &str, scope: &Scope) -> Option<Activation> {
        match self.callee(call, scope) {
            Callee::Catalogue(decl, whole_word) if decl.is_activation() => {
                match self.resolve(decl, call, whole_word, scope)?.resolved {
                    Resolved::Activation(activation) => Some(activation),
                    Resolved::Op(_) => None,
                }
            }
            Callee::Catalogue(decl, _) => {
                self.diagnostics.push(not_an_activation(
                    decl.name,
                    after,
                    &call.word.text,
                    call.span,
                ));
                None
            }
            Callee::Block(idx, _) => {
                let name = self.blocks.list.get(idx).map_or("", Block::name);
                self.diagnostics
                    .push(not_an_activation(name, after, &call.word.text, call.span));
                None
            }
            Callee::Unknown => None,
        }
    }

    /// What `call` names, after a bare parameter is replaced by its word; reports unknown
    /// names.
    fn callee(&mut self, call: &Call, scope: &Scope) -> Callee {
        let mut word = call.word.text.as_str();
        if call.is_bare() && call.shorthand.is_none() {
            if let Some(bound) = scope.get(word) {
                match &bound.value {
                    Value::Word(value) => word = value,
                    other => {
                        self.diagnostics
                            .push(parameter_not_a_layer(word, other, call.span, bound.span));
                        return Callee::Unknown;
                    }
                }
                return match catalogue::lookup(word) {
                    Some(decl) => Callee::Catalogue(decl, true),
                    None => {
                        self.diagnostics.push(
                            args::unknown_layer(word, call.span, &[]).with_secondary(
                                bound.span,
                                format!("`{}` is `{word}`, given here", call.word.text),
                            ),
                        );
                        Callee::Unknown
                    }
                };
            }
        }
        if let Some(decl) = catalogue::lookup(word) {
            return Callee::Catalogue(decl, true);
        }
        if let Some(idx) = self.blocks.position(word) {
            return Callee::Block(idx, true);
        }
        if call.shorthand.is_some() {
            if let Some(decl) = catalogue::lookup(&call.name.text) {
                return Callee::Catalogue(decl, false);
            }
            if let Some(idx) = self.blocks.position(&call.name.text) {
                return Callee::Block(idx, false);
            }
        }
        if self.blocks.is_broken(word) || self.blocks.is_broken(&call.name.text) {
            // A block whose signature did not parse: reported there, not at every call.
            return Callee::Unknown;
        }
        // `maxpol2`: the name is what is misspelt; the shorthand stays as written.
        let name = if call.shorthand.is_some() {
            &call.name
        } else {
            &call.word
        };
        let names = self.blocks.names();
        self.diagnostics
            .push(args::unknown_layer(&name.text, name.span, &names));
        Callee::Unknown
    }

    /// Adds the block calls that led here as secondary labels to the diagnostics reported
    /// since `n_before`: inside a block body, the values come from the calls.
    fn label_calls(&mut self, n_before: usize) {
        if self.diagnostics.len() <= n_before {
            return;
        }
        let calls: Vec<(Span, String)> = self
            .frames
            .iter()
            .rev()
            .filter(|frame| matches!(frame.kind, FrameKind::Call { .. }))
            .filter_map(Frame::label)
            .collect();
        if calls.is_empty() {
            return;
        }
        for diagnostic in self.diagnostics.iter_mut().skip(n_before) {
            for (span, label) in &calls {
                if !diagnostic.labels.iter().any(|known| known.span == *span) {
                    diagnostic.labels.push(crate::diagnostics::Label {
                        span: *span,
                        message: label.clone(),
                        primary: false,
                    });
                }
            }
        }
    }

    /// A placeholder for a call that did not resolve, so that shape inference stops there.
    fn unresolved(&mut self, call: &Call, x: Source) -> Source {
        let origin = Origin {
            frames: self.shared_frames(),
            ..self.origin(call, call.span)
        };
        self.push(Pending {
            op: None,
            activation: None,
            inputs: vec![x],
            origin,
            branches: Vec::new(),
            reading: None,
        })
    }

    fn origin(&mut self, call: &Call, span: Span) -> Origin {
        Origin {
            text: self.quoted(span),
            span,
            name_span: call.word.span,
            frames: Arc::default(),
            implicit: false,
        }
    }

    /// `origin` inside the repetitions and block calls being expanded.
    fn framed(&mut self, origin: &Origin) -> Origin {
        Origin {
            text: origin.text.clone(),
            span: origin.span,
            name_span: origin.name_span,
            frames: self.shared_frames(),
            implicit: origin.implicit,
        }
    }

    /// Enters a repetition or block call.
    fn enter(&mut self, frame: Frame) {
        self.frames.push(frame);
        self.shared = None;
    }

    /// Leaves the innermost repetition or block call.
    fn leave(&mut self) {
        self.frames.pop();
        self.shared = None;
    }

    /// The frames being expanded, shared by every layer made until they change.
    fn shared_frames(&mut self) -> Arc<[Frame]> {
        Arc::clone(
            self.shared
                .get_or_insert_with(|| Arc::from(self.frames.as_slice())),
        )
    }

    /// The characters of `span`, whitespace folded and shortened for messages.
    fn quoted(&mut self, span: Span) -> String {
        let source = self.source;
        self.quoted
            .entry(span)
            .or_insert_with(|| shorten(&folded(source, span, "")))
            .clone()
    }

    fn push(&mut self, pending: Pending) -> Source {
        self.layers.push(pending);
        Source::Layer(self.layers.len() - 1)
    }
}

/// `text` cut to [`MAX_QUOTED`] characters with `…` where it was cut.
pub fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX_QUOTED - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The count of a repeat (1 without one; counts were checked by [`valid_counts`]).
fn repeat_count(repeat: Option<&ast::Repeat>) -> usize {
    repeat
        .and_then(|repeat| repeat.count)
        .map_or(1, |count| usize::try_from(count).unwrap_or(usize::MAX))
}

/// Checks every repeat count in the model and in the block bodies; reports counts of 0 and
/// counts too large to read.
fn valid_counts(chain: &Chain, blocks: &Blocks, diagnostics: &mut Vec<Diagnostic>) -> bool {
    fn walk(chain: &Chain, diagnostics: &mut Vec<Diagnostic>, ok: &mut bool) {
        for stage in &chain.stages {
            let (repeat, span, what) = match stage {
                Stage::Group(group) => {
                    walk(&group.chain, diagnostics, ok);
                    (group.repeat.as_ref(), group.span, "group")
                }
                Stage::Call(stage) => {
                    for arg in &stage.call.args {
                        if let ArgValue::Branch(branch) = &arg.value {
                            walk(branch, diagnostics, ok);
                        }
                    }
                    (stage.repeat.as_ref(), stage.span, "stage")
                }
            };
            if let Some(repeat) = repeat {
                if matches!(repeat.count, Some(0) | None) {
                    *ok = false;
                    diagnostics.push(bad_count(repeat.count, repeat.span, span, what));
                }
            }
        }
    }
    let mut ok = true;
    walk(chain, diagnostics, &mut ok);
    for block in &blocks.list {
        if let Some(body) = &block.body {
            walk(body, diagnostics, &mut ok);
        }
    }
    ok
}

/// Expanded sizes, saturating; a block's size does not depend on its arguments (repeat counts
/// are numbers), so it is computed once.
struct Sizer<'a> {
    blocks: &'a Blocks,
    memo: Vec<Option<u64>>,
}

impl Sizer<'_> {
    fn chain(&mut self, chain: &Chain) -> u64 {
        chain
            .stages
            .iter()
            .fold(0u64, |total, stage| total.saturating_add(self.stage(stage)))
    }

    fn stage(&mut self, stage: &Stage) -> u64 {
        match stage {
            Stage::Group(group) => {
                count_of(group.repeat.as_ref()).saturating_mul(self.chain(&group.chain))
            }
            Stage::Call(stage) => {
                count_of(stage.repeat.as_ref()).saturating_mul(self.call_stage(stage))
            }
        }
    }

    fn call_stage(&mut self, stage: &CallStage) -> u64 {
        let call = &stage.call;
        if let Some(idx) = self.blocks.position(&call.word.text) {
            let suffix = u64::from(stage.activation.is_some());
            return self.block(idx).saturating_add(suffix);
        }
        if !catalogue::lookup(&call.word.text).is_some_and(LayerDecl::is_merge) {
            return 1;
        }
        call.args.iter().fold(1u64, |total, arg| match &arg.value {
            ArgValue::Branch(branch) => total.saturating_add(self.chain(branch)),
            ArgValue::Expr(_) => total,
        })
    }

    fn block(&mut self, idx: usize) -> u64 {
        if let Some(Some(size)) = self.memo.get(idx) {
            return *size;
        }
        // A recursive block expands to nothing (reported); the placeholder stops recursion
        // here.
        if let Some(slot) = self.memo.get_mut(idx) {
            *slot = Some(1);
        }
        let blocks = self.blocks;
        let size = match blocks.list.get(idx) {
            Some(Block {
                body: Some(body),
                usable: true,
                ..
            }) => self.chain(body),
            _ => 1,
        };
        if let Some(slot) = self.memo.get_mut(idx) {
            *slot = Some(size);
        }
        size
    }
}

fn count_of(repeat: Option<&ast::Repeat>) -> u64 {
    repeat.and_then(|repeat| repeat.count).unwrap_or(1)
}

/// The diagnostic for a model past [`MAX_LAYERS`], at the innermost repeat or call that alone
/// makes too many layers.
fn too_many_layers(sizer: &mut Sizer<'_>, chain: &Chain, source: &str, total: u64) -> Diagnostic {
    fn oversized(sizer: &mut Sizer<'_>, chain: &Chain) -> Option<(Span, Span, u64, bool)> {
        for stage in &chain.stages {
            let (inner, repeat, span, is_call) = match stage {
                Stage::Group(group) => (
                    oversized(sizer, &group.chain),
                    group.repeat.as_ref(),
                    group.span,
                    false,
                ),
                Stage::Call(stage) => {
                    let mut inner = None;
                    for arg in &stage.call.args {
                        if let ArgValue::Branch(branch) = &arg.value {
                            inner = inner.or_else(|| oversized(sizer, branch));
                        }
                    }
                    let is_call = sizer.blocks.position(&stage.call.word.text).is_some();
                    (inner, stage.repeat.as_ref(), stage.call.span, is_call)
                }
            };
            if inner.is_some() {
                return inner;
            }
            let len = sizer.stage(stage);
            if len > MAX_LAYERS {
                let count_span = repeat.map_or(span, |repeat| repeat.span);
                return Some((count_span, span, len, is_call && repeat.is_none()));
            }
        }
        None
    }
    let shown = |n: u64| {
        if n == u64::MAX {
            "more than 18 quintillion".to_string()
        } else {
            n.to_string()
        }
    };
    let diagnostic = Diagnostic::error(
        codes::REPEAT_COUNT,
        format!(
            "the model expands to {} layers, more than the limit of {MAX_LAYERS}",
            shown(total)
        ),
    );
    match oversized(sizer, chain) {
        Some((count_span, span, len, true)) => diagnostic
            .with_primary(count_span, format!("this call makes {} layers", shown(len)))
            .with_help(format!(
                "`{}` expands to too many layers: use smaller repeat counts in its block",
                shorten(&folded(source, span, ""))
            )),
        Some((count_span, span, len, false)) => diagnostic
            .with_primary(
                count_span,
                format!("this repeat makes {} layers", shown(len)),
            )
            .with_secondary(
                span,
                if count_span == span {
                    "this stage"
                } else {
                    "the group repeated"
                },
            )
            .with_help("use a smaller repeat count"),
        None => diagnostic
            .with_primary(chain.span, "this model")
            .with_help("use smaller repeat counts"),
    }
}

fn bad_count(count: Option<u64>, span: Span, group_span: Span, what: &str) -> Diagnostic {
    let (message, label) = match count {
        Some(_) => (
            format!("a {what} repeated 0 times"),
            format!("`x0` removes the {what}"),
        ),
        None => (
            "a repeat count too large to read".to_string(),
            "this count".to_string(),
        ),
    };
    Diagnostic::error(codes::REPEAT_COUNT, message)
        .with_primary(span, label)
        .with_secondary(group_span, format!("the {what}"))
        .with_help(format!(
            "repeat a {what} at least once (`x1`), or delete it"
        ))
}

fn not_an_activation(decl: &str, after: &str, written: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_UNKNOWN,
        format!("`{written}` after `{after}` is not an activation"),
    )
    .with_primary(span, format!("`{decl}` is not an activation"))
    .with_help(format!("join stages with `->`: `{after} -> {written}`"))
}

fn activation_with_suffix(decl: &LayerDecl, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_UNKNOWN,
        format!(
            "the activation `{}` cannot take another activation",
            decl.name
        ),
    )
    .with_primary(span, "a second activation")
    .with_help("join stages with `->` or keep one activation")
}

fn named_merge_argument(decl: &LayerDecl, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!("`{}` takes branches, not named arguments", decl.name),
    )
    .with_primary(span, "a named argument")
    .with_help(format!(
        "write the branches as chains: `{}(identity, conv3(64) -> bn)`",
        decl.name
    ))
}

fn value_as_branch(decl: &LayerDecl, position: usize, span: Span, source: &str) -> Diagnostic {
    let written = folded(source, span, "");
    Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!(
            "branch {} of `{}` is the value `{written}`, not a chain of layers",
            position + 1,
            decl.name
        ),
    )
    .with_primary(span, "a value")
    .with_help(format!(
        "each branch of `{}` is a chain such as `identity` or `conv3(64) -> bn`",
        decl.name
    ))
}

fn too_few_branches(decl: &LayerDecl, call: &Call) -> Diagnostic {
    let n = call.args.len();
    Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!(
            "`{}` needs at least two branches, but has {}",
            decl.name,
            if n == 0 {
                "none".to_string()
            } else {
                n.to_string()
            }
        ),
    )
    .with_primary(call.span, "too few branches")
    .with_help(format!(
        "a residual connection is `{}(identity, conv3(64) -> bn)`",
        decl.name
    ))
}

fn parameter_not_a_layer(name: &str, value: &Value, span: Span, given: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_UNKNOWN,
        format!(
            "`{name}` is a parameter bound to `{}`, not a layer or activation",
            value.display()
        ),
    )
    .with_primary(span, "used as a stage here")
    .with_secondary(
        given,
        format!("`{name}` is `{}`, given here", value.display()),
    )
    .with_help("pass a word such as `relu` to use a parameter as an activation")
}

fn unknown_parameter(block: &Block, name: &str, span: Span) -> Diagnostic {
    let params: Vec<&str> = block
        .signature
        .params
        .iter()
        .map(|param| param.name.text.as_str())
        .collect();
    let diagnostic = Diagnostic::error(
        codes::BLOCK_ARGUMENT,
        format!("block `{}` has no parameter `{name}`", block.name()),
    )
    .with_primary(span, "unknown parameter")
    .with_secondary(block.signature.span, "declared here");
    match suggest::did_you_mean(name, params.iter().copied()) {
        Some(best) if best.certain => diagnostic
            .with_help(format!("did you mean `{}`?", best.word))
            .with_replacement(span, best.word),
        Some(best) => diagnostic.with_help(format!("did you mean `{}`?", best.word)),
        None if params.is_empty() => {
            diagnostic.with_help(format!("`{}` takes no arguments", block.name()))
        }
        None => diagnostic.with_help(format!(
            "the parameters of `{}` are {}",
            block.name(),
            suggest::one_of(&params)
        )),
    }
}

fn too_many_block_arguments(block: &Block, span: Span) -> Diagnostic {
    let n = block.signature.params.len();
    Diagnostic::error(
        codes::BLOCK_ARGUMENT,
        format!("too many arguments for `{}`", block.name()),
    )
    .with_primary(
        span,
        format!(
            "`{}` takes {n} parameter{}",
            block.signature_text(),
            if n == 1 { "" } else { "s" }
        ),
    )
    .with_secondary(block.signature.span, "declared here")
    .with_help("remove the extra arguments")
}

fn missing_parameter(block: &Block, param: &crate::text::Ident, call: &Call) -> Diagnostic {
    Diagnostic::error(
        codes::BLOCK_ARGUMENT,
        format!("`{}` needs `{}`", block.name(), param.text),
    )
    .with_primary(call.span, format!("no `{}` given", param.text))
    .with_secondary(param.span, "declared without a default here")
    .with_help(format!(
        "write `{}({}=…)`, or give the parameter a default in the signature",
        block.name(),
        param.text
    ))
}
