//! `ablate-worker data-bench`: decode-to-normalized-batch throughput of the real loader
//! (threads, bounded queue, tensors), with the cache off so that every epoch decodes.
//! `bench/torchvision_loader.py` measures torchvision's `ImageFolder` + `DataLoader` the same
//! way: shuffled, ImageNet mean/std, best of the epochs (the first warms the page cache).

use std::path::PathBuf;
use std::time::Instant;

use ablate_common::spec::{Augment, BadSamplePolicy, DatasetFormat, DatasetSpec, Fit, SplitSpec};
use serde::Serialize;

use super::error::DataError;
use super::plan::BatchOptions;

/// ImageNet mean and std (torchvision's `references/classification`), as in the Python side.
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `folder` (the root holds class sub-directories) or `listfile` (with `list`).
    pub format: DatasetFormat,
    /// Dataset root.
    pub root: PathBuf,
    /// The list file for `listfile`, relative to the root.
    pub list: Option<String>,
    /// Output height and width.
    pub image_size: usize,
    /// Batch size.
    pub batch: usize,
    /// Loader threads.
    pub threads: usize,
    /// Passes over the data (the best one is reported).
    pub epochs: u32,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `ablate`.
    pub loader: String,
    /// Images per epoch.
    pub images: usize,
    /// Loader threads.
    pub threads: usize,
    /// Output height and width.
    pub image_size: usize,
    /// Batch size.
    pub batch: usize,
    /// Seconds of each epoch.
    pub epoch_seconds: Vec<f64>,
    /// Images per second of the best epoch.
    pub images_per_sec: f64,
}

/// Runs the benchmark.
pub fn bench(opts: &BenchOptions) -> Result<BenchReport, DataError> {
    let split = match opts.format {
        DatasetFormat::Folder => SplitSpec {
            dir: Some(".".into()),
            ..SplitSpec::default()
        },
        DatasetFormat::Listfile => SplitSpec {
            list: Some(
                opts.list
                    .clone()
                    .ok_or_else(|| DataError::Spec("listfile needs a list".into()))?,
            ),
            ..SplitSpec::default()
        },
        other => {
            return Err(DataError::Spec(format!(
                "data-bench measures image decoding: use folder or listfile, not {other:?}"
            )))
        }
    };
    let spec = DatasetSpec {
        format: opts.format,
        root: opts.root.clone(),
        train: split.clone(),
        eval: split,
        test: None,
        fit: Fit::Resize,
        mean: Some(IMAGENET_MEAN.to_vec()),
        std: Some(IMAGENET_STD.to_vec()),
        augment: Augment::default(),
        on_bad_sample: BadSamplePolicy::Fail,
        cache_mb: 0,
        loader_threads: opts.threads.max(1),
    };
    let source = super::open_with(&spec, 3, opts.image_size, None)?;
    let mut epoch_seconds = Vec::new();
    let mut images = 0;
    for epoch in 0..opts.epochs.max(1) {
        let batch_opts = BatchOptions {
            epoch,
            seed: 1,
            shuffle: true,
            ..BatchOptions::sequential(opts.batch.max(1))
        };
        let start = Instant::now();
        images = 0;
        for batch in source.train.batches(&batch_opts) {
            images += batch?.images.size()[0] as usize;
        }
        epoch_seconds.push(start.elapsed().as_secs_f64());
    }
    let best = epoch_seconds.iter().cloned().fold(f64::INFINITY, f64::min);
    Ok(BenchReport {
        loader: "ablate".into(),
        images,
        threads: opts.threads.max(1),
        image_size: opts.image_size,
        batch: opts.batch,
        epoch_seconds,
        images_per_sec: images as f64 / best,
    })
}
