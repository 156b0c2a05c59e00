//! The data stage on generated image folders: every format loads to the model's shape,
//! broken files are classified, and each folder problem gives its `strata::data::…` code.

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use std::path::{Path, PathBuf};
use strata::data::check::scan_images;
use strata::data::{errors, folder, load_image, ImageProblem, ImageSpec};
use strata::diagnostics::codes;

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 10) as u8, (y * 10) as u8, 200])
    })
}

fn save(image: &DynamicImage, path: &Path, format: ImageFormat) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    image.save_with_format(path, format).expect("save image");
}

const RGB: ImageSpec = ImageSpec {
    height: 8,
    width: 6,
    channels: 3,
    rescale: 1.0 / 255.0,
};
const GRAY: ImageSpec = ImageSpec {
    height: 8,
    width: 6,
    channels: 1,
    rescale: 1.0,
};

#[test]
fn every_format_loads_to_the_model_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = DynamicImage::ImageRgb8(gradient(12, 16));
    for (name, format) in [
        ("a.png", ImageFormat::Png),
        ("a.jpg", ImageFormat::Jpeg),
        ("a.bmp", ImageFormat::Bmp),
        ("a.gif", ImageFormat::Gif),
        ("a.webp", ImageFormat::WebP),
        ("a.tiff", ImageFormat::Tiff),
    ] {
        let path = dir.path().join(name);
        save(&image, &path, format);
        let rgb = load_image(&path, &RGB).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(rgb.len(), 8 * 6 * 3, "{name}");
        assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)), "{name}");
        let gray = load_image(&path, &GRAY).expect("gray");
        assert_eq!(gray.len(), 8 * 6, "{name}");
        assert!(
            gray.iter().any(|v| *v > 1.0),
            "{name}: rescale 1 keeps 0..255"
        );
    }
}

#[test]
fn alpha_is_dropped_and_sixteen_bit_is_scaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(6, 8, Rgba([255, 0, 0, 0])));
    let path = dir.path().join("alpha.png");
    save(&rgba, &path, ImageFormat::Png);
    let values = load_image(&path, &RGB).expect("rgba");
    assert_eq!(&values[..3], &[1.0, 0.0, 0.0]);
    let deep = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
        6,
        8,
        image::Luma([65535u16]),
    ));
    let path = dir.path().join("deep.png");
    save(&deep, &path, ImageFormat::Png);
    let values = load_image(&path, &GRAY).expect("16-bit");
    assert!(values.iter().all(|v| *v == 255.0));
}

#[test]
fn exact_size_is_not_resampled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exact.png");
    save(
        &DynamicImage::ImageRgb8(gradient(6, 8)),
        &path,
        ImageFormat::Png,
    );
    let values = load_image(
        &path,
        &ImageSpec {
            rescale: 1.0,
            ..RGB
        },
    )
    .expect("load");
    // Pixel (x=2, y=3) is (20, 30, 200).
    let at = (3 * 6 + 2) * 3;
    assert_eq!(&values[at..at + 3], &[20.0, 30.0, 200.0]);
}

#[test]
fn broken_files_are_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").expect("write");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"not an image at all").expect("write");
    let good = dir.path().join("good.png");
    save(
        &DynamicImage::ImageRgb8(gradient(32, 32)),
        &good,
        ImageFormat::Png,
    );
    let bytes = std::fs::read(&good).expect("read");
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    assert_eq!(load_image(&empty, &RGB), Err(ImageProblem::Empty));
    assert_eq!(load_image(&text, &RGB), Err(ImageProblem::NotAnImage));
    assert!(matches!(
        load_image(&truncated, &RGB),
        Err(ImageProblem::Corrupt(_))
    ));
    assert!(matches!(
        load_image(&dir.path().join("missing.png"), &RGB),
        Err(ImageProblem::Unreadable(_))
    ));
}

/// A folder with classes `b_squares` and `a_circles` (created in that order), three images each.
fn class_folder(root: &Path) -> PathBuf {
    for class in ["b_squares", "a_circles"] {
        for idx in 0..3 {
            let path = root.join(class).join(format!("{idx}.png"));
            save(
                &DynamicImage::ImageRgb8(gradient(10 + idx, 10)),
                &path,
                ImageFormat::Png,
            );
        }
    }
    root.to_path_buf()
}

#[test]
fn classes_are_sorted_by_name_and_broken_files_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = class_folder(dir.path());
    std::fs::write(root.join("a_circles/zero.png"), b"").expect("write");
    std::fs::write(root.join("a_circles/.hidden"), b"x").expect("write");
    let found = folder::scan(&root).expect("scan");
    assert_eq!(found.classes, vec!["a_circles", "b_squares"]);
    assert_eq!(found.len(), 7);
    let report = scan_images(&found, &strata::data::image::ReadLimits::default());
    assert_eq!(report.n_images(), 6);
    assert_eq!(report.broken.len(), 1);
    assert_eq!(report.modes.get("RGB"), Some(&6));
    assert_eq!(
        (report.min_size, report.max_size),
        (Some((10, 10)), Some((12, 10)))
    );
    let warning = errors::skipped_images(&report.broken);
    assert_eq!(warning.code, codes::DATA_UNREADABLE_IMAGE);
    assert!(warning.notes[0].contains("zero.png"), "{:?}", warning.notes);
}

#[test]
fn each_folder_problem_has_its_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        folder::scan(&dir.path().join("nope"))
            .map(|_| ())
            .unwrap_err()
            .code,
        codes::DATA_MISSING_FOLDER
    );
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).expect("mkdir");
    std::fs::write(flat.join("a.png"), b"").expect("write");
    assert_eq!(
        folder::scan(&flat).map(|_| ()).unwrap_err().code,
        codes::DATA_NO_CLASSES
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("cats")).expect("mkdir");
    assert_eq!(
        folder::scan(&empty).map(|_| ()).unwrap_err().code,
        codes::DATA_EMPTY_CLASS
    );
    let train = folder::scan(&class_folder(&dir.path().join("train"))).expect("train");
    let other = dir.path().join("validation");
    save(
        &DynamicImage::ImageRgb8(gradient(4, 4)),
        &other.join("dogs/0.png"),
        ImageFormat::Png,
    );
    let validation = folder::scan(&other).expect("validation");
    let mismatch = folder::same_classes(&train, &validation).unwrap_err();
    assert_eq!(mismatch.code, codes::DATA_CLASS_MISMATCH);
    assert!(mismatch.notes.iter().any(|note| note.contains("`dogs`")));
}

/// `strata data bench` decodes every file of the folder on each pass and says whether its
/// JPEG decoder has libjpeg-turbo's SIMD code: `jpeg_simd` in the JSON, and in the human
/// output a warning on stderr exactly when it has not.
#[test]
fn data_bench_counts_every_image_and_says_how_jpegs_are_decoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (class, count) in [("a", 3u32), ("b", 2)] {
        for idx in 0..count {
            let image = DynamicImage::ImageRgb8(gradient(40 + idx, 30));
            let path = dir.path().join(class).join(format!("{idx}.jpg"));
            save(&image, &path, ImageFormat::Jpeg);
        }
    }
    let bench = |format: &str| {
        let args = [
            "data",
            "bench",
            ".",
            "--size",
            "16x16",
            "--repeats",
            "2",
            "--format",
        ];
        let output = crate::common::run::strata(dir.path(), &[&args[..], &[format]].concat());
        assert!(
            output.status.success(),
            "{}",
            crate::common::run::text(&output)
        );
        output
    };
    let json = bench("json");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(report["images"], 5);
    assert_eq!(report["images_per_s"].as_array().map(Vec::len), Some(2));
    let simd = report["jpeg_simd"].as_bool().expect("jpeg_simd is a flag");
    assert_eq!(simd, strata::data::jpeg::simd());
    let human = bench("human");
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains("5 images to 16x16x3"), "{stdout}");
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert_eq!(
        stderr.contains("without libjpeg-turbo's SIMD code"),
        !simd,
        "{stderr}"
    );
}

#[test]
fn class_count_points_at_the_last_dense_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let found = folder::scan(&class_folder(dir.path())).expect("scan");
    let text = "input: 8x8x3\nmodel: dense16 relu -> dense3 softmax\n";
    let model = strata::compile(text, "count").model.expect("model");
    let diagnostic = errors::class_count(&model.layers, 3, &found);
    assert_eq!(diagnostic.code, codes::DATA_CLASS_COUNT);
    let span = diagnostic.primary().expect("label").span;
    assert_eq!(&text[span.offset..span.end()], "dense3");
    assert_eq!(
        diagnostic.help.as_deref(),
        Some(
            format!(
                "write `dense2` for the classes of `{}`",
                dir.path().display()
            )
            .as_str()
        )
    );
}

mod loader {
    use super::*;
    use strata::data::loader::{split, Loader};

    fn samples(root: &Path) -> Vec<(PathBuf, usize)> {
        folder::scan(root).expect("scan").samples()
    }

    #[test]
    fn order_depends_on_seed_and_epoch_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loader = Loader::new(samples(&class_folder(dir.path())), RGB, 1 << 20);
        assert_eq!(loader.order(7, 3, true), loader.order(7, 3, true));
        assert_ne!(loader.order(7, 3, true), loader.order(7, 4, true));
        assert_eq!(loader.order(7, 3, false), (0..6).collect::<Vec<_>>());
        let mut sorted = loader.order(1, 1, true);
        sorted.sort();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn batches_cover_the_epoch_and_the_cache_saves_decoding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = class_folder(dir.path());
        let cached = Loader::new(samples(&root), RGB, 1 << 20);
        let uncached = Loader::new(samples(&root), RGB, 0);
        let order = cached.order(0, 0, true);
        let batches: Vec<_> = cached.batches(order.clone(), 4).iter().collect();
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![4, 2]
        );
        assert_eq!(batches[0].images.len(), 4 * 8 * 6 * 3);
        let _ = uncached.batches(order.clone(), 4).iter().count();
        // With the files gone, only the cache can still serve them.
        std::fs::remove_dir_all(&root).expect("remove");
        let again: Vec<_> = cached.batches(order.clone(), 4).iter().collect();
        assert_eq!(again, batches);
        let missing: usize = uncached
            .batches(order, 4)
            .iter()
            .map(|b| b.skipped.len())
            .sum();
        assert_eq!(missing, 6);
    }

    #[test]
    fn batches_arrive_in_order_and_an_abandoned_epoch_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loader = Loader::new(samples(&class_folder(dir.path())), RGB, 0);
        let order = loader.order(3, 1, true);
        for batch_size in [1, 2, 5] {
            let batches: Vec<_> = loader.batches(order.clone(), batch_size).iter().collect();
            let expected: Vec<_> = order
                .chunks(batch_size)
                .map(|chunk| loader.batch_now(chunk))
                .collect();
            assert_eq!(batches, expected, "batch size {batch_size}");
        }
        // A receiver dropped after one batch ends the epoch: the lanes stop instead of waiting
        // for a turn that never comes, and the next epoch runs in full.
        let first = loader.batches(order.clone(), 1).recv().expect("a batch");
        assert_eq!(first, loader.batch_now(&order[..1]));
        assert_eq!(loader.batches(order, 1).iter().count(), 6);
    }

    #[test]
    fn images_kept_from_the_scan_fill_the_cache_within_its_budget() {
        use strata::data::check::scan_images_with;
        use strata::data::image::{decode_converted, ReadLimits};
        let dir = tempfile::tempdir().expect("tempdir");
        let root = class_folder(dir.path());
        let found = folder::scan(&root).expect("scan");
        let kept = std::sync::Mutex::new(std::collections::HashMap::new());
        let limits = ReadLimits::for_spec(&RGB);
        scan_images_with(&found, &limits, |path, bytes| {
            let (converted, found) = decode_converted(bytes, &RGB, &limits)?;
            kept.lock()
                .expect("lock")
                .insert(path.to_path_buf(), converted);
            Ok(found)
        });
        let mut kept = kept.into_inner().expect("lock");
        assert_eq!(kept.len(), 6);
        // Room for two images: two come from the scan, the rest must be decoded.
        let loader = Loader::new(found.samples(), RGB, 2 * RGB.len());
        loader.prefill(&mut kept);
        assert!(
            kept.is_empty(),
            "the loader takes its samples' images, kept or not"
        );
        let decoded = loader.batch_now(&[0, 1, 2, 3, 4, 5]);
        std::fs::remove_dir_all(&root).expect("remove");
        let again = loader.batch_now(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(again.len(), 2, "only the cached images are left");
        assert_eq!(again.images[..], decoded.images[..2 * RGB.len()]);
    }

    #[test]
    fn the_prefetch_queue_holds_at_most_32_mib_but_one_batch() {
        use strata::data::loader::prefetch_depth;
        let large = ImageSpec {
            height: 224,
            width: 224,
            channels: 3,
            rescale: 1.0,
        };
        assert_eq!(prefetch_depth(32, &large), 1);
        assert_eq!(prefetch_depth(4, &large), 3);
        assert_eq!(prefetch_depth(1000, &RGB), 3);
        assert_eq!(prefetch_depth(0, &RGB), 3);
    }

    #[test]
    fn the_cache_budget_is_the_flag_else_the_spec_else_a_quarter_of_memory() {
        use strata::data::loader::{available_bytes, cache_budget, default_cache_bytes};
        assert_eq!(cache_budget(Some(10), Some(20)), 10 << 20);
        assert_eq!(cache_budget(None, Some(20)), 20 << 20);
        let meminfo = "MemTotal:       24684280 kB\nMemFree:         7757436 kB\nMemAvailable:   23988120 kB\n";
        assert_eq!(available_bytes(meminfo), Some(23_988_120 * 1024));
        assert_eq!(available_bytes("MemTotal: 1000 kB\n"), Some(1_024_000));
        assert_eq!(available_bytes("nothing here"), None);
        // The machine's available memory moves while other tests run: the default is a
        // quarter of a value read between the two reads around it.
        let available = || {
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|text| available_bytes(&text))
        };
        if let Some(before) = available() {
            let (default, budget) = (default_cache_bytes(), cache_budget(None, None));
            let after = available().unwrap_or(before);
            let (low, high) = (before.min(after) / 4, before.max(after) / 4);
            for value in [default, budget] {
                assert!(
                    (low..=high).contains(&value),
                    "{value} outside {low}..={high}"
                );
            }
        }
    }

    #[test]
    fn validation_split_takes_the_first_files_of_each_class() {
        let samples: Vec<(PathBuf, usize)> = (0..10)
            .map(|idx| (PathBuf::from(format!("{idx}.png")), idx / 5))
            .collect();
        let (train, validation) = split(&samples, 2, 0.4);
        let names = |list: &[(PathBuf, usize)]| {
            list.iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&validation), vec!["0.png", "1.png", "5.png", "6.png"]);
        assert_eq!(train.len(), 6);
    }
}

/// The JPEG fast path (`strata::data::jpeg`): planes resized before the colour conversion
/// give what a full decode and resize give, up to rounding, for every subsampling, size
/// direction and channel count; files it does not take go to the general decoder.
mod jpeg_fast_path {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    use strata::data::image::{decode_converted, decode_limited, to_bytes, ReadLimits};
    use strata::data::jpeg::Idct;
    use strata::data::{jpeg, ImageProblem, ImageSpec};

    /// A photo-like test card: smooth colour ramps and blocks of saturated colour (where
    /// the placement of the chroma samples shows at the edges).
    fn card(width: u16, height: u16) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..u32::from(height) {
            for x in 0..u32::from(width) {
                let in_block = (x / 13 + y / 11) % 3 == 0;
                let pixel = if in_block {
                    [230, 60, 40]
                } else {
                    [
                        (x * 255 / u32::from(width)) as u8,
                        (y * 255 / u32::from(height)) as u8,
                        ((x + y) % 256) as u8,
                    ]
                };
                rgb.extend_from_slice(&pixel);
            }
        }
        rgb
    }

    fn encode(width: u16, height: u16, sampling: SamplingFactor, color: ColorType) -> Vec<u8> {
        let rgb = card(width, height);
        let data: Vec<u8> = match color {
            ColorType::Luma => rgb.chunks(3).map(|p| p[1]).collect(),
            ColorType::Cmyk => rgb
                .chunks(3)
                .flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 0])
                .collect(),
            _ => rgb,
        };
        let mut bytes = Vec::new();
        let mut encoder = Encoder::new(&mut bytes, 92);
        encoder.set_sampling_factor(sampling);
        encoder.encode(&data, width, height, color).expect("encode");
        bytes
    }

    fn spec(height: usize, width: usize, channels: usize) -> ImageSpec {
        ImageSpec {
            height,
            width,
            channels,
            rescale: 1.0,
        }
    }

    /// Mean and largest absolute difference between two conversions of one image.
    fn mean_and_max(a: &[u8], b: &[u8]) -> (f64, u8) {
        assert_eq!(a.len(), b.len());
        let diffs: Vec<u8> = a.iter().zip(b).map(|(a, b)| a.abs_diff(*b)).collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        (mean, diffs.iter().copied().max().unwrap_or(0))
    }

    /// The fast path's conversion with the inverse DCT `idct`.
    fn fast_path(bytes: &[u8], spec: &ImageSpec, idct: Idct) -> Vec<u8> {
        let limits = ReadLimits::for_spec(spec);
        let (values, _) = jpeg::decode_converted_with(bytes, spec, &limits, idct)
            .expect("the fast path takes this file")
            .expect("decodes");
        values
    }

    /// Mean and largest absolute difference between the fast path and a full decode then
    /// resize, both with the accurate IDCT (the general decoder's), so that only the plane
    /// resizing differs.
    fn difference(bytes: &[u8], spec: &ImageSpec) -> (f64, u8) {
        let limits = ReadLimits::for_spec(spec);
        let full = to_bytes(&decode_limited(bytes, &limits).expect("full decode"), spec);
        mean_and_max(&fast_path(bytes, spec, Idct::Accurate), &full)
    }

    #[test]
    fn the_default_is_the_fast_idct_within_rounding_of_the_accurate_one() {
        // Keras decodes JPEGs with libjpeg's fast IDCT, and so does strata by default. It
        // must reach libjpeg (the pixels change) and stay close to the accurate IDCT: chroma
        // placed half a sample off moves the mean by 5 to 10 levels, the IDCT by about 1.
        for (name, sampling) in [
            ("4:4:4", SamplingFactor::R_4_4_4),
            ("4:2:0", SamplingFactor::R_4_2_0),
        ] {
            let bytes = encode(401, 299, sampling, ColorType::Rgb);
            let target = spec(224, 224, 3);
            let limits = ReadLimits::for_spec(&target);
            let (default, _) = jpeg::decode_converted(&bytes, &target, &limits)
                .expect("taken")
                .expect("decodes");
            assert_eq!(default, fast_path(&bytes, &target, Idct::Fast), "{name}");
            let accurate = fast_path(&bytes, &target, Idct::Accurate);
            let (mean, max) = mean_and_max(&default, &accurate);
            eprintln!("{name}: fast against accurate IDCT: mean {mean:.3}, largest {max}");
            assert!(
                mean > 0.0 && mean < 2.0,
                "{name}: mean {mean:.3}, largest {max}"
            );
        }
    }

    #[test]
    fn every_subsampling_matches_a_full_decode_and_resize() {
        // The largest mean difference allowed (in levels of 255), colour then gray. The
        // reference upsamples chroma its own way before resizing; on this card's hard
        // saturated edges that costs up to about 1.7 levels at 4:2:0 and 4 at 4:1:1, while
        // chroma placed half a sample off gives 5 to 10.
        let samplings = [
            ("4:4:4", SamplingFactor::R_4_4_4, 0.5),
            ("4:2:2", SamplingFactor::R_4_2_2, 2.0),
            ("4:2:0", SamplingFactor::R_4_2_0, 2.5),
            ("4:4:0", SamplingFactor::R_4_4_0, 2.0),
            ("4:1:1", SamplingFactor::R_4_1_1, 5.0),
        ];
        // Down by about 1.8 with odd sizes, up, and the same size.
        let sizes = [
            ((401, 299), (224, 224)),
            ((61, 47), (96, 80)),
            ((64, 48), (48, 64)),
        ];
        for (name, sampling, colour_bound) in samplings {
            for ((width, height), (out_width, out_height)) in sizes {
                let bytes = encode(width, height, sampling, ColorType::Rgb);
                for (channels, bound) in [(3, colour_bound), (1, 0.5)] {
                    let target = spec(out_height, out_width, channels);
                    let (mean, max) = difference(&bytes, &target);
                    let case =
                        format!("{name} {width}x{height} to {out_width}x{out_height}x{channels}");
                    assert!(mean < bound, "{case}: mean {mean:.3}, largest {max}");
                }
            }
        }
    }

    #[test]
    fn grayscale_and_progressive_files_take_the_fast_path() {
        let limits = ReadLimits::default();
        let gray = encode(37, 29, SamplingFactor::R_4_4_4, ColorType::Luma);
        let (values, found) = jpeg::decode_converted(&gray, &spec(20, 30, 3), &limits)
            .expect("taken")
            .expect("decodes");
        assert_eq!((found.width, found.height, found.mode), (37, 29, "L"));
        assert!(values.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert!(difference(&gray, &spec(20, 30, 1)).0 < 0.5);
        let mut progressive = Vec::new();
        let mut encoder = Encoder::new(&mut progressive, 90);
        encoder.set_progressive(true);
        encoder
            .encode(&card(50, 40), 50, 40, ColorType::Rgb)
            .expect("encode");
        let (_, found) = jpeg::decode_converted(&progressive, &spec(24, 24, 3), &limits)
            .expect("taken")
            .expect("decodes");
        assert_eq!((found.width, found.height, found.mode), (50, 40, "RGB"));
    }

    #[test]
    fn other_files_go_to_the_general_decoder() {
        let rgb = spec(16, 16, 3);
        let limits = ReadLimits::default();
        // CMYK: declined by the fast path, decoded by the general one.
        let cmyk = encode(40, 30, SamplingFactor::R_4_4_4, ColorType::Cmyk);
        assert!(jpeg::decode_converted(&cmyk, &rgb, &limits).is_none());
        let (values, found) = decode_converted(&cmyk, &rgb, &limits).expect("general decoder");
        assert_eq!(
            (values.len(), found.width, found.height),
            (16 * 16 * 3, 40, 30)
        );
        // Truncated: libjpeg warns, so the fast path declines and the general decoder says
        // what it says of such a file.
        let whole = encode(64, 64, SamplingFactor::R_4_2_0, ColorType::Rgb);
        let truncated = &whole[..whole.len() / 2];
        assert!(jpeg::decode_converted(truncated, &rgb, &limits).is_none());
        let general = decode_limited(truncated, &limits).map(|image| to_bytes(&image, &rgb));
        assert_eq!(
            decode_converted(truncated, &rgb, &limits).map(|(values, _)| values),
            general
        );
        // Not a JPEG at all.
        assert!(jpeg::decode_converted(b"\x89PNG\r\n\x1a\n", &rgb, &limits).is_none());
        // Too many pixels: refused from the header, as the general decoder refuses it.
        let small = ReadLimits::with_max_pixels(64 * 63);
        assert!(matches!(
            jpeg::decode_converted(&whole, &rgb, &small),
            Some(Err(ImageProblem::TooManyPixels {
                width: 64,
                height: 64,
                ..
            }))
        ));
    }

    /// Large images go from the decoder to the batch a row at a time, with streaming stores:
    /// the batch holds the same values as the cache's copy of each image and as `load_image`,
    /// for JPEGs of each subsampling, a grayscale JPEG and a PNG (the general decoder), at an
    /// input large enough to stream (224x224x3) and one that is not.
    #[test]
    fn batches_decoded_row_by_row_hold_the_cached_and_loaded_values() {
        use image::{DynamicImage, ImageFormat, RgbImage};
        use strata::data::load_image;
        use strata::data::loader::Loader;
        let dir = tempfile::tempdir().expect("tempdir");
        let class = dir.path().join("a");
        std::fs::create_dir_all(&class).expect("mkdir");
        let files = [
            (
                "0.jpg",
                encode(301, 257, SamplingFactor::R_4_2_0, ColorType::Rgb),
            ),
            (
                "1.jpg",
                encode(250, 333, SamplingFactor::R_4_2_2, ColorType::Rgb),
            ),
            (
                "2.jpg",
                encode(240, 240, SamplingFactor::R_4_4_4, ColorType::Rgb),
            ),
            (
                "3.jpg",
                encode(310, 230, SamplingFactor::R_4_2_0, ColorType::Luma),
            ),
        ];
        for (name, bytes) in &files {
            std::fs::write(class.join(name), bytes).expect("write");
        }
        let card = RgbImage::from_raw(260, 250, card(260, 250)).expect("card");
        DynamicImage::ImageRgb8(card)
            .save_with_format(class.join("4.png"), ImageFormat::Png)
            .expect("png");
        let samples: Vec<_> = (0..5)
            .map(|idx| {
                let name = if idx == 4 {
                    "4.png".to_string()
                } else {
                    format!("{idx}.jpg")
                };
                (class.join(name), 0)
            })
            .collect();
        for spec in [
            ImageSpec {
                rescale: 1.0 / 255.0,
                ..spec(224, 224, 3)
            },
            ImageSpec {
                rescale: 0.5,
                ..spec(40, 36, 3)
            },
            ImageSpec {
                rescale: 1.0,
                ..spec(224, 224, 1)
            },
        ] {
            let loader = Loader::new(samples.clone(), spec, 1 << 30);
            let decoded = loader.batch_now(&[0, 1, 2, 3, 4]);
            let cached = loader.batch_now(&[0, 1, 2, 3, 4]);
            assert_eq!(decoded.len(), 5);
            assert_eq!(decoded.images, cached.images, "{spec:?}");
            for (idx, (path, _)) in samples.iter().enumerate() {
                let loaded = load_image(path, &spec).expect("load");
                let in_batch = &decoded.images[idx * spec.len()..(idx + 1) * spec.len()];
                assert!(
                    in_batch
                        .iter()
                        .zip(&loaded)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{}: {spec:?}",
                    path.display()
                );
            }
        }
    }
}
