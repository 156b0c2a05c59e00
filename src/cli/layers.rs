//! `strata layers`: every layer, merge and activation of the catalogue — names and aliases,
//! shorthand, arguments with their types and defaults, Keras class, parameter rule and doc
//! line — as text, or as a JSON array with `--format json`. docs/language.md explains them.

use super::output::OutputFormat;
use super::{EXIT_OK, EXIT_USAGE};
use crate::catalogue::{ArgDecl, ArgType, LayerDecl, LayerKind, ShorthandRole, LAYERS};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Prints the catalogue; returns the exit status.
pub fn run(format: OutputFormat) -> u8 {
    match format {
        OutputFormat::Json => match serde_json::to_string(&to_json()) {
            Ok(text) => {
                println!("{text}");
                EXIT_OK
            }
            Err(err) => {
                eprintln!("error: {err}");
                EXIT_USAGE
            }
        },
        OutputFormat::Human { .. } | OutputFormat::Github => {
            print!("{}", render_text());
            EXIT_OK
        }
    }
}

/// What a declaration is, as the listing groups it.
fn group_of(decl: &LayerDecl) -> &'static str {
    match decl.kind {
        LayerKind::Merge(_) => "merge",
        LayerKind::Activation(_) => "activation",
        _ => "layer",
    }
}

/// The catalogue as a JSON array, one object per layer, merge and activation.
pub fn to_json() -> Value {
    Value::Array(LAYERS.iter().map(decl_json).collect())
}

fn decl_json(decl: &LayerDecl) -> Value {
    let shorthand = match decl.shorthand {
        ShorthandRole::None => Value::Null,
        ShorthandRole::Window(fills) => json!({
            "form": "window",
            "fills": fills,
            "example": format!("{}3", decl.name),
        }),
        ShorthandRole::Count(fills) => json!({
            "form": "count",
            "fills": fills,
            "example": format!("{}128", decl.name),
        }),
    };
    let positional: Vec<&str> = decl.args[..decl.n_positional.min(decl.args.len())]
        .iter()
        .map(|arg| arg.name)
        .collect();
    json!({
        "name": decl.name,
        "aliases": decl.aliases,
        "kind": group_of(decl),
        "keras": decl.keras,
        "doc": decl.doc,
        "params": decl.param_rule,
        "shorthand": shorthand,
        "positional": positional,
        "arguments": decl.args.iter().map(arg_json).collect::<Vec<_>>(),
    })
}

fn arg_json(arg: &ArgDecl) -> Value {
    let mut object = json!({
        "name": arg.name,
        "required": arg.default.is_none(),
        "default": arg.default,
        "doc": arg.doc,
        "type": type_name(arg.ty),
        "description": type_text(arg.ty),
    });
    if let Value::Object(map) = &mut object {
        match arg.ty {
            ArgType::Int { min, max } => {
                map.insert("min".into(), json!(min));
                map.insert("max".into(), json!(max));
            }
            ArgType::Float { min, max, max_open } => {
                map.insert("min".into(), json!(min));
                map.insert("max".into(), json!(max));
                map.insert("max_open".into(), json!(max_open));
            }
            ArgType::Choice(words) => {
                map.insert("choices".into(), json!(words));
            }
            ArgType::Window => {
                map.insert("min".into(), json!(1));
                map.insert("max".into(), json!(crate::catalogue::SIZE_MAX));
            }
            ArgType::Bool => {}
        }
    }
    object
}

/// The type's short name in the JSON listing.
fn type_name(ty: ArgType) -> &'static str {
    match ty {
        ArgType::Int { .. } => "int",
        ArgType::Float { .. } => "float",
        ArgType::Bool => "bool",
        ArgType::Choice(_) => "choice",
        ArgType::Window => "window",
    }
}

/// The values an argument takes, in words.
pub fn type_text(ty: ArgType) -> String {
    match ty {
        ArgType::Int { min, max } => format!("whole number {min} to {max}"),
        ArgType::Float { min, max, max_open } => format!(
            "number in [{}, {}{}",
            number_text(min),
            number_text(max),
            if max_open { ")" } else { "]" }
        ),
        ArgType::Bool => "true or false".to_string(),
        ArgType::Choice(words) => words.join(" or "),
        ArgType::Window => "size: 3 or 3x5".to_string(),
    }
}

/// A bound as the language would write it: `0`, `0.5`, `1e-12`.
fn number_text(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-4 {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// The call with its arguments, positional ones first: `conv(filters, kernel, stride=1, …)`.
fn call_text(decl: &LayerDecl) -> String {
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

fn shorthand_text(decl: &LayerDecl) -> Option<String> {
    match decl.shorthand {
        ShorthandRole::None => None,
        ShorthandRole::Window(fills) => Some(format!("{0}3 or {0}3x5 sets `{fills}`", decl.name)),
        ShorthandRole::Count(fills) => Some(format!("{}128 sets `{fills}`", decl.name)),
    }
}

/// The listing for people: layers, then merges, then activations.
pub fn render_text() -> String {
    let mut out = String::new();
    for (group, title) in [
        ("layer", "Layers"),
        (
            "merge",
            "Merges (their items are branches: `add(identity, conv3(64) -> bn)`)",
        ),
        (
            "activation",
            "Activations (a suffix, `conv3(32) relu`, or a stage, `-> relu`)",
        ),
    ] {
        let _ = writeln!(out, "{title}\n");
        for decl in LAYERS.iter().filter(|decl| group_of(decl) == group) {
            render_decl(&mut out, decl);
        }
    }
    out.push_str("docs/language.md explains the language; `strata explain CODE` a diagnostic.\n");
    out
}

fn render_decl(out: &mut String, decl: &LayerDecl) {
    let aliases = if decl.aliases.is_empty() {
        String::new()
    } else {
        format!(" (also {})", decl.aliases.join(", "))
    };
    let _ = writeln!(out, "{}{aliases} — Keras {}", decl.name, decl.keras);
    let _ = writeln!(out, "    {}", decl.doc);
    if let Some(shorthand) = shorthand_text(decl) {
        let _ = writeln!(out, "    shorthand:  {shorthand}");
    }
    if decl.is_merge() {
        let _ = writeln!(out, "    call:       {}(branch, branch, …)", decl.name);
    }
    if !decl.args.is_empty() {
        let _ = writeln!(out, "    call:       {}", call_text(decl));
        let positional: Vec<&str> = decl.args[..decl.n_positional.min(decl.args.len())]
            .iter()
            .map(|arg| arg.name)
            .collect();
        if !positional.is_empty() {
            let _ = writeln!(out, "    positional: {}", positional.join(", "));
        }
        let _ = writeln!(out, "    arguments:");
        let name_width = decl
            .args
            .iter()
            .map(|arg| arg.name.len())
            .max()
            .unwrap_or(0);
        let defaults: Vec<String> = decl
            .args
            .iter()
            .map(|arg| match arg.default {
                Some(default) => format!("default {default}"),
                None => "required".to_string(),
            })
            .collect();
        let types: Vec<String> = decl.args.iter().map(|arg| type_text(arg.ty)).collect();
        let default_width = defaults.iter().map(String::len).max().unwrap_or(0);
        let type_width = types.iter().map(String::len).max().unwrap_or(0);
        for ((arg, default), ty) in decl.args.iter().zip(&defaults).zip(&types) {
            let _ = writeln!(
                out,
                "      {:name_width$}  {:default_width$}  {:type_width$}  {}",
                arg.name, default, ty, arg.doc
            );
        }
    }
    let params = if decl.param_rule == "-" {
        "none"
    } else {
        decl.param_rule
    };
    let _ = writeln!(out, "    params:     {params}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declaration_is_listed() {
        let text = render_text();
        for decl in LAYERS {
            assert!(
                text.contains(&format!("\n{}", decl.name)),
                "{} missing",
                decl.name
            );
        }
        let json = to_json();
        assert_eq!(json.as_array().map(Vec::len), Some(LAYERS.len()));
    }
}
