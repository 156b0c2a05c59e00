//! The arithmetic of batch normalisation on `rows x features` slices, vectorised by periods.
//!
//! With few features (3 for an RGB input) a per-row loop is too short to vectorise. Here data
//! is walked in periods of `features * reps >= 64` elements: element `j` of every period
//! belongs to feature `j % features`, so per-feature constants become repeating patterns and
//! per-feature sums become per-position sums folded at the end.

use crate::backend::ops::reduce::tree_sum;
use crate::backend::ops::simd;
use rayon::prelude::*;

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

    /// Per-feature sums of the two terms `term(a, b, p, q)` over each of the `samples` equal
    /// parts of the slices (the images of a batch), where `p`, `q` are the element's values of
    /// patterns `pats`: one leaf per image, for [`tree_f64`] or [`tree_f32`] to add up. Sums
    /// are kept per image so that a batch's sum is the exact sum of its halves' (a
    /// data-parallel rank sums its share: see `reduce`).
    ///
    /// # Panics
    /// When the slices do not split into `samples` parts of whole rows.
    pub fn sums(
        &self,
        a: &[f32],
        b: &[f32],
        pats: (&[f32], &[f32]),
        samples: usize,
        term: impl Fn(f32, f32, f32, f32) -> (f32, f32) + Sync,
    ) -> Vec<Vec<[f64; 2]>> {
        let samples = samples.max(1);
        let sample_len = a.len() / samples;
        assert!(
            sample_len * samples == a.len() && sample_len.is_multiple_of(self.features),
            "batch-norm sums over parts that are not whole images"
        );
        if sample_len == 0 {
            return vec![vec![[0.0f64; 2]; self.features]; samples];
        }
        a.par_chunks(sample_len)
            .zip(b.par_chunks(sample_len))
            .map(|(a, b)| {
                let mut sums = vec![[0.0f64; 2]; self.features];
                let mut acc = vec![0.0f32; 2 * self.period];
                for (a, b) in a.chunks(self.chunk()).zip(b.chunks(self.chunk())) {
                    acc.fill(0.0);
                    simd::fast(|| {
                        let (acc0, acc1) = acc.split_at_mut(self.period);
                        for (a, b) in a.chunks(self.period).zip(b.chunks(self.period)) {
                            let terms = a.iter().zip(b).zip(pats.0).zip(pats.1);
                            for ((((&a, &b), &p), &q), (s0, s1)) in
                                terms.zip(acc0.iter_mut().zip(acc1.iter_mut()))
                            {
                                let (t0, t1) = term(a, b, p, q);
                                *s0 += t0;
                                *s1 += t1;
                            }
                        }
                    });
                    for j in 0..self.period {
                        sums[j % self.features][0] += f64::from(acc[j]);
                        sums[j % self.features][1] += f64::from(acc[self.period + j]);
                    }
                }
                sums
            })
            .collect()
    }

    /// `out = f(out, a, b, p, q, r)` element-wise, with `p`, `q`, `r` from patterns `pats`.
    pub fn map(
        &self,
        out: &mut [f32],
        a: &[f32],
        b: &[f32],
        pats: (&[f32], &[f32], &[f32]),
        f: impl Fn(f32, f32, f32, f32, f32, f32) -> f32 + Sync,
    ) {
        out.par_chunks_mut(self.chunk())
            .zip(a.par_chunks(self.chunk()))
            .zip(b.par_chunks(self.chunk()))
            .for_each(|((out, a), b)| {
                simd::fast(|| {
                    let periods = out.chunks_mut(self.period).zip(a.chunks(self.period));
                    for ((out, a), b) in periods.zip(b.chunks(self.period)) {
                        let items = out.iter_mut().zip(a).zip(b).zip(pats.0).zip(pats.1);
                        for (((((o, &a), &b), &p), &q), &r) in items.zip(pats.2) {
                            *o = f(*o, a, b, p, q, r);
                        }
                    }
                })
            });
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
        let leaves = layout.sums(&data, &data, (&ones, &ones), 1, |a, _, p, _| (a * p, 1.0));
        assert_eq!(
            tree_f64(&leaves),
            vec![[50.0, 50.0], [100.0, 50.0], [150.0, 50.0]]
        );
        // Two images of 25 rows: a leaf each, adding up to the same sums.
        let leaves = layout.sums(&data, &data, (&ones, &ones), 2, |a, _, p, _| (a * p, 1.0));
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
}
