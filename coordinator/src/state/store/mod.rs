//! The coordinator's storage: experiments, runs (spec, scheduling state, lease), epoch
//! metrics, sampled step losses, events, workers and early-stopping decisions.
//!
//! [`Store`] is what the coordinator state reads and writes through; every state change is
//! one transaction ([`Store::transaction`], or [`write`](trait.Store.html#method.write) for
//! a closure that returns a value), so the coordinator can be killed at any instant and
//! restarted on the same store: what was acknowledged is there, and nothing is
//! half-written. Epoch rows are unique on `(run, epoch)`: written once.
//!
//! # Layout
//! - `records`: the rows the store takes and returns.
//! - `error`: [`StoreError`].
//! - [`sqlite`]: [`SqliteStore`], the SQLite file the coordinator runs on (schema and
//!   migrations, the write-ahead log's checkpointer, early-stopping records).
//! - [`memory`]: [`MemoryStore`], the same in memory, for unit tests of the state machine.

mod error;
pub mod memory;
mod records;
pub mod sqlite;

use std::collections::HashMap;

use ablate_common::metrics::{EpochRecord, StepRecord};
use ablate_common::spec::early_stopping::Metric;

use crate::scheduling::scheduler::{Change, Millis, RunSched, WorkerInfo};

pub use error::StoreError;
pub use memory::MemoryStore;
pub use records::{
    AssignmentRow, ComputeRow, EventRow, ExperimentRow, ExperimentState, NewEvent, NewExperiment,
    NewRun, ProgressUpdate, ReportRunRow, RunRow, StopInputRow, StopRow,
};
pub use sqlite::{SqliteStore, SqliteTx, SCHEMA_VERSION};

/// The reads of the coordinator's storage, and its one way to write: a transaction.
pub trait Store: Send {
    /// Where the data lives, for logs (a file path, or "memory").
    fn location(&self) -> String;

    /// Runs `f` in one transaction: everything it writes commits when it returns `Ok`, and
    /// nothing does otherwise.
    fn transaction(
        &mut self,
        f: &mut dyn FnMut(&dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Every run's scheduling record (to rebuild the scheduler at start).
    fn load_runs(&self) -> Result<Vec<RunSched>, StoreError>;
    /// Every registered worker.
    fn load_workers(&self) -> Result<Vec<WorkerInfo>, StoreError>;
    /// Every experiment, in submit order.
    fn experiments(&self) -> Result<Vec<ExperimentRow>, StoreError>;
    /// (id, grid text) of every experiment that has runs not yet terminal.
    fn unfinished_grids(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// (id, user) of every experiment with runs not yet terminal, submitted by a named user.
    fn unfinished_users(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// The user who submitted an experiment (`""`: not recorded).
    fn submitted_by(&self, experiment_id: &str) -> Result<String, StoreError>;
    /// An experiment by id, else the newest with that name.
    fn find_experiment(&self, id_or_name: &str) -> Result<Option<ExperimentRow>, StoreError>;
    /// The newest experiment submitted from exactly this grid text.
    fn find_by_grid(
        &self,
        name: &str,
        grid_toml: &str,
    ) -> Result<Option<ExperimentRow>, StoreError>;
    /// The runs of an experiment, in order.
    fn run_rows(&self, experiment_id: &str) -> Result<Vec<RunRow>, StoreError>;
    /// One run.
    fn run_row(&self, run_id: &str) -> Result<Option<RunRow>, StoreError>;
    /// The ids of an experiment's runs, in order.
    fn run_ids(&self, experiment_id: &str) -> Result<Vec<String>, StoreError>;
    /// What an assignment of the run needs.
    fn assignment(&self, run_id: &str) -> Result<Option<AssignmentRow>, StoreError>;
    /// The stored epochs of a run, in order.
    fn epochs(&self, run_id: &str) -> Result<Vec<EpochRecord>, StoreError>;
    /// Sampled step losses of a run, in order.
    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError>;
    /// The event log of a run (or of every run when `run_id` is `None`), oldest first.
    fn events(&self, run_id: Option<&str>) -> Result<Vec<EventRow>, StoreError>;
    /// The runs of an experiment as its report lists them, in order.
    fn report_runs(&self, experiment_id: &str) -> Result<Vec<ReportRunRow>, StoreError>;
    /// The grid file's name and text an experiment was submitted from.
    fn grid_file(&self, experiment_id: &str) -> Result<Option<(String, String)>, StoreError>;
    /// The grid text an experiment was submitted from.
    fn grid_toml(&self, experiment_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.grid_file(experiment_id)?.map(|(_, text)| text))
    }
    /// The stop decisions of an experiment's runs, by run id.
    fn early_stops(&self, experiment_id: &str) -> Result<HashMap<String, StopRow>, StoreError>;
    /// A run's stop decision.
    fn early_stop(&self, run_id: &str) -> Result<Option<StopRow>, StoreError>;
    /// Every run of an experiment with its stored values of `metric`, in run order.
    fn stop_inputs(
        &self,
        experiment_id: &str,
        metric: Metric,
    ) -> Result<Vec<StopInputRow>, StoreError>;
    /// What each run's compute is counted from, by run id.
    fn compute_rows(&self, experiment_id: &str) -> Result<HashMap<String, ComputeRow>, StoreError>;
    /// Per run of an experiment: (epochs stored, their seconds summed).
    fn epoch_seconds(&self, experiment_id: &str)
        -> Result<HashMap<String, (u32, f64)>, StoreError>;
}

impl dyn Store {
    /// [`Store::transaction`] for a closure that returns a value.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut f = Some(f);
        let mut out = None;
        self.transaction(&mut |tx| {
            let f = f.take().expect("a transaction runs its closure once");
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("a committed transaction ran its closure"))
    }
}

/// The writes of one transaction.
pub trait Tx {
    /// Inserts a new experiment; returns its submit sequence.
    fn insert_experiment(&self, e: &NewExperiment) -> Result<u64, StoreError>;
    /// Records who submitted an experiment.
    fn set_submitted_by(&self, experiment_id: &str, user: &str) -> Result<(), StoreError>;
    /// Inserts a new run, `queued`.
    fn insert_run(&self, r: &NewRun) -> Result<(), StoreError>;
    /// Writes a planned scheduler change (state, attempt, lease, timing) and its event.
    fn apply(&self, change: &Change, now: Millis) -> Result<(), StoreError>;
    /// Appends to the event log.
    fn event(&self, event: &NewEvent<'_>, now: Millis) -> Result<(), StoreError>;
    /// Appends a change's event to the log, when its kind is one that is logged.
    fn log_change(&self, change: &Change, now: Millis) -> Result<(), StoreError> {
        if !change.kind.logged() {
            return Ok(());
        }
        let run = &change.after;
        let event = NewEvent {
            experiment_id: Some(&run.experiment_id),
            run_id: Some(&run.id),
            attempt: Some(run.attempt),
            kind: change.kind.as_str(),
            message: &change.message,
        };
        self.event(&event, now)
    }
    /// Where a run is, for progress bars.
    fn progress(&self, run_id: &str, p: &ProgressUpdate) -> Result<(), StoreError>;
    /// Stores an epoch's metrics once: `false` (and nothing changes) when the run already
    /// has that epoch.
    fn insert_epoch(
        &self,
        run_id: &str,
        attempt: u32,
        e: &EpochRecord,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// Stores sampled step losses (a step already stored is kept).
    fn insert_steps(
        &self,
        run_id: &str,
        attempt: u32,
        steps: &[StepRecord],
    ) -> Result<(), StoreError>;
    /// The parameter count a worker measured.
    fn set_params(&self, run_id: &str, params: u64) -> Result<(), StoreError>;
    /// Points the run at its newest checkpoint file.
    fn set_checkpoint(&self, run_id: &str, epoch: u32, file: &str) -> Result<(), StoreError>;
    /// Registers a worker, or updates one that registers again.
    fn upsert_worker(&self, w: &WorkerInfo, now: Millis) -> Result<(), StoreError>;
    /// Records a stop decision (replacing an earlier, resumed one of the same run).
    fn insert_stop(&self, s: &StopRow) -> Result<(), StoreError>;
    /// Notes that a user resumed a stopped run: it is never judged again.
    fn mark_resumed(&self, run_id: &str, now: Millis) -> Result<(), StoreError>;
    /// The CPU threads of the worker a run's attempt started on.
    fn set_cores(&self, run_id: &str, cores: u32) -> Result<(), StoreError>;
    /// Forgets a worker that left (runs keep the id of the worker that last held them).
    fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError>;
}
