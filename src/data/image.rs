//! The single-image loader: decode any supported format, convert to the model's channels,
//! resize to its input and rescale, giving `height × width × channels` floats (row-major,
//! channels last). `predict` uses it directly; the folder pipeline builds on it.
//!
//! Formats: JPEG, PNG, BMP, GIF (first frame), WebP, TIFF. Colour conversion follows PIL's
//! `convert`: alpha is dropped, 16-bit samples are scaled to 8 bits, palettes are expanded,
//! grayscale uses ITU-R 601 luma. Resizing is bilinear (as Keras's
//! `image_dataset_from_directory`), applied only when the size differs.

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use std::fmt;
use std::io::Cursor;
use std::path::Path;

/// What the model wants from each image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageSpec {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grayscale) or 3 (rgb).
    pub channels: usize,
    /// Factor each 0..=255 value is multiplied by.
    pub rescale: f32,
}

impl ImageSpec {
    /// How images are converted for `model`: its input size and channels, the spec's rescale.
    pub fn for_model(model: &crate::ir::Model) -> ImageSpec {
        let (height, width, channels) = model.input.hwc();
        ImageSpec {
            height,
            width,
            channels,
            rescale: model.data.rescale as f32,
        }
    }

    /// Values per image.
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Whether an image has no values (never for a checked model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an image could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageProblem {
    /// The file could not be read.
    Unreadable(String),
    /// The file is empty.
    Empty,
    /// The file is not in a supported image format.
    NotAnImage,
    /// The file looks like an image but does not decode (truncated or corrupt).
    Corrupt(String),
}

impl fmt::Display for ImageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageProblem::Unreadable(err) => write!(f, "cannot be read: {err}"),
            ImageProblem::Empty => f.write_str("is empty (0 bytes)"),
            ImageProblem::NotAnImage => {
                f.write_str("is not a JPEG, PNG, BMP, GIF, WebP or TIFF image")
            }
            ImageProblem::Corrupt(err) => {
                write!(f, "does not decode (truncated or corrupt): {err}")
            }
        }
    }
}

/// Facts about a decoded image, for `strata data check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width in pixels as stored.
    pub width: u32,
    /// Height in pixels as stored.
    pub height: u32,
    /// The stored colour mode, PIL-style: `L`, `LA`, `RGB`, `RGBA`, `L;16`, `RGB;16`, …
    pub mode: &'static str,
}

/// Reads, decodes and converts the image at `path`.
pub fn load_image(path: &Path, spec: &ImageSpec) -> Result<Vec<f32>, ImageProblem> {
    let bytes = std::fs::read(path).map_err(|err| ImageProblem::Unreadable(err.to_string()))?;
    let image = decode(&bytes)?;
    Ok(to_tensor(&image, spec))
}

/// Decodes an image from its bytes.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageProblem> {
    if bytes.is_empty() {
        return Err(ImageProblem::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| ImageProblem::Unreadable(err.to_string()))?;
    if reader.format().is_none() {
        return Err(ImageProblem::NotAnImage);
    }
    reader.decode().map_err(|err| match err {
        image::ImageError::Unsupported(_) => ImageProblem::NotAnImage,
        other => ImageProblem::Corrupt(other.to_string()),
    })
}

/// The stored size and colour mode of a decoded image.
pub fn info(image: &DynamicImage) -> ImageInfo {
    use image::ColorType as C;
    let mode = match image.color() {
        C::L8 => "L",
        C::La8 => "LA",
        C::Rgb8 => "RGB",
        C::Rgba8 => "RGBA",
        C::L16 => "L;16",
        C::La16 => "LA;16",
        C::Rgb16 => "RGB;16",
        C::Rgba16 => "RGBA;16",
        C::Rgb32F => "RGB;F",
        C::Rgba32F => "RGBA;F",
        _ => "other",
    };
    ImageInfo {
        width: image.width(),
        height: image.height(),
        mode,
    }
}

/// Converts a decoded image to the model's channels and size, rescaled, channels last.
pub fn to_tensor(image: &DynamicImage, spec: &ImageSpec) -> Vec<f32> {
    to_bytes(image, spec)
        .into_iter()
        .map(|value| f32::from(value) * spec.rescale)
        .collect()
}

/// Converts a decoded image to the model's channels and size as bytes (0..=255), channels last.
pub fn to_bytes(image: &DynamicImage, spec: &ImageSpec) -> Vec<u8> {
    let (width, height) = (spec.width as u32, spec.height as u32);
    let converted = if spec.channels == 1 {
        DynamicImage::ImageLuma8(image.to_luma8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    let sized = if converted.width() == width && converted.height() == height {
        converted
    } else {
        converted.resize_exact(width, height, FilterType::Triangle)
    };
    if spec.channels == 1 {
        sized.into_luma8().into_raw()
    } else {
        sized.into_rgb8().into_raw()
    }
}
