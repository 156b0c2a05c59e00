//! Hostile input to the commands that read checkpoints and write reports: preview grids sized
//! by absurd flags, checkpoints with NaN weights or cut short (or that are devices and FIFOs),
//! class and file names carrying terminal escape sequences, float TIFFs, zero counts for
//! `bench`, and spec files that never end. Each case asserts the exit status, the diagnostic
//! code where there is one, that nothing panics, and that the answer comes within a time bound
//! (a hang guard generous enough for a loaded two-core machine, not a speed target).
#![cfg(unix)]

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::peak_allocation;
use image::{GrayImage, Luma};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata::backend::checkpoint::{self, expected_tensors, Checkpoint, NamedTensor};
use strata::data::{load_image, ImageProblem, ImageSpec};
use strata::diagnostics::codes;
use strata::infer::{LoadError, Trained};
use strata::spec::{read_spec_file, SpecReadError, MAX_SPEC_BYTES};

/// Longer than any case takes on a loaded 2-core machine; a hang runs into it.
const TIME_BOUND: Duration = Duration::from_secs(20);

/// The bound on one in-process read of a hostile spec file.
const READ_BOUND: Duration = Duration::from_secs(2);

/// A model small enough to build in a millisecond.
const SPEC: &str = "name: tiny
input: 8x8x1
classes: 3
model: conv3(2) relu -> pool2 -> dense3 softmax
train: { batch_size: 4 }
";

/// What a finished `strata` run left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts that the run did not panic, and returns it.
    fn no_panic(self) -> Run {
        assert_ne!(self.code, 101, "panicked:\n{}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
}

/// Runs `strata ARGS…` in `dir` without colour; panics if it runs past [`TIME_BOUND`] (after
/// killing it).
fn strata<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Run {
    let (out_path, err_path) = (dir.join(".stdout"), dir.join(".stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn strata");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > TIME_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            let shown: Vec<String> = args
                .iter()
                .map(|arg| arg.as_ref().to_string_lossy().into_owned())
                .collect();
            panic!(
                "`strata {}` still running after {TIME_BOUND:?}",
                shown.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).expect("read")).into();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
    .no_panic()
}

/// Writes `n` small grayscale PNGs into `dir`.
fn images(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for idx in 0..n {
        let image = GrayImage::from_fn(8, 8, |x, y| {
            Luma([((x * 7 + y * 3) * 4 + idx as u32) as u8])
        });
        image.save(dir.join(format!("{idx}.png"))).expect("save");
    }
}

/// A checkpoint of [`SPEC`] with small finite weights and `classes`.
fn checkpoint(classes: &[&str]) -> Checkpoint {
    let model = strata::compile(SPEC, "tiny").model.expect("spec compiles");
    let tensors = expected_tensors(&model)
        .into_iter()
        .map(|(name, shape)| {
            let len = shape.iter().product::<usize>();
            let data = (0..len)
                .map(|idx| 0.01 * ((idx % 7) as f32 + 1.0))
                .collect();
            NamedTensor { name, shape, data }
        })
        .collect();
    Checkpoint {
        tensors,
        spec: SPEC.to_string(),
        classes: classes.iter().map(|class| class.to_string()).collect(),
        extra: Default::default(),
    }
}

/// Control characters other than line breaks: what must never reach a terminal raw.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c != '\n' && strata::text::is_terminal_control(c))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. preview grids

#[test]
fn preview_flags_over_the_limits_are_usage_errors_that_say_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 2);
    images(&dir.path().join("data/b"), 1);
    for (flags, needle) in [
        (&["--columns", "100000"][..], "1..=100"),
        (&["--rows", "100000"][..], "1..=100"),
        (&["--columns", "0"][..], "1..=100"),
        (&["--rows", "40", "--columns", "40"][..], "at most 1000"),
        (&["--rows", "18446744073709551616"][..], "--rows"),
    ] {
        let mut args = vec!["preview", "data", "--out", "grid.png"];
        args.extend(flags);
        let run = strata(dir.path(), &args);
        assert_eq!(run.code, 2, "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{flags:?}: {}", run.stderr);
        assert!(!dir.path().join("grid.png").exists(), "{flags:?}");
    }
}

#[test]
fn preview_canvas_is_as_wide_as_the_images_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 2);
    images(&dir.path().join("data/b"), 1);
    let run = strata(
        dir.path(),
        &[
            "preview",
            "data",
            "--rows",
            "10",
            "--columns",
            "100",
            "--out",
            "wide.png",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("3 images"), "{}", run.stdout);
    let run = strata(
        dir.path(),
        &[
            "preview",
            "data",
            "--rows",
            "1",
            "--columns",
            "3",
            "--out",
            "exact.png",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let wide = image::image_dimensions(dir.path().join("wide.png")).expect("wide.png");
    let exact = image::image_dimensions(dir.path().join("exact.png")).expect("exact.png");
    assert_eq!(
        wide, exact,
        "3 images take 3 columns and 1 row, whatever the flags"
    );
}

#[test]
fn preview_out_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 2);
    let run = strata(
        dir.path(),
        &["preview", "data", "--out", "no/such/folder/grid.png"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`no/such/folder/grid.png`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    let run = strata(dir.path(), &["preview", "data", "--out", "data"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`data`") && run.stderr.contains("folder"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 2. non-finite weights

#[test]
fn predict_and_evaluate_refuse_non_finite_weights_naming_the_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    for class in ["a", "b", "c"] {
        images(&dir.path().join("data").join(class), 2);
    }
    let mut poisoned = checkpoint(&["a", "b", "c"]);
    let first = poisoned.tensors[0].name.clone();
    let last = poisoned.tensors.last().expect("tensors").name.clone();
    poisoned.tensors[0].data[1] = f32::NAN;
    poisoned.tensors[0].data[2] = f32::NAN;
    if let Some(tensor) = poisoned.tensors.last_mut() {
        tensor.data[0] = f32::INFINITY;
    }
    let path = dir.path().join("nan.safetensors");
    checkpoint::save(&path, &poisoned).expect("save");

    match Trained::from_checkpoint(path.clone(), &poisoned) {
        Err(LoadError::NonFinite(_, tensors)) => {
            let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, [first.as_str(), last.as_str()]);
            assert_eq!((tensors[0].count, tensors[0].first_index), (2, 1));
            assert!(tensors[0].first_value.is_nan());
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }

    let run = strata(dir.path(), &["predict", "nan.safetensors", "data/a/0.png"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(codes::MODEL_NON_FINITE_WEIGHTS),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&format!("`{first}`")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("`{last}`")), "{}", run.stderr);
    assert!(!run.stdout.contains("NaN"), "{}", run.stdout);

    let run = strata(
        dir.path(),
        &[
            "predict",
            "--format",
            "json",
            "nan.safetensors",
            "data/a/0.png",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line: serde_json::Value =
        serde_json::from_str(run.stdout.lines().next().unwrap_or_default()).expect("json line");
    assert_eq!(line["code"], codes::MODEL_NON_FINITE_WEIGHTS, "{line}");

    let run = strata(
        dir.path(),
        &["evaluate", "nan.safetensors", "--data", "data"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(codes::MODEL_NON_FINITE_WEIGHTS),
        "{}",
        run.stderr
    );

    // The optimiser's moments are training state, not weights: a NaN there is not checked.
    let mut with_state = checkpoint(&["a", "b", "c"]);
    with_state.tensors.push(NamedTensor {
        name: "optimizer.m.layers.0.weight".to_string(),
        shape: vec![1],
        data: vec![f32::NAN],
    });
    checkpoint::save(&dir.path().join("state.safetensors"), &with_state).expect("save");
    let run = strata(
        dir.path(),
        &["predict", "state.safetensors", "data/a/0.png"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// 3. control characters in class names, paths and model names

/// Class names that would clear the screen, forge a line, set the window title or reverse
/// the text after them.
const EVIL: [&str; 3] = ["a\u{1b}[2J", "b\r\nforged: 100.0%", "c\u{202e}gnp"];

#[test]
fn class_names_from_a_checkpoint_are_escaped_in_human_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("img"), 2);
    checkpoint::save(&dir.path().join("evil.safetensors"), &checkpoint(&EVIL)).expect("save");
    let run = strata(
        dir.path(),
        &["predict", "--top", "3", "evil.safetensors", "img"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(raw_controls(&run.stdout).is_empty(), "{:?}", run.stdout);
    assert_eq!(
        run.stdout.lines().count(),
        2,
        "one line per image: {}",
        run.stdout
    );
    for escaped in ["a\\u{1b}[2J", "b\\r\\nforged: 100.0%", "c\\u{202e}gnp"] {
        assert!(run.stdout.contains(escaped), "{escaped}: {}", run.stdout);
    }
    // JSON keeps the names as they are; serde escapes their control characters (a
    // bidirectional override is text to JSON, and stays).
    let run = strata(
        dir.path(),
        &[
            "predict",
            "--format",
            "json",
            "evil.safetensors",
            "img/0.png",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stdout.trim_end().chars().any(char::is_control),
        "{:?}",
        run.stdout
    );
    let line: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
    for class in EVIL {
        assert!(
            line["probabilities"].get(class).is_some(),
            "{class:?}: {line}"
        );
    }
}

#[test]
fn class_folder_names_are_escaped_in_evaluate_data_check_and_diagnostics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sorted = EVIL;
    sorted.sort();
    for class in sorted {
        images(&dir.path().join("data").join(class), 2);
    }
    checkpoint::save(&dir.path().join("evil.safetensors"), &checkpoint(&sorted)).expect("save");

    let run = strata(
        dir.path(),
        &["evaluate", "evil.safetensors", "--data", "data"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(raw_controls(&run.stdout).is_empty(), "{:?}", run.stdout);
    assert!(run.stdout.contains("a\\u{1b}[2J"), "{}", run.stdout);
    assert!(
        !run.stdout.lines().any(|line| line.starts_with("forged")),
        "{}",
        run.stdout
    );

    let run = strata(dir.path(), &["data", "check", "data"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(raw_controls(&run.stdout).is_empty(), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("b\\r\\nforged: 100.0%"),
        "{}",
        run.stdout
    );

    // A folder the model has no class for: the diagnostic's notes name it, escaped.
    images(&dir.path().join("data/z\u{1b}]0;pwned\u{7}"), 1);
    let run = strata(
        dir.path(),
        &["evaluate", "evil.safetensors", "--data", "data"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(codes::DATA_CLASS_MISMATCH),
        "{}",
        run.stderr
    );
    assert!(raw_controls(&run.stderr).is_empty(), "{:?}", run.stderr);
    assert!(
        run.stderr.contains("z\\u{1b}]0;pwned\\u{7}"),
        "{}",
        run.stderr
    );

    let run = strata(dir.path(), &["preview", "data", "--out", "grid.png"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(raw_controls(&run.stdout).is_empty(), "{:?}", run.stdout);
}

#[test]
fn model_and_file_names_are_escaped_in_summary_and_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SPEC.replace("name: tiny", "name: \"tiny\\e]0;pwned\\a\\r\"");
    let file = "spec\u{1b}[31m.yaml";
    std::fs::write(dir.path().join(file), spec).expect("write spec");
    let run = strata(dir.path(), &["summary", file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(raw_controls(&run.stdout).is_empty(), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("tiny\\u{1b}]0;pwned\\u{7}\\r"),
        "{}",
        run.stdout
    );
    let run = strata(dir.path(), &["check", file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(raw_controls(&run.stdout).is_empty(), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("spec\\u{1b}[31m.yaml"),
        "{}",
        run.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// 4 and 5. checkpoints that are cut short, or not files

#[test]
fn a_truncated_checkpoint_is_named_and_called_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("img"), 1);
    let bytes = checkpoint::to_bytes(&checkpoint(&["a", "b", "c"])).expect("bytes");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    std::fs::create_dir_all(dir.path().join("run")).expect("mkdir");
    // Cut inside the tensor data, inside the header, and inside the header's length.
    for (cut, needle) in [
        (8 + header_len + 10, "follow its header"),
        (8 + header_len / 2, "follow its length"),
        (5, "fewer than the 8"),
    ] {
        std::fs::write(dir.path().join("run/last.safetensors"), &bytes[..cut]).expect("write");
        let run = strata(dir.path(), &["predict", "run", "img/0.png"]);
        assert_eq!(run.code, 2, "{cut}: {}", run.stderr);
        assert!(
            run.stderr.contains("`run/last.safetensors`"),
            "{cut}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("truncated or corrupt"),
            "{cut}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(needle), "{cut}: {}", run.stderr);
        assert!(!run.stderr.contains("epoch"), "{cut}: {}", run.stderr);
    }
    // A run folder whose best checkpoint is cut short points at its last one.
    std::fs::write(dir.path().join("run/last.safetensors"), &bytes).expect("write");
    std::fs::write(
        dir.path().join("run/best.safetensors"),
        &bytes[..bytes.len() - 4],
    )
    .expect("write");
    let run = strata(dir.path(), &["evaluate", "run", "--data", "img"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`run/best.safetensors` is truncated"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`run/last.safetensors` may still be readable"),
        "{}",
        run.stderr
    );
}

#[test]
fn checkpoint_paths_that_are_devices_fifos_or_missing_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("img"), 1);
    let fifo = dir.path().join("pipe.safetensors");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for (run_path, needle) in [
        (
            "/dev/zero",
            "`/dev/zero` is not a checkpoint file but a device",
        ),
        (
            "pipe.safetensors",
            "`pipe.safetensors` is not a checkpoint file but a FIFO",
        ),
        (
            "missing.safetensors",
            "`missing.safetensors` does not exist",
        ),
    ] {
        let run = strata(dir.path(), &["predict", run_path, "img/0.png"]);
        assert_eq!(run.code, 2, "{run_path}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{run_path}: {}", run.stderr);
    }
    let err = checkpoint::load(Path::new("/dev/zero")).expect_err("a device");
    assert!(err.to_string().contains("a device"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 6. float TIFFs

/// A `width`x`height` grayscale TIFF of 32-bit float samples, uncompressed, one strip.
fn float_tiff(width: u16, height: u16) -> Vec<u8> {
    let entries: [(u16, u16, u32); 10] = [
        (256, 3, u32::from(width)),                         // ImageWidth
        (257, 3, u32::from(height)),                        // ImageLength
        (258, 3, 32),                                       // BitsPerSample
        (259, 3, 1),                                        // Compression: none
        (262, 3, 1),                 // PhotometricInterpretation: black is zero
        (273, 4, 0),                 // StripOffsets (set below)
        (277, 3, 1),                 // SamplesPerPixel
        (278, 3, u32::from(height)), // RowsPerStrip
        (279, 4, u32::from(width) * u32::from(height) * 4), // StripByteCounts
        (339, 3, 3),                 // SampleFormat: IEEE float
    ];
    let data_offset = 8 + 2 + entries.len() as u32 * 12 + 4;
    let mut bytes = b"II".to_vec();
    bytes.extend(42u16.to_le_bytes());
    bytes.extend(8u32.to_le_bytes());
    bytes.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        let value = if tag == 273 { data_offset } else { value };
        bytes.extend(tag.to_le_bytes());
        bytes.extend(kind.to_le_bytes());
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(value.to_le_bytes()); // a SHORT sits in the first two (little-endian) bytes
    }
    bytes.extend(0u32.to_le_bytes());
    for idx in 0..u32::from(width) * u32::from(height) {
        bytes.extend((idx as f32 / 10.0).to_le_bytes());
    }
    bytes
}

#[test]
fn a_float_tiff_is_reported_as_a_tiff_the_decoder_cannot_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 2);
    let tiff = dir.path().join("data/a/float.tif");
    std::fs::write(&tiff, float_tiff(4, 3)).expect("write tiff");
    let spec = ImageSpec {
        height: 8,
        width: 8,
        channels: 1,
        rescale: 1.0 / 255.0,
    };
    let problem = load_image(&tiff, &spec).expect_err("a float grayscale TIFF does not decode");
    assert!(
        matches!(&problem, ImageProblem::Unsupported { format, .. } if format == "TIFF"),
        "{problem:?}"
    );
    let message = problem.to_string();
    assert!(message.contains("is a TIFF image"), "{message}");
    assert!(message.contains("32 bits per pixel"), "{message}");
    assert!(!message.contains("not a JPEG"), "{message}");

    let run = strata(dir.path(), &["data", "check", "data"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(codes::DATA_UNREADABLE_IMAGE),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("is a TIFF image"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// 7. counts of at least one

#[test]
fn counts_of_zero_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 2);
    std::fs::write(dir.path().join("tiny.yaml"), SPEC).expect("write spec");
    checkpoint::save(
        &dir.path().join("ok.safetensors"),
        &checkpoint(&["a", "b", "c"]),
    )
    .expect("save");
    for args in [
        &["bench", "tiny.yaml", "--steps", "0"][..],
        &["bench", "tiny.yaml", "--repeats", "0"][..],
        &["bench", "tiny.yaml", "--repeats", "1001"][..],
        &["bench", "tiny.yaml", "--batch-size", "0"][..],
        &["predict", "ok.safetensors", "data", "--batch-size", "0"][..],
        &[
            "evaluate",
            "ok.safetensors",
            "--data",
            "data",
            "--batch-size",
            "0",
        ][..],
        &["data", "bench", "data", "--repeats", "0"][..],
        &["data", "bench", "data", "--repeats", "99999999999999999999"][..],
        &["data", "bench", "data", "--batch-size", "0"][..],
    ] {
        let run = strata(dir.path(), args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("invalid value"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // A batch whose input alone would not fit in memory is refused, not allocated.
    let run = strata(
        dir.path(),
        &["bench", "tiny.yaml", "--batch-size", "1000000000000"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("MiB"), "{}", run.stderr);
    // The smallest run reports what it ran.
    let run = strata(
        dir.path(),
        &[
            "bench",
            "tiny.yaml",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "1",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("median of 1 x 1 steps"),
        "{}",
        run.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// 8. bounded spec reading

/// [`read_spec_file`] under the time bound, with the most bytes it held at once.
fn read_bounded(path: &Path) -> (Result<String, SpecReadError>, usize) {
    let start = Instant::now();
    let result = peak_allocation(|| read_spec_file(path));
    assert!(
        start.elapsed() < READ_BOUND,
        "{path:?}: {:?}",
        start.elapsed()
    );
    result
}

/// The message of a `too_large` error.
fn too_large_message(result: Result<String, SpecReadError>) -> String {
    match result {
        Err(SpecReadError::TooLarge { diagnostic, source }) => {
            assert_eq!(diagnostic.code, codes::SPEC_TOO_LARGE);
            assert!(source.text.len() <= 1024, "{}", source.text.len());
            diagnostic.message
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn spec_files_are_read_no_further_than_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = MAX_SPEC_BYTES;

    // A device without end: the limit and one byte are read, no more.
    let (result, peak) = read_bounded(Path::new("/dev/zero"));
    let message = too_large_message(result);
    assert!(
        message.contains(&format!("more than {limit} bytes")),
        "{message}"
    );
    assert!(peak < 3 * limit, "{peak}");

    // A sparse 10 GiB file: refused from its size after reading its first line.
    let huge = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(10 << 30).expect("sparse file");
    let (result, peak) = read_bounded(&huge);
    let message = too_large_message(result);
    assert!(
        message.contains(&format!("{} bytes", 10u64 << 30)),
        "{message}"
    );
    assert!(peak < 64 << 10, "{peak}");

    // Exactly the limit is read; one byte more is not.
    let at_limit = dir.path().join("at_limit.yaml");
    std::fs::write(&at_limit, format!("#{}", "x".repeat(limit - 1))).expect("write");
    assert_eq!(
        read_bounded(&at_limit).0.expect("at the limit").len(),
        limit
    );
    std::fs::write(&at_limit, format!("#{}", "x".repeat(limit))).expect("write");
    let message = too_large_message(read_bounded(&at_limit).0);
    assert!(
        message.contains(&format!("has {} bytes", limit + 1)),
        "{message}"
    );

    // A FIFO whose writer never stops.
    let fifo = dir.path().join("endless.yaml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let writer_path = fifo.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let Ok(mut writer) = std::fs::OpenOptions::new().write(true).open(writer_path) else {
            return;
        };
        let block = vec![b'#'; 1 << 16];
        while writer.write_all(&block).is_ok() {}
    });
    let message = too_large_message(read_bounded(&fifo).0);
    assert!(message.contains("more than"), "{message}");
}

#[test]
fn spec_files_that_are_not_utf8_or_not_there_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"input: 8x8x1\nmodel: caf\xe9\n").expect("write");
    let err = read_bounded(&latin1).0.expect_err("not UTF-8");
    assert!(matches!(
        err,
        SpecReadError::NotUtf8 {
            line: 2,
            column: 11,
            byte: 0xe9,
            ..
        }
    ));
    let message = err.to_string();
    assert!(
        message.contains("latin1.yaml") && message.contains("line 2, column 11"),
        "{message}"
    );

    let utf16 = dir.path().join("utf16.yaml");
    std::fs::write(&utf16, b"\xff\xfei\0n\0").expect("write");
    let message = read_bounded(&utf16).0.expect_err("UTF-16").to_string();
    assert!(message.contains("UTF-16"), "{message}");

    let missing = dir.path().join("missing.yaml");
    let message = read_bounded(&missing).0.expect_err("missing").to_string();
    assert!(message.contains("missing.yaml"), "{message}");

    for (args, code) in [
        (&["check", "latin1.yaml"][..], 2),
        (&["summary", "missing.yaml"][..], 2),
        (&["check", "."][..], 2),
        (&["bench", "missing.yaml"][..], 2),
    ] {
        let run = strata(dir.path(), args);
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("`{}`", args[1])),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn commands_answer_endless_spec_files_with_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = dir.path().join("huge.yaml");
    std::fs::File::create(&huge)
        .expect("create")
        .set_len(10 << 30)
        .expect("sparse file");
    let huge = huge.to_string_lossy().into_owned();
    for args in [
        &["check", "--format", "json", "/dev/zero"][..],
        &["summary", "--format", "json", "/dev/zero"][..],
        &["check", "--format", "json", huge.as_str()][..],
        &["bench", "--format", "json", huge.as_str()][..],
        &["preview", "--format", "json", "/dev/zero"][..],
    ] {
        let run = strata(dir.path(), args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stdout.contains(codes::SPEC_TOO_LARGE),
            "{args:?}: {}",
            run.stdout
        );
    }
    let run = strata(dir.path(), &["check", "/dev/zero"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(raw_controls(&run.stderr).is_empty(), "{:?}", run.stderr);
}

#[test]
fn the_escape_helper_is_public_and_leaves_plain_text_alone() {
    use strata::text::escape_control;
    assert_eq!(escape_control("Ankle_boot"), "Ankle_boot");
    assert_eq!(escape_control("a\u{1b}[2J\r\n"), "a\\u{1b}[2J\\r\\n");
}

// ---------------------------------------------------------------------------------------------
// 4. output that cannot be written

#[test]
fn output_that_cannot_be_written_is_an_error_naming_standard_output() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    images(&dir.path().join("data/a"), 2);
    std::fs::write(dir.path().join("tiny.yaml"), SPEC).expect("write spec");
    for args in [
        &["data", "check", "data"][..],
        &["summary", "tiny.yaml"][..],
        &["check", "tiny.yaml"][..],
        &["check", "--format", "json", "/dev/zero"][..],
    ] {
        let start = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(full)
                    .expect("/dev/full"),
            )
            .output()
            .expect("run strata");
        assert!(start.elapsed() < TIME_BOUND, "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert_ne!(output.status.code(), Some(101), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output"),
            "{args:?}: {stderr}"
        );
    }
}
