//! Image folders that fight back: symlink loops, FIFOs and devices named like images, a huge
//! image in a small file, a class whose every file is broken, class names that are not UTF-8.
//! Each case runs the real binary under a time bound (generous for a loaded machine) and checks
//! the exit status and the diagnostic code.
#![cfg(unix)]

use image::{GrayImage, Luma};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata::data::check::scan_images;
use strata::data::image::{read_file, ReadLimits};
use strata::data::{errors, folder, load_image, ImageProblem, ImageSpec};
use strata::diagnostics::codes;

/// Longer than any case takes on a loaded 2-core machine; a hang runs into it.
const TIME_BOUND: Duration = Duration::from_secs(20);

/// Writes `n` small grayscale PNGs into `dir`.
fn images(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for idx in 0..n {
        let image = GrayImage::from_fn(8, 8, |x, y| Luma([((x + y) * 16 + idx as u32) as u8]));
        image.save(dir.join(format!("{idx}.png"))).expect("save");
    }
}

/// The status, stdout and stderr of `strata ARGS…` in `dir`; panics if it runs past
/// [`TIME_BOUND`] (after killing it).
fn strata_bounded(dir: &Path, args: &[&str]) -> (i32, String) {
    let out_path = dir.join(".out.txt");
    let out = std::fs::File::create(&out_path).expect("out file");
    let err = out.try_clone().expect("clone");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > TIME_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`strata {}` still running after {TIME_BOUND:?}:\n{}",
                args.join(" "),
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).expect("read output");
    (status.code().unwrap_or(-1), text)
}

const SPEC: &str = "input: 8x8x1\nclasses: 2\nmodel: flatten -> dense2 softmax\ntrain:\n  epochs: 1\n  batch_size: 4\n";

/// A spec beside `data/` with classes `a` and `b` of 6 images each.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 6);
    images(&dir.path().join("data/b"), 6);
    std::fs::write(dir.path().join("spec.yaml"), SPEC).expect("spec");
    dir
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_symlink_loop_ends_and_counts_each_image_once() {
    let dir = project();
    let class = dir.path().join("data/a");
    std::os::unix::fs::symlink(".", class.join("loop")).expect("symlink");
    std::os::unix::fs::symlink("../a", class.join("again")).expect("symlink");
    std::os::unix::fs::symlink("loop_b", class.join("loop_a")).expect("symlink");
    std::os::unix::fs::symlink("loop_a", class.join("loop_b")).expect("symlink");
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    // The two links that point at each other are dangling files, reported, not followed.
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("12 images"), "{text}");
    let found = folder::scan(&dir.path().join("data")).expect("scan");
    assert_eq!(found.files[0].len(), 8, "{:?}", found.files[0]);
    let (code, text) = strata_bounded(
        dir.path(),
        &["train", "spec.yaml", "--data", "data", "--out", "run", "-q"],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = strata_bounded(dir.path(), &["predict", "run", "data/a"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.lines().filter(|line| line.contains(".png")).count(),
        6,
        "{text}"
    );
}

#[test]
fn fifos_and_devices_named_like_images_are_skipped_without_reading() {
    let dir = project();
    let class = dir.path().join("data/b");
    mkfifo(&class.join("fifo.png"));
    std::os::unix::fs::symlink("/dev/zero", class.join("zero.png")).expect("symlink");
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(codes::DATA_UNREADABLE_IMAGE), "{text}");
    assert!(
        text.contains("a FIFO") && text.contains("a device"),
        "{text}"
    );
    let (code, text) = strata_bounded(
        dir.path(),
        &["train", "spec.yaml", "--data", "data", "--out", "run", "-q"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(codes::DATA_UNREADABLE_IMAGE), "{text}");
    let limits = ReadLimits::default();
    assert_eq!(
        read_file(&class.join("zero.png"), &limits),
        Err(ImageProblem::NotAFile("a device"))
    );
}

/// The CRC-32 of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG header claiming `width x height` RGB pixels, with a token of data: what a decoder
/// would allocate for comes from the header alone.
fn huge_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &header);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn an_image_over_the_pixel_cap_is_refused_from_its_header() {
    let dir = project();
    let path = dir.path().join("data/a/huge.png");
    std::fs::write(&path, huge_png(13_000, 13_000)).expect("write");
    let spec = ImageSpec {
        height: 8,
        width: 8,
        channels: 1,
        rescale: 1.0,
    };
    assert!(matches!(
        load_image(&path, &spec),
        Err(ImageProblem::TooManyPixels {
            width: 13_000,
            height: 13_000,
            ..
        })
    ));
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("too many pixels: 13000x13000"), "{text}");
    // The cap grows with the model's input: 256x its pixels when that is over 64 Mpx.
    let large = ImageSpec {
        height: 1000,
        width: 1000,
        channels: 3,
        rescale: 1.0,
    };
    assert_eq!(ReadLimits::for_spec(&spec).max_pixels, 64_000_000);
    assert_eq!(ReadLimits::for_spec(&large).max_pixels, 256_000_000);
}

#[test]
fn a_file_over_the_size_cap_is_not_read_to_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.png");
    std::fs::write(&path, vec![0_u8; 4096]).expect("write");
    let limits = ReadLimits::with_max_pixels(100);
    assert_eq!(limits.max_file_bytes, 800);
    assert_eq!(
        read_file(&path, &limits),
        Err(ImageProblem::TooLarge {
            bytes: 4096,
            max: 800
        })
    );
}

#[test]
fn a_class_without_a_readable_image_is_an_error() {
    let dir = project();
    let class = dir.path().join("data/b");
    std::fs::remove_dir_all(&class).expect("rm");
    std::fs::create_dir_all(&class).expect("mkdir");
    for idx in 0..7 {
        std::fs::write(class.join(format!("{idx}.png")), b"not a png").expect("write");
    }
    let (code, text) = strata_bounded(
        dir.path(),
        &["train", "spec.yaml", "--data", "data", "--out", "run"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(codes::DATA_EMPTY_CLASS), "{text}");
    assert!(
        text.contains("`b`") && text.contains("no readable image"),
        "{text}"
    );
    assert!(
        !dir.path().join("run").exists(),
        "no run folder for refused data"
    );
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(codes::DATA_EMPTY_CLASS), "{text}");
}

#[test]
fn a_folder_without_a_readable_image_reports_no_empty_lines() {
    let dir = project();
    for class in ["a", "b"] {
        let class = dir.path().join("data").join(class);
        std::fs::remove_dir_all(&class).ok();
        std::fs::create_dir_all(&class).expect("mkdir");
        std::fs::write(class.join("0.png"), b"not a png").expect("write");
    }
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("0 images"), "{text}");
    assert!(
        !text.contains("modes:") && !text.contains("sizes:"),
        "no modes or sizes to show: {text}"
    );
}

#[test]
fn class_names_that_are_not_utf8_are_refused() {
    let dir = project();
    let data = dir.path().join("data");
    for name in [&b"cat\xff"[..], &b"cat\xfe"[..]] {
        let class = data.join(std::ffi::OsStr::from_bytes(name));
        if std::fs::create_dir_all(&class).is_err() {
            // A file system that refuses such names cannot hold the problem.
            return;
        }
        images(&class, 2);
    }
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(codes::DATA_CLASS_NAME), "{text}");
    assert!(text.contains("cat\u{FFFD}"), "{text}");
    let (code, text) = strata_bounded(
        dir.path(),
        &["train", "spec.yaml", "--data", "data", "--out", "run"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(codes::DATA_CLASS_NAME), "{text}");
}

#[test]
fn training_names_the_first_skipped_files_and_counts_each_class() {
    let dir = project();
    let mut broken: Vec<PathBuf> = Vec::new();
    for idx in 0..8 {
        let path = dir.path().join(format!("data/a/broken{idx}.png"));
        std::fs::write(&path, b"").expect("write");
        broken.push(path);
    }
    std::fs::write(dir.path().join("data/b/broken.png"), b"").expect("write");
    let found = folder::scan(&dir.path().join("data")).expect("scan");
    let report = scan_images(&found, &ReadLimits::default());
    let warning = errors::skipped_summary(&[&report]);
    assert_eq!(warning.code, codes::DATA_UNREADABLE_IMAGE);
    assert!(
        warning.message.starts_with("9 file(s)"),
        "{}",
        warning.message
    );
    assert!(
        warning.notes[0].contains("`a` 8, `b` 1"),
        "{:?}",
        warning.notes
    );
    let named = warning
        .notes
        .iter()
        .filter(|note| note.contains("is empty"))
        .count();
    assert_eq!(named, errors::SKIPPED_SHOWN, "{:?}", warning.notes);
    assert!(
        warning.notes.iter().any(|note| note.contains("and 4 more")),
        "{:?}",
        warning.notes
    );
    // `data check` names every one.
    let (code, text) = strata_bounded(dir.path(), &["data", "check", "data"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        broken.iter().all(|path| text.contains(
            &path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string()
        )),
        "{text}"
    );
}
