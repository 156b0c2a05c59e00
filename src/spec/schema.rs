//! The JSON Schema of the spec file (`strata schema`), built from the key tables of
//! [`super::keys`] and the layer catalogue, for yaml-language-server and other YAML editors.

use super::keys::{
    KeyDoc, AUGMENT_KEYS, DATA_KEYS, EARLY_STOPPING_KEYS, MONITORS, REDUCE_LR_KEYS, SCHEDULES,
    SCHEDULE_KEYS, TOP_KEYS, TRAIN_KEYS,
};
use crate::catalogue::{ArgType, LAYERS};
use serde_json::{json, Map, Value};

/// The JSON Schema (draft-07) of a spec file.
pub fn schema() -> Value {
    let mut root = object(TOP_KEYS, top_type);
    if let Value::Object(map) = &mut root {
        map.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
        map.insert("title".into(), json!("strata spec file"));
        map.insert("required".into(), json!(["input", "model"]));
    }
    root
}

/// The schema as pretty-printed JSON text.
pub fn schema_text() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}

/// A closed object schema whose properties are `keys`, typed by `type_of`.
fn object(keys: &[KeyDoc], type_of: fn(&str) -> Option<Value>) -> Value {
    let properties: Map<String, Value> = keys
        .iter()
        .map(|key| {
            let mut property = type_of(key.key).unwrap_or_else(|| json!({}));
            if let Value::Object(map) = &mut property {
                map.insert("description".into(), json!(key.doc));
            }
            (key.key.to_string(), property)
        })
        .collect();
    json!({ "type": "object", "properties": properties, "additionalProperties": false })
}

/// The type of a top-level key.
pub fn top_type(key: &str) -> Option<Value> {
    Some(match key {
        "name" | "model" => json!({ "type": "string" }),
        "input" => json!({ "oneOf": [
            { "type": "string", "pattern": "^\\s*[0-9]+\\s*x\\s*[0-9]+\\s*x\\s*[13]\\s*$" },
            { "type": "array", "minItems": 3, "maxItems": 3,
              "items": { "type": "integer", "minimum": 1 } },
        ] }),
        "classes" => json!({ "type": "integer", "minimum": 2 }),
        "defaults" => defaults_type(),
        "blocks" => json!({
            "type": "object",
            "propertyNames": { "pattern": "^\\s*[A-Za-z][A-Za-z0-9_]*\\s*(\\(.*\\))?\\s*$" },
            "additionalProperties": { "type": "string" },
        }),
        "train" => object(TRAIN_KEYS, train_type),
        "data" => object(DATA_KEYS, data_type),
        "augment" => json!({ "oneOf": [object(AUGMENT_KEYS, augment_type), { "type": "null" }] }),
        _ => return None,
    })
}

/// The type of a key of `train:`.
pub fn train_type(key: &str) -> Option<Value> {
    Some(match key {
        "optimizer" => json!({ "enum": ["adam", "adamw", "sgd", "rmsprop"] }),
        "weight_decay" | "label_smoothing" => {
            json!({ "type": "number", "minimum": 0, "exclusiveMaximum": 1 })
        }
        "schedule" => json!({ "oneOf": [
            { "enum": SCHEDULES },
            object(SCHEDULE_KEYS, schedule_type),
        ] }),
        "class_weight" => json!({ "oneOf": [
            { "enum": ["balanced"] },
            { "type": "object", "additionalProperties": { "type": "number", "exclusiveMinimum": 0, "maximum": 1e6 } },
        ] }),
        "sync_bn" => json!({ "type": "boolean" }),
        "lr" => json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 10 }),
        "momentum" => json!({ "type": "number", "minimum": 0, "exclusiveMaximum": 1 }),
        "nesterov" => json!({ "type": "boolean" }),
        "epochs" | "batch_size" => json!({ "type": "integer", "minimum": 1 }),
        "loss" => json!({ "enum": ["categorical_crossentropy", "binary_crossentropy"] }),
        "seed" => json!({ "type": "integer", "minimum": 0 }),
        "early_stopping" => switchable(EARLY_STOPPING_KEYS),
        "reduce_lr_on_plateau" => switchable(REDUCE_LR_KEYS),
        _ => return None,
    })
}

/// A feature given as a mapping of its settings, or `true`/`false`.
fn switchable(keys: &[KeyDoc]) -> Value {
    json!({ "oneOf": [object(keys, plateau_type), { "type": "boolean" }, { "type": "null" }] })
}

/// The type of a key of `train.early_stopping` or `train.reduce_lr_on_plateau`.
pub fn plateau_type(key: &str) -> Option<Value> {
    Some(match key {
        "monitor" => json!({ "enum": MONITORS }),
        "patience" | "cooldown" => json!({ "type": "integer", "minimum": 0 }),
        "min_delta" => json!({ "type": "number", "minimum": 0 }),
        "min_lr" => json!({ "type": "number", "minimum": 0, "maximum": 10 }),
        "factor" => json!({ "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1 }),
        _ => return None,
    })
}

/// The type of a key of `train.schedule`.
pub fn schedule_type(key: &str) -> Option<Value> {
    Some(match key {
        "kind" => json!({ "enum": SCHEDULES }),
        "warmup_epochs" => json!({ "type": "number", "minimum": 0 }),
        "alpha" => json!({ "type": "number", "minimum": 0, "maximum": 1 }),
        "every" => json!({ "type": "integer", "minimum": 1 }),
        "factor" | "rate" => json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 1 }),
        _ => return None,
    })
}

/// The type of a key of `augment:`.
pub fn augment_type(key: &str) -> Option<Value> {
    Some(match key {
        "flip" => json!({ "enum": ["horizontal", "vertical", "both", false] }),
        "zoom" => json!({ "type": "number", "minimum": 0, "exclusiveMaximum": 1 }),
        "rotation" | "translation" | "contrast" | "brightness" => {
            json!({ "type": "number", "minimum": 0, "maximum": 1 })
        }
        _ => return None,
    })
}

/// The type of a key of `data:`.
pub fn data_type(key: &str) -> Option<Value> {
    Some(match key {
        "train" | "validation" => json!({ "type": "string" }),
        "validation_split" => {
            json!({ "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1 })
        }
        "cache_mb" => json!({ "type": "integer", "minimum": 0 }),
        "rescale" => json!({ "oneOf": [
            { "type": "number", "exclusiveMinimum": 0, "maximum": 1000 },
            { "type": "string", "pattern": "^\\s*[0-9.]+\\s*/\\s*[0-9.]+\\s*$" },
        ] }),
        _ => return None,
    })
}

/// `defaults:`: per layer name (and alias) with arguments, the arguments' types.
fn defaults_type() -> Value {
    let mut properties = Map::new();
    for decl in LAYERS.iter().filter(|decl| !decl.args.is_empty()) {
        let args: Map<String, Value> = decl
            .args
            .iter()
            .map(|arg| {
                let mut ty = arg_type(arg.ty);
                if let Value::Object(map) = &mut ty {
                    map.insert("description".into(), json!(arg.doc));
                }
                (arg.name.to_string(), ty)
            })
            .collect();
        let layer = json!({
            "type": "object",
            "description": decl.doc,
            "properties": args,
            "additionalProperties": false,
        });
        for name in decl.names() {
            properties.insert(name.to_string(), layer.clone());
        }
    }
    json!({ "type": "object", "properties": properties, "additionalProperties": false })
}

fn arg_type(ty: ArgType) -> Value {
    match ty {
        ArgType::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        ArgType::Float { min, max, max_open } => {
            let upper = if max_open {
                "exclusiveMaximum"
            } else {
                "maximum"
            };
            json!({ "type": "number", "minimum": min, upper: max })
        }
        ArgType::Bool => json!({ "type": "boolean" }),
        ArgType::Choice(words) => json!({ "enum": words }),
        ArgType::Window => json!({ "oneOf": [
            { "type": "integer", "minimum": 1 },
            { "type": "string", "pattern": "^[0-9]+x[0-9]+$" },
        ] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_type() {
        for key in TOP_KEYS {
            assert!(top_type(key.key).is_some(), "{}", key.key);
        }
        for key in TRAIN_KEYS {
            assert!(train_type(key.key).is_some(), "train.{}", key.key);
        }
        for key in DATA_KEYS {
            assert!(data_type(key.key).is_some(), "data.{}", key.key);
        }
        for key in SCHEDULE_KEYS {
            assert!(
                schedule_type(key.key).is_some(),
                "train.schedule.{}",
                key.key
            );
        }
        for key in AUGMENT_KEYS {
            assert!(augment_type(key.key).is_some(), "augment.{}", key.key);
        }
        for key in EARLY_STOPPING_KEYS.iter().chain(REDUCE_LR_KEYS) {
            assert!(plateau_type(key.key).is_some(), "{}", key.key);
        }
    }
}
