//! [`MemoryStore`]: the store in memory, with the SQLite store's semantics (submit order,
//! unique ids, epochs written once, missing numbers read back as `NaN`, all-or-nothing
//! transactions), so the coordinator's state machine can be tested without a file.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use ablate_common::metrics::{EpochRecord, StepRecord};
use ablate_common::spec::early_stopping::Metric;

use super::error::corrupt;
use super::{
    AssignmentRow, ComputeRow, EventRow, ExperimentRow, NewEvent, NewExperiment, NewRun,
    ProgressUpdate, ReportRunRow, RunRow, StopInputRow, StopRow, Store, StoreError, Tx,
};
use crate::scheduling::scheduler::{Change, Demand, Lease, Millis, RunSched, RunState, WorkerInfo};

/// The store in memory (nothing survives the value).
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Data,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

#[derive(Debug, Clone, Default)]
struct Data {
    /// In submit order; `seq` is the position + 1.
    experiments: Vec<Experiment>,
    /// In insert order.
    runs: Vec<Run>,
    /// By (run, epoch).
    epochs: BTreeMap<(String, u32), EpochRecord>,
    /// By (run, step).
    steps: BTreeMap<(String, u64), StepRecord>,
    events: Vec<EventRow>,
    /// In registration order, with the registration time.
    workers: Vec<(WorkerInfo, Millis)>,
    stops: BTreeMap<String, StopRow>,
}

#[derive(Debug, Clone)]
struct Experiment {
    seq: u64,
    new: NewExperiment,
    submitted_by: String,
}

#[derive(Debug, Clone)]
struct Run {
    new: NewRun,
    state: RunState,
    attempt: u32,
    failures: u32,
    lease: Option<Lease>,
    error: Option<String>,
    attempt_started_ms: Option<Millis>,
    started_ms: Option<Millis>,
    finished_ms: Option<Millis>,
    wall_s: f64,
    current_epoch: u32,
    current_step: u64,
    steps_per_epoch: u64,
    last_loss: Option<f64>,
    checkpoint: Option<(u32, String)>,
    cores: Option<u32>,
}

/// What SQLite stores of a float: NaN and infinities become missing, read back as NaN.
fn stored(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        f64::NAN
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl Data {
    fn experiment(&self, id: &str) -> Option<&Experiment> {
        self.experiments.iter().find(|e| e.new.id == id)
    }

    fn run(&self, id: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.new.id == id)
    }

    fn run_mut(&mut self, id: &str) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.new.id == id)
    }

    /// An experiment's runs in order.
    fn runs_of(&self, experiment_id: &str) -> Vec<&Run> {
        let mut runs: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.new.experiment_id == experiment_id)
            .collect();
        runs.sort_by_key(|r| r.new.index);
        runs
    }

    fn epochs_of(&self, run_id: &str) -> impl Iterator<Item = &EpochRecord> {
        self.epochs
            .range((run_id.to_string(), 0)..=(run_id.to_string(), u32::MAX))
            .map(|(_, e)| e)
    }

    fn experiment_row(&self, e: &Experiment) -> ExperimentRow {
        let runs = self.runs_of(&e.new.id);
        let count = |state: RunState| runs.iter().filter(|r| r.state == state).count() as u32;
        ExperimentRow {
            seq: e.seq,
            id: e.new.id.clone(),
            name: e.new.name.clone(),
            description: e.new.description.clone(),
            submitted_ms: e.new.submitted_ms,
            runs: runs.len() as u32,
            queued: count(RunState::Queued),
            running: count(RunState::Running),
            finished: count(RunState::Finished),
            failed: count(RunState::Failed),
            cancelled: count(RunState::Cancelled),
            stopped: count(RunState::Stopped),
        }
    }

    fn unfinished(&self, e: &Experiment) -> bool {
        self.runs_of(&e.new.id)
            .iter()
            .any(|r| matches!(r.state, RunState::Queued | RunState::Running))
    }

    fn run_row(&self, r: &Run) -> RunRow {
        let epochs: Vec<&EpochRecord> = self.epochs_of(&r.new.id).collect();
        let best = epochs
            .iter()
            .filter_map(|e| finite(e.eval_acc))
            .fold(None, |best: Option<f64>, v| {
                Some(best.map_or(v, |b| b.max(v)))
            });
        RunRow {
            id: r.new.id.clone(),
            experiment_id: r.new.experiment_id.clone(),
            name: r.new.name.clone(),
            model: r.new.model.clone(),
            state: r.state,
            attempt: r.attempt,
            worker_id: r.lease.as_ref().map(|l| l.worker_id.clone()),
            epochs: r.new.epochs,
            current_epoch: r.current_epoch,
            current_step: r.current_step,
            steps_per_epoch: r.steps_per_epoch,
            last_loss: r.last_loss,
            best_eval_acc: best,
            last_eval_acc: epochs.last().and_then(|e| finite(e.eval_acc)),
            stored_epochs: epochs.len() as u32,
            error: r.error.clone(),
            wall_s: r.wall_s,
            attempt_started_ms: r.attempt_started_ms,
            checkpoint_epoch: r.checkpoint.as_ref().map(|c| c.0),
            checkpoint_file: r.checkpoint.as_ref().map(|c| c.1.clone()),
            checkpoint_bytes: None,
            gpus: r.new.gpus,
            pending_reason: None,
        }
    }

    fn no_run(run_id: &str) -> StoreError {
        corrupt("runs", format!("no run `{run_id}`"))
    }
}

fn metric_of(e: &EpochRecord, metric: Metric) -> f64 {
    match metric {
        Metric::EvalAcc => e.eval_acc,
        Metric::EvalLoss => e.eval_loss,
        Metric::TrainAcc => e.train_acc,
        Metric::TrainLoss => e.train_loss,
    }
}

impl Store for MemoryStore {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn transaction(
        &mut self,
        f: &mut dyn FnMut(&dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tx = MemoryTx {
            data: RefCell::new(self.data.clone()),
        };
        f(&tx)?;
        self.data = tx.data.into_inner();
        Ok(())
    }

    fn load_runs(&self) -> Result<Vec<RunSched>, StoreError> {
        let d = &self.data;
        let mut runs = Vec::new();
        for e in &d.experiments {
            for r in d.runs_of(&e.new.id) {
                runs.push(RunSched {
                    id: r.new.id.clone(),
                    experiment_id: e.new.id.clone(),
                    order: (e.seq, r.new.index),
                    demand: Demand::from_gpus(r.new.gpus),
                    state: r.state,
                    attempt: r.attempt,
                    failures: r.failures,
                    max_attempts: r.new.max_attempts,
                    lease: r.lease.clone(),
                    error: r.error.clone(),
                });
            }
        }
        Ok(runs)
    }

    fn load_workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let mut workers = self.data.workers.clone();
        workers.sort_by_key(|(_, registered)| *registered);
        Ok(workers
            .into_iter()
            .map(|(w, _)| WorkerInfo {
                data_roots: Vec::new(),
                ..w
            })
            .collect())
    }

    fn experiments(&self) -> Result<Vec<ExperimentRow>, StoreError> {
        let d = &self.data;
        Ok(d.experiments.iter().map(|e| d.experiment_row(e)).collect())
    }

    fn unfinished_grids(&self) -> Result<Vec<(String, String)>, StoreError> {
        let d = &self.data;
        Ok(d.experiments
            .iter()
            .filter(|e| d.unfinished(e))
            .map(|e| (e.new.id.clone(), e.new.grid_toml.clone()))
            .collect())
    }

    fn unfinished_users(&self) -> Result<Vec<(String, String)>, StoreError> {
        let d = &self.data;
        Ok(d.experiments
            .iter()
            .filter(|e| !e.submitted_by.is_empty() && d.unfinished(e))
            .map(|e| (e.new.id.clone(), e.submitted_by.clone()))
            .collect())
    }

    fn submitted_by(&self, experiment_id: &str) -> Result<String, StoreError> {
        Ok(self
            .data
            .experiment(experiment_id)
            .map(|e| e.submitted_by.clone())
            .unwrap_or_default())
    }

    fn find_experiment(&self, id_or_name: &str) -> Result<Option<ExperimentRow>, StoreError> {
        let d = &self.data;
        let found = d.experiment(id_or_name).or_else(|| {
            d.experiments
                .iter()
                .rev()
                .find(|e| e.new.name == id_or_name)
        });
        Ok(found.map(|e| d.experiment_row(e)))
    }

    fn find_by_grid(
        &self,
        name: &str,
        grid_toml: &str,
    ) -> Result<Option<ExperimentRow>, StoreError> {
        let d = &self.data;
        let found = d
            .experiments
            .iter()
            .rev()
            .find(|e| e.new.name == name && e.new.grid_toml == grid_toml);
        Ok(found.map(|e| d.experiment_row(e)))
    }

    fn run_rows(&self, experiment_id: &str) -> Result<Vec<RunRow>, StoreError> {
        let d = &self.data;
        Ok(d.runs_of(experiment_id)
            .into_iter()
            .map(|r| d.run_row(r))
            .collect())
    }

    fn run_row(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        let d = &self.data;
        Ok(d.run(run_id).map(|r| d.run_row(r)))
    }

    fn run_ids(&self, experiment_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .data
            .runs_of(experiment_id)
            .into_iter()
            .map(|r| r.new.id.clone())
            .collect())
    }

    fn assignment(&self, run_id: &str) -> Result<Option<AssignmentRow>, StoreError> {
        Ok(self.data.run(run_id).map(|r| AssignmentRow {
            experiment_id: r.new.experiment_id.clone(),
            name: r.new.name.clone(),
            spec_json: r.new.spec_json.clone(),
            checkpoint_epoch: r.checkpoint.as_ref().map(|c| c.0),
            checkpoint_file: r.checkpoint.as_ref().map(|c| c.1.clone()),
            params: r.new.params,
        }))
    }

    fn epochs(&self, run_id: &str) -> Result<Vec<EpochRecord>, StoreError> {
        Ok(self.data.epochs_of(run_id).cloned().collect())
    }

    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        Ok(self
            .data
            .steps
            .range((run_id.to_string(), 0)..=(run_id.to_string(), u64::MAX))
            .map(|(_, s)| *s)
            .collect())
    }

    fn events(&self, run_id: Option<&str>) -> Result<Vec<EventRow>, StoreError> {
        Ok(self
            .data
            .events
            .iter()
            .filter(|e| run_id.is_none() || e.run_id.as_deref() == run_id)
            .cloned()
            .collect())
    }

    fn report_runs(&self, experiment_id: &str) -> Result<Vec<ReportRunRow>, StoreError> {
        Ok(self
            .data
            .runs_of(experiment_id)
            .into_iter()
            .map(|r| ReportRunRow {
                id: r.new.id.clone(),
                name: r.new.name.clone(),
                model: r.new.model.clone(),
                factors: r.new.factors.clone(),
                params: r.new.params,
                state: r.state.as_str().to_string(),
                attempts: r.attempt,
                error: r.error.clone(),
            })
            .collect())
    }

    fn grid_file(&self, experiment_id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .data
            .experiment(experiment_id)
            .map(|e| (e.new.file_name.clone(), e.new.grid_toml.clone())))
    }

    fn early_stops(&self, experiment_id: &str) -> Result<HashMap<String, StopRow>, StoreError> {
        Ok(self
            .data
            .stops
            .values()
            .filter(|s| s.experiment_id == experiment_id)
            .map(|s| (s.run_id.clone(), s.clone()))
            .collect())
    }

    fn early_stop(&self, run_id: &str) -> Result<Option<StopRow>, StoreError> {
        Ok(self.data.stops.get(run_id).cloned())
    }

    fn stop_inputs(
        &self,
        experiment_id: &str,
        metric: Metric,
    ) -> Result<Vec<StopInputRow>, StoreError> {
        let d = &self.data;
        Ok(d.runs_of(experiment_id)
            .into_iter()
            .map(|r| StopInputRow {
                run_id: r.new.id.clone(),
                index: r.new.index,
                spec_json: r.new.spec_json.clone(),
                epochs: r.new.epochs,
                state: r.state,
                stop: d.stops.get(&r.new.id).cloned(),
                values: d
                    .epochs_of(&r.new.id)
                    .map(|e| (e.epoch, metric_of(e, metric)))
                    .collect(),
            })
            .collect())
    }

    fn compute_rows(&self, experiment_id: &str) -> Result<HashMap<String, ComputeRow>, StoreError> {
        Ok(self
            .data
            .runs_of(experiment_id)
            .into_iter()
            .map(|r| {
                let row = ComputeRow {
                    epochs: r.new.epochs,
                    gpus: r.new.gpus,
                    cores: r.cores,
                };
                (r.new.id.clone(), row)
            })
            .collect())
    }

    fn epoch_seconds(
        &self,
        experiment_id: &str,
    ) -> Result<HashMap<String, (u32, f64)>, StoreError> {
        let d = &self.data;
        let mut out = HashMap::new();
        for r in d.runs_of(experiment_id) {
            let epochs: Vec<&EpochRecord> = d.epochs_of(&r.new.id).collect();
            if !epochs.is_empty() {
                let seconds = epochs.iter().filter_map(|e| finite(e.seconds)).sum();
                out.insert(r.new.id.clone(), (epochs.len() as u32, seconds));
            }
        }
        Ok(out)
    }
}

/// A transaction: writes go to a copy that replaces the store's data on commit.
struct MemoryTx {
    data: RefCell<Data>,
}

impl MemoryTx {
    fn update_run(&self, run_id: &str, f: impl FnOnce(&mut Run)) {
        if let Some(run) = self.data.borrow_mut().run_mut(run_id) {
            f(run);
        }
    }
}

impl Tx for MemoryTx {
    fn insert_experiment(&self, e: &NewExperiment) -> Result<u64, StoreError> {
        let mut d = self.data.borrow_mut();
        if d.experiment(&e.id).is_some() {
            return Err(corrupt("experiments", format!("`{}` exists", e.id)));
        }
        let seq = d.experiments.last().map_or(1, |last| last.seq + 1);
        d.experiments.push(Experiment {
            seq,
            new: e.clone(),
            submitted_by: String::new(),
        });
        Ok(seq)
    }

    fn set_submitted_by(&self, experiment_id: &str, user: &str) -> Result<(), StoreError> {
        let mut d = self.data.borrow_mut();
        if let Some(e) = d.experiments.iter_mut().find(|e| e.new.id == experiment_id) {
            e.submitted_by = user.to_string();
        }
        Ok(())
    }

    fn insert_run(&self, r: &NewRun) -> Result<(), StoreError> {
        let mut d = self.data.borrow_mut();
        if d.experiment(&r.experiment_id).is_none() {
            return Err(corrupt(
                "runs",
                format!("no experiment `{}`", r.experiment_id),
            ));
        }
        let clash = d.runs.iter().any(|o| {
            o.new.id == r.id
                || (o.new.experiment_id == r.experiment_id
                    && (o.new.index == r.index || o.new.name == r.name))
        });
        if clash {
            return Err(corrupt(
                "runs",
                format!("`{}` clashes with a stored run", r.id),
            ));
        }
        d.runs.push(Run {
            new: r.clone(),
            state: RunState::Queued,
            attempt: 0,
            failures: 0,
            lease: None,
            error: None,
            attempt_started_ms: None,
            started_ms: None,
            finished_ms: None,
            wall_s: 0.0,
            current_epoch: 0,
            current_step: 0,
            steps_per_epoch: 0,
            last_loss: None,
            checkpoint: None,
            cores: None,
        });
        Ok(())
    }

    fn apply(&self, change: &Change, now: Millis) -> Result<(), StoreError> {
        let after = &change.after;
        {
            let mut d = self.data.borrow_mut();
            let run = d
                .run_mut(&after.id)
                .ok_or_else(|| Data::no_run(&after.id))?;
            run.state = after.state;
            run.attempt = after.attempt;
            run.failures = after.failures;
            run.lease = after.lease.clone();
            run.error = after.error.clone();
            if change.attempt_started() {
                run.attempt_started_ms = Some(now);
                run.started_ms = run.started_ms.or(Some(now));
                run.current_step = 0;
            }
            if change.attempt_ended() {
                let started = run.attempt_started_ms.unwrap_or(now);
                run.wall_s += now.saturating_sub(started) as f64 / 1000.0;
                run.attempt_started_ms = None;
            }
            if after.state.is_terminal() && !change.before.state.is_terminal() {
                run.finished_ms = Some(now);
            }
        }
        self.log_change(change, now)
    }

    fn event(&self, event: &NewEvent<'_>, now: Millis) -> Result<(), StoreError> {
        self.data.borrow_mut().events.push(EventRow {
            at_ms: now,
            run_id: event.run_id.map(str::to_string),
            attempt: event.attempt,
            kind: event.kind.to_string(),
            message: event.message.to_string(),
        });
        Ok(())
    }

    fn progress(&self, run_id: &str, p: &ProgressUpdate) -> Result<(), StoreError> {
        self.update_run(run_id, |run| {
            run.current_epoch = p.current_epoch;
            run.current_step = p.current_step;
            run.steps_per_epoch = p.steps_per_epoch;
            if let Some(loss) = p.last_loss.and_then(finite) {
                run.last_loss = Some(loss);
            }
        });
        Ok(())
    }

    fn insert_epoch(
        &self,
        run_id: &str,
        _attempt: u32,
        e: &EpochRecord,
        _now: Millis,
    ) -> Result<bool, StoreError> {
        let mut d = self.data.borrow_mut();
        if d.run(run_id).is_none() {
            return Err(Data::no_run(run_id));
        }
        let key = (run_id.to_string(), e.epoch);
        if d.epochs.contains_key(&key) {
            return Ok(false);
        }
        let record = EpochRecord {
            epoch: e.epoch,
            train_loss: stored(e.train_loss),
            train_acc: stored(e.train_acc),
            eval_loss: stored(e.eval_loss),
            eval_acc: stored(e.eval_acc),
            lr: stored(e.lr),
            seconds: stored(e.seconds),
            images_per_sec: stored(e.images_per_sec),
        };
        d.epochs.insert(key, record);
        Ok(true)
    }

    fn insert_steps(
        &self,
        run_id: &str,
        _attempt: u32,
        steps: &[StepRecord],
    ) -> Result<(), StoreError> {
        let mut d = self.data.borrow_mut();
        if d.run(run_id).is_none() {
            return Err(Data::no_run(run_id));
        }
        for s in steps {
            d.steps
                .entry((run_id.to_string(), s.step))
                .or_insert_with(|| StepRecord {
                    loss: stored(s.loss),
                    ..*s
                });
        }
        Ok(())
    }

    fn set_params(&self, run_id: &str, params: u64) -> Result<(), StoreError> {
        self.update_run(run_id, |run| run.new.params = params);
        Ok(())
    }

    fn set_checkpoint(&self, run_id: &str, epoch: u32, file: &str) -> Result<(), StoreError> {
        self.update_run(run_id, |run| {
            run.checkpoint = Some((epoch, file.to_string()))
        });
        Ok(())
    }

    fn upsert_worker(&self, w: &WorkerInfo, now: Millis) -> Result<(), StoreError> {
        let mut d = self.data.borrow_mut();
        let stored = WorkerInfo {
            data_roots: Vec::new(),
            ..w.clone()
        };
        match d.workers.iter_mut().find(|(o, _)| o.id == w.id) {
            Some((existing, _)) => *existing = stored,
            None => d.workers.push((stored, now)),
        }
        Ok(())
    }

    fn insert_stop(&self, s: &StopRow) -> Result<(), StoreError> {
        let row = StopRow {
            value: s.value.and_then(finite),
            threshold: s.threshold.and_then(finite),
            compared: s.compared.iter().map(|v| stored(*v)).collect(),
            resumed_ms: None,
            ..s.clone()
        };
        self.data.borrow_mut().stops.insert(s.run_id.clone(), row);
        Ok(())
    }

    fn mark_resumed(&self, run_id: &str, now: Millis) -> Result<(), StoreError> {
        if let Some(stop) = self.data.borrow_mut().stops.get_mut(run_id) {
            stop.resumed_ms = Some(now);
        }
        Ok(())
    }

    fn set_cores(&self, run_id: &str, cores: u32) -> Result<(), StoreError> {
        self.update_run(run_id, |run| run.cores = Some(cores));
        Ok(())
    }

    fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        self.data
            .borrow_mut()
            .workers
            .retain(|(w, _)| w.id != worker_id);
        Ok(())
    }
}
