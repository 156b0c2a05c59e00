//! Augmentation (`augment:`) against two references: a straightforward per-pixel inverse
//! mapping written here (reflect padding by index, bilinear interpolation, all in `f64`), and
//! Keras 3 itself — `tests/data/reference_augment.json`, written by
//! `/opt/venv-keras/bin/python scripts/reference_augment.py` from Keras's layers with fixed
//! factors. Flips are exact, contrast and brightness clip to 0–255, factors of 0 change
//! nothing, and an image's draw depends only on the seed, the epoch and its index — also
//! through the loader, whatever the order, batch size or cache.

use image::{Rgb, RgbImage};
use proptest::prelude::*;
use strata::data::augment::{
    adjust_brightness, adjust_contrast, affine, apply_draw, flip, rotate, translate, zoom,
    Augmentation, Draw, Pixels,
};
use strata::data::{ImageSpec, Loader};
use strata::settings::{AugmentConfig, Flip};

/// A `height × width × channels` image of values in 0..=255 from a small linear generator.
fn image(height: usize, width: usize, channels: usize, seed: u64) -> Pixels {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let values = (0..height * width * channels)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % 256) as f32
        })
        .collect();
    Pixels {
        height,
        width,
        channels,
        values,
    }
}

/// The index an integer coordinate reads under reflect padding `d c b a | a b c d | d c b a`.
fn reflect_index(i: i64, len: usize) -> usize {
    let len = len as i64;
    let period = 2 * len;
    let i = i.rem_euclid(period);
    (if i < len { i } else { period - 1 - i }) as usize
}

/// Output pixel `(x, y)` reads the reflect-padded input at `(m0 x + m1 y + m2, m3 x + m4 y +
/// m5)`, bilinearly between the four integer neighbours.
fn reference_warp(image: &Pixels, m: [f64; 6]) -> Vec<f64> {
    let (h, w, c) = (image.height, image.width, image.channels);
    let read = |y: i64, x: i64, ch: usize| {
        f64::from(image.values[(reflect_index(y, h) * w + reflect_index(x, w)) * c + ch])
    };
    let mut out = Vec::with_capacity(h * w * c);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let sx = m[0] * xf + m[1] * yf + m[2];
            let sy = m[3] * xf + m[4] * yf + m[5];
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for ch in 0..c {
                let top = (1.0 - fx) * read(y0, x0, ch) + fx * read(y0, x0 + 1, ch);
                let bottom = (1.0 - fx) * read(y0 + 1, x0, ch) + fx * read(y0 + 1, x0 + 1, ch);
                out.push((1.0 - fy) * top + fy * bottom);
            }
        }
    }
    out
}

/// Keras's rotation matrix about `((w - 1) / 2, (h - 1) / 2)`.
fn rotation_matrix(height: usize, width: usize, degrees: f64) -> [f64; 6] {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((width as f64 - 1.0) / 2.0, (height as f64 - 1.0) / 2.0);
    [
        cos,
        -sin,
        cx - cos * cx + sin * cy,
        sin,
        cos,
        cy - sin * cx - cos * cy,
    ]
}

fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (idx, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (f64::from(*a) - e).abs() <= tolerance,
            "{what}: value {idx} is {a}, expected {e}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rotation_matches_the_reference(turns in -1.0f64..1.0, seed in 0u64..1000) {
        for (h, w, c) in [(5, 7, 3), (6, 4, 1), (1, 5, 1)] {
            let input = image(h, w, c, seed);
            let degrees = turns * 360.0;
            let expected = reference_warp(&input, rotation_matrix(h, w, degrees));
            assert_close(&rotate(&input, degrees).values, &expected, 2e-3, "rotation");
        }
    }

    #[test]
    fn zoom_matches_the_reference(zoom_x in 0.01f64..2.0, zoom_y in 0.01f64..2.0, seed in 0u64..1000) {
        let input = image(5, 7, 3, seed);
        let m = [zoom_x, 0.0, 3.0 * (1.0 - zoom_x), 0.0, zoom_y, 2.0 * (1.0 - zoom_y)];
        let expected = reference_warp(&input, m);
        assert_close(&zoom(&input, zoom_x, zoom_y).values, &expected, 2e-3, "zoom");
    }

    #[test]
    fn translation_matches_the_reference(dx in -7.0f64..7.0, dy in -5.0f64..5.0, seed in 0u64..1000) {
        let input = image(5, 7, 3, seed);
        let expected = reference_warp(&input, [1.0, 0.0, -dx, 0.0, 1.0, -dy]);
        assert_close(&translate(&input, dx, dy).values, &expected, 2e-3, "translation");
    }

    #[test]
    fn far_coordinates_reflect_periodically(m in prop::array::uniform6(-4.0f64..4.0), seed in 0u64..1000) {
        // Coordinates up to about 60 pixels out: several periods of the reflection.
        let input = image(5, 7, 2, seed);
        let m = [m[0], m[1], m[2] * 10.0, m[3], m[4], m[5] * 10.0];
        assert_close(&affine(&input, m).values, &reference_warp(&input, m), 2e-3, "affine");
    }
}

#[test]
fn integer_shifts_move_pixels_exactly_and_reflect_at_the_edges() {
    let input = image(5, 7, 3, 3);
    let shifted = translate(&input, 2.0, -1.0);
    let at = |p: &Pixels, y: usize, x: usize, c: usize| p.values[(y * 7 + x) * 3 + c];
    for y in 0..5 {
        for x in 0..7 {
            // Output (x, y) reads input (x - 2, y + 1): columns -2, -1 read 1, 0; row 5 reads 4.
            let sx = reflect_index(x as i64 - 2, 7);
            let sy = reflect_index(y as i64 + 1, 5);
            for c in 0..3 {
                assert_eq!(at(&shifted, y, x, c), at(&input, sy, sx, c), "({x}, {y})");
            }
        }
    }
    assert_eq!(at(&shifted, 0, 0, 0), at(&input, 1, 1, 0));
    assert_eq!(at(&shifted, 4, 1, 2), at(&input, 4, 0, 2));
}

#[test]
fn a_half_turn_and_a_full_turn_are_exact() {
    let input = image(5, 7, 3, 4);
    let mut flipped = input.clone();
    flip(&mut flipped, Flip::Both);
    assert_close(
        &rotate(&input, 180.0).values,
        &flipped
            .values
            .iter()
            .map(|v| f64::from(*v))
            .collect::<Vec<_>>(),
        1e-3,
        "180 degrees",
    );
    assert_close(
        &rotate(&input, 360.0).values,
        &input
            .values
            .iter()
            .map(|v| f64::from(*v))
            .collect::<Vec<_>>(),
        1e-3,
        "360 degrees",
    );
}

#[test]
fn flips_mirror_exactly() {
    let (h, w, c) = (5, 7, 3);
    let input = image(h, w, c, 5);
    for (mode, mirror_x, mirror_y) in [
        (Flip::Horizontal, true, false),
        (Flip::Vertical, false, true),
        (Flip::Both, true, true),
    ] {
        let mut out = input.clone();
        flip(&mut out, mode);
        for y in 0..h {
            for x in 0..w {
                let sx = if mirror_x { w - 1 - x } else { x };
                let sy = if mirror_y { h - 1 - y } else { y };
                for ch in 0..c {
                    assert_eq!(
                        out.values[(y * w + x) * c + ch],
                        input.values[(sy * w + sx) * c + ch],
                        "{mode:?} ({x}, {y}, {ch})"
                    );
                }
            }
        }
    }
}

#[test]
fn contrast_scales_around_each_channel_mean_and_clips() {
    let (h, w, c) = (5, 7, 3);
    let input = image(h, w, c, 6);
    for factor in [0.0, 0.4, 1.0, 1.7, 2.0] {
        let mut out = input.clone();
        adjust_contrast(&mut out, factor);
        let means: Vec<f64> = (0..c)
            .map(|ch| {
                input
                    .values
                    .iter()
                    .skip(ch)
                    .step_by(c)
                    .map(|v| f64::from(*v))
                    .sum::<f64>()
                    / (h * w) as f64
            })
            .collect();
        let expected: Vec<f64> = input
            .values
            .iter()
            .enumerate()
            .map(|(idx, v)| {
                let mean = means[idx % c];
                ((f64::from(*v) - mean) * factor + mean).clamp(0.0, 255.0)
            })
            .collect();
        assert_close(&out.values, &expected, 1e-3, &format!("contrast {factor}"));
        if factor == 2.0 {
            assert!(out.values.contains(&0.0) && out.values.contains(&255.0));
        }
    }
}

#[test]
fn brightness_adds_the_delta_and_clips() {
    let input = image(5, 7, 3, 7);
    for delta in [-255.0, -40.5, 0.0, 99.25, 255.0] {
        let mut out = input.clone();
        adjust_brightness(&mut out, delta);
        for (o, i) in out.values.iter().zip(&input.values) {
            assert_eq!(*o, (i + delta as f32).clamp(0.0, 255.0), "delta {delta}");
        }
    }
}

/// Cases of `tests/data/reference_augment.json` (Keras 3).
fn keras_cases() -> Vec<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_augment.json"
    );
    let text = std::fs::read_to_string(path).expect("reference_augment.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["cases"].as_array().expect("cases").clone()
}

fn floats(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

#[test]
fn every_transform_matches_keras() {
    let cases = keras_cases();
    assert_eq!(cases.len(), 36);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|v| v.as_u64().expect("dim") as usize)
            .collect();
        let input = Pixels {
            height: shape[0],
            width: shape[1],
            channels: shape[2],
            values: floats(&case["input"]),
        };
        let number = |key: &str| case[key].as_f64().unwrap_or(0.0);
        let flip_mode = case["flip"].as_str().map(|mode| match mode {
            "horizontal" => Flip::Horizontal,
            "vertical" => Flip::Vertical,
            _ => Flip::Both,
        });
        let out = if name.starts_with("sequence") {
            let config = AugmentConfig {
                flip: flip_mode,
                rotation: 0.5,
                zoom: 0.5,
                translation: 0.5,
                contrast: 0.5,
                brightness: 0.5,
            };
            let draw = Draw {
                flip: true,
                angle_degrees: number("angle_degrees"),
                zoom: number("zoom"),
                shift_y: number("shift_y"),
                shift_x: number("shift_x"),
                contrast: number("contrast"),
                brightness: number("brightness"),
            };
            apply_draw(&config, &draw, input)
        } else if let Some(mode) = flip_mode {
            let mut out = input;
            flip(&mut out, mode);
            out
        } else if name.starts_with("rotation") {
            rotate(&input, number("angle_degrees"))
        } else if name.starts_with("zoom") {
            zoom(&input, number("zoom"), number("zoom"))
        } else if name.starts_with("translation") {
            translate(&input, number("shift_x"), number("shift_y"))
        } else if name.starts_with("contrast") {
            let mut out = input;
            adjust_contrast(&mut out, number("contrast"));
            out
        } else {
            let mut out = input;
            adjust_brightness(&mut out, number("brightness"));
            out
        };
        let expected: Vec<f64> = floats(&case["output"]).into_iter().map(f64::from).collect();
        assert_close(&out.values, &expected, 2e-3, name);
    }
}

const ALL: AugmentConfig = AugmentConfig {
    flip: Some(Flip::Horizontal),
    rotation: 0.2,
    zoom: 0.3,
    translation: 0.2,
    contrast: 0.4,
    brightness: 0.3,
};

#[test]
fn factors_of_zero_leave_the_image_unchanged() {
    let input = image(5, 7, 3, 8);
    let augmentation = Augmentation {
        config: AugmentConfig::default(),
        seed: 1,
        epoch: 2,
    };
    for index in 0..20 {
        assert_eq!(augmentation.apply(index, input.clone()), input);
    }
    assert_eq!(rotate(&input, 0.0), input);
    assert_eq!(zoom(&input, 1.0, 1.0), input);
    assert_eq!(translate(&input, 0.0, 0.0), input);
}

#[test]
fn a_draw_depends_on_seed_epoch_and_index_only() {
    let input = image(5, 7, 3, 9);
    let at = |seed, epoch| Augmentation {
        config: ALL,
        seed,
        epoch,
    };
    for index in 0..10 {
        let once = at(3, 4).apply(index, input.clone());
        assert_eq!(once, at(3, 4).apply(index, input.clone()));
        assert_ne!(once, at(3, 5).apply(index, input.clone()), "another epoch");
        assert_ne!(once, at(4, 4).apply(index, input.clone()), "another seed");
        assert_ne!(
            once,
            at(3, 4).apply(index + 1, input.clone()),
            "another image"
        );
    }
}

#[test]
fn draws_cover_each_range_and_stay_inside_it() {
    let augmentation = Augmentation {
        config: ALL,
        seed: 0,
        epoch: 0,
    };
    let draws: Vec<Draw> = (0..2000).map(|i| augmentation.draw(i, 10, 20)).collect();
    let check = |what: &str, values: Vec<f64>, low: f64, high: f64| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(min >= low && max <= high, "{what}: {min}..{max}");
        let span = high - low;
        assert!(
            min < low + 0.02 * span && max > high - 0.02 * span,
            "{what}: {min}..{max}"
        );
    };
    check(
        "angle",
        draws.iter().map(|d| d.angle_degrees).collect(),
        -72.0,
        72.0,
    );
    check("zoom", draws.iter().map(|d| d.zoom).collect(), 0.7, 1.3);
    check(
        "shift_y",
        draws.iter().map(|d| d.shift_y).collect(),
        -2.0,
        2.0,
    );
    check(
        "shift_x",
        draws.iter().map(|d| d.shift_x).collect(),
        -4.0,
        4.0,
    );
    check(
        "contrast",
        draws.iter().map(|d| d.contrast).collect(),
        0.6,
        1.4,
    );
    check(
        "brightness",
        draws.iter().map(|d| d.brightness).collect(),
        -76.5,
        76.5,
    );
    let flips = draws.iter().filter(|d| d.flip).count();
    assert!((900..1100).contains(&flips), "{flips} flips in 2000");
    let no_flip = Augmentation {
        config: AugmentConfig { flip: None, ..ALL },
        ..augmentation
    };
    assert!((0..100).all(|i| !no_flip.draw(i, 10, 20).flip));
    // Turning one transform off leaves the others' draws as they were.
    let d = augmentation.draw(5, 10, 20);
    let e = no_flip.draw(5, 10, 20);
    assert_eq!(
        (d.angle_degrees, d.zoom, d.brightness),
        (e.angle_degrees, e.zoom, e.brightness)
    );
}

/// Eight 9x11 colour images in two classes, and a loader over them (rescale 1/255).
fn loader(dir: &std::path::Path, cache_bytes: usize) -> Loader {
    let mut samples = Vec::new();
    for idx in 0..8u32 {
        let img = RgbImage::from_fn(11, 9, |x, y| {
            Rgb([
                (x * 23 + idx * 7) as u8,
                (y * 29 + idx * 3) as u8,
                ((x * y + idx) * 5) as u8,
            ])
        });
        let path = dir.join(format!("{idx}.png"));
        img.save(&path).expect("save");
        samples.push((path, (idx % 2) as usize));
    }
    let spec = ImageSpec {
        height: 9,
        width: 11,
        channels: 3,
        rescale: 1.0 / 255.0,
    };
    Loader::new(samples, spec, cache_bytes)
}

#[test]
fn the_loader_augments_each_image_the_same_whatever_the_order_batch_or_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = loader(dir.path(), 1 << 20);
    let uncached = loader(dir.path(), 0);
    let augmentation = Augmentation {
        config: ALL,
        seed: 11,
        epoch: 3,
    };
    let per_image = 9 * 11 * 3;
    let by_index = |loader: &Loader, order: Vec<usize>, batch_size: usize| {
        let mut images = vec![Vec::new(); 8];
        let batches = loader.augmented_batches(order.clone(), batch_size, Some(augmentation));
        let values: Vec<f32> = batches.iter().flat_map(|batch| batch.images).collect();
        for (position, index) in order.iter().enumerate() {
            images[*index] = values[position * per_image..(position + 1) * per_image].to_vec();
        }
        images
    };
    let first = by_index(&cached, (0..8).collect(), 8);
    assert_eq!(
        first,
        by_index(&cached, cached.order(5, 1, true), 3),
        "cached, shuffled"
    );
    assert_eq!(
        first,
        by_index(&uncached, uncached.order(9, 2, true), 1),
        "uncached"
    );
    // Each image is what `augment` makes of its un-augmented bytes, rescaled.
    let plain = cached.batch_now(&(0..8).collect::<Vec<_>>());
    for (index, augmented) in first.iter().enumerate() {
        let bytes: Vec<f32> = plain.images[index * per_image..(index + 1) * per_image]
            .iter()
            .map(|v| (v * 255.0).round())
            .collect();
        let pixels = Pixels {
            height: 9,
            width: 11,
            channels: 3,
            values: bytes,
        };
        let expected: Vec<f32> = augmentation
            .apply(index, pixels)
            .values
            .iter()
            .map(|v| v * (1.0 / 255.0))
            .collect();
        assert_eq!(augmented, &expected, "image {index}");
        assert_ne!(
            augmented,
            &plain.images[index * per_image..(index + 1) * per_image]
        );
    }
    // The cache still holds the un-augmented images: a plain epoch is unchanged.
    assert_eq!(cached.batch_now(&(0..8).collect::<Vec<_>>()), plain);
    let other_epoch = Augmentation {
        epoch: 4,
        ..augmentation
    };
    let next: Vec<f32> = cached
        .augmented_batches((0..8).collect(), 8, Some(other_epoch))
        .iter()
        .flat_map(|batch| batch.images)
        .collect();
    assert_ne!(next, first.concat(), "another epoch draws again");
}

/// `strata preview` on a spec (with `augment_section` appended) over two classes of images.
fn preview(augment_section: &str, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    for class in ["a", "b"] {
        let class_dir = dir.path().join("images").join(class);
        std::fs::create_dir_all(&class_dir).expect("mkdir");
        for idx in 0..3u32 {
            let img = RgbImage::from_fn(12, 10, |x, y| {
                Rgb([(x * 20) as u8, (y * 25) as u8, (idx * 60) as u8])
            });
            img.save(class_dir.join(format!("{idx}.png")))
                .expect("save");
        }
    }
    let spec = format!(
        "input: 10x12x3\nclasses: 2\nmodel: conv3(4) relu -> gap -> dense2 softmax\ndata:\n  train: images\n{augment_section}"
    );
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("spec");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["preview", "spec.yaml", "--out", "grid.png"])
        .args(extra)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    (output, dir)
}

#[test]
fn preview_augmented_draws_rows_of_epochs() {
    let (output, dir) = preview(
        "augment:\n  flip: horizontal\n  rotation: 0.2\n",
        &["--augmented", "--rows", "3", "--columns", "4"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("12 images"), "{stdout}");
    // Three rows of four 160-pixel cells, each with a 28-pixel caption.
    let grid = image::open(dir.path().join("grid.png")).expect("png");
    assert_eq!((grid.width(), grid.height()), (4 * 160, 3 * 188));
}

#[test]
fn preview_augmented_refuses_a_spec_without_augment_and_a_folder() {
    let (output, dir) = preview("", &["--augmented"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no `augment:` section"), "{stderr}");
    assert!(!dir.path().join("grid.png").exists());
    let (output, _) = preview("augment:\n  zoom: 0.0\n", &["--augmented"]);
    assert_eq!(output.status.code(), Some(2));
    let (output, _) = preview(
        "augment:\n  zoom: 0.1\n",
        &["--augmented", "--data", "images/a"],
    );
    // `--data` pointing at a folder without class folders is the folder scan's error, not ours.
    assert_ne!(output.status.code(), Some(0));
    let folder = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["preview", "images", "--augmented"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(folder.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&folder.stderr).contains("needs a spec"));
}
