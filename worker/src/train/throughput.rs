//! Training throughput on random data: the number `ablate-worker bench` prints and
//! `bench/compare_pytorch.sh` sets beside PyTorch's on the same architecture.

use std::time::Instant;

use ablate_common::arch::Architecture;
use ablate_common::spec::OptimizerKind;
use serde::Serialize;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::train::optimizer::Optimizer;
use crate::train::step::forward_backward;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The model.
    pub arch: Architecture,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    pub warmup: usize,
    /// Intra-op threads.
    pub threads: usize,
    /// Where to train.
    pub device: Device,
    /// Autocast as a run with `mixed_precision` trains (bfloat16 on GPUs that have it).
    pub mixed_precision: bool,
}

/// The measurement, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Model name.
    pub model: String,
    /// Input size.
    pub image_size: usize,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Intra-op threads.
    pub threads: usize,
    /// Device name.
    pub device: String,
    /// Training images per second over the timed steps.
    pub images_per_sec: f64,
    /// The dtype the model computed in (`fp32`, `bf16`), read from its logits.
    pub compute_dtype: String,
}

/// Why a throughput measurement could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ThroughputError {
    /// The device cannot say whether it supports bfloat16.
    #[error("mixed precision: {0}")]
    Precision(#[source] crate::train::precision::PrecisionError),
    /// The model cannot run at this input size.
    #[error("model `{model}`: {source}")]
    Model {
        /// The model.
        model: String,
        /// Why.
        #[source]
        source: ablate_common::arch::ArchError,
    },
    /// A training step failed: most often the batch does not fit the device's memory.
    #[error("a training step of batch {batch} failed{hint}: {source}")]
    Step {
        /// The batch size.
        batch: usize,
        /// What to try, when the failure says the memory ran out.
        hint: &'static str,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
}

impl ThroughputError {
    fn step(batch: usize, source: tch::TchError) -> ThroughputError {
        let text = source.to_string().to_ascii_lowercase();
        let hint = if text.contains("out of memory") || text.contains("can't allocate") {
            " (out of memory: try a smaller --batch)"
        } else {
            ""
        };
        ThroughputError::Step {
            batch,
            hint,
            source,
        }
    }
}

/// Runs the engine's training step (forward, backward, momentum update) `warmup + steps`
/// times on one random batch.
///
/// # Errors
/// When the device cannot say whether it supports bfloat16, the model cannot run, or a step
/// fails (an out-of-memory batch size says so).
pub fn run(config: &BenchConfig) -> Result<BenchResult, ThroughputError> {
    tch::set_num_threads(config.threads.max(1) as i32);
    tch::manual_seed(0);
    let device = config.device;
    let autocast = crate::train::precision::autocast_for(config.mixed_precision, device)
        .map_err(ThroughputError::Precision)?;
    let arch = &config.arch;
    let vs = nn::VarStore::new(device);
    let net =
        crate::model::try_build(&vs.root(), arch).map_err(|source| ThroughputError::Model {
            model: arch.name.clone(),
            source,
        })?;
    let params: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    let mut opt = Optimizer::new(OptimizerKind::Momentum, 0.9, 0.0, params);
    let size = arch.image_size as i64;
    let step_error = |e| ThroughputError::step(config.batch, e);
    let images = Tensor::f_randn(
        [config.batch as i64, arch.channels as i64, size, size],
        (Kind::Float, device),
    )
    .map_err(step_error)?;
    let labels = Tensor::f_randint(
        arch.classes as i64,
        [config.batch as i64],
        (Kind::Int64, device),
    )
    .map_err(step_error)?;
    // The engine's own step: the same forward/backward and optimizer update a run makes.
    let mut compute_kind = Kind::Float;
    let mut step = || -> Result<(), ThroughputError> {
        let out = forward_backward(&net, opt.tensors(), &images, &labels, autocast)
            .map_err(step_error)?;
        opt.step(0.001, &out.grads);
        compute_kind = out.compute_kind;
        Ok(())
    };
    for _ in 0..config.warmup {
        step()?;
    }
    synchronize(device);
    let started = Instant::now();
    for _ in 0..config.steps {
        step()?;
    }
    synchronize(device);
    let seconds = started.elapsed().as_secs_f64();
    Ok(BenchResult {
        model: arch.name.clone(),
        image_size: arch.image_size,
        batch: config.batch,
        steps: config.steps,
        threads: config.threads,
        device: match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        },
        images_per_sec: (config.steps * config.batch) as f64 / seconds.max(1e-9),
        compute_dtype: crate::train::precision::kind_name(compute_kind).into(),
    })
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
