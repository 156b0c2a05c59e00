//! A labelled grid of images, as the seed tutorial shows its data in a 2×5 figure.

use super::{plot_err, register_font, PlotError, FONT};
use plotters::prelude::*;
use std::path::Path;

/// One image of the grid: values channels last in 0..=1 (after rescale), and its label.
#[derive(Clone, Debug)]
pub struct GridImage {
    /// `height × width × channels` values.
    pub pixels: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 or 3.
    pub channels: usize,
    /// The caption (class name).
    pub label: String,
}

/// The side of each cell in pixels.
const CELL: usize = 160;
const CAPTION: usize = 28;

/// Draws `images` in a grid with `columns` columns, each scaled into a square cell with its
/// caption below, into a PNG at `path`.
pub fn render_grid(images: &[GridImage], columns: usize, path: &Path) -> Result<(), PlotError> {
    register_font();
    let columns = columns.max(1);
    let rows = images.len().div_ceil(columns).max(1);
    let size = ((columns * CELL) as u32, (rows * (CELL + CAPTION)) as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    for (idx, image) in images.iter().enumerate() {
        let (x0, y0) = ((idx % columns) * CELL, (idx / columns) * (CELL + CAPTION));
        draw_image(&root, image, x0 as i32, y0 as i32)?;
        let style = TextStyle::from((FONT, 18).into_font()).color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        root.draw_text(
            &image.label,
            &style,
            ((x0 + CELL / 2) as i32, (y0 + CELL + 4) as i32),
        )
        .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)
}

/// Nearest-neighbour scaling of the image into a `CELL - 8` square at (x0, y0).
fn draw_image(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    image: &GridImage,
    x0: i32,
    y0: i32,
) -> Result<(), PlotError> {
    let side = CELL - 8;
    let scale = (side as f64 / image.height.max(image.width).max(1) as f64).max(f64::MIN_POSITIVE);
    let (h, w) = (
        (image.height as f64 * scale) as usize,
        (image.width as f64 * scale) as usize,
    );
    let (off_x, off_y) = (
        x0 + 4 + ((side - w) / 2) as i32,
        y0 + 4 + ((side - h) / 2) as i32,
    );
    for y in 0..h {
        let src_y = ((y as f64 / scale) as usize).min(image.height.saturating_sub(1));
        for x in 0..w {
            let src_x = ((x as f64 / scale) as usize).min(image.width.saturating_sub(1));
            let at = (src_y * image.width + src_x) * image.channels;
            let value = |c: usize| {
                (image
                    .pixels
                    .get(at + c)
                    .copied()
                    .unwrap_or(0.0)
                    .clamp(0.0, 1.0)
                    * 255.0) as u8
            };
            let colour = if image.channels == 1 {
                RGBColor(value(0), value(0), value(0))
            } else {
                RGBColor(value(0), value(1), value(2))
            };
            root.draw_pixel((off_x + x as i32, off_y + y as i32), &colour)
                .map_err(plot_err)?;
        }
    }
    Ok(())
}
