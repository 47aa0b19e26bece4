//! Early stopping end to end: a real coordinator and worker on loopback train a small grid
//! of LeNet variants in which one variant cannot learn (a learning rate of 1e-7); the
//! grid's median rule stops it after its first epoch, the report and `status` say so with
//! the compute saved, the winner is the one the same grid names without early stopping,
//! and `ablate resume` trains the stopped run to its full length.
//!
//! The moment of the stop is made by construction: one worker trains the runs one after
//! the other in grid order, so when the second seed of the hopeless variant reports its
//! first epoch every other run has finished, and the verdict (judged over both seeds) is
//! certain at once while that run is still running.

use std::time::Duration;

use ablate_common::proto::{ExperimentState, ExperimentStatus, RunState};
use ablate_tests::{lenet_base, Cluster};
use serde_json::Value;

const MINUTES: Duration = Duration::from_secs(60);

/// Three learning rates × two seeds of LeNet on a Fashion-MNIST subset, 3 epochs.
fn grid(name: &str, early_stopping: bool) -> String {
    let section = if early_stopping {
        "\n[early_stopping]\nrule = \"median\"\nmetric = \"eval_acc\"\ngrace_epochs = 1\n\
         min_runs = 2\n"
    } else {
        ""
    };
    format!(
        r#"{}
[grid]
lr = [0.003, 0.001, 1e-7]
seed = [1, 2]
{section}"#,
        lenet_base(name, 3, 320, "")
    )
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cli_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.cli(args);
    assert!(
        out.status.success(),
        "ablate {args:?} failed: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn all_terminal(s: &ExperimentStatus) -> bool {
    !s.runs.is_empty()
        && s.runs.iter().all(|r| {
            matches!(
                r.state(),
                RunState::Finished | RunState::Failed | RunState::Cancelled | RunState::Stopped
            )
        })
}

fn report_json(cluster: &Cluster, experiment: &str) -> Value {
    let text = cli_ok(cluster, &["report", experiment, "--format", "json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report.json: {e}\n{text}"))
}

/// The finished run with the highest best eval accuracy: (name, accuracy).
fn winner(report: &Value) -> (String, f64) {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "finished")
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["best_eval_acc"].as_f64().unwrap(),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a finished run")
}

fn epochs_of(run: &Value) -> Vec<u64> {
    run["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_hopeless_variant_is_stopped_and_the_winner_is_unchanged() {
    let mut cluster = Cluster::new(10);
    cluster.start_coordinator();
    cluster.start_worker();

    let path = cluster.write("stop.toml", &grid("stop", true));
    let validated = cli_ok(&cluster, &["validate", path.to_str().unwrap()]);
    assert!(
        validated.contains("early stopping: median rule from epoch 1 on eval_acc (max)"),
        "{validated}"
    );
    assert!(
        validated.contains("3 variants judged; epochs judged (rungs) of a 3-epoch run: 1, 2"),
        "{validated}"
    );
    cli_ok(&cluster, &["submit", path.to_str().unwrap()]);
    let status = cluster.wait_for("stop", 8 * MINUTES, "the grid to end", all_terminal);

    // The hopeless variant's second seed is stopped at epoch 1; its first seed had
    // finished before the variant could be judged over both seeds.
    let states: Vec<(&str, RunState)> = status
        .runs
        .iter()
        .map(|r| (r.name.as_str(), r.state()))
        .collect();
    assert_eq!(
        states,
        [
            ("lenet lr=0.003 seed=1", RunState::Finished),
            ("lenet lr=0.003 seed=2", RunState::Finished),
            ("lenet lr=0.001 seed=1", RunState::Finished),
            ("lenet lr=0.001 seed=2", RunState::Finished),
            ("lenet lr=0.0000001 seed=1", RunState::Finished),
            ("lenet lr=0.0000001 seed=2", RunState::Stopped),
        ],
        "{}",
        cluster.logs()
    );
    let stopped = &status.runs[5];
    assert_eq!(
        (stopped.stop_rule.as_str(), stopped.stop_epoch),
        ("median", 1)
    );
    assert!(
        stopped
            .stop_reason
            .starts_with("best eval_acc by epoch 1 ("),
        "{}",
        stopped.stop_reason
    );
    let e = status.experiment.as_ref().unwrap();
    assert_eq!((e.state(), e.stopped), (ExperimentState::Finished, 1));
    let summary = status
        .early_stopping
        .as_ref()
        .expect("an early-stopping summary");
    assert_eq!(summary.stopped_runs, 1);
    assert!(summary.core_hours_saved > 0.0, "{summary:?}");
    assert_eq!(summary.gpu_hours_used, 0.0);

    // status (table and JSON) and every report format show the stop.
    let table = cli_ok(&cluster, &["status", "stop"]);
    assert!(table.contains("1 stopped early"), "{table}");
    assert!(
        table.contains("stopped at epoch 1 (median): best eval_acc"),
        "{table}"
    );
    assert!(table.contains("core-hours of"), "{table}");
    let json: Value =
        serde_json::from_str(&cli_ok(&cluster, &["status", "stop", "--json"])).unwrap();
    let exp = &json["experiments"][0];
    assert_eq!(exp["stopped"], 1);
    assert!(exp["early_stopping"]["core_hours_saved"].as_f64().unwrap() > 0.0);
    assert_eq!(exp["runs"][5]["stop"]["epoch"], 1);
    let report = report_json(&cluster, "stop");
    let run = &report["runs"][5];
    assert_eq!(run["state"], "stopped");
    assert_eq!(
        epochs_of(run),
        [1],
        "a stopped run stores no epoch after its stop"
    );
    assert_eq!(run["stop"]["rule"], "median");
    let compared = run["stop"]["compared"].as_array().unwrap();
    assert_eq!(compared.len(), 2, "the other two variants: {run:#}");
    assert!(run["stop"]["value"].as_f64().unwrap() < run["stop"]["threshold"].as_f64().unwrap());
    assert!(
        report["early_stopping"]["compute"]["core_hours_saved"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let md = cli_ok(&cluster, &["report", "stop", "--format", "md"]);
    assert!(md.contains("## Early stopping"), "{md}");
    assert!(
        md.contains("Early stopping (median rule from epoch 1"),
        "{md}"
    );
    let (best, best_acc) = winner(&report);
    assert!(md.contains(&format!("Best: {best} with")), "{md}");
    assert!(
        !best.contains("1e-7") && !best.contains("0.0000001"),
        "{best}"
    );
    let html = cli_ok(&cluster, &["report", "stop", "--format", "html"]);
    assert!(
        html.contains("<h2>Early stopping</h2>"),
        "early-stopping section in the HTML"
    );
    let csv = cli_ok(&cluster, &["report", "stop", "--format", "csv"]);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",stopped_at_epoch,stop_reason"),
        "{csv}"
    );

    // The same grid without early stopping names the same winner.
    let path = cluster.write("full.toml", &grid("full", false));
    cli_ok(&cluster, &["submit", path.to_str().unwrap()]);
    cluster.wait_for("full", 8 * MINUTES, "the full grid to end", all_terminal);
    let full = report_json(&cluster, "full");
    let (full_best, full_acc) = winner(&full);
    assert_eq!(best, full_best, "the winner changed");
    assert!(
        (best_acc - full_acc).abs() < 0.05,
        "{best_acc} vs {full_acc}"
    );
    // Run to the end, the stopped variant does not come near the winner.
    let hopeless = full["runs"][5]["best_eval_acc"].as_f64().unwrap();
    assert!(hopeless < best_acc - 0.2, "{hopeless} vs {best_acc}");

    // `resume` trains the stopped run to its full length, and it is not stopped again.
    let id = stopped.id.clone();
    let out = cli_ok(&cluster, &["resume", &id]);
    assert!(out.contains("resumed 1 run(s)"), "{out}");
    let status = cluster.wait_for("stop", 8 * MINUTES, "the resumed run to end", |s| {
        all_terminal(s) && s.runs[5].state() != RunState::Stopped
    });
    assert_eq!(
        status.runs[5].state(),
        RunState::Finished,
        "{:#?}",
        status.runs[5]
    );
    assert!(status.runs[5].stop_resumed);
    let report = report_json(&cluster, "stop");
    assert_eq!(epochs_of(&report["runs"][5]), [1, 2, 3]);
    assert_eq!(report["runs"][5]["stop"]["resumed"], true);
    // A run that is not stopped cannot be resumed.
    let refused = cluster.cli(&["resume", &id]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only a stopped run can be resumed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
