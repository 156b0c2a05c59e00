//! Parallel reductions whose result does not depend on thread timing.
//!
//! Rayon's `fold`/`reduce` split work where threads steal it, so the order in which
//! floating-point partial sums meet changes from run to run and the last bits of a gradient
//! with it. That breaks the promise that a resumed run repeats the uninterrupted one. Here the
//! items are cut into a fixed number of groups that depends only on their count; each group is
//! folded in order on some thread, and the partials are combined left to right on the caller.

use rayon::prelude::*;

/// At most this many partial results: enough to keep a large machine busy, few enough that
/// combining them costs little next to the work that produced them.
const MAX_GROUPS: usize = 16;

/// Folds `items` (with their indices) in parallel and combines the group partials in order;
/// the same items always give the same bits, whatever the thread count or scheduling.
pub fn fold_in_order<T, A>(
    items: Vec<T>,
    init: impl Fn() -> A + Sync + Send,
    fold: impl Fn(A, usize, T) -> A + Sync + Send,
    combine: impl Fn(A, A) -> A,
) -> A
where
    T: Send,
    A: Send,
{
    let group_len = items.len().div_ceil(MAX_GROUPS).max(1);
    let partials: Vec<A> = items
        .into_par_iter()
        .enumerate()
        .chunks(group_len)
        .map(|group| {
            group
                .into_iter()
                .fold(init(), |acc, (index, item)| fold(acc, index, item))
        })
        .collect();
    partials.into_iter().reduce(combine).unwrap_or_else(init)
}

/// Adds a partial (weight gradient, bias gradient) pair into another, element by element.
pub fn add_pairs(
    (mut dw, mut db): (Vec<f32>, Vec<f32>),
    (dw2, db2): (Vec<f32>, Vec<f32>),
) -> (Vec<f32>, Vec<f32>) {
    dw.iter_mut().zip(&dw2).for_each(|(a, b)| *a += b);
    db.iter_mut().zip(&db2).for_each(|(a, b)| *a += b);
    (dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_the_same_bits_on_any_thread_count() {
        let items: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 + 1e-7)
            .collect();
        let sum = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| fold_in_order(items.clone(), || 0.0f32, |a, _, v| a + v, |a, b| a + b))
        };
        let one = sum(1);
        for threads in [2, 3, 8] {
            for _ in 0..5 {
                assert_eq!(sum(threads).to_bits(), one.to_bits());
            }
        }
        let sequential_groups: f32 = items
            .chunks(10_000usize.div_ceil(MAX_GROUPS))
            .map(|g| g.iter().fold(0.0f32, |a, v| a + v))
            .fold(None, |acc: Option<f32>, v| Some(acc.map_or(v, |a| a + v)))
            .expect("non-empty");
        assert_eq!(one.to_bits(), sequential_groups.to_bits());
    }

    #[test]
    fn indices_follow_the_items() {
        let seen = fold_in_order(
            vec!['a', 'b', 'c'],
            Vec::new,
            |mut v, i, c| {
                v.push((i, c));
                v
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        );
        assert_eq!(seen, vec![(0, 'a'), (1, 'b'), (2, 'c')]);
    }
}
