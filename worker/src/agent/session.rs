//! One assigned attempt, from the assignment to Complete, Fail or Release.
//!
//! Training runs on a blocking thread; this task relays its events to the coordinator,
//! renews the lease with heartbeats, uploads each epoch's checkpoint, and stops the
//! training when the run is cancelled, when the attempt turns out stale (fenced), or when
//! the worker shuts down. Messages that fail because the coordinator is away are kept and
//! retried; training goes on meanwhile.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ablate_common::metrics::EpochRecord;
use ablate_common::proto::{
    Assignment, CheckpointChunk, CheckpointRequest, CompleteRequest, EpochMetrics, FailRequest,
    ProgressRequest, ReleaseRequest, StepMetrics,
};
use ablate_common::spec::{DeviceList, RunSpec};
use tokio::sync::mpsc;
use tonic::Code;

use super::connection::{is_transient, Client};
use crate::train::{self, checkpoint, Observer, Outcome, TrainError, TrainOptions};

/// Size of one checkpoint chunk on the wire.
const CHUNK_BYTES: usize = 1 << 20;

/// What the agent knows that a session needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    /// The coordinator client.
    pub client: Client,
    /// This worker's id.
    pub worker_id: String,
    /// Run directories live under `work_dir/runs/`.
    pub work_dir: PathBuf,
    /// Devices a CPU run trains on (`cpu` or `cpu:N`).
    pub cpu_devices: DeviceList,
    /// Intra-op threads in total.
    pub threads: usize,
    /// Datasets are read only under these.
    pub data_roots: crate::data::roots::DataRoots,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Set when the worker shuts down (SIGTERM).
    pub shutdown: Arc<AtomicBool>,
}

/// How a session ended, for the agent's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Every epoch trained and Complete was accepted.
    Completed,
    /// Failed and reported.
    Failed(String),
    /// Given back (shutdown or cancellation).
    Released,
    /// The coordinator fenced this attempt off; nothing more to report.
    Abandoned,
}

enum Event {
    Start {
        steps_per_epoch: u64,
        start_epoch: u32,
    },
    Step {
        epoch: u32,
        step: u64,
        loss: Option<f64>,
    },
    Epoch {
        record: EpochRecord,
        snapshot: PathBuf,
    },
}

struct ChannelObserver {
    tx: mpsc::UnboundedSender<Event>,
}

impl Observer for ChannelObserver {
    fn on_start(&mut self, _params: u64, start_epoch: u32, steps_per_epoch: u64) {
        let _ = self.tx.send(Event::Start {
            steps_per_epoch,
            start_epoch,
        });
    }

    fn on_step(&mut self, epoch: u32, step: u64, _steps_per_epoch: u64, loss: Option<f64>) {
        let _ = self.tx.send(Event::Step { epoch, step, loss });
    }

    fn on_epoch(&mut self, record: &EpochRecord, path: &Path) {
        // A hard link keeps this epoch's file while training replaces checkpoint.ot.
        let snapshot = path.with_file_name(format!("epoch-{}.ot", record.epoch));
        let _ = std::fs::remove_file(&snapshot);
        if std::fs::hard_link(path, &snapshot).is_err() {
            let _ = std::fs::copy(path, &snapshot);
        }
        let _ = self.tx.send(Event::Epoch {
            record: *record,
            snapshot,
        });
    }
}

/// A prepared run: everything that can fail permanently has been checked.
struct Prepared {
    options: TrainOptions,
    data: crate::data::DataSource,
}

/// Runs one assignment to its end.
pub(crate) async fn run(ctx: SessionContext, assignment: Assignment) -> SessionEnd {
    let run_id = assignment.run_id.clone();
    let attempt = assignment.attempt;
    let stop = Arc::new(AtomicBool::new(false));
    // Ids become paths (and a directory removed recursively): plain names only.
    for (field, value) in [
        ("run_id", &assignment.run_id),
        ("experiment_id", &assignment.experiment_id),
    ] {
        if let Err(why) = check_plain_name(value) {
            let reason = format!("the coordinator sent a {field} that is not a plain name: {why}");
            return fail(&ctx, &assignment, reason, true).await;
        }
    }
    let run_dir = ctx.work_dir.join("runs").join(&run_id);
    tracing::info!(run = %run_id, attempt, name = %assignment.name, "starting run");

    if let Err(status) = fetch_checkpoint(&ctx, &assignment, &run_dir).await {
        let reason = format!("cannot fetch the run's checkpoint: {}", status.message());
        return fail(&ctx, &assignment, reason, false).await;
    }
    let prepare_ctx = ctx.clone();
    let prepare_assignment = assignment.clone();
    let prepare_stop = stop.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(&prepare_ctx, &prepare_assignment, run_dir, prepare_stop)
    })
    .await
    .unwrap_or_else(|e| Err(format!("preparing the run panicked: {e}")));
    let prepared = match prepared {
        Ok(p) => p,
        Err(reason) => return fail(&ctx, &assignment, reason, true).await,
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut training = tokio::task::spawn_blocking(move || {
        let mut observer = ChannelObserver { tx };
        train::train(&prepared.options, &prepared.data, &mut observer)
    });

    let mut relay = Relay::new(&ctx, &assignment);
    let mut ticker = tokio::time::interval(ctx.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            joined = &mut training => {
                break joined.unwrap_or_else(|e| Err(TrainError::Torch(format!("training panicked: {e}"))));
            }
            Some(event) = rx.recv() => relay.record(event),
            _ = ticker.tick() => {
                if ctx.shutdown.load(Ordering::SeqCst) {
                    relay.release_reason.get_or_insert("worker shutting down".into());
                    stop.store(true, Ordering::SeqCst);
                }
                relay.flush().await;
                if relay.cancelled || relay.stale {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }
    };
    // Deliver what training reported before its end.
    while let Ok(event) = rx.try_recv() {
        relay.record(event);
    }
    relay.flush_all().await;
    if relay.stale {
        tracing::warn!(run = %run_id, attempt, "attempt fenced off by the coordinator; abandoning it");
        return SessionEnd::Abandoned;
    }
    match result {
        Ok(Outcome::Completed {
            params,
            wall_seconds,
            ..
        }) => {
            let request = CompleteRequest {
                worker_id: ctx.worker_id.clone(),
                run_id: run_id.clone(),
                attempt,
                wall_seconds,
                params,
            };
            match retry(&ctx, |mut c| {
                let r = request.clone();
                async move { c.complete(r).await }
            })
            .await
            {
                Ok(_) => {
                    tracing::info!(run = %run_id, "run completed");
                    let _ = std::fs::remove_dir_all(ctx.work_dir.join("runs").join(&run_id));
                    SessionEnd::Completed
                }
                Err(status) => {
                    tracing::warn!(run = %run_id, "completion refused: {}", status.message());
                    SessionEnd::Abandoned
                }
            }
        }
        Ok(Outcome::Stopped { completed_epochs }) => {
            let reason = if relay.cancelled {
                "cancelled".to_string()
            } else {
                relay
                    .release_reason
                    .clone()
                    .unwrap_or_else(|| "stopped".into())
            };
            tracing::info!(run = %run_id, completed_epochs, "releasing run: {reason}");
            let request = ReleaseRequest {
                worker_id: ctx.worker_id.clone(),
                run_id: run_id.clone(),
                attempt,
                reason,
            };
            let _ = retry(&ctx, |mut c| {
                let r = request.clone();
                async move { c.release(r).await }
            })
            .await;
            SessionEnd::Released
        }
        Err(e) => {
            let permanent = matches!(
                e,
                TrainError::Model(_) | TrainError::Data(_) | TrainError::Device(_)
            );
            fail(&ctx, &assignment, e.to_string(), permanent).await
        }
    }
}

/// An id that is safe as one path component: 1 to 128 of `A-Z a-z 0-9 . _ -`, not
/// starting with a dot.
pub(crate) fn check_plain_name(value: &str) -> Result<(), String> {
    let shown = crate::data::roots::excerpt(value, 40);
    if value.is_empty() || value.len() > 128 {
        return Err(format!("`{shown}` must be 1 to 128 bytes long"));
    }
    if value.starts_with('.') {
        return Err(format!("`{shown}` starts with a dot"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "`{shown}` has characters other than A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

fn prepare(
    ctx: &SessionContext,
    assignment: &Assignment,
    run_dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> Result<Prepared, String> {
    let spec: RunSpec =
        serde_json::from_str(&assignment.spec_json).map_err(|e| format!("run spec: {e}"))?;
    spec.check().map_err(|e| format!("run spec: {e}"))?;
    let arch = spec.architecture().map_err(|e| format!("model: {e}"))?;
    let dataset = spec.dataset.as_ref().ok_or("the run spec has no dataset")?;
    ctx.data_roots.check_dataset(dataset)?;
    let data = crate::data::open(dataset, spec.channels, spec.image_size, spec.classes)
        .map_err(|e| format!("dataset: {e}"))?;
    let devices = if assignment.devices.iter().any(|d| d.starts_with("cuda:")) {
        let joined: Vec<&str> = assignment
            .devices
            .iter()
            .map(|d| d.trim_start_matches("cuda:"))
            .collect();
        DeviceList::parse(&format!("cuda:{}", joined.join(",")))?
    } else {
        ctx.cpu_devices.clone()
    };
    let threads_per_replica = (ctx.threads / devices.replicas()).max(1);
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
    Ok(Prepared {
        options: TrainOptions {
            spec,
            arch,
            devices,
            run_dir,
            resume: true,
            threads_per_replica,
            stop,
        },
        data,
    })
}

/// Puts the coordinator's checkpoint in `run_dir` (or clears a stale local one).
async fn fetch_checkpoint(
    ctx: &SessionContext,
    assignment: &Assignment,
    run_dir: &Path,
) -> Result<(), tonic::Status> {
    let path = run_dir.join(checkpoint::CHECKPOINT_FILE);
    if !assignment.has_checkpoint {
        // Only the coordinator's copy counts: it matches the epochs it has stored.
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    std::fs::create_dir_all(run_dir).map_err(|e| tonic::Status::internal(e.to_string()))?;
    let request = CheckpointRequest {
        worker_id: ctx.worker_id.clone(),
        run_id: assignment.run_id.clone(),
        attempt: assignment.attempt,
    };
    let mut client = ctx.client.clone();
    let mut stream = client.download_checkpoint(request).await?.into_inner();
    let tmp = run_dir.join("download.tmp");
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    tracing::info!(run = %assignment.run_id, bytes = bytes.len(), "downloaded checkpoint");
    Ok(())
}

async fn fail(
    ctx: &SessionContext,
    assignment: &Assignment,
    reason: String,
    permanent: bool,
) -> SessionEnd {
    tracing::error!(run = %assignment.run_id, attempt = assignment.attempt, permanent, "run failed: {reason}");
    let request = FailRequest {
        worker_id: ctx.worker_id.clone(),
        run_id: assignment.run_id.clone(),
        attempt: assignment.attempt,
        reason: reason.clone(),
        permanent,
    };
    let _ = retry(ctx, |mut c| {
        let r = request.clone();
        async move { c.fail(r).await }
    })
    .await;
    SessionEnd::Failed(reason)
}

/// Retries a call while the coordinator is away (for at most ten minutes).
async fn retry<T, F, Fut>(ctx: &SessionContext, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut backoff = Duration::from_millis(200);
    loop {
        match call(ctx.client.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if is_transient(&s) && Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(s),
        }
    }
}

/// Progress not yet accepted by the coordinator.
struct Relay<'a> {
    ctx: &'a SessionContext,
    assignment: &'a Assignment,
    steps: Vec<StepMetrics>,
    epochs: VecDeque<(EpochRecord, PathBuf)>,
    current_epoch: u32,
    current_step: u64,
    steps_per_epoch: u64,
    cancelled: bool,
    stale: bool,
    release_reason: Option<String>,
}

impl<'a> Relay<'a> {
    fn new(ctx: &'a SessionContext, assignment: &'a Assignment) -> Self {
        Relay {
            ctx,
            assignment,
            steps: Vec::new(),
            epochs: VecDeque::new(),
            current_epoch: assignment.completed_epochs + 1,
            current_step: 0,
            steps_per_epoch: 0,
            cancelled: false,
            stale: false,
            release_reason: None,
        }
    }

    fn record(&mut self, event: Event) {
        match event {
            Event::Start {
                steps_per_epoch,
                start_epoch,
            } => {
                self.steps_per_epoch = steps_per_epoch;
                if start_epoch > 0 {
                    tracing::info!(
                        "resuming run {} after epoch {start_epoch} from its checkpoint",
                        self.assignment.run_id
                    );
                }
            }
            Event::Step { epoch, step, loss } => {
                self.current_epoch = epoch;
                self.current_step = step;
                if let Some(loss) = loss {
                    let global = u64::from(epoch - 1) * self.steps_per_epoch + step;
                    self.steps.push(StepMetrics {
                        epoch,
                        step: global,
                        loss,
                    });
                }
            }
            Event::Epoch { record, snapshot } => self.epochs.push_back((record, snapshot)),
        }
    }

    /// One heartbeat: sampled steps plus the oldest undelivered epoch (then its checkpoint).
    async fn flush(&mut self) {
        if self.stale {
            return;
        }
        let epoch = self.epochs.front().map(|(r, _)| to_proto(r));
        let request = ProgressRequest {
            worker_id: self.ctx.worker_id.clone(),
            run_id: self.assignment.run_id.clone(),
            attempt: self.assignment.attempt,
            steps: self.steps.clone(),
            epoch,
            current_epoch: self.current_epoch,
            current_step: self.current_step,
            steps_per_epoch: self.steps_per_epoch,
        };
        let mut client = self.ctx.client.clone();
        match client.progress(request).await {
            Ok(response) => {
                self.steps.clear();
                if response.into_inner().cancel {
                    self.cancelled = true;
                }
                if let Some((_, snapshot)) = self.epochs.pop_front() {
                    self.upload(&snapshot).await;
                }
            }
            Err(status) if is_transient(&status) => {
                tracing::debug!("progress not delivered, will retry: {}", status.message());
            }
            Err(status) => self.refused(&status),
        }
    }

    /// Flushes until every epoch is delivered (or the coordinator refuses or stays away).
    async fn flush_all(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            self.flush().await;
            if self.stale || self.epochs.is_empty() || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn upload(&mut self, snapshot: &Path) {
        let epoch = snapshot
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("epoch-"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let bytes = match std::fs::read(snapshot) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot read checkpoint {}: {e}", snapshot.display());
                return;
            }
        };
        let chunks: Vec<CheckpointChunk> = bytes
            .chunks(CHUNK_BYTES)
            .map(|data| CheckpointChunk {
                run_id: self.assignment.run_id.clone(),
                attempt: self.assignment.attempt,
                epoch,
                data: data.to_vec(),
                worker_id: self.ctx.worker_id.clone(),
            })
            .collect();
        let result = retry(self.ctx, |mut c| {
            let stream = tokio_stream::iter(chunks.clone());
            async move { c.upload_checkpoint(stream).await }
        })
        .await;
        match result {
            Ok(_) => {
                let _ = std::fs::remove_file(snapshot);
            }
            Err(status) if is_transient(&status) => {
                tracing::warn!(
                    "checkpoint of epoch {epoch} not uploaded: {}",
                    status.message()
                );
            }
            Err(status) => self.refused(&status),
        }
    }

    fn refused(&mut self, status: &tonic::Status) {
        match status.code() {
            Code::FailedPrecondition | Code::NotFound | Code::Aborted => {
                self.stale = true;
            }
            _ => tracing::warn!("coordinator refused progress: {}", status.message()),
        }
    }
}

fn to_proto(r: &EpochRecord) -> EpochMetrics {
    EpochMetrics {
        epoch: r.epoch,
        train_loss: r.train_loss,
        train_acc: r.train_acc,
        eval_loss: r.eval_loss,
        eval_acc: r.eval_acc,
        lr: r.lr,
        seconds: r.seconds,
        images_per_sec: r.images_per_sec,
    }
}

#[cfg(test)]
mod tests {
    use super::check_plain_name;

    #[test]
    fn only_plain_names_become_paths() {
        assert!(check_plain_name("quick-1a2b3c4d-0007").is_ok());
        for bad in [
            "",
            "..",
            ".hidden",
            "../../etc",
            "a/b",
            "a\\b",
            "x\0y",
            &"a".repeat(129),
        ] {
            assert!(check_plain_name(bad).is_err(), "{bad:?}");
        }
    }
}
