//! `curves.png`: loss and accuracy per epoch, training against validation, side by side.

use super::{plot_err, register_font, PlotError, FONT};
use image::ImageEncoder;
use plotters::prelude::*;
use std::path::Path;

/// One epoch's metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// 1-based epoch.
    pub epoch: usize,
    /// Training loss.
    pub loss: f64,
    /// Training accuracy in 0..=1.
    pub accuracy: f64,
    /// Validation loss, if there is validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
}

const TRAIN_COLOUR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOUR: RGBColor = RGBColor(255, 127, 14);

/// The picture's size in pixels.
const SIZE: (u32, u32) = (1200, 500);

/// Draws loss (left) and accuracy (right) against epoch into a PNG at `path`. (Training writes
/// [`curves_png`]'s bytes atomically instead, so that a kill never leaves half a picture.)
pub fn plot_curves(points: &[CurvePoint], title: &str, path: &Path) -> Result<(), PlotError> {
    let png = curves_png(points, title)?;
    std::fs::write(path, png)
        .map_err(|err| PlotError(format!("cannot write `{}`: {err}", path.display())))
}

/// The curves as PNG bytes.
pub fn curves_png(points: &[CurvePoint], title: &str) -> Result<Vec<u8>, PlotError> {
    let (width, height) = SIZE;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    draw(points, title, &mut pixels)?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(plot_err)?;
    Ok(png)
}

fn draw(points: &[CurvePoint], title: &str, pixels: &mut [u8]) -> Result<(), PlotError> {
    register_font();
    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root.titled(title, (FONT, 24)).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(600);
    let last_epoch = points.iter().map(|p| p.epoch).max().unwrap_or(1).max(2);
    let loss_max = points
        .iter()
        .flat_map(|p| [Some(p.loss), p.val_loss])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let loss = |p: &CurvePoint| (p.loss, p.val_loss);
    let accuracy = |p: &CurvePoint| (p.accuracy, p.val_accuracy);
    panel(
        &left,
        "loss",
        points,
        last_epoch,
        0.0..loss_max,
        SeriesLabelPosition::UpperRight,
        loss,
    )?;
    panel(
        &right,
        "accuracy",
        points,
        last_epoch,
        0.0..1.0,
        SeriesLabelPosition::LowerRight,
        accuracy,
    )?;
    root.present().map_err(plot_err)
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    metric: &str,
    points: &[CurvePoint],
    last_epoch: usize,
    y_range: std::ops::Range<f64>,
    legend: SeriesLabelPosition,
    values: impl Fn(&CurvePoint) -> (f64, Option<f64>),
) -> Result<(), PlotError> {
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(1usize..last_epoch, y_range)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(metric)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .draw()
        .map_err(plot_err)?;
    let train: Vec<(usize, f64)> = points
        .iter()
        .map(|p| (p.epoch, values(p).0))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let val: Vec<(usize, f64)> = points
        .iter()
        .filter_map(|p| Some((p.epoch, values(p).1?)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    chart
        .draw_series(LineSeries::new(train.clone(), TRAIN_COLOUR.stroke_width(2)))
        .map_err(plot_err)?
        .label(format!("training {metric}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], TRAIN_COLOUR.stroke_width(2)));
    chart
        .draw_series(
            train
                .iter()
                .map(|point| Circle::new(*point, 3, TRAIN_COLOUR.filled())),
        )
        .map_err(plot_err)?;
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val.clone(), VAL_COLOUR.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("validation {metric}"))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], VAL_COLOUR.stroke_width(2))
            });
        chart
            .draw_series(
                val.iter()
                    .map(|point| Circle::new(*point, 3, VAL_COLOUR.filled())),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 16))
        .draw()
        .map_err(plot_err)
}
