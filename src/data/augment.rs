//! Random augmentation of training images (`augment:`), as Keras 3's preprocessing layers
//! compute it, on the decoded 0–255 values after resizing and before `rescale`.
//!
//! The transforms run in the order of a Keras `Sequential` of `RandomFlip`, `RandomRotation`,
//! `RandomZoom`, `RandomTranslation`, `RandomContrast`, `RandomBrightness`, one after another
//! (the geometric ones are not fused into one warp: with reflect filling, a fused warp would
//! differ from the sequence near the borders). Each geometric transform is Keras's
//! `affine_transform` on the TensorFlow backend (`ImageProjectiveTransformV3`): an output pixel
//! `(x, y)`, in pixel indices, reads the input at `(a0 x + a1 y + a2, b0 x + b1 y + b2)`,
//! reflected into the image as `d c b a | a b c d | d c b a` and interpolated bilinearly.
//!
//! Every image's draw comes from its own random stream, keyed by the run's seed, the epoch and
//! the image's index in the dataset, so it does not depend on threads, batch boundaries or
//! where a run was resumed.

use crate::settings::{AugmentConfig, Flip};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One image as floats on the 0–255 scale: `height × width × channels`, channels last.
#[derive(Clone, Debug, PartialEq)]
pub struct Pixels {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values per pixel.
    pub channels: usize,
    /// `height × width × channels` values, row-major.
    pub values: Vec<f32>,
}

impl Pixels {
    /// Bytes as decoded (`height × width × channels`) converted to floats.
    pub fn from_bytes(bytes: &[u8], height: usize, width: usize, channels: usize) -> Pixels {
        Pixels {
            height,
            width,
            channels,
            values: bytes.iter().map(|value| f32::from(*value)).collect(),
        }
    }
}

/// The augmentation of one epoch: the recipe, the run's seed and the epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augmentation {
    /// The spec's `augment:` section.
    pub config: AugmentConfig,
    /// `train.seed` (or `--seed`).
    pub seed: u64,
    /// The epoch, as training counts it (from 1).
    pub epoch: u64,
}

/// The random parameters drawn for one image; a transform whose factor is 0 draws its identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Whether `RandomFlip` mirrors the image (both axes at once for `both`, as Keras 3).
    pub flip: bool,
    /// `RandomRotation`'s angle in degrees, uniform in `±rotation × 360`.
    pub angle_degrees: f64,
    /// `RandomZoom`'s factor, uniform in `1 ± zoom`, for height and width alike (above 1
    /// zooms out).
    pub zoom: f64,
    /// `RandomTranslation`'s shift down in pixels, uniform in `±translation × height`.
    pub shift_y: f64,
    /// `RandomTranslation`'s shift right in pixels, uniform in `±translation × width`.
    pub shift_x: f64,
    /// `RandomContrast`'s factor, uniform in `1 ± contrast`.
    pub contrast: f64,
    /// `RandomBrightness`'s delta, uniform in `±brightness × 255`.
    pub brightness: f64,
}

impl Augmentation {
    /// The draw for the image at `index` of the dataset, `height × width` pixels. Seven
    /// uniform numbers are always drawn in the same order, so switching one transform on or off
    /// leaves the others' draws as they were.
    pub fn draw(&self, index: usize, height: usize, width: usize) -> Draw {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        key[16..24].copy_from_slice(&(index as u64).to_le_bytes());
        key[24..].copy_from_slice(b"augment1");
        let mut rng = ChaCha8Rng::from_seed(key);
        let mut symmetric = |factor: f64| factor * (2.0 * rng.gen::<f64>() - 1.0);
        let config = &self.config;
        let flip = symmetric(1.0) < 0.0;
        Draw {
            flip: flip && config.flip.is_some(),
            angle_degrees: symmetric(config.rotation * 360.0),
            zoom: 1.0 + symmetric(config.zoom),
            shift_y: symmetric(config.translation * height as f64),
            shift_x: symmetric(config.translation * width as f64),
            contrast: 1.0 + symmetric(config.contrast),
            brightness: symmetric(config.brightness * 255.0),
        }
    }

    /// The image at `index`, augmented with its draw for this epoch.
    pub fn apply(&self, index: usize, image: Pixels) -> Pixels {
        let draw = self.draw(index, image.height, image.width);
        apply_draw(&self.config, &draw, image)
    }
}

/// Applies `draw` to `image` in the documented order, leaving out the transforms `config`
/// does not ask for.
pub fn apply_draw(config: &AugmentConfig, draw: &Draw, mut image: Pixels) -> Pixels {
    if let (Some(mode), true) = (config.flip, draw.flip) {
        flip(&mut image, mode);
    }
    if config.rotation > 0.0 {
        image = rotate(&image, draw.angle_degrees);
    }
    if config.zoom > 0.0 {
        image = zoom(&image, draw.zoom, draw.zoom);
    }
    if config.translation > 0.0 {
        image = translate(&image, draw.shift_x, draw.shift_y);
    }
    if config.contrast > 0.0 {
        adjust_contrast(&mut image, draw.contrast);
    }
    if config.brightness > 0.0 {
        adjust_brightness(&mut image, draw.brightness);
    }
    image
}

/// Mirrors `image`: columns for `horizontal`, rows for `vertical`, both for `both`.
pub fn flip(image: &mut Pixels, mode: Flip) {
    let (height, width, channels) = (image.height, image.width, image.channels);
    let row_len = width * channels;
    if matches!(mode, Flip::Horizontal | Flip::Both) {
        for row in image.values.chunks_exact_mut(row_len.max(1)) {
            for x in 0..width / 2 {
                for c in 0..channels {
                    row.swap(x * channels + c, (width - 1 - x) * channels + c);
                }
            }
        }
    }
    if matches!(mode, Flip::Vertical | Flip::Both) {
        for y in 0..height / 2 {
            let (top, bottom) = image.values.split_at_mut((height - 1 - y) * row_len);
            top[y * row_len..(y + 1) * row_len].swap_with_slice(&mut bottom[..row_len]);
        }
    }
}

/// `RandomRotation` by `angle_degrees` about the image's centre `((width - 1) / 2, (height -
/// 1) / 2)`; positive angles turn the picture counter-clockwise.
pub fn rotate(image: &Pixels, angle_degrees: f64) -> Pixels {
    let (sin, cos) = angle_degrees.to_radians().sin_cos();
    let cx = 0.5 * (image.width as f64 - 1.0);
    let cy = 0.5 * (image.height as f64 - 1.0);
    let matrix = [
        cos,
        -sin,
        cx - cx * cos + cy * sin,
        sin,
        cos,
        cy - cx * sin - cy * cos,
    ];
    affine(image, matrix)
}

/// `RandomZoom` by `zoom_x` across and `zoom_y` down about the centre: an output pixel reads
/// the input `zoom` times as far from the centre, so factors above 1 zoom out.
pub fn zoom(image: &Pixels, zoom_x: f64, zoom_y: f64) -> Pixels {
    let x_offset = 0.5 * (image.width as f64 - 1.0) * (1.0 - zoom_x);
    let y_offset = 0.5 * (image.height as f64 - 1.0) * (1.0 - zoom_y);
    affine(image, [zoom_x, 0.0, x_offset, 0.0, zoom_y, y_offset])
}

/// `RandomTranslation` by `shift_x` pixels right and `shift_y` pixels down.
pub fn translate(image: &Pixels, shift_x: f64, shift_y: f64) -> Pixels {
    affine(image, [1.0, 0.0, -shift_x, 0.0, 1.0, -shift_y])
}

/// Keras's `affine_transform` with `fill_mode="reflect"` and bilinear interpolation: output
/// pixel `(x, y)` reads the input at `(m0 x + m1 y + m2, m3 x + m4 y + m5)`. Coordinates and
/// weights are computed in `f32` by TensorFlow's formulas. Zooms and shifts (no cross terms)
/// read one coordinate per column and one per row, so their taps are computed once per axis.
pub fn affine(image: &Pixels, matrix: [f64; 6]) -> Pixels {
    let (height, width, channels) = (image.height, image.width, image.channels);
    let m = matrix.map(|value| value as f32);
    let mut values = vec![0.0f32; image.values.len()];
    let mut out_pixels = values.chunks_exact_mut(channels.max(1));
    if m[1] == 0.0 && m[3] == 0.0 {
        // Adding the zero cross term is exact, so these are the general formula's taps.
        let columns: Vec<Tap> = (0..width)
            .map(|x| Tap::new(m[0] * x as f32 + m[2], width))
            .collect();
        for y in 0..height {
            let row = Tap::new(m[4] * y as f32 + m[5], height);
            for (column, out) in columns.iter().zip(&mut out_pixels) {
                blend(image, &row, column, out);
            }
        }
    } else {
        for y in 0..height {
            let yf = y as f32;
            let (m1_y, m4_y) = (m[1] * yf, m[4] * yf);
            for (x, out) in (0..width).zip(&mut out_pixels) {
                let xf = x as f32;
                let column = Tap::new(m[0] * xf + m1_y + m[2], width);
                let row = Tap::new(m[3] * xf + m4_y + m[5], height);
                blend(image, &row, &column, out);
            }
        }
    }
    Pixels {
        height,
        width,
        channels,
        values,
    }
}

/// Where one output coordinate reads along one axis: two neighbouring indices and their
/// weights, as TensorFlow's bilinear kernel weighs them.
struct Tap {
    low: usize,
    high: usize,
    low_weight: f32,
    high_weight: f32,
}

impl Tap {
    /// The taps of input coordinate `coord` on an axis of `len` pixels, after reflecting it.
    fn new(coord: f32, len: usize) -> Tap {
        let coord = reflect(coord, len);
        let floor = coord.floor();
        // INVARIANT: `reflect` returns a coordinate in [0, len - 1], so the floor is an index;
        // the upper neighbour is read with weight 0 when it would be `len` (TensorFlow reads
        // its fill value there), so clamping it changes nothing.
        let low = floor as usize;
        Tap {
            low,
            high: (low + 1).min(len.saturating_sub(1)),
            low_weight: (floor + 1.0) - coord,
            high_weight: coord - floor,
        }
    }
}

/// One output pixel (all channels) from the four input pixels at `row × column`.
fn blend(image: &Pixels, row: &Tap, column: &Tap, out: &mut [f32]) {
    let (width, channels) = (image.width, image.channels);
    let at = |y: usize, x: usize| &image.values[(y * width + x) * channels..][..channels];
    let (top_left, top_right) = (at(row.low, column.low), at(row.low, column.high));
    let (bottom_left, bottom_right) = (at(row.high, column.low), at(row.high, column.high));
    for (c, value) in out.iter_mut().enumerate() {
        let top = column.low_weight * top_left[c] + column.high_weight * top_right[c];
        let bottom = column.low_weight * bottom_left[c] + column.high_weight * bottom_right[c];
        *value = row.low_weight * top + row.high_weight * bottom;
    }
}

/// TensorFlow's reflect mapping of a coordinate onto `[0, len - 1]`: `d c b a | a b c d | d c
/// b a`, periodic with period `2 len`, then clamped (a coordinate in `(len - 1, len)` reads
/// the last pixel).
fn reflect(coord: f32, len: usize) -> f32 {
    if len <= 1 {
        return 0.0;
    }
    let len_f = len as f32;
    let period = 2.0 * len_f;
    let mut coord = coord;
    if coord < 0.0 {
        coord += period * (-coord / period).trunc();
        coord = if coord < -len_f {
            coord + period
        } else {
            -coord - 1.0
        };
    } else if coord > len_f - 1.0 {
        coord -= period * (coord / period).trunc();
        if coord >= len_f {
            coord = period - coord - 1.0;
        }
    }
    coord.clamp(0.0, len_f - 1.0)
}

/// `RandomContrast` with `factor`: each channel's values move away from (or towards) that
/// channel's mean over the image, `(v - mean) × factor + mean`, clipped to `[0, 255]`.
pub fn adjust_contrast(image: &mut Pixels, factor: f64) {
    let channels = image.channels.max(1);
    let pixels = (image.values.len() / channels).max(1);
    let mut sums = vec![0.0f64; channels];
    for pixel in image.values.chunks_exact(channels) {
        for (sum, value) in sums.iter_mut().zip(pixel) {
            *sum += f64::from(*value);
        }
    }
    let means: Vec<f32> = sums
        .iter()
        .map(|sum| (sum / pixels as f64) as f32)
        .collect();
    let factor = factor as f32;
    for pixel in image.values.chunks_exact_mut(channels) {
        for (value, mean) in pixel.iter_mut().zip(&means) {
            *value = ((*value - mean) * factor + mean).clamp(0.0, 255.0);
        }
    }
}

/// `RandomBrightness` with `delta` (on the 0–255 scale) added to every value, clipped to
/// `[0, 255]`.
pub fn adjust_brightness(image: &mut Pixels, delta: f64) {
    let delta = delta as f32;
    for value in &mut image.values {
        *value = (*value + delta).clamp(0.0, 255.0);
    }
}
