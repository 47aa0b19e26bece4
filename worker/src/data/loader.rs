//! Splits and their batch streams: background threads prepare batches ahead of the training
//! step through bounded channels; a split whose prepared images fit the cache budget is
//! decoded once (at open) and shared by every epoch and replica.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ablate_common::spec::{Augment, BadSamplePolicy, Fit};
use crossbeam_channel::{bounded, Receiver, Sender};
use tch::{Device, Kind, Tensor};

use super::decode::{Decoder, View};
use super::error::{BadSample, DataError, Problem};
use super::normalize::{Accumulator, Normalizer};
use super::plan::{jitter, BatchOptions, EpochPlan};
use super::source::Items;
use super::transform::{write_normalized, Jitter, Preparer};

/// Batches each loader thread may hold ready ahead of the consumer.
const PREFETCH_PER_THREAD: usize = 2;

/// One batch: normalized images and their labels, on the CPU.
#[derive(Debug)]
pub struct Batch {
    /// `[n, C, H, W]` f32, normalized.
    pub images: Tensor,
    /// `[n]` i64 class indices.
    pub labels: Tensor,
}

/// How a split's images become tensors.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) size: usize,
    pub(crate) channels: usize,
    pub(crate) fit: Fit,
}

impl Shape {
    pub(crate) fn sample_bytes(&self) -> usize {
        self.size * self.size * self.channels
    }
}

#[derive(Debug)]
pub(crate) struct SplitInner {
    pub(crate) name: String,
    pub(crate) items: Items,
    pub(crate) shape: Shape,
    /// Prepared images (`len × size² × channels` u8, HWC), when they fit the budget.
    pub(crate) cache: Option<Vec<u8>>,
    pub(crate) normalizer: Normalizer,
    pub(crate) augment: Augment,
    pub(crate) threads: usize,
    pub(crate) policy: BadSamplePolicy,
    /// Bad samples met while streaming (uncached image files under `skip`).
    pub(crate) skipped: Mutex<Vec<BadSample>>,
}

/// One split of a dataset, cheap to clone and share between replicas and threads.
#[derive(Debug, Clone)]
pub struct Split {
    pub(crate) inner: Arc<SplitInner>,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inner.items.len()
    }

    /// Whether the split has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `train`, `eval` or `test`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the prepared images are held in memory.
    pub fn is_cached(&self) -> bool {
        self.inner.cache.is_some()
    }

    /// The label of every sample, in the split's order.
    pub fn labels(&self) -> Vec<i64> {
        (0..self.len())
            .map(|i| self.inner.items.label(i) as i64)
            .collect()
    }

    /// Shape of one image tensor: `[channels, size, size]`.
    pub fn image_shape(&self) -> [usize; 3] {
        let s = &self.inner.shape;
        [s.channels, s.size, s.size]
    }

    /// Bad samples skipped while streaming (image files decoded per epoch under
    /// `on_bad_sample = "skip"`); those found at open are in `DataSource::skipped`.
    pub fn skipped(&self) -> Vec<BadSample> {
        self.inner
            .skipped
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Number of batches [`Split::batches`] yields with these options (0 when the options
    /// are invalid: the stream then yields the error).
    pub fn steps(&self, opts: &BatchOptions) -> usize {
        EpochPlan::steps_for(self.len(), opts)
    }

    /// The batches of one replica for one epoch, prepared by `loader_threads` background
    /// threads; dropping the stream stops them. See [`EpochPlan`] for the order and the
    /// shares, [`BatchOptions`] for the options. A batch is shorter than its share only
    /// when an image file turns out bad while streaming under `skip`.
    pub fn batches(&self, opts: &BatchOptions) -> BatchStream {
        let plan = match EpochPlan::new(self.len(), opts) {
            Ok(plan) => Arc::new(plan),
            Err(e) => return BatchStream::failed(e),
        };
        let steps = plan.steps();
        let threads = self.inner.threads.clamp(1, steps.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::new();
        let mut handles = Vec::new();
        if steps > 0 {
            for t in 0..threads {
                let (tx, rx) = bounded(PREFETCH_PER_THREAD);
                let (inner, plan, flag, opts) =
                    (self.inner.clone(), plan.clone(), stop.clone(), *opts);
                let spawned = std::thread::Builder::new()
                    .name(format!("loader-{}-{t}", self.inner.name))
                    .spawn(move || produce(&inner, &plan, &opts, t, threads, &tx, &flag));
                match spawned {
                    Ok(handle) => {
                        receivers.push(rx);
                        handles.push(handle);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return BatchStream::failed(DataError::Loader(format!(
                            "cannot start a loader thread: {e}"
                        )));
                    }
                }
            }
        }
        BatchStream {
            receivers,
            handles,
            stop,
            next: 0,
            steps,
            pending: None,
            done: false,
        }
    }
}

/// A loader thread: batches `t`, `t + threads`, … of the plan, in order, into its channel.
fn produce(
    inner: &SplitInner,
    plan: &EpochPlan,
    opts: &BatchOptions,
    t: usize,
    threads: usize,
    tx: &Sender<Result<Batch, DataError>>,
    stop: &AtomicBool,
) {
    let mut worker = Worker::new(&inner.shape);
    let mut k = t;
    while k < plan.steps() && !stop.load(Ordering::Relaxed) {
        let result = worker.batch(inner, plan.batch(k), opts);
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
        k += threads;
    }
}

/// The batches of one replica for one epoch, in order.
#[derive(Debug)]
pub struct BatchStream {
    receivers: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
    steps: usize,
    pending: Option<DataError>,
    done: bool,
}

impl BatchStream {
    fn failed(error: DataError) -> BatchStream {
        BatchStream {
            receivers: Vec::new(),
            handles: Vec::new(),
            stop: Arc::new(AtomicBool::new(true)),
            next: 0,
            steps: 0,
            pending: Some(error),
            done: false,
        }
    }

    /// Batches this stream yields in all (including those already taken).
    pub fn steps(&self) -> usize {
        self.steps
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.done || self.next >= self.steps {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(Ok(batch)) => Some(Ok(batch)),
            Ok(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Err(_) => {
                self.done = true;
                Some(Err(DataError::Loader(format!(
                    "loader thread ended before batch {} of {}",
                    self.next - 1,
                    self.steps
                ))))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.done { 0 } else { self.steps - self.next };
        (left, Some(left + usize::from(self.pending.is_some())))
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers wakes threads blocked on a full channel.
        self.receivers.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Per-thread state: decode buffers, the resizer, a prepared-image buffer.
#[derive(Debug)]
pub(crate) struct Worker {
    decoder: Decoder,
    preparer: Preparer,
    scratch: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(shape: &Shape) -> Worker {
        Worker {
            decoder: Decoder::default(),
            preparer: Preparer::new(shape.size, shape.channels, shape.fit),
            scratch: vec![0; shape.sample_bytes()],
        }
    }

    /// Prepares sample `index` of `items` into `out`, without the cache.
    pub(crate) fn prepare_into(
        &mut self,
        split: &str,
        items: &Items,
        index: usize,
        out: &mut [u8],
    ) -> Result<(), BadSample> {
        match items {
            Items::Memory(raw) => {
                let view = View {
                    width: raw.width,
                    height: raw.height,
                    channels: raw.channels,
                    data: raw.image(index),
                };
                self.preparer.prepare(view, out).map_err(|why| BadSample {
                    split: split.to_string(),
                    location: super::error::Location::Record {
                        file: std::path::PathBuf::from("<memory>"),
                        index,
                    },
                    problem: Problem::Undecodable(why),
                })
            }
            Items::Files(files) => {
                let sample = &files[index];
                let bad = |problem| BadSample {
                    split: split.to_string(),
                    location: sample.location.clone(),
                    problem,
                };
                let view = self.decoder.decode(sample.location.file()).map_err(bad)?;
                self.preparer
                    .prepare(view, out)
                    .map_err(|why| bad(Problem::Undecodable(why)))
            }
        }
    }

    /// Sample `index` prepared: from the cache, or into the scratch buffer.
    fn prepared<'a>(
        &'a mut self,
        inner: &'a SplitInner,
        index: usize,
    ) -> Result<&'a [u8], BadSample> {
        let bytes = inner.shape.sample_bytes();
        if let Some(cache) = &inner.cache {
            return Ok(&cache[index * bytes..(index + 1) * bytes]);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.prepare_into(&inner.name, &inner.items, index, &mut scratch);
        self.scratch = scratch;
        result.map(|()| &self.scratch[..])
    }

    /// Assembles one batch from sample indices.
    fn batch(
        &mut self,
        inner: &SplitInner,
        indices: &[usize],
        opts: &BatchOptions,
    ) -> Result<Batch, DataError> {
        let shape = &inner.shape;
        let per_sample = shape.sample_bytes();
        let dims = [
            indices.len() as i64,
            shape.channels as i64,
            shape.size as i64,
            shape.size as i64,
        ];
        let mut images = Tensor::f_empty(dims, (Kind::Float, Device::Cpu))?;
        let mut labels = Vec::with_capacity(indices.len());
        let augment = opts.augment && (inner.augment.crop_padding > 0 || inner.augment.hflip);
        {
            let out = uninit_f32(&mut images);
            for &index in indices {
                let jit = if augment {
                    jitter(
                        opts.seed,
                        opts.epoch,
                        index,
                        inner.augment.crop_padding,
                        inner.augment.hflip,
                    )
                } else {
                    Jitter::default()
                };
                match self.prepared(inner, index) {
                    Ok(pixels) => {
                        let slot = labels.len();
                        let target = &mut out[slot * per_sample..(slot + 1) * per_sample];
                        write_normalized(pixels, shape.size, &inner.normalizer.luts, jit, target);
                        labels.push(inner.items.label(index) as i64);
                    }
                    Err(bad) if inner.policy == BadSamplePolicy::Skip => {
                        tracing::warn!(sample = %bad, "skipping a bad sample");
                        if let Ok(mut skipped) = inner.skipped.lock() {
                            skipped.push(bad);
                        }
                    }
                    Err(bad) => return Err(DataError::bad(bad)),
                }
            }
        }
        if labels.len() < indices.len() {
            images = images.f_narrow(0, 0, labels.len() as i64)?;
        }
        Ok(Batch {
            images,
            labels: Tensor::f_from_slice(&labels)?,
        })
    }
}

/// The memory of a fresh CPU f32 tensor, to be written once.
fn uninit_f32(tensor: &mut Tensor) -> &mut [MaybeUninit<f32>] {
    let numel = tensor.numel();
    if numel == 0 {
        return &mut [];
    }
    debug_assert!(
        tensor.kind() == Kind::Float && tensor.device() == Device::Cpu && tensor.is_contiguous()
    );
    // SAFETY: the tensor was just made by `Tensor::empty` (CPU, f32, contiguous), so its data
    // pointer addresses `numel` f32 that nothing else references; the slice borrows the
    // tensor mutably, so the tensor cannot be used or dropped while the slice lives.
    // `MaybeUninit` makes no claim about the (uninitialised) contents.
    unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut MaybeUninit<f32>, numel) }
}

/// A bad sample and its index in the split.
pub(crate) type Indexed = (usize, BadSample);

/// Prepares every sample of `items` into one buffer with `threads` threads; returns the
/// buffer and the samples that could not be prepared (by index).
pub(crate) fn prepare_all(
    split: &str,
    items: &Items,
    shape: &Shape,
    threads: usize,
) -> Result<(Vec<u8>, Vec<Indexed>), DataError> {
    let bytes = shape.sample_bytes();
    let n = items.len();
    let mut cache = vec![0u8; n * bytes];
    if n == 0 {
        return Ok((cache, Vec::new()));
    }
    let per_thread = n.div_ceil(threads.max(1));
    let bad = std::thread::scope(|scope| {
        let handles: Vec<_> = cache
            .chunks_mut(per_thread * bytes)
            .enumerate()
            .map(|(t, chunk)| {
                scope.spawn(move || {
                    let mut worker = Worker::new(shape);
                    let mut bad = Vec::new();
                    for (j, out) in chunk.chunks_exact_mut(bytes).enumerate() {
                        let index = t * per_thread + j;
                        if let Err(b) = worker.prepare_into(split, items, index, out) {
                            bad.push((index, b));
                        }
                    }
                    bad
                })
            })
            .collect();
        let mut bad = Vec::new();
        for handle in handles {
            bad.extend(handle.join().map_err(|_| panicked())?);
        }
        Ok::<_, DataError>(bad)
    })?;
    Ok((cache, bad))
}

fn panicked() -> DataError {
    DataError::Loader("a decoding thread panicked".into())
}

/// Statistics over every sample of `items` without keeping them (a split too large for the
/// cache), with `threads` threads; also returns the samples that could not be prepared.
pub(crate) fn accumulate_all(
    split: &str,
    items: &Items,
    shape: &Shape,
    threads: usize,
) -> Result<(Accumulator, Vec<Indexed>), DataError> {
    let n = items.len();
    let threads = threads.clamp(1, n.max(1));
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut worker = Worker::new(shape);
                    let mut out = vec![0u8; shape.sample_bytes()];
                    let mut acc = Accumulator::default();
                    let mut bad = Vec::new();
                    for index in t * per_thread..((t + 1) * per_thread).min(n) {
                        match worker.prepare_into(split, items, index, &mut out) {
                            Ok(()) => acc.add(&out, shape.channels),
                            Err(b) => bad.push((index, b)),
                        }
                    }
                    (acc, bad)
                })
            })
            .collect();
        let mut total = Accumulator::default();
        let mut bad = Vec::new();
        for handle in handles {
            let (acc, b) = handle.join().map_err(|_| panicked())?;
            total.merge(&acc);
            bad.extend(b);
        }
        Ok((total, bad))
    })
}
