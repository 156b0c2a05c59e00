//! Export of a trained model to ONNX (opset 17): the IR's layers with a checkpoint's tensors as
//! one ONNX graph that outputs the class probabilities `strata predict` reports. Pure: the
//! caller loads the checkpoint and writes the bytes.
//!
//! The graph reads NHWC images (`float32 [N, H, W, C]` already rescaled, or with
//! [`OnnxOptions::raw_input`] `uint8` pixels that it rescales itself), transposes them once to
//! NCHW, runs every layer in expansion order (batch norm with its moving statistics, dropout
//! gone), and ends in the head: the softmax, or for a `dense1 sigmoid` head both classes'
//! `[1 - p, p]`. Class names, input shape, rescale and the strata version go into the model's
//! metadata properties ([`METADATA_KEYS`]).

mod activation;
mod graph;
mod layers;
pub mod proto;

use crate::backend::checkpoint::NamedTensor;
use crate::ir::{Head, Layer, Model, Source};
use graph::{value_info, Attr, GraphBuilder};
use prost::Message;
use proto::tensor_proto::DataType;
use proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use std::collections::HashMap;
use std::fmt;

/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 17;
/// The ONNX IR version of opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
/// The graph's input name.
pub const INPUT_NAME: &str = "input";
/// The graph's output name.
pub const OUTPUT_NAME: &str = "probabilities";
/// The metadata properties every exported model carries.
pub const METADATA_KEYS: [&str; 7] = [
    "strata.version",
    "strata.name",
    "strata.classes",
    "strata.input_shape",
    "strata.input_layout",
    "strata.rescale",
    "strata.raw_input",
];
/// The largest file a single protobuf message may be (2 GiB); larger models would need ONNX's
/// external data, which strata does not write.
pub const MAX_BYTES: usize = (1 << 31) - 1;

/// What the exported graph reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Read `uint8` pixels and rescale them in the graph, instead of `float32` values already
    /// rescaled.
    pub raw_input: bool,
}

/// Why a model cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// The tensors do not fit the model: one line per missing or misshapen tensor.
    Mismatch(Vec<String>),
    /// The class names are not one per output.
    Classes {
        /// Names given.
        names: usize,
        /// Outputs of the model.
        outputs: usize,
    },
    /// The encoded model would pass [`MAX_BYTES`].
    TooLarge(usize),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Mismatch(lines) => {
                write!(f, "the tensors do not fit the model:")?;
                for line in lines {
                    write!(f, "\n  - {line}")?;
                }
                Ok(())
            }
            ExportError::Classes { names, outputs } => {
                write!(f, "{names} class names for a model with {outputs} classes")
            }
            ExportError::TooLarge(bytes) => write!(
                f,
                "the model needs {bytes} bytes, more than the 2 GiB one ONNX file can hold"
            ),
        }
    }
}

impl std::error::Error for ExportError {}

/// The ONNX file of `model` with the parameters `tensors` (checkpoint names and layouts) and
/// the class names `classes`, in output order.
pub fn to_onnx(
    model: &Model,
    tensors: &[NamedTensor],
    classes: &[String],
    options: OnnxOptions,
) -> Result<Vec<u8>, ExportError> {
    let onnx = onnx_model(model, tensors, classes, options)?;
    let len = onnx.encoded_len();
    if len > MAX_BYTES {
        return Err(ExportError::TooLarge(len));
    }
    Ok(onnx.encode_to_vec())
}

/// The ONNX model of [`to_onnx`], before encoding.
pub fn onnx_model(
    model: &Model,
    tensors: &[NamedTensor],
    classes: &[String],
    options: OnnxOptions,
) -> Result<ModelProto, ExportError> {
    if classes.len() != model.classes {
        return Err(ExportError::Classes {
            names: classes.len(),
            outputs: model.classes,
        });
    }
    let mut b = GraphBuilder::default();
    add_parameters(&mut b, model, tensors)?;
    let image = input_nodes(&mut b, model, options);
    let last = lower_layers(&mut b, model, &image);
    head(&mut b, model, &last);
    let (h, w, c) = model.input.hwc();
    let input_type = if options.raw_input {
        DataType::Uint8
    } else {
        DataType::Float
    };
    let input = value_info(INPUT_NAME, input_type, &[h, w, c]);
    let output = value_info(OUTPUT_NAME, DataType::Float, &[model.classes]);
    let graph = b.finish(&model.name, input, output);
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("strata".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        doc_string: Some(description(model, options)),
        graph: Some(graph),
        metadata_props: metadata(model, classes, options),
        ..ModelProto::default()
    })
}

/// Every layer's parameters as initialisers under their checkpoint names, checked against the
/// layer's layout.
fn add_parameters(
    b: &mut GraphBuilder,
    model: &Model,
    tensors: &[NamedTensor],
) -> Result<(), ExportError> {
    let by_name: HashMap<&str, &NamedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut problems = Vec::new();
    for layer in &model.layers {
        for spec in layer.layout() {
            let name = format!("layers.{}.{}", layer.index, spec.name);
            match by_name.get(name.as_str()) {
                Some(t) if t.shape == spec.shape && t.data.len() == spec.len() => {
                    b.float_tensor(&name, &t.shape, &t.data);
                }
                Some(t) => problems.push(format!(
                    "`{name}` is {:?} but the model needs {:?}",
                    t.shape, spec.shape
                )),
                None => problems.push(format!("`{name}` {:?} is missing", spec.shape)),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ExportError::Mismatch(problems))
    }
}

/// The input as an NCHW `float32` tensor: cast and rescaled first for raw input, then
/// transposed from NHWC. Returns its name.
fn input_nodes(b: &mut GraphBuilder, model: &Model, options: OnnxOptions) -> String {
    let mut x = INPUT_NAME.to_string();
    if options.raw_input {
        let cast = b.node(
            "Cast",
            "input/cast",
            &[&x],
            "input/float",
            &[("to", Attr::Int(DataType::Float as i64))],
        );
        // The loader multiplies each pixel by the rescale as an f32; so does the graph.
        let rescale = b.float_scalar("rescale", model.data.rescale as f32);
        x = b.node(
            "Mul",
            "input/rescale",
            &[&cast, &rescale],
            "input/rescaled",
            &[],
        );
    }
    let perm = Attr::Ints(vec![0, 3, 1, 2]);
    b.node(
        "Transpose",
        "input/nchw",
        &[&x],
        "input/nchw",
        &[("perm", perm)],
    )
}

/// Every layer in expansion order; returns the name of the last layer's output.
fn lower_layers(b: &mut GraphBuilder, model: &Model, image: &str) -> String {
    let mut outputs: Vec<String> = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let inputs: Vec<String> = layer
            .inputs
            .iter()
            .map(|edge| match edge.source {
                Source::Input => image.to_string(),
                Source::Layer(idx) => outputs.get(idx).cloned().unwrap_or_default(),
            })
            .collect();
        outputs.push(lower_layer(b, layer, &inputs));
    }
    outputs.pop().unwrap_or_else(|| image.to_string())
}

/// One layer: its op, then its suffix activation. The result is named after the layer.
fn lower_layer(b: &mut GraphBuilder, layer: &Layer, inputs: &[String]) -> String {
    match layer.activation {
        None => layers::lower_op(b, layer, inputs, &layer.name),
        Some(act) => {
            let op_target = format!("{}/pre_activation", layer.name);
            let before = layers::lower_op(b, layer, inputs, &op_target);
            activation::activation(b, act, &before, &layer.name)
        }
    }
}

/// The class probabilities: the softmax's output as it is, or a sigmoid's `p` as
/// `[1 - p, p]`, the way `strata predict` reports both classes of a binary head.
fn head(b: &mut GraphBuilder, model: &Model, last: &str) {
    match model.head {
        Head::Softmax => {
            b.node("Identity", OUTPUT_NAME, &[last], OUTPUT_NAME, &[]);
        }
        Head::Sigmoid => {
            let one = b.float_scalar("one", 1.0);
            let first = b.node(
                "Sub",
                "head/first_class",
                &[&one, last],
                "head/first_class",
                &[],
            );
            let axis = [("axis", Attr::Int(1))];
            b.node("Concat", OUTPUT_NAME, &[&first, last], OUTPUT_NAME, &axis);
        }
    }
}

/// The metadata properties of [`METADATA_KEYS`].
fn metadata(
    model: &Model,
    classes: &[String],
    options: OnnxOptions,
) -> Vec<StringStringEntryProto> {
    let json = |value: serde_json::Value| value.to_string();
    let values = [
        env!("CARGO_PKG_VERSION").to_string(),
        model.name.clone(),
        json(serde_json::json!(classes)),
        json(serde_json::json!(model.input.dims())),
        "NHWC".to_string(),
        model.data.rescale.to_string(),
        options.raw_input.to_string(),
    ];
    METADATA_KEYS
        .iter()
        .zip(values)
        .map(|(key, value)| StringStringEntryProto {
            key: Some((*key).to_string()),
            value: Some(value),
        })
        .collect()
}

/// The model's doc string: what goes in and what comes out.
fn description(model: &Model, options: OnnxOptions) -> String {
    let (h, w, c) = model.input.hwc();
    let input = if options.raw_input {
        format!(
            "uint8 [N, {h}, {w}, {c}] pixels (NHWC), rescaled by {} in the graph",
            model.data.rescale
        )
    } else {
        format!(
            "float32 [N, {h}, {w}, {c}] (NHWC), pixels already multiplied by {}",
            model.data.rescale
        )
    };
    format!(
        "strata model `{}`: input `{INPUT_NAME}` {input}; output `{OUTPUT_NAME}` float32 [N, {}], the class probabilities in the order of the `strata.classes` metadata",
        model.name, model.classes
    )
}
