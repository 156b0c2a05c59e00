//! Measures augmentation on its own: images/s through `Augmentation::apply` with every
//! transform on, for a few image sizes, on one thread.
//!
//!     cargo run --release --example augment_throughput -- [IMAGES]

use std::time::Instant;
use strata::data::augment::{Augmentation, Pixels};
use strata::settings::{AugmentConfig, Flip};

fn main() {
    let n_images: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(2000);
    let config = AugmentConfig {
        flip: Some(Flip::Horizontal),
        rotation: 0.05,
        zoom: 0.1,
        translation: 0.1,
        contrast: 0.2,
        brightness: 0.1,
    };
    let augmentation = Augmentation {
        config,
        seed: 0,
        epoch: 1,
    };
    for (height, width, channels) in [(28, 28, 1), (32, 32, 3), (224, 224, 3)] {
        let bytes: Vec<u8> = (0..height * width * channels)
            .map(|idx| (idx * 31 % 251) as u8)
            .collect();
        let n = if height > 100 {
            n_images / 20
        } else {
            n_images
        }
        .max(1);
        let started = Instant::now();
        let mut checksum = 0.0f32;
        for index in 0..n {
            let pixels = Pixels::from_bytes(&bytes, height, width, channels);
            checksum += augmentation.apply(index, pixels).values[0];
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{height}x{width}x{channels}: {:.0} images/s ({:.1} µs each; checksum {checksum:.1})",
            n as f64 / seconds,
            1e6 * seconds / n as f64
        );
    }
}
