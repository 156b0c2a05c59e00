//! Argument checking: shorthand, positional and named arguments and `defaults:` against the
//! catalogue's declarations, giving each layer call its resolved [`Op`] or activation.

use crate::catalogue::{lookup, ArgDecl, ArgType, LayerDecl, LayerKind, ShorthandRole, SIZE_MAX};
use crate::diagnostics::{codes, Diagnostic, Span};
use crate::ir::{Activation, Op, Padding, PoolKind};
use crate::spec::LayerDefaults;
use crate::suggest;
use crate::syntax::ast::{Arg, LayerCall, Value, ValueKind};
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

/// Checks the spec's `defaults:` section.
pub fn check_defaults(entries: &[LayerDefaults], diagnostics: &mut Vec<Diagnostic>) -> Defaults {
    let mut defaults = Defaults::new();
    for entry in entries {
        let Some(decl) = lookup(&entry.layer.text) else {
            diagnostics.push(unknown_layer(&entry.layer.text, entry.layer.span));
            continue;
        };
        let checked = defaults.entry(decl.kind).or_default();
        for (name, value) in &entry.args {
            let Some(arg) = decl.arg(&name.text) else {
                diagnostics.push(unknown_argument(decl, &name.text, name.span));
                continue;
            };
            match check_value(arg, value, decl.name) {
                Ok(checked_value) => checked.push((arg.name, checked_value)),
                Err(diagnostic) => diagnostics.push(*diagnostic),
            }
        }
    }
    defaults
}

/// Resolves a layer call: its declaration and its operation, or `None` after reporting why.
pub fn resolve_call(
    call: &LayerCall,
    defaults: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<(&'static LayerDecl, Resolved)> {
    let Some(decl) = lookup(&call.name.text) else {
        diagnostics.push(unknown_layer(&call.name.text, call.name.span));
        return None;
    };
    let n_before = diagnostics.len();
    let given = given_args(decl, call, diagnostics);
    let mut values: HashMap<&'static str, ArgValue> = HashMap::new();
    for (arg, value) in &given {
        match check_value(arg, value, decl.name) {
            Ok(checked) => {
                values.insert(arg.name, checked);
            }
            Err(diagnostic) => diagnostics.push(*diagnostic),
        }
    }
    for (name, value) in defaults.get(&decl.kind).into_iter().flatten() {
        values.entry(name).or_insert(*value);
    }
    for arg in decl.args {
        if values.contains_key(arg.name) || given.iter().any(|(given, _)| given.name == arg.name) {
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
    Some((decl, build(decl, &values)))
}

/// The arguments written at the call — shorthand, positional, named — each with its
/// declaration; reports misplaced, unknown and duplicate ones.
fn given_args(
    decl: &'static LayerDecl,
    call: &LayerCall,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(&'static ArgDecl, Value)> {
    let mut given: Vec<(&'static ArgDecl, Value, Span)> = Vec::new();
    if let Some(shorthand) = &call.shorthand {
        let value = match (decl.shorthand, shorthand.second) {
            (ShorthandRole::Window(name), Some(second)) => {
                Some((name, ValueKind::Pair(shorthand.first, second)))
            }
            (ShorthandRole::Window(name) | ShorthandRole::Count(name), None) => {
                Some((name, ValueKind::Int(shorthand.first)))
            }
            _ => None,
        };
        match value.and_then(|(name, kind)| Some((decl.arg(name)?, kind))) {
            Some((arg, kind)) => given.push((
                arg,
                Value {
                    kind,
                    span: shorthand.span,
                },
                shorthand.span,
            )),
            None => diagnostics.push(bad_shorthand(decl, call, shorthand.span)),
        }
    }
    let mut seen_named: Option<Span> = None;
    for (position, written) in call.args.iter().enumerate() {
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
            None => match positional(decl, position, written, seen_named) {
                Ok(arg) => arg,
                Err(diagnostic) => {
                    diagnostics.push(*diagnostic);
                    continue;
                }
            },
        };
        if let Some((_, _, first)) = given.iter().find(|(known, _, _)| known.name == arg.name) {
            diagnostics.push(duplicate_argument(decl, arg, written, *first));
            continue;
        }
        given.push((arg, written.value.clone(), written.span));
    }
    given
        .into_iter()
        .map(|(arg, value, _)| (arg, value))
        .collect()
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
            n => format!("{n} positional arguments"),
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
pub fn check_value(arg: &ArgDecl, value: &Value, layer: &str) -> Result<ArgValue, Box<Diagnostic>> {
    let mismatch = |expected: String| {
        Box::new(
            Diagnostic::error(
                codes::LAYER_ARGUMENT,
                format!("`{}` of `{layer}` must be {expected}", arg.name),
            )
            .with_primary(
                value.span,
                format!("`{}` is not {expected}", value.kind.display()),
            ),
        )
    };
    match (arg.ty, &value.kind) {
        (ArgType::Int { min, max }, ValueKind::Int(int)) if (min..=max).contains(int) => {
            Ok(ArgValue::Int(*int))
        }
        (ArgType::Int { min, max }, _) => {
            Err(mismatch(format!("a whole number from {min} to {max}")))
        }
        (ArgType::Float { min, max, max_open }, kind) => {
            let number = match kind {
                ValueKind::Int(int) => Some(*int as f64),
                ValueKind::Float(float) => Some(*float),
                ValueKind::Fraction(num, den) if *den != 0 => Some(*num as f64 / *den as f64),
                _ => None,
            };
            let in_range = |x: f64| x >= min && (x < max || (!max_open && x == max));
            match number {
                Some(x) if in_range(x) => Ok(ArgValue::Float(x)),
                _ => {
                    let bracket = if max_open { ")" } else { "]" };
                    Err(mismatch(format!("a number in [{min}, {max}{bracket}")))
                }
            }
        }
        (ArgType::Bool, ValueKind::Name(word)) if word == "true" || word == "false" => {
            Ok(ArgValue::Bool(word == "true"))
        }
        (ArgType::Bool, _) => Err(mismatch("`true` or `false`".to_string())),
        (ArgType::Choice(words), ValueKind::Name(word)) => {
            match words.iter().find(|known| *known == word) {
                Some(known) => Ok(ArgValue::Word(known)),
                None => {
                    let mut diagnostic = mismatch(one_of(words));
                    diagnostic.help = suggest::help_for(word, words);
                    match suggest::did_you_mean(word, words.iter().copied()) {
                        Some(best) => Err(Box::new(diagnostic.with_replacement(value.span, best))),
                        None => Err(diagnostic),
                    }
                }
            }
        }
        (ArgType::Choice(words), _) => Err(mismatch(one_of(words))),
        (ArgType::Window, ValueKind::Int(size)) if (1..=SIZE_MAX).contains(size) => {
            Ok(ArgValue::Window(*size, *size))
        }
        (ArgType::Window, ValueKind::Pair(h, w))
            if (1..=SIZE_MAX).contains(h) && (1..=SIZE_MAX).contains(w) =>
        {
            Ok(ArgValue::Window(*h, *w))
        }
        (ArgType::Window, _) => Err(mismatch(
            "a size such as `2` or `2x3`, each from 1 to 65536".to_string(),
        )),
    }
}

/// A catalogue default, written in the language; `"size"` refers to the `size` argument.
fn default_value(
    arg: &ArgDecl,
    text: &str,
    values: &HashMap<&'static str, ArgValue>,
) -> Option<ArgValue> {
    if let Some(value) = values.get(text) {
        return Some(*value);
    }
    let kind = match text.parse::<u64>() {
        Ok(int) => ValueKind::Int(int),
        Err(_) => match text.parse::<f64>() {
            Ok(float) => ValueKind::Float(float),
            Err(_) => ValueKind::Name(text.to_string()),
        },
    };
    check_value(
        arg,
        &Value {
            kind,
            span: Span::default(),
        },
        "",
    )
    .ok()
}

/// The operation of a call whose arguments are all present and checked.
fn build(decl: &LayerDecl, values: &HashMap<&'static str, ArgValue>) -> Resolved {
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
    use crate::catalogue::ActivationKind as A;
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
        },
        LayerKind::MaxPool => pool(PoolKind::Max),
        LayerKind::AvgPool => pool(PoolKind::Avg),
        LayerKind::GlobalAvgPool => Op::GlobalAvgPool,
        LayerKind::Flatten => Op::Flatten,
        LayerKind::Dense => Op::Dense {
            units: int("units"),
            bias: flag("bias"),
        },
        LayerKind::Dropout => Op::Dropout {
            rate: float("rate"),
        },
        LayerKind::Activation(kind) => {
            return Resolved::Activation(match kind {
                A::Relu => Activation::Relu,
                A::Sigmoid => Activation::Sigmoid,
                A::Tanh => Activation::Tanh,
                A::Softmax => Activation::Softmax,
                A::Gelu => Activation::Gelu,
                A::LeakyRelu => Activation::LeakyRelu {
                    alpha: float("alpha"),
                },
            })
        }
    };
    Resolved::Op(op)
}

/// `strata::layer::unknown` for a name not in the catalogue.
pub fn unknown_layer(name: &str, span: Span) -> Diagnostic {
    let names = crate::catalogue::all_names();
    let diagnostic = Diagnostic::error(codes::LAYER_UNKNOWN, format!("unknown layer `{name}`"))
        .with_primary(span, "not a layer or activation");
    match suggest::did_you_mean(name, names.iter().copied()) {
        Some(best) => diagnostic
            .with_help(format!("did you mean `{best}`?"))
            .with_replacement(span, best),
        None => diagnostic.with_help(format!("the layers are {}", one_of(&names))),
    }
}

fn unknown_argument(decl: &LayerDecl, name: &str, span: Span) -> Diagnostic {
    let names: Vec<&'static str> = decl.args.iter().map(|arg| arg.name).collect();
    let mut diagnostic = Diagnostic::error(
        codes::LAYER_ARGUMENT,
        format!("`{}` has no argument `{name}`", decl.name),
    )
    .with_primary(span, "unknown argument");
    diagnostic.help = suggest::help_for(name, &names).or_else(|| Some(argument_list(decl)));
    match suggest::did_you_mean(name, names.iter().copied()) {
        Some(best) => diagnostic.with_replacement(span, best),
        None => diagnostic,
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

fn missing_argument(decl: &LayerDecl, arg: &ArgDecl, call: &LayerCall) -> Diagnostic {
    let example = match (arg.name, decl.shorthand) {
        ("filters", _) => format!(
            "write `{}(32)` or set `defaults: {{conv: {{filters: 32}}}}`",
            call_text(call)
        ),
        (name, ShorthandRole::Window(shorthand) | ShorthandRole::Count(shorthand))
            if name == shorthand =>
        {
            format!("write it as a shorthand, e.g. `{}3`", decl.name)
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

fn bad_shorthand(decl: &LayerDecl, call: &LayerCall, span: Span) -> Diagnostic {
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

/// The call's name and shorthand as written (`conv2x2`).
fn call_text(call: &LayerCall) -> String {
    match &call.shorthand {
        Some(shorthand) => match shorthand.second {
            Some(second) => format!("{}{}x{second}", call.name.text, shorthand.first),
            None => format!("{}{}", call.name.text, shorthand.first),
        },
        None => call.name.text.clone(),
    }
}

fn argument_list(decl: &LayerDecl) -> String {
    if decl.args.is_empty() {
        return format!("`{}` takes no arguments", decl.name);
    }
    let names: Vec<&str> = decl.args.iter().map(|arg| arg.name).collect();
    format!("the arguments of `{}` are {}", decl.name, one_of(&names))
}

/// `` `a`, `b` or `c` ``.
pub fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|word| format!("`{word}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}
