//! The coordinator's state: the scheduler, the store and the checkpoint files behind one
//! lock, and the operations the gRPC services delegate to (in domain types, no proto).
//!
//! Every operation plans with the [`Scheduler`], writes the plan and its data to the
//! [`Store`] in one transaction, and only then commits the plan to memory: a failed write
//! changes nothing, and a crash after the commit loses nothing that was acknowledged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ablate_common::metrics::{EpochRecord, StepRecord};
use ablate_common::spec::grid::{parse_grid, stored_priority, GridError};
use ablate_common::spec::Device;
use std::collections::BTreeMap;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::report::ReportData;
use crate::scheduling::scheduler::{
    Change, Demand, EventKind, Millis, RunSched, SchedError, Scheduler, WorkerInfo,
};
use crate::state::checkpoints::{CheckpointError, Checkpoints, Upload};
use crate::state::store::{
    ExperimentRow, NewEvent, NewExperiment, NewRun, ProgressUpdate, RunRow, SqliteStore, Store,
    StoreError, Tx,
};
use crate::state::tensorboard::TensorBoardLogs;

pub mod checkpoints;
mod launcher;
#[cfg(test)]
mod machine_tests;
pub mod report_data;
pub mod stopping;
pub mod store;
pub mod tensorboard;
pub use stopping::StoppingStatus;

/// The SQLite file's name in the data directory.
pub const STORE_FILE: &str = "ablate.sqlite";

/// Milliseconds since the Unix epoch, now, on a monotonic clock: the wall clock is read
/// once per process and time advances by [`Instant`] from there, so a clock step (NTP,
/// an operator) cannot expire every lease at once or stretch them.
pub fn now_ms() -> Millis {
    static ANCHOR: OnceLock<(Instant, Millis)> = OnceLock::new();
    let (start, wall) = ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        (Instant::now(), wall)
    });
    wall + start.elapsed().as_millis() as Millis
}

/// Errors of coordinator operations; `service::status` maps them to gRPC codes.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The submitted grid is wrong (with file, line and column).
    #[error(transparent)]
    Grid(#[from] GridError),
    /// The scheduler refuses (fencing, unknown worker or device).
    #[error(transparent)]
    Sched(#[from] SchedError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint file operation failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A request over one of the coordinator's limits (named, with its value).
    #[error("{0}")]
    Limit(String),
    /// The data directory cannot be created.
    #[error("data directory {path}: {cause}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// No experiment or run by that id or name.
    #[error("no {what} `{key}`")]
    NotFound {
        /// `experiment`, `run` or `experiment or run`.
        what: &'static str,
        /// What was asked for.
        key: String,
    },
    /// A request field that is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as named in the proto.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A worker speaking another protocol version.
    #[error("worker speaks protocol version {worker}; this coordinator speaks {coordinator}")]
    Protocol {
        /// The worker's version.
        worker: u32,
        /// Ours.
        coordinator: u32,
    },
}

impl CoordError {
    /// An invalid field.
    pub fn invalid(field: &str, message: impl Into<String>) -> CoordError {
        CoordError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Settings of the coordinator state.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The SQLite file, checkpoints and TensorBoard logs live here.
    pub data_dir: PathBuf,
    /// A lease not renewed for this long expires.
    pub lease_ttl: Duration,
    /// Complete checkpoints kept per run (the newest; at least 1).
    pub keep_checkpoints: usize,
}

/// A worker's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The worker's protocol version.
    pub protocol_version: u32,
    /// Human name.
    pub name: String,
    /// Its devices (`cpu`, `cuda:N`).
    pub devices: Vec<String>,
    /// CPU threads.
    pub threads: u32,
    /// The id of an earlier registration, to keep its leases.
    pub worker_id: Option<String>,
    /// The folders it reads datasets from (`--data-root`).
    pub data_roots: Vec<String>,
}

/// A run handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Run id.
    pub run_id: String,
    /// Attempt number: the fencing token every message must carry.
    pub attempt: u32,
    /// Its experiment.
    pub experiment_id: String,
    /// Readable name.
    pub name: String,
    /// The RunSpec as JSON.
    pub spec_json: String,
    /// Devices it is placed on.
    pub devices: Vec<String>,
    /// The epoch of the stored checkpoint to resume after (0: none).
    pub completed_epochs: u32,
    /// Whether a checkpoint can be downloaded.
    pub has_checkpoint: bool,
}

/// Which attempt of which run a worker message is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRef {
    /// The sender.
    pub worker_id: String,
    /// The run.
    pub run_id: String,
    /// The attempt (fencing token).
    pub attempt: u32,
}

/// A progress message.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Which attempt.
    pub attempt: AttemptRef,
    /// Sampled steps since the last message.
    pub steps: Vec<StepRecord>,
    /// A finished epoch.
    pub epoch: Option<EpochRecord>,
    /// Where the run is.
    pub current_epoch: u32,
    /// Step in the current epoch.
    pub current_step: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
}

/// An experiment and its runs, as `status` and `watch` show them.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentStatus {
    /// The experiment with its counts.
    pub experiment: ExperimentRow,
    /// Its runs, in order.
    pub runs: Vec<RunRow>,
    /// When this was read.
    pub at_ms: Millis,
    /// Early stopping, when the grid has an `[early_stopping]` section.
    pub early_stopping: Option<StoppingStatus>,
}

/// The answer to a progress message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgressAnswer {
    /// The run was cancelled: stop and release it.
    pub cancel: bool,
    /// The early-stopping rule stopped the run (why): stop; the attempt is over.
    pub stop: Option<String>,
}

/// A submitted experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Experiment id.
    pub id: String,
    /// Grid name.
    pub name: String,
    /// Runs queued.
    pub runs: u32,
    /// Why some runs cannot start on any connected worker (empty: all can).
    pub warnings: Vec<String>,
}

/// A registered worker as `ablate workers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// The worker.
    pub info: WorkerInfo,
    /// Its devices under a lease.
    pub busy: Vec<String>,
    /// The runs it holds.
    pub runs: Vec<String>,
    /// When it was last heard from (`None`: not since the coordinator started).
    pub last_seen_ms: Option<Millis>,
    /// Heard from within the liveness window.
    pub connected: bool,
}

/// Receivers for watchers: a counter bumped on every change, and the shutdown flag.
#[derive(Debug)]
pub struct Subscription {
    /// Bumped after every committed change.
    pub changes: watch::Receiver<u64>,
    /// Becomes `true` when the server shuts down.
    pub closing: watch::Receiver<bool>,
}

struct Inner {
    sched: Scheduler,
    store: Box<dyn Store>,
    tensorboard: TensorBoardLogs,
    stopping_rules: stopping::StoppingRules,
}

/// Where the coordinator reads the time: the wall clock, or a simulation's clock.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The coordinator state shared by both services and the lease-expiry task.
pub struct Coordinator {
    clock: Clock,
    inner: Mutex<Inner>,
    checkpoints: Checkpoints,
    data_dir: PathBuf,
    changes: watch::Sender<u64>,
    closing: watch::Sender<bool>,
    /// What the launcher (`serve --launcher`) last did; empty without one.
    launcher: Mutex<Arc<crate::launcher::Board>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// A readable, unique-enough id: a slug of `name` and 8 random hex digits.
fn new_id(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches('-');
    let slug: String = slug.chars().take(24).collect();
    let slug = if slug.is_empty() {
        "x".to_string()
    } else {
        slug
    };
    format!("{slug}-{:08x}", rand::random::<u32>())
}

impl Coordinator {
    /// Opens the store under the data directory, rebuilds the scheduler from it and extends
    /// every lease by one TTL, so that workers that reconnect keep their runs.
    pub fn open(config: &CoordinatorConfig) -> Result<Arc<Coordinator>, CoordError> {
        Coordinator::open_with_clock(config, Arc::new(now_ms))
    }

    /// [`Coordinator::open`] with another clock (the scheduling simulation's).
    pub fn open_with_clock(
        config: &CoordinatorConfig,
        clock: Clock,
    ) -> Result<Arc<Coordinator>, CoordError> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|cause| CoordError::DataDir {
            path: data_dir.clone(),
            cause,
        })?;
        let store = SqliteStore::open(&data_dir.join(STORE_FILE))?;
        Coordinator::with_store(config, clock, Box::new(store))
    }

    /// A coordinator on `store` (the SQLite file, or a [`store::MemoryStore`] in tests):
    /// rebuilds the scheduler from what it holds and extends every lease by one TTL.
    /// Checkpoints and TensorBoard files still go under the configured data directory.
    pub fn with_store(
        config: &CoordinatorConfig,
        clock: Clock,
        mut store: Box<dyn Store>,
    ) -> Result<Arc<Coordinator>, CoordError> {
        let data_dir = &config.data_dir;
        let ttl_ms = config.lease_ttl.as_millis().max(1) as Millis;
        let mut sched = Scheduler::new(ttl_ms);
        let now = clock();
        for worker in store.load_workers()? {
            let id = worker.id.clone();
            sched.insert_worker(worker);
            // Every known worker gets one liveness window to come back.
            sched.touch(&id, now);
        }
        for (experiment_id, grid_toml) in store.unfinished_grids()? {
            sched.set_weight(&experiment_id, stored_priority(&grid_toml));
        }
        for (experiment_id, user) in store.unfinished_users()? {
            sched.set_user(&experiment_id, &user);
        }
        for run in store.load_runs()? {
            sched.insert_run(run);
        }
        let extended = sched.extend_leases(now);
        if !extended.is_empty() {
            store.write(|tx| {
                for change in &extended {
                    tx.apply(change, now)?;
                }
                Ok(())
            })?;
            info!(
                leases = extended.len(),
                "kept the leases of the last run for one more TTL"
            );
            sched.commit(extended);
        }
        info!(
            store = %store.location(),
            queued = sched.queued().count(),
            "coordinator state loaded"
        );
        Ok(Arc::new(Coordinator {
            clock,
            inner: Mutex::new(Inner {
                sched,
                store,
                tensorboard: TensorBoardLogs::new(data_dir),
                stopping_rules: Default::default(),
            }),
            checkpoints: Checkpoints::new(data_dir.join("checkpoints"), config.keep_checkpoints),
            data_dir: data_dir.clone(),
            changes: watch::channel(0).0,
            closing: watch::channel(false).0,
            launcher: Mutex::default(),
        }))
    }

    /// The time now, by this coordinator's clock.
    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    /// Queued runs.
    pub fn queued_count(&self) -> usize {
        self.lock().sched.queued_len()
    }

    /// Runs queued, running, or holding a lease.
    pub fn active_count(&self) -> usize {
        self.lock()
            .sched
            .runs()
            .filter(|r| !r.state.is_terminal() || r.lease.is_some())
            .count()
    }

    /// Sets a user's share weight against other users (`ablate serve --user-weight`).
    pub fn set_user_weight(&self, user: &str, weight: u32) {
        self.lock().sched.set_user_weight(user, weight);
    }

    /// The user who submitted an experiment (`""`: not named).
    pub fn submitted_by(&self, experiment_id: &str) -> Result<String, CoordError> {
        Ok(self.lock().store.submitted_by(experiment_id)?)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The lease TTL.
    pub fn lease_ttl_ms(&self) -> Millis {
        self.lock().sched.lease_ttl_ms()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plans are committed only after their write succeeded, so the state behind a
        // poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Receivers for a watcher.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            changes: self.changes.subscribe(),
            closing: self.closing.subscribe(),
        }
    }

    /// Tells watchers and background tasks that the server is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Writes changes (and whatever `extra` writes) in one transaction, then commits them.
    fn apply(
        &self,
        inner: &mut Inner,
        changes: Vec<Change>,
        now: Millis,
        extra: impl FnOnce(&dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), CoordError> {
        inner.store.write(|tx| {
            for change in &changes {
                tx.apply(change, now)?;
            }
            extra(tx)
        })?;
        for change in &changes {
            if change.kind.logged() {
                info!(run = %change.after.id, event = change.kind.as_str(), "{}", change.message);
            }
            if change.after.state.is_terminal() && change.after.lease.is_none() {
                if let Ok(Some(row)) = inner.store.assignment(&change.after.id) {
                    let _ = inner.tensorboard.close_run(&row.experiment_id, &row.name);
                }
            }
        }
        inner.sched.commit(changes);
        self.notify();
        Ok(())
    }

    // ---- users ----------------------------------------------------------------------

    /// Parses, validates and queues a grid (submitted by no named user).
    pub fn submit(&self, grid_toml: &str, file_name: &str) -> Result<Submitted, CoordError> {
        self.submit_as(grid_toml, file_name, "")
    }

    /// Parses, validates and queues a grid submitted by `user` (`""`: not named), whose
    /// fair share it then counts towards.
    pub fn submit_as(
        &self,
        grid_toml: &str,
        file_name: &str,
        user: &str,
    ) -> Result<Submitted, CoordError> {
        if !user.is_empty() {
            crate::scheduling::users::check_user_name(user)
                .map_err(|e| CoordError::invalid("user", e.to_string()))?;
        }
        let grid = parse_grid(grid_toml, file_name)?;
        let now = self.now();
        let id = new_id(&grid.name);
        let mut inner = self.lock();
        let new_runs: Vec<NewRun> = grid
            .runs
            .iter()
            .enumerate()
            .map(|(i, run)| NewRun {
                id: format!("{id}-{i:04}"),
                experiment_id: id.clone(),
                index: i as u32,
                name: run.name.clone(),
                model: run.spec.model.clone(),
                spec_json: serde_json::to_string(&run.spec).expect("a RunSpec serialises"),
                factors: run.factors.clone(),
                gpus: run.spec.gpus,
                epochs: run.spec.epochs,
                params: run.params,
                flops: run.flops,
                max_attempts: run.spec.max_attempts,
            })
            .collect();
        let seq = inner.store.write(|tx| {
            let seq = tx.insert_experiment(&NewExperiment {
                id: id.clone(),
                name: grid.name.clone(),
                description: grid.description.clone(),
                file_name: file_name.to_string(),
                grid_toml: grid_toml.to_string(),
                submitted_ms: now,
            })?;
            for run in &new_runs {
                tx.insert_run(run)?;
            }
            if !user.is_empty() {
                tx.set_submitted_by(&id, user)?;
            }
            let by = if user.is_empty() {
                String::new()
            } else {
                format!(" by {user}")
            };
            let message = format!("{} runs from {file_name}{by}", new_runs.len());
            let event = NewEvent {
                experiment_id: Some(&id),
                run_id: None,
                attempt: None,
                kind: "submitted",
                message: &message,
            };
            tx.event(&event, now)?;
            Ok(seq)
        })?;
        inner.sched.set_weight(&id, grid.priority);
        inner.sched.set_user(&id, user);
        for run in &new_runs {
            inner.sched.insert_run(RunSched::queued(
                &run.id,
                &id,
                (seq, run.index),
                Demand::from_gpus(run.gpus),
                run.max_attempts,
            ));
        }
        let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
        for run in &new_runs {
            *sizes.entry(run.gpus).or_default() += 1;
        }
        let warnings = inner.sched.unfittable(&sizes, now);
        drop(inner);
        info!(experiment = %id, name = %grid.name, runs = new_runs.len(), "submitted");
        for w in &warnings {
            warn!(experiment = %id, "{w}");
        }
        self.notify();
        Ok(Submitted {
            id,
            name: grid.name,
            runs: new_runs.len() as u32,
            warnings,
        })
    }

    /// An unfinished experiment submitted from exactly this grid, to resume instead of
    /// submitting the grid again (single-node mode after an interruption).
    pub fn resumable(
        &self,
        name: &str,
        grid_toml: &str,
    ) -> Result<Option<ExperimentRow>, CoordError> {
        let found = self.lock().store.find_by_grid(name, grid_toml)?;
        Ok(found.filter(|e| !e.is_done()))
    }

    /// Every experiment, in submit order.
    pub fn experiments(&self) -> Result<Vec<ExperimentRow>, CoordError> {
        Ok(self.lock().store.experiments()?)
    }

    fn find(&self, inner: &Inner, key: &str) -> Result<ExperimentRow, CoordError> {
        inner
            .store
            .find_experiment(key)?
            .ok_or_else(|| CoordError::NotFound {
                what: "experiment",
                key: key.to_string(),
            })
    }

    /// An experiment (by id, or the newest by name) and its runs.
    pub fn status(&self, key: &str) -> Result<ExperimentStatus, CoordError> {
        let mut inner = self.lock();
        let experiment = self.find(&inner, key)?;
        let mut runs = inner.store.run_rows(&experiment.id)?;
        let now = self.now();
        let pending = inner.sched.pending(now);
        let launched = self.launcher_board();
        for row in &mut runs {
            row.checkpoint_bytes = row
                .checkpoint_file
                .as_ref()
                .and_then(|f| std::fs::metadata(self.checkpoints.file(&row.id, f)).ok())
                .map(|m| m.len());
            if let Some(run) = inner.sched.run(&row.id) {
                row.pending_reason = pending.reason(run);
            }
            launcher::add_note(&mut row.pending_reason, &launched.notes, &row.id);
        }
        let early_stopping = self.stopping_status(&mut inner, &experiment.id)?;
        Ok(ExperimentStatus {
            experiment,
            runs,
            at_ms: now,
            early_stopping,
        })
    }

    /// Why runs of these sizes (GPUs → count; 0 is CPU) cannot run on any connected worker
    /// (empty: every size fits one).
    pub fn unfittable(&self, sizes: &BTreeMap<u32, usize>) -> Vec<String> {
        self.lock().sched.unfittable(sizes, self.now())
    }

    /// Every registered worker, connected ones first, then by name.
    pub fn workers(&self) -> Vec<WorkerView> {
        let now = self.now();
        let inner = self.lock();
        let sched = &inner.sched;
        let mut held: std::collections::HashMap<&str, Vec<(u64, u32, String)>> = Default::default();
        for run in sched.runs() {
            if let Some(lease) = &run.lease {
                held.entry(lease.worker_id.as_str()).or_default().push((
                    run.order.0,
                    run.order.1,
                    run.id.clone(),
                ));
            }
        }
        for runs in held.values_mut() {
            runs.sort();
        }
        let mut out: Vec<WorkerView> = sched
            .workers()
            .map(|w| WorkerView {
                info: w.clone(),
                busy: sched.busy_devices(&w.id),
                runs: held
                    .get(w.id.as_str())
                    .map(|r| r.iter().map(|(_, _, id)| id.clone()).collect())
                    .unwrap_or_default(),
                last_seen_ms: sched.last_seen(&w.id),
                connected: sched.is_connected(&w.id, now),
            })
            .collect();
        out.sort_by(|a, b| {
            b.connected
                .cmp(&a.connected)
                .then(a.info.name.cmp(&b.info.name))
                .then(a.info.id.cmp(&b.info.id))
        });
        out
    }

    /// What a report of the experiment is rendered from.
    pub fn report_data(&self, key: &str) -> Result<ReportData, CoordError> {
        let mut inner = self.lock();
        let experiment = self.find(&inner, key)?;
        let mut data = report_data::report_data(inner.store.as_ref(), &experiment.id, self.now())?
            .ok_or_else(|| CoordError::NotFound {
                what: "experiment",
                key: key.to_string(),
            })?;
        data.early_stopping = self.stopping_report(&mut inner, &experiment.id)?;
        Ok(data)
    }

    /// Cancels an experiment (by id or name) or one run (by id); returns how many runs
    /// were cancelled.
    pub fn cancel(&self, target: &str) -> Result<u32, CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        let ids = match inner.store.find_experiment(target)? {
            Some(exp) => inner.store.run_ids(&exp.id)?,
            None if inner.sched.run(target).is_some() => vec![target.to_string()],
            None => {
                return Err(CoordError::NotFound {
                    what: "experiment or run",
                    key: target.to_string(),
                })
            }
        };
        let changes = inner.sched.cancel(&ids);
        let count = changes.len() as u32;
        self.apply(&mut inner, changes, now, |_| Ok(()))?;
        Ok(count)
    }

    // ---- workers --------------------------------------------------------------------

    /// Registers a worker (or re-registers one, renewing its leases); returns its id and
    /// the runs it still holds.
    pub fn register(&self, reg: Registration) -> Result<(String, Vec<Assignment>), CoordError> {
        if reg.protocol_version != ablate_common::proto::PROTOCOL_VERSION {
            return Err(CoordError::Protocol {
                worker: reg.protocol_version,
                coordinator: ablate_common::proto::PROTOCOL_VERSION,
            });
        }
        if reg.devices.is_empty() {
            return Err(CoordError::invalid(
                "devices",
                "a worker needs at least one device",
            ));
        }
        let mut devices = Vec::new();
        for device in &reg.devices {
            Device::parse(device).map_err(|e| CoordError::invalid("devices", e.to_string()))?;
            if !devices.contains(device) {
                devices.push(device.clone());
            }
        }
        let now = self.now();
        let mut inner = self.lock();
        let known = reg
            .worker_id
            .as_ref()
            .filter(|id| inner.sched.worker(id).is_some());
        let reconnect = known.is_some();
        let id = known
            .cloned()
            .unwrap_or_else(|| new_id(&format!("w-{}", reg.name)));
        let info = WorkerInfo {
            id: id.clone(),
            name: reg.name.clone(),
            devices,
            threads: reg.threads,
            data_roots: reg.data_roots.clone(),
        };
        let renewals = inner.sched.renew_all_of(&id, now);
        let message = format!(
            "worker {} ({id}) {} with {}",
            info.name,
            if reconnect {
                "reconnected"
            } else {
                "registered"
            },
            info.devices.join(",")
        );
        self.apply(&mut inner, renewals, now, |tx| {
            tx.upsert_worker(&info, now)?;
            tx.event(&NewEvent::cluster("worker", &message), now)
        })?;
        inner.sched.insert_worker(info);
        inner.sched.touch(&id, now);
        info!("{message}");
        let held: Vec<RunSched> = inner.sched.held_by(&id).into_iter().cloned().collect();
        let held = held
            .iter()
            .map(|run| self.assignment(&inner, run))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((id, held))
    }

    /// Whether a worker with this id is registered.
    pub fn has_worker(&self, worker_id: &str) -> bool {
        self.lock().sched.worker(worker_id).is_some()
    }

    fn assignment(&self, inner: &Inner, run: &RunSched) -> Result<Assignment, CoordError> {
        let row = inner
            .store
            .assignment(&run.id)?
            .ok_or_else(|| CoordError::NotFound {
                what: "run",
                key: run.id.clone(),
            })?;
        let has_checkpoint = row
            .checkpoint_file
            .as_ref()
            .is_some_and(|f| self.checkpoints.file(&run.id, f).is_file());
        Ok(Assignment {
            run_id: run.id.clone(),
            attempt: run.attempt,
            experiment_id: row.experiment_id,
            name: row.name,
            spec_json: row.spec_json,
            devices: run
                .lease
                .as_ref()
                .map(|l| l.devices.clone())
                .unwrap_or_default(),
            completed_epochs: if has_checkpoint {
                row.checkpoint_epoch.unwrap_or(0)
            } else {
                0
            },
            has_checkpoint,
        })
    }

    /// Places the first queued run that fits the worker's free devices.
    pub fn acquire(
        &self,
        worker_id: &str,
        free: &[String],
    ) -> Result<Option<Assignment>, CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        inner.sched.touch(worker_id, now);
        let Some(change) = inner.sched.acquire(worker_id, free, now)? else {
            return Ok(None);
        };
        let run = change.after.clone();
        let cores = inner.sched.worker(worker_id).map_or(0, |w| w.threads);
        self.apply(&mut inner, vec![change], now, |tx| {
            if cores > 0 {
                tx.set_cores(&run.id, cores)?;
            }
            Ok(())
        })?;
        Ok(Some(self.assignment(&inner, &run)?))
    }

    /// Stores progress and renews the lease; returns whether the run was cancelled or
    /// stopped.
    pub fn progress(&self, p: Progress) -> Result<bool, CoordError> {
        let answer = self.progress_answer(p)?;
        Ok(answer.cancel || answer.stop.is_some())
    }

    /// Stores progress and renews the lease; a new epoch may stop runs by the grid's
    /// early-stopping rule. The answer says whether this run was cancelled or stopped.
    pub fn progress_answer(&self, p: Progress) -> Result<ProgressAnswer, CoordError> {
        let now = self.now();
        let a = &p.attempt;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let change = match inner.sched.renew(&a.worker_id, &a.run_id, a.attempt, now) {
            Ok(change) => change,
            Err(e) => {
                // The rule stopped this attempt: tell it so, store nothing more.
                return match self.stopped_reason(inner, a) {
                    Some(reason) => Ok(ProgressAnswer {
                        cancel: true,
                        stop: Some(reason),
                    }),
                    None => Err(e.into()),
                };
            }
        };
        let cancel = change.after.cancel_requested();
        let update = ProgressUpdate {
            current_epoch: p.current_epoch,
            current_step: p.current_step,
            steps_per_epoch: p.steps_per_epoch,
            last_loss: p.steps.last().map(|s| s.loss),
        };
        let mut new_epoch = false;
        inner.store.write(|tx| {
            tx.apply(&change, now)?;
            // A heartbeat before training has started knows no position yet.
            if p.steps_per_epoch > 0 {
                tx.progress(&a.run_id, &update)?;
            }
            tx.insert_steps(&a.run_id, a.attempt, &p.steps)?;
            if let Some(epoch) = &p.epoch {
                new_epoch = tx.insert_epoch(&a.run_id, a.attempt, epoch, now)?;
            }
            Ok(())
        })?;
        inner.sched.commit([change]);
        inner.sched.touch(&a.worker_id, now);
        let mut stop = None;
        if new_epoch {
            stop = self.judge_after(inner, &a.run_id, now).remove(&a.run_id);
        }
        if let (Some(epoch), true) = (&p.epoch, new_epoch) {
            let row = inner.store.assignment(&a.run_id).ok().flatten();
            let written = match row {
                Some(row) => inner
                    .tensorboard
                    .epoch(&row.experiment_id, &row.name, epoch),
                None => Ok(()),
            };
            if let Err(e) = written {
                warn!(run = %a.run_id, "cannot write TensorBoard events: {e}");
            }
        }
        drop(guard);
        self.notify();
        Ok(ProgressAnswer {
            cancel: cancel || stop.is_some(),
            stop,
        })
    }

    /// The attempt finished every epoch.
    pub fn complete(&self, a: &AttemptRef, params: u64) -> Result<(), CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        let change = inner.sched.complete(&a.worker_id, &a.run_id, a.attempt)?;
        if change.kind == EventKind::Finished {
            let row = inner.store.run_row(&a.run_id)?;
            if let Some(row) = row.filter(|r| r.stored_epochs < r.epochs) {
                warn!(
                    run = %a.run_id,
                    "completed with {} of {} epochs stored",
                    row.stored_epochs,
                    row.epochs
                );
            }
        }
        self.apply(&mut inner, vec![change], now, |tx| {
            if params > 0 {
                tx.set_params(&a.run_id, params)?;
            }
            Ok(())
        })?;
        // A run that ended leaves the comparisons after its last epoch: verdicts may settle.
        self.judge_after(&mut inner, &a.run_id, now);
        Ok(())
    }

    /// The attempt failed.
    pub fn fail(&self, a: &AttemptRef, reason: &str, permanent: bool) -> Result<(), CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        let change = inner
            .sched
            .fail(&a.worker_id, &a.run_id, a.attempt, reason, permanent)?;
        let ended = change.after.state.is_terminal();
        self.apply(&mut inner, vec![change], now, |_| Ok(()))?;
        if ended {
            self.judge_after(&mut inner, &a.run_id, now);
        }
        Ok(())
    }

    /// The worker gives the run back.
    pub fn release(&self, a: &AttemptRef, reason: &str) -> Result<(), CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        let change = inner
            .sched
            .release(&a.worker_id, &a.run_id, a.attempt, reason)?;
        self.apply(&mut inner, vec![change], now, |_| Ok(()))
    }

    /// Expires lapsed leases; returns how many.
    pub fn expire(&self) -> Result<usize, CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        let changes = inner.sched.expire(now);
        let count = changes.len();
        if count > 0 {
            self.apply(&mut inner, changes, now, |_| Ok(()))?;
        }
        Ok(count)
    }

    /// Checks that the worker holds the attempt's lease.
    pub fn check_lease(&self, a: &AttemptRef) -> Result<(), CoordError> {
        self.lock()
            .sched
            .fence(&a.worker_id, &a.run_id, a.attempt)?;
        Ok(())
    }

    /// Renews the attempt's lease (bytes of its checkpoint upload arrived).
    pub fn renew_lease(&self, a: &AttemptRef) -> Result<(), CoordError> {
        let now = now_ms();
        let mut inner = self.lock();
        let change = inner.sched.renew(&a.worker_id, &a.run_id, a.attempt, now)?;
        inner.store.write(|tx| tx.apply(&change, now))?;
        inner.sched.commit([change]);
        Ok(())
    }

    /// The most bytes a checkpoint upload of the run may have: its weights and optimizer
    /// state at 4 bytes a value, with a margin for buffers and metadata.
    pub fn upload_cap(&self, run_id: &str) -> Result<u64, CoordError> {
        let row = self
            .lock()
            .store
            .assignment(run_id)?
            .ok_or_else(|| CoordError::NotFound {
                what: "run",
                key: run_id.to_string(),
            })?;
        let optimizer = serde_json::from_str::<ablate_common::spec::RunSpec>(&row.spec_json)
            .map(|s| s.optimizer)
            .unwrap_or(ablate_common::spec::OptimizerKind::Adam);
        Ok(crate::state::checkpoints::upload_cap(row.params, optimizer))
    }

    /// Starts an upload of `total_bytes` with SHA-256 `sha256` (after
    /// [`Coordinator::check_lease`]): refused over the run's cap or when the disk has no
    /// room for it.
    pub async fn begin_upload(
        &self,
        a: &AttemptRef,
        epoch: u32,
        total_bytes: u64,
        sha256: &str,
    ) -> Result<Upload, CoordError> {
        let cap = self.upload_cap(&a.run_id)?;
        if total_bytes > cap {
            return Err(CoordError::Limit(format!(
                "checkpoint of {total_bytes} bytes exceeds this run's upload cap of {cap} bytes \
                 (its parameters and optimizer state at 4 bytes a value, with margin)"
            )));
        }
        Ok(self
            .checkpoints
            .begin(&a.run_id, a.attempt, epoch, total_bytes, sha256)
            .await?)
    }

    /// Makes a finished upload the run's checkpoint, if the attempt still holds the lease
    /// and no newer checkpoint is stored.
    pub fn install_checkpoint(
        &self,
        a: &AttemptRef,
        epoch: u32,
        upload: Upload,
    ) -> Result<(), CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        inner.sched.fence(&a.worker_id, &a.run_id, a.attempt)?;
        let stored = inner
            .store
            .assignment(&a.run_id)?
            .and_then(|r| r.checkpoint_epoch);
        if stored.is_some_and(|s| s > epoch) {
            info!(run = %a.run_id, epoch, "ignored a checkpoint older than the stored one");
            return Ok(());
        }
        let bytes = upload.bytes;
        let name = self.checkpoints.install(upload, &a.run_id, epoch)?;
        inner.store.write(|tx| {
            tx.set_checkpoint(&a.run_id, epoch, &name)?;
            let message = format!("epoch {epoch}: {bytes} bytes");
            let event = NewEvent {
                experiment_id: None,
                run_id: Some(&a.run_id),
                attempt: Some(a.attempt),
                kind: "checkpoint",
                message: &message,
            };
            tx.event(&event, now)
        })?;
        self.checkpoints.prune(&a.run_id, &name);
        Ok(())
    }

    /// The SHA-256 recorded for a stored checkpoint file.
    pub fn checkpoint_sha256(&self, run_id: &str, path: &Path) -> Option<String> {
        let name = path.file_name()?.to_str()?;
        self.checkpoints.sha256(run_id, name)
    }

    /// The run's stored checkpoint (epoch and file), for the attempt that holds the lease.
    pub fn checkpoint_file(&self, a: &AttemptRef) -> Result<Option<(u32, PathBuf)>, CoordError> {
        let inner = self.lock();
        inner.sched.fence(&a.worker_id, &a.run_id, a.attempt)?;
        let row = inner.store.assignment(&a.run_id)?;
        Ok(row.and_then(|r| {
            let file = self
                .checkpoints
                .file(&a.run_id, r.checkpoint_file.as_ref()?);
            file.is_file()
                .then_some((r.checkpoint_epoch.unwrap_or(0), file))
        }))
    }
}
