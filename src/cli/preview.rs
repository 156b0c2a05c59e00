//! `strata preview SPEC|DIR --out grid.png`: a labelled grid of sample images after
//! preprocessing, as the seed tutorial shows its data in a 2×5 figure. With a spec, images are
//! converted as the model will see them (channels, size, rescale); with a folder, they are
//! shown in colour at 128×128. `--augmented` shows a spec's `augment:` section at work: each
//! row one training image, first as the model sees it, then as epochs 1, 2, … of training
//! augment it. A grid has at most [`MAX_GRID_SIDE`] rows and columns and [`MAX_GRID_IMAGES`]
//! images, and is only as wide as the images found.

use super::output::{
    check_out_file, file_stem, outln, read_spec, shown, DiagnosticPrinter, OutputFormat,
};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::compile::compile;
use crate::data::augment::Augmentation;
use crate::data::loader::split;
use crate::data::{folder, load_image, paths, ImageFolder, ImageSpec, Loader};
use crate::diagnostics::SourceFile;
use crate::ir::Model;
use crate::plot::{render_grid, GridImage};
use crate::text::escape_control;
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
    /// `--augmented`: rows of training images, columns of their augmentations by epoch.
    pub augmented: bool,
}

/// Bytes of decoded images `--augmented` keeps while it draws the epochs.
const PREVIEW_CACHE_BYTES: usize = 64 << 20;

/// The most rows, and the most columns, of a grid.
pub const MAX_GRID_SIDE: usize = 100;

/// The most images of a grid (rows x columns). Each takes a fixed cell of about 30,000 pixels,
/// so the canvas stays under 31 megapixels (90 MB of RGB) however the flags are set.
pub const MAX_GRID_IMAGES: usize = 1000;

/// What a spec says about its training images.
struct SpecImages {
    /// The training folder.
    dir: PathBuf,
    /// How images are converted.
    spec: ImageSpec,
    /// The checked model (its `augment:` section and seed).
    model: Model,
    /// The fraction held out of the training folder for validation, when training does so.
    validation_split: Option<f64>,
}

/// Runs the command; returns the exit status.
pub fn run(args: &PreviewArgs<'_>, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    if let Err(message) = check_grid(args) {
        eprintln!("error: {message}");
        return EXIT_USAGE;
    }
    if args.augmented && args.target.is_dir() {
        eprintln!(
            "error: `--augmented` needs a spec with an `augment:` section, not an image folder"
        );
        return EXIT_USAGE;
    }
    let (dir, spec, from_spec) = if args.target.is_dir() {
        let spec = ImageSpec {
            height: 128,
            width: 128,
            channels: 3,
            rescale: 1.0 / 255.0,
        };
        (args.target.to_path_buf(), spec, None)
    } else {
        match spec_folder(args, &mut printer) {
            Ok(found) => (found.dir.clone(), found.spec, Some(found)),
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
    let images = match (&from_spec, args.augmented) {
        (Some(from_spec), true) => augmented(&found, from_spec, args),
        _ => pick(
            &found.files,
            &found.classes,
            args.rows * args.columns,
            &spec,
        ),
    };
    // The canvas is as wide as the images shown, not as the flag: 3 images take 3 columns.
    let columns = args.columns.min(images.len()).max(1);
    match render_grid(&images, columns, args.out) {
        Ok(()) => {
            if !matches!(format, OutputFormat::Json) {
                outln!(
                    "wrote {} ({} images from `{}`)",
                    shown(args.out),
                    images.len(),
                    shown(&dir)
                );
            }
            EXIT_OK
        }
        Err(err) => {
            eprintln!("error: cannot write `{}`: {err}", shown(args.out));
            EXIT_USAGE
        }
    }
}

/// Refuses a grid over [`MAX_GRID_SIDE`] rows or columns (clap checks these first) or
/// [`MAX_GRID_IMAGES`] images, and an `--out` whose folder does not exist or that is a folder,
/// before any image is read.
fn check_grid(args: &PreviewArgs<'_>) -> Result<(), String> {
    let (rows, columns) = (args.rows, args.columns);
    if rows == 0 || columns == 0 || rows > MAX_GRID_SIDE || columns > MAX_GRID_SIDE {
        return Err(format!(
            "`--rows {rows} --columns {columns}`: rows and columns are 1 to {MAX_GRID_SIDE}"
        ));
    }
    if rows * columns > MAX_GRID_IMAGES {
        return Err(format!(
            "`--rows {rows} --columns {columns}` asks for {} images; a grid holds at most \
             {MAX_GRID_IMAGES} (rows x columns)",
            rows * columns
        ));
    }
    check_out_file(args.out, "grid.png")
        .map_err(|why| format!("cannot write `{}`: {why}", shown(args.out)))
}

/// The training folder, image conversion and model of a spec; with `--augmented`, the spec
/// must have an `augment:` section.
fn spec_folder(args: &PreviewArgs<'_>, printer: &mut DiagnosticPrinter) -> Result<SpecImages, u8> {
    let source = read_spec(args.target, printer)?;
    let compiled = compile(&source.text, &file_stem(args.target));
    printer.print(&compiled.diagnostics, &source);
    let model = compiled.model.ok_or(EXIT_ERROR)?;
    if args.augmented && !model.data.augment.is_active() {
        eprintln!(
            "error: `{}` has no `augment:` section (or all its factors are 0), so training \
             does not augment; add one, or preview without `--augmented`",
            shown(args.target)
        );
        return Err(EXIT_USAGE);
    }
    let spec = ImageSpec::for_model(&model);
    let resolved = paths::resolve(args.target, &model.data, args.data);
    let validation_split = match resolved.validation {
        Some(_) => None,
        None => resolved.validation_split,
    };
    match resolved.train {
        Some(dir) => Ok(SpecImages {
            dir,
            spec,
            model,
            validation_split,
        }),
        None => {
            eprintln!(
                "error: `{}` has no `data.train`; give the images with `--data DIR`",
                shown(args.target)
            );
            Err(EXIT_USAGE)
        }
    }
}

/// `--augmented`: `rows` training images (classes in turn), each as the model sees it and
/// then as epochs 1 to `columns - 1` augment it, drawn from `train.seed` and the image's index
/// among the training samples as training draws them.
fn augmented(
    found: &ImageFolder,
    from_spec: &SpecImages,
    args: &PreviewArgs<'_>,
) -> Vec<GridImage> {
    let (model, spec) = (&from_spec.model, from_spec.spec);
    let mut samples = found.samples();
    if let Some(fraction) = from_spec.validation_split {
        samples = split(&samples, found.classes.len(), fraction).0;
    }
    let loader = Loader::new(samples.clone(), spec, PREVIEW_CACHE_BYTES);
    let rows = preview_rows(&samples, found.classes.len(), args.rows, &loader);
    let mut images = Vec::with_capacity(rows.len() * args.columns);
    for &index in &rows {
        let class = &found.classes[samples[index].1];
        for column in 0..args.columns {
            let (batch, label) = if column == 0 {
                (loader.batch_now(&[index]), class.clone())
            } else {
                let augmentation = Augmentation {
                    config: model.data.augment,
                    seed: model.train.seed,
                    epoch: column as u64,
                };
                (
                    loader.augmented_batch_now(&[index], &augmentation),
                    format!("{class}, epoch {column}"),
                )
            };
            images.push(grid_image(batch.images, &spec, &label));
        }
    }
    images
}

/// Indices of up to `count` samples that decode, taking the classes in turn.
fn preview_rows(
    samples: &[(PathBuf, usize)],
    n_classes: usize,
    count: usize,
    loader: &Loader,
) -> Vec<usize> {
    let mut of_class: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); n_classes];
    for (index, (_, class)) in samples.iter().enumerate() {
        if let Some(queue) = of_class.get_mut(*class) {
            queue.push_back(index);
        }
    }
    let mut rows = Vec::new();
    while rows.len() < count && of_class.iter().any(|queue| !queue.is_empty()) {
        for queue in &mut of_class {
            if rows.len() >= count {
                break;
            }
            while let Some(index) = queue.pop_front() {
                if !loader.batch_now(&[index]).is_empty() {
                    rows.push(index);
                    break;
                }
            }
        }
    }
    rows
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

/// One cell of the grid; control characters in the label (a class folder's name) are drawn as
/// escapes.
fn grid_image(pixels: Vec<f32>, spec: &ImageSpec, label: &str) -> GridImage {
    let max = pixels.iter().copied().fold(0.0f32, f32::max);
    let scale = if max > 1.0 { 1.0 / max } else { 1.0 };
    GridImage {
        pixels: pixels.into_iter().map(|value| value * scale).collect(),
        height: spec.height,
        width: spec.width,
        channels: spec.channels,
        label: escape_control(label).into_owned(),
    }
}
