//! One assigned attempt, from the assignment to Complete, Fail or Release.
//!
//! From the assignment on, a heartbeat task keeps the lease (see [`super::liveness`]);
//! training runs on a blocking thread whose events this task relays; each epoch's
//! checkpoint goes to a background uploader (see [`super::transfer`]). A watchdog abandons
//! the attempt when the step counter stops moving for the run's `stall_timeout`. The
//! attempt stops when the run is cancelled, when it turns out stale (fenced), or when the
//! worker shuts down — also while the checkpoint downloads or the data is prepared.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ablate_common::metrics::EpochRecord;
use ablate_common::proto::{
    Assignment, CompleteRequest, EpochMetrics, FailRequest, ReleaseRequest,
};
use ablate_common::spec::{DeviceList, RunSpec};
use tokio::sync::mpsc;

use super::connection::{is_transient, Client};
use super::liveness::{AttemptIds, Liveness, Verdict};
use super::test_hooks::{self, TestHold};
use super::transfer::{self, Uploader};
use crate::train::{self, checkpoint, Observer, Outcome, Placement, TrainError, TrainOptions};

/// How long a session waits for its last messages and uploads before giving up on them.
const WIND_DOWN: Duration = Duration::from_secs(600);

/// What the agent knows that a session needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    /// The coordinator client for short calls.
    pub client: Client,
    /// A client on a connection of its own for heartbeats (never behind a transfer).
    pub liveness_client: Client,
    /// A client on a connection of its own, without a call timeout, for checkpoints.
    pub transfer_client: Client,
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

/// Where the time of an epoch went, as rank 0 saw it.
#[derive(Debug, Clone, Copy, Default)]
struct EpochTimings {
    train_s: f64,
    eval_s: f64,
    /// Training waited this long for the checkpoint (save and snapshot link).
    checkpoint_s: f64,
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
    EvalStep {
        epoch: u32,
        batch: u64,
    },
    Epoch {
        record: EpochRecord,
        /// This epoch's checkpoint, when it was written.
        snapshot: Option<PathBuf>,
        timings: EpochTimings,
    },
}

struct ChannelObserver {
    tx: mpsc::UnboundedSender<Event>,
    hold: Option<TestHold>,
    stop: Arc<AtomicBool>,
    attempt: u32,
    hang_at_step: Option<u64>,
    eval_delay: Option<Duration>,
    epoch_started: Instant,
    last_train_step: Option<Instant>,
    last_eval_step: Option<Instant>,
}

impl ChannelObserver {
    fn new(
        tx: mpsc::UnboundedSender<Event>,
        hold: Option<TestHold>,
        stop: Arc<AtomicBool>,
        attempt: u32,
    ) -> Self {
        ChannelObserver {
            tx,
            hold,
            stop,
            attempt,
            hang_at_step: test_hooks::number(test_hooks::HANG_AT_STEP),
            eval_delay: test_hooks::delay(test_hooks::EVAL_BATCH_DELAY_MS),
            epoch_started: Instant::now(),
            last_train_step: None,
            last_eval_step: None,
        }
    }
}

impl Observer for ChannelObserver {
    fn on_start(&mut self, _params: u64, start_epoch: u32, steps_per_epoch: u64) {
        self.epoch_started = Instant::now();
        let _ = self.tx.send(Event::Start {
            steps_per_epoch,
            start_epoch,
        });
    }

    fn on_step(&mut self, epoch: u32, step: u64, _steps_per_epoch: u64, loss: Option<f64>) {
        self.last_train_step = Some(Instant::now());
        let _ = self.tx.send(Event::Step { epoch, step, loss });
        if self.attempt == 1 && self.hang_at_step == Some(step) {
            tracing::warn!("test injection: step {step} of epoch {epoch} hangs");
            test_hooks::hang_until_stopped(&self.stop);
        }
    }

    fn on_eval_step(&mut self, epoch: u32, batch: u64) {
        self.last_eval_step = Some(Instant::now());
        let _ = self.tx.send(Event::EvalStep { epoch, batch });
        if let Some(delay) = self.eval_delay {
            test_hooks::sleep_unless_stopped(delay, &self.stop);
            self.last_eval_step = Some(Instant::now());
        }
    }

    fn on_epoch(&mut self, record: &EpochRecord, path: Option<&Path>) {
        // A hard link keeps this epoch's file while training replaces checkpoint.ot.
        let snapshot = path.map(|path| {
            let snapshot = path.with_file_name(format!("epoch-{}.ot", record.epoch));
            let _ = std::fs::remove_file(&snapshot);
            if std::fs::hard_link(path, &snapshot).is_err() {
                let _ = std::fs::copy(path, &snapshot);
            }
            snapshot
        });
        let now = Instant::now();
        let trained = self.last_train_step.unwrap_or(self.epoch_started);
        let evaluated = self
            .last_eval_step
            .filter(|t| *t > trained)
            .unwrap_or(trained);
        let timings = EpochTimings {
            train_s: (trained - self.epoch_started).as_secs_f64(),
            eval_s: (evaluated - trained).as_secs_f64(),
            checkpoint_s: (now - evaluated).as_secs_f64(),
        };
        let _ = self.tx.send(Event::Epoch {
            record: *record,
            snapshot,
            timings,
        });
        self.epoch_started = now;
        if let Some(hold) = &self.hold {
            hold.wait(&self.stop);
        }
    }
}

/// A prepared run: everything that can fail permanently has been checked.
struct Prepared {
    options: TrainOptions,
    data: crate::data::DataSource,
}

/// Notices a step counter that stopped moving.
struct Watchdog {
    timeout: Duration,
    armed: bool,
    last_move: Instant,
    epoch: u32,
    step: u64,
}

impl Watchdog {
    fn moved(&mut self) {
        self.armed = true;
        self.last_move = Instant::now();
    }

    fn stalled(&self) -> Option<String> {
        (self.armed && self.last_move.elapsed() >= self.timeout).then(|| {
            format!(
                "stalled: no training progress for {:.0} s (stall_timeout) at epoch {} step {}; \
                 the attempt was abandoned",
                self.timeout.as_secs_f64(),
                self.epoch,
                self.step
            )
        })
    }
}

/// Runs one assignment to its end.
pub(crate) async fn run(ctx: SessionContext, assignment: Assignment) -> SessionEnd {
    let stop = Arc::new(AtomicBool::new(false));
    let ids = AttemptIds {
        worker_id: ctx.worker_id.clone(),
        run_id: assignment.run_id.clone(),
        attempt: assignment.attempt,
    };
    // Liveness first: everything after this may take long.
    let liveness = Liveness::start(
        ctx.liveness_client.clone(),
        ids.clone(),
        assignment.completed_epochs + 1,
        ctx.heartbeat,
        stop.clone(),
        ctx.shutdown.clone(),
    );
    // Ids become paths (and a directory removed recursively): plain names only.
    for (field, value) in [
        ("run_id", &assignment.run_id),
        ("experiment_id", &assignment.experiment_id),
    ] {
        if let Err(why) = check_plain_name(value) {
            let reason = format!("the coordinator sent a {field} that is not a plain name: {why}");
            return fail(&ctx, &ids, &liveness, reason, true).await;
        }
    }
    tracing::info!(run = %ids.run_id, attempt = ids.attempt, name = %assignment.name, "starting run");
    let end = attempt(&ctx, &assignment, &ids, &liveness, stop).await;
    drop(liveness);
    end
}

async fn attempt(
    ctx: &SessionContext,
    assignment: &Assignment,
    ids: &AttemptIds,
    liveness: &Liveness,
    stop: Arc<AtomicBool>,
) -> SessionEnd {
    let run_id = &ids.run_id;
    let run_dir = ctx.work_dir.join("runs").join(run_id);

    let fetched = tokio::select! {
        r = fetch_checkpoint(ctx, assignment, ids, &run_dir) => r,
        v = liveness.decided() => return stopped_early(ctx, ids, liveness, v, "downloading its checkpoint").await,
    };
    if let Err(reason) = fetched {
        let reason = format!("cannot fetch the run's checkpoint: {reason}");
        return fail(ctx, ids, liveness, reason, false).await;
    }
    let prepare_ctx = ctx.clone();
    let prepare_assignment = assignment.clone();
    let prepare_stop = stop.clone();
    let preparing = tokio::task::spawn_blocking(move || {
        prepare(&prepare_ctx, &prepare_assignment, run_dir, prepare_stop)
    });
    let prepared = tokio::select! {
        r = preparing => r.unwrap_or_else(|e| Err(format!("preparing the run panicked: {e}"))),
        // The preparation thread finishes on its own; its result is dropped.
        v = liveness.decided() => return stopped_early(ctx, ids, liveness, v, "preparing its data").await,
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(reason) => return fail(ctx, ids, liveness, reason, true).await,
    };

    let mut watchdog = Watchdog {
        timeout: prepared.options.spec.stall_timeout(),
        armed: false,
        last_move: Instant::now(),
        epoch: assignment.completed_epochs + 1,
        step: 0,
    };
    let uploader = Uploader::start(ctx.transfer_client.clone(), ids.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let hold = TestHold::from_env(run_id);
    let observer_stop = stop.clone();
    let attempt_number = ids.attempt;
    let mut training = tokio::task::spawn_blocking(move || {
        let mut observer = ChannelObserver::new(tx, hold, observer_stop, attempt_number);
        train::train(&prepared.options, &prepared.data, &mut observer)
    });

    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            joined = &mut training => {
                break Ok(joined.unwrap_or_else(|e| {
                    Err(TrainError::Panicked {
                        rank: 0,
                        message: format!("the training thread ended: {e}"),
                    })
                }));
            }
            Some(event) = rx.recv() => relay(event, liveness, &uploader, &mut watchdog),
            _ = ticker.tick() => {
                if let Some(reason) = watchdog.stalled() {
                    break Err(reason);
                }
            }
        }
    };
    let result = match result {
        Ok(result) => result,
        Err(stalled) => {
            // The training thread may never come back: stop it if it can, report, and free
            // the devices without waiting for it.
            stop.store(true, Ordering::SeqCst);
            drop(uploader);
            return fail(ctx, ids, liveness, stalled, false).await;
        }
    };
    // Deliver what training reported before its end.
    while let Ok(event) = rx.try_recv() {
        relay(event, liveness, &uploader, &mut watchdog);
    }
    let verdict = liveness.verdict();
    if let Verdict::Stale(why) = &verdict {
        tracing::warn!(run = %run_id, attempt = ids.attempt, "attempt fenced off by the coordinator ({why}); abandoning it");
        return SessionEnd::Abandoned;
    }
    match (result, verdict) {
        (
            Ok(Outcome::Completed {
                params,
                wall_seconds,
                ..
            }),
            _,
        ) => {
            // The run is done: its last checkpoint is not needed for a resume.
            drop(uploader);
            liveness.flush(WIND_DOWN).await;
            let request = CompleteRequest {
                worker_id: ids.worker_id.clone(),
                run_id: run_id.clone(),
                attempt: ids.attempt,
                wall_seconds,
                params,
            };
            match retry(ctx, |mut c| {
                let r = request.clone();
                async move { c.complete(r).await }
            })
            .await
            {
                Ok(_) => {
                    tracing::info!(run = %run_id, "run completed");
                    let _ = std::fs::remove_dir_all(ctx.work_dir.join("runs").join(run_id));
                    SessionEnd::Completed
                }
                Err(status) => {
                    tracing::warn!(run = %run_id, "completion refused: {}", status.message());
                    SessionEnd::Abandoned
                }
            }
        }
        (Ok(Outcome::Stopped { completed_epochs }), verdict) => {
            tracing::info!(run = %run_id, completed_epochs, "stopping run: {verdict:?}");
            release(ctx, ids, liveness, Some(uploader), verdict).await
        }
        // A replica that saw the stop first ends its peers with an error.
        (Err(e), verdict @ (Verdict::Cancelled | Verdict::ShuttingDown | Verdict::Stopped(_))) => {
            tracing::info!(run = %run_id, "stopping run ({e}): {verdict:?}");
            release(ctx, ids, liveness, Some(uploader), verdict).await
        }
        (Err(e), _) => {
            drop(uploader);
            let permanent = matches!(
                e,
                TrainError::Model(_)
                    | TrainError::State(_)
                    | TrainError::Data(_)
                    | TrainError::Device(_)
            );
            fail(ctx, ids, liveness, e.to_string(), permanent).await
        }
    }
}

/// Hands one training event on: to the heartbeat, the uploader and the watchdog.
fn relay(event: Event, liveness: &Liveness, uploader: &Uploader, watchdog: &mut Watchdog) {
    match event {
        Event::Start {
            steps_per_epoch,
            start_epoch,
        } => {
            liveness.started(steps_per_epoch);
            watchdog.moved();
            if start_epoch > 0 {
                tracing::info!(
                    "resuming run {} after epoch {start_epoch} from its checkpoint",
                    liveness.run_id()
                );
            }
        }
        Event::Step { epoch, step, loss } => {
            liveness.step(epoch, step, loss);
            watchdog.epoch = epoch;
            watchdog.step = step;
            watchdog.moved();
        }
        Event::EvalStep { epoch, batch } => {
            if batch == 1 {
                tracing::info!("evaluating epoch {epoch}");
            }
            watchdog.moved();
        }
        Event::Epoch {
            record,
            snapshot,
            timings,
        } => {
            watchdog.moved();
            match snapshot {
                Some(snapshot) => {
                    let bytes = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0);
                    tracing::info!(
                        "epoch {} timings: train {:.2} s, eval {:.2} s, checkpoint save {:.2} s, \
                         checkpoint {bytes} bytes",
                        record.epoch,
                        timings.train_s,
                        timings.eval_s,
                        timings.checkpoint_s
                    );
                    liveness.epoch(to_proto(&record));
                    uploader.offer(record.epoch, snapshot);
                }
                None => {
                    tracing::info!(
                        "epoch {} timings: train {:.2} s, eval {:.2} s, no checkpoint (paced)",
                        record.epoch,
                        timings.train_s,
                        timings.eval_s,
                    );
                    liveness.epoch(to_proto(&record));
                }
            }
        }
    }
}

/// The attempt was stopped before training started.
async fn stopped_early(
    ctx: &SessionContext,
    ids: &AttemptIds,
    liveness: &Liveness,
    verdict: Verdict,
    doing: &str,
) -> SessionEnd {
    tracing::info!(run = %ids.run_id, "stopped while {doing}: {verdict:?}");
    if let Verdict::Stale(why) = &verdict {
        tracing::warn!(run = %ids.run_id, "attempt fenced off by the coordinator ({why}); abandoning it");
        return SessionEnd::Abandoned;
    }
    release(ctx, ids, liveness, None, verdict).await
}

/// Gives the run back. On shutdown the latest checkpoint is uploaded first, so that
/// another worker resumes from it; a cancelled run needs none.
async fn release(
    ctx: &SessionContext,
    ids: &AttemptIds,
    liveness: &Liveness,
    uploader: Option<Uploader>,
    verdict: Verdict,
) -> SessionEnd {
    if let (Some(uploader), Verdict::ShuttingDown) = (&uploader, &verdict) {
        uploader.idle(WIND_DOWN).await;
    }
    drop(uploader);
    if let Verdict::Stopped(why) = &verdict {
        // The coordinator ended the attempt when it stopped the run: nothing to release.
        tracing::info!(run = %ids.run_id, "stopped early by the coordinator: {why}");
        let _ = std::fs::remove_dir_all(ctx.work_dir.join("runs").join(&ids.run_id));
        return SessionEnd::Released;
    }
    liveness.flush(WIND_DOWN).await;
    let reason = match verdict {
        Verdict::Cancelled => "cancelled",
        Verdict::ShuttingDown => "worker shutting down",
        _ => "stopped",
    };
    tracing::info!(run = %ids.run_id, "releasing run: {reason}");
    let request = ReleaseRequest {
        worker_id: ids.worker_id.clone(),
        run_id: ids.run_id.clone(),
        attempt: ids.attempt,
        reason: reason.to_string(),
    };
    let _ = retry(ctx, |mut c| {
        let r = request.clone();
        async move { c.release(r).await }
    })
    .await;
    SessionEnd::Released
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
    let devices = DeviceList::from_assigned(&assignment.devices)
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| ctx.cpu_devices.clone());
    let options = TrainOptions::for_spec(
        spec,
        Placement {
            devices,
            cores: ctx.threads,
            run_dir: run_dir.clone(),
            resume: true,
            stop: stop.clone(),
        },
    )
    .map_err(|e| format!("model: {e}"))?;
    let spec = &options.spec;
    let dataset = spec.dataset.as_ref().ok_or("the run spec has no dataset")?;
    ctx.data_roots
        .check_dataset(dataset)
        .map_err(|e| e.to_string())?;
    if let Some(delay) = test_hooks::delay(test_hooks::PREPARE_DELAY_MS) {
        tracing::warn!("test throttle: preparing the data takes {delay:?} more");
        test_hooks::sleep_unless_stopped(delay, &stop);
    }
    let data = crate::data::open(dataset, spec.channels, spec.image_size, spec.classes)
        .map_err(|e| format!("dataset: {e}"))?;
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
    Ok(Prepared { options, data })
}

/// Puts the coordinator's checkpoint in `run_dir`, verified (or clears a stale local one).
async fn fetch_checkpoint(
    ctx: &SessionContext,
    assignment: &Assignment,
    ids: &AttemptIds,
    run_dir: &Path,
) -> Result<(), String> {
    let path = run_dir.join(checkpoint::CHECKPOINT_FILE);
    if !assignment.has_checkpoint {
        // Only the coordinator's copy counts: it matches the epochs it has stored.
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    std::fs::create_dir_all(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let started = Instant::now();
    let bytes = transfer::download(&ctx.transfer_client, ids, &path).await?;
    tracing::info!(
        run = %ids.run_id,
        bytes,
        "downloaded checkpoint (sha256 verified) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn fail(
    ctx: &SessionContext,
    ids: &AttemptIds,
    liveness: &Liveness,
    reason: String,
    permanent: bool,
) -> SessionEnd {
    tracing::error!(run = %ids.run_id, attempt = ids.attempt, permanent, "run failed: {reason}");
    liveness.flush(WIND_DOWN).await;
    let request = FailRequest {
        worker_id: ids.worker_id.clone(),
        run_id: ids.run_id.clone(),
        attempt: ids.attempt,
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
