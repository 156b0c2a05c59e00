//! The Keras-style summary of a checked model: a table of layer, output shape and parameters,
//! with totals, as text or as DESIGN §4's JSON.

use crate::catalogue::decl_of;
use crate::ir::{Layer, Model, Shape};
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
            })
            .collect(),
        total_params: model.params.total(),
        trainable_params: model.params.trainable,
        non_trainable_params: model.params.non_trainable,
    }
}

/// The summary table as text.
pub fn render_table(model: &Model) -> String {
    let header = ["Layer (type)", "Output Shape", "Param #", "Spec"];
    let mut rows: Vec<[String; 4]> = vec![[
        "input (InputLayer)".to_string(),
        shape_text(model.input),
        "0".to_string(),
        String::new(),
    ]];
    rows.extend(model.layers.iter().map(row));
    let widths: Vec<usize> = (0..4)
        .map(|col| {
            rows.iter()
                .map(|row| row[col].chars().count())
                .chain([header[col].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line_width = widths.iter().sum::<usize>() + 3 * 3;
    let format_row = |cells: [&str; 4]| {
        format!(
            "{:<w0$}   {:<w1$}   {:>w2$}   {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .trim_end()
        .to_string()
    };
    let mut out = format!("Model: \"{}\"\n", model.name);
    out.push_str(&"─".repeat(line_width));
    out.push('\n');
    out.push_str(&format_row(header));
    out.push('\n');
    out.push_str(&"═".repeat(line_width));
    out.push('\n');
    for cells in &rows {
        out.push_str(&format_row([&cells[0], &cells[1], &cells[2], &cells[3]]));
        out.push('\n');
    }
    out.push_str(&"═".repeat(line_width));
    out.push('\n');
    let params = model.params;
    out.push_str(&format!(
        "Total params: {} ({})\n",
        grouped(params.total()),
        bytes_text(params.total() * 4)
    ));
    out.push_str(&format!(
        "Trainable params: {} ({})\n",
        grouped(params.trainable),
        bytes_text(params.trainable * 4)
    ));
    out.push_str(&format!(
        "Non-trainable params: {} ({})\n",
        grouped(params.non_trainable),
        bytes_text(params.non_trainable * 4)
    ));
    out
}

fn row(layer: &Layer) -> [String; 4] {
    let decl = decl_of(layer.op.kind());
    let spec = if layer.origin.implicit {
        format!("(implicit, before {})", layer.origin.text)
    } else {
        let activation = layer
            .activation
            .map(|activation| format!(" {}", activation.name()))
            .unwrap_or_default();
        format!(
            "{}{activation}{}",
            layer.origin.text,
            layer.origin.repetition_text()
        )
    };
    [
        format!("{} ({})", layer.name, decl.keras),
        shape_text(layer.output),
        grouped(layer.params.total()),
        spec,
    ]
}

/// `224x224x3` for images, `100352` once flat.
pub fn shape_text(shape: Shape) -> String {
    shape.to_string()
}

/// `301,070`.
pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (idx, ch) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `1.15 MB`, as Keras 3 prints parameter memory (f32).
fn bytes_text(bytes: u64) -> String {
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
