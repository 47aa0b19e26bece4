//! Rows the store takes and returns.

use std::collections::BTreeMap;

use crate::scheduling::scheduler::{Millis, RunState};

/// A submitted experiment, as inserted.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExperiment {
    /// Experiment id.
    pub id: String,
    /// Grid name.
    pub name: String,
    /// Grid description.
    pub description: Option<String>,
    /// The grid file's name.
    pub file_name: String,
    /// The grid's TOML text, as submitted.
    pub grid_toml: String,
    /// Submit time.
    pub submitted_ms: Millis,
}

/// A line of the event log, as appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// The experiment it concerns.
    pub experiment_id: Option<&'a str>,
    /// The run it concerns.
    pub run_id: Option<&'a str>,
    /// The attempt it concerns.
    pub attempt: Option<u32>,
    /// Event kind (`submitted`, `worker`, …).
    pub kind: &'a str,
    /// Readable text.
    pub message: &'a str,
}

impl<'a> NewEvent<'a> {
    /// An event of no experiment (a worker came or left).
    pub fn cluster(kind: &'a str, message: &'a str) -> NewEvent<'a> {
        NewEvent {
            experiment_id: None,
            run_id: None,
            attempt: None,
            kind,
            message,
        }
    }
}

/// A run of a new experiment, as inserted (state `queued`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Run id.
    pub id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Position in the experiment (expansion order).
    pub index: u32,
    /// Readable name.
    pub name: String,
    /// Catalogue model.
    pub model: String,
    /// The RunSpec as JSON.
    pub spec_json: String,
    /// The grid values that vary.
    pub factors: BTreeMap<String, serde_json::Value>,
    /// GPUs per run (0: CPU).
    pub gpus: u32,
    /// Epochs to train.
    pub epochs: u32,
    /// Trainable parameters.
    pub params: u64,
    /// Forward FLOPs per image.
    pub flops: u64,
    /// Failures allowed.
    pub max_attempts: u32,
}

/// An experiment with the counts of its runs by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentRow {
    /// Submit sequence (queue order).
    pub seq: u64,
    /// Experiment id.
    pub id: String,
    /// Grid name.
    pub name: String,
    /// Grid description.
    pub description: Option<String>,
    /// Submit time.
    pub submitted_ms: Millis,
    /// Runs in total.
    pub runs: u32,
    /// Queued runs.
    pub queued: u32,
    /// Running runs.
    pub running: u32,
    /// Finished runs.
    pub finished: u32,
    /// Failed runs.
    pub failed: u32,
    /// Cancelled runs.
    pub cancelled: u32,
    /// Runs stopped early by the grid's rule.
    pub stopped: u32,
}

impl ExperimentRow {
    /// Whether every run is terminal.
    pub fn is_done(&self) -> bool {
        self.queued == 0 && self.running == 0
    }

    /// The experiment's state from its runs' counts: failed when a run failed, cancelled
    /// when a run was cancelled, once every run is terminal.
    pub fn state(&self) -> ExperimentState {
        if self.is_done() {
            if self.failed > 0 {
                ExperimentState::Failed
            } else if self.cancelled > 0 {
                ExperimentState::Cancelled
            } else {
                ExperimentState::Finished
            }
        } else if self.running > 0
            || self.finished + self.failed + self.cancelled + self.stopped > 0
        {
            ExperimentState::Running
        } else {
            ExperimentState::Queued
        }
    }
}

/// Where an experiment is, from its runs' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExperimentState {
    /// No run has started.
    Queued,
    /// Some runs started and some are not done.
    Running,
    /// Every run is done and none failed or was cancelled.
    Finished,
    /// Every run is done and at least one failed.
    Failed,
    /// Every run is done, none failed, and at least one was cancelled.
    Cancelled,
}

impl ExperimentState {
    /// The state's name as shown (`queued`, `running`, `finished`, `failed`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentState::Queued => "queued",
            ExperimentState::Running => "running",
            ExperimentState::Finished => "finished",
            ExperimentState::Failed => "failed",
            ExperimentState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ExperimentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as `status` and `watch` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Readable name.
    pub name: String,
    /// Catalogue model.
    pub model: String,
    /// State.
    pub state: RunState,
    /// Attempts started.
    pub attempt: u32,
    /// Lease holder.
    pub worker_id: Option<String>,
    /// Epochs to train.
    pub epochs: u32,
    /// Epoch in progress (1-based; 0 before the first report).
    pub current_epoch: u32,
    /// Step in the epoch in progress.
    pub current_step: u64,
    /// Steps of an epoch.
    pub steps_per_epoch: u64,
    /// Latest sampled training loss.
    pub last_loss: Option<f64>,
    /// Best eval accuracy of the stored epochs.
    pub best_eval_acc: Option<f64>,
    /// Eval accuracy of the latest stored epoch.
    pub last_eval_acc: Option<f64>,
    /// Epochs stored.
    pub stored_epochs: u32,
    /// Failure reason.
    pub error: Option<String>,
    /// Wall time of the ended attempts, seconds.
    pub wall_s: f64,
    /// When the current attempt started.
    pub attempt_started_ms: Option<Millis>,
    /// Epoch of the latest stored checkpoint.
    pub checkpoint_epoch: Option<u32>,
    /// Its file name under the run's checkpoint directory.
    pub checkpoint_file: Option<String>,
    /// Its size in bytes: not stored, filled in from the file by the coordinator.
    pub checkpoint_bytes: Option<u64>,
    /// GPUs the run needs (0: a CPU run).
    pub gpus: u32,
    /// Why a queued run is not running (filled in by the coordinator, not stored).
    pub pending_reason: Option<String>,
}

impl RunRow {
    /// Training time so far: ended attempts plus the running one.
    pub fn elapsed_seconds(&self, now: Millis) -> f64 {
        let running = match (self.state, self.attempt_started_ms) {
            (RunState::Running, Some(start)) => now.saturating_sub(start) as f64 / 1000.0,
            _ => 0.0,
        };
        self.wall_s + running
    }
}

/// Where a run is, from a worker's progress message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressUpdate {
    /// Epoch in progress (1-based).
    pub current_epoch: u32,
    /// Step within it.
    pub current_step: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Latest step loss, when the message had steps.
    pub last_loss: Option<f64>,
}

/// What an assignment needs beyond the scheduling record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    /// Its experiment.
    pub experiment_id: String,
    /// Readable name.
    pub name: String,
    /// The RunSpec as JSON.
    pub spec_json: String,
    /// Epoch of the latest stored checkpoint.
    pub checkpoint_epoch: Option<u32>,
    /// Its file name under the run's checkpoint directory.
    pub checkpoint_file: Option<String>,
    /// Trainable parameters (the grid's count until a worker reports its own).
    pub params: u64,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// When.
    pub at_ms: Millis,
    /// The run it concerns.
    pub run_id: Option<String>,
    /// The attempt it concerns.
    pub attempt: Option<u32>,
    /// Event kind (`started`, `retry`, …).
    pub kind: String,
    /// Readable text.
    pub message: String,
}

/// A run as its experiment's report lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRunRow {
    /// Run id.
    pub id: String,
    /// Readable name.
    pub name: String,
    /// Catalogue model.
    pub model: String,
    /// The grid values that vary.
    pub factors: BTreeMap<String, serde_json::Value>,
    /// Trainable parameters.
    pub params: u64,
    /// State, as stored (`finished`, …).
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Failure reason.
    pub error: Option<String>,
}

/// A stop decision as stored (one row per stopped run).
#[derive(Debug, Clone, PartialEq)]
pub struct StopRow {
    /// The stopped run.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// `median` or `asha`.
    pub rule: String,
    /// The metric compared.
    pub metric: String,
    /// The epoch the verdict was taken at.
    pub epoch: u32,
    /// The run's variant's value there.
    pub value: Option<f64>,
    /// The median of the others, or the rung's cut-off.
    pub threshold: Option<f64>,
    /// The other variants' values, best first.
    pub compared: Vec<f64>,
    /// Other variants that had not reached the epoch.
    pub pending: u32,
    /// A readable sentence with the numbers.
    pub reason: String,
    /// Epochs the run had stored when it was stopped.
    pub stored_epochs: u32,
    /// When.
    pub decided_ms: Millis,
    /// When a user resumed it (`None`: still stopped).
    pub resumed_ms: Option<Millis>,
}

/// One run as the decision logic reads it from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StopInputRow {
    /// Run id.
    pub run_id: String,
    /// Index in the experiment.
    pub index: u32,
    /// The RunSpec as JSON.
    pub spec_json: String,
    /// Epochs to train.
    pub epochs: u32,
    /// State.
    pub state: RunState,
    /// Its stop decision, if any.
    pub stop: Option<StopRow>,
    /// Stored epochs: (epoch, value of the metric; `NaN` when missing).
    pub values: Vec<(u32, f64)>,
}

/// What a run's compute is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeRow {
    /// Epochs to train.
    pub epochs: u32,
    /// GPUs a run (0: CPU).
    pub gpus: u32,
    /// CPU threads of the worker that last ran it (`None`: never ran).
    pub cores: Option<u32>,
}
