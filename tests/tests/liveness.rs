//! Liveness is not progress: a worker keeps its lease while it is busy with work that
//! outlasts the lease TTL (slow dataset preparation, slow checkpoint upload, long
//! evaluation); a step that hangs is noticed by the stall watchdog and re-queued; a cancel
//! reaches an attempt in the middle of a long evaluation. The slow parts are the worker's
//! test-only throttles (`ABLATE_TEST_*`), so each moment happens by construction.

use std::time::{Duration, Instant};

use ablate_common::proto::{ExperimentStatus, RunState};
use ablate_tests::{lenet_grid, Cluster};

const MINUTES: Duration = Duration::from_secs(60);

fn submit(cluster: &Cluster, file: &str, grid: &str) {
    let path = cluster.write(file, grid);
    let out = cluster.cli(&["submit", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "submit failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn all_terminal(s: &ExperimentStatus) -> bool {
    !s.runs.is_empty()
        && s.runs.iter().all(|r| {
            matches!(
                r.state(),
                RunState::Finished | RunState::Failed | RunState::Cancelled
            )
        })
}

/// Waits until worker `index`'s log has a line containing `text`.
fn wait_for_log(cluster: &Cluster, index: usize, text: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let log = cluster.workers[index].as_ref().unwrap().log_text();
        if log.contains(text) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("worker{index} never logged `{text}`:\n{}", cluster.logs());
}

#[test]
fn a_run_outlasting_its_lease_ttl_in_preparation_upload_and_eval_finishes_first_time() {
    // A 2 s lease; the worker spends 5 s preparing the data, 3 s sending each checkpoint
    // chunk and 1 s after each of the 8 evaluation batches, so epoch 1's upload (3 s) is
    // done while epoch 2 evaluates (8 s).
    let mut cluster = Cluster::new(2);
    cluster.start_coordinator();
    cluster.start_worker_with_env(&[
        ("ABLATE_TEST_PREPARE_DELAY_MS", "5000"),
        ("ABLATE_TEST_UPLOAD_CHUNK_DELAY_MS", "3000"),
        ("ABLATE_TEST_EVAL_BATCH_DELAY_MS", "1000"),
    ]);
    submit(&cluster, "slow.toml", &lenet_grid("slow", 2, 256, &[1]));
    let status = cluster.wait_for("slow", 3 * MINUTES, "the run to finish", all_terminal);
    let run = &status.runs[0];
    assert_eq!(
        run.state(),
        RunState::Finished,
        "{run:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        run.attempt,
        1,
        "the lease should never have expired:\n{}",
        cluster.logs()
    );
    assert!(
        run.checkpoint_bytes > 0 && run.checkpoint_epoch == 1,
        "epoch 1's checkpoint should be stored and its size shown: {run:?}"
    );
    let worker = cluster.workers[0].as_ref().unwrap().log_text();
    assert!(
        worker.contains("test throttle: preparing the data takes"),
        "{worker}"
    );
    assert!(
        worker.contains("uploaded checkpoint of epoch 1"),
        "{worker}"
    );
    assert!(!worker.contains("fenced off"), "{worker}");
    let coordinator = cluster.coordinator.as_ref().unwrap().log_text();
    assert!(!coordinator.contains("expired"), "{coordinator}");
}

#[test]
fn a_hung_step_is_reported_stalled_and_the_run_requeued() {
    let mut cluster = Cluster::new(5);
    cluster.start_coordinator();
    // Step 2 of the first attempt hangs until the attempt is stopped.
    cluster.start_worker_with_env(&[("ABLATE_TEST_HANG_AT_STEP", "2")]);
    let grid = lenet_grid("hang", 1, 256, &[1]).replace(
        "max_attempts = 3\n",
        "max_attempts = 3\nstall_timeout = \"3s\"\n",
    );
    submit(&cluster, "hang.toml", &grid);
    let status = cluster.wait_for("hang", 3 * MINUTES, "the retry to finish", all_terminal);
    let run = &status.runs[0];
    assert_eq!(
        run.state(),
        RunState::Finished,
        "{run:?}\n{}",
        cluster.logs()
    );
    assert_eq!(run.attempt, 2, "re-queued once after the stall: {run:?}");
    let reason = "stalled: no training progress for 3 s (stall_timeout) at epoch 1 step 2";
    let coordinator = cluster.coordinator.as_ref().unwrap().log_text();
    assert!(
        coordinator.contains(reason),
        "the coordinator should log why attempt 1 ended:\n{coordinator}"
    );
    let worker = cluster.workers[0].as_ref().unwrap().log_text();
    assert!(worker.contains(reason), "{worker}");
}

#[test]
fn cancel_reaches_a_run_in_the_middle_of_a_long_evaluation() {
    let mut cluster = Cluster::new(5);
    cluster.start_coordinator();
    // 8 evaluation batches, 3 s each: the evaluation lasts 24 s unless stopped.
    cluster.start_worker_with_env(&[("ABLATE_TEST_EVAL_BATCH_DELAY_MS", "3000")]);
    submit(&cluster, "eval.toml", &lenet_grid("eval", 2, 256, &[1]));
    wait_for_log(&cluster, 0, "evaluating epoch 1", 2 * MINUTES);
    let asked = Instant::now();
    let out = cluster.cli(&["cancel", "eval"]);
    assert!(out.status.success());
    let status = cluster.wait_for("eval", MINUTES, "the cancellation", all_terminal);
    assert_eq!(
        status.runs[0].state(),
        RunState::Cancelled,
        "{:?}",
        status.runs[0]
    );
    wait_for_log(
        &cluster,
        0,
        "releasing run: cancelled",
        Duration::from_secs(10),
    );
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "the cancel took {took:?} to reach the evaluation (it had ~21 s left)"
    );
}
