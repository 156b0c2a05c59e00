//! The JPEG fast path: a baseline or progressive YCbCr (or grayscale) JPEG is decoded by
//! libjpeg-turbo (through MozJPEG's TurboJPEG API, built from source by `mozjpeg-sys`) to its
//! component planes as stored — luma at full size, chroma at its subsampled size — and each
//! plane is resized to the model's input on its own before the colour conversion. Compared
//! with decoding to full-size RGB and resizing that, this skips the chroma upsampling and
//! converts colour at the input's size instead of the file's: about half the work for a
//! 300–500 px photo going to 224x224.
//!
//! Bilinear resizing is linear and the JFIF colour conversion affine, so the two orders agree
//! except for rounding, the clamping of out-of-gamut colours to 0..=255, and how the chroma
//! between two stored samples is interpolated (libjpeg's "fancy" upsampling is a triangle
//! filter, here the resize interpolates the stored samples directly). On photos the result
//! differs from a full decode and resize by well under one level in 255 on average;
//! `docs/commands.md` (`strata data bench`) has the numbers.
//!
//! Anything else — another colour space (CMYK, YCCK, Adobe RGB), an unusual subsampling, a
//! file libjpeg warns about (truncated, corrupt) — returns `None`, and the caller decodes the
//! file with the general decoder, whose errors name the problem.

use super::image::{ImageInfo, ImageProblem, ImageSpec, ReadLimits};
use super::rows::{self, Taps};
use std::cell::RefCell;
use std::os::raw::{c_int, c_uchar, c_ulong, c_void};

// Links MozJPEG's static library, which holds the TurboJPEG functions declared below.
use mozjpeg_sys as _;

/// TurboJPEG's colour space codes (`TJCS_*`) that the fast path reads.
const COLORSPACE_YCBCR: c_int = 1;
const COLORSPACE_GRAY: c_int = 2;
/// `TJSAMP_GRAY`: one component.
const SUBSAMPLING_GRAY: c_int = 3;
/// `TJFLAG_STOPONWARNING`: a corrupt or truncated file stops the decode (and the general
/// decoder then reports it) instead of decoding to grey.
const FLAG_STOP_ON_WARNING: c_int = 8192;
/// `TJFLAG_FASTDCT`: libjpeg's fast integer inverse DCT (`JDCT_IFAST`).
const FLAG_FAST_DCT: c_int = 2048;

/// Which of libjpeg's inverse DCTs the fast path decodes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idct {
    /// The fast integer IDCT (`JDCT_IFAST`), TensorFlow's default for `decode_jpeg` and so
    /// for Keras's image folders: about 10% more images a second than `Accurate` on 300 to
    /// 500 px photos, and about one level of 255 further from a full decode on average.
    Fast,
    /// The accurate integer IDCT (`JDCT_ISLOW`), libjpeg's default.
    Accurate,
}

extern "C" {
    fn tjInitDecompress() -> *mut c_void;
    fn tjDestroy(handle: *mut c_void) -> c_int;
    fn tjDecompressHeader3(
        handle: *mut c_void,
        jpeg: *const c_uchar,
        jpeg_size: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        subsampling: *mut c_int,
        colorspace: *mut c_int,
    ) -> c_int;
    fn tjPlaneWidth(component: c_int, width: c_int, subsampling: c_int) -> c_int;
    fn tjPlaneHeight(component: c_int, height: c_int, subsampling: c_int) -> c_int;
    fn tjDecompressToYUVPlanes(
        handle: *mut c_void,
        jpeg: *const c_uchar,
        jpeg_size: c_ulong,
        planes: *mut *mut c_uchar,
        width: c_int,
        strides: *mut c_int,
        height: c_int,
        flags: c_int,
    ) -> c_int;
    /// libjpeg-turbo's own check that its SIMD inverse DCT (the fast one, which the fast path
    /// uses) is compiled in and the CPU runs it. Built without NASM, `mozjpeg-sys` links
    /// `jsimd_none.c`, whose checks all return 0.
    fn jsimd_can_idct_ifast() -> c_int;
}

/// Whether libjpeg-turbo decodes with its SIMD code: compiled in (`mozjpeg-sys` assembles it
/// only when NASM is installed at build time) and supported by this CPU. Without it the fast
/// path decodes about half as fast; `strata data bench` says so.
pub fn simd() -> bool {
    // SAFETY: a C function with no arguments that reads the CPU's features once (into a
    // thread-local) and returns a flag; it touches no Rust memory.
    unsafe { jsimd_can_idct_ifast() != 0 }
}

/// Decodes `bytes` through the fast path and converts the image to `spec`'s size and channels
/// (0..=255, channels last), with what the pre-flight scan reports of the file. `None` when
/// the fast path does not apply (not a JPEG, another colour space, a file libjpeg warns
/// about): the caller decodes the file the general way. An image over `limits.max_pixels` is
/// refused from its header. Decodes with the fast IDCT, as Keras does: every reader of
/// images (the loader, the pre-flight scan, `predict`) goes through here or
/// [`decode_converted_rows`], so training and prediction see the same pixels.
pub fn decode_converted(
    bytes: &[u8],
    spec: &ImageSpec,
    limits: &ReadLimits,
) -> Option<Result<(Vec<u8>, ImageInfo), ImageProblem>> {
    decode(bytes, spec, limits, Idct::Fast, |_, _| {})
}

/// [`decode_converted`], handing each converted row to `on_row` (its index and its bytes) as
/// soon as it is written, while it is still in cache: the loader writes it to its batch from
/// there. `on_row` sees every row once, in order, when the fast path succeeds, and none
/// otherwise.
pub fn decode_converted_rows(
    bytes: &[u8],
    spec: &ImageSpec,
    limits: &ReadLimits,
    on_row: impl FnMut(usize, &[u8]),
) -> Option<Result<(Vec<u8>, ImageInfo), ImageProblem>> {
    decode(bytes, spec, limits, Idct::Fast, on_row)
}

/// [`decode_converted`] with the inverse DCT chosen.
pub fn decode_converted_with(
    bytes: &[u8],
    spec: &ImageSpec,
    limits: &ReadLimits,
    idct: Idct,
) -> Option<Result<(Vec<u8>, ImageInfo), ImageProblem>> {
    decode(bytes, spec, limits, idct, |_, _| {})
}

/// The fast path with the inverse DCT `idct`, each row handed to `on_row`.
fn decode(
    bytes: &[u8],
    spec: &ImageSpec,
    limits: &ReadLimits,
    idct: Idct,
    on_row: impl FnMut(usize, &[u8]),
) -> Option<Result<(Vec<u8>, ImageInfo), ImageProblem>> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    DECODER.with(|decoder| {
        let mut decoder = decoder.try_borrow_mut().ok()?;
        let decoder = decoder.as_mut()?;
        let header = decoder.header(bytes)?;
        if header.pixels() > limits.max_pixels {
            return Some(Err(ImageProblem::TooManyPixels {
                width: header.width,
                height: header.height,
                max: limits.max_pixels,
            }));
        }
        let converted = decoder
            .planes(bytes, &header, idct)
            .and_then(|planes| convert(&planes, spec, on_row));
        decoder.release_large_buffers();
        let converted = converted?;
        let mode = if header.subsampling == SUBSAMPLING_GRAY {
            "L"
        } else {
            "RGB"
        };
        Some(Ok((
            converted,
            ImageInfo {
                width: header.width,
                height: header.height,
                mode,
            },
        )))
    })
}

thread_local! {
    /// One TurboJPEG decompressor per decoding thread, with its plane buffers; `None` if
    /// libjpeg could not allocate one (then every file takes the general path).
    static DECODER: RefCell<Option<Decoder>> = RefCell::new(Decoder::new());
}

/// A TurboJPEG decompress handle and the buffers its planes are decoded into.
struct Decoder {
    handle: *mut c_void,
    buffers: [Vec<u8>; 3],
}

/// What a JPEG's header says.
struct Header {
    width: u32,
    height: u32,
    subsampling: c_int,
}

impl Header {
    fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    fn n_planes(&self) -> usize {
        if self.subsampling == SUBSAMPLING_GRAY {
            1
        } else {
            3
        }
    }
}

/// One decoded component. TurboJPEG pads every plane to whole subsampling blocks, so a plane
/// may hold a column or row more than the image covers.
#[derive(Clone, Copy)]
struct Plane<'a> {
    /// Samples per row.
    width: u32,
    /// Rows.
    height: u32,
    /// The image's width and height measured in this plane's samples: its own size divided
    /// by the plane's subsampling (200.5 for the chroma of a 401-pixel-wide 4:2:0 image).
    extent: (f64, f64),
    samples: &'a [u8],
}

impl Decoder {
    fn new() -> Option<Decoder> {
        // SAFETY: tjInitDecompress takes no arguments and returns a new handle or null.
        let handle = unsafe { tjInitDecompress() };
        (!handle.is_null()).then(|| Decoder {
            handle,
            buffers: [Vec::new(), Vec::new(), Vec::new()],
        })
    }

    /// The header of a YCbCr or grayscale JPEG with a subsampling TurboJPEG names; `None`
    /// for anything else.
    fn header(&mut self, bytes: &[u8]) -> Option<Header> {
        let (mut width, mut height, mut subsampling, mut colorspace) = (0, 0, 0, 0);
        let size = c_ulong::try_from(bytes.len()).ok()?;
        // SAFETY: `handle` is a live decompressor; `bytes` is valid for `size` bytes and the
        // four outputs are valid `c_int`s.
        let status = unsafe {
            tjDecompressHeader3(
                self.handle,
                bytes.as_ptr(),
                size,
                &mut width,
                &mut height,
                &mut subsampling,
                &mut colorspace,
            )
        };
        let colour_ok = match colorspace {
            COLORSPACE_YCBCR => subsampling != SUBSAMPLING_GRAY,
            COLORSPACE_GRAY => subsampling == SUBSAMPLING_GRAY,
            _ => false,
        };
        if status != 0 || !colour_ok || !(0..=5).contains(&subsampling) {
            return None;
        }
        Some(Header {
            width: u32::try_from(width).ok().filter(|&w| w > 0)?,
            height: u32::try_from(height).ok().filter(|&h| h > 0)?,
            subsampling,
        })
    }

    /// Decodes the planes of a file whose header is `header`, borrowed from the decoder's
    /// buffers: luma, then blue and red chroma (absent for a grayscale file), through the
    /// inverse DCT `idct`; `None` on any error or warning.
    fn planes(&mut self, bytes: &[u8], header: &Header, idct: Idct) -> Option<Vec<Plane<'_>>> {
        let n_planes = header.n_planes();
        let (width, height) = (
            c_int::try_from(header.width).ok()?,
            c_int::try_from(header.height).ok()?,
        );
        let mut sizes: [(c_int, c_int); 3] = [(0, 0); 3];
        for (component, size) in sizes.iter_mut().enumerate().take(n_planes) {
            let component = component as c_int;
            // SAFETY: pure functions of their integer arguments (-1 on bad arguments).
            *size = unsafe {
                (
                    tjPlaneWidth(component, width, header.subsampling),
                    tjPlaneHeight(component, height, header.subsampling),
                )
            };
            if size.0 <= 0 || size.1 <= 0 {
                return None;
            }
        }
        let mut pointers = [std::ptr::null_mut::<c_uchar>(); 3];
        let mut strides = [0 as c_int; 3];
        for component in 0..n_planes {
            let (plane_width, plane_height) = sizes[component];
            let len = plane_width as usize * plane_height as usize;
            let buffer = &mut self.buffers[component];
            if buffer.len() < len {
                buffer.resize(len, 0);
            }
            pointers[component] = buffer.as_mut_ptr();
            strides[component] = plane_width;
        }
        let size = c_ulong::try_from(bytes.len()).ok()?;
        // SAFETY: `handle` is live; `bytes` is valid for `size` bytes; each of the
        // `n_planes` pointers addresses a buffer of at least stride x plane height bytes
        // (the sizes TurboJPEG's own tjPlaneWidth/tjPlaneHeight give for this image), which
        // is what tjDecompressToYUVPlanes writes at the image's own size; unused entries are
        // null, as it requires for a grayscale image.
        let status = unsafe {
            tjDecompressToYUVPlanes(
                self.handle,
                bytes.as_ptr(),
                size,
                pointers.as_mut_ptr(),
                width,
                strides.as_mut_ptr(),
                height,
                match idct {
                    Idct::Fast => FLAG_STOP_ON_WARNING | FLAG_FAST_DCT,
                    Idct::Accurate => FLAG_STOP_ON_WARNING,
                },
            )
        };
        if status != 0 {
            return None;
        }
        let (luma_width, luma_height) = sizes[0];
        let planes = self
            .buffers
            .iter()
            .zip(sizes)
            .take(n_planes)
            .map(|(buffer, (plane_width, plane_height))| {
                let len = plane_width as usize * plane_height as usize;
                // INVARIANT: TurboJPEG's luma plane is each chroma plane times the
                // subsampling factor in each direction, so the divisions are exact.
                let across = f64::from(luma_width / plane_width);
                let down = f64::from(luma_height / plane_height);
                Plane {
                    width: plane_width as u32,
                    height: plane_height as u32,
                    extent: (
                        f64::from(header.width) / across,
                        f64::from(header.height) / down,
                    ),
                    samples: &buffer[..len],
                }
            })
            .collect();
        Some(planes)
    }

    /// Frees plane buffers above [`KEPT_BUFFER_BYTES`], so that one large photo does not
    /// hold its planes' memory on every decoding thread for the rest of the run.
    fn release_large_buffers(&mut self) {
        for buffer in &mut self.buffers {
            if buffer.capacity() > KEPT_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
    }
}

/// The largest plane buffer a decoder keeps between images: 4 MiB, a 2048x2048 luma plane.
const KEPT_BUFFER_BYTES: usize = 4 << 20;

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: `handle` came from tjInitDecompress and is destroyed once, here.
        unsafe {
            tjDestroy(self.handle);
        }
    }
}

/// Resizes the planes to the input's size and converts them to its channels, a row at a time:
/// each plane's two source rows are blended, then two samples of the blend for each output
/// column (bilinear, half-pixel centres, no antialiasing, as whole images are resized), then
/// the colour conversion. One channel is luma alone (what libjpeg gives for a grayscale decode
/// of a colour JPEG); three are JFIF YCbCr to RGB, or luma repeated for a grayscale file. A
/// plane is read over the image's extent only, so padding past an odd edge is not sampled and
/// chroma samples sit where JFIF places them, centred on the luma samples they stand for.
fn convert(
    planes: &[Plane<'_>],
    spec: &ImageSpec,
    mut on_row: impl FnMut(usize, &[u8]),
) -> Option<Vec<u8>> {
    let (width, height, channels) = (spec.width, spec.height, spec.channels);
    let luma = planes.first()?;
    let chroma = match planes {
        [_, blue, red] if channels == 3 => Some((blue, red)),
        _ => None,
    };
    let luma_axes = (
        axis(width, luma.extent.0, luma.width),
        axis(height, luma.extent.1, luma.height),
    );
    // Blue and red chroma have the same size, so they share their axes.
    let chroma_axes = chroma.map(|(blue, _)| {
        (
            axis(width, blue.extent.0, blue.width),
            axis(height, blue.extent.1, blue.height),
        )
    });
    let mut blended = [Vec::new(), Vec::new(), Vec::new()];
    let columns = || vec![0.0_f32; width + rows::OUT_PAD];
    let mut columns = [columns(), columns(), columns()];
    let mut rgb = [vec![0_u8; width], vec![0; width], vec![0; width]];
    let mut out = vec![0_u8; width * height * channels];
    for (row_idx, out_row) in out.chunks_exact_mut(width * channels).enumerate() {
        let [luma_row, blue_row, red_row] = &mut blended;
        let [luma_columns, blue_columns, red_columns] = &mut columns;
        blend_rows(luma, &luma_axes.1, row_idx, luma_row);
        rows::resample(&luma_axes.0, luma_row, luma_columns);
        let (Some((blue, red)), Some((across, down))) = (chroma, &chroma_axes) else {
            for (pixel, &y) in out_row.chunks_exact_mut(channels).zip(luma_columns.iter()) {
                pixel.fill(to_byte(y));
            }
            on_row(row_idx, out_row);
            continue;
        };
        blend_rows(blue, down, row_idx, blue_row);
        blend_rows(red, down, row_idx, red_row);
        rows::resample(across, blue_row, blue_columns);
        rows::resample(across, red_row, red_columns);
        let [red_out, green_out, blue_out] = &mut rgb;
        ycbcr_to_rgb_row(
            (luma_columns, blue_columns, red_columns),
            (red_out, green_out, blue_out),
        );
        rows::interleave(red_out, green_out, blue_out, out_row);
        on_row(row_idx, out_row);
    }
    Some(out)
}

/// JFIF YCbCr to RGB (the factors of libjpeg's `jdcolor.c`) for one row, rounded and clamped,
/// into one array per colour (so that it runs on whole vectors).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn ycbcr_to_rgb_row(
    (luma, blue, red): (&[f32], &[f32], &[f32]),
    (red_out, green_out, blue_out): (&mut [u8], &mut [u8], &mut [u8]),
) {
    let inputs = luma.iter().zip(blue).zip(red);
    let outputs = red_out
        .iter_mut()
        .zip(green_out.iter_mut())
        .zip(blue_out.iter_mut());
    for (((&y, &cb), &cr), ((red, green), blue)) in inputs.zip(outputs) {
        let (cb, cr) = (cb - 128.0, cr - 128.0);
        *red = to_byte(y + 1.402 * cr);
        *green = to_byte(y - 0.344_136 * cb - 0.714_136 * cr);
        *blue = to_byte(y + 1.772 * cb);
    }
}

/// Where each output row or column reads one plane: the first of its two source samples and
/// the weight of the next one, as `tf.image.resize(method="bilinear")` places them. Outputs
/// before the first sample's centre or past the last's take that sample alone (weight 0);
/// the last sample's `first + 1` is a copy of it that [`blend_rows`] appends. `n_out` outputs
/// over `extent` samples (in the plane's units) of a plane of `len`.
fn axis(n_out: usize, extent: f64, len: u32) -> Taps {
    let last = len.saturating_sub(1);
    let scale = extent / n_out as f64;
    let mut first = Vec::with_capacity(n_out);
    let mut weight = Vec::with_capacity(n_out);
    for out_idx in 0..n_out {
        let position = (out_idx as f64 + 0.5) * scale - 0.5;
        let below = position.floor();
        let (at, w) = if below < 0.0 {
            (0, 0.0)
        } else if below >= f64::from(last) {
            (last, 0.0)
        } else {
            (below as u32, (position - below) as f32)
        };
        first.push(at);
        weight.push(w);
    }
    Taps::new(first, weight)
}

/// Blends the two source rows of output row `row_idx` of `plane` into `out`: one value per
/// sample of the plane's row, a copy of the last (see [`axis`]), and [`rows::ROW_PAD`] more
/// values that the resize across may read and ignore.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn blend_rows(plane: &Plane<'_>, down: &Taps, row_idx: usize, out: &mut Vec<f32>) {
    let width = plane.width as usize;
    out.resize(width + 1 + rows::ROW_PAD, 0.0);
    let row = |idx: usize| &plane.samples[idx * width..(idx + 1) * width];
    let first = down.first[row_idx] as usize;
    let (top, bottom) = (row(first), row((first + 1).min(plane.height as usize - 1)));
    let weight = down.weight[row_idx];
    for ((out, &top), &bottom) in out.iter_mut().zip(top).zip(bottom) {
        let top = f32::from(top);
        *out = top + (f32::from(bottom) - top) * weight;
    }
    out[width] = out[width - 1];
}

/// Rounds to the nearest byte (ties to even), clamping to 0..=255. Adding 1.5 x 2^23 leaves
/// the rounded integer in the low mantissa bits: unlike `f32::round` (a library call on
/// baseline x86-64) or a saturating `as` cast, this compiles to whole-vector instructions.
fn to_byte(value: f32) -> u8 {
    const ROUNDER: f32 = 12_582_912.0;
    ((value.clamp(0.0, 255.0) + ROUNDER).to_bits() & 0xFF) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray_jpeg(width: u16, height: u16) -> Vec<u8> {
        let samples: Vec<u8> = (0..usize::from(width) * usize::from(height))
            .map(|idx| (idx % 251) as u8)
            .collect();
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 80)
            .encode(&samples, width, height, jpeg_encoder::ColorType::Luma)
            .expect("encode");
        bytes
    }

    /// libjpeg-turbo's SIMD code is in the build exactly when NASM was there to assemble it
    /// (every x86-64 CPU has the SSE2 its fast inverse DCT needs).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_is_compiled_in_exactly_when_nasm_was_found() {
        let nasm = option_env!("STRATA_BUILT_WITH_NASM");
        assert_eq!(
            simd(),
            nasm == Some("yes"),
            "NASM found by build.rs: {nasm:?}; if NASM was installed after mozjpeg-sys was \
             built, run `cargo clean --release -p mozjpeg-sys`"
        );
    }

    #[test]
    fn a_large_image_does_not_keep_its_planes_but_a_small_one_does() {
        let mut decoder = Decoder::new().expect("decompressor");
        for ((width, height), kept) in [((2100, 2048), false), ((300, 200), true)] {
            let bytes = gray_jpeg(width, height);
            let header = decoder.header(&bytes).expect("header");
            assert!(decoder.planes(&bytes, &header, Idct::Fast).is_some());
            decoder.release_large_buffers();
            assert_eq!(decoder.buffers[0].capacity() > 0, kept, "{width}x{height}");
        }
    }
}
