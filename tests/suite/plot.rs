//! The pictures decode as PNGs of the expected size and are not blank.

use strata::plot::{plot_curves, render_grid, CurvePoint, GridImage};

fn distinct_colours(path: &std::path::Path) -> usize {
    let image = image::open(path).expect("png").to_rgb8();
    let mut seen = std::collections::HashSet::new();
    for pixel in image.pixels() {
        seen.insert(pixel.0);
    }
    seen.len()
}

#[test]
fn curves_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("curves.png");
    let points: Vec<CurvePoint> = (1..=8)
        .map(|epoch| CurvePoint {
            epoch,
            loss: 1.0 / epoch as f64,
            accuracy: 1.0 - 0.5 / epoch as f64,
            val_loss: Some(1.2 / epoch as f64),
            val_accuracy: Some(0.9 - 0.5 / epoch as f64),
        })
        .collect();
    plot_curves(&points, "deep-bn", &path).expect("plot");
    let image = image::open(&path).expect("png");
    assert_eq!((image.width(), image.height()), (1200, 500));
    assert!(distinct_colours(&path) > 10, "the plot looks blank");
    // The single-epoch case and missing validation still draw.
    plot_curves(
        &points[..1]
            .iter()
            .map(|p| CurvePoint {
                val_loss: None,
                val_accuracy: None,
                ..*p
            })
            .collect::<Vec<_>>(),
        "one",
        &path,
    )
    .expect("plot one epoch");
}

#[test]
fn grid_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grid.png");
    let images: Vec<GridImage> = (0..10)
        .map(|idx| GridImage {
            pixels: (0..28 * 28)
                .map(|p| ((p + idx * 7) % 28) as f32 / 28.0)
                .collect(),
            height: 28,
            width: 28,
            channels: 1,
            label: format!("class {idx}"),
        })
        .collect();
    render_grid(&images, 5, &path).expect("grid");
    let image = image::open(&path).expect("png");
    assert_eq!((image.width(), image.height()), (5 * 160, 2 * 188));
    assert!(distinct_colours(&path) > 10);
}
