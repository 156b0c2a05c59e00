//! Parallel reductions whose result depends neither on thread timing nor on how a batch was
//! split.
//!
//! Rayon's `fold`/`reduce` split work where threads steal it, so the order in which
//! floating-point partial sums meet changes from run to run and the last bits of a gradient
//! with it. That breaks the promise that a resumed run repeats the uninterrupted one. Here
//! every item (an image of a batch, for the gradients) is folded on its own into a leaf, and
//! the leaves meet in a fixed binary tree: a run of `n` leaves is the sum of its first
//! `⌈n/2⌉` and its last `⌊n/2⌋`, each summed the same way. Threads take subtrees, so any
//! thread count gives the same bits.
//!
//! The tree also makes a sum over a batch the same as the sums over its halves added
//! together, and so on down: a data-parallel run on 2, 4, 8… ranks, each summing its equal,
//! contiguous share of a batch, adds exactly the subtrees one process adds
//! (docs/distributed.md).

/// Folds `items` (with their indices) and combines them in the fixed tree above: each item is
/// folded alone into `init()`, and leaves are combined by halves. The same items always give
/// the same bits, whatever the thread count or scheduling.
pub fn fold_in_order<T, A>(
    items: Vec<T>,
    init: impl Fn() -> A + Sync + Send,
    fold: impl Fn(A, usize, T) -> A + Sync + Send,
    combine: impl Fn(A, A) -> A + Sync + Send,
) -> A
where
    T: Send,
    A: Send,
{
    let leaves: Vec<Vec<(usize, T)>> = items.into_iter().enumerate().map(|i| vec![i]).collect();
    tree(leaves, &init, &fold, &combine)
}

/// [`fold_in_order`] with consecutive items of one `key` (the blocks of one image) folded in
/// order into one leaf: the tree runs over the keys, so it does not depend on how many blocks
/// an image was cut into.
pub fn fold_in_order_by<T, A>(
    items: Vec<T>,
    key: impl Fn(&T) -> usize,
    init: impl Fn() -> A + Sync + Send,
    fold: impl Fn(A, usize, T) -> A + Sync + Send,
    combine: impl Fn(A, A) -> A + Sync + Send,
) -> A
where
    T: Send,
    A: Send,
{
    let mut leaves: Vec<Vec<(usize, T)>> = Vec::new();
    let mut last_key = None;
    for (index, item) in items.into_iter().enumerate() {
        let k = key(&item);
        match leaves.last_mut() {
            Some(leaf) if last_key == Some(k) => leaf.push((index, item)),
            _ => leaves.push(vec![(index, item)]),
        }
        last_key = Some(k);
    }
    tree(leaves, &init, &fold, &combine)
}

/// The tree sum of `leaves`, its halves in parallel.
fn tree<T, A, I, F, C>(mut leaves: Vec<Vec<(usize, T)>>, init: &I, fold: &F, combine: &C) -> A
where
    T: Send,
    A: Send,
    I: Fn() -> A + Sync + Send,
    F: Fn(A, usize, T) -> A + Sync + Send,
    C: Fn(A, A) -> A + Sync + Send,
{
    match leaves.len() {
        0 => init(),
        1 => leaves
            .pop()
            .into_iter()
            .flatten()
            .fold(init(), |acc, (index, item)| fold(acc, index, item)),
        n => {
            let right = leaves.split_off(n.div_ceil(2));
            let (a, b) = rayon::join(
                || tree(leaves, init, fold, combine),
                || tree(right, init, fold, combine),
            );
            combine(a, b)
        }
    }
}

/// The sum of `values` in [`fold_in_order`]'s tree (sequential: for short runs of scalars or
/// small vectors, such as per-image sums).
pub fn tree_sum<A: Clone>(values: &[A], zero: A, add: &impl Fn(A, A) -> A) -> A {
    match values.len() {
        0 => zero,
        1 => values[0].clone(),
        n => {
            let (left, right) = values.split_at(n.div_ceil(2));
            add(
                tree_sum(left, zero.clone(), add),
                tree_sum(right, zero, add),
            )
        }
    }
}

/// `out = Σ leaf(n)` over the images `images`, in `reduce`'s tree (`leaf` overwrites its
/// slice; `out` is overwritten).
pub fn batch_tree(
    images: std::ops::Range<usize>,
    out: &mut [f32],
    leaf: &impl Fn(usize, &mut [f32]),
) {
    match images.len() {
        0 => out.fill(0.0),
        1 => leaf(images.start, out),
        n => {
            let mid = images.start + n.div_ceil(2);
            batch_tree(images.start..mid, out, leaf);
            let mut right = vec![0.0f32; out.len()];
            batch_tree(mid..images.end, &mut right, leaf);
            out.iter_mut().zip(&right).for_each(|(a, b)| *a += b);
        }
    }
}

/// One step of [`tree_program`]: push the tree sum of a run of images, or add the top two
/// partial sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeStep {
    /// Push the sum of the `len` images from `start`, in the tree's own order over them (a
    /// run no longer than the program's group, which a kernel adds in registers).
    Leaf { start: usize, len: usize },
    /// Replace the top two partial sums by their sum (the lower one plus the upper one).
    Add,
}

/// [`batch_tree`]'s order over `images` as a postfix program for a stack of partial sums, and
/// the stack depth it needs: for kernels that keep the partial sums of a small block of
/// outputs in cache and run the tree once per block. Subtrees of at most `group` images are
/// one [`TreeStep::Leaf`], which the kernel must sum in the same tree (the first `⌈len/2⌉`
/// plus the rest, each the same way): the result is the per-image tree's, bit for bit.
pub fn tree_program(images: std::ops::Range<usize>, group: usize) -> (Vec<TreeStep>, usize) {
    fn build(images: std::ops::Range<usize>, group: usize, program: &mut Vec<TreeStep>) -> usize {
        match images.len() {
            0 => 0,
            len if len <= group => {
                program.push(TreeStep::Leaf {
                    start: images.start,
                    len,
                });
                1
            }
            n => {
                let mid = images.start + n.div_ceil(2);
                let left = build(images.start..mid, group, program);
                let right = build(mid..images.end, group, program);
                program.push(TreeStep::Add);
                left.max(right + 1)
            }
        }
    }
    let mut program = Vec::with_capacity(2 * images.len());
    let depth = build(images, group.max(1), &mut program);
    (program, depth)
}

/// Runs `program` on a stack of partial sums that `stack` holds, slot 0 at the bottom:
/// `leaf(stack, slot, start, len)` writes the sum of its `len` images from `start` over slot
/// `slot`, and `add(stack, lower)` adds slot `lower + 1` into slot `lower`. The sum ends in
/// slot 0, and no slot past the program's depth is used.
#[inline(always)]
pub fn run_program<S: ?Sized>(
    program: &[TreeStep],
    stack: &mut S,
    mut leaf: impl FnMut(&mut S, usize, usize, usize),
    mut add: impl FnMut(&mut S, usize),
) {
    let mut top = 0;
    for step in program {
        match *step {
            TreeStep::Leaf { start, len } => {
                leaf(stack, top, start, len);
                top += 1;
            }
            TreeStep::Add => {
                // The program adds only when two partial sums are on the stack.
                top -= 1;
                add(stack, top - 1);
            }
        }
    }
}

/// The most images a leaf of [`add_gradients_in_runs`] sums before its weight gradient meets
/// the others'. A data-parallel step keeps the one-process bits while every rank's share is
/// more than half of it (3 images or more; docs/distributed.md).
pub const RUN: usize = 4;

/// Adds to `grad_weight` (and `grad_bias`, `bias_len` long, when given) the sum over `items`
/// (one per image) of the images' weight and bias gradients, in [`fold_in_order`]'s tree cut
/// short at runs of up to `run` images (at most [`RUN`]; 1 is the tree over single images):
/// the first subtree of at most `run` images (the first `⌈n/2⌉` and the rest, each split the
/// same way) is one leaf.
/// `leaf(start, items, dw, db)` writes the weight gradient of that run (`items`, from image
/// `start`) over every value of `dw` (`grad_weight`'s length, holding whatever an earlier use
/// left) and adds its bias gradient into `db` (zeros), in an order of its own that it keeps
/// fixed.
///
/// For kernels whose weight gradient leaves the image in another domain or in partial tiles
/// (a Winograd transform, a matrix product over one image's pixels): a run is summed there and
/// comes back once, where an image at a time came back once per image (taking a 64-filter 3x3
/// layer's Winograd gradient back on 7x7 maps cost as much as its products). A run is a
/// subtree, so the sum depends neither on the thread count nor on a split of the batch into
/// equal shares of more than `RUN / 2` images (each such share's runs are its own; see
/// `split::ranks_for`).
///
/// A leaf's weight gradient lives in a pooled buffer ([`buffers::take`]) that its run writes
/// over: a zeroed buffer per image, added into, was a memset and a read of the whole gradient
/// per image (the memset alone was 8% of a `perf` profile of a 64-channel 3x3 layer's training
/// step on 8x8 maps).
///
/// [`buffers::take`]: crate::backend::ops::buffers::take
pub fn add_gradients_in_runs<T: Send>(
    (items, run): (Vec<T>, usize),
    grad_weight: &mut [f32],
    (grad_bias, bias_len): (Option<&mut [f32]>, usize),
    leaf: impl Fn(usize, Vec<T>, &mut [f32], &mut [f32]) + Sync + Send,
) {
    use crate::backend::ops::buffers;
    type Partial = (Vec<f32>, Vec<f32>);
    /// A leaf's weight and bias lengths, and the run.
    #[derive(Clone, Copy)]
    struct Lens {
        weight: usize,
        bias: usize,
        run: usize,
    }
    fn runs<T: Send, L>(start: usize, mut items: Vec<T>, len: Lens, leaf: &L) -> Partial
    where
        L: Fn(usize, Vec<T>, &mut [f32], &mut [f32]) + Sync + Send,
    {
        let n = items.len();
        if n <= len.run {
            let (mut dw, mut db) = (buffers::take(len.weight), vec![0.0; len.bias]);
            leaf(start, items, &mut dw, &mut db);
            return (dw, db);
        }
        let right = items.split_off(n.div_ceil(2));
        let mid = start + n.div_ceil(2);
        let ((mut dw, mut db), (dw_right, db_right)) = rayon::join(
            || runs(start, items, len, leaf),
            || runs(mid, right, len, leaf),
        );
        add_pair_into((&mut dw, &mut db), (&dw_right, &db_right));
        buffers::give(dw_right);
        (dw, db)
    }
    if items.is_empty() {
        return;
    }
    let lens = Lens {
        weight: grad_weight.len(),
        bias: bias_len,
        run: run.clamp(1, RUN),
    };
    let (dw, db) = runs(0, items, lens, &leaf);
    grad_weight.iter_mut().zip(&dw).for_each(|(a, b)| *a += b);
    if let Some(grad_bias) = grad_bias {
        grad_bias.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
    }
    buffers::give(dw);
}

/// Adds a partial (weight gradient, bias gradient) pair into another, element by element.
pub fn add_pairs(
    (mut dw, mut db): (Vec<f32>, Vec<f32>),
    (dw2, db2): (Vec<f32>, Vec<f32>),
) -> (Vec<f32>, Vec<f32>) {
    add_pair_into((&mut dw, &mut db), (&dw2, &db2));
    (dw, db)
}

/// [`add_pairs`] in place: `(dw, db) += (dw2, db2)`, value by value.
pub fn add_pair_into((dw, db): (&mut [f32], &mut [f32]), (dw2, db2): (&[f32], &[f32])) {
    dw.iter_mut().zip(dw2).for_each(|(a, b)| *a += b);
    db.iter_mut().zip(db2).for_each(|(a, b)| *a += b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_program_adds_as_batch_tree_does() {
        for batch in [1usize, 2, 3, 5, 7, 8, 13, 32] {
            let values: Vec<f32> = (0..batch).map(|i| 0.1 + i as f32 / 7.0).collect();
            let mut expected = [0.0f32];
            batch_tree(0..batch, &mut expected, &|n, out| out[0] = values[n]);
            for group in [1, 2, 4] {
                let (program, depth) = tree_program(0..batch, group);
                let mut stack = Vec::new();
                for step in &program {
                    match *step {
                        TreeStep::Leaf { start, len } => {
                            assert!(len <= group);
                            stack.push(tree_sum(&values[start..start + len], 0.0, &|a, b| a + b));
                        }
                        TreeStep::Add => {
                            let top = stack.pop().unwrap();
                            *stack.last_mut().unwrap() += top;
                        }
                    }
                    assert!(stack.len() <= depth, "batch {batch} group {group}");
                }
                assert_eq!(stack, vec![expected[0]], "batch {batch} group {group}");
            }
        }
        assert_eq!(tree_program(0..0, 4), (Vec::new(), 0));
    }

    #[test]
    fn runs_written_over_pooled_buffers_sum_in_the_tree_cut_at_runs() {
        use crate::backend::ops::buffers;
        let (images, len) = (13usize, 3000usize);
        let grad = |n: usize, i: usize| ((n * 31 + i * 7) % 97) as f32 / 97.0 - 0.31 + 1e-7;
        // Stale buffers in the pool: a leaf that added into one instead of writing over it
        // would carry the NaNs into the sum.
        for _ in 0..4 {
            buffers::give(vec![f32::NAN; len]);
        }
        let mut weight = vec![0.5f32; len];
        let mut bias = vec![0.25f32; 2];
        let runs = std::sync::Mutex::new(Vec::new());
        add_gradients_in_runs(
            ((0..images).collect(), RUN),
            &mut weight,
            (Some(&mut bias), 2),
            |start, items: Vec<usize>, dw, db| {
                runs.lock().expect("runs").push(start..start + items.len());
                for (i, n) in items.into_iter().enumerate() {
                    assert_eq!(n, start + i);
                    dw.iter_mut().enumerate().for_each(|(j, w)| match i {
                        0 => *w = grad(n, j),
                        _ => *w += grad(n, j),
                    });
                    db.iter_mut().for_each(|b| *b += n as f32);
                }
            },
        );
        // 13 images: 7 and 6, then runs of 4 + 3 and 3 + 3.
        let mut runs = runs.into_inner().expect("runs");
        runs.sort_by_key(|run| run.start);
        assert_eq!(runs, vec![0..4, 4..7, 7..10, 10..13]);
        fn tree(images: std::ops::Range<usize>, grad: &dyn Fn(usize) -> f32) -> f32 {
            if images.len() <= RUN {
                return images.map(grad).fold(0.0, |a, b| a + b);
            }
            let mid = images.start + images.len().div_ceil(2);
            tree(images.start..mid, grad) + tree(mid..images.end, grad)
        }
        let expected: Vec<u32> = (0..len)
            .map(|i| (0.5 + tree(0..images, &|n| grad(n, i))).to_bits())
            .collect();
        assert_eq!(
            weight.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
            expected
        );
        let db = tree(0..images, &|n| n as f32);
        assert_eq!(bias, vec![0.25 + db; 2]);
    }

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
        let reference = tree_sum(&items, 0.0f32, &|a, b| a + b);
        assert_eq!(one.to_bits(), reference.to_bits());
    }

    #[test]
    fn a_sum_is_the_sum_of_its_halves_and_of_its_quarters() {
        let items: Vec<f32> = (0..48).map(|i| 1.0 / (i as f32 + 1.7)).collect();
        let sum = |v: &[f32]| fold_in_order(v.to_vec(), || 0.0f32, |a, _, x| a + x, |a, b| a + b);
        let whole = sum(&items);
        assert_eq!(
            whole.to_bits(),
            (sum(&items[..24]) + sum(&items[24..])).to_bits()
        );
        let q: Vec<f32> = items.chunks(12).map(sum).collect();
        assert_eq!(whole.to_bits(), ((q[0] + q[1]) + (q[2] + q[3])).to_bits());
        // Left to right, the same numbers round differently: the tree is what makes it exact.
        let in_order = items.iter().fold(0.0f32, |a, x| a + x);
        assert_ne!(whole.to_bits(), in_order.to_bits());
    }

    #[test]
    fn blocks_of_one_key_fold_into_one_leaf() {
        // Keys 0,0,1,1,1,2: three leaves, the first two meeting first.
        let items = vec![
            (0, 1.0f32),
            (0, 2.0),
            (1, 3.0),
            (1, 4.0),
            (1, 5.0),
            (2, 6.0),
        ];
        let seen = fold_in_order_by(
            items,
            |item| item.0,
            Vec::new,
            |mut v: Vec<Vec<f32>>, _, (_, x)| {
                match v.last_mut() {
                    Some(last) => last.push(x),
                    None => v.push(vec![x]),
                }
                v
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        );
        assert_eq!(seen, vec![vec![1.0, 2.0], vec![3.0, 4.0, 5.0], vec![6.0]]);
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
