//! The pre-flight scan: every file of an image folder decoded once (in parallel), giving
//! per-class counts, the broken files, the colour modes and the size range. `strata data
//! check DIR` prints it; training runs it before the first epoch.

use super::errors;
use super::folder::ImageFolder;
use super::image::{decode_limited, info, read_file, ImageInfo, ImageProblem, ReadLimits};
use crate::diagnostics::Diagnostic;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the scan found in one folder.
#[derive(Clone, Debug, Serialize)]
pub struct FolderReport {
    /// The folder.
    pub root: PathBuf,
    /// One entry per class, in class order.
    pub classes: Vec<ClassReport>,
    /// Files that cannot be used, with why.
    #[serde(serialize_with = "problems_as_strings")]
    pub broken: Vec<(PathBuf, ImageProblem)>,
    /// How many images have each colour mode (`RGB`, `L`, `RGBA`, …).
    pub modes: BTreeMap<&'static str, usize>,
    /// Smallest width and height seen.
    pub min_size: Option<(u32, u32)>,
    /// Largest width and height seen.
    pub max_size: Option<(u32, u32)>,
}

/// One class of a folder.
#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    /// The class name (its folder's name).
    pub name: String,
    /// Files in the folder.
    pub files: usize,
    /// Files that decode.
    pub images: usize,
}

impl FolderReport {
    /// Images that decode, over all classes.
    pub fn n_images(&self) -> usize {
        self.classes.iter().map(|class| class.images).sum()
    }

    /// One `strata::data::empty_class` error for each class that has files but no readable
    /// image.
    pub fn unreadable_classes(&self) -> Vec<Diagnostic> {
        self.classes
            .iter()
            .filter(|class| class.images == 0)
            .map(|class| errors::unreadable_class(&self.root, &class.name, class.files))
            .collect()
    }
}

/// Decodes every file of `folder`, each within `limits`.
pub fn scan_images(folder: &ImageFolder, limits: &ReadLimits) -> FolderReport {
    scan_images_with(folder, limits, |_, bytes| {
        decode_limited(bytes, limits).map(|image| info(&image))
    })
}

/// [`scan_images`] with the decoding left to `decode` (called on the decoding thread with
/// each file's path and bytes, read within `limits`): training converts each image for the
/// model and keeps what fits in the cache for its first epoch, so each image is decoded once.
pub fn scan_images_with<F>(folder: &ImageFolder, limits: &ReadLimits, decode: F) -> FolderReport
where
    F: Fn(&Path, &[u8]) -> Result<ImageInfo, ImageProblem> + Sync,
{
    let samples = folder.samples();
    let results: Vec<(usize, Result<ImageInfo, ImageProblem>)> = samples
        .par_iter()
        .map(|(path, class)| {
            let result = read_file(path, limits).and_then(|bytes| decode(path, &bytes));
            (*class, result)
        })
        .collect();
    let mut classes: Vec<ClassReport> = folder
        .classes
        .iter()
        .zip(&folder.files)
        .map(|(name, files)| ClassReport {
            name: name.clone(),
            files: files.len(),
            images: 0,
        })
        .collect();
    let mut report = FolderReport {
        root: folder.root.clone(),
        classes: Vec::new(),
        broken: Vec::new(),
        modes: BTreeMap::new(),
        min_size: None,
        max_size: None,
    };
    for ((path, _), (class, result)) in samples.iter().zip(results) {
        match result {
            Ok(found) => {
                classes[class].images += 1;
                *report.modes.entry(found.mode).or_default() += 1;
                let size = (found.width, found.height);
                report.min_size = Some(
                    report
                        .min_size
                        .map_or(size, |min| (min.0.min(size.0), min.1.min(size.1))),
                );
                report.max_size = Some(
                    report
                        .max_size
                        .map_or(size, |max| (max.0.max(size.0), max.1.max(size.1))),
                );
            }
            Err(problem) => report.broken.push((path.clone(), problem)),
        }
    }
    report.classes = classes;
    report
}

fn problems_as_strings<S: serde::Serializer>(
    problems: &[(PathBuf, ImageProblem)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(problems.len()))?;
    for (path, problem) in problems {
        seq.serialize_element(&serde_json::json!({"path": path, "problem": problem.to_string()}))?;
    }
    seq.end()
}
