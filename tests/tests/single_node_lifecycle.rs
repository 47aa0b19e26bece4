//! `ablate run` and its local workers: a grid they cannot run is refused before anything
//! trains; the workers never outlive `ablate run` (SIGHUP stops everything cleanly, and
//! after `kill -9` of `ablate run` the kernel kills them). The moment of each signal is
//! made by construction: the workers run with the test hold (`ABLATE_TEST_HOLD_DIR`), so a
//! worker is in the middle of a run, between two epochs, when the signal comes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ablate_tests::{binary, lenet_grid};

/// Polls `check` every 100 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pids of the live children of `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.len() > 1 && fields[1] == parent.to_string() && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

/// Whether a process is gone (or a zombie nobody reaped yet: it no longer runs).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// `ablate run` of a 3-epoch grid with the test hold on, started in the background.
struct HeldRun {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    child: Child,
    stderr: PathBuf,
}

impl HeldRun {
    fn start(name: &str) -> HeldRun {
        let dir = tempfile::tempdir().unwrap();
        let hold = dir.path().join("hold");
        std::fs::create_dir_all(&hold).unwrap();
        std::fs::write(hold.join("hold"), b"").unwrap();
        let grid = dir.path().join("grid.toml");
        std::fs::write(&grid, lenet_grid(name, 3, 128, &[1])).unwrap();
        let data_dir = dir.path().join("data");
        let stderr = dir.path().join("ablate.err");
        let child = Command::new(binary("ablate"))
            .args(["run", grid.to_str().unwrap(), "--data-dir"])
            .arg(&data_dir)
            .env("ABLATE_TEST_HOLD_DIR", &hold)
            .env("ABLATE_WORKER_THREADS", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        HeldRun {
            _dir: dir,
            data_dir,
            child,
            stderr,
        }
    }

    fn worker_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("logs").join("worker-0.log")).unwrap_or_default()
    }

    /// Waits until the local worker holds its run after the first epoch; returns its pid.
    fn wait_held(&mut self) -> u32 {
        wait_until(
            Duration::from_secs(300),
            "the worker to hold its run",
            || {
                assert!(
                    self.child.try_wait().unwrap().is_none(),
                    "ablate run exited early:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
                self.worker_log().contains("test hold: waiting")
            },
        );
        let workers = children(self.child.id());
        assert_eq!(workers.len(), 1, "one local worker: {workers:?}");
        workers[0]
    }
}

impl Drop for HeldRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[test]
fn kill_9_of_ablate_run_takes_its_workers_down() {
    let mut run = HeldRun::start("orphan");
    let worker = run.wait_held();
    signal(run.child.id(), "KILL");
    let _ = run.child.wait();
    wait_until(
        Duration::from_secs(30),
        "the worker to die with ablate run",
        || gone(worker),
    );
}

#[test]
fn sighup_stops_ablate_run_and_its_workers_cleanly() {
    let mut run = HeldRun::start("hangup");
    let worker = run.wait_held();
    signal(run.child.id(), "HUP");
    let status = run.child.wait().unwrap();
    let stderr = std::fs::read_to_string(&run.stderr).unwrap();
    assert!(!status.success(), "an interrupted run is not a success");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(gone(worker), "the worker outlived ablate run");
    let log = run.worker_log();
    assert!(
        log.contains("releasing run"),
        "the worker released its run:\n{log}"
    );
}

#[test]
fn a_gpu_grid_on_a_cpu_machine_is_refused_before_anything_trains() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("gpu.toml");
    let text = lenet_grid("gpu-on-cpu", 1, 64, &[1])
        .replace("max_attempts = 3", "max_attempts = 3\ngpus = 1");
    std::fs::write(&grid, text).unwrap();
    let data_dir: &Path = &dir.path().join("data");
    let out = Command::new(binary("ablate"))
        .args([
            "run",
            grid.to_str().unwrap(),
            "--devices",
            "cpu",
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(stderr.contains("refusing to train"), "{stderr}");
    assert!(
        stderr
            .contains("needs 1 GPU on one worker, but the local workers have none (--devices cpu)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("set gpus = 0"),
        "says what to change: {stderr}"
    );
    assert!(
        !data_dir.join("logs").exists() && !data_dir.join("ablate.sqlite").exists(),
        "nothing was started"
    );
}

/// On a cluster: a submit whose run no connected worker fits warns at once, `status
/// --json` says why it waits, and `ablate workers --json` shows the worker.
#[test]
fn an_unfittable_run_is_reported_at_submit_and_in_status() {
    let mut cluster = ablate_tests::Cluster::new(10);
    cluster.start_coordinator();
    cluster.start_worker();
    let connected = || {
        let out = cluster.cli(&["workers", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        json["workers"]
            .as_array()
            .map(|w| w.iter().filter(|w| w["connected"] == true).count())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(60), "the worker to register", || {
        connected() == 1
    });
    let out = cluster.cli(&["workers", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let worker = &json["workers"][0];
    assert_eq!(worker["name"], "worker0");
    assert_eq!(worker["devices"], serde_json::json!(["cpu"]));
    assert_eq!(worker["free"], serde_json::json!(["cpu"]));
    assert!(worker["last_seen_unix_ms"].as_u64().is_some_and(|t| t > 0));
    // The dataset roots it reads from (the default, as the harness starts it).
    assert_eq!(
        worker["data_roots"],
        serde_json::json!(["/usr/share/datasets"])
    );

    let text = lenet_grid("needs-gpus", 1, 64, &[1])
        .replace("max_attempts = 3", "max_attempts = 3\ngpus = 2");
    let grid = cluster.write("gpus.toml", &text);
    let out = cluster.cli(&["submit", grid.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: 1 run needs 2 GPUs on one worker; no connected worker has a GPU"),
        "{stderr}"
    );
    let out = cluster.cli(&["status", "needs-gpus", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &json["experiments"][0]["runs"][0];
    assert_eq!(run["state"], "queued");
    assert_eq!(run["gpus"], 2);
    assert_eq!(
        run["pending_reason"],
        "needs 2 GPUs on one worker; no connected worker has a GPU"
    );
    let table = String::from_utf8_lossy(&cluster.cli(&["status", "needs-gpus"]).stdout).to_string();
    assert!(table.contains("no connected worker has a GPU"), "{table}");
}
