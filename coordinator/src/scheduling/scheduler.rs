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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use ablate_common::spec::Device;

use crate::scheduling::fair_queue::FairQueue;

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
        Ok(match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            "stopped" => RunState::Stopped,
            other => return Err(format!("unknown run state `{other}`")),
        })
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

/// The head of the fair order that holds a worker for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The run.
    pub run_id: String,
    /// GPUs it needs.
    pub gpus: u32,
    /// The worker held for it.
    pub worker_id: String,
    /// GPUs free there now.
    pub free: u32,
}

/// What the connected workers offer, as the coordinator counts it.
#[derive(Debug, Clone, Default)]
struct ClusterView<'a> {
    /// (worker id, GPUs, GPUs not under a lease) of each connected worker, in no order
    /// (every use breaks ties by id).
    gpu_workers: Vec<(&'a str, u32, u32)>,
    /// Connected workers in all.
    connected: usize,
    /// Whether a connected worker offers `cpu`.
    any_cpu: bool,
    /// Whether a connected worker's `cpu` is free.
    cpu_free: bool,
    /// The most GPUs of one connected worker.
    max_gpus: u32,
}

/// Pending reasons of queued runs, computed against one view of the cluster.
#[derive(Debug)]
pub struct Pending<'a> {
    sched: &'a Scheduler,
    view: ClusterView<'a>,
    reservation: Option<Reservation>,
}

impl Pending<'_> {
    /// Why a queued run is not running; `None` for a run that is not queued.
    pub fn reason(&self, run: &RunSched) -> Option<String> {
        if run.state != RunState::Queued {
            return None;
        }
        let v = &self.view;
        if v.connected == 0 {
            return Some("no worker is connected".to_string());
        }
        Some(match run.demand {
            Demand::Cpu if !v.any_cpu => format!(
                "needs a CPU worker; none of the {} connected workers offers `cpu`",
                v.connected
            ),
            Demand::Cpu if v.cpu_free => "ready: waiting for a free CPU worker to ask".into(),
            Demand::Cpu => "waiting for a CPU worker to free up".into(),
            Demand::Gpus(n) if n > v.max_gpus => match v.max_gpus {
                0 => format!(
                    "needs {n} GPU{} on one worker; no connected worker has a GPU",
                    plural(n)
                ),
                m => format!("needs {n} GPUs on one worker; the largest has {m}"),
            },
            Demand::Gpus(n) => match &self.reservation {
                Some(r) if r.run_id == run.id => format!(
                    "waiting for a reservation: worker {} is held for it ({} of {n} GPUs free)",
                    self.sched.worker_name(&r.worker_id),
                    r.free
                ),
                reservation => {
                    let most_free = v
                        .gpu_workers
                        .iter()
                        .filter(|(w, ..)| reservation.as_ref().is_none_or(|r| r.worker_id != *w))
                        .map(|(_, _, free)| *free)
                        .max()
                        .unwrap_or(0);
                    if most_free >= n {
                        format!(
                            "ready: waiting for a worker with {n} free GPU{} to ask",
                            plural(n)
                        )
                    } else {
                        let held = reservation
                            .as_ref()
                            .map(|r| {
                                format!(
                                    "; worker {} is held for run {}",
                                    self.sched.worker_name(&r.worker_id),
                                    r.run_id
                                )
                            })
                            .unwrap_or_default();
                        format!(
                            "waiting for {n} free GPU{} on one worker (the most free now: {most_free}){held}",
                            plural(n)
                        )
                    }
                }
            },
        })
    }

    /// The reservation of this view.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The number of `cuda:N` devices in a list.
fn gpu_count(devices: &[String]) -> u32 {
    devices.iter().filter(|d| d.starts_with("cuda:")).count() as u32
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

    fn view(&self, now: Millis) -> ClusterView<'_> {
        let mut view = ClusterView::default();
        for w in self.workers.values() {
            if !self.is_connected(&w.id, now) {
                continue;
            }
            view.connected += 1;
            let busy = self.index.busy(&w.id);
            if w.devices.iter().any(|d| d == "cpu") {
                view.any_cpu = true;
                if !busy.is_some_and(|b| b.contains("cpu")) {
                    view.cpu_free = true;
                }
            }
            let total = gpu_count(&w.devices);
            if total > 0 {
                let used =
                    busy.map_or(0, |b| b.iter().filter(|d| d.starts_with("cuda:")).count()) as u32;
                view.gpu_workers
                    .push((w.id.as_str(), total, total.saturating_sub(used)));
                view.max_gpus = view.max_gpus.max(total);
            }
        }
        view
    }

    /// The first experiment of the fair order whose head (its first queued run that a
    /// connected worker can ever hold) needs several GPUs, and the worker held for that run:
    /// the one with the most free GPUs (then the smallest, then by id).
    fn reservation_in(&self, view: &ClusterView<'_>) -> Option<Reservation> {
        for exp in self.index.fair_order() {
            let Some(head) = self.index.first_fitting(exp, |g| {
                if g == 0 {
                    view.any_cpu
                } else {
                    g <= view.max_gpus
                }
            }) else {
                continue;
            };
            if head.gpus < 2 {
                continue;
            }
            let (worker_id, _, free) = view
                .gpu_workers
                .iter()
                .filter(|(_, total, _)| *total >= head.gpus)
                .min_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(b.0)))?;
            return Some(Reservation {
                run_id: head.id.to_string(),
                gpus: head.gpus,
                worker_id: worker_id.to_string(),
                free: *free,
            });
        }
        None
    }

    /// The current reservation, if any.
    pub fn reservation(&self, now: Millis) -> Option<Reservation> {
        self.reservation_in(&self.view(now))
    }

    /// Pending reasons against the cluster as it is at `now`.
    pub fn pending(&self, now: Millis) -> Pending<'_> {
        let view = self.view(now);
        let reservation = self.reservation_in(&view);
        Pending {
            sched: self,
            view,
            reservation,
        }
    }

    /// Why runs of these sizes (GPUs; 0 is CPU) cannot run on any connected worker, one
    /// line a size; empty when every size fits a connected worker.
    pub fn unfittable(&self, sizes: &BTreeMap<u32, usize>, now: Millis) -> Vec<String> {
        let view = self.view(now);
        let mut out = Vec::new();
        for (&gpus, &count) in sizes {
            let (runs, need) = if count == 1 {
                ("1 run".to_string(), "needs")
            } else {
                (format!("{count} runs"), "need")
            };
            if view.connected == 0 {
                out.push(
                    "no worker is connected yet: the runs wait until one registers".to_string(),
                );
                break;
            }
            if gpus == 0 && !view.any_cpu {
                out.push(format!(
                    "{runs} {need} a CPU worker; none of the {} connected workers offers `cpu`",
                    view.connected
                ));
            } else if gpus > view.max_gpus {
                out.push(match view.max_gpus {
                    0 => format!("{runs} {need} {gpus} GPU{} on one worker; no connected worker has a GPU", plural(gpus)),
                    m => format!("{runs} {need} {gpus} GPUs on one worker; the largest connected worker has {m}"),
                });
            }
        }
        out
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

    /// Lease renewals for every run a worker holds (when it registers again).
    pub fn renew_all_of(&self, worker_id: &str, now: Millis) -> Vec<Change> {
        let mut ids: Vec<&RunSched> = self
            .runs
            .values()
            .filter(|r| r.lease.as_ref().is_some_and(|l| l.worker_id == worker_id))
            .collect();
        ids.sort_by_key(|r| r.order);
        ids.into_iter().map(|run| self.renewal(run, now)).collect()
    }

    /// After a restart: every lease lasts at least one more TTL from `now`, so that workers
    /// that reconnect keep their runs.
    pub fn extend_leases(&self, now: Millis) -> Vec<Change> {
        let mut leased: Vec<&RunSched> = self.runs.values().filter(|r| r.lease.is_some()).collect();
        leased.sort_by_key(|r| r.order);
        leased
            .into_iter()
            .map(|run| self.renewal(run, now))
            .collect()
    }

    fn renewal(&self, run: &RunSched, now: Millis) -> Change {
        let mut after = run.clone();
        if let Some(lease) = &mut after.lease {
            lease.deadline_ms = lease.deadline_ms.max(now + self.lease_ttl_ms);
        }
        Change {
            before: run.clone(),
            after,
            kind: EventKind::Renewed,
            message: String::new(),
        }
    }

    /// Plans the placement of a queued run on the worker's free devices (see the module
    /// docs for the policy). Devices the worker reports free but whose lease the coordinator
    /// still counts are not used (their run may still be running there).
    pub fn acquire(
        &self,
        worker_id: &str,
        free: &[String],
        now: Millis,
    ) -> Result<Option<Change>, SchedError> {
        let worker = self
            .workers
            .get(worker_id)
            .ok_or_else(|| SchedError::UnknownWorker(worker_id.to_string()))?;
        if let Some(device) = free.iter().find(|d| !worker.devices.contains(d)) {
            return Err(SchedError::UnknownDevice {
                worker: worker_id.to_string(),
                device: device.clone(),
            });
        }
        let held = self.index.busy(worker_id);
        let available: BTreeSet<&str> = free
            .iter()
            .map(String::as_str)
            .filter(|d| !held.is_some_and(|h| h.contains(*d)))
            .collect();
        let cpu_free = available.contains("cpu");
        let mut gpus: Vec<(usize, &str)> = available
            .iter()
            .filter_map(|d| Some((Device::ordinal_of(d)?, *d)))
            .collect();
        gpus.sort();
        let n_free = gpus.len() as u32;
        if !cpu_free && n_free == 0 {
            return Ok(None);
        }

        let mut view = self.view(now);
        if !view.gpu_workers.iter().any(|(w, ..)| *w == worker_id) && n_free > 0 {
            // Asking proves it is connected, even before its first `touch`.
            view.gpu_workers
                .push((worker.id.as_str(), gpu_count(&worker.devices), n_free));
            view.max_gpus = view.max_gpus.max(gpu_count(&worker.devices));
        }
        let reservation = self.reservation_in(&view);
        let reserved_here = reservation.as_ref().filter(|r| r.worker_id == worker_id);

        let chosen: Option<&RunSched> = if let Some(r) = reserved_here.filter(|r| r.gpus <= n_free)
        {
            self.runs.get(&r.run_id)
        } else {
            // Free-GPU counts of the other connected workers not held for a reservation:
            // where a small run would fit more tightly than here.
            let mut tighter: BTreeMap<u32, usize> = BTreeMap::new();
            for (w, _, f) in &view.gpu_workers {
                if *w != worker_id && reservation.as_ref().is_none_or(|r| r.worker_id != *w) {
                    *tighter.entry(*f).or_default() += 1;
                }
            }
            // The largest queued run that fits the hole here.
            let largest = self.index.largest_queued_gpus(|g| g <= n_free);
            let gpus_allowed = reserved_here.is_none();
            let fits = |g: u32| -> bool {
                if g == 0 {
                    return cpu_free;
                }
                if !gpus_allowed || g > n_free {
                    return false;
                }
                // Packing: a smaller run does not break the hole the largest fitting run
                // needs when a connected worker fits it more tightly.
                let breaks_hole = g < largest && n_free - g < largest;
                !(breaks_hole && tighter.range(g..n_free).next().is_some())
            };
            self.index
                .fair_order()
                .into_iter()
                .find_map(|exp| self.index.first_fitting(exp, fits))
                .and_then(|head| self.runs.get(head.id))
        };
        let Some(run) = chosen else {
            return Ok(None);
        };
        let devices: Vec<String> = match run.demand {
            Demand::Cpu => vec!["cpu".to_string()],
            Demand::Gpus(n) => gpus[..n as usize]
                .iter()
                .map(|(_, d)| d.to_string())
                .collect(),
        };
        let mut after = run.clone();
        after.state = RunState::Running;
        after.attempt += 1;
        after.lease = Some(Lease {
            worker_id: worker_id.to_string(),
            devices: devices.clone(),
            deadline_ms: now + self.lease_ttl_ms,
        });
        Ok(Some(Change {
            before: run.clone(),
            message: format!(
                "attempt {} on worker {} ({}) devices {}",
                after.attempt,
                worker.name,
                worker_id,
                devices.join(",")
            ),
            after,
            kind: EventKind::Started,
        }))
    }

    /// The run, if `worker_id` holds its lease for `attempt` (fencing).
    pub fn fence(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<&RunSched, SchedError> {
        let run = self
            .runs
            .get(run_id)
            .ok_or_else(|| SchedError::UnknownRun(run_id.to_string()))?;
        if attempt != run.attempt {
            return Err(SchedError::Stale {
                run: run_id.to_string(),
                attempt,
                current: run.attempt,
            });
        }
        match &run.lease {
            Some(lease) if lease.worker_id == worker_id => Ok(run),
            _ => Err(SchedError::NotHolder {
                run: run_id.to_string(),
                attempt,
                worker: worker_id.to_string(),
                state: run.state,
            }),
        }
    }

    /// Progress or heartbeat: renews the lease. The change's `after.cancel_requested()`
    /// tells the worker to stop.
    pub fn renew(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        now: Millis,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        let mut after = run.clone();
        if let Some(lease) = &mut after.lease {
            lease.deadline_ms = now + self.lease_ttl_ms;
        }
        Ok(Change {
            before: run.clone(),
            after,
            kind: EventKind::Renewed,
            message: String::new(),
        })
    }

    /// The attempt finished every epoch. A cancelled run stays cancelled (its devices are
    /// freed).
    pub fn complete(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        let mut after = run.clone();
        after.lease = None;
        let (kind, message) = if run.state == RunState::Cancelled {
            (
                EventKind::Freed,
                format!("attempt {attempt} completed after cancellation"),
            )
        } else {
            after.state = RunState::Finished;
            after.error = None;
            (EventKind::Finished, format!("attempt {attempt} finished"))
        };
        Ok(Change {
            before: run.clone(),
            after,
            kind,
            message,
        })
    }

    /// The attempt failed: retry (queued) until `max_attempts` failures, then `failed`.
    /// A permanent failure fails the run at once.
    pub fn fail(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        reason: &str,
        permanent: bool,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        Ok(self.failure(run, reason, permanent))
    }

    fn failure(&self, run: &RunSched, reason: &str, permanent: bool) -> Change {
        let mut after = run.clone();
        after.lease = None;
        if run.state == RunState::Cancelled {
            return Change {
                before: run.clone(),
                after,
                kind: EventKind::Freed,
                message: format!("attempt {} ended after cancellation: {reason}", run.attempt),
            };
        }
        after.failures += 1;
        after.error = Some(reason.to_string());
        let (kind, message) = if permanent || after.failures >= after.max_attempts {
            after.state = RunState::Failed;
            let why = if permanent {
                "a permanent failure".to_string()
            } else {
                format!(
                    "{} of {} attempts failed",
                    after.failures, after.max_attempts
                )
            };
            (
                EventKind::Failed,
                format!("attempt {}: {reason} ({why}: run failed)", run.attempt),
            )
        } else {
            after.state = RunState::Queued;
            (
                EventKind::Retry,
                format!(
                    "attempt {}: {reason} (failure {} of {}: re-queued)",
                    run.attempt, after.failures, after.max_attempts
                ),
            )
        };
        Change {
            before: run.clone(),
            after,
            kind,
            message,
        }
    }

    /// The worker gives the run back: re-queued at once (not counted as a failure); a
    /// cancelled run's devices are freed.
    pub fn release(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        reason: &str,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        let mut after = run.clone();
        after.lease = None;
        let kind = if run.state == RunState::Cancelled {
            EventKind::Freed
        } else {
            after.state = RunState::Queued;
            EventKind::Released
        };
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        Ok(Change {
            before: run.clone(),
            after,
            kind,
            message: format!("attempt {attempt} released: {reason}"),
        })
    }

    /// Leases past their deadline: the run is re-queued (a failure of its attempt), or
    /// failed after `max_attempts`; a cancelled run's devices are freed.
    pub fn expire(&self, now: Millis) -> Vec<Change> {
        let mut expired: Vec<&RunSched> = self
            .runs
            .values()
            .filter(|r| r.lease.as_ref().is_some_and(|l| l.deadline_ms <= now))
            .collect();
        expired.sort_by_key(|r| r.order);
        expired
            .into_iter()
            .map(|run| {
                let lease = run.lease.as_ref().expect("filtered on a lease");
                let worker = self
                    .workers
                    .get(&lease.worker_id)
                    .map(|w| format!("{} ({})", w.name, w.id))
                    .unwrap_or_else(|| lease.worker_id.clone());
                let reason = format!(
                    "lease expired: worker {worker} stopped reporting for {} s",
                    self.lease_ttl_ms / 1000
                );
                let mut change = self.failure(run, &reason, false);
                if change.kind == EventKind::Retry {
                    change.kind = EventKind::Expired;
                }
                change
            })
            .collect()
    }

    /// Cancels runs: queued ones at once, running ones on their worker's next message
    /// (their lease and devices are kept until the worker releases or the lease lapses).
    /// Terminal runs are left alone.
    pub fn cancel(&self, run_ids: &[String]) -> Vec<Change> {
        run_ids
            .iter()
            .filter_map(|id| self.runs.get(id))
            .filter(|r| !r.state.is_terminal())
            .map(|run| {
                let mut after = run.clone();
                after.state = RunState::Cancelled;
                let message = match &run.lease {
                    Some(l) => format!("cancelled while running on worker {}", l.worker_id),
                    None => "cancelled while queued".to_string(),
                };
                Change {
                    before: run.clone(),
                    after,
                    kind: EventKind::Cancelled,
                    message,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Millis = 15_000;

    fn worker(s: &mut Scheduler, id: &str, devices: &[&str]) {
        s.insert_worker(WorkerInfo {
            id: id.into(),
            name: format!("host-{id}"),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            threads: 2,
            data_roots: Vec::new(),
        });
        s.touch(id, 0);
    }

    fn gpu_worker(s: &mut Scheduler, id: &str, n: usize) {
        let devices = gpus(n);
        worker(
            s,
            id,
            &devices.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }

    /// A run already running on `worker`'s `devices` (placed before the test starts).
    fn running(s: &mut Scheduler, id: &str, exp: u64, index: u32, w: &str, devices: &[&str]) {
        let gpus = devices.iter().filter(|d| d.starts_with("cuda:")).count() as u32;
        let mut r = RunSched::queued(
            id,
            &format!("e{exp}"),
            (exp, index),
            Demand::from_gpus(gpus),
            3,
        );
        r.state = RunState::Running;
        r.attempt = 1;
        r.lease = Some(Lease {
            worker_id: w.into(),
            devices: names(devices),
            deadline_ms: TTL,
        });
        s.insert_run(r);
    }

    /// The GPUs of `free` not used by `taken`.
    fn minus(free: &[String], taken: &[String]) -> Vec<String> {
        free.iter()
            .filter(|d| !taken.contains(d))
            .cloned()
            .collect()
    }

    fn run(s: &mut Scheduler, id: &str, exp: u64, index: u32, gpus: u32) {
        s.insert_run(RunSched::queued(
            id,
            &format!("e{exp}"),
            (exp, index),
            Demand::from_gpus(gpus),
            3,
        ));
    }

    fn names(devices: &[&str]) -> Vec<String> {
        devices.iter().map(|d| d.to_string()).collect()
    }

    fn gpus(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cuda:{i}")).collect()
    }

    /// Acquires and commits; returns (run id, devices).
    fn take(
        s: &mut Scheduler,
        w: &str,
        free: &[String],
        now: Millis,
    ) -> Option<(String, Vec<String>)> {
        let change = s.acquire(w, free, now).unwrap()?;
        let out = (
            change.after.id.clone(),
            change.after.lease.clone().unwrap().devices,
        );
        s.commit([change]);
        Some(out)
    }

    #[test]
    fn queue_is_submit_order_across_experiments() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "b0", 2, 0, 0);
        run(&mut s, "a1", 1, 1, 0);
        run(&mut s, "a0", 1, 0, 0);
        let mut order = Vec::new();
        while let Some((id, _)) = take(&mut s, "w", &names(&["cpu"]), 0) {
            order.push(id.clone());
            let c = s.complete("w", &id, 1).unwrap();
            s.commit([c]);
        }
        assert_eq!(order, ["a0", "a1", "b0"]);
    }

    #[test]
    fn eight_gpus_hold_eight_one_gpu_runs() {
        let mut s = Scheduler::new(TTL);
        worker(
            &mut s,
            "w",
            &gpus(8).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        for i in 0..10 {
            run(&mut s, &format!("r{i}"), 1, i, 1);
        }
        let mut free = gpus(8);
        let mut used = Vec::new();
        while let Some((_, devices)) = take(&mut s, "w", &free, 0) {
            assert_eq!(devices.len(), 1);
            free.retain(|d| d != &devices[0]);
            used.extend(devices);
        }
        used.sort();
        assert_eq!(used, {
            let mut g = gpus(8);
            g.sort();
            g
        });
        assert_eq!(s.queued().count(), 2);
    }

    #[test]
    fn eight_gpus_hold_one_eight_gpu_run() {
        let mut s = Scheduler::new(TTL);
        worker(
            &mut s,
            "w",
            &gpus(8).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        run(&mut s, "big", 1, 0, 8);
        run(&mut s, "big2", 1, 1, 8);
        let (id, devices) = take(&mut s, "w", &gpus(8), 0).unwrap();
        assert_eq!(id, "big");
        assert_eq!(devices, gpus(8));
        // The worker wrongly reports everything free: the coordinator still counts the lease.
        assert_eq!(s.acquire("w", &gpus(8), 0).unwrap(), None);
    }

    #[test]
    fn an_eight_gpu_run_does_not_fit_seven_free_gpus_and_holds_them() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        run(&mut s, "big", 1, 0, 8);
        run(&mut s, "small", 1, 1, 1);
        // Seven free GPUs: not enough for `big`, and held for it (not given to `small`).
        assert_eq!(s.acquire("w", &gpus(7), 0).unwrap(), None);
        let (id, devices) = take(&mut s, "w", &gpus(8), 0).unwrap();
        assert_eq!((id.as_str(), devices), ("big", gpus(8)));
    }

    #[test]
    fn cpu_workers_take_cpu_runs_only() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "c", &["cpu"]);
        worker(&mut s, "g", &["cuda:0"]);
        run(&mut s, "gpu-run", 1, 0, 1);
        run(&mut s, "cpu-run", 1, 1, 0);
        let (id, devices) = take(&mut s, "c", &names(&["cpu"]), 0).unwrap();
        assert_eq!((id.as_str(), devices), ("cpu-run", names(&["cpu"])));
        assert_eq!(
            s.acquire("c", &names(&["cpu"]), 0).unwrap(),
            None,
            "cpu is held"
        );
        let (id, _) = take(&mut s, "g", &names(&["cuda:0"]), 0).unwrap();
        assert_eq!(id, "gpu-run");
    }

    #[test]
    fn unknown_worker_and_device_are_refused() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        assert_eq!(
            s.acquire("x", &[], 0),
            Err(SchedError::UnknownWorker("x".into()))
        );
        assert!(matches!(
            s.acquire("w", &names(&["cuda:3"]), 0),
            Err(SchedError::UnknownDevice { .. })
        ));
    }

    #[test]
    fn fencing_refuses_stale_attempts_and_other_workers() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w1", &["cpu"]);
        worker(&mut s, "w2", &["cpu"]);
        run(&mut s, "r", 1, 0, 0);
        take(&mut s, "w1", &names(&["cpu"]), 0).unwrap();
        assert!(s.renew("w1", "r", 1, 1_000).is_ok());
        assert_eq!(
            s.renew("w1", "r", 0, 1_000).unwrap_err(),
            SchedError::Stale {
                run: "r".into(),
                attempt: 0,
                current: 1
            }
        );
        assert!(matches!(
            s.renew("w2", "r", 1, 1_000),
            Err(SchedError::NotHolder { .. })
        ));
        // Lease lapses: re-queued; the old holder's messages are refused.
        let expired = s.expire(TTL + 1);
        assert_eq!(expired.len(), 1);
        s.commit(expired);
        assert!(matches!(
            s.renew("w1", "r", 1, TTL + 2),
            Err(SchedError::NotHolder { .. })
        ));
        assert!(matches!(
            s.complete("w1", "r", 1),
            Err(SchedError::NotHolder { .. })
        ));
        // The next attempt is number 2; attempt 1 is now stale.
        take(&mut s, "w2", &names(&["cpu"]), TTL + 3).unwrap();
        assert_eq!(s.run("r").unwrap().attempt, 2);
        assert!(matches!(
            s.complete("w1", "r", 1),
            Err(SchedError::Stale { current: 2, .. })
        ));
        assert!(s.complete("w2", "r", 2).is_ok());
        assert_eq!(
            s.fence("w2", "nope", 1).unwrap_err(),
            SchedError::UnknownRun("nope".into())
        );
    }

    #[test]
    fn renewal_keeps_the_lease_alive() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "r", 1, 0, 0);
        take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        for t in (5_000..60_000).step_by(5_000) {
            let c = s.renew("w", "r", 1, t).unwrap();
            assert_eq!(c.after.lease.as_ref().unwrap().deadline_ms, t + TTL);
            s.commit([c]);
            assert!(s.expire(t + 1).is_empty());
        }
        assert_eq!(s.expire(55_000 + TTL).len(), 1);
    }

    #[test]
    fn expiry_retries_then_fails_after_max_attempts() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "r", 1, 0, 0);
        let mut now = 0;
        for attempt in 1..=3 {
            take(&mut s, "w", &names(&["cpu"]), now).unwrap();
            assert_eq!(s.run("r").unwrap().attempt, attempt);
            now += TTL;
            let changes = s.expire(now);
            assert_eq!(changes.len(), 1);
            let expected = if attempt < 3 {
                EventKind::Expired
            } else {
                EventKind::Failed
            };
            assert_eq!(changes[0].kind, expected);
            assert!(changes[0].attempt_ended());
            s.commit(changes);
        }
        let r = s.run("r").unwrap();
        assert_eq!(r.state, RunState::Failed);
        assert_eq!(r.failures, 3);
        assert!(
            r.error.as_ref().unwrap().contains("lease expired"),
            "{:?}",
            r.error
        );
        assert_eq!(s.acquire("w", &names(&["cpu"]), now).unwrap(), None);
    }

    #[test]
    fn fail_retries_and_permanent_fails_at_once() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "r", 1, 0, 0);
        run(&mut s, "p", 1, 1, 0);
        take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        let c = s.fail("w", "r", 1, "NaN loss", false).unwrap();
        assert_eq!(
            (c.kind, c.after.state),
            (EventKind::Retry, RunState::Queued)
        );
        s.commit([c]);
        let (id, _) = take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        assert_eq!(id, "r", "a retried run keeps its place in the queue");
        let c = s.fail("w", "r", 2, "missing data", true).unwrap();
        assert_eq!(c.after.state, RunState::Failed);
        assert_eq!(c.after.error.as_deref(), Some("missing data"));
        s.commit([c]);
        let (id, _) = take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        assert_eq!(id, "p");
    }

    #[test]
    fn release_requeues_without_counting_a_failure() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "r", 1, 0, 0);
        for attempt in 1..=5 {
            take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
            let c = s.release("w", "r", attempt, "SIGTERM").unwrap();
            assert_eq!(c.after.state, RunState::Queued);
            s.commit([c]);
        }
        assert_eq!(s.run("r").unwrap().failures, 0);
        assert_eq!(s.run("r").unwrap().attempt, 5);
    }

    #[test]
    fn cancel_stops_running_runs_and_frees_devices_on_release() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cuda:0", "cuda:1"]);
        run(&mut s, "a", 1, 0, 2);
        run(&mut s, "b", 1, 1, 2);
        run(&mut s, "c", 2, 0, 2);
        take(&mut s, "w", &gpus(2), 0).unwrap();
        let changes = s.cancel(&names(&["a", "b"]));
        assert_eq!(changes.len(), 2);
        s.commit(changes);
        assert_eq!(s.run("b").unwrap().state, RunState::Cancelled);
        let renewal = s.renew("w", "a", 1, 1_000).unwrap();
        assert!(
            renewal.after.cancel_requested(),
            "the worker is told to stop"
        );
        s.commit([renewal]);
        // Still held until the worker releases.
        assert_eq!(s.acquire("w", &gpus(2), 1_000).unwrap(), None);
        let c = s.release("w", "a", 1, "cancelled").unwrap();
        assert_eq!(
            (c.kind, c.after.state),
            (EventKind::Freed, RunState::Cancelled)
        );
        s.commit([c]);
        let (id, _) = take(&mut s, "w", &gpus(2), 1_000).unwrap();
        assert_eq!(
            id, "c",
            "b was cancelled while queued; c gets the freed GPUs"
        );
        assert!(s.cancel(&names(&["a"])).is_empty(), "terminal runs stay");
    }

    #[test]
    fn a_cancelled_runs_lease_lapse_frees_devices_without_failing() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "a", 1, 0, 0);
        take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        let c = s.cancel(&names(&["a"]));
        s.commit(c);
        let expired = s.expire(TTL);
        assert_eq!(expired[0].kind, EventKind::Freed);
        s.commit(expired);
        let r = s.run("a").unwrap();
        assert_eq!(
            (r.state, r.failures, r.lease.is_none()),
            (RunState::Cancelled, 0, true)
        );
    }

    #[test]
    fn a_worker_leaves_only_once_it_holds_nothing() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        s.touch("w", 0);
        run(&mut s, "a", 1, 0, 0);
        take(&mut s, "w", &names(&["cpu"]), 0).unwrap();
        assert_eq!(s.leases_of("w"), names(&["a"]));
        let released = s.release("w", "a", 1, "leaving").unwrap();
        s.commit([released]);
        assert!(s.leases_of("w").is_empty());
        s.remove_worker("w");
        assert!(s.worker("w").is_none() && !s.is_connected("w", 0));
        assert_eq!(
            s.pending(0).reason(s.run("a").unwrap()).unwrap(),
            "no worker is connected"
        );
    }

    #[test]
    fn restart_extends_leases_and_reregistration_returns_held_runs() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu", "cuda:0"]);
        run(&mut s, "a", 1, 0, 0);
        run(&mut s, "b", 1, 1, 1);
        take(&mut s, "w", &names(&["cpu", "cuda:0"]), 0).unwrap();
        take(&mut s, "w", &names(&["cuda:0"]), 0).unwrap();
        // The coordinator was down for a long time: the deadlines are in the past.
        let now = 10 * TTL;
        let extended = s.extend_leases(now);
        assert_eq!(extended.len(), 2);
        assert!(extended
            .iter()
            .all(|c| c.after.lease.as_ref().unwrap().deadline_ms == now + TTL));
        s.commit(extended);
        assert!(s.expire(now + 1).is_empty());
        let held: Vec<&str> = s.held_by("w").iter().map(|r| r.id.as_str()).collect();
        assert_eq!(held, ["a", "b"]);
        assert!(s.held_by("other").is_empty());
    }

    #[test]
    fn changes_plan_without_mutating() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu"]);
        run(&mut s, "a", 1, 0, 0);
        let c = s.acquire("w", &names(&["cpu"]), 0).unwrap().unwrap();
        assert!(c.attempt_started());
        assert_eq!(
            s.run("a").unwrap().state,
            RunState::Queued,
            "not committed yet"
        );
        assert_eq!(s.queued().count(), 1);
    }

    #[test]
    fn states_round_trip() {
        for state in [
            RunState::Queued,
            RunState::Running,
            RunState::Finished,
            RunState::Failed,
            RunState::Cancelled,
        ] {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
        }
        assert!("done".parse::<RunState>().is_err());
    }

    // ---- placement policy -------------------------------------------------------------

    #[test]
    fn a_multi_gpu_head_reserves_a_worker_and_small_runs_backfill_elsewhere() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        for i in 0..4 {
            run(&mut s, &format!("small{i}"), 1, i, 1);
        }
        run(&mut s, "big", 1, 4, 8);
        for i in 5..40 {
            run(&mut s, &format!("small{i}"), 1, i, 1);
        }
        // Four small runs hold four of w's GPUs when the big one reaches the head.
        for i in 0..4 {
            let (id, _) = take(&mut s, "w", &gpus(8)[i..], 0).unwrap();
            assert_eq!(id, format!("small{i}"));
        }
        gpu_worker(&mut s, "x", 1);
        // w is held for `big` (the small runs behind it would delay it there) ...
        let r = s.reservation(0).expect("a reservation");
        assert_eq!(
            (r.run_id.as_str(), r.worker_id.as_str(), r.free),
            ("big", "w", 4)
        );
        assert_eq!(s.acquire("w", &gpus(8)[4..], 0).unwrap(), None);
        let pending = s.pending(0);
        assert_eq!(
            pending.reason(s.run("big").unwrap()).unwrap(),
            "waiting for a reservation: worker host-w is held for it (4 of 8 GPUs free)"
        );
        // ... while x, which cannot delay it, backfills.
        let (id, _) = take(&mut s, "x", &gpus(1), 0).unwrap();
        assert_eq!(id, "small5");
        // The small runs end one by one: w's freed GPUs stay free until big fits.
        for i in 0..4u32 {
            let c = s.complete("w", &format!("small{i}"), 1).unwrap();
            s.commit([c]);
            let free = gpus(8)[..=i as usize]
                .iter()
                .chain(&gpus(8)[4..])
                .cloned()
                .collect::<Vec<_>>();
            if i < 3 {
                assert_eq!(
                    s.acquire("w", &free, 1).unwrap(),
                    None,
                    "after {} ended",
                    i + 1
                );
            } else {
                let (id, devices) = take(&mut s, "w", &free, 1).unwrap();
                assert_eq!((id.as_str(), devices.len()), ("big", 8));
            }
        }
        assert_eq!(s.reservation(1), None, "no multi-GPU run left");
    }

    #[test]
    fn a_stream_of_one_gpu_runs_does_not_starve_an_eight_gpu_run() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        run(&mut s, "big", 2, 0, 8);
        // Eight small runs of an older experiment hold the worker; more keep coming.
        let mut busy: Vec<(String, String)> = Vec::new();
        for i in 0..8u32 {
            running(&mut s, &format!("s{i}"), 1, i, "w", &[&format!("cuda:{i}")]);
            busy.push((format!("s{i}"), format!("cuda:{i}")));
        }
        for i in 8..200u32 {
            run(&mut s, &format!("s{i}"), 1, i, 1);
        }
        let mut now = 0;
        let mut started_big = None;
        for step in 0..8 {
            now += 1_000;
            // The oldest small run ends; its GPU is free; the worker asks.
            let (id, device) = busy.remove(0);
            let c = s.complete("w", &id, 1).unwrap();
            s.commit([c]);
            let used: Vec<String> = busy.iter().map(|(_, d)| d.clone()).collect();
            let free = minus(&gpus(8), &used);
            let _ = device;
            if let Some((id, devices)) = take(&mut s, "w", &free, now) {
                assert_eq!(id, "big", "a small run took a GPU held for the big one");
                started_big = Some((step, devices.len()));
                break;
            }
        }
        assert_eq!(
            started_big,
            Some((7, 8)),
            "big starts once all eight GPUs are free"
        );
    }

    #[test]
    fn experiments_share_the_cluster_by_priority() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        for i in 0..20 {
            run(&mut s, &format!("a{i}"), 1, i, 1);
            run(&mut s, &format!("b{i}"), 2, i, 1);
        }
        // Equal weights: runs of the two experiments interleave, although a came first.
        let mut free = gpus(8);
        let mut order = Vec::new();
        for _ in 0..4 {
            let (id, devices) = take(&mut s, "w", &free, 0).unwrap();
            free = minus(&free, &devices);
            order.push(id);
        }
        assert_eq!(order, ["a0", "b0", "a1", "b1"]);

        // A priority-3 experiment gets three times the share of a priority-1 one.
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        for i in 0..20 {
            run(&mut s, &format!("a{i}"), 1, i, 1);
            run(&mut s, &format!("b{i}"), 2, i, 1);
        }
        s.set_weight("e2", 3);
        let mut free = gpus(8);
        let mut by_exp = (0, 0);
        while let Some((id, devices)) = take(&mut s, "w", &free, 0) {
            free = minus(&free, &devices);
            if id.starts_with('a') {
                by_exp.0 += 1;
            } else {
                by_exp.1 += 1;
            }
        }
        assert_eq!(by_exp, (2, 6));
    }

    #[test]
    fn all_gpus_of_a_run_are_on_one_worker_and_an_unfittable_run_says_why() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "p", 2);
        gpu_worker(&mut s, "q", 2);
        run(&mut s, "four", 1, 0, 4);
        run(&mut s, "two", 1, 1, 2);
        // Four GPUs in the cluster, but not on one worker.
        let (id, devices) = take(&mut s, "p", &gpus(2), 0).unwrap();
        assert_eq!((id.as_str(), devices), ("two", gpus(2)));
        assert_eq!(s.acquire("q", &gpus(2), 0).unwrap(), None);
        assert_eq!(
            s.pending(0).reason(s.run("four").unwrap()).unwrap(),
            "needs 4 GPUs on one worker; the largest has 2"
        );
        let sizes: BTreeMap<u32, usize> = [(4, 1), (2, 1), (0, 3)].into_iter().collect();
        assert_eq!(
            s.unfittable(&sizes, 0),
            [
                "3 runs need a CPU worker; none of the 2 connected workers offers `cpu`",
                "1 run needs 4 GPUs on one worker; the largest connected worker has 2"
            ]
        );
        // A worker that stopped reporting long ago no longer counts.
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "old", 8);
        run(&mut s, "r", 1, 0, 1);
        let later = 10 * TTL;
        assert_eq!(
            s.pending(later).reason(s.run("r").unwrap()).unwrap(),
            "no worker is connected"
        );
    }

    #[test]
    fn small_runs_pack_into_tight_holes_and_leave_large_ones_open() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "r", 8); // the reserved one: all eight free
        gpu_worker(&mut s, "w", 8); // six free
        gpu_worker(&mut s, "t", 2); // one free
        running(&mut s, "w-busy", 0, 0, "w", &["cuda:0", "cuda:1"]);
        running(&mut s, "t-busy", 0, 1, "t", &["cuda:0"]);
        run(&mut s, "big8", 1, 0, 8);
        run(&mut s, "small", 1, 1, 1);
        run(&mut s, "six", 1, 2, 6);
        assert_eq!(s.reservation(0).unwrap().worker_id, "r");
        // On w, `small` (first in index order) would break the 6-hole `six` needs, and t
        // fits it more tightly: w takes `six`.
        let (id, _) = take(&mut s, "w", &gpus(8)[2..], 0).unwrap();
        assert_eq!(id, "six");
        let (id, _) = take(&mut s, "t", &gpus(2)[1..], 0).unwrap();
        assert_eq!(id, "small");
        let (id, devices) = take(&mut s, "r", &gpus(8), 0).unwrap();
        assert_eq!((id.as_str(), devices.len()), ("big8", 8));
    }

    #[test]
    fn cpu_runs_are_not_held_back_by_a_gpu_reservation() {
        let mut s = Scheduler::new(TTL);
        worker(&mut s, "w", &["cpu", "cuda:0", "cuda:1"]);
        running(&mut s, "g", 0, 0, "w", &["cuda:0"]);
        run(&mut s, "two", 1, 0, 2);
        run(&mut s, "one", 1, 1, 1);
        run(&mut s, "c", 1, 2, 0);
        let (id, _) = take(&mut s, "w", &names(&["cpu", "cuda:1"]), 0).unwrap();
        assert_eq!(id, "c", "the free GPU is held for `two`; the CPU is not");
        assert_eq!(s.acquire("w", &names(&["cuda:1"]), 0).unwrap(), None);
        assert!(s
            .pending(0)
            .reason(s.run("one").unwrap())
            .unwrap()
            .starts_with("waiting for 1 free GPU on one worker (the most free now: 0); worker host-w is held for run two"));
    }

    /// Fills `w`'s eight GPUs with 1-GPU runs; returns the runs placed per experiment id.
    fn fill_eight(s: &mut Scheduler, now: Millis) -> BTreeMap<String, usize> {
        let mut free = gpus(8);
        let mut by_exp: BTreeMap<String, usize> = BTreeMap::new();
        while let Some((id, devices)) = take(s, "w", &free, now) {
            free = minus(&free, &devices);
            *by_exp
                .entry(s.run(&id).unwrap().experiment_id.clone())
                .or_default() += 1;
        }
        by_exp
    }

    fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(e, n)| (e.to_string(), *n)).collect()
    }

    #[test]
    fn users_share_the_cluster_before_their_experiments_do() {
        let now = 5_000;
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        // alice has three experiments, bob one: without users bob would get 2 of 8.
        for exp in 1..=4 {
            for i in 0..10 {
                run(&mut s, &format!("e{exp}-{i}"), exp, i, 1);
            }
        }
        for exp in ["e1", "e2", "e3"] {
            s.set_user(exp, "alice");
        }
        s.set_user("e4", "bob");
        assert_eq!(
            fill_eight(&mut s, now),
            counts(&[("e1", 2), ("e2", 1), ("e3", 1), ("e4", 4)])
        );

        // When bob's runs end, alice's experiments take the freed GPUs (nothing idles).
        for i in 0..4 {
            let c = s.complete("w", &format!("e4-{i}"), 1).unwrap();
            s.commit([c]);
        }
        for i in 4..10 {
            let c = s.cancel(&[format!("e4-{i}")]);
            s.commit(c);
        }
        let after = fill_eight(&mut s, now + 1_000);
        assert_eq!(after.values().sum::<usize>(), 4);
        assert!(!after.contains_key("e4"));
    }

    /// Eight GPUs on one worker; ten one-GPU runs in each of alice's experiments e1 and e2
    /// and bob's e3.
    fn alice_twice_and_bob() -> Scheduler {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        for exp in 1..=3 {
            for i in 0..10 {
                run(&mut s, &format!("e{exp}-{i}"), exp, i, 1);
            }
        }
        s.set_user("e1", "alice");
        s.set_user("e2", "alice");
        s.set_user("e3", "bob");
        s
    }

    #[test]
    fn a_user_weight_changes_the_users_share() {
        let mut s = alice_twice_and_bob();
        s.set_user_weight("bob", 3);
        // bob (weight 3) gets three times alice's devices, although she has two experiments.
        assert_eq!(
            fill_eight(&mut s, 0),
            counts(&[("e1", 1), ("e2", 1), ("e3", 6)])
        );
    }

    #[test]
    fn priority_moves_devices_between_one_users_experiments_only() {
        let mut s = alice_twice_and_bob();
        s.set_weight("e1", 3);
        // alice's priority-3 experiment gets three of her four GPUs; bob keeps his half.
        assert_eq!(
            fill_eight(&mut s, 0),
            counts(&[("e1", 3), ("e2", 1), ("e3", 4)])
        );
    }

    #[test]
    fn a_user_set_after_placement_carries_what_the_experiment_holds() {
        let mut s = Scheduler::new(TTL);
        gpu_worker(&mut s, "w", 8);
        // e0 already holds four GPUs when it is attributed to alice (a restart loads the
        // users before the runs, but the order must not matter).
        for i in 0..4u32 {
            running(
                &mut s,
                &format!("held{i}"),
                0,
                i,
                "w",
                &[&format!("cuda:{i}")],
            );
        }
        for exp in 1..=2 {
            for i in 0..10 {
                run(&mut s, &format!("e{exp}-{i}"), exp, i, 1);
            }
        }
        s.set_user("e0", "alice");
        s.set_user("e1", "alice");
        s.set_user("e2", "bob");
        let mut free = gpus(8)[4..].to_vec();
        let mut placed = Vec::new();
        while let Some((id, devices)) = take(&mut s, "w", &free, 0) {
            free = minus(&free, &devices);
            placed.push(id);
        }
        assert_eq!(placed, ["e2-0", "e2-1", "e2-2", "e2-3"]);
    }
}
