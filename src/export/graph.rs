//! A small builder for an ONNX graph: nodes in the order they are added (a topological order,
//! since every node reads names made before it), initialisers, and the shared constants the
//! lowering needs, each made once.

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use std::collections::BTreeSet;

/// The name of the symbolic batch dimension of the input and output.
pub const BATCH_DIM: &str = "N";

/// A graph under construction.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Names of the shared constants made so far.
    constants: BTreeSet<String>,
}

/// One node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    /// An integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
}

impl GraphBuilder {
    /// Adds a node of `op_type` named `name`, reading `inputs` and writing `output`; returns
    /// the output's name.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attributes: &[(&str, Attr)],
    ) -> String {
        self.nodes.push(NodeProto {
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            input: inputs.iter().map(|input| (*input).to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attributes
                .iter()
                .map(|(name, value)| attribute(name, value))
                .collect(),
            ..NodeProto::default()
        });
        output.to_string()
    }

    /// Adds a `float32` initialiser of `dims` holding `values` (row-major).
    pub fn float_tensor(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        self.initializers.push(TensorProto {
            name: Some(name.to_string()),
            dims: dims.iter().map(|&dim| dim as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..TensorProto::default()
        });
        name.to_string()
    }

    /// A shared `float32` scalar constant (`const/<name>`), made on first use.
    pub fn float_scalar(&mut self, name: &str, value: f32) -> String {
        let full = format!("const/{name}");
        if self.constants.insert(full.clone()) {
            self.float_tensor(&full, &[], &[value]);
        }
        full
    }

    /// A shared `int64` vector constant (`const/<name>`), made on first use.
    pub fn int_vector(&mut self, name: &str, values: &[i64]) -> String {
        let full = format!("const/{name}");
        if self.constants.insert(full.clone()) {
            self.initializers.push(TensorProto {
                name: Some(full.clone()),
                dims: vec![values.len() as i64],
                data_type: Some(DataType::Int64 as i32),
                int64_data: values.to_vec(),
                ..TensorProto::default()
            });
        }
        full
    }

    /// The finished graph with its one input and one output.
    pub fn finish(self, name: &str, input: ValueInfoProto, output: ValueInfoProto) -> GraphProto {
        GraphProto {
            name: Some(name.to_string()),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![input],
            output: vec![output],
            ..GraphProto::default()
        }
    }
}

/// A tensor's name, element type and shape, with the batch axis first and symbolic.
pub fn value_info(name: &str, elem_type: DataType, dims: &[usize]) -> ValueInfoProto {
    let batch = tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(
            BATCH_DIM.to_string(),
        )),
        ..tensor_shape_proto::Dimension::default()
    };
    let fixed = dims.iter().map(|&dim| tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(dim as i64)),
        ..tensor_shape_proto::Dimension::default()
    });
    let shape = TensorShapeProto {
        dim: std::iter::once(batch).chain(fixed).collect(),
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(shape),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

fn attribute(name: &str, value: &Attr) -> AttributeProto {
    let base = AttributeProto {
        name: Some(name.to_string()),
        ..AttributeProto::default()
    };
    match value {
        Attr::Int(i) => AttributeProto {
            r#type: Some(AttributeType::Int as i32),
            i: Some(*i),
            ..base
        },
        Attr::Ints(ints) => AttributeProto {
            r#type: Some(AttributeType::Ints as i32),
            ints: ints.clone(),
            ..base
        },
        Attr::Float(f) => AttributeProto {
            r#type: Some(AttributeType::Float as i32),
            f: Some(*f),
            ..base
        },
    }
}
