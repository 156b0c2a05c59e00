//! How far the JPEG fast path (planes resized, then converted) is from decoding each file to
//! full-size RGB and resizing that, over a folder of JPEGs:
//!
//!     cargo run --release --example jpeg_difference -- DIR [HEIGHT WIDTH CHANNELS] [--accurate]
//!
//! The fast path decodes with libjpeg's fast IDCT, as strata does everywhere (and as
//! TensorFlow does); `--accurate` measures it with the accurate IDCT, which isolates what the
//! plane resizing itself changes.
//! Prints the mean absolute difference over all values (in levels of 255), the share of
//! values that differ by more than 2, the median and largest per-image maximum, and how many
//! files the fast path declined (those decode the general way, so they do not differ).

use std::path::Path;
use strata::data::image::{decode_limited, to_bytes, ReadLimits};
use strata::data::jpeg::Idct;
use strata::data::{folder, jpeg, ImageSpec};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let idct = match args.iter().position(|arg| arg == "--accurate") {
        Some(idx) => {
            args.remove(idx);
            Idct::Accurate
        }
        None => Idct::Fast,
    };
    let Some(dir) = args.first() else {
        eprintln!("usage: jpeg_difference DIR [HEIGHT WIDTH CHANNELS] [--accurate]");
        std::process::exit(2);
    };
    let number = |idx: usize, default: usize| {
        args.get(idx)
            .map_or(Some(default), |text| text.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("not a number: {}", args[idx]);
                std::process::exit(2)
            })
    };
    let spec = ImageSpec {
        height: number(1, 224),
        width: number(2, 224),
        channels: number(3, 3),
        rescale: 1.0,
    };
    let limits = ReadLimits::for_spec(&spec);
    let found = folder::scan(Path::new(dir)).unwrap_or_else(|d| {
        eprintln!("{}", d.message);
        std::process::exit(2)
    });
    let (mut sum, mut n_values, mut n_large) = (0_u64, 0_u64, 0_u64);
    let (mut maxima, mut declined) = (Vec::new(), 0);
    for (path, _) in found.samples() {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Some(Ok((fast, _))) = jpeg::decode_converted_with(&bytes, &spec, &limits, idct) else {
            declined += 1;
            continue;
        };
        let Ok(image) = decode_limited(&bytes, &limits) else {
            continue;
        };
        let full = to_bytes(&image, &spec);
        let diffs = fast.iter().zip(&full).map(|(a, b)| a.abs_diff(*b));
        let mut max = 0;
        for diff in diffs {
            sum += u64::from(diff);
            n_values += 1;
            n_large += u64::from(diff > 2);
            max = max.max(diff);
        }
        maxima.push(max);
    }
    maxima.sort_unstable();
    let median = maxima.get(maxima.len() / 2).copied().unwrap_or(0);
    println!(
        "{} images ({declined} declined) to {}x{}x{}: mean |difference| {:.3} of 255, {:.3}% of values differ by more than 2, per-image maximum: median {median}, largest {}",
        maxima.len(),
        spec.height,
        spec.width,
        spec.channels,
        sum as f64 / n_values.max(1) as f64,
        100.0 * n_large as f64 / n_values.max(1) as f64,
        maxima.last().copied().unwrap_or(0)
    );
}
