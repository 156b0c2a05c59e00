//! The arithmetic of batch normalisation on `rows x features` slices, vectorised by periods.
//!
//! With few features (3 for an RGB input) a per-row loop is too short to vectorise. Here data
//! is walked in periods of `features * reps >= 64` elements: element `j` of every period
//! belongs to feature `j % features`, so per-feature constants become repeating patterns and
//! per-feature sums become per-position sums folded at the end.

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

    /// Per-feature sums of the two terms `term(a, b, p, q)` over all elements, where `p`, `q`
    /// are the element's values of patterns `pats`.
    pub fn sums(
        &self,
        a: &[f32],
        b: &[f32],
        pats: (&[f32], &[f32]),
        term: impl Fn(f32, f32, f32, f32) -> (f32, f32) + Sync,
    ) -> Vec<[f64; 2]> {
        let zero = || vec![[0.0f64; 2]; self.features];
        a.par_chunks(self.chunk())
            .zip(b.par_chunks(self.chunk()))
            .map(|(a, b)| {
                let mut acc = vec![0.0f32; 2 * self.period];
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
                let mut sums = zero();
                for j in 0..self.period {
                    sums[j % self.features][0] += f64::from(acc[j]);
                    sums[j % self.features][1] += f64::from(acc[self.period + j]);
                }
                sums
            })
            // Combined in chunk order on this thread: a work-stealing `reduce` would add the
            // partials in a different order from run to run (see `reduce`).
            .collect::<Vec<_>>()
            .into_iter()
            .fold(zero(), |mut x, y| {
                x.iter_mut().zip(&y).for_each(|(x, y)| {
                    x[0] += y[0];
                    x[1] += y[1];
                });
                x
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_fold_periods_into_features() {
        let layout = Periods::new(3);
        // 50 rows of (1, 2, 3): not a whole number of periods.
        let data: Vec<f32> = (0..150).map(|i| (i % 3 + 1) as f32).collect();
        let ones = layout.pattern(&[1.0, 1.0, 1.0]);
        let sums = layout.sums(&data, &data, (&ones, &ones), |a, _, p, _| (a * p, 1.0));
        assert_eq!(sums, vec![[50.0, 50.0], [100.0, 50.0], [150.0, 50.0]]);
    }
}
