//! Early stopping in the coordinator: after an epoch is stored (or a run ends), the
//! experiment's `[early_stopping]` rule is applied to the stored epochs
//! ([`crate::state::stopping::rules::decide`]); each run it stops becomes `stopped` in the same
//! transaction that records the decision with its numbers. A stopped run's lease ends at
//! once (its devices are free for the next run); its worker learns it from the answer to
//! its next progress message. `resume` queues stopped runs again.

pub mod rules;

use std::collections::HashMap;
use std::sync::Arc;

use ablate_common::spec::early_stopping::{stored_early_stopping, variant_key, EarlyStopping};
use ablate_common::spec::grid::stored_priority;
use ablate_common::spec::RunSpec;
use tracing::{info, warn};

use super::{AttemptRef, CoordError, Coordinator, Inner};
use crate::report::stopping::{ComputeSaved, RunCost, RunStopping, StopDecision, StoppingData};
use crate::scheduling::scheduler::{Change, EventKind, Millis, RunState};
use crate::state::stopping::rules::{decide, RunInput};
use crate::state::store::StopRow;

/// Early stopping in an experiment's status.
#[derive(Debug, Clone, PartialEq)]
pub struct StoppingStatus {
    /// The rule, in words.
    pub rule: String,
    /// The stop decisions, by run id.
    pub stops: HashMap<String, StopRow>,
    /// Compute used and saved.
    pub compute: ComputeSaved,
}

/// The cached `[early_stopping]` sections, by experiment id (`None`: the grid has none).
pub(super) type StoppingRules = HashMap<String, Option<Arc<EarlyStopping>>>;

impl Coordinator {
    /// The experiment's rule, read from its stored grid once.
    fn stopping_rule(
        inner: &mut Inner,
        experiment_id: &str,
    ) -> Result<Option<Arc<EarlyStopping>>, CoordError> {
        if let Some(rule) = inner.stopping_rules.get(experiment_id) {
            return Ok(rule.clone());
        }
        let rule = inner
            .store
            .grid_toml(experiment_id)?
            .and_then(|text| stored_early_stopping(&text))
            .map(Arc::new);
        inner
            .stopping_rules
            .insert(experiment_id.to_string(), rule.clone());
        Ok(rule)
    }

    /// Applies the experiment's rule to its stored epochs and stops the runs whose
    /// verdict became certain; returns their ids with the reason. Nothing without a rule.
    pub(super) fn judge(
        &self,
        inner: &mut Inner,
        experiment_id: &str,
        now: Millis,
    ) -> Result<HashMap<String, String>, CoordError> {
        let Some(rule) = Self::stopping_rule(inner, experiment_id)? else {
            return Ok(HashMap::new());
        };
        let rows = inner.store.stop_inputs(experiment_id, rule.metric)?;
        let inputs: Vec<RunInput> = rows
            .iter()
            .map(|row| {
                let variant = serde_json::from_str::<RunSpec>(&row.spec_json)
                    .map(|spec| variant_key(&spec, rule.group_seeds))
                    .unwrap_or_else(|_| row.run_id.clone());
                let resumed = row.stop.as_ref().is_some_and(|s| s.resumed_ms.is_some());
                RunInput {
                    run_id: row.run_id.clone(),
                    index: row.index,
                    variant,
                    epochs: row.epochs,
                    state: row.state,
                    stopped_at: row
                        .stop
                        .as_ref()
                        .filter(|s| s.resumed_ms.is_none())
                        .map(|s| s.epoch),
                    exempt: resumed,
                    values: row.values.clone(),
                }
            })
            .collect();
        let decisions = decide(&rule, &inputs);
        if decisions.is_empty() {
            return Ok(HashMap::new());
        }
        let mut changes: Vec<Change> = Vec::new();
        let mut records: Vec<StopRow> = Vec::new();
        let mut stopped = HashMap::new();
        for d in &decisions {
            for run_id in &d.runs {
                let Some(run) = inner.sched.run(run_id) else {
                    continue;
                };
                if run.state.is_terminal() {
                    continue;
                }
                let stored = rows
                    .iter()
                    .find(|r| &r.run_id == run_id)
                    .map_or(0, |r| r.values.len() as u32);
                let mut after = run.clone();
                after.state = RunState::Stopped;
                after.lease = None;
                changes.push(Change {
                    before: run.clone(),
                    after,
                    kind: EventKind::Stopped,
                    message: format!(
                        "stopped early at epoch {} ({} rule): {}",
                        d.epoch,
                        rule.rule.as_str(),
                        d.reason
                    ),
                });
                records.push(StopRow {
                    run_id: run_id.clone(),
                    experiment_id: experiment_id.to_string(),
                    rule: rule.rule.as_str().to_string(),
                    metric: rule.metric.as_str().to_string(),
                    epoch: d.epoch,
                    value: Some(d.value),
                    threshold: Some(d.threshold),
                    compared: d.compared.clone(),
                    pending: d.pending,
                    reason: d.reason.clone(),
                    stored_epochs: stored,
                    decided_ms: now,
                    resumed_ms: None,
                });
                stopped.insert(run_id.clone(), d.reason.clone());
            }
        }
        if changes.is_empty() {
            return Ok(stopped);
        }
        self.apply(inner, changes, now, |tx| {
            for record in &records {
                tx.insert_stop(record)?;
            }
            Ok(())
        })?;
        Ok(stopped)
    }

    /// [`Coordinator::judge`] for the experiment of `run_id`, logging instead of failing:
    /// the message that triggered it was already stored.
    pub(super) fn judge_after(
        &self,
        inner: &mut Inner,
        run_id: &str,
        now: Millis,
    ) -> HashMap<String, String> {
        let Some(experiment_id) = inner.sched.run(run_id).map(|r| r.experiment_id.clone()) else {
            return HashMap::new();
        };
        match self.judge(inner, &experiment_id, now) {
            Ok(stopped) => stopped,
            Err(e) => {
                warn!(experiment = %experiment_id, "early stopping not applied: {e}");
                HashMap::new()
            }
        }
    }

    /// Why the attempt's run was stopped, when `a` is the attempt the rule stopped (its
    /// worker's messages after the stop get this answer instead of a fencing error).
    pub(super) fn stopped_reason(&self, inner: &Inner, a: &AttemptRef) -> Option<String> {
        let run = inner.sched.run(&a.run_id)?;
        if run.state != RunState::Stopped || run.attempt != a.attempt {
            return None;
        }
        let row = inner.store.early_stop(&a.run_id).ok().flatten()?;
        Some(format!(
            "epoch {} ({}): {}",
            row.epoch, row.rule, row.reason
        ))
    }

    /// Queues stopped runs again: one run (by id) or every stopped run of an experiment
    /// (by id or name). They continue from their stored checkpoint to their full length
    /// and are never judged again. Returns the runs resumed.
    pub fn resume(&self, target: &str) -> Result<Vec<String>, CoordError> {
        let now = self.now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let (experiment_id, ids) = match inner.store.find_experiment(target)? {
            Some(exp) => {
                let ids = inner.store.run_ids(&exp.id)?;
                (exp.id, ids)
            }
            None => match inner.sched.run(target) {
                Some(run) => (run.experiment_id.clone(), vec![target.to_string()]),
                None => {
                    return Err(CoordError::NotFound {
                        what: "experiment or run",
                        key: target.to_string(),
                    })
                }
            },
        };
        let mut changes = Vec::new();
        for id in &ids {
            let Some(run) = inner.sched.run(id) else {
                continue;
            };
            if run.state != RunState::Stopped {
                continue;
            }
            let mut after = run.clone();
            after.state = RunState::Queued;
            after.lease = None;
            changes.push(Change {
                before: run.clone(),
                after,
                kind: EventKind::Resumed,
                message: "resumed by a user: continues from its checkpoint to its last epoch; \
                          early stopping no longer judges it"
                    .to_string(),
            });
        }
        if changes.is_empty() {
            if ids.len() == 1 {
                let state = inner.sched.run(&ids[0]).map(|r| r.state);
                return Err(CoordError::invalid(
                    "target",
                    format!(
                        "run {target} is {}; only a stopped run can be resumed",
                        state.map_or("unknown", RunState::as_str)
                    ),
                ));
            }
            return Ok(Vec::new());
        }
        let resumed: Vec<String> = changes.iter().map(|c| c.after.id.clone()).collect();
        if let Some(text) = inner.store.grid_toml(&experiment_id)? {
            inner
                .sched
                .set_weight(&experiment_id, stored_priority(&text));
        }
        self.apply(inner, changes, now, |tx| {
            for id in &resumed {
                tx.mark_resumed(id, now)?;
            }
            Ok(())
        })?;
        info!(experiment = %experiment_id, runs = resumed.len(), "resumed stopped runs");
        Ok(resumed)
    }

    /// The experiment's early stopping as `status` shows it (`None` without a rule).
    pub(super) fn stopping_status(
        &self,
        inner: &mut Inner,
        experiment_id: &str,
    ) -> Result<Option<StoppingStatus>, CoordError> {
        let Some(rule) = Self::stopping_rule(inner, experiment_id)? else {
            return Ok(None);
        };
        let stops = inner.store.early_stops(experiment_id)?;
        let compute_rows = inner.store.compute_rows(experiment_id)?;
        let seconds = inner.store.epoch_seconds(experiment_id)?;
        let states: HashMap<String, RunState> = inner
            .sched
            .runs()
            .filter(|r| r.experiment_id == experiment_id)
            .map(|r| (r.id.clone(), r.state))
            .collect();
        let compute = ComputeSaved::of(compute_rows.iter().map(|(id, c)| {
            let (stored, secs) = seconds.get(id).copied().unwrap_or((0, 0.0));
            RunCost {
                planned_epochs: c.epochs,
                stored_epochs: stored,
                epoch_seconds: secs,
                gpus: c.gpus,
                cores: c.cores,
                stopped: states.get(id) == Some(&RunState::Stopped),
            }
        }));
        Ok(Some(StoppingStatus {
            rule: rule.describe(),
            stops,
            compute,
        }))
    }

    /// The report's early-stopping part (`None` without a rule).
    pub(super) fn stopping_report(
        &self,
        inner: &mut Inner,
        experiment_id: &str,
    ) -> Result<Option<StoppingData>, CoordError> {
        let Some(rule) = Self::stopping_rule(inner, experiment_id)? else {
            return Ok(None);
        };
        let mut stops = inner.store.early_stops(experiment_id)?;
        let runs = inner
            .store
            .compute_rows(experiment_id)?
            .into_iter()
            .map(|(id, c)| {
                let stop = stops.remove(&id).map(|s| StopDecision {
                    rule: s.rule,
                    metric: s.metric,
                    epoch: s.epoch,
                    value: s.value,
                    threshold: s.threshold,
                    compared: s
                        .compared
                        .iter()
                        .map(|v| v.is_finite().then_some(*v))
                        .collect(),
                    pending: s.pending,
                    reason: s.reason,
                    stored_epochs: s.stored_epochs,
                    resumed: s.resumed_ms.is_some(),
                });
                (
                    id,
                    RunStopping {
                        planned_epochs: c.epochs,
                        gpus: c.gpus,
                        cores: c.cores,
                        stop,
                    },
                )
            })
            .collect();
        Ok(Some(StoppingData {
            rule: rule.describe(),
            runs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ablate_common::metrics::EpochRecord;

    use super::*;
    use crate::state::{CoordinatorConfig, Progress, ProgressAnswer, Registration};

    const GRID: &str = r#"name = "es"
[base]
model = "lenet"
image_size = 28
channels = 1
classes = 10
epochs = 3
[grid]
lr = [0.01, 0.001, 1e-7]
[early_stopping]
rule = "median"
grace_epochs = 1
min_runs = 2
"#;

    fn epoch(n: u32, acc: f64) -> EpochRecord {
        EpochRecord {
            epoch: n,
            train_loss: 1.0,
            train_acc: acc,
            eval_loss: 1.0,
            eval_acc: acc,
            lr: 0.01,
            seconds: 10.0,
            images_per_sec: 100.0,
        }
    }

    struct Fixture {
        coord: Arc<Coordinator>,
        worker: String,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let coord = Coordinator::open(&CoordinatorConfig {
                data_dir: dir.path().to_path_buf(),
                lease_ttl: Duration::from_secs(60),
                keep_checkpoints: 1,
            })
            .unwrap();
            let (worker, _) = coord
                .register(Registration {
                    protocol_version: ablate_common::proto::PROTOCOL_VERSION,
                    name: "w".into(),
                    devices: vec!["cpu".into()],
                    threads: 4,
                    worker_id: None,
                    data_roots: Vec::new(),
                })
                .unwrap();
            Fixture {
                coord,
                worker,
                _dir: dir,
            }
        }

        /// Acquires the next run; returns its attempt.
        fn acquire(&self) -> AttemptRef {
            let a = self
                .coord
                .acquire(&self.worker, &["cpu".to_string()])
                .unwrap()
                .expect("a run to acquire");
            AttemptRef {
                worker_id: self.worker.clone(),
                run_id: a.run_id,
                attempt: a.attempt,
            }
        }

        fn epoch(&self, a: &AttemptRef, n: u32, acc: f64) -> Result<ProgressAnswer, CoordError> {
            self.coord.progress_answer(Progress {
                attempt: a.clone(),
                steps: Vec::new(),
                epoch: Some(epoch(n, acc)),
                current_epoch: n,
                current_step: 10,
                steps_per_epoch: 10,
            })
        }

        fn train(&self, accs: &[f64]) -> AttemptRef {
            let a = self.acquire();
            for (i, acc) in accs.iter().enumerate() {
                let answer = self.epoch(&a, i as u32 + 1, *acc).unwrap();
                assert_eq!(answer, ProgressAnswer::default());
            }
            self.coord.complete(&a, 0).unwrap();
            a
        }
    }

    #[test]
    fn a_run_below_the_median_is_stopped_freed_recorded_and_resumable() {
        let f = Fixture::new();
        let submitted = f.coord.submit(GRID, "es.toml").unwrap();
        f.train(&[0.5, 0.6, 0.7]);
        f.train(&[0.4, 0.5, 0.6]);
        let a = f.acquire();
        let answer = f.epoch(&a, 1, 0.1).unwrap();
        assert!(answer.cancel);
        let reason = answer.stop.expect("stopped");
        assert!(
            reason.starts_with("best eval_acc by epoch 1 (0.1000) is below the median (0.4500)"),
            "{reason}"
        );
        // Stopped at once: no lease, the devices free, and never retried.
        let status = f.coord.status(&submitted.id).unwrap();
        let run = &status.runs[2];
        assert_eq!(
            (run.state, run.worker_id.as_deref()),
            (RunState::Stopped, None)
        );
        assert!(f.coord.workers()[0].busy.is_empty());
        assert_eq!(f.coord.queued_count(), 0);
        assert_eq!(status.experiment.stopped, 1);
        assert!(status.experiment.is_done());
        let es = status.early_stopping.expect("early stopping in the status");
        let stop = &es.stops[&a.run_id];
        assert_eq!(
            (stop.epoch, stop.rule.as_str(), stop.pending),
            (1, "median", 0)
        );
        assert_eq!(stop.compared, vec![0.5, 0.4]);
        assert_eq!(stop.stored_epochs, 1);
        // 4 threads × 10 s an epoch: 2 more epochs saved = 80 core-seconds.
        assert_eq!(es.compute.stopped_runs, 1);
        assert!((es.compute.core_hours_saved - 80.0 / 3600.0).abs() < 1e-9);
        assert!((es.compute.core_hours_used - 280.0 / 3600.0).abs() < 1e-9);
        // The stopped attempt's later messages are told again, and store nothing.
        let again = f.epoch(&a, 2, 0.1).unwrap();
        assert!(again.stop.is_some());
        assert!(f.coord.complete(&a, 0).is_err());
        let data = f.coord.report_data(&submitted.id).unwrap();
        assert_eq!(data.runs[2].epochs.len(), 1);
        let part = &data.early_stopping.as_ref().unwrap().runs[&a.run_id];
        assert_eq!(part.stop.as_ref().unwrap().epoch, 1);

        // Resumed: queued again, trained to the end, not judged again.
        assert_eq!(f.coord.resume(&a.run_id).unwrap(), vec![a.run_id.clone()]);
        let b = f.acquire();
        assert_eq!((b.run_id.as_str(), b.attempt), (a.run_id.as_str(), 2));
        assert_eq!(f.epoch(&b, 2, 0.1).unwrap(), ProgressAnswer::default());
        assert_eq!(f.epoch(&b, 3, 0.1).unwrap(), ProgressAnswer::default());
        f.coord.complete(&b, 0).unwrap();
        let status = f.coord.status(&submitted.id).unwrap();
        assert_eq!(status.runs[2].state, RunState::Finished);
        assert!(status.early_stopping.unwrap().stops[&a.run_id]
            .resumed_ms
            .is_some());
        let e = f.coord.resume(&a.run_id).unwrap_err().to_string();
        assert!(e.contains("only a stopped run can be resumed"), "{e}");
    }

    #[test]
    fn a_grid_without_early_stopping_stops_nothing() {
        let f = Fixture::new();
        let grid = GRID.split("[early_stopping]").next().unwrap();
        let submitted = f.coord.submit(grid, "plain.toml").unwrap();
        f.train(&[0.5, 0.6, 0.7]);
        f.train(&[0.4, 0.5, 0.6]);
        f.train(&[0.1, 0.1, 0.1]);
        let status = f.coord.status(&submitted.id).unwrap();
        assert!(status.runs.iter().all(|r| r.state == RunState::Finished));
        assert!(status.early_stopping.is_none());
    }
}
