//! Typed values from span-tree nodes, converted by serde (through `serde_yaml::Value`), with
//! the diagnostics for values of the wrong type or out of range.

use super::yaml::Node;
use crate::diagnostics::{codes, Diagnostic};
use saphyr_parser::ScalarStyle;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// The serde_yaml value of a node: plain scalars are resolved (numbers, booleans, null),
/// quoted and block scalars stay text.
pub fn to_value(node: &Node) -> Value {
    match node {
        Node::Scalar {
            value,
            style: ScalarStyle::Plain,
            ..
        } => serde_yaml::from_str(value).unwrap_or_else(|_| Value::String(value.clone())),
        Node::Scalar { value, .. } => Value::String(value.clone()),
        Node::Seq { items, .. } => Value::Sequence(items.iter().map(to_value).collect()),
        Node::Map { entries, .. } => Value::Mapping(
            entries
                .iter()
                .map(|(key, value)| (to_value(key), to_value(value)))
                .collect(),
        ),
    }
}

/// Converts `node` to `T` with serde; `expected` names the type for the message.
pub fn typed<T: DeserializeOwned>(
    node: &Node,
    key: &str,
    expected: &str,
) -> Result<T, Box<Diagnostic>> {
    serde_yaml::from_value(to_value(node)).map_err(|_| {
        Box::new(
            invalid_value(
                node,
                format!("`{key}` must be {expected}"),
                format!("expected {expected}, found {}", describe(node)),
            )
            .with_help(format!("write `{key}` as {expected}")),
        )
    })
}

/// Converts `node` to a number and checks it with `in_range`, which names the range.
pub fn number_in<T>(
    node: &Node,
    key: &str,
    expected: &str,
    in_range: impl Fn(T) -> bool,
) -> Result<T, Box<Diagnostic>>
where
    T: DeserializeOwned + Copy + std::fmt::Display,
{
    let value: T = typed(node, key, expected)?;
    if in_range(value) {
        Ok(value)
    } else {
        // The number as written: `1e39`, not its forty digits.
        let written = node
            .as_scalar()
            .map_or_else(|| value.to_string(), str::to_string);
        Err(Box::new(invalid_value(
            node,
            format!("`{key}` must be {expected}"),
            format!("{written} is out of range"),
        )))
    }
}

/// A `strata::spec::invalid_value` diagnostic at `node`.
pub fn invalid_value(node: &Node, message: String, label: String) -> Diagnostic {
    Diagnostic::error(codes::SPEC_INVALID_VALUE, message).with_primary(node.span(), label)
}

/// How a node reads in a message: `text \`abc\``, `the number 3`, `a list`.
pub fn describe(node: &Node) -> String {
    match (node, to_value(node)) {
        (Node::Scalar { .. }, Value::Null) => "nothing".to_string(),
        (Node::Scalar { .. }, Value::Bool(value)) => format!("`{value}`"),
        (Node::Scalar { .. }, Value::Number(number)) => format!("the number {number}"),
        (Node::Scalar { value, .. }, _) => format!("text `{value}`"),
        (other, _) => other.kind_name().to_string(),
    }
}
