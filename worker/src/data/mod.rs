//! The data pipeline: a dataset spec in, normalized batches out.
//!
//! # Layout
//! - `source/` lists a split (`listfile`, `folder`) or reads it whole (`idx`, `cifar`).
//! - `decode` turns image files into u8 pixels; `transform` fits them to the run's size and
//!   channels, and at batch time jitters (crop, flip) and normalizes them into the tensor.
//! - `normalize` holds the mean/std (given, or computed from train and cached on disk).
//! - [`plan`] is the epoch's order and the replicas' shares; `loader` the background
//!   threads, the bounded queue and the in-memory u8 cache.
//! - [`inspect`] and [`throughput`] back `ablate-worker data-inspect` and `data-bench`.
//!
//! Bad data never panics: a missing file, an undecodable image, a list line that does not
//! parse, a label out of range or a truncated binary is a [`BadSample`] naming the file
//! (and line or record); `on_bad_sample = "fail"` makes the first one the error,
//! `"skip"` leaves it out and reports it in [`DataSource::skipped`].

mod decode;
mod error;
pub mod inspect;
mod loader;
mod normalize;
pub mod plan;
pub mod roots;
mod source;
pub mod throughput;
mod transform;

pub use error::{BadSample, DataError, Location, Problem};
pub use loader::{Batch, BatchStream, Split};
pub use plan::{BatchOptions, EpochPlan};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ablate_common::spec::{BadSamplePolicy, DatasetSpec, Fit};

use loader::{accumulate_all, prepare_all, Shape, SplitInner};
use normalize::{Accumulator, Normalizer, Stats};
use source::{Items, ListContext, Listing};

/// An opened dataset: its splits, ready to stream.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// Training split.
    pub train: Split,
    /// Evaluation split.
    pub eval: Split,
    /// Held-out test split, when the spec names one.
    pub test: Option<Split>,
    /// Number of classes (the model's, checked against the data).
    pub classes: usize,
    /// Class names in label order (`folder`: the sub-directory names).
    pub class_names: Option<Vec<String>>,
    /// Per-channel mean used to normalize (0–1 scale).
    pub mean: Vec<f64>,
    /// Per-channel standard deviation used to normalize (0–1 scale).
    pub std: Vec<f64>,
    /// Samples left out at open under `on_bad_sample = "skip"`.
    pub skipped: Vec<BadSample>,
    /// The file holding the computed train statistics (`None` when the spec gives
    /// `mean` and `std`, or no cache directory is known).
    pub stats_file: Option<PathBuf>,
}

/// Opens a dataset for a model with `channels` input channels (1 or 3), `image_size`²
/// inputs and `classes` classes: lists (and for IDX/CIFAR reads) every split, applies the
/// bad-sample policy, checks the class count found in the data against `classes` (the
/// error gives both), decodes and caches the splits that fit `cache_mb`, and settles the
/// normalization.
pub fn open(
    spec: &DatasetSpec,
    channels: usize,
    image_size: usize,
    classes: usize,
) -> Result<DataSource, DataError> {
    open_with(spec, channels, image_size, Some(classes))
}

/// [`open`], with the class count taken from the data when `classes` is `None`.
pub(crate) fn open_with(
    spec: &DatasetSpec,
    channels: usize,
    image_size: usize,
    classes: Option<usize>,
) -> Result<DataSource, DataError> {
    spec.check().map_err(|e| DataError::Spec(e.to_string()))?;
    if channels != 1 && channels != 3 {
        return Err(DataError::Spec(format!(
            "{channels} channels (expected 1 or 3)"
        )));
    }
    if image_size == 0 {
        return Err(DataError::Spec("image size 0".into()));
    }
    let policy = spec.on_bad_sample;
    let mut skipped = Vec::new();

    let ctx = |split| ListContext {
        root: &spec.root,
        split,
        classes,
        class_names: None,
    };
    let mut train = source::list(spec, &spec.train, ctx("train"))?;
    let names = train.class_names.clone();
    let with_names = |split| ListContext {
        class_names: names.as_deref(),
        ..ctx(split)
    };
    let mut eval = source::list(spec, &spec.eval, with_names("eval"))?;
    let mut test = match &spec.test {
        Some(t) => Some(source::list(spec, t, with_names("test"))?),
        None => None,
    };
    for listing in [Some(&mut train), Some(&mut eval), test.as_mut()]
        .into_iter()
        .flatten()
    {
        apply_policy(policy, std::mem::take(&mut listing.bad), &mut skipped)?;
    }

    let classes = check_classes(spec, &[Some(&train), Some(&eval), test.as_ref()], classes)?;

    let shape = Shape {
        size: image_size,
        channels,
        fit: spec.fit,
    };
    let mut budget = spec.cache_mb.saturating_mul(1 << 20);
    let threads = spec.loader_threads.max(1);
    let mut prepared = Vec::new();
    let splits = [
        ("train", Some(&mut train)),
        ("eval", Some(&mut eval)),
        ("test", test.as_mut()),
    ];
    for (split, listing) in splits {
        let Some(listing) = listing else {
            prepared.push(None);
            continue;
        };
        let need = listing.items.len().saturating_mul(shape.sample_bytes());
        let cache = if need <= budget {
            budget -= need;
            let (mut cache, bad) = prepare_all(split, &listing.items, &shape, threads)?;
            let drop = apply_policy(policy, bad, &mut skipped)?;
            remove(
                &mut listing.items,
                Some(&mut cache),
                shape.sample_bytes(),
                &drop,
            );
            // The prepared copy is all the stream reads: the native pixels can go.
            listing.items.release_pixels();
            Some(cache)
        } else {
            None
        };
        check_not_empty(split, listing, &skipped)?;
        prepared.push(cache);
    }
    let mut caches = prepared.into_iter();
    let train_cache = caches.next().flatten();
    let eval_cache = caches.next().flatten();
    let test_cache = caches.next().flatten();

    let mut stats_file = None;
    let normalizer = match (&spec.mean, &spec.std) {
        (Some(mean), Some(std)) => Normalizer::from_spec(mean, std, channels)?,
        _ => {
            let key =
                normalize::cache_key(&train.fingerprint, fit_name(spec.fit), image_size, channels);
            stats_file = normalize::stats_path(&key);
            let cached = stats_file.as_deref().and_then(normalize::load);
            match cached.filter(|s| s.mean.len() == channels && s.std.len() == channels) {
                Some(stats) => Normalizer::new(stats),
                None => {
                    let stats = train_stats(
                        &mut train,
                        train_cache.as_deref(),
                        &shape,
                        threads,
                        policy,
                        &mut skipped,
                    )?;
                    if let Some(path) = &stats_file {
                        normalize::store(path, &stats);
                    }
                    Normalizer::new(stats)
                }
            }
        }
    };
    if !skipped.is_empty() {
        tracing::warn!(count = skipped.len(), first = %skipped[0], "bad samples skipped");
    }

    let make = |name: &str, listing: Listing, cache: Option<Vec<u8>>| Split {
        inner: Arc::new(SplitInner {
            name: name.to_string(),
            items: listing.items,
            shape: shape.clone(),
            cache,
            normalizer: normalizer.clone(),
            augment: spec.augment,
            threads,
            policy,
            skipped: Mutex::new(Vec::new()),
        }),
    };
    let class_names = train.class_names.clone();
    Ok(DataSource {
        train: make("train", train, train_cache),
        eval: make("eval", eval, eval_cache),
        test: test.map(|t| make("test", t, test_cache)),
        classes,
        class_names,
        mean: normalizer.stats.mean.clone(),
        std: normalizer.stats.std.clone(),
        stats_file,
        skipped,
    })
}

fn fit_name(fit: Fit) -> &'static str {
    match fit {
        Fit::Resize => "resize",
        Fit::Pad => "pad",
    }
}

/// Under `fail`, the first bad sample (by index) is the error; under `skip`, they are
/// recorded. Returns the indices to drop.
fn apply_policy<B: IntoBad>(
    policy: BadSamplePolicy,
    mut bad: Vec<B>,
    skipped: &mut Vec<BadSample>,
) -> Result<Vec<usize>, DataError> {
    bad.sort_by_key(|b| b.index());
    match policy {
        BadSamplePolicy::Fail => match bad.into_iter().next() {
            Some(first) => Err(DataError::bad(first.into_bad())),
            None => Ok(Vec::new()),
        },
        BadSamplePolicy::Skip => {
            let indices = bad.iter().filter_map(|b| b.dropped()).collect();
            skipped.extend(bad.into_iter().map(IntoBad::into_bad));
            Ok(indices)
        }
    }
}

/// A bad sample found at listing (already left out) or at decoding (still to remove).
trait IntoBad {
    fn index(&self) -> usize;
    fn dropped(&self) -> Option<usize>;
    fn into_bad(self) -> BadSample;
}

impl IntoBad for BadSample {
    fn index(&self) -> usize {
        0
    }
    fn dropped(&self) -> Option<usize> {
        None
    }
    fn into_bad(self) -> BadSample {
        self
    }
}

impl IntoBad for (usize, BadSample) {
    fn index(&self) -> usize {
        self.0
    }
    fn dropped(&self) -> Option<usize> {
        Some(self.0)
    }
    fn into_bad(self) -> BadSample {
        self.1
    }
}

/// Removes samples by index from the items and, when given, the prepared cache.
fn remove(items: &mut Items, cache: Option<&mut Vec<u8>>, bytes: usize, drop: &[usize]) {
    if drop.is_empty() {
        return;
    }
    let mut keep = vec![true; items.len()];
    for &i in drop {
        keep[i] = false;
    }
    if let Some(cache) = cache {
        let mut out = 0;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                if out != i {
                    cache.copy_within(i * bytes..(i + 1) * bytes, out * bytes);
                }
                out += 1;
            }
        }
        cache.truncate(out * bytes);
    }
    items.retain(&keep);
}

fn check_not_empty(split: &str, listing: &Listing, skipped: &[BadSample]) -> Result<(), DataError> {
    if listing.items.len() > 0 {
        return Ok(());
    }
    let n = skipped.iter().filter(|b| b.split == split).count();
    Err(DataError::Empty {
        split: split.to_string(),
        detail: if n > 0 {
            format!(" ({n} bad samples skipped)")
        } else {
            String::new()
        },
    })
}

/// The class count found in the data, checked against the model's.
fn check_classes(
    spec: &DatasetSpec,
    listings: &[Option<&Listing>],
    expected: Option<usize>,
) -> Result<usize, DataError> {
    let (inferred, how) = match &listings[0].and_then(|l| l.class_names.as_ref()) {
        Some(names) => {
            let dir = spec.train.dir.as_deref().unwrap_or(".");
            (
                names.len(),
                format!(
                    "{} class directories in {}",
                    names.len(),
                    spec.root.join(dir).display()
                ),
            )
        }
        None => {
            let max = listings
                .iter()
                .flatten()
                .flat_map(|l| (0..l.items.len()).map(|i| l.items.label(i)))
                .max();
            match max {
                Some(max) => (max as usize + 1, format!("labels 0..={max}")),
                None => (0, "no labels".to_string()),
            }
        }
    };
    match expected {
        Some(expected) if expected != inferred => Err(DataError::ClassCount {
            inferred,
            expected,
            how,
        }),
        _ => Ok(inferred),
    }
}

/// Mean and standard deviation of the (prepared) train split.
fn train_stats(
    train: &mut Listing,
    cache: Option<&[u8]>,
    shape: &Shape,
    threads: usize,
    policy: BadSamplePolicy,
    skipped: &mut Vec<BadSample>,
) -> Result<Stats, DataError> {
    if let Some(cache) = cache {
        let per_thread =
            cache.len().div_ceil(threads).div_ceil(shape.sample_bytes()) * shape.sample_bytes();
        let mut total = Accumulator::default();
        std::thread::scope(|scope| {
            let handles: Vec<_> = cache
                .chunks(per_thread.max(1))
                .map(|chunk| {
                    scope.spawn(move || {
                        let mut acc = Accumulator::default();
                        acc.add(chunk, shape.channels);
                        acc
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(acc) => total.merge(&acc),
                    Err(_) => return Err(DataError::Loader("a statistics thread panicked".into())),
                }
            }
            Ok(())
        })?;
        return Ok(total.stats(shape.channels));
    }
    let (acc, bad) = accumulate_all("train", &train.items, shape, threads)?;
    let drop = apply_policy(policy, bad, skipped)?;
    remove(&mut train.items, None, 0, &drop);
    check_not_empty("train", train, skipped)?;
    Ok(acc.stats(shape.channels))
}
