//! proto ↔ domain conversions; invalid fields become `Status::invalid_argument` naming the
//! field. And the one mapping of [`CoordError`] to gRPC codes.

use ablate_common::metrics::{EpochRecord, StepRecord};
use ablate_common::proto;
use tonic::Status;
use tracing::{error, warn};

use crate::scheduling::scheduler::{RunState, SchedError};
use crate::state::checkpoints::CheckpointError;
use crate::state::store::{ExperimentRow, ExperimentState, RunRow, StopRow};
use crate::state::{
    Assignment, AttemptRef, CoordError, ExperimentStatus, Progress, Registration, WorkerView,
};

impl From<CoordError> for Status {
    fn from(e: CoordError) -> Status {
        match &e {
            CoordError::Grid(_) | CoordError::Invalid { .. } => {
                Status::invalid_argument(e.to_string())
            }
            CoordError::NotFound { .. } => Status::not_found(e.to_string()),
            CoordError::Protocol { .. } => Status::failed_precondition(e.to_string()),
            CoordError::Limit(_) => Status::resource_exhausted(e.to_string()),
            CoordError::Checkpoint(c) if c.is_disk_full() => {
                warn!("{e}");
                Status::resource_exhausted(e.to_string())
            }
            CoordError::Checkpoint(CheckpointError::Mismatch(_)) => {
                Status::data_loss(e.to_string())
            }
            CoordError::Sched(s) => match s {
                SchedError::UnknownWorker(_) | SchedError::UnknownRun(_) => {
                    Status::not_found(e.to_string())
                }
                SchedError::UnknownDevice { .. } => Status::invalid_argument(e.to_string()),
                SchedError::Stale { .. } | SchedError::NotHolder { .. } => {
                    Status::failed_precondition(e.to_string())
                }
            },
            CoordError::Store(_) | CoordError::Checkpoint(_) | CoordError::DataDir { .. } => {
                error!("internal error: {e}");
                Status::internal(e.to_string())
            }
        }
    }
}

/// Runs a blocking coordinator call (SQLite writes with fsync) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
}

/// The most devices a worker may register (and name as free).
pub(crate) const MAX_DEVICES: usize = 256;
/// The longest device name (`cuda:N`).
pub(crate) const MAX_DEVICE_NAME_BYTES: usize = 32;
/// The longest worker name, worker id, run id or experiment key.
pub(crate) const MAX_ID_BYTES: usize = 256;
/// The most step samples in one `Progress` message.
pub(crate) const MAX_STEPS_PER_PROGRESS: usize = 10_000;
/// A failure reason is kept up to this many bytes (the rest is cut, not refused: a worker
/// reporting a long error must still be able to fail its run).
pub(crate) const MAX_REASON_BYTES: usize = 4_096;
/// The most dataset roots a worker may report.
pub(crate) const MAX_DATA_ROOTS: usize = 64;
/// The longest dataset root path.
pub(crate) const MAX_DATA_ROOT_BYTES: usize = 4_096;

/// `Err` naming the field, the limit and the value when `value` is longer than `limit`.
pub(super) fn check_len(field: &str, value: &str, limit: usize) -> Result<(), Status> {
    if value.len() > limit {
        return Err(invalid(
            field,
            &format!("{} bytes long; the limit is {limit}", value.len()),
        ));
    }
    Ok(())
}

/// Cuts `text` to at most `limit` bytes on a character boundary, marking the cut.
pub(super) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}

/// Checks a list of device names against the count and length caps.
pub(super) fn check_devices<'a>(
    field: &str,
    names: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), Status> {
    if names.len() > MAX_DEVICES {
        return Err(invalid(
            field,
            &format!("{} devices; the limit is {MAX_DEVICES}", names.len()),
        ));
    }
    for name in names {
        check_len(field, name, MAX_DEVICE_NAME_BYTES)?;
    }
    Ok(())
}

fn invalid(field: &str, message: &str) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

fn required(field: &str, value: String) -> Result<String, Status> {
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(invalid(field, "required"));
    }
    Ok(value)
}

/// The (worker, run, attempt) every worker message carries.
pub(super) fn attempt_ref(
    worker_id: String,
    run_id: String,
    attempt: u32,
) -> Result<AttemptRef, Status> {
    check_len("worker_id", &worker_id, MAX_ID_BYTES)?;
    check_len("run_id", &run_id, MAX_ID_BYTES)?;
    let worker_id = required("worker_id", worker_id)?;
    let run_id = required("run_id", run_id)?;
    if attempt == 0 {
        return Err(invalid("attempt", "attempts are numbered from 1"));
    }
    Ok(AttemptRef {
        worker_id,
        run_id,
        attempt,
    })
}

impl TryFrom<proto::RegisterRequest> for Registration {
    type Error = Status;

    fn try_from(r: proto::RegisterRequest) -> Result<Self, Status> {
        check_len("name", &r.name, MAX_ID_BYTES)?;
        check_len("worker_id", &r.worker_id, MAX_ID_BYTES)?;
        check_devices("devices", r.devices.iter().map(|d| d.name.as_str()))?;
        if r.data_roots.len() > MAX_DATA_ROOTS {
            return Err(invalid(
                "data_roots",
                &format!(
                    "{} roots; the limit is {MAX_DATA_ROOTS}",
                    r.data_roots.len()
                ),
            ));
        }
        for root in &r.data_roots {
            check_len("data_roots", root, MAX_DATA_ROOT_BYTES)?;
        }
        let name = r.name.trim();
        Ok(Registration {
            protocol_version: r.protocol_version,
            name: if name.is_empty() {
                "worker".to_string()
            } else {
                name.to_string()
            },
            devices: r
                .devices
                .into_iter()
                .map(|d| d.name.trim().to_string())
                .collect(),
            threads: r.threads,
            worker_id: Some(r.worker_id.trim().to_string()).filter(|s| !s.is_empty()),
            data_roots: r.data_roots,
        })
    }
}

/// An accuracy must be a fraction (NaN passes: a diverged run reports what it has).
fn fraction(field: &str, v: f64) -> Result<f64, Status> {
    if v.is_nan() || (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(field, &format!("{v} is not a fraction in [0, 1]")))
    }
}

/// Epoch metrics, checked: 1-based epoch, accuracies as fractions.
fn epoch_record(m: proto::EpochMetrics) -> Result<EpochRecord, Status> {
    {
        if m.epoch == 0 {
            return Err(invalid("epoch.epoch", "epochs are numbered from 1"));
        }
        Ok(EpochRecord {
            epoch: m.epoch,
            train_loss: m.train_loss,
            train_acc: fraction("epoch.train_acc", m.train_acc)?,
            eval_loss: m.eval_loss,
            eval_acc: fraction("epoch.eval_acc", m.eval_acc)?,
            lr: m.lr,
            seconds: m.seconds,
            images_per_sec: m.images_per_sec,
        })
    }
}

impl TryFrom<proto::ProgressRequest> for Progress {
    type Error = Status;

    fn try_from(r: proto::ProgressRequest) -> Result<Self, Status> {
        if r.steps.len() > MAX_STEPS_PER_PROGRESS {
            return Err(invalid(
                "steps",
                &format!(
                    "{} step samples in one message; the limit is {MAX_STEPS_PER_PROGRESS}",
                    r.steps.len()
                ),
            ));
        }
        Ok(Progress {
            attempt: attempt_ref(r.worker_id, r.run_id, r.attempt)?,
            steps: r
                .steps
                .into_iter()
                .map(|s| StepRecord {
                    epoch: s.epoch,
                    step: s.step,
                    loss: s.loss,
                })
                .collect(),
            epoch: r.epoch.map(epoch_record).transpose()?,
            current_epoch: r.current_epoch,
            current_step: r.current_step,
            steps_per_epoch: r.steps_per_epoch,
        })
    }
}

impl From<Assignment> for proto::Assignment {
    fn from(a: Assignment) -> Self {
        proto::Assignment {
            run_id: a.run_id,
            attempt: a.attempt,
            experiment_id: a.experiment_id,
            name: a.name,
            spec_json: a.spec_json,
            devices: a.devices,
            completed_epochs: a.completed_epochs,
            has_checkpoint: a.has_checkpoint,
        }
    }
}

pub(super) fn summary(e: &ExperimentRow) -> proto::ExperimentSummary {
    proto::ExperimentSummary {
        id: e.id.clone(),
        name: e.name.clone(),
        state: experiment_state(e.state()) as i32,
        runs: e.runs,
        finished: e.finished,
        failed: e.failed,
        submitted_unix_ms: e.submitted_ms,
        stopped: e.stopped,
    }
}

/// The wire form of the scheduler's run state.
fn run_state(state: RunState) -> proto::RunState {
    match state {
        RunState::Queued => proto::RunState::Queued,
        RunState::Running => proto::RunState::Running,
        RunState::Finished => proto::RunState::Finished,
        RunState::Failed => proto::RunState::Failed,
        RunState::Cancelled => proto::RunState::Cancelled,
        RunState::Stopped => proto::RunState::Stopped,
    }
}

/// The wire form of an experiment's state.
fn experiment_state(state: ExperimentState) -> proto::ExperimentState {
    match state {
        ExperimentState::Queued => proto::ExperimentState::Queued,
        ExperimentState::Running => proto::ExperimentState::Running,
        ExperimentState::Finished => proto::ExperimentState::Finished,
        ExperimentState::Failed => proto::ExperimentState::Failed,
        ExperimentState::Cancelled => proto::ExperimentState::Cancelled,
    }
}

fn run_status(r: &RunRow, now: u64) -> proto::RunStatus {
    proto::RunStatus {
        id: r.id.clone(),
        name: r.name.clone(),
        model: r.model.clone(),
        state: run_state(r.state) as i32,
        attempt: r.attempt,
        worker: r.worker_id.clone().unwrap_or_default(),
        epochs: r.epochs,
        current_epoch: r.current_epoch,
        current_step: r.current_step,
        steps_per_epoch: r.steps_per_epoch,
        last_loss: r.last_loss,
        best_eval_acc: r.best_eval_acc,
        last_eval_acc: r.last_eval_acc,
        error: r.error.clone().unwrap_or_default(),
        elapsed_seconds: r.elapsed_seconds(now),
        checkpoint_bytes: r.checkpoint_bytes.unwrap_or(0),
        checkpoint_epoch: r.checkpoint_epoch.unwrap_or(0),
        pending_reason: r.pending_reason.clone().unwrap_or_default(),
        gpus: r.gpus,
        ..Default::default()
    }
}

/// [`run_status`] with the run's stop decision, if the rule stopped it.
fn run_status_with_stop(r: &RunRow, now: u64, stop: Option<&StopRow>) -> proto::RunStatus {
    let mut status = run_status(r, now);
    if let Some(stop) = stop {
        status.stop_rule = stop.rule.clone();
        status.stop_epoch = stop.epoch;
        status.stop_reason = stop.reason.clone();
        status.stop_resumed = stop.resumed_ms.is_some();
    }
    status
}

/// A worker as `ablate workers` shows it.
pub(super) fn worker_entry(w: &WorkerView) -> proto::WorkerInfoEntry {
    proto::WorkerInfoEntry {
        id: w.info.id.clone(),
        name: w.info.name.clone(),
        devices: w.info.devices.clone(),
        busy: w.busy.clone(),
        runs: w.runs.clone(),
        last_seen_unix_ms: w.last_seen_ms,
        protocol_version: ablate_common::proto::PROTOCOL_VERSION,
        live: w.connected,
        threads: w.info.threads,
        data_roots: w.info.data_roots.clone(),
    }
}

pub(super) fn launched_job(j: &crate::launcher::JobView) -> proto::LauncherJob {
    let (worker_id, worker_name) = j.worker.clone().unwrap_or_default();
    proto::LauncherJob {
        job_id: j.job_id.clone(),
        state: j.state.clone(),
        node: j.node.clone(),
        worker_id,
        worker_name,
        gpus: j.gpus,
        cpus: j.cpus,
        reason: j.reason.clone(),
    }
}

impl From<&ExperimentStatus> for proto::ExperimentStatus {
    fn from(s: &ExperimentStatus) -> Self {
        proto::ExperimentStatus {
            experiment: Some(summary(&s.experiment)),
            runs: s
                .runs
                .iter()
                .map(|r| {
                    let stop = s.early_stopping.as_ref().and_then(|e| e.stops.get(&r.id));
                    run_status_with_stop(r, s.at_ms, stop)
                })
                .collect(),
            early_stopping: s
                .early_stopping
                .as_ref()
                .map(|e| proto::EarlyStoppingSummary {
                    rule: e.rule.clone(),
                    stopped_runs: e.compute.stopped_runs,
                    gpu_hours_used: e.compute.gpu_hours_used,
                    gpu_hours_saved: e.compute.gpu_hours_saved,
                    core_hours_used: e.compute.core_hours_used,
                    core_hours_saved: e.compute.core_hours_saved,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ablate_common::fuzz::Mutator;
    use prost::Message;

    use super::*;

    /// Arbitrary bytes decoded as worker requests and converted: refused or accepted,
    /// never a panic.
    #[test]
    fn proto_to_domain_conversions_survive_mutated_messages() {
        let register = proto::RegisterRequest {
            protocol_version: 1,
            name: "host".into(),
            devices: vec![proto::Device {
                name: "cuda:0".into(),
            }],
            threads: 4,
            worker_id: "w-host-1234abcd".into(),
            data_roots: vec!["/usr/share/datasets".into()],
        }
        .encode_to_vec();
        let progress = proto::ProgressRequest {
            worker_id: "w".into(),
            run_id: "r".into(),
            attempt: 1,
            steps: vec![proto::StepMetrics {
                epoch: 1,
                step: 2,
                loss: 0.5,
            }],
            epoch: Some(proto::EpochMetrics {
                epoch: 1,
                eval_acc: 0.5,
                train_acc: 0.4,
                ..Default::default()
            }),
            current_epoch: 1,
            current_step: 2,
            steps_per_epoch: 10,
        }
        .encode_to_vec();
        let runs = Mutator::new(5).run(
            &[&register, &progress],
            Duration::from_secs(2),
            100_000,
            |bytes| {
                if let Ok(r) = proto::RegisterRequest::decode(bytes) {
                    let _ = Registration::try_from(r);
                }
                if let Ok(p) = proto::ProgressRequest::decode(bytes) {
                    let _ = Progress::try_from(p);
                }
                if let Ok(c) = proto::CompleteRequest::decode(bytes) {
                    let _ = attempt_ref(c.worker_id, c.run_id, c.attempt);
                }
                if let Ok(f) = proto::FailRequest::decode(bytes) {
                    let _ = truncate(&f.reason, MAX_REASON_BYTES);
                }
            },
        );
        assert!(runs > 100, "{runs}");
    }

    fn run_row(state: RunState, best_eval_acc: Option<f64>) -> RunRow {
        RunRow {
            id: "r1".into(),
            experiment_id: "e1".into(),
            name: "cnn".into(),
            model: "cnn".into(),
            state,
            attempt: 1,
            worker_id: None,
            epochs: 2,
            current_epoch: 0,
            current_step: 0,
            steps_per_epoch: 0,
            last_loss: None,
            best_eval_acc,
            last_eval_acc: best_eval_acc,
            stored_epochs: 0,
            error: None,
            wall_s: 0.0,
            attempt_started_ms: None,
            checkpoint_epoch: None,
            checkpoint_file: None,
            checkpoint_bytes: None,
            gpus: 0,
            pending_reason: None,
        }
    }

    /// A missing number stays missing on the wire and a real 0.0 (a model that got every
    /// eval image wrong) stays 0.0: the two no longer share one encoding.
    #[test]
    fn missing_numbers_and_zero_differ_on_the_wire() {
        let queued = run_status(&run_row(RunState::Queued, None), 0);
        let wrong = run_status(&run_row(RunState::Finished, Some(0.0)), 0);
        let decode = |s: &proto::RunStatus| proto::RunStatus::decode(&*s.encode_to_vec()).unwrap();
        let (queued, wrong) = (decode(&queued), decode(&wrong));
        assert_eq!((queued.best_eval_acc, queued.last_loss), (None, None));
        assert_eq!(wrong.best_eval_acc, Some(0.0));
        assert_eq!(queued.state(), proto::RunState::Queued);
        assert_eq!(wrong.state(), proto::RunState::Finished);
    }

    #[test]
    fn every_run_state_has_its_wire_state_and_label() {
        for state in RunState::ALL {
            let wire = run_state(state);
            assert_eq!(wire.label(), state.as_str());
            assert_eq!(wire.is_terminal(), state.is_terminal());
        }
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        let cut = truncate("ééé", 3);
        assert!(cut.starts_with('é') && cut.contains("bytes cut"), "{cut}");
    }
}
