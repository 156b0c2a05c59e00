//! Measures the data loader on its own: images/s for the first epoch (decoding) and the second
//! (served from the in-memory cache).
//!
//!     cargo run --release --example loader_throughput -- DIR HEIGHT WIDTH CHANNELS [BATCH]
//!
//! With `--make-jpegs N DIR` it first writes N synthetic 500x375 JPEGs in two classes, to
//! measure 224x224 JPEG decoding without a photo dataset at hand.

use std::path::Path;
use std::time::Instant;
use strata::data::{folder, ImageSpec, Loader};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--make-jpegs") {
        let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
        let dir = Path::new(args.get(2).map_or("jpegs", String::as_str));
        make_jpegs(n, dir);
        return;
    }
    let [dir, height, width, channels, rest @ ..] = args.as_slice() else {
        eprintln!("usage: loader_throughput DIR HEIGHT WIDTH CHANNELS [BATCH]");
        std::process::exit(2);
    };
    let number = |text: &str| {
        text.parse::<usize>()
            .unwrap_or_else(|_| panic!("not a number: {text}"))
    };
    let spec = ImageSpec {
        height: number(height),
        width: number(width),
        channels: number(channels),
        rescale: 1.0 / 255.0,
    };
    let batch_size = rest.first().map_or(64, |text| number(text));
    let found = folder::scan(Path::new(dir)).unwrap_or_else(|d| panic!("{}", d.message));
    let loader = Loader::new(
        found.samples(),
        spec,
        strata::data::loader::default_cache_bytes(),
    );
    for epoch in 0..2 {
        let start = Instant::now();
        let mut n_images = 0;
        for batch in loader.batches(loader.order(0, epoch, true), batch_size) {
            n_images += batch.len();
        }
        let seconds = start.elapsed().as_secs_f64();
        let what = if epoch == 0 { "decode" } else { "cached" };
        println!(
            "epoch {} ({what}): {n_images} images in {seconds:.2} s = {:.0} images/s",
            epoch + 1,
            n_images as f64 / seconds
        );
    }
}

fn make_jpegs(n: usize, dir: &Path) {
    for idx in 0..n {
        let class = if idx % 2 == 0 { "a" } else { "b" };
        let image = image::RgbImage::from_fn(500, 375, |x, y| {
            let v = ((x * 7 + y * 3 + idx as u32 * 11) % 256) as u8;
            image::Rgb([v, v.wrapping_mul(3), 255 - v])
        });
        let path = dir.join(class).join(format!("{idx}.jpg"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        image.save(&path).expect("save jpeg");
    }
}
