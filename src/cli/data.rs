//! `strata data check DIR`: the pre-flight scan of an image folder on its own — per-class
//! counts, broken files, colour modes and the size range. A folder with `train/` (and
//! `validation/`) inside is checked as a pair, with their class sets compared.

use super::output::{DiagnosticPrinter, OutputFormat};
use super::{EXIT_ERROR, EXIT_OK};
use crate::data::check::{scan_images, FolderReport};
use crate::data::{errors, folder};
use crate::diagnostics::SourceFile;
use crate::suggest::grouped;
use std::path::{Path, PathBuf};

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
        let report = scan_images(found);
        if !report.broken.is_empty() {
            printer.print(&[errors::skipped_images(&report.broken)], &source);
        }
        match format {
            OutputFormat::Json => match serde_json::to_string(&report) {
                Ok(json) => println!("{json}"),
                Err(err) => eprintln!("error: {err}"),
            },
            _ => print!("{}", render(&report)),
        }
    }
    if printer.errors > 0 {
        EXIT_ERROR
    } else {
        EXIT_OK
    }
}

fn render(report: &FolderReport) -> String {
    let mut out = format!(
        "{}: {} classes, {} images\n",
        report.root.display(),
        report.classes.len(),
        grouped(report.n_images() as u64)
    );
    let width = report
        .classes
        .iter()
        .map(|class| class.name.len())
        .max()
        .unwrap_or(0);
    for class in &report.classes {
        let skipped = class.files - class.images;
        let note = if skipped > 0 {
            format!(" ({skipped} skipped)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {:<width$}  {:>8} images{note}\n",
            class.name,
            grouped(class.images as u64)
        ));
    }
    let modes: Vec<String> = report
        .modes
        .iter()
        .map(|(mode, n)| format!("{mode} {}", grouped(*n as u64)))
        .collect();
    out.push_str(&format!("  modes: {}\n", modes.join(", ")));
    if let (Some(min), Some(max)) = (report.min_size, report.max_size) {
        out.push_str(&format!(
            "  sizes: {}x{} to {}x{} (width x height)\n",
            min.0, min.1, max.0, max.1
        ));
    }
    out
}
