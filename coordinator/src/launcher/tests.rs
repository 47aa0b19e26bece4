//! The launcher's rounds against a recorded Slurm: what it submits, cancels and says.

use std::sync::{Arc, Mutex};

use super::runner::{CommandOutput, CommandRunner};
use super::slurm::SlurmEngine;
use super::*;

/// A scripted stand-in for `sbatch`, `squeue` and `scancel`: it keeps a job list, and
/// `sbatch` fails with `refuse` while that is set.
#[derive(Debug, Clone, Default)]
struct Recorded(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    /// (id, state, gpus)
    jobs: Vec<(u32, &'static str, u32)>,
    next: u32,
    refuse: Option<&'static str>,
    commands: Vec<String>,
}

impl CommandRunner for Recorded {
    fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<CommandOutput, String> {
        let mut s = self.0.lock().unwrap();
        s.commands.push(format!("{program} {}", args.join(" ")));
        let ok = |stdout: String| CommandOutput {
            success: true,
            stdout,
            stderr: String::new(),
        };
        match program {
            "squeue" => Ok(ok(s
                .jobs
                .iter()
                .map(|(id, state, gpus)| {
                    let node = if *state == "PENDING" { "" } else { "n1" };
                    let reason = if *state == "PENDING" {
                        "Resources"
                    } else {
                        "None"
                    };
                    format!("{id}|{state}|{node}|{reason}|2|ablate:gpus={gpus}\n")
                })
                .collect())),
            "sbatch" => {
                if let Some(error) = s.refuse {
                    return Ok(CommandOutput {
                        success: false,
                        stdout: String::new(),
                        stderr: format!("{error}\n"),
                    });
                }
                let script = stdin.unwrap();
                let gpus = script
                    .lines()
                    .find_map(|l| l.strip_prefix("#SBATCH --comment=ablate:gpus="))
                    .unwrap()
                    .parse()
                    .unwrap();
                s.next += 1;
                let id = 100 + s.next;
                s.jobs.push((id, "PENDING", gpus));
                Ok(ok(format!("{id}\n")))
            }
            "scancel" => {
                assert_eq!(
                    args[0], "--state=PENDING",
                    "only pending jobs are cancelled"
                );
                let ids: Vec<u32> = args[1..].iter().map(|a| a.parse().unwrap()).collect();
                s.jobs
                    .retain(|(id, state, _)| !(ids.contains(id) && *state == "PENDING"));
                Ok(ok(String::new()))
            }
            other => Err(format!("unexpected command {other}")),
        }
    }
}

impl Recorded {
    fn start(&self, id: u32) {
        let mut s = self.0.lock().unwrap();
        for job in s.jobs.iter_mut().filter(|j| j.0 == id) {
            job.1 = "RUNNING";
        }
    }

    fn end(&self, id: u32) {
        self.0.lock().unwrap().jobs.retain(|j| j.0 != id);
    }

    fn jobs(&self) -> Vec<(u32, &'static str, u32)> {
        self.0.lock().unwrap().jobs.clone()
    }

    fn sbatch_calls(&self) -> usize {
        let s = self.0.lock().unwrap();
        s.commands
            .iter()
            .filter(|c| c.starts_with("sbatch"))
            .count()
    }
}

fn launcher(max_jobs: u32) -> (Launcher<SlurmEngine<Recorded>>, Recorded) {
    let runner = Recorded::default();
    let engine = SlurmEngine::new(slurm::tests::config(), runner.clone());
    let limits = Limits {
        max_jobs,
        gpus_per_job: None,
    };
    (Launcher::new(engine, limits), runner)
}

fn queue(gpus: &[u32]) -> QueueView {
    QueueView {
        queued: gpus
            .iter()
            .enumerate()
            .map(|(i, g)| QueuedRun {
                id: format!("r{i}"),
                gpus: *g,
            })
            .collect(),
        workers: Vec::new(),
    }
}

fn worker_of(job: u32) -> WorkerSupply {
    WorkerSupply {
        id: format!("w-slurm-{job}-0000abcd"),
        name: format!("slurm-{job}"),
        connected: true,
        cpu_free: false,
        free_gpus: 0,
    }
}

#[test]
fn submits_up_to_max_jobs_and_says_why_the_rest_waits() {
    let (mut l, slurm) = launcher(2);
    let board = l.step(&queue(&[1, 1, 2]), 0);
    assert_eq!(slurm.jobs(), vec![(101, "PENDING", 1), (102, "PENDING", 1)]);
    assert_eq!(board.notes["r0"], "slurm job 101 submitted for it");
    assert!(
        board.notes["r2"].starts_with("slurm: --max-jobs 2 reached"),
        "{}",
        board.notes["r2"]
    );
    // The next round sees them pending and submits nothing more.
    let board = l.step(&queue(&[1, 1, 2]), 1_000);
    assert_eq!(slurm.sbatch_calls(), 2);
    assert_eq!(
        board.notes["r1"],
        "slurm job 102 is PENDING (Resources) for it"
    );
    let shown: Vec<_> = board
        .jobs
        .iter()
        .map(|j| (j.job_id.as_str(), j.state.as_str()))
        .collect();
    assert_eq!(shown, vec![("101", "PENDING"), ("102", "PENDING")]);
}

#[test]
fn jobs_are_matched_to_the_workers_they_became_and_ended_jobs_make_room() {
    let (mut l, slurm) = launcher(1);
    l.step(&queue(&[0, 0]), 0);
    slurm.start(101);
    // Its worker registered and took r0; r1 waits for the cap.
    let mut view = queue(&[0]);
    view.queued[0].id = "r1".into();
    view.workers.push(worker_of(101));
    let board = l.step(&view, 1_000);
    assert_eq!(
        board.jobs[0].worker,
        Some(("w-slurm-101-0000abcd".to_string(), "slurm-101".to_string()))
    );
    assert!(board.notes["r1"].contains("--max-jobs 1 reached"));
    // The job is preempted: its worker gives r0 back and leaves; the job ends.
    slurm.end(101);
    let board = l.step(&queue(&[0, 0]), 2_000);
    assert_eq!(slurm.jobs(), vec![(102, "PENDING", 0)]);
    assert_eq!(board.notes["r0"], "slurm job 102 submitted for it");
}

#[test]
fn pending_jobs_are_cancelled_when_the_queue_empties() {
    let (mut l, slurm) = launcher(4);
    l.step(&queue(&[0, 0, 1]), 0);
    slurm.start(101);
    // The experiment was cancelled: nothing is queued any more.
    let board = l.step(&queue(&[]), 1_000);
    assert_eq!(
        slurm.jobs(),
        vec![(101, "RUNNING", 0)],
        "pending jobs cancelled, the started one stays (its worker leaves when idle)"
    );
    let shown: Vec<&str> = board.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(shown, vec!["101"]);
}

#[test]
fn an_sbatch_failure_is_a_pending_reason_and_is_retried_after_a_pause() {
    let (mut l, slurm) = launcher(4);
    slurm.0.lock().unwrap().refuse =
        Some("sbatch: error: Batch job submission failed: Invalid partition name specified");
    let board = l.step(&queue(&[0, 1]), 0);
    let expected = "slurm: no job submitted: sbatch failed: sbatch: error: Batch job \
                    submission failed: Invalid partition name specified (retried later)";
    assert_eq!(board.notes["r0"], expected);
    assert_eq!(
        board.notes["r1"], expected,
        "the second job is not even tried"
    );
    assert_eq!(slurm.sbatch_calls(), 1);
    // Within the pause: no new try, the reason stays.
    let board = l.step(&queue(&[0, 1]), 5_000);
    assert_eq!(
        (slurm.sbatch_calls(), board.notes["r0"].as_str()),
        (1, expected)
    );
    // After it, with the partition fixed: both jobs go in.
    slurm.0.lock().unwrap().refuse = None;
    let board = l.step(&queue(&[0, 1]), FIRST_BACKOFF_MS);
    assert_eq!(slurm.jobs(), vec![(101, "PENDING", 0), (102, "PENDING", 1)]);
    assert_eq!(board.notes["r1"], "slurm job 102 submitted for it");
}

#[test]
fn a_job_that_ends_before_its_worker_registers_holds_submissions_back() {
    let (mut l, slurm) = launcher(4);
    l.step(&queue(&[0]), 0);
    slurm.start(101);
    l.step(&queue(&[0]), 1_000);
    slurm.end(101); // e.g. a wrong --worker-bin: the job failed at once
    let board = l.step(&queue(&[0]), 2_000);
    assert_eq!(slurm.sbatch_calls(), 1, "no new job right away");
    assert_eq!(
        board.notes["r0"],
        "slurm: no job submitted: slurm job 101 ended before its worker registered (its \
         output: /shared/ablate/slurm/logs/slurm-101.out) (retried later)"
    );
}
