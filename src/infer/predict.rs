//! Class probabilities for image files: arguments expanded (a folder means every image file in
//! it, recursively, sorted), images loaded as the model wants them, forwarded in batches in
//! inference mode. Unreadable files are collected, not fatal.

use super::trained::Trained;
use crate::data::{load_image, ImageProblem};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// File extensions a folder argument's images may have (compared without case).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// The probabilities of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// One probability per class, in the checkpoint's class order; they sum to 1.
    pub probabilities: Vec<f32>,
}

impl Prediction {
    /// The `k` most likely class indices with their probabilities, most likely first.
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let mut ranked: Vec<(usize, f32)> =
            self.probabilities.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }

    /// The most likely class index (the first on a tie).
    pub fn class(&self) -> usize {
        self.top(1).first().map_or(0, |(class, _)| *class)
    }
}

/// What a prediction run produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictions {
    /// One entry per readable image, in argument order.
    pub predictions: Vec<Prediction>,
    /// Files that could not be used, with why.
    pub skipped: Vec<(PathBuf, ImageProblem)>,
}

/// Expands the arguments: a file stays itself (even one that does not exist, so that it is
/// reported as unreadable); a folder becomes its image files (by extension, hidden entries
/// skipped), recursively and sorted.
pub fn image_files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            // Each folder is entered once, so a symlink loop neither hangs nor repeats files.
            files.extend(
                crate::data::folder::walk_files(input)
                    .into_iter()
                    .filter(|path| is_image_name(path)),
            );
        } else {
            files.push(input.clone());
        }
    }
    files
}

/// Predicts every file, `batch_size` images per forward pass.
pub fn predict_files(trained: &mut Trained, files: &[PathBuf], batch_size: usize) -> Predictions {
    let spec = trained.image_spec();
    let mut out = Predictions::default();
    for chunk in files.chunks(batch_size.max(1)) {
        let loaded: Vec<(&PathBuf, Result<Vec<f32>, ImageProblem>)> = chunk
            .par_iter()
            .map(|path| (path, load_image(path, &spec)))
            .collect();
        let mut images = Vec::with_capacity(chunk.len() * spec.len());
        let mut paths = Vec::with_capacity(chunk.len());
        for (path, result) in loaded {
            match result {
                Ok(pixels) => {
                    images.extend(pixels);
                    paths.push(path.clone());
                }
                Err(problem) => out.skipped.push((path.clone(), problem)),
            }
        }
        if paths.is_empty() {
            continue;
        }
        let probabilities = trained.network.predict(images, paths.len());
        out.predictions
            .extend(
                paths
                    .into_iter()
                    .zip(probabilities)
                    .map(|(path, probabilities)| Prediction {
                        path,
                        probabilities,
                    }),
            );
    }
    out
}

fn is_image_name(path: &Path) -> bool {
    path.extension().is_some_and(|ext| {
        let ext = ext.to_string_lossy().to_ascii_lowercase();
        IMAGE_EXTENSIONS.contains(&ext.as_str())
    })
}
