//! How many worker jobs to submit and which pending ones to cancel, from the queue, the
//! registered workers and the jobs already there. Pure: no engine, no clock.
//!
//! Queued runs are matched, in queue order, first against what connected workers have
//! free now, then against the jobs on their way (started jobs whose worker has not
//! registered yet, then pending jobs, oldest first). Runs left over get new jobs, one per
//! CPU run and GPU jobs sized by the runs' `gpus` (or packed into `--gpus-per-job`), as
//! many as `--max-jobs` leaves room for. A pending job that no queued run needs is
//! cancelled: the queue emptied, or an experiment was cancelled.

use std::collections::BTreeMap;

/// A queued run, as the launcher sizes jobs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    /// Run id.
    pub id: String,
    /// GPUs it needs (0: a CPU run).
    pub gpus: u32,
}

/// What a registered worker offers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSupply {
    /// Worker id.
    pub id: String,
    /// Worker name (a launched worker's name says which job it is).
    pub name: String,
    /// Heard from within the liveness window.
    pub connected: bool,
    /// Its `cpu` device is offered and free.
    pub cpu_free: bool,
    /// Its GPUs not under a lease.
    pub free_gpus: u32,
}

/// The coordinator's queue and workers, as the launcher sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Queued runs, in queue order.
    pub queued: Vec<QueuedRun>,
    /// Registered workers.
    pub workers: Vec<WorkerSupply>,
}

/// Where a job is on its way to serving runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    /// Waiting in the engine's queue.
    Pending,
    /// Started; its worker has not registered yet.
    Starting,
    /// Its worker registered: what it has free counts through the worker.
    Serving,
    /// Its worker left, or the engine is ending it.
    Ending,
}

/// A job of this launcher, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    /// The engine's id.
    pub id: String,
    /// GPUs it asked for (0: a CPU job).
    pub gpus: u32,
    /// Its phase.
    pub phase: JobPhase,
    /// Whether it counts against `--max-jobs` (pending or running in the engine).
    pub counts: bool,
    /// How to say where it is ("PENDING (Resources)", "RUNNING on node1").
    pub shown: String,
}

/// The launcher's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Jobs pending or running at most.
    pub max_jobs: u32,
    /// GPUs of every GPU job (`None`: each job as many as its run needs).
    pub gpus_per_job: Option<u32>,
}

/// A job to submit, and the runs it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// GPUs (0: a CPU job).
    pub gpus: u32,
    /// The queued runs it is meant for.
    pub runs: Vec<String>,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Jobs to submit, most urgent first.
    pub submit: Vec<NewJob>,
    /// Pending jobs no queued run needs.
    pub cancel: Vec<String>,
    /// Run id → what the launcher does about it (added to its pending reason).
    pub notes: BTreeMap<String, String>,
}

/// Plans jobs for `view` given the jobs already there (`engine` names the engine in notes).
pub fn plan(view: &QueueView, jobs: &[PlannedJob], limits: Limits, engine: &str) -> Plan {
    let mut out = Plan::default();
    let unplaced = beyond_free_workers(view);

    // Jobs on their way: started ones first, then pending ones, oldest first.
    let mut incoming: Vec<(&PlannedJob, u32, bool)> = jobs
        .iter()
        .filter(|j| matches!(j.phase, JobPhase::Starting | JobPhase::Pending))
        .map(|j| (j, j.gpus, false))
        .collect();
    incoming.sort_by_key(|(j, ..)| (j.phase != JobPhase::Starting, job_order(&j.id)));
    let mut uncovered: Vec<&QueuedRun> = Vec::new();
    for run in unplaced {
        let slot = incoming.iter_mut().find(|(job, left, used)| {
            if run.gpus == 0 {
                job.gpus == 0 && !*used
            } else {
                job.gpus > 0 && *left >= run.gpus
            }
        });
        match slot {
            Some((job, left, used)) => {
                *used = true;
                *left = left.saturating_sub(run.gpus);
                out.notes.insert(
                    run.id.clone(),
                    format!("{engine} job {} is {} for it", job.id, job.shown),
                );
            }
            None => uncovered.push(run),
        }
    }
    out.cancel = incoming
        .iter()
        .filter(|(job, _, used)| job.phase == JobPhase::Pending && !used)
        .map(|(job, ..)| job.id.clone())
        .collect();

    let bins = pack(&uncovered, limits.gpus_per_job, engine, &mut out.notes);
    let active = jobs.iter().filter(|j| j.counts).count() as u32;
    let cancelled = out.cancel.len() as u32;
    let mut room = limits
        .max_jobs
        .saturating_sub(active.saturating_sub(cancelled));
    for bin in bins {
        if room == 0 {
            for run in &bin.runs {
                out.notes.insert(
                    run.clone(),
                    format!(
                        "{engine}: --max-jobs {} reached (jobs pending or running); another \
                         job is submitted when one ends",
                        limits.max_jobs
                    ),
                );
            }
            continue;
        }
        room -= 1;
        out.submit.push(bin);
    }
    out
}

/// Queued runs that what connected workers have free cannot take now, in queue order.
fn beyond_free_workers(view: &QueueView) -> Vec<&QueuedRun> {
    let mut cpu_slots = view
        .workers
        .iter()
        .filter(|w| w.connected && w.cpu_free)
        .count();
    let mut holes: Vec<u32> = view
        .workers
        .iter()
        .filter(|w| w.connected && w.free_gpus > 0)
        .map(|w| w.free_gpus)
        .collect();
    let mut left = Vec::new();
    for run in &view.queued {
        if run.gpus == 0 {
            if cpu_slots > 0 {
                cpu_slots -= 1;
                continue;
            }
        } else if let Some(hole) = holes
            .iter_mut()
            .filter(|h| **h >= run.gpus)
            .min_by_key(|h| **h)
        {
            *hole -= run.gpus;
            continue;
        }
        left.push(run);
    }
    left
}

/// New jobs for runs no job covers: one per CPU run; GPU runs one job each, or packed
/// first-fit into jobs of `gpus_per_job` GPUs (a run larger than that gets a note).
fn pack(
    runs: &[&QueuedRun],
    gpus_per_job: Option<u32>,
    engine: &str,
    notes: &mut BTreeMap<String, String>,
) -> Vec<NewJob> {
    let mut bins: Vec<(NewJob, u32)> = Vec::new();
    for run in runs {
        match (run.gpus, gpus_per_job) {
            (0, _) => bins.push((
                NewJob {
                    gpus: 0,
                    runs: vec![run.id.clone()],
                },
                0,
            )),
            (g, None) => bins.push((
                NewJob {
                    gpus: g,
                    runs: vec![run.id.clone()],
                },
                0,
            )),
            (g, Some(size)) if g > size => {
                notes.insert(
                    run.id.clone(),
                    format!(
                        "{engine}: needs {g} GPUs on one worker; launched jobs get {size} \
                         (--gpus-per-job)"
                    ),
                );
            }
            (g, Some(size)) => {
                match bins
                    .iter_mut()
                    .find(|(job, left)| job.gpus > 0 && *left >= g)
                {
                    Some((job, left)) => {
                        job.runs.push(run.id.clone());
                        *left -= g;
                    }
                    None => bins.push((
                        NewJob {
                            gpus: size,
                            runs: vec![run.id.clone()],
                        },
                        size - g,
                    )),
                }
            }
        }
    }
    bins.into_iter().map(|(job, _)| job).collect()
}

/// Engines number their jobs: older first (by number, then by text).
fn job_order(id: &str) -> (u64, String) {
    let number = id
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    (number, id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(gpus: &[u32]) -> Vec<QueuedRun> {
        gpus.iter()
            .enumerate()
            .map(|(i, g)| QueuedRun {
                id: format!("r{i}"),
                gpus: *g,
            })
            .collect()
    }

    fn view(gpus: &[u32]) -> QueueView {
        QueueView {
            queued: queued(gpus),
            workers: Vec::new(),
        }
    }

    fn job(id: &str, gpus: u32, phase: JobPhase) -> PlannedJob {
        PlannedJob {
            id: id.to_string(),
            gpus,
            phase,
            counts: phase != JobPhase::Ending,
            shown: match phase {
                JobPhase::Pending => "PENDING (Resources)".into(),
                _ => "RUNNING on n1".into(),
            },
        }
    }

    const FOUR: Limits = Limits {
        max_jobs: 4,
        gpus_per_job: None,
    };

    fn sizes(plan: &Plan) -> Vec<u32> {
        plan.submit.iter().map(|j| j.gpus).collect()
    }

    #[test]
    fn jobs_are_sized_from_the_runs_gpus() {
        let p = plan(&view(&[0, 2, 1, 0]), &[], FOUR, "slurm");
        assert_eq!(sizes(&p), vec![0, 2, 1, 0]);
        assert_eq!(p.submit[1].runs, vec!["r1".to_string()]);
        assert!(p.cancel.is_empty() && p.notes.is_empty());
    }

    #[test]
    fn gpus_per_job_packs_runs_and_names_runs_too_large() {
        let limits = Limits {
            max_jobs: 4,
            gpus_per_job: Some(4),
        };
        let p = plan(&view(&[1, 2, 8, 1, 3, 0]), &[], limits, "slurm");
        assert_eq!(sizes(&p), vec![4, 4, 0]);
        assert_eq!(p.submit[0].runs, vec!["r0", "r1", "r3"]);
        assert_eq!(p.submit[1].runs, vec!["r4"]);
        assert_eq!(
            p.notes["r2"],
            "slurm: needs 8 GPUs on one worker; launched jobs get 4 (--gpus-per-job)"
        );
    }

    #[test]
    fn free_workers_and_jobs_on_their_way_are_counted_first() {
        let mut v = view(&[0, 0, 0, 1, 2]);
        v.workers = vec![
            WorkerSupply {
                id: "w1".into(),
                name: "laptop".into(),
                connected: true,
                cpu_free: true,
                free_gpus: 1,
            },
            WorkerSupply {
                id: "w2".into(),
                name: "gone".into(),
                connected: false,
                cpu_free: true,
                free_gpus: 8,
            },
        ];
        let jobs = [
            job("12", 0, JobPhase::Pending),
            job("11", 2, JobPhase::Starting),
        ];
        let p = plan(&v, &jobs, FOUR, "slurm");
        // r0 → w1's CPU, r3 → w1's GPU, r1 → job 12, r4 → job 11; r2 needs a new job.
        assert_eq!(sizes(&p), vec![0]);
        assert_eq!(p.submit[0].runs, vec!["r2"]);
        assert_eq!(p.notes["r1"], "slurm job 12 is PENDING (Resources) for it");
        assert_eq!(p.notes["r4"], "slurm job 11 is RUNNING on n1 for it");
        assert!(!p.notes.contains_key("r0") && !p.notes.contains_key("r3"));
    }

    #[test]
    fn max_jobs_caps_pending_and_running_jobs() {
        let limits = Limits {
            max_jobs: 3,
            gpus_per_job: None,
        };
        let jobs = [
            job("1", 0, JobPhase::Serving),
            job("2", 0, JobPhase::Ending),
        ];
        let mut jobs = jobs.to_vec();
        jobs[1].counts = false;
        let p = plan(&view(&[0, 0, 0, 0]), &jobs, limits, "slurm");
        assert_eq!(sizes(&p), vec![0, 0], "one of 3 is running: room for 2");
        assert_eq!(
            p.notes["r2"],
            "slurm: --max-jobs 3 reached (jobs pending or running); another job is submitted \
             when one ends"
        );
        assert!(p.notes.contains_key("r3"));
        // At the cap, nothing more.
        let full = [
            job("1", 0, JobPhase::Serving),
            job("3", 0, JobPhase::Starting),
            job("4", 0, JobPhase::Starting),
        ];
        let p = plan(&view(&[0, 0, 0, 0]), &full, limits, "slurm");
        assert!(p.submit.is_empty());
        assert_eq!(
            p.notes.len(),
            4,
            "two ride on the starting jobs, two wait for the cap"
        );
    }

    #[test]
    fn pending_jobs_no_run_needs_are_cancelled_the_oldest_kept() {
        let jobs = [
            job("7", 0, JobPhase::Pending),
            job("9", 0, JobPhase::Pending),
            job("8", 1, JobPhase::Pending),
            job("6", 0, JobPhase::Starting),
            job("5", 0, JobPhase::Serving),
        ];
        // The queue emptied: every pending job goes; started ones stay (they leave when idle).
        let p = plan(&view(&[]), &jobs, FOUR, "slurm");
        assert_eq!(p.cancel, vec!["7", "8", "9"]);
        assert!(p.submit.is_empty());
        // Two CPU runs left: the starting job and the oldest pending CPU job take them.
        let p = plan(&view(&[0, 0]), &jobs, FOUR, "slurm");
        assert_eq!(p.cancel, vec!["8", "9"]);
        assert!(p.submit.is_empty());
    }

    #[test]
    fn cancelled_jobs_make_room_under_the_cap() {
        let limits = Limits {
            max_jobs: 1,
            gpus_per_job: None,
        };
        // A pending CPU job, but the queue now holds a GPU run: the CPU job goes, and the
        // GPU job takes its place under the cap.
        let p = plan(
            &view(&[1]),
            &[job("3", 0, JobPhase::Pending)],
            limits,
            "slurm",
        );
        assert_eq!(p.cancel, vec!["3"]);
        assert_eq!(sizes(&p), vec![1]);
    }
}
