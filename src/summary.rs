//! The Keras-style summary of a checked model: a table of layer, output shape, parameters and,
//! for graphs, the layers each one reads ("Connected to", as Keras prints it for functional
//! models), with totals; or the same as JSON (docs/commands.md).

use crate::catalogue::decl_of;
use crate::ir::{Layer, Model, Shape};
use crate::suggest::grouped;
use serde::Serialize;

/// The JSON shape of `strata summary --format json`.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    /// Model name.
    pub name: String,
    /// `[h, w, c]`.
    pub input: Vec<usize>,
    /// One entry per layer.
    pub layers: Vec<LayerJson>,
    /// All parameters.
    pub total_params: u64,
    /// Parameters the optimiser updates.
    pub trainable_params: u64,
    /// Moving statistics.
    pub non_trainable_params: u64,
}

/// One layer in the summary JSON.
#[derive(Debug, Serialize)]
pub struct LayerJson {
    /// Position (0-based), as in checkpoint tensor names.
    pub index: usize,
    /// Unique name (`conv_3`).
    pub name: String,
    /// Layer kind as the language names it (`conv`, `pool`, `dense`, …).
    pub kind: &'static str,
    /// `[h, w, c]` or `[n]`, no batch axis.
    pub output_shape: Vec<usize>,
    /// All parameters of the layer.
    pub params: u64,
    /// Trainable parameters of the layer.
    pub trainable: u64,
    /// The suffix activation, if any.
    pub activation: Option<&'static str>,
    /// Whether the compiler inserted the layer (an implicit flatten).
    pub implicit: bool,
    /// The layers it reads, by name (`"input"` for the model's input), in order.
    pub inputs: Vec<String>,
}

/// The JSON summary of `model`.
pub fn to_json(model: &Model) -> SummaryJson {
    SummaryJson {
        name: model.name.clone(),
        input: model.input.dims(),
        layers: model
            .layers
            .iter()
            .map(|layer| LayerJson {
                index: layer.index,
                name: layer.name.clone(),
                kind: decl_of(layer.op.kind()).name,
                output_shape: layer.output.dims(),
                params: layer.params.total(),
                trainable: layer.params.trainable,
                activation: layer.activation.map(|activation| activation.name()),
                implicit: layer.origin.implicit,
                inputs: layer
                    .inputs
                    .iter()
                    .map(|edge| model.source_name(edge.source).to_string())
                    .collect(),
            })
            .collect(),
        total_params: model.params.total(),
        trainable_params: model.params.trainable,
        non_trainable_params: model.params.non_trainable,
    }
}

/// The summary table as text. A graph (a model whose layers do not all read the row above)
/// gets a "Connected to" column, filled where a layer reads something else.
pub fn render_table(model: &Model) -> String {
    let graph = !model.is_chain();
    let mut header = vec!["Layer (type)", "Output Shape", "Param #"];
    if graph {
        header.push("Connected to");
    }
    header.push("Spec");
    let mut input_row = vec![
        "input (InputLayer)".to_string(),
        shape_text(model.input),
        "0".to_string(),
    ];
    if graph {
        input_row.push(String::new());
    }
    input_row.push(String::new());
    let mut rows: Vec<Vec<String>> = vec![input_row];
    rows.extend(model.layers.iter().map(|layer| row(model, layer, graph)));
    let n_columns = header.len();
    let widths: Vec<usize> = (0..n_columns)
        .map(|col| {
            rows.iter()
                .map(|row| row[col].chars().count())
                .chain([header[col].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line_width = widths.iter().sum::<usize>() + 3 * (n_columns - 1);
    let format_row = |cells: &[&str]| {
        let mut line = String::new();
        for (col, cell) in cells.iter().enumerate() {
            if col > 0 {
                line.push_str("   ");
            }
            let pad = widths[col].saturating_sub(cell.chars().count());
            if col == 2 {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if col + 1 < cells.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        line.trim_end().to_string()
    };
    let mut out = format!("Model: \"{}\"\n", model.name);
    out.push_str(&"─".repeat(line_width));
    out.push('\n');
    out.push_str(&format_row(&header));
    out.push('\n');
    out.push_str(&"═".repeat(line_width));
    out.push('\n');
    for cells in &rows {
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        out.push_str(&format_row(&cells));
        out.push('\n');
    }
    out.push_str(&"═".repeat(line_width));
    out.push('\n');
    let params = model.params;
    out.push_str(&format!(
        "Total params: {} ({})\n",
        grouped(params.total()),
        bytes_text(params.total().saturating_mul(4))
    ));
    out.push_str(&format!(
        "Trainable params: {} ({})\n",
        grouped(params.trainable),
        bytes_text(params.trainable.saturating_mul(4))
    ));
    out.push_str(&format!(
        "Non-trainable params: {} ({})\n",
        grouped(params.non_trainable),
        bytes_text(params.non_trainable.saturating_mul(4))
    ));
    out
}

fn row(model: &Model, layer: &Layer, graph: bool) -> Vec<String> {
    let decl = decl_of(layer.op.kind());
    let spec = if layer.origin.implicit {
        format!("(implicit, before {})", layer.origin.text)
    } else {
        let activation = layer
            .activation
            .map(|activation| format!(" {}", activation.text()))
            .unwrap_or_default();
        format!(
            "{}{activation}{}",
            layer.origin.text,
            layer.origin.context()
        )
    };
    let mut row = vec![
        format!("{} ({})", layer.name, decl.keras),
        shape_text(layer.output),
        grouped(layer.params.total()),
    ];
    if graph {
        let connected = if layer.reads_previous() {
            String::new()
        } else {
            layer
                .inputs
                .iter()
                .map(|edge| model.source_name(edge.source))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row.push(connected);
    }
    row.push(spec);
    row
}

/// `224x224x3` for images, `100352` once flat.
pub fn shape_text(shape: Shape) -> String {
    shape.to_string()
}

/// `1.15 MB`, as Keras 3 prints parameter memory (f32): units of 1024.
pub fn bytes_text(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}
