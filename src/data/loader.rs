//! The folder pipeline: samples → shuffled batches of `n × h × w × c` floats (channels last).
//!
//! Decoding runs in parallel (rayon), driven by two prefetch threads that assemble alternate
//! batches and stay up to [`prefetch_depth`] batches ahead of the trainer. Decoded images are cached as bytes
//! (after resizing, before rescaling: a quarter of the floats' size) while they fit in the
//! byte budget, so epochs after the first do not decode again. Shuffling is a permutation drawn
//! from the seed and the epoch number, so a run resumed at epoch `k` sees the same order.
//! Training batches may be augmented ([`super::augment`]): on the same threads, after the
//! cache, on a float copy, so the cache keeps the un-augmented bytes.

use super::augment::{Augmentation, Pixels};
use super::image::{load_bytes, load_rows, ImageProblem, ImageSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};

/// How many batches the prefetch lanes prepare ahead, at most.
pub const PREFETCH_BATCHES: usize = 3;

/// Bytes of prepared batches the prefetch queue holds, at most (but always one batch): a batch
/// of 32 224x224x3 images is 19 MB of floats, and each queued one is memory the run holds.
pub const PREFETCH_BYTES: usize = 32 << 20;

/// Batches queued ahead for `batch_size` images of `spec`: as many as fit in
/// [`PREFETCH_BYTES`], from 1 to [`PREFETCH_BATCHES`]. One is enough to overlap decoding with
/// training; more only smooth out uneven decode times.
pub fn prefetch_depth(batch_size: usize, spec: &ImageSpec) -> usize {
    let batch_bytes = batch_size
        .max(1)
        .saturating_mul(spec.len())
        .saturating_mul(std::mem::size_of::<f32>());
    (PREFETCH_BYTES / batch_bytes.max(1)).clamp(1, PREFETCH_BATCHES)
}

/// The cache budget where the machine's memory cannot be read: 2 GiB of decoded bytes.
pub const FALLBACK_CACHE_BYTES: usize = 2 << 30;

/// The share of the machine's memory the cache takes by default: a quarter.
pub const DEFAULT_CACHE_FRACTION: usize = 4;

/// The default cache budget: a quarter of the memory available when the run starts
/// (`MemAvailable` in `/proc/meminfo`: free memory plus what the kernel can reclaim, so it
/// leaves room for other programs, unlike the total), or [`FALLBACK_CACHE_BYTES`] where that
/// cannot be read.
pub fn default_cache_bytes() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| available_bytes(&text))
        .map_or(FALLBACK_CACHE_BYTES, |bytes| bytes / DEFAULT_CACHE_FRACTION)
}

/// `MemAvailable` (else `MemTotal`) of a `/proc/meminfo` text, in bytes.
pub fn available_bytes(meminfo: &str) -> Option<usize> {
    let bytes =
        meminfo_bytes(meminfo, "MemAvailable").or_else(|| meminfo_bytes(meminfo, "MemTotal"))?;
    Some(usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// The field `name` (`MemAvailable`, `SwapFree`, …) of a `/proc/meminfo` text, in bytes.
pub fn meminfo_bytes(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib.saturating_mul(1024))
    })
}

/// The cache budget in bytes: `--cache-mb` if given, else the spec's `data.cache_mb`, else
/// [`default_cache_bytes`].
pub fn cache_budget(flag_mb: Option<u64>, spec_mb: Option<u64>) -> usize {
    match flag_mb.or(spec_mb) {
        Some(mb) => usize::try_from(mb)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20),
        None => default_cache_bytes(),
    }
}

/// A sample: an image file and its class index.
pub type Sample = (PathBuf, usize);

/// One batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `n × h × w × c` values, rescaled.
    pub images: Vec<f32>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// Files of this batch that failed to decode (skipped).
    pub skipped: Vec<(PathBuf, ImageProblem)>,
}

impl Batch {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether every image of the batch was skipped.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A dataset that yields batches.
#[derive(Debug)]
pub struct Loader {
    samples: Arc<Vec<Sample>>,
    spec: ImageSpec,
    cache: Arc<Cache>,
}

impl Loader {
    /// A loader over `samples` (path, class) that caches up to `cache_bytes` of decoded images.
    pub fn new(samples: Vec<Sample>, spec: ImageSpec, cache_bytes: usize) -> Loader {
        let per_image = spec.len().max(1);
        let capacity = (cache_bytes / per_image).min(samples.len());
        Loader {
            cache: Arc::new(Cache {
                slots: (0..samples.len()).map(|_| Mutex::new(None)).collect(),
                capacity,
                used: Mutex::new(0),
            }),
            samples: Arc::new(samples),
            spec,
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, by index.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The order of the samples in `epoch` (0-based): shuffled from `seed` and the epoch, or in
    /// folder order when `shuffle` is false.
    pub fn order(&self, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        if shuffle {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of one epoch, in order, prepared on prefetch threads. The last batch may be
    /// smaller.
    pub fn batches(&self, order: Vec<usize>, batch_size: usize) -> Receiver<Batch> {
        self.augmented_batches(order, batch_size, None)
    }

    /// The batches of one epoch as [`Loader::batches`] gives them, every image augmented by
    /// `augmentation` when there is one (training batches only). An image's transform depends
    /// on the seed, the epoch and its index among the samples, not on `order` or `batch_size`.
    pub fn augmented_batches(
        &self,
        order: Vec<usize>,
        batch_size: usize,
        augmentation: Option<Augmentation>,
    ) -> Receiver<Batch> {
        // Two lanes assemble alternate batches, so that while one waits for the last image
        // of its batch, the decoding threads already work on the other's: a single lane
        // leaves a core idle at the end of every batch (two lanes decode 2% more images a
        // second on 2 cores). A lane hands its batch over only in its turn, so batches arrive
        // in order; the queue is one shorter than the depth because a lane holding a finished
        // batch is one more batch ahead.
        let (sender, receiver) = sync_channel(prefetch_depth(batch_size, &self.spec) - 1);
        let (order, batch_size) = (Arc::new(order), batch_size.max(1));
        let turn = Arc::new(Turn::default());
        for lane in 0..LANES {
            let (samples, cache, spec) = (
                Arc::clone(&self.samples),
                Arc::clone(&self.cache),
                self.spec,
            );
            let (order, turn, sender) = (Arc::clone(&order), Arc::clone(&turn), sender.clone());
            std::thread::spawn(move || {
                let _ends_turns_on_panic = EndOnPanic(&turn);
                let chunks = order.chunks(batch_size).enumerate();
                for (idx, chunk) in chunks.skip(lane).step_by(LANES) {
                    let batch = assemble(&samples, &cache, &spec, chunk, augmentation.as_ref());
                    if !turn.wait_for(idx) {
                        return;
                    }
                    let sent = sender.send(batch).is_ok();
                    turn.pass(sent);
                    if !sent {
                        return;
                    }
                }
            });
        }
        receiver
    }

    /// Puts images decoded elsewhere (the pre-flight scan's, by path) into the cache, within
    /// its budget, so the first epoch does not decode them again; takes the ones it uses.
    pub fn prefill(&self, decoded: &mut HashMap<PathBuf, Vec<u8>>) {
        for (index, (path, _)) in self.samples.iter().enumerate() {
            if let Some(bytes) = decoded.remove(path) {
                if bytes.len() == self.spec.len() {
                    self.cache.put(index, &Arc::new(bytes));
                }
            }
        }
    }

    /// Loads the samples at `indices` on the calling thread (for tests and small jobs).
    pub fn batch_now(&self, indices: &[usize]) -> Batch {
        assemble(&self.samples, &self.cache, &self.spec, indices, None)
    }

    /// [`Loader::batch_now`] with every image augmented by `augmentation`.
    pub fn augmented_batch_now(&self, indices: &[usize], augmentation: &Augmentation) -> Batch {
        assemble(
            &self.samples,
            &self.cache,
            &self.spec,
            indices,
            Some(augmentation),
        )
    }
}

/// Threads assembling batches at once (see [`Loader::augmented_batches`]).
const LANES: usize = 2;

/// Whose turn it is to hand a batch over: the index of the next batch to send, or `None` once
/// the receiver has gone (every lane then stops).
#[derive(Debug)]
struct Turn {
    next: Mutex<Option<usize>>,
    changed: Condvar,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            next: Mutex::new(Some(0)),
            changed: Condvar::new(),
        }
    }
}

impl Turn {
    /// Waits until batch `idx` is the next to send; false when the receiver has gone.
    fn wait_for(&self, idx: usize) -> bool {
        let Ok(mut next) = self.next.lock() else {
            return false;
        };
        loop {
            match *next {
                Some(next) if next == idx => return true,
                Some(_) => {}
                None => return false,
            }
            next = match self.changed.wait(next) {
                Ok(next) => next,
                Err(_) => return false,
            };
        }
    }

    /// Passes the turn to the next batch after one was sent, or ends it for every lane when the
    /// send failed (the receiver has gone).
    fn pass(&self, sent: bool) {
        if let Ok(mut next) = self.next.lock() {
            *next = if sent { next.map(|idx| idx + 1) } else { None };
        }
        self.changed.notify_all();
    }
}

/// Ends every lane's turn if a lane panics, so the other lane does not wait for it forever
/// (the receiver then sees the epoch end early, as with one lane).
struct EndOnPanic<'a>(&'a Turn);

impl Drop for EndOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.pass(false);
        }
    }
}

/// Decoded images kept as bytes, one slot per sample.
#[derive(Debug)]
struct Cache {
    slots: Vec<Mutex<Option<Arc<Vec<u8>>>>>,
    capacity: usize,
    used: Mutex<usize>,
}

impl Cache {
    fn get(&self, index: usize) -> Option<Arc<Vec<u8>>> {
        self.slots.get(index)?.lock().ok()?.clone()
    }

    fn put(&self, index: usize, bytes: &Arc<Vec<u8>>) {
        let Ok(mut used) = self.used.lock() else {
            return;
        };
        if *used >= self.capacity {
            return;
        }
        if let Some(Ok(mut slot)) = self.slots.get(index).map(Mutex::lock) {
            if slot.is_none() {
                *slot = Some(Arc::clone(bytes));
                *used += 1;
            }
        }
    }
}

/// Loads the samples at `indices` into one batch, in parallel: each image is decoded (or
/// taken from the cache), augmented if asked, and written rescaled into its place in the
/// batch on the same thread. Images that fail are left out, with why.
fn assemble(
    samples: &[Sample],
    cache: &Cache,
    spec: &ImageSpec,
    indices: &[usize],
    augmentation: Option<&Augmentation>,
) -> Batch {
    let per_image = spec.len();
    let n_values = indices.len() * per_image;
    // The batch is written by the decoding threads without being zeroed first: zeroing a
    // batch of 224x224x3 images (19 MB at 32) on the prefetch thread took a tenth of a
    // decode-bound epoch, with the decoding threads idle.
    let mut images: Vec<f32> = Vec::with_capacity(n_values);
    let problems: Vec<Option<ImageProblem>> = images.spare_capacity_mut()[..n_values]
        .par_chunks_mut(per_image.max(1))
        .zip(indices.par_iter())
        .map(|(slot, &index)| {
            let problem = fill_slot(slot, samples, cache, spec, index, augmentation).err();
            if problem.is_some() {
                for value in slot.iter_mut() {
                    value.write(0.0);
                }
            }
            problem
        })
        .collect();
    // SAFETY: the slots cover the first `n_values` values (`indices.len()` chunks of
    // `per_image`), and each was written whole above.
    unsafe { images.set_len(n_values) };
    let mut batch = Batch {
        images,
        labels: Vec::with_capacity(indices.len()),
        skipped: Vec::new(),
    };
    // Left-pack the images that loaded over the slots of those that did not.
    let mut kept = 0;
    for (slot_idx, (&index, problem)) in indices.iter().zip(problems).enumerate() {
        match problem {
            None => {
                if kept != slot_idx {
                    batch.images.copy_within(
                        slot_idx * per_image..(slot_idx + 1) * per_image,
                        kept * per_image,
                    );
                }
                batch.labels.push(samples[index].1);
                kept += 1;
            }
            Some(problem) => batch.skipped.push((samples[index].0.clone(), problem)),
        }
    }
    batch.images.truncate(kept * per_image);
    batch
}

/// Writes one sample's values, rescaled (and augmented when asked), into its slot of the
/// batch: from the cache, or decoded and then cached. On success every value of the slot is
/// written; on failure none may be.
fn fill_slot(
    slot: &mut [MaybeUninit<f32>],
    samples: &[Sample],
    cache: &Cache,
    spec: &ImageSpec,
    index: usize,
    augmentation: Option<&Augmentation>,
) -> Result<(), ImageProblem> {
    let written = match (cache.get(index), augmentation) {
        (Some(bytes), None) => rescale_into(&bytes, spec.rescale, slot),
        (Some(bytes), Some(augmentation)) => augment_into(&bytes, spec, augmentation, index, slot),
        (None, None) => {
            // Each row goes to the batch while the decoder still has it in cache, instead of
            // in a second pass over the whole image.
            let (row_len, stream) = (spec.width * spec.channels, streams(spec.len()));
            let loaded = load_rows(&samples[index].0, spec, |row_idx, row| {
                if let Some(target) = slot.get_mut(row_idx * row_len..(row_idx + 1) * row_len) {
                    rescale_row(row, spec.rescale, target, stream);
                }
            });
            // Once per image, not per row: a fence after each row's streaming stores made
            // `strata data bench` about 5% slower.
            #[cfg(target_arch = "x86_64")]
            if stream {
                stream::fence();
            }
            let bytes = loaded?;
            let written = bytes.len().min(slot.len());
            cache.put(index, &Arc::new(bytes));
            written
        }
        (None, Some(augmentation)) => {
            let bytes = Arc::new(load_bytes(&samples[index].0, spec)?);
            cache.put(index, &bytes);
            augment_into(&bytes, spec, augmentation, index, slot)
        }
    };
    // INVARIANT: an image has `spec.len()` values; zeros fill the slot if not.
    for value in slot.iter_mut().skip(written) {
        value.write(0.0);
    }
    Ok(())
}

/// Writes the decoded `bytes` of sample `index`, augmented and rescaled, over the start of
/// `slot`; returns how many values it wrote.
fn augment_into(
    bytes: &[u8],
    spec: &ImageSpec,
    augmentation: &Augmentation,
    index: usize,
    slot: &mut [MaybeUninit<f32>],
) -> usize {
    let pixels = Pixels::from_bytes(bytes, spec.height, spec.width, spec.channels);
    let values = augmentation.apply(index, pixels).values;
    for (value, &augmented) in slot.iter_mut().zip(&values) {
        value.write(augmented * spec.rescale);
    }
    values.len()
}

/// An image at least this large (in bytes of floats) is written to its batch slot with
/// non-temporal stores. A batch of such images is far larger than the caches, so writing it
/// through them costs a read of every line before its write, and evicts what the decoder
/// keeps there; smaller images are read back from cache by the model, so they go through it.
const STREAM_BYTES: usize = 256 * 1024;

/// Whether an image of `values` floats is written to its batch slot with streaming stores.
fn streams(values: usize) -> bool {
    values * size_of::<f32>() >= STREAM_BYTES
}

/// Writes `bytes` times `scale` over the start of `slot`; returns how many values it wrote.
fn rescale_into(bytes: &[u8], scale: f32, slot: &mut [MaybeUninit<f32>]) -> usize {
    let len = bytes.len().min(slot.len());
    let stream = streams(len);
    rescale_row(&bytes[..len], scale, &mut slot[..len], stream);
    #[cfg(target_arch = "x86_64")]
    if stream {
        stream::fence();
    }
    len
}

/// Writes `bytes` times `scale` over `slot` (as long as `bytes`). With `stream`, through
/// streaming stores, which the caller must follow with [`stream::fence`] before the values
/// are read on another thread.
fn rescale_row(bytes: &[u8], scale: f32, slot: &mut [MaybeUninit<f32>], stream: bool) {
    #[cfg(target_arch = "x86_64")]
    if stream {
        stream::rescale(bytes, scale, slot);
        return;
    }
    let _ = stream;
    rescale_each(bytes, scale, slot);
}

/// Writes `bytes` times `scale` over `slot`, one value at a time.
fn rescale_each(bytes: &[u8], scale: f32, slot: &mut [MaybeUninit<f32>]) {
    for (value, &byte) in slot.iter_mut().zip(bytes) {
        value.write(f32::from(byte) * scale);
    }
}

#[cfg(target_arch = "x86_64")]
mod stream {
    use std::arch::x86_64::{
        __m128i, _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32, _mm512_mul_ps, _mm512_set1_ps,
        _mm512_stream_ps, _mm_cvtepi32_ps, _mm_loadu_si128, _mm_mul_ps, _mm_set1_ps,
        _mm_setzero_si128, _mm_sfence, _mm_stream_ps, _mm_unpackhi_epi16, _mm_unpackhi_epi8,
        _mm_unpacklo_epi16, _mm_unpacklo_epi8,
    };
    use std::mem::MaybeUninit;

    /// Orders the streaming stores made so far before any later store or read, so that
    /// another thread sees the values once it is handed them.
    pub fn fence() {
        // SAFETY: SSE is part of x86_64.
        unsafe { _mm_sfence() };
    }

    /// [`super::rescale_each`] with streaming stores: whole cache lines at a time with
    /// AVX-512, else SSE2 (which every x86_64 CPU has). The values are the same as the scalar
    /// loop's: one conversion and one multiplication each. Unfenced: see [`fence`].
    pub fn rescale(bytes: &[u8], scale: f32, slot: &mut [MaybeUninit<f32>]) {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked here).
            unsafe { rescale_avx512(bytes, scale, slot) };
            return;
        }
        rescale_sse2(bytes, scale, slot);
    }

    /// [`rescale`] on AVX-512: each step widens 16 bytes to 16 floats and streams them as one
    /// cache line.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rescale_avx512(bytes: &[u8], scale: f32, slot: &mut [MaybeUninit<f32>]) {
        // Streaming stores of 64 bytes need 64-byte alignment: the values before it go one at
        // a time.
        let head = slot.as_ptr().align_offset(64).min(slot.len());
        super::rescale_each(&bytes[..head], scale, &mut slot[..head]);
        let body = (slot.len() - head) / 16 * 16;
        let tail = head + body;
        // SAFETY: each step reads 16 bytes at `head + i` and writes 16 floats at `head + i`,
        // with `i + 16 <= body`, inside both slices (`slot` is at least as long as `bytes`);
        // the stores are 64-byte aligned (`head` aligns them, and 16 floats are 64 bytes).
        unsafe {
            let factor = _mm512_set1_ps(scale);
            let source = bytes.as_ptr().add(head);
            let target = slot.as_mut_ptr().add(head).cast::<f32>();
            for i in (0..body).step_by(16) {
                let packed = _mm_loadu_si128(source.add(i).cast());
                let floats =
                    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(packed)), factor);
                _mm512_stream_ps(target.add(i), floats);
            }
        }
        super::rescale_each(&bytes[tail..], scale, &mut slot[tail..]);
    }

    /// [`rescale`] on SSE2.
    pub(super) fn rescale_sse2(bytes: &[u8], scale: f32, slot: &mut [MaybeUninit<f32>]) {
        // Streaming stores need 16-byte alignment: the values before it go one at a time.
        let head = slot.as_ptr().align_offset(16).min(slot.len());
        super::rescale_each(&bytes[..head], scale, &mut slot[..head]);
        let body = (slot.len() - head) / 16 * 16;
        let tail = head + body;
        // SAFETY: SSE2 is part of x86_64. Each step reads 16 bytes at `head + i` and writes 16
        // floats at `head + i`, with `i + 16 <= body`, inside both slices (`slot` is at least
        // as long as `bytes`); the stores are 16-byte aligned (`head` aligns them, and 16
        // floats are 64 bytes).
        unsafe {
            let zero = _mm_setzero_si128();
            let factor = _mm_set1_ps(scale);
            let source = bytes.as_ptr().add(head);
            let target = slot.as_mut_ptr().add(head).cast::<f32>();
            let widen = |words: __m128i| {
                [
                    _mm_unpacklo_epi16(words, zero),
                    _mm_unpackhi_epi16(words, zero),
                ]
            };
            for i in (0..body).step_by(16) {
                let packed = _mm_loadu_si128(source.add(i).cast());
                let [a, b] = widen(_mm_unpacklo_epi8(packed, zero));
                let [c, d] = widen(_mm_unpackhi_epi8(packed, zero));
                for (k, ints) in [a, b, c, d].into_iter().enumerate() {
                    let floats = _mm_mul_ps(_mm_cvtepi32_ps(ints), factor);
                    _mm_stream_ps(target.add(i + 4 * k), floats);
                }
            }
        }
        super::rescale_each(&bytes[tail..], scale, &mut slot[tail..]);
    }
}

/// Splits each class's samples: the first `fraction` of every class (in folder order) is held
/// out for validation, as Keras's `validation_split` does; returns (training, validation).
pub fn split(samples: &[Sample], n_classes: usize, fraction: f64) -> (Vec<Sample>, Vec<Sample>) {
    let mut train = Vec::new();
    let mut validation = Vec::new();
    for class in 0..n_classes {
        let of_class: Vec<&(PathBuf, usize)> =
            samples.iter().filter(|(_, c)| *c == class).collect();
        let n_validation = (of_class.len() as f64 * fraction).floor() as usize;
        for (idx, sample) in of_class.into_iter().enumerate() {
            if idx < n_validation {
                validation.push(sample.clone());
            } else {
                train.push(sample.clone());
            }
        }
    }
    (train, validation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming path writes the same values as one multiplication each, wherever the
    /// slot starts (aligned or not) and whatever the length's remainder: through the dispatch
    /// and, on x86_64, through each kernel this CPU has.
    #[test]
    fn rescaling_a_large_image_writes_each_value_once_scaled() {
        let mut kernels: Vec<(&str, Rescale)> = vec![("dispatch", rescale_into)];
        #[cfg(target_arch = "x86_64")]
        {
            kernels.push(("sse2", |bytes, scale, slot| {
                stream::rescale_sse2(bytes, scale, &mut slot[..bytes.len()]);
                bytes.len()
            }));
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(("avx512", |bytes, scale, slot| {
                    // SAFETY: the CPU has AVX-512F (checked before this kernel was listed).
                    unsafe { stream::rescale_avx512(bytes, scale, &mut slot[..bytes.len()]) };
                    bytes.len()
                }));
            }
        }
        for (name, kernel) in kernels {
            writes_each_value_once_scaled(name, kernel);
        }
    }

    /// A rescaling kernel: writes the bytes' values over the slot's start, returns how many.
    type Rescale = fn(&[u8], f32, &mut [MaybeUninit<f32>]) -> usize;

    fn writes_each_value_once_scaled(name: &str, kernel: Rescale) {
        let len = STREAM_BYTES / size_of::<f32>() + 37;
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let scale = 1.0 / 255.0;
        // Every start within a 64-byte line, so every head length of the AVX-512 kernel.
        for offset in 0..16 {
            let mut slot = vec![MaybeUninit::new(-1.0_f32); len + 20];
            let written = kernel(&bytes, scale, &mut slot[offset..offset + len + 3]);
            assert_eq!(written, len, "{name}");
            for (i, &byte) in bytes.iter().enumerate() {
                // SAFETY: every value of `slot` was initialised above.
                let value = unsafe { slot[offset + i].assume_init() };
                assert_eq!(
                    value.to_bits(),
                    (f32::from(byte) * scale).to_bits(),
                    "{name}: value {i} at offset {offset}"
                );
            }
            // SAFETY: as above.
            let after = unsafe { slot[offset + len].assume_init() };
            assert_eq!(after, -1.0, "{name}: nothing past the image is written");
        }
    }
}
