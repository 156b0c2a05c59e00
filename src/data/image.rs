//! The single-image loader: decode any supported format, convert to the model's channels,
//! resize to its input and rescale, giving `height × width × channels` floats (row-major,
//! channels last). `predict` uses it directly; the folder pipeline builds on it.
//!
//! Formats: JPEG, PNG, BMP, GIF (first frame), WebP, TIFF. Colour conversion follows PIL's
//! `convert`: alpha is dropped, 16-bit samples are scaled to 8 bits, palettes are expanded,
//! grayscale uses ITU-R 601 luma. Resizing is bilinear interpolation with half-pixel centres
//! and no antialiasing — what Keras's `image_dataset_from_directory` does through
//! `tf.image.resize(method="bilinear")` — by fast_image_resize's SIMD kernels, applied only when
//! the size differs.

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
    if converted.width() == width && converted.height() == height {
        return raw_bytes(converted, spec.channels);
    }
    resize_bilinear(&converted, spec.channels, width, height).unwrap_or_else(|| {
        // fast_image_resize refuses only impossible geometry (an empty image); the image
        // crate's filter still gives an answer of the right size.
        let sized = converted.resize_exact(width, height, FilterType::Triangle);
        raw_bytes(sized, spec.channels)
    })
}

fn raw_bytes(image: DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        image.into_luma8().into_raw()
    } else {
        image.into_rgb8().into_raw()
    }
}

/// Bilinear interpolation of an 8-bit gray or RGB image to `width x height` (TensorFlow's
/// `bilinear` without antialiasing); `None` if the resizer refuses the geometry.
fn resize_bilinear(
    image: &DynamicImage,
    channels: usize,
    width: u32,
    height: u32,
) -> Option<Vec<u8>> {
    use fast_image_resize as fr;
    let pixel_type = if channels == 1 {
        fr::PixelType::U8
    } else {
        fr::PixelType::U8x3
    };
    let source =
        fr::images::ImageRef::new(image.width(), image.height(), image.as_bytes(), pixel_type)
            .ok()?;
    let mut target = fr::images::Image::new(width, height, pixel_type);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Interpolation(fr::FilterType::Bilinear));
    fr::Resizer::new()
        .resize(&source, &mut target, &options)
        .ok()?;
    Some(target.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn spec(height: usize, width: usize, channels: usize) -> ImageSpec {
        ImageSpec {
            height,
            width,
            channels,
            rescale: 1.0,
        }
    }

    #[test]
    fn downscaling_interpolates_like_tensorflow_bilinear_without_antialiasing() {
        // tf.image.resize([[0, 0, 0, 255]], [1, 2], "bilinear") samples source columns 0.5
        // and 2.5 (half-pixel centres): 0 and 127.5. An antialiasing filter would spread the
        // bright pixel over both outputs.
        let row = GrayImage::from_fn(4, 1, |x, _| Luma([if x == 3 { 255 } else { 0 }]));
        let bytes = to_bytes(&DynamicImage::ImageLuma8(row), &spec(1, 2, 1));
        assert_eq!(bytes[0], 0);
        assert!((127..=128).contains(&bytes[1]), "{bytes:?}");
    }

    #[test]
    fn upscaling_and_rgb_keep_channels_and_edges() {
        let image = RgbImage::from_fn(2, 2, |x, y| Rgb([(x * 200) as u8, (y * 200) as u8, 7]));
        let bytes = to_bytes(&DynamicImage::ImageRgb8(image), &spec(4, 4, 3));
        assert_eq!(bytes.len(), 4 * 4 * 3);
        // Corners keep the corner pixels (half-pixel centres clamp at the border); blue is
        // constant everywhere.
        assert_eq!(&bytes[..3], &[0, 0, 7]);
        assert_eq!(&bytes[bytes.len() - 3..], &[200, 200, 7]);
        assert!(bytes.chunks(3).all(|px| px[2] == 7));
        // Column 1 samples source x = 0.25: a quarter of the way to 200.
        assert_eq!(bytes[3], 50);
    }
}
