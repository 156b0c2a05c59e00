//! Pictures for people: training curves (`curves.png`) and labelled image grids
//! (`strata preview`). Text is drawn with the bundled DejaVu Sans (assets/), so plots look the
//! same on machines without system fonts.

mod curves;
mod grid;

pub use curves::{curves_png, plot_curves, CurvePoint};
pub use grid::{render_grid, GridImage};

use std::sync::Once;

/// The font family name plots use.
pub(crate) const FONT: &str = "sans-serif";

static REGISTER: Once = Once::new();

/// Registers the bundled font with plotters (once per process).
pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        // INVARIANT: the bundled file is a valid TrueType font; if registration failed, text
        // would be missing from plots, never a crash.
        let _ = plotters::style::register_font(FONT, plotters::style::FontStyle::Normal, bytes);
    });
}

/// A plotting failure, as text (plotters' error types are generic over the backend).
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot draw the picture: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

/// Converts any displayable error into a [`PlotError`].
pub(crate) fn plot_err(err: impl std::fmt::Display) -> PlotError {
    PlotError(err.to_string())
}
