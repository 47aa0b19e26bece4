//! The training loop: replicas, epochs, evaluation, checkpoints.
//!
//! One replica per device. Rank 0 runs on the calling thread (it talks to the observer);
//! the others run on scoped threads. Every replica starts from rank 0's weights, takes its
//! slice of each global batch, and the gradients are summed by the [`Collective`] weighted
//! by slice size, so n replicas compute the gradient of the whole batch's mean loss — the
//! same gradient one replica computes on the whole batch.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ablate_common::arch::{ArchError, Architecture};
use ablate_common::metrics::EpochRecord;
use ablate_common::spec::{DeviceList, RunSpec};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::checkpoint::{self, CheckpointError};
use super::optimizer::{Optimizer, OptimizerStateError};
use super::pacing::CheckpointPacer;
use super::precision::{self, PrecisionError};
use super::step::{forward_backward, StepOutput};
use crate::collective::{Collective, CollectiveError, CpuCollective};
use crate::data::{BatchOptions, DataError, DataSource, Split};
use crate::devices::RunDevicesError;
use crate::model::{Network, ReplicaRng, RngError};

/// How long a replica waits for its peers at a collective before failing the run.
const COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(600);

/// Test-only: `RANK:STEP` makes replica RANK panic at its STEP-th training step (0-based,
/// counted from the start of this process's part of the run), as a CUDA out-of-memory
/// panics inside a tch op.
pub const PANIC_REPLICA_ENV: &str = "ABLATE_TEST_PANIC_REPLICA";

/// Held while a run seeds torch's global generator and initialises its weights: the seed
/// and the draws that follow belong to one run even when an agent starts two at once.
static WEIGHT_INIT: Mutex<()> = Mutex::new(());

/// Errors that end a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model could not be built for the spec.
    #[error("model: {0}")]
    Model(#[source] ArchError),
    /// The checkpoint's weights or optimizer state do not fit the model.
    #[error("model: {0}")]
    State(#[source] StateMismatch),
    /// Reading a batch failed.
    #[error("data: {0}")]
    Data(#[source] DataError),
    /// Checkpoint problem.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A replica's collective failed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// libtorch raised an error (its first line is shown; the rest is its backtrace).
    #[error("libtorch: {}", first_line(.0))]
    Torch(#[source] tch::TchError),
    /// A device the spec names is not usable here.
    #[error("device: {0}")]
    Device(#[source] ReplicaSetupError),
    /// A replica panicked (a CUDA out-of-memory in a tch op, a bug); its group was aborted.
    #[error("replica {rank} panicked: {message}")]
    Panicked {
        /// The replica's rank.
        rank: usize,
        /// The panic's message.
        message: String,
    },
}

/// Why a run's replicas cannot be set up here: their devices, or the test hook that makes
/// one of them panic.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetupError {
    /// The devices do not exist here, or need NCCL this build lacks.
    #[error(transparent)]
    Devices(#[from] RunDevicesError),
    /// A CUDA device cannot say whether it computes in bfloat16.
    #[error(transparent)]
    Precision(#[from] PrecisionError),
    /// A replica's generator cannot be made.
    #[error(transparent)]
    Rng(#[from] RngError),
    /// [`PANIC_REPLICA_ENV`] is set to something other than `RANK:STEP`.
    #[error("{PANIC_REPLICA_ENV}={0}: expected RANK:STEP")]
    PanicHook(String),
}

/// Weights or optimizer state of a checkpoint that the model cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateMismatch {
    /// A variable of the model is not in the checkpoint.
    #[error("checkpoint lacks variable `{0}`")]
    Missing(String),
    /// A variable has another shape in the checkpoint.
    #[error("checkpoint variable `{name}` has shape {saved:?}, the model needs {needed:?}")]
    Shape {
        /// The variable.
        name: String,
        /// Its shape in the checkpoint.
        saved: Vec<i64>,
        /// Its shape in the model.
        needed: Vec<i64>,
    },
    /// The optimizer state does not fit the model's variables.
    #[error(transparent)]
    Optimizer(#[from] OptimizerStateError),
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e)
    }
}

/// The first line of libtorch's error (the rest is a C++ backtrace).
fn first_line(e: &tch::TchError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// What a run needs besides its data.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run spec.
    pub spec: RunSpec,
    /// The model, built from the catalogue for the spec.
    pub arch: Architecture,
    /// Devices, one replica each.
    pub devices: DeviceList,
    /// Where the checkpoint is written after every epoch.
    pub run_dir: PathBuf,
    /// Continue from the checkpoint in `run_dir` when there is one.
    pub resume: bool,
    /// Intra-op threads per replica.
    pub threads_per_replica: usize,
    /// Set to stop at the next step (the run can resume from its last checkpoint).
    pub stop: Arc<AtomicBool>,
}

/// Called by rank 0 as the run goes: the standalone command prints, the agent streams.
pub trait Observer {
    /// The run starts (or resumes) at `start_epoch` (0-based) with `params` parameters.
    fn on_start(&mut self, _params: u64, _start_epoch: u32, _steps_per_epoch: u64) {}
    /// A training step finished; `loss` is given one step out of `log_every_steps`.
    fn on_step(&mut self, _epoch: u32, _step: u64, _steps_per_epoch: u64, _loss: Option<f64>) {}
    /// An evaluation batch finished (evaluation is progress too: a watchdog counts it).
    fn on_eval_step(&mut self, _epoch: u32, _batch: u64) {}
    /// An epoch finished; its checkpoint is on disk at `checkpoint`, unless this epoch was
    /// not checkpointed ([`crate::train::pacing`]).
    fn on_epoch(&mut self, _record: &EpochRecord, _checkpoint: Option<&std::path::Path>) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every epoch trained.
    Completed {
        /// Metrics of every epoch (resumed ones included).
        history: Vec<EpochRecord>,
        /// Trainable parameters.
        params: u64,
        /// Wall time of this process's part of the run.
        wall_seconds: f64,
    },
    /// Stopped on request; `completed_epochs` are checkpointed.
    Stopped {
        /// Epochs in the last checkpoint.
        completed_epochs: u32,
    },
}

struct Replica {
    rank: usize,
    device: Device,
    /// The CUDA autocast dtype, `None` for float32.
    autocast: Option<Kind>,
    /// Training steps taken by this process (the test-only panic counts them).
    steps_taken: u64,
    /// The step at which to panic ([`PANIC_REPLICA_ENV`]).
    panic_at: Option<u64>,
    vs: nn::VarStore,
    net: Network,
    opt: Optimizer,
    /// Float buffers (BN running statistics), averaged across replicas every epoch.
    buffers: Vec<Tensor>,
}

/// Trains `opts.spec` on `data`, reporting to `observer`.
pub fn train(
    opts: &TrainOptions,
    data: &DataSource,
    observer: &mut dyn Observer,
) -> Result<Outcome, TrainError> {
    let started = Instant::now();
    let spec = &opts.spec;
    let devices = torch_devices(&opts.devices)?;
    let world = devices.len();
    tch::set_num_threads(opts.threads_per_replica.max(1) as i32);

    let mut replicas = Vec::with_capacity(world);
    {
        let _init = WEIGHT_INIT.lock().unwrap_or_else(|p| p.into_inner());
        tch::manual_seed(spec.seed as i64);
        for (rank, device) in devices.iter().enumerate() {
            replicas.push(build_replica(rank, *device, opts)?);
        }
    }
    let panic_at = injected_panic()?;
    for r in replicas.iter_mut() {
        r.panic_at = panic_at.and_then(|(rank, step)| (rank == r.rank).then_some(step));
    }
    let spec_hash = spec.training_hash();
    let mut history = Vec::new();
    let mut start_epoch = 0;
    if opts.resume {
        if let Some(ck) = checkpoint::load(&opts.run_dir, &spec_hash)? {
            restore(&mut replicas[0], &ck)?;
            start_epoch = ck.meta.epoch;
            history = ck.meta.history;
        }
    } else if opts.run_dir.join(checkpoint::CHECKPOINT_FILE).exists() {
        return Err(TrainError::Checkpoint(CheckpointError::Write {
            path: opts.run_dir.join(checkpoint::CHECKPOINT_FILE),
            message: "a checkpoint already exists; resume it or choose another directory".into(),
        }));
    }
    // Broadcast rank 0's weights and optimizer state.
    let (first, rest) = replicas.split_at_mut(1);
    for r in rest.iter_mut() {
        r.vs.copy(&first[0].vs)?;
        r.opt
            .load_state(&first[0].opt.state())
            .map_err(|e| TrainError::State(e.into()))?;
    }
    let params: u64 = first[0]
        .vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as u64)
        .sum();

    let collective: Arc<dyn Collective> = Arc::new(CpuCollective::new(world, COLLECTIVE_TIMEOUT));
    #[cfg(feature = "cuda")]
    let collective: Arc<dyn Collective> = if devices.iter().all(|d| d.is_cuda()) && world > 1 {
        Arc::new(crate::collective::NcclCollective::new(
            &devices,
            COLLECTIVE_TIMEOUT,
        )?)
    } else {
        collective
    };

    let steps_per_epoch = data.train.steps(&train_options(spec, 0, 0, world)) as u64;
    observer.on_start(params, start_epoch, steps_per_epoch);
    if start_epoch >= spec.epochs {
        return Ok(Outcome::Completed {
            history,
            params,
            wall_seconds: started.elapsed().as_secs_f64(),
        });
    }

    let mut others = replicas.split_off(1);
    let mut rank0 = replicas.pop().expect("rank 0 exists");
    let result = std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter_mut()
            .map(|replica| {
                let collective = collective.clone();
                scope.spawn(move || {
                    tch::set_num_threads(opts.threads_per_replica.max(1) as i32);
                    guarded(replica.rank, &*collective, || {
                        let run = ReplicaRun {
                            replica,
                            opts,
                            collective: &*collective,
                            observer: &mut Silent,
                        };
                        run_epochs(run, data, start_epoch, &mut Vec::new())
                    })
                })
            })
            .collect();
        let r0 = guarded(rank0.rank, &*collective, || {
            let run = ReplicaRun {
                replica: &mut rank0,
                opts,
                collective: &*collective,
                observer,
            };
            run_epochs(run, data, start_epoch, &mut history)
        });
        // The first failure is the cause; the peers' errors are the abort it sent them.
        let mut first_error = None;
        let mut first_panic = None;
        for (index, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e @ TrainError::Panicked { .. })) => {
                    first_panic.get_or_insert(e);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(payload) => {
                    first_error.get_or_insert(TrainError::Panicked {
                        rank: index + 1,
                        message: panic_message(payload.as_ref()),
                    });
                }
            }
        }
        match (r0, first_panic, first_error) {
            (Err(e @ TrainError::Panicked { .. }), _, _) => Err(e),
            (_, Some(panic), _) => Err(panic),
            (Ok(stopped), None, None) => Ok(stopped),
            (Err(e), None, _) => Err(e),
            (Ok(_), None, Some(e)) => Err(e),
        }
    });
    match result? {
        EpochsEnd::Stopped(completed_epochs) => Ok(Outcome::Stopped { completed_epochs }),
        EpochsEnd::Finished => Ok(Outcome::Completed {
            history,
            params,
            wall_seconds: started.elapsed().as_secs_f64(),
        }),
    }
}

fn torch_devices(devices: &DeviceList) -> Result<Vec<Device>, TrainError> {
    crate::devices::check_run(devices).map_err(|e| TrainError::Device(e.into()))?;
    Ok(match devices {
        DeviceList::Cpu(n) => vec![Device::Cpu; *n],
        DeviceList::Cuda(ordinals) => ordinals.iter().map(|&i| Device::Cuda(i)).collect(),
    })
}

/// Reads [`PANIC_REPLICA_ENV`].
fn injected_panic() -> Result<Option<(usize, u64)>, TrainError> {
    let Ok(text) = std::env::var(PANIC_REPLICA_ENV) else {
        return Ok(None);
    };
    let parsed = text
        .split_once(':')
        .and_then(|(rank, step)| Some((rank.trim().parse().ok()?, step.trim().parse().ok()?)));
    parsed
        .map(Some)
        .ok_or_else(|| TrainError::Device(ReplicaSetupError::PanicHook(text.clone())))
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs replica `rank`'s epochs (`work`). A failure, a panic included, aborts the group at
/// once, so the peers waiting at a collective fail within a poll instead of the collective
/// timeout.
fn guarded(
    rank: usize,
    collective: &dyn Collective,
    work: impl FnOnce() -> Result<EpochsEnd, TrainError>,
) -> Result<EpochsEnd, TrainError> {
    let result = std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        Err(TrainError::Panicked {
            rank,
            message: panic_message(payload.as_ref()),
        })
    });
    if let Err(e) = &result {
        collective.abort(&format!("replica {rank} failed: {e}"));
    }
    result
}

fn build_replica(rank: usize, device: Device, opts: &TrainOptions) -> Result<Replica, TrainError> {
    let autocast = precision::autocast_for(opts.spec.mixed_precision, device)
        .map_err(|e| TrainError::Device(e.into()))?;
    let vs = nn::VarStore::new(device);
    let net = crate::model::try_build(&vs.root(), &opts.arch).map_err(TrainError::Model)?;
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let buffers = named
        .iter()
        .filter(|(_, t)| !t.requires_grad() && t.is_floating_point())
        .map(|(_, t)| t.shallow_clone())
        .collect();
    let trainable = named
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    let opt = Optimizer::new(
        opts.spec.optimizer,
        opts.spec.momentum,
        opts.spec.weight_decay,
        trainable,
    );
    Ok(Replica {
        rank,
        device,
        autocast,
        steps_taken: 0,
        panic_at: None,
        vs,
        net,
        opt,
        buffers,
    })
}

fn restore(replica: &mut Replica, ck: &checkpoint::Checkpoint) -> Result<(), TrainError> {
    let variables = replica.vs.variables();
    for (name, var) in variables.iter() {
        let saved = ck
            .weights
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| TrainError::State(StateMismatch::Missing(name.clone())))?;
        if saved.size() != var.size() {
            return Err(TrainError::State(StateMismatch::Shape {
                name: name.clone(),
                saved: saved.size(),
                needed: var.size(),
            }));
        }
        tch::no_grad(|| var.shallow_clone().copy_(saved));
    }
    replica
        .opt
        .load_state(&ck.optimizer)
        .map_err(|e| TrainError::State(e.into()))
}

fn train_options(spec: &RunSpec, epoch: u32, rank: usize, world: usize) -> BatchOptions {
    BatchOptions {
        epoch,
        seed: spec.seed,
        batch_size: spec.batch_size,
        rank,
        world,
        shuffle: true,
        augment: true,
        // BN cannot train on one sample: drop a last batch that would leave a replica one.
        min_last_batch: 2 * world,
    }
}

fn eval_options(spec: &RunSpec, rank: usize, world: usize) -> BatchOptions {
    BatchOptions {
        epoch: 0,
        seed: spec.seed,
        batch_size: spec.batch_size,
        rank,
        world,
        shuffle: false,
        augment: false,
        min_last_batch: 1,
    }
}

enum EpochsEnd {
    Finished,
    Stopped(u32),
}

/// A distinct, reproducible torch seed for (run seed, epoch, rank): dropout masks and any
/// other torch randomness resume exactly from a checkpoint.
fn epoch_seed(seed: u64, epoch: u32, rank: usize) -> i64 {
    let mut x = seed ^ (u64::from(epoch) << 32) ^ ((rank as u64) << 56) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x >> 1) as i64
}

/// One replica's part of a run: its model and optimizer, the run's options, the group it
/// all-reduces with, and where it reports (rank 0 reports; the others are silent).
struct ReplicaRun<'a> {
    replica: &'a mut Replica,
    opts: &'a TrainOptions,
    collective: &'a dyn Collective,
    observer: &'a mut dyn Observer,
}

fn run_epochs(
    mut run: ReplicaRun<'_>,
    data: &DataSource,
    start_epoch: u32,
    history: &mut Vec<EpochRecord>,
) -> Result<EpochsEnd, TrainError> {
    let opts = run.opts;
    let spec = &opts.spec;
    let mut pacer = CheckpointPacer::new(spec.epochs, start_epoch);
    for epoch in start_epoch..spec.epochs {
        let epoch_started = Instant::now();
        let seed = epoch_seed(spec.seed, epoch, run.replica.rank) as u64;
        let rng =
            ReplicaRng::new(run.replica.device, seed).map_err(|e| TrainError::Device(e.into()))?;
        run.replica.net.set_rng(rng);
        let lr = spec.lr_at_epoch(epoch);
        let train = match train_epoch(&mut run, &data.train, epoch, lr)? {
            Some(t) => t,
            None => return Ok(EpochsEnd::Stopped(pacer.saved_epoch())),
        };
        let train_seconds = epoch_started.elapsed().as_secs_f64();
        average_buffers(run.replica, run.collective)?;
        let Some((eval_loss, eval_acc)) = evaluate(&mut run, &data.eval, epoch + 1)? else {
            return Ok(EpochsEnd::Stopped(pacer.saved_epoch()));
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: train.loss,
            train_acc: train.acc,
            eval_loss,
            eval_acc,
            lr,
            seconds: epoch_started.elapsed().as_secs_f64(),
            images_per_sec: train.images as f64 / train_seconds.max(1e-9),
        };
        let replica = &mut *run.replica;
        if replica.rank == 0 {
            history.push(record);
            let path = if pacer.due(epoch + 1, epoch_started.elapsed()) {
                let writing = Instant::now();
                let weights: Vec<(String, Tensor)> = replica.vs.variables().into_iter().collect();
                let meta = checkpoint::meta(&spec.training_hash(), epoch + 1, spec.seed, history);
                let path = checkpoint::save(&opts.run_dir, &meta, &weights, &replica.opt.state())?;
                pacer.written(epoch + 1, writing.elapsed());
                Some(path)
            } else {
                None
            };
            run.observer.on_epoch(&record, path.as_deref());
        }
    }
    Ok(EpochsEnd::Finished)
}

struct EpochTotals {
    loss: f64,
    acc: f64,
    images: u64,
}

/// This replica's summed loss, correct predictions and images added up over every replica
/// (one all-reduce), as means per image.
fn sum_over_replicas(
    collective: &dyn Collective,
    rank: usize,
    loss_sum: &Tensor,
    correct: &Tensor,
    seen: u64,
) -> Result<EpochTotals, TrainError> {
    let mut totals = Tensor::stack(
        &[
            loss_sum.to_device(Device::Cpu),
            correct.to_device(Device::Cpu).to_kind(Kind::Double),
            Tensor::from(seen as f64),
        ],
        0,
    );
    collective.all_reduce_sum(rank, &mut totals)?;
    let v = Vec::<f64>::try_from(&totals)?;
    let images = v[2].max(1.0);
    Ok(EpochTotals {
        loss: v[0] / images,
        acc: v[1] / images,
        images: v[2] as u64,
    })
}

/// Trains one epoch; `None` when a stop was requested (agreed on by every replica).
fn train_epoch(
    run: &mut ReplicaRun<'_>,
    split: &Split,
    epoch: u32,
    lr: f64,
) -> Result<Option<EpochTotals>, TrainError> {
    let (replica, opts, collective) = (&mut *run.replica, run.opts, run.collective);
    let observer = &mut *run.observer;
    let spec = &opts.spec;
    let world = collective.world();
    let batch_opts = train_options(spec, epoch, replica.rank, world);
    let steps_per_epoch = split.steps(&batch_opts) as u64;
    let device = replica.device;
    // Accumulated on the device: no host sync per step.
    let loss_sum = Tensor::zeros([], (Kind::Double, device));
    let correct = Tensor::zeros([], (Kind::Int64, device));
    let mut seen: u64 = 0;
    for (step, batch) in split.batches(&batch_opts).enumerate() {
        let batch = batch.map_err(TrainError::Data)?;
        let images = batch.images.to_device(device);
        let labels = batch.labels.to_device(device);
        let n = labels.size()[0];
        if replica.panic_at == Some(replica.steps_taken) {
            panic!(
                "injected by {PANIC_REPLICA_ENV} at step {}",
                replica.steps_taken
            );
        }
        let StepOutput {
            logits,
            compute_kind,
            loss,
            mut grads,
        } = forward_backward(
            &replica.net,
            replica.opt.tensors(),
            &images,
            &labels,
            replica.autocast,
        )?;
        if replica.steps_taken == 0 && replica.rank == 0 {
            tracing::info!(
                device = ?device,
                "training computes in {}",
                precision::kind_name(compute_kind)
            );
        }
        replica.steps_taken += 1;
        let stop = opts.stop.load(Ordering::Relaxed);
        if world > 1 {
            if reduce_gradients(replica.rank, &mut grads, collective, n, stop)? {
                return Ok(None);
            }
        } else if stop {
            return Ok(None);
        }
        replica.opt.step(lr, &grads);
        tch::no_grad(|| {
            let _ = loss_sum
                .shallow_clone()
                .g_add_(&(loss.detach().to_kind(Kind::Double) * n as f64));
            let hits = logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
            let _ = correct.shallow_clone().g_add_(&hits);
        });
        seen += n as u64;
        if replica.rank == 0 {
            let global_step = u64::from(epoch) * steps_per_epoch + step as u64;
            let sampled = global_step.is_multiple_of(spec.log_every_steps);
            let value = sampled.then(|| loss.double_value(&[]));
            observer.on_step(epoch + 1, step as u64 + 1, steps_per_epoch, value);
        }
    }
    sum_over_replicas(collective, replica.rank, &loss_sum, &correct, seen).map(Some)
}

/// Sums `n_r`-weighted gradients over replicas and divides by the global batch size, so each
/// replica holds the gradient of the global batch's mean loss. Returns whether any replica
/// asked to stop (carried in the same message, so all replicas stop at the same step).
fn reduce_gradients(
    rank: usize,
    grads: &mut [Tensor],
    collective: &dyn Collective,
    local_batch: i64,
    stop: bool,
) -> Result<bool, TrainError> {
    let Some(device) = grads.first().map(Tensor::device) else {
        return Ok(false);
    };
    let mut parts: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
    parts.push(Tensor::from_slice(&[1.0f32, if stop { 1.0 } else { 0.0 }]).to_device(device));
    let mut flat = Tensor::cat(&parts, 0);
    let total = flat.size()[0];
    // Weighting by the slice size after the copy: one pass, and the `1.0` slot becomes n_r.
    let _ = flat
        .narrow(0, 0, total - 1)
        .g_mul_scalar_(local_batch as f64);
    collective.all_reduce_sum(rank, &mut flat)?;
    let tail = Vec::<f32>::try_from(&flat.narrow(0, total - 2, 2))?;
    if tail[1] > 0.0 {
        return Ok(true);
    }
    let _ = flat
        .narrow(0, 0, total - 2)
        .g_div_scalar_(f64::from(tail[0]));
    // The gradients become views of the reduced buffer: no copy back.
    let mut offset = 0;
    for g in grads.iter_mut() {
        let numel = g.numel() as i64;
        *g = flat.narrow(0, offset, numel).view_as(g);
        offset += numel;
    }
    Ok(false)
}

/// Averages BN running statistics so every replica evaluates and checkpoints the same model.
fn average_buffers(replica: &mut Replica, collective: &dyn Collective) -> Result<(), TrainError> {
    let world = collective.world();
    if world == 1 || replica.buffers.is_empty() {
        return Ok(());
    }
    let parts: Vec<Tensor> = replica
        .buffers
        .iter()
        .map(|b| b.reshape([-1]).to_kind(Kind::Float))
        .collect();
    let mut flat = Tensor::cat(&parts, 0);
    collective.all_reduce_sum(replica.rank, &mut flat)?;
    let mut offset = 0;
    tch::no_grad(|| {
        for b in replica.buffers.iter() {
            let numel = b.numel() as i64;
            let mut b = b.shallow_clone();
            b.copy_(&(flat.narrow(0, offset, numel).view_as(&b) / world as f64));
            offset += numel;
        }
    });
    Ok(())
}

/// Mean loss and accuracy on the eval split, each replica taking its shard; `None` when a
/// stop was requested meanwhile.
fn evaluate(
    run: &mut ReplicaRun<'_>,
    split: &Split,
    epoch: u32,
) -> Result<Option<(f64, f64)>, TrainError> {
    let (replica, opts, collective) = (&mut *run.replica, run.opts, run.collective);
    let observer = &mut *run.observer;
    let spec = &opts.spec;
    let device = replica.device;
    let autocast = replica.autocast;
    let eval_opts = eval_options(spec, replica.rank, collective.world());
    let loss_sum = Tensor::zeros([], (Kind::Double, device));
    let correct = Tensor::zeros([], (Kind::Int64, device));
    let mut seen = 0u64;
    let mut stopped = false;
    tch::no_grad(|| -> Result<(), TrainError> {
        for (index, batch) in split.batches(&eval_opts).enumerate() {
            if opts.stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            let batch = batch.map_err(TrainError::Data)?;
            let images = batch.images.to_device(device);
            let labels = batch.labels.to_device(device);
            let n = labels.size()[0];
            let logits =
                precision::with_cuda_autocast(autocast, || replica.net.forward_t(&images, false))
                    .to_kind(Kind::Float);
            let loss = logits.cross_entropy_for_logits(&labels);
            let _ = loss_sum
                .shallow_clone()
                .g_add_(&(loss.to_kind(Kind::Double) * n as f64));
            let hits = logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
            let _ = correct.shallow_clone().g_add_(&hits);
            seen += n as u64;
            observer.on_eval_step(epoch, index as u64 + 1);
        }
        Ok(())
    })?;
    if stopped {
        // Peers that did not see the flag yet must not wait at the reduction below.
        if collective.world() > 1 {
            collective.abort("stopped during evaluation");
        }
        return Ok(None);
    }
    let totals = sum_over_replicas(collective, replica.rank, &loss_sum, &correct, seen)?;
    Ok(Some((totals.loss, totals.acc)))
}
