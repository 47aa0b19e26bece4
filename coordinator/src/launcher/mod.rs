//! Launchers: the coordinator grows its worker pool through a cluster engine
//! (`ablate serve --launcher slurm`). The scheduler stays as it is; the launcher only
//! observes the queue ([`QueueView`]) and acts through an [`Engine`]:
//!
//! - [`plan`]: how many jobs of which size, which pending ones to cancel (pure);
//! - [`Launcher::step`]: one round: list the engine's jobs, match them to the workers
//!   they became, plan, submit and cancel, and say what happened ([`Board`]);
//! - [`slurm`]: the Slurm engine (`sbatch`, `squeue`, `scancel`) over a
//!   [`runner::CommandRunner`];
//! - [`args`]: the `ablate serve` options; [`spawn`]: the task that runs the rounds.
//!
//! What the launcher knows is shown where users already look: its jobs in `ablate workers`,
//! its notes (a job pending for the run, `--max-jobs` reached, `sbatch` failed) in the
//! pending reason of `ablate status`.

pub mod args;
pub mod plan;
pub mod runner;
pub mod slurm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

pub use plan::{JobPhase, Limits, PlannedJob, QueueView, QueuedRun, WorkerSupply};

use crate::scheduling::scheduler::Millis;
use crate::state::Coordinator;

/// How an engine's job state counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// Queued in the engine.
    Pending,
    /// Allocated and running (or being set up).
    Running,
    /// Completing, or any state on the way out.
    Ending,
}

/// A job of this launcher as its engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineJob {
    /// The engine's id.
    pub id: String,
    /// How its state counts.
    pub state: EngineState,
    /// The engine's own name of the state (`PENDING`, `RUNNING`, ...).
    pub state_name: String,
    /// Its node (empty while pending).
    pub node: String,
    /// The engine's reason while it waits (`Resources`, `Priority`, ...).
    pub reason: String,
    /// GPUs it asked for.
    pub gpus: u32,
    /// CPUs it asked for.
    pub cpus: u32,
}

/// A cluster engine that runs worker jobs. Implementations run the engine's own tools;
/// the launcher decides what to ask of them.
pub trait Engine: Send + Sync + 'static {
    /// The engine's name, as shown (`slurm`).
    fn name(&self) -> &'static str;
    /// The name the worker of a job registers with.
    fn worker_name(&self, job_id: &str) -> String;
    /// Where a job's output can be read (for an error that points there).
    fn log_of(&self, job_id: &str) -> String;
    /// This launcher's jobs the engine still has.
    fn list(&self) -> Result<Vec<EngineJob>, String>;
    /// Submits a worker job with `gpus` GPUs (0: a CPU job); returns its id.
    fn submit(&self, gpus: u32) -> Result<String, String>;
    /// Cancels these jobs if they are still pending.
    fn cancel_pending(&self, ids: &[String]) -> Result<(), String>;
    /// Cancels every pending job of this launcher (the coordinator shuts down).
    fn cancel_all_pending(&self) -> Result<(), String>;
}

/// A job as `ablate workers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// The engine's id.
    pub job_id: String,
    /// The engine's state name.
    pub state: String,
    /// Its node.
    pub node: String,
    /// The worker it became (id, name), once that registered.
    pub worker: Option<(String, String)>,
    /// GPUs asked for.
    pub gpus: u32,
    /// CPUs asked for (0: not known yet).
    pub cpus: u32,
    /// The engine's reason, or what went wrong.
    pub reason: String,
}

/// What the launcher last did and saw: shown by `ablate workers` and `ablate status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Board {
    /// The engine (`""`: no launcher).
    pub engine: String,
    /// Its jobs.
    pub jobs: Vec<JobView>,
    /// Run id → what the launcher does about the queued run.
    pub notes: BTreeMap<String, String>,
}

/// First pause after an engine command failed; it doubles up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: Millis = 10_000;
/// Longest pause after failures.
const MAX_BACKOFF_MS: Millis = 300_000;

/// A failure that holds submissions back for a while.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    until_ms: Millis,
    backoff_ms: Millis,
}

/// The launcher's memory between rounds.
#[derive(Debug)]
pub struct Launcher<E> {
    engine: E,
    limits: Limits,
    /// Jobs this launcher saw, and the worker each became (once registered).
    known: BTreeMap<String, Option<(String, String)>>,
    failure: Option<Failure>,
}

impl<E: Engine> Launcher<E> {
    /// A launcher that acts through `engine` within `limits`.
    pub fn new(engine: E, limits: Limits) -> Launcher<E> {
        Launcher {
            engine,
            limits,
            known: BTreeMap::new(),
            failure: None,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    fn fail(&mut self, message: String, now: Millis) {
        let backoff_ms = self
            .failure
            .as_ref()
            .map_or(FIRST_BACKOFF_MS, |f| (f.backoff_ms * 2).min(MAX_BACKOFF_MS));
        warn!(
            engine = self.engine.name(),
            "{message}; next try in {} s",
            backoff_ms / 1000
        );
        self.failure = Some(Failure {
            message,
            until_ms: now + backoff_ms,
            backoff_ms,
        });
    }

    /// One round at `now`: list the jobs, plan against `view`, cancel and submit.
    pub fn step(&mut self, view: &QueueView, now: Millis) -> Board {
        let engine = self.engine.name();
        let mut board = Board {
            engine: engine.to_string(),
            ..Board::default()
        };
        let jobs = match self.engine.list() {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(engine, "cannot list the jobs: {e}");
                for run in &view.queued {
                    board
                        .notes
                        .insert(run.id.clone(), format!("{engine}: cannot list jobs: {e}"));
                }
                return board;
            }
        };
        self.note_vanished(&jobs, now);
        let planned = self.phases(view, &jobs);
        let plan = plan::plan(view, &planned, self.limits, engine);
        board.notes = plan.notes;

        let mut cancelled: BTreeSet<String> = BTreeSet::new();
        if !plan.cancel.is_empty() {
            match self.engine.cancel_pending(&plan.cancel) {
                Ok(()) => {
                    info!(engine, jobs = ?plan.cancel, "cancelled pending jobs no queued run needs");
                    for id in &plan.cancel {
                        // Gone by our hand, not a failure (one that started meanwhile is
                        // listed, and known, again next round).
                        self.known.remove(id);
                    }
                    cancelled.extend(plan.cancel.iter().cloned());
                }
                Err(e) => warn!(engine, "{e}"),
            }
        }

        let mut submitted = Vec::new();
        let held_back = self
            .failure
            .as_ref()
            .filter(|f| now < f.until_ms)
            .map(|f| f.message.clone());
        let mut failed: Option<String> = held_back;
        for job in &plan.submit {
            if let Some(why) = &failed {
                for run in &job.runs {
                    board.notes.insert(
                        run.clone(),
                        format!("{engine}: no job submitted: {why} (retried later)"),
                    );
                }
                continue;
            }
            match self.engine.submit(job.gpus) {
                Ok(id) => {
                    info!(engine, job = %id, gpus = job.gpus, runs = ?job.runs, "submitted a worker job");
                    self.failure = None;
                    self.known.insert(id.clone(), None);
                    for run in &job.runs {
                        board
                            .notes
                            .insert(run.clone(), format!("{engine} job {id} submitted for it"));
                    }
                    submitted.push(JobView {
                        job_id: id,
                        state: "SUBMITTED".into(),
                        node: String::new(),
                        worker: None,
                        gpus: job.gpus,
                        cpus: 0,
                        reason: String::new(),
                    });
                }
                Err(e) => {
                    self.fail(e.clone(), now);
                    for run in &job.runs {
                        board.notes.insert(
                            run.clone(),
                            format!("{engine}: no job submitted: {e} (retried later)"),
                        );
                    }
                    failed = Some(e);
                }
            }
        }

        board.jobs = jobs
            .iter()
            .filter(|j| !cancelled.contains(&j.id))
            .map(|j| JobView {
                job_id: j.id.clone(),
                state: j.state_name.clone(),
                node: j.node.clone(),
                worker: self.known.get(&j.id).cloned().flatten(),
                gpus: j.gpus,
                cpus: j.cpus,
                reason: j.reason.clone(),
            })
            .chain(submitted)
            .collect();
        board
    }

    /// Jobs gone from the engine: forgotten; one that ended before its worker registered
    /// is a failure (a wrong binary path, an unreachable coordinator): it holds
    /// submissions back and says where its output is.
    fn note_vanished(&mut self, jobs: &[EngineJob], now: Millis) {
        let listed: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let gone: Vec<(String, bool)> = self
            .known
            .iter()
            .filter(|(id, _)| !listed.contains(id.as_str()))
            .map(|(id, worker)| (id.clone(), worker.is_some()))
            .collect();
        for (id, served) in gone {
            self.known.remove(&id);
            if !served {
                let log = self.engine.log_of(&id);
                self.fail(
                    format!(
                        "{} job {id} ended before its worker registered (its output: {log})",
                        self.engine.name()
                    ),
                    now,
                );
            }
        }
    }

    /// Each listed job's phase, matching jobs to the workers they became by name.
    fn phases(&mut self, view: &QueueView, jobs: &[EngineJob]) -> Vec<PlannedJob> {
        jobs.iter()
            .map(|job| {
                let name = self.engine.worker_name(&job.id);
                let worker = view.workers.iter().find(|w| w.name == name);
                let entry = self.known.entry(job.id.clone()).or_insert(None);
                if let Some(w) = worker {
                    *entry = Some((w.id.clone(), w.name.clone()));
                }
                let phase = match (job.state, worker, entry.is_some()) {
                    (EngineState::Ending, ..) => JobPhase::Ending,
                    (_, Some(_), _) => JobPhase::Serving,
                    // Its worker registered once and left: the job is about to end.
                    (_, None, true) => JobPhase::Ending,
                    (EngineState::Pending, None, false) => JobPhase::Pending,
                    (EngineState::Running, None, false) => JobPhase::Starting,
                };
                let shown = match job.state {
                    EngineState::Pending if job.reason.is_empty() => job.state_name.clone(),
                    EngineState::Pending => format!("{} ({})", job.state_name, job.reason),
                    _ => format!(
                        "{} on {} (its worker is starting)",
                        job.state_name, job.node
                    ),
                };
                PlannedJob {
                    id: job.id.clone(),
                    gpus: job.gpus,
                    phase,
                    counts: job.state != EngineState::Ending,
                    shown,
                }
            })
            .collect()
    }

    /// The coordinator shuts down: its pending jobs go (running ones leave when idle).
    pub fn shutdown(&self) {
        match self.engine.cancel_all_pending() {
            Ok(()) => info!(engine = self.engine.name(), "cancelled pending worker jobs"),
            Err(e) => warn!(engine = self.engine.name(), "{e}"),
        }
    }
}

/// How often the launcher looks at its jobs when nothing else happens.
pub const POLL: Duration = Duration::from_secs(3);

/// After a change of the coordinator's state, the launcher waits this long for more
/// before it acts (a submit queues many runs at once).
const SETTLE: Duration = Duration::from_millis(300);

/// Runs launcher rounds on `coord` until it closes, then cancels the pending jobs.
pub fn spawn<E: Engine>(
    coord: Arc<Coordinator>,
    launcher: Launcher<E>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut subscription = coord.subscribe();
        let mut launcher = launcher;
        loop {
            let c = coord.clone();
            let round = tokio::task::spawn_blocking(move || {
                let view = c.launcher_view();
                let board = launcher.step(&view, c.now());
                c.publish_launcher(board);
                launcher
            })
            .await;
            launcher = match round {
                Ok(l) => l,
                Err(e) => {
                    warn!("launcher round failed: {e}");
                    return;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                Ok(()) = subscription.changes.changed() => {
                    tokio::time::sleep(SETTLE).await;
                    subscription.changes.borrow_and_update();
                }
                // (Mapped to `()`: the watch guard it returns must not live across awaits.)
                _ = async { subscription.closing.wait_for(|c| *c).await.map(|_| ()) } => break,
            }
            if *subscription.closing.borrow() {
                break;
            }
        }
        let _ = tokio::task::spawn_blocking(move || launcher.shutdown()).await;
    })
}

/// The task that starts a launcher on a coordinator (the serving code calls it once it
/// has opened the state).
type StartFn = Box<dyn FnOnce(Arc<Coordinator>) -> tokio::task::JoinHandle<()> + Send>;

/// A launcher ready to start, as the server configuration carries it.
#[derive(Clone)]
pub struct LauncherStart(Arc<std::sync::Mutex<Option<StartFn>>>);

impl std::fmt::Debug for LauncherStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LauncherStart")
    }
}

impl LauncherStart {
    /// Wraps a launcher.
    pub fn new<E: Engine>(launcher: Launcher<E>) -> LauncherStart {
        let start: StartFn = Box::new(move |coord| spawn(coord, launcher));
        LauncherStart(Arc::new(std::sync::Mutex::new(Some(start))))
    }

    /// Starts it on `coord` (only the first call does).
    pub fn start(&self, coord: Arc<Coordinator>) -> Option<tokio::task::JoinHandle<()>> {
        let start = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(start(coord))
    }
}

#[cfg(test)]
mod tests;
