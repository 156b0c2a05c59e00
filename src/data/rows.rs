//! Row kernels of the JPEG fast path ([`super::jpeg`]) that LLVM does not vectorise by itself:
//! the horizontal half of the bilinear resize, which reads two samples at a computed column
//! for every output (a gather), and the interleaving of separate red, green and blue rows into
//! RGB pixels (three one-byte stores a pixel). On a CPU with AVX2 both run on whole vectors;
//! elsewhere (and for the interleave's last pixels short of a whole vector) they run the same
//! arithmetic one value at a time, so the two give the same bits.
//!
//! The resize gathers with permutes. The outputs are cut, in order, into groups of up to one
//! vector's lanes (8 on AVX2, 16 on AVX-512) whose samples all lie within two vectors of
//! consecutive floats of the row (with 8 lanes: eight outputs for a downscale of up to 2x, five
//! at 3x): a group loads those floats as two vectors, picks each output's pair out of them with
//! `vpermps` (AVX2) or `vpermt2ps` (AVX-512), and stores a whole vector. The lanes past a
//! short group's outputs are overwritten by the next group, or land in the output's padding.

/// Lanes of the widest vector of `f32` a group may fill: the most outputs a group has.
const GROUP: usize = 16;
/// Floats a group may read from its first sample on: two of the widest vectors.
const WINDOW: usize = 2 * GROUP;
/// Floats past a row's last sample that [`resample`] may read (and ignore): a row handed to it
/// must hold this many beyond the samples an axis uses.
pub const ROW_PAD: usize = WINDOW;
/// Outputs past the last that [`resample`] may write (and the caller ignore).
pub const OUT_PAD: usize = GROUP - 1;

/// One output's two samples along an axis: the first one's index and the second one's weight
/// (`out = first + (second - first) * weight`, the second sample being `first + 1`).
pub struct Taps {
    pub first: Vec<u32>,
    /// One weight per output, then [`OUT_PAD`] zeros (which a short last group reads).
    pub weight: Vec<f32>,
    /// The groups the outputs are cut into, in order.
    groups: Vec<Group>,
    /// Outputs a group may hold: the lanes of the vectors [`resample`] runs on.
    lanes: usize,
    /// The largest first sample.
    last_first: u32,
}

/// Outputs `start..` (up to [`Taps::lanes`] of them) whose samples start at `base` in the row; lane
/// `j`'s first sample is `base + local[j]` (0 for the lanes past the group's outputs).
struct Group {
    start: u32,
    base: u32,
    local: [i32; GROUP],
}

impl Taps {
    /// The taps of `first` and `weight` (one each per output), grouped for the widest
    /// vectors this CPU has.
    pub fn new(first: Vec<u32>, weight: Vec<f32>) -> Taps {
        Taps::with_lanes(first, weight, vector_lanes())
    }

    /// [`Taps::new`] with groups of at most `lanes` outputs (8 or 16).
    fn with_lanes(first: Vec<u32>, mut weight: Vec<f32>, lanes: usize) -> Taps {
        let window = 2 * lanes;
        let mut groups = Vec::with_capacity(first.len().div_ceil(lanes));
        let mut start = 0;
        while start < first.len() {
            let base = first[start];
            let mut local = [0_i32; GROUP];
            let mut count = 0;
            for (lane, &at) in local.iter_mut().take(lanes).zip(&first[start..]) {
                // `at + 1` is read too, so it must lie in the window.
                match at.checked_sub(base) {
                    Some(offset) if (offset as usize) + 1 < window => *lane = offset as i32,
                    _ => break,
                }
                count += 1;
            }
            // INVARIANT: the group's first output always fits (offset 0), so `count >= 1`.
            groups.push(Group {
                start: start as u32,
                base,
                local,
            });
            start += count.max(1);
        }
        weight.resize(first.len() + OUT_PAD, 0.0);
        Taps {
            last_first: first.iter().copied().max().unwrap_or(0),
            first,
            weight,
            groups,
            lanes,
        }
    }
}

/// The lanes of the widest vector of `f32` [`resample`] runs on here: 16 with AVX-512, else 8
/// (also where no vector kernel runs, which then ignores the groups).
fn vector_lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return 16;
    }
    8
}

/// `out[j] = row[first[j]] + (row[first[j] + 1] - row[first[j]]) * weight[j]` for every output.
///
/// # Panics
/// When `row` holds fewer than `last_first + 2 + ROW_PAD` values or `out` fewer than one per
/// output plus [`OUT_PAD`].
pub fn resample(taps: &Taps, row: &[f32], out: &mut [f32]) {
    assert!(
        (taps.last_first as usize) + 2 + ROW_PAD <= row.len(),
        "a row without room for the resize's reads"
    );
    assert!(
        out.len() >= taps.first.len() + OUT_PAD,
        "an output row without room for the resize's writes"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if taps.lanes == 16 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked here), and the lengths of `row` and `out`
            // were checked against the furthest read and write of any group.
            unsafe { avx512::resample(taps, row, out) };
            return;
        }
        if taps.lanes == 8 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked here), and the lengths were checked as above.
            unsafe { avx2::resample(taps, row, out) };
            return;
        }
    }
    resample_from(taps, row, out, 0);
}

/// The scalar resize of outputs `from..`.
fn resample_from(taps: &Taps, row: &[f32], out: &mut [f32], from: usize) {
    let outputs = out[from..].iter_mut();
    for ((out, &first), &weight) in outputs.zip(&taps.first[from..]).zip(&taps.weight[from..]) {
        let first = first as usize;
        let (left, right) = (row[first], row[first + 1]);
        *out = left + (right - left) * weight;
    }
}

/// Writes `out` as RGB pixels (`r g b r g b …`) from one row per colour.
///
/// # Panics
/// When the rows differ in length or `out` is not three times their length.
pub fn interleave(red: &[u8], green: &[u8], blue: &[u8], out: &mut [u8]) {
    assert!(
        red.len() == green.len() && red.len() == blue.len() && out.len() == 3 * red.len(),
        "rows of different lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (which includes SSSE3), and the lengths were checked.
        let done = unsafe { avx2::interleave(red, green, blue, out) };
        interleave_from(red, green, blue, out, done);
        return;
    }
    interleave_from(red, green, blue, out, 0);
}

/// The scalar interleave of pixels `from..`.
fn interleave_from(red: &[u8], green: &[u8], blue: &[u8], out: &mut [u8], from: usize) {
    let pixels = out[3 * from..].chunks_exact_mut(3);
    let colours = red[from..].iter().zip(&green[from..]).zip(&blue[from..]);
    for (pixel, ((&r, &g), &b)) in pixels.zip(colours) {
        pixel.copy_from_slice(&[r, g, b]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Taps;
    use std::arch::x86_64::*;

    /// [`super::resample`] on AVX-512, for taps grouped in 16s.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, `row` must hold `last_first + 2 + ROW_PAD` values and `out`
    /// one per output plus `OUT_PAD`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn resample(taps: &Taps, row: &[f32], out: &mut [f32]) {
        let one = _mm512_set1_epi32(1);
        for group in &taps.groups {
            let at = group.start as usize;
            // SAFETY: `base <= last_first`, so the 32 floats from `base` lie inside `row`;
            // `at` is an output, so `weight` (padded by `OUT_PAD`) holds 16 values from it
            // and `out` has room for 16.
            unsafe {
                let src = row.as_ptr().add(group.base as usize);
                let low = _mm512_loadu_ps(src);
                let high = _mm512_loadu_ps(src.add(16));
                let index = _mm512_loadu_si512(group.local.as_ptr().cast());
                let left = _mm512_permutex2var_ps(low, index, high);
                let right = _mm512_permutex2var_ps(low, _mm512_add_epi32(index, one), high);
                let weight = _mm512_loadu_ps(taps.weight.as_ptr().add(at));
                let value = _mm512_add_ps(left, _mm512_mul_ps(_mm512_sub_ps(right, left), weight));
                _mm512_storeu_ps(out.as_mut_ptr().add(at), value);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Taps;
    use std::arch::x86_64::*;

    /// Lanes of one AVX2 vector of `f32`.
    const LANES: usize = 8;

    /// [`super::resample`] on AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2, `row` must hold `last_first + 2 + ROW_PAD` values and `out`
    /// one per output plus `OUT_PAD`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn resample(taps: &Taps, row: &[f32], out: &mut [f32]) {
        let seven = _mm256_set1_epi32(7);
        let one = _mm256_set1_epi32(1);
        for group in &taps.groups {
            let at = group.start as usize;
            // SAFETY: `base <= last_first`, so the 16 floats from `base` lie inside `row`;
            // `at` is an output, so `weight` (padded by `OUT_PAD`) holds eight values from it
            // and `out` has room for eight.
            unsafe {
                let src = row.as_ptr().add(group.base as usize);
                let low = _mm256_loadu_ps(src);
                let high = _mm256_loadu_ps(src.add(LANES));
                let index = _mm256_loadu_si256(group.local.as_ptr().cast());
                let left = pick(low, high, index, seven);
                let right = pick(low, high, _mm256_add_epi32(index, one), seven);
                let weight = _mm256_loadu_ps(taps.weight.as_ptr().add(at));
                let value = _mm256_add_ps(left, _mm256_mul_ps(_mm256_sub_ps(right, left), weight));
                _mm256_storeu_ps(out.as_mut_ptr().add(at), value);
            }
        }
    }

    /// Lane `j` of the 16 floats `low ++ high` at `index[j]` (0 to 15).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pick(low: __m256, high: __m256, index: __m256i, seven: __m256i) -> __m256 {
        let from_high = _mm256_castsi256_ps(_mm256_cmpgt_epi32(index, seven));
        _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(low, index),
            _mm256_permutevar8x32_ps(high, index),
            from_high,
        )
    }

    /// Byte `k` of 48 interleaved bytes comes from colour `k % 3`, pixel `k / 3`: the
    /// `pshufb` masks that place colour `colour`'s bytes in the 16-byte part `part` (0x80
    /// zeroes the other bytes).
    const fn mask(part: usize, colour: usize) -> [u8; 16] {
        let mut mask = [0x80_u8; 16];
        let mut k = 0;
        while k < 16 {
            let byte = 16 * part + k;
            if byte % 3 == colour {
                mask[k] = (byte / 3) as u8;
            }
            k += 1;
        }
        mask
    }

    const MASKS: [[[u8; 16]; 3]; 3] = [
        [mask(0, 0), mask(0, 1), mask(0, 2)],
        [mask(1, 0), mask(1, 1), mask(1, 2)],
        [mask(2, 0), mask(2, 1), mask(2, 2)],
    ];

    /// [`super::interleave`] on whole groups of 16 pixels; returns how many pixels it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX2; the three rows must have one length and `out` three times it.
    #[target_feature(enable = "avx2")]
    pub unsafe fn interleave(red: &[u8], green: &[u8], blue: &[u8], out: &mut [u8]) -> usize {
        let whole = red.len() / 16 * 16;
        for at in (0..whole).step_by(16) {
            // SAFETY: `at + 16 <= len` for each row, and `out` holds `3 * len` bytes.
            unsafe {
                let colours = [
                    _mm_loadu_si128(red.as_ptr().add(at).cast()),
                    _mm_loadu_si128(green.as_ptr().add(at).cast()),
                    _mm_loadu_si128(blue.as_ptr().add(at).cast()),
                ];
                for (part, masks) in MASKS.iter().enumerate() {
                    let mut bytes = _mm_setzero_si128();
                    for (colour, mask) in colours.iter().zip(masks) {
                        let mask = _mm_loadu_si128(mask.as_ptr().cast());
                        bytes = _mm_or_si128(bytes, _mm_shuffle_epi8(*colour, mask));
                    }
                    _mm_storeu_si128(out.as_mut_ptr().add(3 * at + 16 * part).cast(), bytes);
                }
            }
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taps of a bilinear resize from `len` samples to `n_out`, as the JPEG path places them,
    /// in groups of `lanes`.
    fn taps(len: usize, n_out: usize, lanes: usize) -> Taps {
        let scale = len as f64 / n_out as f64;
        let (mut first, mut weight) = (Vec::new(), Vec::new());
        for j in 0..n_out {
            let position = ((j as f64 + 0.5) * scale - 0.5).max(0.0);
            let below = position.floor().min((len - 1) as f64);
            first.push(below as u32);
            weight.push(if below as usize >= len - 1 {
                0.0
            } else {
                (position - below) as f32
            });
        }
        Taps::with_lanes(first, weight, lanes)
    }

    #[test]
    fn the_vector_resize_gives_the_scalar_bits_at_every_scale() {
        // Both vector widths (where the CPU lacks one, its taps run the scalar loop).
        for lanes in [8, 16] {
            resizes_give_the_scalar_bits(lanes);
        }
    }

    fn resizes_give_the_scalar_bits(lanes: usize) {
        // Upscales, the JPEG path's 1.3x to 2.2x downscales, and 3x and 7x ones.
        for (len, n_out) in [
            (100, 224),
            (224, 224),
            (300, 224),
            (500, 224),
            (700, 224),
            (9, 7),
        ] {
            let t = taps(len, n_out, lanes);
            let row: Vec<f32> = (0..len + 1 + ROW_PAD)
                .map(|i| ((i * 37) % 255) as f32 * 0.75)
                .collect();
            let mut vector = vec![0.0; n_out + OUT_PAD];
            let mut scalar = vec![0.0; n_out];
            resample(&t, &row, &mut vector);
            resample_from(&t, &row, &mut scalar, 0);
            assert_eq!(vector[..n_out], scalar, "{len} -> {n_out} in {lanes}s");
            // Up to 2x a group holds all its lanes' outputs but one (one short group at most
            // where the ends clamp); at 3x, 5 of 8 or 10 of 16.
            let per_group = if len <= 2 * n_out {
                lanes - 1
            } else {
                lanes * 5 / 8
            };
            assert!(
                t.groups.len() <= n_out.div_ceil(per_group) + 1,
                "{len} -> {n_out}: {} groups",
                t.groups.len()
            );
        }
        let wide = taps(7 * 224, 224, lanes);
        assert!(
            wide.groups.len() <= 224,
            "a 7x downscale is at least one output a group"
        );
    }

    #[test]
    fn interleaving_puts_each_colour_in_its_place() {
        for len in [0, 5, 16, 37, 224] {
            let red: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let green: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(3)).collect();
            let blue: Vec<u8> = (0..len).map(|i| 255 - i as u8).collect();
            let mut out = vec![0; 3 * len];
            interleave(&red, &green, &blue, &mut out);
            for (i, pixel) in out.chunks_exact(3).enumerate() {
                assert_eq!(pixel, [red[i], green[i], blue[i]], "pixel {i} of {len}");
            }
        }
    }
}
