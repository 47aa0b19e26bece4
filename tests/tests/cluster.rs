//! The product, end to end: real coordinator and worker processes on loopback, killed
//! mid-grid, and what the user sees afterwards.

use std::collections::BTreeSet;
use std::time::Duration;

use ablate_common::proto::{AcquireRequest, ExperimentStatus, ProgressRequest, RunState};
use ablate_tests::{lenet_grid, Cluster, RawWorker};
use serde_json::Value;

const MINUTES: Duration = Duration::from_secs(60);

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn submit(cluster: &Cluster, file: &str, grid: &str) {
    let path = cluster.write(file, grid);
    let out = cluster.cli(&["submit", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "submit failed: {}{}",
        stdout(&out),
        stderr(&out)
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

fn report_json(cluster: &Cluster, experiment: &str) -> Value {
    let out = cluster.cli(&["report", experiment, "--format", "json"]);
    assert!(out.status.success(), "report failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("report.json does not parse: {e}\n{}", stdout(&out)))
}

/// Each run appears once, finished, with epochs 1..=n each exactly once.
fn assert_complete(report: &Value, runs: usize, epochs: u64) {
    let list = report["runs"].as_array().expect("runs array");
    assert_eq!(list.len(), runs, "{report:#}");
    let ids: BTreeSet<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), runs, "a run appears twice");
    for run in list {
        assert_eq!(run["state"], "finished", "{run:#}");
        let numbers: Vec<u64> = run["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(
            numbers,
            (1..=epochs).collect::<Vec<_>>(),
            "run {}: epochs {numbers:?}",
            run["name"]
        );
        let acc = run["best_eval_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
}

#[test]
fn grid_completes_on_two_workers() {
    let mut cluster = Cluster::new(5);
    cluster.start_coordinator();
    cluster.start_worker();
    cluster.start_worker();
    submit(
        &cluster,
        "grid.toml",
        &lenet_grid("four", 2, 256, &[1, 2, 3, 4]),
    );
    cluster.wait_for("four", 5 * MINUTES, "the grid to finish", all_terminal);
    for worker in cluster.workers.iter().flatten() {
        assert!(
            worker.log_text().contains("run completed"),
            "both workers should have trained:\n{}",
            cluster.logs()
        );
    }
    let report = report_json(&cluster, "four");
    assert_complete(&report, 4, 2);
    assert_eq!(report["experiment"]["name"], "four");
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(run["attempts"], 1);
        assert_eq!(run["model"], "lenet");
    }
}

#[test]
fn killed_worker_run_resumes_on_the_other_worker() {
    let mut cluster = Cluster::new(3);
    cluster.start_coordinator();
    // Worker 0 runs with the test hold: after each epoch its training waits while
    // `hold/hold` exists, so the kill lands mid-run by construction, after epoch 1 and
    // with epochs left to do, however fast or slow the machine is.
    let hold = tempfile::tempdir().unwrap();
    std::fs::write(hold.path().join("hold"), b"").unwrap();
    cluster.start_worker_with_env(&[("ABLATE_TEST_HOLD_DIR", hold.path().to_str().unwrap())]);
    submit(&cluster, "grid.toml", &lenet_grid("survive", 3, 256, &[1]));
    // Held after epoch 1, whose checkpoint upload goes on during the hold: wait for the
    // coordinator to store it.
    cluster.wait_for(
        "survive",
        3 * MINUTES,
        "epoch 1 and its checkpoint stored",
        |s| {
            s.runs
                .iter()
                .any(|r| r.state() == RunState::Running && r.checkpoint_epoch >= 1)
        },
    );
    assert!(
        cluster.workers[0]
            .as_ref()
            .unwrap()
            .log_text()
            .contains("test hold: waiting"),
        "worker0 should be held after epoch 1:\n{}",
        cluster.logs()
    );
    cluster.kill_worker(0);
    // Worker 1 runs without the hold.
    cluster.start_worker();
    let status = cluster.wait_for(
        "survive",
        5 * MINUTES,
        "the run to finish elsewhere",
        all_terminal,
    );
    let run = &status.runs[0];
    assert_eq!(run.state(), RunState::Finished, "{run:?}");
    assert_eq!(run.attempt, 2, "the run should have been retried once");
    assert!(
        cluster.worker_completed(1, &run.id),
        "worker1 should have finished it:\n{}",
        cluster.logs()
    );
    let report = report_json(&cluster, "survive");
    assert_complete(&report, 1, 3);
    assert_eq!(report["runs"][0]["attempts"], 2);
    // Attempt 2 resumed from the checkpoint instead of starting over.
    let log = cluster.workers[1].as_ref().unwrap().log_text();
    let resumed = log
        .lines()
        .find(|l| l.contains(&format!("resuming run {} after epoch", run.id)))
        .unwrap_or_else(|| panic!("no resume in:\n{log}"));
    let epoch: u32 = resumed
        .rsplit("after epoch ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(epoch, 1, "{resumed}");
}

#[test]
fn coordinator_killed_mid_grid_loses_nothing() {
    let mut cluster = Cluster::new(10);
    cluster.start_coordinator();
    // Both workers hold their first run after epoch 1 (the test hold), so the coordinator
    // dies while two runs are mid-way by construction; the hold is lifted after the
    // restart.
    let hold = tempfile::tempdir().unwrap();
    std::fs::write(hold.path().join("hold"), b"").unwrap();
    let env = [("ABLATE_TEST_HOLD_DIR", hold.path().to_str().unwrap())];
    cluster.start_worker_with_env(&env);
    cluster.start_worker_with_env(&env);
    submit(
        &cluster,
        "grid.toml",
        &lenet_grid("restart", 4, 512, &[1, 2, 3, 4]),
    );
    let held = |c: &Cluster| {
        c.workers
            .iter()
            .flatten()
            .all(|w| w.log_text().contains("test hold: waiting"))
    };
    let before = cluster.wait_for("restart", 3 * MINUTES, "two runs held after epoch 1", |s| {
        s.runs
            .iter()
            .filter(|r| r.state() == RunState::Running && r.best_eval_acc.is_some())
            .count()
            == 2
            && held(&cluster)
    });
    cluster.kill_coordinator();
    std::thread::sleep(Duration::from_secs(2));
    cluster.start_coordinator();
    std::fs::remove_file(hold.path().join("hold")).unwrap();
    let after = cluster.wait_for(
        "restart",
        5 * MINUTES,
        "the grid to finish after the restart",
        all_terminal,
    );
    // Runs that were running kept their worker and attempt.
    for r in before
        .runs
        .iter()
        .filter(|r| r.state() == RunState::Running)
    {
        let same = after.runs.iter().find(|a| a.id == r.id).unwrap();
        assert_eq!(same.attempt, 1, "run {} was re-run", r.name);
        let index: usize = if r.worker.contains("worker0") { 0 } else { 1 };
        assert!(
            cluster.worker_completed(index, &r.id),
            "run {} changed worker:\n{}",
            r.name,
            cluster.logs()
        );
    }
    let report = report_json(&cluster, "restart");
    assert_complete(&report, 4, 4);
}

#[test]
fn cancel_stops_runs_and_frees_the_worker() {
    let mut cluster = Cluster::new(5);
    cluster.start_coordinator();
    cluster.start_worker();
    submit(
        &cluster,
        "long.toml",
        &lenet_grid("long", 50, 2048, &[1, 2]),
    );
    cluster.wait_for("long", 2 * MINUTES, "a running run", |s| {
        s.runs.iter().any(|r| r.state() == RunState::Running)
    });
    let out = cluster.cli(&["cancel", "long"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = cluster.wait_for("long", MINUTES, "the cancellation", all_terminal);
    assert!(
        status.runs.iter().all(|r| r.state() == RunState::Cancelled),
        "{status:?}"
    );
    // The worker is free again: a new grid runs to the end.
    submit(&cluster, "after.toml", &lenet_grid("after", 1, 128, &[1]));
    cluster.wait_for("after", 2 * MINUTES, "the next grid", |s| {
        all_terminal(s) && s.runs[0].state() == RunState::Finished
    });
}

/// Registered workers, from `ablate workers --json`.
fn listed_workers(cluster: &Cluster) -> Vec<Value> {
    let out = cluster.cli(&["workers", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    json["workers"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_worker_idle_for_exit_when_idle_leaves_and_one_stopped_leaves_too() {
    let mut cluster = Cluster::new(5);
    cluster.start_coordinator();
    let idle = cluster.start_worker_with_args(&["--exit-when-idle", "2s"], &[]);
    // It trains a run first (the only worker): its idle time counts from the run's end.
    submit(&cluster, "one.toml", &lenet_grid("one", 1, 128, &[1]));
    let status = cluster.wait_for("one", 2 * MINUTES, "the run", all_terminal);
    assert_eq!(status.runs[0].state(), RunState::Finished, "{status:?}");
    let exit = cluster.workers[idle]
        .as_mut()
        .unwrap()
        .wait_exit(MINUTES)
        .expect("the idle worker exits by itself");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        listed_workers(&cluster).is_empty(),
        "the idle worker deregistered"
    );
    let log = cluster.coordinator.as_ref().unwrap().log_text();
    assert!(log.contains("left: idle for 2s"), "{log}");
    // A worker stopped with SIGTERM leaves too.
    let stays = cluster.start_worker();
    let deadline = std::time::Instant::now() + MINUTES;
    while listed_workers(&cluster).is_empty() {
        assert!(std::time::Instant::now() < deadline, "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = cluster.workers[stays]
        .as_mut()
        .unwrap()
        .terminate(MINUTES)
        .expect("the worker stops on SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        listed_workers(&cluster).is_empty(),
        "{:?}",
        listed_workers(&cluster)
    );
}

#[test]
fn bad_grid_and_wrong_token_are_refused_with_clear_errors() {
    let mut cluster = Cluster::new(5);
    cluster.start_coordinator();
    let bad = cluster.write(
        "bad.toml",
        "name = \"bad\"\n[base]\nmodel = \"lenet\"\nepochz = 3\n",
    );
    let out = cluster.cli(&["submit", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad.toml:4:1"),
        "expected a file:line:col error, got: {err}"
    );
    assert!(err.contains("epochz"), "{err}");

    let out = std::process::Command::new(ablate_tests::binary("ablate"))
        .args(["status", "--coordinator", &cluster.url()])
        .env("ABLATE_TOKEN", "wrong-token")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong token must be refused");
    assert!(
        stderr(&out).to_lowercase().contains("unauthenticated")
            || stderr(&out).to_lowercase().contains("token"),
        "{}",
        stderr(&out)
    );
    // The coordinator keeps serving after both.
    let ok = cluster.cli(&["status"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// A worker whose lease expired is fenced off: its late progress is refused.
#[test]
fn stale_attempt_progress_is_refused() {
    let mut cluster = Cluster::new(2);
    cluster.start_coordinator();
    submit(&cluster, "grid.toml", &lenet_grid("fenced", 1, 128, &[1]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut slow_worker =
            RawWorker::connect(&cluster.url(), &cluster.worker_token, &cluster.client_tls()).await;
        let mut fast_worker =
            RawWorker::connect(&cluster.url(), &cluster.worker_token, &cluster.client_tls()).await;
        let slow = slow_worker.register("slow", "").await.unwrap().worker_id;
        let first = slow_worker
            .client
            .acquire(AcquireRequest {
                worker_id: slow.clone(),
                free_devices: vec!["cpu".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .assignment
            .expect("the run is assigned");
        assert_eq!(first.attempt, 1);
        // No heartbeat: the lease lapses and the run is handed to another worker.
        let fast = fast_worker.register("fast", "").await.unwrap().worker_id;
        let mut second = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = fast_worker
                .client
                .acquire(AcquireRequest {
                    worker_id: fast.clone(),
                    free_devices: vec!["cpu".into()],
                })
                .await
                .unwrap()
                .into_inner();
            if r.assignment.is_some() {
                second = r.assignment;
                break;
            }
        }
        let second = second.expect("the expired run is re-assigned");
        assert_eq!(second.run_id, first.run_id);
        assert_eq!(second.attempt, 2);
        let late = slow_worker
            .client
            .progress(ProgressRequest {
                worker_id: slow.clone(),
                run_id: first.run_id.clone(),
                attempt: 1,
                current_epoch: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
        let current = fast_worker
            .client
            .progress(ProgressRequest {
                worker_id: fast.clone(),
                run_id: second.run_id.clone(),
                attempt: 2,
                current_epoch: 1,
                ..Default::default()
            })
            .await;
        assert!(current.is_ok(), "{current:?}");
    });
}

#[test]
fn single_node_run_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.toml");
    std::fs::write(&grid, lenet_grid("solo", 2, 256, &[1, 2])).unwrap();
    let data_dir = dir.path().join("data");
    let out = std::process::Command::new(ablate_tests::binary("ablate"))
        .args([
            "run",
            grid.to_str().unwrap(),
            "--workers",
            "2",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
        .env("ABLATE_WORKER_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ablate run failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let report_dir = data_dir.join("reports").join("solo");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    assert_complete(&json, 2, 2);
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("lenet"), "{md}");
    // Every format from the same store: one CSV row a run, one inline SVG chart a metric
    // with one polyline point an epoch, TensorBoard event files a run.
    let csv = std::fs::read_to_string(report_dir.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and one row a run:\n{csv}");
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "one chart a metric");
    assert!(!html.contains("<script"), "the HTML needs no JavaScript");
    let polyline = html.split("<polyline").nth(1).expect("a polyline");
    let points = polyline
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(
        points.split_whitespace().count(),
        2,
        "one point an epoch: {points}"
    );
    let experiments: Vec<_> = std::fs::read_dir(data_dir.join("tensorboard"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(experiments.len(), 1);
    let tensorboard = experiments[0].path();
    let runs = std::fs::read_dir(&tensorboard).unwrap().count();
    assert_eq!(
        runs,
        2,
        "an event directory a run under {}",
        tensorboard.display()
    );
    assert!(
        stdout(&out).contains("report.json"),
        "the paths are printed: {}",
        stdout(&out)
    );
}
