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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

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
        }
    }

    /// Whether the run will not change state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Finished | RunState::Failed | RunState::Cancelled
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
}

impl Scheduler {
    /// An empty scheduler whose leases last `lease_ttl_ms` unless renewed.
    pub fn new(lease_ttl_ms: Millis) -> Scheduler {
        Scheduler {
            lease_ttl_ms: lease_ttl_ms.max(1),
            runs: HashMap::new(),
            queue: BTreeSet::new(),
            workers: HashMap::new(),
        }
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
        }
        if run.state == RunState::Queued {
            self.queue
                .insert((run.order.0, run.order.1, run.id.clone()));
        }
        self.runs.insert(run.id.clone(), run);
    }

    /// Adds (or replaces) a worker.
    pub fn insert_worker(&mut self, worker: WorkerInfo) {
        self.workers.insert(worker.id.clone(), worker);
    }

    /// A run by id.
    pub fn run(&self, id: &str) -> Option<&RunSched> {
        self.runs.get(id)
    }

    /// A worker by id.
    pub fn worker(&self, id: &str) -> Option<&WorkerInfo> {
        self.workers.get(id)
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

    /// Plans the placement of the first queued run that fits the worker's free devices.
    /// Devices the worker reports free but whose lease the coordinator still counts are not
    /// used (their run may still be running there).
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
        let held: HashSet<&str> = self
            .runs
            .values()
            .filter_map(|r| r.lease.as_ref())
            .filter(|l| l.worker_id == worker_id)
            .flat_map(|l| l.devices.iter().map(String::as_str))
            .collect();
        let available: Vec<&str> = free
            .iter()
            .map(String::as_str)
            .filter(|d| !held.contains(d))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let cpu_free = available.contains(&"cpu");
        let mut gpus: Vec<(usize, &str)> = available
            .iter()
            .filter_map(|d| Some((d.strip_prefix("cuda:")?.parse::<usize>().ok()?, *d)))
            .collect();
        gpus.sort();
        for run in self.queued() {
            let devices: Vec<String> = match run.demand {
                Demand::Cpu if cpu_free => vec!["cpu".to_string()],
                Demand::Gpus(n) if n as usize <= gpus.len() => gpus[..n as usize]
                    .iter()
                    .map(|(_, d)| d.to_string())
                    .collect(),
                _ => continue,
            };
            let mut after = run.clone();
            after.state = RunState::Running;
            after.attempt += 1;
            after.lease = Some(Lease {
                worker_id: worker_id.to_string(),
                devices: devices.clone(),
                deadline_ms: now + self.lease_ttl_ms,
            });
            return Ok(Some(Change {
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
            }));
        }
        Ok(None)
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
        });
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
    fn an_eight_gpu_run_does_not_fit_seven_free_gpus() {
        let mut s = Scheduler::new(TTL);
        worker(
            &mut s,
            "w",
            &gpus(8).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        run(&mut s, "big", 1, 0, 8);
        run(&mut s, "small", 1, 1, 1);
        let (id, devices) = take(&mut s, "w", &gpus(7), 0).unwrap();
        assert_eq!((id.as_str(), devices), ("small", names(&["cuda:0"])));
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
}
