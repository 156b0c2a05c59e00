//! `strata data check DIR`: the pre-flight scan of an image folder on its own — per-class
//! counts, broken files, colour modes and the size range. A folder with `train/` (and
//! `validation/`) inside is checked as a pair, with their class sets compared. `strata data
//! bench DIR` times decoding and resizing the folder's images at a model's input size.

use super::output::{out, outln, shown, DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::data::check::{scan_images, FolderReport};
use crate::data::image::ReadLimits;
use crate::data::{errors, folder, ImageSpec, Loader};
use crate::diagnostics::SourceFile;
use crate::suggest::grouped;
use crate::text::escape_control;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs `strata data check`; returns the exit status.
pub fn check(dir: &Path, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let source = SourceFile::new(dir.display().to_string(), "");
    let mut folders: Vec<PathBuf> = vec![dir.to_path_buf()];
    if dir.join("train").is_dir() {
        folders = vec![dir.join("train")];
        if dir.join("validation").is_dir() {
            folders.push(dir.join("validation"));
        }
    }
    let mut scanned = Vec::new();
    for path in &folders {
        match folder::scan(path) {
            Ok(found) => scanned.push(found),
            Err(diagnostic) => printer.print(&[diagnostic], &source),
        }
    }
    if let [train, validation] = scanned.as_slice() {
        if let Err(diagnostic) = folder::same_classes(train, validation) {
            printer.print(&[diagnostic], &source);
        }
    }
    for found in &scanned {
        let report = scan_images(found, &ReadLimits::default());
        if !report.broken.is_empty() {
            printer.print(&[errors::skipped_images(&report.broken)], &source);
        }
        let unreadable = report.unreadable_classes();
        if !unreadable.is_empty() {
            printer.print(&unreadable, &source);
        }
        match format {
            OutputFormat::Json => match serde_json::to_string(&report) {
                Ok(json) => outln!("{json}"),
                Err(err) => eprintln!("error: {err}"),
            },
            _ => out!("{}", render(&report)),
        }
    }
    if printer.errors > 0 {
        EXIT_ERROR
    } else {
        EXIT_OK
    }
}

/// The human report, control characters in the folder and class names escaped.
fn render(report: &FolderReport) -> String {
    let mut out = format!(
        "{}: {} classes, {} images\n",
        shown(&report.root),
        report.classes.len(),
        grouped(report.n_images() as u64)
    );
    let names: Vec<String> = report
        .classes
        .iter()
        .map(|class| escape_control(&class.name).into_owned())
        .collect();
    let width = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0);
    for (class, name) in report.classes.iter().zip(&names) {
        let skipped = class.files - class.images;
        let note = if skipped > 0 {
            format!(" ({skipped} skipped)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {name:<width$}  {:>8} images{note}\n",
            grouped(class.images as u64)
        ));
    }
    let modes: Vec<String> = report
        .modes
        .iter()
        .map(|(mode, n)| format!("{mode} {}", grouped(*n as u64)))
        .collect();
    // A folder without a readable image has neither modes nor sizes to show.
    if !modes.is_empty() {
        out.push_str(&format!("  modes: {}\n", modes.join(", ")));
    }
    if let (Some(min), Some(max)) = (report.min_size, report.max_size) {
        out.push_str(&format!(
            "  sizes: {}x{} to {}x{} (width x height)\n",
            min.0, min.1, max.0, max.1
        ));
    }
    out
}

/// Options of `strata data bench`.
#[derive(Debug)]
pub struct BenchArgs<'a> {
    /// The image folder.
    pub dir: &'a Path,
    /// A spec giving the input size, channels and rescale.
    pub spec: Option<&'a Path>,
    /// `HxW` or `HxWxC`, when no spec is given.
    pub size: Option<&'a str>,
    /// Images per batch.
    pub batch_size: usize,
    /// Timed passes; the median is reported.
    pub repeats: usize,
}

/// Runs `strata data bench`: decodes every file of the folder `repeats` times through the
/// training loader with no cache (each pass decodes again), and prints images/s.
pub fn bench(args: &BenchArgs<'_>, format: OutputFormat) -> u8 {
    let mut printer = DiagnosticPrinter::new(format);
    let source = SourceFile::new(args.dir.display().to_string(), "");
    let spec = match image_spec(args, format) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let found = match folder::scan(args.dir) {
        Ok(found) => found,
        Err(diagnostic) => {
            printer.print(&[diagnostic], &source);
            return EXIT_ERROR;
        }
    };
    let loader = Loader::new(found.samples(), spec, 0);
    let mut rates = Vec::with_capacity(args.repeats);
    let mut n_images = 0;
    for pass in 0..args.repeats {
        let start = Instant::now();
        n_images = loader
            .batches(loader.order(0, pass as u64, false), args.batch_size)
            .iter()
            .map(|batch| batch.len())
            .sum::<usize>();
        rates.push(n_images as f64 / start.elapsed().as_secs_f64().max(1e-9));
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let threads = rayon::current_num_threads();
    let simd = crate::data::jpeg::simd();
    match format {
        OutputFormat::Json => outln!(
            "{}",
            serde_json::json!({
                "dir": args.dir, "images": n_images, "files": found.len(),
                "height": spec.height, "width": spec.width, "channels": spec.channels,
                "batch": args.batch_size, "threads": threads,
                "images_per_s": rates.iter().map(|rate| (rate * 10.0).round() / 10.0).collect::<Vec<_>>(),
                "median_images_per_s": (median * 10.0).round() / 10.0,
                "jpeg_simd": simd,
            })
        ),
        _ => outln!(
            "{}: {} images to {}x{}x{}, {} threads: {} images/s (median of {}: {})",
            shown(args.dir),
            grouped(n_images as u64),
            spec.height,
            spec.width,
            spec.channels,
            threads,
            grouped(median.round() as u64),
            rates.len(),
            rates
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    if !simd && format != OutputFormat::Json {
        eprintln!("{NO_SIMD}");
    }
    EXIT_OK
}

/// What `strata data bench` says of a build whose JPEG decoder runs without SIMD code.
const NO_SIMD: &str = "warning: this build of strata decodes JPEGs without libjpeg-turbo's \
SIMD code, at about half the speed: NASM was not installed when it was built (or this CPU \
lacks SSE2). Install NASM (`apt-get install nasm`), then run `cargo clean --release -p \
mozjpeg-sys` and build again.";

/// The image spec of `strata data bench`: the spec file's, or `--size`, or 224x224x3.
fn image_spec(args: &BenchArgs<'_>, format: OutputFormat) -> Result<ImageSpec, u8> {
    if let Some(path) = args.spec {
        let mut printer = DiagnosticPrinter::new(format);
        let source = super::output::read_spec(path, &mut printer)?;
        let compiled = crate::compile::compile(&source.text, "model");
        printer.print(&compiled.diagnostics, &source);
        let has_errors = compiled.has_errors();
        return match compiled.model {
            Some(model) if !has_errors => Ok(ImageSpec::for_model(&model)),
            _ => Err(EXIT_ERROR),
        };
    }
    let text = args.size.unwrap_or("224x224x3");
    let numbers: Option<Vec<usize>> = text.split('x').map(|part| part.parse().ok()).collect();
    match numbers.as_deref() {
        Some(&[height, width]) | Some(&[height, width, 3]) if height > 0 && width > 0 => {
            Ok(ImageSpec {
                height,
                width,
                channels: 3,
                rescale: 1.0 / 255.0,
            })
        }
        Some(&[height, width, 1]) if height > 0 && width > 0 => Ok(ImageSpec {
            height,
            width,
            channels: 1,
            rescale: 1.0 / 255.0,
        }),
        _ => {
            eprintln!("error: `--size {text}` is not `HxW` or `HxWxC` with C 1 or 3");
            Err(EXIT_USAGE)
        }
    }
}
