//! The scheduler: queue order, placement by free devices, leases, expiry, attempts and
//! fencing. Pure logic: no I/O, no clock (every method takes `now_ms`), so it is tested
//! without gRPC or SQLite.
//!
//! Every state change is planned first and applied second: a method returns [`Change`]s
//! without touching the scheduler; the caller writes them to the store in one transaction
//! and then [`Scheduler::commit`]s them. A failed write leaves memory as it was.
//!
//! # Runs
//! `queued` → (acquire) → `running` → `finished` | `failed` | `queued` (retry) |
//! `cancelled`. `attempt` counts attempts started and is the fencing token: a worker
//! message is accepted only from the worker that holds the run's lease for the run's
//! current attempt. `failures` counts failed and expired attempts; at `max_attempts` the run
//! is `failed` with the last reason. A release (worker shutdown) re-queues without counting
//! as a failure. A cancelled run that is still leased keeps its devices until the worker
//! releases it or the lease lapses.
//!
//! # Placement
//! A worker asks with its free devices; the scheduler picks the run:
//! - **fair share**: users first, by the devices their experiments hold per unit of the
//!   user's weight (`ablate serve --user-weight`), smallest first; within a user, its
//!   experiments by the devices they hold per unit of their grid's `priority`; so users and
//!   experiments interleave; within an experiment, runs go in index order;
//! - **reservation**: the first experiment of that order whose head (its first queued run)
//!   needs several GPUs gets one worker for that run, the connected one with the most free
//!   GPUs among those large enough; that worker's GPUs go to nothing else until the run fits
//!   there (other workers backfill freely: they cannot delay it);
//! - **one node**: all GPUs of a run are on the asking worker;
//! - **packing**: a GPU run does not break the last hole a larger queued run needs when a
//!   connected worker with a tighter fit exists.
//!
//! Every queued run has a pending reason ([`Scheduler::pending`]).
//!
//! # Layout
//! - this file: the types, the registry of runs and workers, and [`Scheduler::commit`];
//! - `placement`: [`Scheduler::acquire`], the reservation and the pending reasons;
//! - `leases`: renewal, fencing and [`Scheduler::expire`] (where leases expire);
//! - `outcomes`: complete, fail, release and cancel.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use ablate_common::spec::Device;

use crate::scheduling::fair_queue::FairQueue;

mod leases;
mod outcomes;
mod placement;
#[cfg(test)]
mod tests;

pub use placement::{gpu_count, Pending, Reservation};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Waiting for a worker.
    Queued,
    /// Leased to a worker.
    Running,
    /// Every epoch done.
    Finished,
    /// Failed permanently or `max_attempts` times.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Stopped early by the grid's `[early_stopping]` rule (never retried; `ablate resume`
    /// queues it again).
    Stopped,
}

impl RunState {
    /// Every state, in the order of a run's life.
    pub const ALL: [RunState; 6] = [
        RunState::Queued,
        RunState::Running,
        RunState::Finished,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Stopped,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Stopped => "stopped",
        }
    }

    /// Whether the run will not change state again (a stopped run only by `resume`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Finished | RunState::Failed | RunState::Cancelled | RunState::Stopped
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown run state `{s}`"))
    }
}

/// What a run needs from a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Demand {
    /// The worker's CPU (device `cpu`).
    Cpu,
    /// This many of the worker's free GPUs (`cuda:N`).
    Gpus(u32),
}

impl Demand {
    /// From a spec's `gpus` field: 0 is a CPU run.
    pub fn from_gpus(gpus: u32) -> Demand {
        if gpus == 0 {
            Demand::Cpu
        } else {
            Demand::Gpus(gpus)
        }
    }

    /// The `gpus` value this demand came from.
    pub fn gpus(self) -> u32 {
        match self {
            Demand::Cpu => 0,
            Demand::Gpus(n) => n,
        }
    }
}

/// A run's lease: who holds it, on which devices, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The worker that holds it.
    pub worker_id: String,
    /// The devices the run is placed on.
    pub devices: Vec<String>,
    /// The lease lapses at this time unless renewed.
    pub deadline_ms: Millis,
}

/// What the scheduler knows of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSched {
    /// Run id.
    pub id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Queue position: (experiment's submit sequence, run index in the experiment).
    pub order: (u64, u32),
    /// Devices it needs.
    pub demand: Demand,
    /// State.
    pub state: RunState,
    /// Attempts started (the current attempt's number; 0 before the first).
    pub attempt: u32,
    /// Attempts that failed or whose lease expired.
    pub failures: u32,
    /// Failures allowed before the run is `failed`.
    pub max_attempts: u32,
    /// The lease while a worker holds the run.
    pub lease: Option<Lease>,
    /// Why the run failed, or the last retried failure.
    pub error: Option<String>,
}

impl RunSched {
    /// A new queued run.
    pub fn queued(
        id: &str,
        experiment_id: &str,
        order: (u64, u32),
        demand: Demand,
        max_attempts: u32,
    ) -> RunSched {
        RunSched {
            id: id.to_string(),
            experiment_id: experiment_id.to_string(),
            order,
            demand,
            state: RunState::Queued,
            attempt: 0,
            failures: 0,
            max_attempts: max_attempts.max(1),
            lease: None,
            error: None,
        }
    }

    /// Whether the worker should stop it (cancelled while leased).
    pub fn cancel_requested(&self) -> bool {
        self.state == RunState::Cancelled && self.lease.is_some()
    }
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Coordinator-assigned id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Device names (`cpu`, `cuda:N`).
    pub devices: Vec<String>,
    /// CPU threads it trains with.
    pub threads: u32,
    /// The folders it reads datasets from, as it reported them at registration (not
    /// stored: empty for a worker loaded from the store until it registers again).
    pub data_roots: Vec<String>,
}

/// What happened to a run, for the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An attempt started on a worker.
    Started,
    /// A lease renewed (not logged as an event).
    Renewed,
    /// The attempt finished every epoch.
    Finished,
    /// An attempt failed and the run went back to the queue.
    Retry,
    /// The run failed for good.
    Failed,
    /// A lease lapsed.
    Expired,
    /// A worker gave the run back.
    Released,
    /// A user cancelled the run.
    Cancelled,
    /// A cancelled run's devices were freed.
    Freed,
    /// The early-stopping rule stopped the run (its devices are freed at once).
    Stopped,
    /// A user resumed a stopped run: it is queued again.
    Resumed,
}

impl EventKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Renewed => "renewed",
            EventKind::Finished => "finished",
            EventKind::Retry => "retry",
            EventKind::Failed => "failed",
            EventKind::Expired => "expired",
            EventKind::Released => "released",
            EventKind::Cancelled => "cancelled",
            EventKind::Freed => "freed",
            EventKind::Stopped => "stopped",
            EventKind::Resumed => "resumed",
        }
    }

    /// Whether the event goes into the event log (renewals do not).
    pub fn logged(self) -> bool {
        self != EventKind::Renewed
    }
}

/// A planned change of one run: apply it to the store, then [`Scheduler::commit`] it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The run before.
    pub before: RunSched,
    /// The run after.
    pub after: RunSched,
    /// What happened.
    pub kind: EventKind,
    /// A readable line for the event log.
    pub message: String,
}

impl Change {
    /// Whether an attempt began with this change.
    pub fn attempt_started(&self) -> bool {
        self.after.attempt != self.before.attempt
    }

    /// Whether the attempt that was running ended with this change (its lease is gone).
    pub fn attempt_ended(&self) -> bool {
        self.before.lease.is_some() && self.after.lease.is_none()
    }
}

/// Why a worker's request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The worker id is not registered.
    #[error("unknown worker `{0}`: register first")]
    UnknownWorker(String),
    /// No run has this id.
    #[error("unknown run `{0}`")]
    UnknownRun(String),
    /// A device the worker did not register.
    #[error("device `{device}` is not one of worker `{worker}`'s registered devices")]
    UnknownDevice {
        /// The worker.
        worker: String,
        /// The device named.
        device: String,
    },
    /// The message is from an older (or a future) attempt than the run's current one.
    #[error("run `{run}` attempt {attempt} is stale: the current attempt is {current}")]
    Stale {
        /// The run.
        run: String,
        /// The attempt the message carries.
        attempt: u32,
        /// The run's current attempt.
        current: u32,
    },
    /// The worker does not hold the run's lease (it lapsed, or another worker holds it).
    #[error("run `{run}` attempt {attempt} is not leased to worker `{worker}` (lease lapsed or released; run is {state})")]
    NotHolder {
        /// The run.
        run: String,
        /// The attempt the message carries.
        attempt: u32,
        /// The worker that sent it.
        worker: String,
        /// The run's state now.
        state: RunState,
    },
}

/// Placement, leases and attempts of every run; the registered workers.
#[derive(Debug, Clone)]
pub struct Scheduler {
    lease_ttl_ms: Millis,
    runs: HashMap<String, RunSched>,
    queue: BTreeSet<(u64, u32, String)>,
    workers: HashMap<String, WorkerInfo>,
    index: FairQueue,
    last_seen: HashMap<String, Millis>,
}

impl Scheduler {
    /// An empty scheduler whose leases last `lease_ttl_ms` unless renewed.
    pub fn new(lease_ttl_ms: Millis) -> Scheduler {
        Scheduler {
            lease_ttl_ms: lease_ttl_ms.max(1),
            runs: HashMap::new(),
            queue: BTreeSet::new(),
            workers: HashMap::new(),
            index: FairQueue::default(),
            last_seen: HashMap::new(),
        }
    }

    /// A worker counts as connected for this long after it was last heard from.
    pub fn liveness_ms(&self) -> Millis {
        2 * self.lease_ttl_ms
    }

    /// Notes that a worker was heard from (registration, acquire, progress).
    pub fn touch(&mut self, worker_id: &str, now: Millis) {
        if self.workers.contains_key(worker_id) {
            let seen = self.last_seen.entry(worker_id.to_string()).or_insert(now);
            *seen = (*seen).max(now);
        }
    }

    /// When a worker was last heard from (`None`: not since this scheduler started).
    pub fn last_seen(&self, worker_id: &str) -> Option<Millis> {
        self.last_seen.get(worker_id).copied()
    }

    /// Whether a worker was heard from within [`Scheduler::liveness_ms`].
    pub fn is_connected(&self, worker_id: &str, now: Millis) -> bool {
        self.last_seen
            .get(worker_id)
            .is_some_and(|t| now.saturating_sub(*t) < self.liveness_ms())
    }

    /// Sets an experiment's share weight (its grid's `priority`).
    pub fn set_weight(&mut self, experiment_id: &str, weight: u32) {
        self.index.set_weight(experiment_id, weight);
    }

    /// Records the user who submitted an experiment (its share counts towards theirs).
    pub fn set_user(&mut self, experiment_id: &str, user: &str) {
        self.index.set_user(experiment_id, user);
    }

    /// Sets a user's share weight against other users (1 unless set).
    pub fn set_user_weight(&mut self, user: &str, weight: u32) {
        self.index.set_user_weight(user, weight);
    }

    /// Every registered worker.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerInfo> {
        self.workers.values()
    }

    /// Devices of a worker under a lease.
    pub fn busy_devices(&self, worker_id: &str) -> Vec<String> {
        let mut busy: Vec<String> = self
            .index
            .busy(worker_id)
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default();
        busy.sort();
        busy
    }

    fn worker_name(&self, worker_id: &str) -> String {
        self.workers
            .get(worker_id)
            .map(|w| w.name.clone())
            .unwrap_or_else(|| worker_id.to_string())
    }

    /// The lease time-to-live.
    pub fn lease_ttl_ms(&self) -> Millis {
        self.lease_ttl_ms
    }

    /// Adds (or replaces) a run, e.g. a newly submitted one or one loaded from the store.
    pub fn insert_run(&mut self, run: RunSched) {
        if let Some(old) = self.runs.get(&run.id) {
            self.queue
                .remove(&(old.order.0, old.order.1, old.id.clone()));
            self.index.remove(old);
        }
        if run.state == RunState::Queued {
            self.queue
                .insert((run.order.0, run.order.1, run.id.clone()));
        }
        self.index.add(&run);
        self.runs.insert(run.id.clone(), run);
    }

    /// Adds (or replaces) a worker.
    pub fn insert_worker(&mut self, worker: WorkerInfo) {
        self.workers.insert(worker.id.clone(), worker);
    }

    /// Runs whose lease a worker holds (cancelled runs included), by id.
    pub fn leases_of(&self, worker_id: &str) -> Vec<String> {
        let mut held: Vec<String> = self
            .runs
            .values()
            .filter(|r| r.lease.as_ref().is_some_and(|l| l.worker_id == worker_id))
            .map(|r| r.id.clone())
            .collect();
        held.sort();
        held
    }

    /// Forgets a worker that left (see [`Scheduler::leases_of`]: only one that holds
    /// nothing should).
    pub fn remove_worker(&mut self, worker_id: &str) {
        self.workers.remove(worker_id);
        self.last_seen.remove(worker_id);
    }

    /// A run by id.
    pub fn run(&self, id: &str) -> Option<&RunSched> {
        self.runs.get(id)
    }

    /// Every run.
    pub fn runs(&self) -> impl Iterator<Item = &RunSched> {
        self.runs.values()
    }

    /// A worker by id.
    pub fn worker(&self, id: &str) -> Option<&WorkerInfo> {
        self.workers.get(id)
    }

    /// How many runs are queued.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Queued runs, in queue order.
    pub fn queued(&self) -> impl Iterator<Item = &RunSched> {
        self.queue.iter().filter_map(|(_, _, id)| self.runs.get(id))
    }

    /// Runs of an experiment that are not terminal or still hold a lease.
    pub fn active_runs_of<'a>(
        &'a self,
        experiment_id: &'a str,
    ) -> impl Iterator<Item = &'a RunSched> {
        self.runs
            .values()
            .filter(move |r| r.experiment_id == experiment_id)
            .filter(|r| !r.state.is_terminal() || r.lease.is_some())
    }

    /// Applies planned changes.
    pub fn commit(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.insert_run(change.after);
        }
    }

    /// Runs a worker still holds (running, not cancelled), in queue order: what a
    /// re-registering worker gets back.
    pub fn held_by(&self, worker_id: &str) -> Vec<&RunSched> {
        let mut held: Vec<&RunSched> = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Running)
            .filter(|r| r.lease.as_ref().is_some_and(|l| l.worker_id == worker_id))
            .collect();
        held.sort_by_key(|r| r.order);
        held
    }
}
