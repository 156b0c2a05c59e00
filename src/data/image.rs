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

use crate::files::{open_regular, OpenError};
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
    /// The file is in a supported format, but in a form its decoder does not read: a 32-bit
    /// float grayscale TIFF, an unusual colour type.
    Unsupported {
        /// The format (`TIFF`).
        format: String,
        /// What the decoder does not read.
        detail: String,
    },
    /// The file looks like an image but does not decode (truncated or corrupt).
    Corrupt(String),
    /// The path is not a regular file once symlinks are followed (a FIFO, a device, a
    /// socket): reading it could block or never end.
    NotAFile(&'static str),
    /// The file is larger than [`ReadLimits::max_file_bytes`].
    TooLarge {
        /// Its size in bytes (or more: reading stopped at the cap).
        bytes: u64,
        /// The cap.
        max: u64,
    },
    /// The image has more pixels than [`ReadLimits::max_pixels`].
    TooManyPixels {
        /// Width as stored.
        width: u32,
        /// Height as stored.
        height: u32,
        /// The cap.
        max: u64,
    },
}

impl fmt::Display for ImageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageProblem::Unreadable(err) => write!(f, "cannot be read: {err}"),
            ImageProblem::Empty => f.write_str("is empty (0 bytes)"),
            ImageProblem::NotAnImage => {
                f.write_str("is not a JPEG, PNG, BMP, GIF, WebP or TIFF image")
            }
            ImageProblem::Unsupported { format, detail } => {
                write!(f, "is a {format} image the decoder cannot read: {detail}")
            }
            ImageProblem::Corrupt(err) => {
                write!(f, "does not decode (truncated or corrupt): {err}")
            }
            ImageProblem::NotAFile(kind) => write!(f, "is not a regular file but {kind}"),
            ImageProblem::TooLarge { bytes, max } => write!(
                f,
                "is too large: {} MiB, over the limit of {} MiB",
                bytes.div_ceil(1 << 20),
                max >> 20
            ),
            ImageProblem::TooManyPixels { width, height, max } => write!(
                f,
                "has too many pixels: {width}x{height}, over the limit of {} Mpx",
                max / 1_000_000
            ),
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

/// What reading one file may cost: caps that stop a hostile file (a 13000x13000 PNG of a few
/// hundred KB, `/dev/zero` linked as `x.png`) from taking a decode thread's memory or time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most pixels (width x height) an image may have.
    pub max_pixels: u64,
    /// Most bytes a file may have.
    pub max_file_bytes: u64,
}

impl ReadLimits {
    /// The pixel cap whatever the model: 64 million pixels (a 9248x6936 photo), so that real
    /// photos of any camera decode.
    pub const MIN_MAX_PIXELS: u64 = 64_000_000;
    /// The pixel cap relative to the model's input: 256 times its pixels (16x its width and
    /// height), used when it is above [`Self::MIN_MAX_PIXELS`].
    pub const INPUT_PIXEL_FACTOR: u64 = 256;
    /// Bytes a file may have per allowed pixel: 8, an uncompressed 16-bit RGBA image.
    pub const BYTES_PER_PIXEL: u64 = 8;

    /// The caps for images fed to a model with input `spec`: max(64 Mpx, 256x the input's
    /// pixels), and 8 bytes per allowed pixel for the file (512 MB at 64 Mpx).
    pub fn for_spec(spec: &ImageSpec) -> ReadLimits {
        let input_pixels = (spec.height as u64).saturating_mul(spec.width as u64);
        ReadLimits::with_max_pixels(
            input_pixels
                .saturating_mul(Self::INPUT_PIXEL_FACTOR)
                .max(Self::MIN_MAX_PIXELS),
        )
    }

    /// The caps for `max_pixels` pixels.
    pub fn with_max_pixels(max_pixels: u64) -> ReadLimits {
        ReadLimits {
            max_pixels,
            max_file_bytes: max_pixels.saturating_mul(Self::BYTES_PER_PIXEL),
        }
    }
}

impl Default for ReadLimits {
    /// The caps without a model (`strata data check`): 64 Mpx.
    fn default() -> ReadLimits {
        ReadLimits::with_max_pixels(Self::MIN_MAX_PIXELS)
    }
}

/// Reads, decodes and converts the image at `path`.
pub fn load_image(path: &Path, spec: &ImageSpec) -> Result<Vec<f32>, ImageProblem> {
    let bytes = load_bytes(path, spec)?;
    Ok(bytes
        .into_iter()
        .map(|value| f32::from(value) * spec.rescale)
        .collect())
}

/// Reads and decodes the image at `path` and converts it to the model's channels and size, as
/// bytes (0..=255, channels last, before rescaling), within [`ReadLimits::for_spec`]. Training,
/// `predict`, `evaluate` and `strata data bench` all decode through here.
pub fn load_bytes(path: &Path, spec: &ImageSpec) -> Result<Vec<u8>, ImageProblem> {
    load_rows(path, spec, |_, _| {})
}

/// [`load_bytes`], handing each row of the converted image to `on_row` as
/// [`decode_converted_rows`] does.
pub fn load_rows(
    path: &Path,
    spec: &ImageSpec,
    on_row: impl FnMut(usize, &[u8]),
) -> Result<Vec<u8>, ImageProblem> {
    let limits = ReadLimits::for_spec(spec);
    let bytes = read_file(path, &limits)?;
    decode_converted_rows(&bytes, spec, &limits, on_row).map(|(converted, _)| converted)
}

/// Decodes an image from its bytes within `limits` and converts it to `spec`'s channels and
/// size ([`to_bytes`]), with its stored size and colour mode. A YCbCr or grayscale JPEG takes
/// the JPEG fast path ([`super::jpeg`]: its planes resized before the colour conversion);
/// every other file, and a JPEG that path declines, is decoded whole and then converted.
pub fn decode_converted(
    bytes: &[u8],
    spec: &ImageSpec,
    limits: &ReadLimits,
) -> Result<(Vec<u8>, ImageInfo), ImageProblem> {
    decode_converted_rows(bytes, spec, limits, |_, _| {})
}

/// [`decode_converted`], handing each row of the converted image (`spec.width` pixels) to
/// `on_row` with its index, in order: as the JPEG fast path writes it (while it is in cache),
/// or after decoding for other files. On success `on_row` has seen every row once; on failure
/// it has seen none.
pub fn decode_converted_rows(
    bytes: &[u8],
    spec: &ImageSpec,
    limits: &ReadLimits,
    mut on_row: impl FnMut(usize, &[u8]),
) -> Result<(Vec<u8>, ImageInfo), ImageProblem> {
    if let Some(converted) = super::jpeg::decode_converted_rows(bytes, spec, limits, &mut on_row) {
        return converted;
    }
    let image = decode_limited(bytes, limits)?;
    let converted = to_bytes(&image, spec);
    let row_len = (spec.width * spec.channels).max(1);
    for (row_idx, row) in converted.chunks_exact(row_len).enumerate() {
        on_row(row_idx, row);
    }
    Ok((converted, info(&image)))
}

/// Reads a whole file if it is a regular file (after following symlinks) of at most
/// `limits.max_file_bytes`; a FIFO, a device or a socket is refused without reading, so
/// neither blocks nor reads forever.
pub fn read_file(path: &Path, limits: &ReadLimits) -> Result<Vec<u8>, ImageProblem> {
    use std::io::Read;
    let unreadable = |err: std::io::Error| ImageProblem::Unreadable(err.to_string());
    let (file, meta) = open_regular(path).map_err(|err| match err {
        OpenError::Io(err) => unreadable(err),
        OpenError::NotAFile(kind) => ImageProblem::NotAFile(kind),
    })?;
    let too_large = |bytes: u64| ImageProblem::TooLarge {
        bytes,
        max: limits.max_file_bytes,
    };
    if meta.len() > limits.max_file_bytes {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Decodes an image from its bytes, within the default [`ReadLimits`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageProblem> {
    decode_limited(bytes, &ReadLimits::default())
}

/// Decodes an image from its bytes; an image of more than `limits.max_pixels` pixels is
/// refused from its header, before any pixel is decoded.
pub fn decode_limited(bytes: &[u8], limits: &ReadLimits) -> Result<DynamicImage, ImageProblem> {
    use image::ImageDecoder;
    if bytes.is_empty() {
        return Err(ImageProblem::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| ImageProblem::Unreadable(err.to_string()))?;
    if reader.format().is_none() {
        return Err(ImageProblem::NotAnImage);
    }
    let mut decode_limits = image::Limits::default();
    // The decoded buffer of the largest allowed image at the widest sample type (32-bit
    // float RGBA), plus room for a decoder's own working rows.
    decode_limits.max_alloc = Some(
        limits
            .max_pixels
            .saturating_mul(16)
            .saturating_add(64 << 20),
    );
    reader.limits(decode_limits);
    let decoder = reader.into_decoder().map_err(problem)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageProblem::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    DynamicImage::from_decoder(decoder).map_err(problem)
}

fn problem(err: image::ImageError) -> ImageProblem {
    use image::error::{ImageFormatHint, UnsupportedErrorKind};
    let image::ImageError::Unsupported(err) = err else {
        return ImageProblem::Corrupt(err.to_string());
    };
    let ImageFormatHint::Exact(format) = err.format_hint() else {
        return ImageProblem::NotAnImage;
    };
    let detail = match err.kind() {
        UnsupportedErrorKind::Format(_) => return ImageProblem::NotAnImage,
        UnsupportedErrorKind::Color(image::ExtendedColorType::Unknown(bits)) => {
            format!("an unsupported sample format or colour type ({bits} bits per pixel)")
        }
        UnsupportedErrorKind::Color(color) => format!("an unsupported colour type ({color:?})"),
        UnsupportedErrorKind::GenericFeature(feature) => format!("unsupported: {feature}"),
        _ => err.to_string(),
    };
    ImageProblem::Unsupported {
        format: format_name(format),
        detail,
    }
}

/// The name messages give a format: `TIFF`, `PNG`, `WebP`.
fn format_name(format: image::ImageFormat) -> String {
    use image::ImageFormat as F;
    match format {
        F::Jpeg => "JPEG".to_string(),
        F::Png => "PNG".to_string(),
        F::Bmp => "BMP".to_string(),
        F::Gif => "GIF".to_string(),
        F::WebP => "WebP".to_string(),
        F::Tiff => "TIFF".to_string(),
        other => format!("{other:?}").to_uppercase(),
    }
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
        DynamicImage::ImageLuma8(luma_601(image))
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

/// The image as 8-bit gray: gray images as they are, colour ones by ITU-R 601 luma in PIL's
/// fixed-point form (`L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`), which is also what a
/// JPEG's own luma plane holds. (The image crate's `to_luma8` weighs by Rec. 709 instead.)
fn luma_601(image: &DynamicImage) -> image::GrayImage {
    use image::ColorType as C;
    if matches!(image.color(), C::L8 | C::La8 | C::L16 | C::La16) {
        return image.to_luma8();
    }
    let rgb = image.to_rgb8();
    let luma = rgb
        .pixels()
        .map(|pixel| {
            let [red, green, blue] = pixel.0.map(u32::from);
            ((19_595 * red + 38_470 * green + 7_471 * blue + (1 << 15)) >> 16) as u8
        })
        .collect();
    image::GrayImage::from_raw(rgb.width(), rgb.height(), luma).unwrap_or_else(|| image.to_luma8())
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
