//! Helpers shared by the integration tests.
#![allow(dead_code)]

use image::{GrayImage, Luma};
use std::path::{Path, PathBuf};

/// Three classes of 16x16 grayscale shapes under `root`, `counts` images each: a bright bar
/// (`bar/`), the bottom-right quarter (`bottom_right/`), the top-left quarter (`top_left/`),
/// with a little position-dependent noise.
pub fn shapes(root: &Path, counts: [usize; 3]) {
    for (class, name) in ["bar", "bottom_right", "top_left"].iter().enumerate() {
        for idx in 0..counts[class] {
            let image = GrayImage::from_fn(16, 16, |x, y| {
                let inside = match class {
                    0 => (6..10).contains(&x),
                    1 => x >= 8 && y >= 8,
                    _ => x < 8 && y < 8,
                };
                let noise = ((x * 7 + y * 13 + idx as u32 * 29) % 40) as u8;
                Luma([if inside { 200 + noise / 2 } else { noise }])
            });
            let path = root.join(name).join(format!("{idx}.png"));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            image.save(&path).expect("save");
        }
    }
}

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.yaml` file under `dir`, sorted, recursively.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `dir/file` of a path relative to the crate root, with `/` separators.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}
pub mod gradcheck;
pub mod reference;
pub mod run;

/// One language-server frame (`Content-Length` header, blank line, JSON body) from `reader`;
/// `None` at the end of the stream or on a frame that does not parse.
pub fn read_frame(reader: &mut impl std::io::BufRead) -> Option<serde_json::Value> {
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}
