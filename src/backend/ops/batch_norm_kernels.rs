//! The arithmetic of batch normalisation on `rows x features` slices, vectorised by periods.
//!
//! With few features (3 for an RGB input) a per-row loop is too short to vectorise. Here data
//! is walked in periods of `features * reps >= 64` elements: element `j` of every period
//! belongs to feature `j % features`, so per-feature constants become repeating patterns and
//! per-feature sums become per-position sums folded at the end.

use crate::backend::ops::reduce::tree_sum;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// One image's share of a batch norm's statistics ([`Periods::image_moments`]).
#[derive(Debug, Clone)]
pub struct ImageMoments {
    /// Per feature: the sum of the image's values.
    pub sum: Vec<f64>,
    /// Per feature: the sums of `(x - a)²` and of `x - a`, `a` the image's mean rounded to
    /// single precision.
    pub centred: Vec<[f64; 2]>,
}

/// Periods per parallel chunk.
const PERIODS_PER_CHUNK: usize = 1024;

/// The period layout of one `rows x features` slice.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    /// Features (the last axis).
    pub features: usize,
    /// Elements per period, a multiple of `features`.
    pub period: usize,
}

impl Periods {
    /// The layout for `features` features.
    pub fn new(features: usize) -> Self {
        let features = features.max(1);
        Self {
            features,
            period: features * 64usize.div_ceil(features),
        }
    }

    /// A per-feature vector repeated over one period.
    pub fn pattern(&self, per_feature: &[f32]) -> Vec<f32> {
        (0..self.period)
            .map(|j| per_feature[j % self.features])
            .collect()
    }

    fn chunk(&self) -> usize {
        self.period * PERIODS_PER_CHUNK
    }

    /// Per-feature sums of the two terms `term(a, b, [p, q, r, t])` over each of the `samples`
    /// equal parts of the slices (the images of a batch), where `p, q, r, t` are the element's
    /// values of patterns `pats`: one leaf per image, for [`tree_f64`] or [`tree_f32`] to add
    /// up. Sums are kept per image so that a batch's sum is the exact sum of its halves' (a
    /// data-parallel rank sums its share: see `reduce`). The slices are walked period by
    /// period (`row_sums_chunk`): they are read from memory once.
    ///
    /// # Panics
    /// When the slices do not split into `samples` parts of whole rows.
    pub fn sums(
        &self,
        a: &[f32],
        b: &[f32],
        pats: Patterns<'_>,
        samples: usize,
        term: impl Fn(f32, f32, [f32; 4]) -> (f32, f32) + Sync,
    ) -> Vec<Vec<[f64; 2]>> {
        let sample_len = self.sample_len(a.len(), samples);
        if sample_len == 0 {
            return vec![vec![[0.0f64; 2]; self.features]; samples.max(1)];
        }
        a.par_chunks(sample_len)
            .zip(b.par_chunks(sample_len))
            .map(|(a, b)| {
                self.image_sums(a, b, |a, b, acc| {
                    row_sums_chunk(self.period, (a, b), pats, &term, acc);
                })
            })
            .collect()
    }

    /// What a training batch norm's statistics need of each of `samples` images, reading
    /// `x` from memory once: the per-feature sum of the image, and the sums of `(x - a)²` and
    /// `x - a` about the image's own mean `a` (the second pass over an image runs in cache).
    /// The batch's variance about its mean `m` is then `Σ (d2 - d1² / n + n (μ - m)²)` over
    /// the images (`μ` the image's exact mean, `n` its rows), as accurate as two passes over
    /// the batch.
    ///
    /// # Panics
    /// As [`Periods::sums`].
    pub fn image_moments(&self, x: &[f32], samples: usize) -> Vec<ImageMoments> {
        let sample_len = self.sample_len(x.len(), samples);
        let rows = (sample_len / self.features) as f64;
        if sample_len == 0 {
            let empty = ImageMoments {
                sum: vec![0.0; self.features],
                centred: vec![[0.0; 2]; self.features],
            };
            return vec![empty; samples.max(1)];
        }
        let zeros = self.pattern(&vec![0.0; self.features]);
        // Blocks of positions down the periods, their sums in registers: the image is read
        // from memory once, then from cache.
        let period = self.period;
        x.par_chunks(sample_len)
            .map(|x| {
                let sums = self.image_sums(x, x, |a, b, acc| {
                    sums_chunk(
                        period,
                        (a, b),
                        (&zeros, &zeros),
                        &|x, _, _, _| (x, 0.0),
                        acc,
                    );
                });
                let sum: Vec<f64> = sums.iter().map(|s| s[0]).collect();
                let mean: Vec<f32> = sum.iter().map(|&s| (s / rows) as f32).collect();
                let mean = self.pattern(&mean);
                let deviations = |x: f32, _: f32, a: f32, _: f32| {
                    let d = x - a;
                    (d * d, d)
                };
                let centred = self.image_sums(x, x, |a, b, acc| {
                    sums_chunk(period, (a, b), (&mean, &zeros), &deviations, acc);
                });
                ImageMoments { sum, centred }
            })
            .collect()
    }

    /// The length of one of `samples` equal parts of `len` elements.
    fn sample_len(&self, len: usize, samples: usize) -> usize {
        let samples = samples.max(1);
        let sample_len = len / samples;
        assert!(
            sample_len * samples == len && sample_len.is_multiple_of(self.features),
            "batch-norm sums over parts that are not whole images"
        );
        sample_len
    }

    /// The per-feature sums of one image, `chunk` adding a chunk's terms into per-position
    /// sums.
    fn image_sums(
        &self,
        a: &[f32],
        b: &[f32],
        chunk: impl Fn(&[f32], &[f32], &mut [f32]),
    ) -> Vec<[f64; 2]> {
        let mut sums = vec![[0.0f64; 2]; self.features];
        let mut acc = vec![0.0f32; 2 * self.period];
        for (a, b) in a.chunks(self.chunk()).zip(b.chunks(self.chunk())) {
            acc.fill(0.0);
            chunk(a, b, &mut acc);
            self.fold_into(&mut sums, &acc);
        }
        sums
    }

    /// Adds a chunk's per-position sums (`acc`: the first terms, then the second) into the
    /// per-feature sums.
    fn fold_into(&self, sums: &mut [[f64; 2]], acc: &[f32]) {
        // A period is whole repetitions of the features, added in position order.
        let (first, second) = acc.split_at(self.period);
        let reps = first
            .chunks_exact(self.features)
            .zip(second.chunks_exact(self.features));
        for (first, second) in reps {
            for ((sum, &a), &b) in sums.iter_mut().zip(first).zip(second) {
                sum[0] += f64::from(a);
                sum[1] += f64::from(b);
            }
        }
    }

    /// `out = f(out, a, b, [p, q, r, t])` element-wise, with `p, q, r, t` from patterns `pats`.
    pub fn map(
        &self,
        out: &mut [f32],
        a: &[f32],
        b: &[f32],
        pats: Patterns<'_>,
        f: impl Fn(f32, f32, f32, [f32; 4]) -> f32 + Sync,
    ) {
        out.par_chunks_mut(self.chunk())
            .zip(a.par_chunks(self.chunk()))
            .zip(b.par_chunks(self.chunk()))
            .for_each(|((out, a), b)| map_chunk(self.period, out, (a, b), pats, &f));
    }

    /// `out = x * scale + shift`, clamped to `bounds` (an activation's), with `scale` and
    /// `shift` patterns: the normalisation of a batch norm without a skip, the one arithmetic
    /// for every pass that makes it. On the pool's threads when `parallel` (a whole batch), else
    /// on this one (a few rows, as a reader makes them from the batch norm's input).
    pub fn normalise(
        &self,
        out: &mut [f32],
        x: &[f32],
        (scale, shift): (&[f32], &[f32]),
        bounds: Option<(f32, f32)>,
        parallel: bool,
    ) {
        let pats = [scale, shift, shift, shift];
        match bounds {
            None => self.map_on(parallel, out, x, pats, |_, x, _, [a, b, ..]| x * a + b),
            Some((lo, hi)) => self.map_on(parallel, out, x, pats, move |_, x, _, [a, b, ..]| {
                (x * a + b).max(lo).min(hi)
            }),
        }
    }

    /// `out = f(out, x, x, [p, q, r, t])`: [`Periods::map`] when `parallel`, else on this thread.
    fn map_on(
        &self,
        parallel: bool,
        out: &mut [f32],
        x: &[f32],
        pats: Patterns<'_>,
        f: impl Fn(f32, f32, f32, [f32; 4]) -> f32 + Sync,
    ) {
        if parallel {
            self.map(out, x, x, pats, f);
        } else {
            map_chunk(self.period, out, (x, x), pats, &f);
        }
    }

    /// [`Periods::map`], also marking in `marks` (one byte an element)
    /// where the result lies strictly between `lo` and `hi`, in the same pass: where a fused
    /// activation clamping to `lo..=hi` passes the gradient on.
    ///
    /// # Panics
    /// When `marks` is shorter than `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn map_marking(
        &self,
        out: &mut [f32],
        marks: &mut [MaybeUninit<u8>],
        a: &[f32],
        b: &[f32],
        pats: Patterns<'_>,
        (lo, hi): (f32, f32),
        f: impl Fn(f32, f32, f32, [f32; 4]) -> f32 + Sync,
    ) {
        let marks = &mut marks[..out.len()];
        out.par_chunks_mut(self.chunk())
            .zip(marks.par_chunks_mut(self.chunk()))
            .zip(a.par_chunks(self.chunk()))
            .zip(b.par_chunks(self.chunk()))
            .for_each(|(((out, marks), a), b)| {
                map_chunk(self.period, out, (a, b), pats, &f);
                mark_chunk(out, marks, (lo, hi));
            });
    }
}

/// Per-element constants: four patterns of one period, read together (a closure ignores
/// those it does not need, and the compiler drops their loads).
pub type Patterns<'a> = [&'a [f32]; 4];

// The loops over one chunk, compiled for AVX-512 and AVX2 with run-time dispatch: inside
// `simd::fast`'s closure LLVM kept them as functions of their own, compiled for plain x86-64
// (4-lane SSE). Vector width does not change a result: every position of a period has its own
// accumulator, and nothing is contracted into a fused multiply-add.

/// Positions of a period summed together in [`sums_chunk`]: one AVX-512 vector (two AVX2).
const BLOCK: usize = 16;

/// Adds `term(a, b, p, q)` of every element of one chunk into the per-position sums `acc`
/// (the first terms, then the second).
///
/// The positions are taken `BLOCK` at a time, each block's sums held in registers while the
/// loop walks down the chunk's periods. Each position still adds its terms in period order,
/// the trailing part of a period last, so the sums are the bits a plain loop over the
/// elements gives. (The plain loop, with the sums in memory, compiled to scalar code for some
/// terms: LLVM could not tell the two halves of `acc` apart from the inputs.)
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn sums_chunk<F: Fn(f32, f32, f32, f32) -> (f32, f32)>(
    period: usize,
    (a, b): (&[f32], &[f32]),
    pats: (&[f32], &[f32]),
    term: &F,
    acc: &mut [f32],
) {
    let (acc0, acc1) = acc.split_at_mut(period);
    let whole = a.len().min(b.len()) / period;
    let mut start = 0;
    while start + BLOCK <= period {
        let end = start + BLOCK;
        let mut s0 = [0.0f32; BLOCK];
        let mut s1 = [0.0f32; BLOCK];
        s0.copy_from_slice(&acc0[start..end]);
        s1.copy_from_slice(&acc1[start..end]);
        let (p, q) = (&pats.0[start..end], &pats.1[start..end]);
        for row in 0..whole {
            let at = row * period + start;
            let (a, b) = (&a[at..at + BLOCK], &b[at..at + BLOCK]);
            for k in 0..BLOCK {
                let (t0, t1) = term(a[k], b[k], p[k], q[k]);
                s0[k] += t0;
                s1[k] += t1;
            }
        }
        acc0[start..end].copy_from_slice(&s0);
        acc1[start..end].copy_from_slice(&s1);
        start = end;
    }
    // The positions past the last whole block, then the trailing part of a period.
    for j in start..period {
        for row in 0..whole {
            let at = row * period + j;
            let (t0, t1) = term(a[at], b[at], pats.0[j], pats.1[j]);
            acc0[j] += t0;
            acc1[j] += t1;
        }
    }
    let done = whole * period;
    let rest = a[done..].iter().zip(&b[done..]).zip(pats.0).zip(pats.1);
    for ((((&a, &b), &p), &q), (s0, s1)) in rest.zip(acc0.iter_mut().zip(acc1.iter_mut())) {
        let (t0, t1) = term(a, b, p, q);
        *s0 += t0;
        *s1 += t1;
    }
}

/// [`sums_chunk`] of `term(a, b, [p, q, r, s])`, walking the chunk period by period, the
/// sums in memory: for data read from memory once (a batch norm's backward). Each position
/// adds its terms in the same order as in [`sums_chunk`], so the two give the same bits. The
/// blocks' walk reads every period's cache lines once a block, from further away than L1 when
/// the chunk is large: a first version of the backward that used it (vectorised) took 36 to
/// 39 ms a step in `mobilenetv2_small`'s batch norms against 22 to 25 before.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn row_sums_chunk<F: Fn(f32, f32, [f32; 4]) -> (f32, f32)>(
    period: usize,
    (a, b): (&[f32], &[f32]),
    [p, q, r, t]: Patterns<'_>,
    term: &F,
    acc: &mut [f32],
) {
    let (acc0, acc1) = acc.split_at_mut(period);
    for (a, b) in a.chunks(period).zip(b.chunks(period)) {
        let pats = p.iter().zip(q).zip(r).zip(t);
        let accs = acc0.iter_mut().zip(acc1.iter_mut());
        for (((&a, &b), (((&p, &q), &r), &t)), (s0, s1)) in a.iter().zip(b).zip(pats).zip(accs) {
            let (t0, t1) = term(a, b, [p, q, r, t]);
            *s0 += t0;
            *s1 += t1;
        }
    }
}

/// `out = f(out, a, b, [p, q, r, t])` over one chunk.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn map_chunk<F: Fn(f32, f32, f32, [f32; 4]) -> f32>(
    period: usize,
    out: &mut [f32],
    (a, b): (&[f32], &[f32]),
    [p, q, r, t]: Patterns<'_>,
    f: &F,
) {
    let periods = out.chunks_mut(period).zip(a.chunks(period));
    for ((out, a), b) in periods.zip(b.chunks(period)) {
        let pats = p.iter().zip(q).zip(r).zip(t);
        for (((o, &a), &b), (((&p, &q), &r), &t)) in out.iter_mut().zip(a).zip(b).zip(pats) {
            *o = f(*o, a, b, [p, q, r, t]);
        }
    }
}

/// `marks[i] = lo < out[i] < hi`, over one chunk just written (still in cache).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma"
))]
fn mark_chunk(out: &[f32], marks: &mut [MaybeUninit<u8>], (lo, hi): (f32, f32)) {
    for (mark, &y) in marks.iter_mut().zip(out) {
        mark.write(u8::from(y > lo && y < hi));
    }
}

/// The per-feature sums of a batch from [`Periods::sums`]'s leaves, added in double precision
/// in the tree of `reduce` (the statistics a batch norm divides).
pub fn tree_f64(leaves: &[Vec<[f64; 2]>]) -> Vec<[f64; 2]> {
    let features = leaves.first().map_or(0, Vec::len);
    tree_sum(leaves, vec![[0.0f64; 2]; features], &|mut a, b| {
        a.iter_mut().zip(&b).for_each(|(a, b)| {
            a[0] += b[0];
            a[1] += b[1];
        });
        a
    })
}

/// [`tree_f64`] for a gradient: each image's sums rounded to single precision, then added in
/// single precision in the same tree, as the trainer adds the ranks' gradients.
pub fn tree_f32(leaves: &[Vec<[f64; 2]>]) -> Vec<[f32; 2]> {
    let rounded: Vec<Vec<[f32; 2]>> = leaves
        .iter()
        .map(|leaf| leaf.iter().map(|s| [s[0] as f32, s[1] as f32]).collect())
        .collect();
    let features = leaves.first().map_or(0, Vec::len);
    tree_sum(&rounded, vec![[0.0f32; 2]; features], &|mut a, b| {
        a.iter_mut().zip(&b).for_each(|(a, b)| {
            a[0] += b[0];
            a[1] += b[1];
        });
        a
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_fold_periods_into_features() {
        let layout = Periods::new(3);
        // 50 rows of (1, 2, 3): not a whole number of periods.
        let data: Vec<f32> = (0..150).map(|i| (i % 3 + 1) as f32).collect();
        let ones = layout.pattern(&[1.0, 1.0, 1.0]);
        let leaves = layout.sums(&data, &data, [&ones; 4], 1, |a, _, [p, ..]| (a * p, 1.0));
        assert_eq!(
            tree_f64(&leaves),
            vec![[50.0, 50.0], [100.0, 50.0], [150.0, 50.0]]
        );
        // Two images of 25 rows: a leaf each, adding up to the same sums.
        let leaves = layout.sums(&data, &data, [&ones; 4], 2, |a, _, [p, ..]| (a * p, 1.0));
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0], vec![[25.0, 25.0], [50.0, 25.0], [75.0, 25.0]]);
        assert_eq!(
            tree_f64(&leaves),
            vec![[50.0, 50.0], [100.0, 50.0], [150.0, 50.0]]
        );
        assert_eq!(
            tree_f32(&leaves),
            vec![[50.0, 50.0], [100.0, 50.0], [150.0, 50.0]]
        );
    }

    /// Values that round differently in every summation order, so that a changed order
    /// shows in the bits.
    fn awkward_values(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len)
            .map(|_| rng.gen_range(-1.0f32..1.0) * 10f32.powi(rng.gen_range(-3..4)))
            .collect()
    }

    #[test]
    fn blocked_sums_add_each_position_in_element_order() {
        // Periods of 66 (features 3: four blocks and two positions more), 64, 72, 80 and 144
        // features; lengths with and without a trailing part of a period.
        for features in [3usize, 16, 24, 40, 144] {
            let layout = Periods::new(features);
            let period = layout.period;
            for len in [period * 7, period * 7 + features * 2, features] {
                let a = awkward_values(len, features as u64);
                let b = awkward_values(len, len as u64);
                let p = awkward_values(period, 1);
                let q = awkward_values(period, 2);
                let term = |a: f32, b: f32, p: f32, q: f32| {
                    let d = a - p;
                    (d * d * q, d + b)
                };
                let mut acc = vec![0.0f32; 2 * period];
                sums_chunk(period, (&a, &b), (&p, &q), &term, &mut acc);
                let mut rows = vec![0.0f32; 2 * period];
                let row_term = |a, b, [p, q, _, _]: [f32; 4]| term(a, b, p, q);
                row_sums_chunk(period, (&a, &b), [&p, &q, &p, &q], &row_term, &mut rows);
                // The plain loop: element by element, each into its position's sums.
                let mut expected = vec![0.0f32; 2 * period];
                for (idx, (&a, &b)) in a.iter().zip(&b).enumerate() {
                    let j = idx % period;
                    let (t0, t1) = term(a, b, p[j], q[j]);
                    expected[j] += t0;
                    expected[period + j] += t1;
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&acc),
                    bits(&expected),
                    "{features} features, {len} values"
                );
                assert_eq!(
                    bits(&rows),
                    bits(&expected),
                    "{features} features, {len} values, by rows"
                );
            }
        }
    }

    #[test]
    fn marking_while_mapping_marks_where_the_output_is_inside_the_bounds() {
        let layout = Periods::new(24);
        let len = layout.period * 1030 + 48;
        let (x, skip) = (awkward_values(len, 3), awkward_values(len, 4));
        let (scale, shift) = (
            awkward_values(layout.period, 5),
            awkward_values(layout.period, 6),
        );
        let pats = [scale.as_slice(), shift.as_slice(), &scale, &scale];
        let f = |_: f32, x: f32, s: f32, [a, b, ..]: [f32; 4]| ((x * a + b) + s).clamp(0.0, 6.0);
        let mut mapped = vec![0.0f32; len];
        layout.map(&mut mapped, &x, &skip, pats, f);
        let mut out = vec![0.0f32; len];
        let mut marks = vec![MaybeUninit::new(7u8); len];
        layout.map_marking(&mut out, &mut marks, &x, &skip, pats, (0.0, 6.0), f);
        assert_eq!(out, mapped);
        for (mark, &y) in marks.iter().zip(&out) {
            // SAFETY: every mark was initialised (to 7) before the call.
            let mark = unsafe { mark.assume_init() };
            assert_eq!(mark, u8::from(y > 0.0 && y < 6.0));
        }
    }
}
