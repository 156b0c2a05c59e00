//! Argument checking: shorthand, positional and named arguments and `defaults:` against the
//! catalogue's declarations, giving each layer call its resolved [`Op`] or activation.

use super::eval::{as_f64, evaluate, evaluate_word, Evaluated, Scope, Value};
use crate::catalogue::{
    ActivationKind, ArgDecl, ArgType, LayerDecl, LayerKind, ShorthandRole, SIZE_MAX,
};
use crate::diagnostics::{codes, Diagnostic};
use crate::ir::{Activation, Op, Padding, PoolKind};
use crate::spec::LayerDefaults;
use crate::suggest;
use crate::syntax::ast::{self, Arg, Call, Shorthand};
use crate::text::{Literal, Span};
use std::collections::HashMap;

/// A checked argument value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgValue {
    /// A whole number.
    Int(u64),
    /// A number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// One word of a choice.
    Word(&'static str),
    /// A window or stride (height, width).
    Window(u64, u64),
}

/// The `defaults:` of a spec, checked, by layer kind.
pub type Defaults = HashMap<LayerKind, Vec<(&'static str, ArgValue)>>;

/// What a layer call resolves to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved {
    /// A layer operation.
    Op(Op),
    /// An activation.
    Activation(Activation),
}

/// A kernel larger than this, given by position to `conv` or `sepconv`, is probably a filter
/// count written in PyTorch's order (`conv(3, 32)`).
pub const LARGE_POSITIONAL_KERNEL: u64 = 7;

/// A resolved call, with what a later message may need to say about how it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// The op or activation.
    pub resolved: Resolved,
    /// How positional arguments were read, when that may surprise (`conv(3, 32)` is 3 filters
    /// with a 32x32 kernel).
    pub reading: Option<String>,
}

/// A call's checked argument values by argument name: a handful, so a list.
#[derive(Default)]
struct Values(Vec<(&'static str, ArgValue)>);

impl Values {
    fn get(&self, name: &str) -> Option<&ArgValue> {
        self.0
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, replacing its value if it has one.
    fn insert(&mut self, name: &'static str, value: ArgValue) {
        match self.0.iter_mut().find(|(known, _)| *known == name) {
            Some((_, known)) => *known = value,
            None => self.0.push((name, value)),
        }
    }

    /// Sets `name` unless it has a value.
    fn insert_new(&mut self, name: &'static str, value: ArgValue) {
        if !self.contains_key(name) {
            self.0.push((name, value));
        }
    }
}

/// Checks the spec's `defaults:` section.
pub fn check_defaults(entries: &[LayerDefaults], diagnostics: &mut Vec<Diagnostic>) -> Defaults {
    let mut defaults = Defaults::new();
    for entry in entries {
        let Some(decl) = crate::catalogue::lookup(&entry.layer.text) else {
            diagnostics.push(unknown_layer(&entry.layer.text, entry.layer.span, &[]));
            continue;
        };
        let checked = defaults.entry(decl.kind).or_default();
        for given in &entry.args {
            let Some(arg) = decl.arg(&given.name.text) else {
                diagnostics.push(unknown_argument(decl, &given.name.text, given.name.span));
                continue;
            };
            let value = Evaluated {
                value: Value::from_literal(&given.value),
                span: given.span,
                given: None,
            };
            match check_value(arg, &value, decl.name) {
                Ok(checked_value) => checked.push((arg.name, checked_value)),
                Err(diagnostic) => diagnostics.push(*diagnostic),
            }
        }
    }
    defaults
}

/// Resolves a call of the layer or activation `decl` in `scope`: its operation, or `None`
/// after reporting why.
pub fn resolve_call(
    decl: &'static LayerDecl,
    call: &Call,
    shorthand: Option<&Shorthand>,
    scope: &Scope,
    defaults: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Resolution> {
    let n_before = diagnostics.len();
    let (given, failed) = given_args(decl, call, shorthand, scope, diagnostics);
    let mut values = Values::default();
    for (arg, value) in &given {
        match check_value(arg, value, decl.name) {
            Ok(checked) => {
                values.insert(arg.name, checked);
            }
            Err(diagnostic) => diagnostics.push(*diagnostic),
        }
    }
    for (name, value) in defaults.get(&decl.kind).into_iter().flatten() {
        values.insert_new(name, *value);
    }
    for arg in decl.args {
        if values.contains_key(arg.name)
            || given.iter().any(|(given, _)| given.name == arg.name)
            || failed.contains(&arg.name)
        {
            continue;
        }
        match arg
            .default
            .and_then(|text| default_value(arg, text, &values))
        {
            Some(value) => {
                values.insert(arg.name, value);
            }
            None => diagnostics.push(missing_argument(decl, arg, call)),
        }
    }
    if diagnostics.len() > n_before {
        return None;
    }
    let reading = positional_reading(decl, call, shorthand.is_some(), &values);
    if let Some((span, text)) = &reading {
        diagnostics.push(large_positional_kernel(text, *span));
    }
    Some(Resolution {
        resolved: build(decl, &values),
        reading: reading.map(|(_, text)| text),
    })
}

/// The arguments written at the call — shorthand, positional, named — each with its
/// declaration and value; reports misplaced, unknown and duplicate ones. Also returns the
/// arguments that were written but whose value failed (reported), so that they are not
/// reported again as missing.
fn given_args(
    decl: &'static LayerDecl,
    call: &Call,
    shorthand: Option<&Shorthand>,
    scope: &Scope,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<(&'static ArgDecl, Evaluated)>, Vec<&'static str>) {
    let mut given: Vec<(&'static ArgDecl, Evaluated, Span)> = Vec::new();
    let mut failed = Vec::new();
    if let Some(shorthand) = shorthand {
        let value = match (decl.shorthand, shorthand.second) {
            (ShorthandRole::Window(name), Some(second)) => {
                Some((name, Value::Pair(shorthand.first, second)))
            }
            (ShorthandRole::Window(name) | ShorthandRole::Count(name), None) => {
                Some((name, Value::from_literal(&Literal::Int(shorthand.first))))
            }
            _ => None,
        };
        match value.and_then(|(name, value)| Some((decl.arg(name)?, value))) {
            Some((arg, value)) => given.push((
                arg,
                Evaluated {
                    value,
                    span: shorthand.span,
                    given: None,
                },
                shorthand.span,
            )),
            None => diagnostics.push(bad_shorthand(decl, call, shorthand.span)),
        }
    }
    let mut seen_named: Option<Span> = None;
    let mut position = 0;
    for written in &call.args {
        let arg = match &written.name {
            Some(name) => {
                seen_named.get_or_insert(written.span);
                match decl.arg(&name.text) {
                    Some(arg) => arg,
                    None => {
                        diagnostics.push(unknown_argument(decl, &name.text, name.span));
                        continue;
                    }
                }
            }
            None => {
                let found = positional(decl, position, written, seen_named);
                position += 1;
                match found {
                    Ok(arg) => arg,
                    Err(diagnostic) => {
                        diagnostics.push(*diagnostic);
                        continue;
                    }
                }
            }
        };
        let value = match item_value(&written.value, scope, decl.name) {
            Ok(value) => value,
            Err(diagnostic) => {
                diagnostics.push(*diagnostic);
                failed.push(arg.name);
                continue;
            }
        };
        if let Some((_, _, first)) = given.iter().find(|(known, _, _)| known.name == arg.name) {
            diagnostics.push(duplicate_argument(decl, arg, written, *first));
            continue;
        }
        given.push((arg, value, written.span));
    }
    let given = given
        .into_iter()
        .map(|(arg, value, _)| (arg, value))
        .collect();
    (given, failed)
}

/// The value of an item given to a callee that takes values: an expression, or a lone word
/// (`same`, a parameter); a longer chain is a mistake.
pub fn item_value(
    value: &ast::ArgValue,
    scope: &Scope,
    callee: &str,
) -> Result<Evaluated, Box<Diagnostic>> {
    match value {
        ast::ArgValue::Expr(expr) => evaluate(expr, scope),
        ast::ArgValue::Branch(chain) => match value.lone_word() {
            Some(word) => Ok(evaluate_word(&word.text, word.span, scope)),
            None => Err(Box::new(
                Diagnostic::error(
                    codes::LAYER_ARGUMENT,
                    format!("`{callee}` takes values, not a chain of layers"),
                )
                .with_primary(chain.span, "a chain here")
                .with_help(
                    "only the merges `add`, `concat` and `mul` take branches; \
                     arguments are values such as `32`, `3x3` or `same`",
                ),
            )),
        },
    }
}

/// The declaration a positional argument fills.
fn positional(
    decl: &'static LayerDecl,
    position: usize,
    written: &Arg,
    seen_named: Option<Span>,
) -> Result<&'static ArgDecl, Box<Diagnostic>> {
    if let Some(named) = seen_named {
        return Err(Box::new(
            Diagnostic::error(
                codes::LAYER_ARGUMENT,
                format!("positional argument after a named one in `{}`", decl.name),
            )
            .with_primary(written.span, "positional argument")
            .with_secondary(named, "named argument before it")
            .with_help("put positional arguments first, or name this one"),
        ));
    }
    if position >= decl.n_positional {
        let takes = match decl.n_positional {
            0 => "no positional arguments".to_string(),
            1 => format!("one positional argument (`{}`)", decl.args[0].name),
            n => {
                let names: Vec<&str> = decl.args[..n].iter().map(|arg| arg.name).collect();
                format!("{n} positional arguments ({})", suggest::one_of(&names))
            }
        };
        return Err(Box::new(
            Diagnostic::error(
                codes::LAYER_ARGUMENT,
                format!("too many positional arguments for `{}`", decl.name),
            )
            .with_primary(written.span, format!("`{}` takes {takes}", decl.name))
            .with_help(argument_list(decl)),
        ));
    }
    Ok(&decl.args[position])
}

/// Checks one value against its declared type.
pub fn check_value(
    arg: &ArgDecl,
    value: &Evaluated,
    layer: &str,
) -> Result<ArgValue, Box<Diagnostic>> {
    let mismatch = |expected: String| {
        let shown = value.value.display();
        let mut diagnostic = Diagnostic::error(
            codes::LAYER_ARGUMENT,
            format!("`{}` of `{layer}` must be {expected}", arg.name),
        )
        .with_primary(value.span, format!("`{shown}` is not {expected}"));
        if let Some((param, given_at)) = &value.given {
            diagnostic =
                diagnostic.with_secondary(*given_at, format!("`{param}` is `{shown}`, given here"));
        }
        Box::new(diagnostic)
    };
    match (arg.ty, &value.value) {
        (ArgType::Int { min, max }, Value::Number(int, 1)) => match u64::try_from(*int) {
            Ok(int) if (min..=max).contains(&int) => Ok(ArgValue::Int(int)),
            _ => Err(mismatch(format!("a whole number from {min} to {max}"))),
        },
        (ArgType::Int { .. }, Value::Number(num, den)) => {
            let mut diagnostic = mismatch("a whole number".to_string());
            diagnostic.labels[0].message = format!("{num}/{den} is not a whole number");
            Err(Box::new(diagnostic.with_help(
                "`/` must divide exactly here: choose values whose quotient is whole",
            )))
        }
        (ArgType::Int { min, max }, _) => {
            Err(mismatch(format!("a whole number from {min} to {max}")))
        }
        (ArgType::Float { min, max, max_open }, number @ (Value::Number(..) | Value::Float(_))) => {
            let x = as_f64(number);
            if x >= min && (x < max || (!max_open && x == max)) {
                Ok(ArgValue::Float(x))
            } else {
                let bracket = if max_open { ")" } else { "]" };
                Err(mismatch(format!("a number in [{min}, {max}{bracket}")))
            }
        }
        (ArgType::Float { min, max, max_open }, _) => {
            let bracket = if max_open { ")" } else { "]" };
            Err(mismatch(format!("a number in [{min}, {max}{bracket}")))
        }
        (ArgType::Bool, Value::Word(word)) if word == "true" || word == "false" => {
            Ok(ArgValue::Bool(word == "true"))
        }
        (ArgType::Bool, _) => Err(mismatch("`true` or `false`".to_string())),
        (ArgType::Choice(words), Value::Word(word)) => {
            match words.iter().find(|known| *known == word) {
                Some(known) => Ok(ArgValue::Word(known)),
                None => {
                    let mut diagnostic = mismatch(suggest::one_of(words));
                    match suggest::did_you_mean(word, words.iter().copied()) {
                        Some(best) => {
                            diagnostic.help = Some(format!("did you mean `{}`?", best.word));
                            if best.certain && value.given.is_none() {
                                Err(Box::new(diagnostic.with_replacement(value.span, best.word)))
                            } else {
                                Err(diagnostic)
                            }
                        }
                        None => Err(diagnostic),
                    }
                }
            }
        }
        (ArgType::Choice(words), _) => Err(mismatch(suggest::one_of(words))),
        (ArgType::Window, Value::Number(size, 1)) if (1..=SIZE_MAX as i64).contains(size) => {
            Ok(ArgValue::Window(*size as u64, *size as u64))
        }
        (ArgType::Window, Value::Pair(h, w))
            if (1..=SIZE_MAX).contains(h) && (1..=SIZE_MAX).contains(w) =>
        {
            Ok(ArgValue::Window(*h, *w))
        }
        (ArgType::Window, _) => Err(mismatch(format!(
            "a size such as `2` or `2x3`, each from 1 to {SIZE_MAX}"
        ))),
    }
}

/// A catalogue default, written in the language; `"size"` refers to the `size` argument.
fn default_value(arg: &ArgDecl, text: &str, values: &Values) -> Option<ArgValue> {
    if let Some(value) = values.get(text) {
        return Some(*value);
    }
    let value = Evaluated {
        value: Value::from_literal(&crate::text::parse_literal(text)),
        span: Span::default(),
        given: None,
    };
    check_value(arg, &value, "").ok()
}

/// When `conv` or `sepconv` got its kernel by position and the kernel is large, the span of
/// the call and how it was read: PyTorch writes `Conv2d(in, out, kernel)`, so `conv(3, 32)`
/// from a PyTorch user means 32 filters, while strata reads 3 filters and a 32x32 kernel.
fn positional_reading(
    decl: &LayerDecl,
    call: &Call,
    has_shorthand: bool,
    values: &Values,
) -> Option<(Span, String)> {
    if !matches!(decl.kind, LayerKind::Conv | LayerKind::SeparableConv) || has_shorthand {
        return None;
    }
    let kernel_written = call.args.iter().filter(|arg| arg.name.is_none()).nth(1)?;
    let (Some(ArgValue::Int(filters)), Some(ArgValue::Window(h, w))) =
        (values.get("filters"), values.get("kernel"))
    else {
        return None;
    };
    (*h > LARGE_POSITIONAL_KERNEL || *w > LARGE_POSITIONAL_KERNEL).then(|| {
        (
            kernel_written.span,
            format!(
                "`{}({filters}, {})` reads as {filters} filters with a {h}x{w} kernel",
                call.word.text,
                if h == w {
                    h.to_string()
                } else {
                    format!("{h}x{w}")
                }
            ),
        )
    })
}

fn large_positional_kernel(reading: &str, span: Span) -> Diagnostic {
    Diagnostic::warning(codes::LINT_LARGE_POSITIONAL_KERNEL, reading.to_string())
        .with_primary(span, "read as the kernel size")
        .with_help(
            "strata's order is `conv(filters, kernel)` (Keras's), not PyTorch's \
             `Conv2d(in, out, kernel)`: write `conv3(32)` for 32 filters of 3x3",
        )
}

/// The operation of a call whose arguments are all present and checked.
fn build(decl: &LayerDecl, values: &Values) -> Resolved {
    let int = |name| match values.get(name) {
        Some(ArgValue::Int(int)) => *int as usize,
        _ => 0,
    };
    let float = |name| match values.get(name) {
        Some(ArgValue::Float(float)) => *float,
        _ => 0.0,
    };
    let flag = |name| matches!(values.get(name), Some(ArgValue::Bool(true)));
    let window = |name| match values.get(name) {
        Some(ArgValue::Window(h, w)) => (*h as usize, *w as usize),
        _ => (1, 1),
    };
    let pad = || match values.get("pad") {
        Some(ArgValue::Word("same")) => Padding::Same,
        _ => Padding::Valid,
    };
    let pool = |kind| Op::Pool {
        kind,
        size: window("size"),
        stride: window("stride"),
        pad: pad(),
    };
    use ActivationKind as A;
    let op = match decl.kind {
        LayerKind::BatchNorm => Op::BatchNorm {
            momentum: float("momentum"),
            eps: float("eps"),
        },
        LayerKind::Conv => Op::Conv {
            filters: int("filters"),
            kernel: window("kernel"),
            stride: window("stride"),
            pad: pad(),
            bias: flag("bias"),
            groups: int("groups"),
        },
        LayerKind::DepthwiseConv => Op::DepthwiseConv {
            multiplier: int("multiplier"),
            kernel: window("kernel"),
            stride: window("stride"),
            pad: pad(),
            bias: flag("bias"),
        },
        LayerKind::SeparableConv => Op::SeparableConv {
            filters: int("filters"),
            multiplier: int("multiplier"),
            kernel: window("kernel"),
            stride: window("stride"),
            pad: pad(),
            bias: flag("bias"),
        },
        LayerKind::MaxPool => pool(PoolKind::Max),
        LayerKind::AvgPool => pool(PoolKind::Avg),
        LayerKind::GlobalAvgPool => Op::GlobalPool {
            kind: PoolKind::Avg,
        },
        LayerKind::GlobalMaxPool => Op::GlobalPool {
            kind: PoolKind::Max,
        },
        LayerKind::Flatten => Op::Flatten,
        LayerKind::Dense => Op::Dense {
            units: int("units"),
            bias: flag("bias"),
        },
        LayerKind::Dropout => Op::Dropout {
            rate: float("rate"),
        },
        LayerKind::Identity => Op::Identity,
        LayerKind::Merge(kind) => Op::Merge(kind),
        LayerKind::Activation(kind) => {
            return Resolved::Activation(match kind {
                A::Relu => Activation::Relu,
                A::Relu6 => Activation::Relu6,
                A::Sigmoid => Activation::Sigmoid,
                A::Tanh => Activation::Tanh,
                A::Softmax => Activation::Softmax,
                A::Gelu => Activation::Gelu,
                A::LeakyRelu => Activation::LeakyRelu {
                    alpha: float("alpha"),
                },
                A::Silu => Activation::Silu,
                A::HardSwish => Activation::HardSwish,
                A::HardSigmoid => Activation::HardSigmoid,
                A::Elu => Activation::Elu {
                    alpha: float("alpha"),
                },
            })
        }
    };
    Resolved::Op(op)
}

/// `strata::layer::unknown` for a name that is not a layer, activation, merge or block;
/// `blocks` are the spec's block names, offered as suggestions too.
pub fn unknown_layer(name: &str, span: Span, blocks: &[&str]) -> Diagnostic {
    let mut names = crate::catalogue::all_names();
    names.extend_from_slice(blocks);
    let diagnostic = Diagnostic::error(codes::LAYER_UNKNOWN, format!("unknown layer `{name}`"))
        .with_primary(span, "not a layer, activation or block");
    if let Some(keras) = crate::catalogue::by_keras_name(name) {
        return diagnostic.with_help(format!(
            "`{name}` is Keras's name; strata calls it `{}`",
            keras.name
        ));
    }
    match suggest::did_you_mean(name, names.iter().copied()) {
        Some(best) if best.certain => diagnostic
            .with_help(format!("did you mean `{}`?", best.word))
            .with_replacement(span, best.word),
        Some(best) => diagnostic.with_help(format!("did you mean `{}`?", best.word)),
        None => diagnostic.with_help(
            "`strata layers` lists every layer, activation and merge; blocks are declared under `blocks:`",
        ),
    }
}

fn unknown_argument(decl: &LayerDecl, name: &str, span: Span) -> Diagnostic {
    let names: Vec<&'static str> = decl.args.iter().map(|arg| arg.name).collect();
    let diagnostic = Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!("`{}` has no argument `{name}`", decl.name),
    )
    .with_primary(span, "unknown argument");
    match suggest::did_you_mean(name, names.iter().copied()) {
        Some(best) if best.certain => diagnostic
            .with_help(format!("did you mean `{}`?", best.word))
            .with_replacement(span, best.word),
        Some(best) => diagnostic.with_help(format!(
            "did you mean `{}`? {}",
            best.word,
            argument_list(decl)
        )),
        None => diagnostic.with_help(argument_list(decl)),
    }
}

fn duplicate_argument(decl: &LayerDecl, arg: &ArgDecl, written: &Arg, first: Span) -> Diagnostic {
    Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!("`{}` is given twice to `{}`", arg.name, decl.name),
    )
    .with_primary(written.span, "given again here")
    .with_secondary(first, "first given here")
    .with_help("keep one of them")
}

fn missing_argument(decl: &LayerDecl, arg: &ArgDecl, call: &Call) -> Diagnostic {
    let example = match (arg.name, decl.shorthand) {
        ("filters", _) => format!(
            "write `{}(32)` or set `defaults: {{{}: {{filters: 32}}}}`",
            call.word.text, decl.name
        ),
        (name, ShorthandRole::Window(shorthand) | ShorthandRole::Count(shorthand))
            if name == shorthand =>
        {
            format!(
                "write it as a shorthand, e.g. `{}3`, or as `{}({name}=3)`",
                decl.name, decl.name
            )
        }
        (name, _) => format!("write `{}({name}=…)`", decl.name),
    };
    Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!("`{}` needs `{}`", decl.name, arg.name),
    )
    .with_primary(call.span, format!("no `{}` given: {}", arg.name, arg.doc))
    .with_help(example)
}

/// `strata::layer::argument` for a shorthand on a name that takes none, or takes another
/// form.
pub fn bad_shorthand(decl: &LayerDecl, call: &Call, span: Span) -> Diagnostic {
    let help = match decl.shorthand {
        ShorthandRole::None => format!(
            "`{}` takes no shorthand; write `{}` alone",
            decl.name, call.name.text
        ),
        ShorthandRole::Count(name) => format!(
            "the shorthand of `{}` is one number ({name}), e.g. `{}128`",
            decl.name, decl.name
        ),
        ShorthandRole::Window(_) => format!("write `{}3` or `{}2x3`", decl.name, decl.name),
    };
    Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!("`{}` does not take this shorthand", decl.name),
    )
    .with_primary(span, "unexpected shorthand")
    .with_help(help)
}

fn argument_list(decl: &LayerDecl) -> String {
    if decl.args.is_empty() {
        return format!("`{}` takes no arguments", decl.name);
    }
    let names: Vec<&str> = decl.args.iter().map(|arg| arg.name).collect();
    format!(
        "the arguments of `{}` are {}",
        decl.name,
        suggest::one_of(&names)
    )
}
