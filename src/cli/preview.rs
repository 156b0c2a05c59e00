//! `strata preview SPEC|DIR --out grid.png`: a labelled grid of sample images after
//! preprocessing, as the seed tutorial shows its data in a 2×5 figure. With a spec, images are
//! converted as the model will see them (channels, size, rescale); with a folder, they are
//! shown in colour at 128×128.

use super::output::{file_stem, read_spec, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::compile::compile;
use crate::data::{folder, load_image, paths, ImageSpec};
use crate::diagnostics::SourceFile;
use crate::plot::{render_grid, GridImage};
use std::path::{Path, PathBuf};

/// Options of `strata preview`.
#[derive(Debug)]
pub struct PreviewArgs<'a> {
    /// A spec file or an image folder.
    pub target: &'a Path,
    /// Where to write the PNG.
    pub out: &'a Path,
    /// `--data DIR` (with a spec).
    pub data: Option<&'a Path>,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub columns: usize,
}

/// Runs the command; returns the exit status.
pub fn run(args: &PreviewArgs<'_>, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let (dir, spec) = if args.target.is_dir() {
        let spec = ImageSpec {
            height: 128,
            width: 128,
            channels: 3,
            rescale: 1.0 / 255.0,
        };
        (args.target.to_path_buf(), spec)
    } else {
        match spec_folder(args, &mut printer) {
            Ok(found) => found,
            Err(code) => return code,
        }
    };
    let found = match folder::scan(&dir) {
        Ok(found) => found,
        Err(diagnostic) => {
            printer.print(
                &[diagnostic],
                &SourceFile::new(dir.display().to_string(), ""),
            );
            return EXIT_ERROR;
        }
    };
    let images = pick(
        &found.files,
        &found.classes,
        args.rows * args.columns,
        &spec,
    );
    match render_grid(&images, args.columns, args.out) {
        Ok(()) => {
            if !matches!(format, OutputFormat::Json) {
                println!(
                    "wrote {} ({} images from `{}`)",
                    args.out.display(),
                    images.len(),
                    dir.display()
                );
            }
            EXIT_OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            EXIT_USAGE
        }
    }
}

/// The training folder and image conversion of a spec.
fn spec_folder(
    args: &PreviewArgs<'_>,
    printer: &mut DiagnosticPrinter,
) -> Result<(PathBuf, ImageSpec), u8> {
    let source = read_spec(args.target).ok_or(EXIT_USAGE)?;
    let compiled = compile(&source.text, &file_stem(args.target));
    printer.print(&compiled.diagnostics, &source);
    let model = compiled.model.ok_or(EXIT_ERROR)?;
    let spec = ImageSpec::for_model(&model);
    match paths::resolve(args.target, &model.data, args.data).train {
        Some(dir) => Ok((dir, spec)),
        None => {
            eprintln!(
                "error: `{}` has no `data.train`; give the images with `--data DIR`",
                args.target.display()
            );
            Err(EXIT_USAGE)
        }
    }
}

/// Up to `count` images, taking classes in turn, each converted as the model sees it. The grid
/// shows values as 0..1, so images are rescaled for display by their own range.
fn pick(
    files: &[Vec<PathBuf>],
    classes: &[String],
    count: usize,
    spec: &ImageSpec,
) -> Vec<GridImage> {
    let mut images = Vec::new();
    let mut taken = vec![0usize; files.len()];
    while images.len() < count {
        let before = images.len();
        for (class, class_files) in files.iter().enumerate() {
            if images.len() >= count {
                break;
            }
            while let Some(path) = class_files.get(taken[class]) {
                taken[class] += 1;
                if let Ok(pixels) = load_image(path, spec) {
                    images.push(grid_image(pixels, spec, &classes[class]));
                    break;
                }
            }
        }
        if images.len() == before {
            break;
        }
    }
    images
}

fn grid_image(pixels: Vec<f32>, spec: &ImageSpec, label: &str) -> GridImage {
    let max = pixels.iter().copied().fold(0.0f32, f32::max);
    let scale = if max > 1.0 { 1.0 / max } else { 1.0 };
    GridImage {
        pixels: pixels.into_iter().map(|value| value * scale).collect(),
        height: spec.height,
        width: spec.width,
        channels: spec.channels,
        label: label.to_string(),
    }
}
