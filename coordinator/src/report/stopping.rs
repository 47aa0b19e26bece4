//! Early stopping in reports: the rule, each stopped run with the epoch and the reason,
//! and the compute saved against running every run to the end (GPU runs in GPU-hours,
//! CPU runs in core-hours: epoch seconds × the threads of the worker that trained it).
//!
//! The compute of a run is what its stored epochs took; a stopped run would have needed
//! its remaining epochs at the mean time of its stored ones. Only present in a report
//! whose grid has an `[early_stopping]` section.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{ReportData, RunData};
use super::summary::RunSummary;
use super::view::{fixed, ReportView};

/// What the report knows about early stopping in the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoppingData {
    /// The rule, in words.
    pub rule: String,
    /// Per run id: what its compute is counted from and its stop decision.
    pub runs: BTreeMap<String, RunStopping>,
}

/// One run's part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStopping {
    /// Epochs it was to train.
    pub planned_epochs: u32,
    /// GPUs (0: a CPU run).
    pub gpus: u32,
    /// CPU threads of the worker that trained it (`None`: unknown, counted as 1).
    pub cores: Option<u32>,
    /// Its stop decision, if the rule stopped it.
    pub stop: Option<StopDecision>,
}

/// A stop decision with the numbers it compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopDecision {
    /// `median` or `asha`.
    pub rule: String,
    /// The metric compared.
    pub metric: String,
    /// The epoch the verdict was taken at.
    pub epoch: u32,
    /// The run's variant's value there.
    pub value: Option<f64>,
    /// The median of the others, or the rung's cut-off.
    pub threshold: Option<f64>,
    /// The other variants' values, best first (`None`: diverged).
    pub compared: Vec<Option<f64>>,
    /// Other variants that had not reached the epoch.
    pub pending: u32,
    /// Why, in words.
    pub reason: String,
    /// Epochs stored when it stopped.
    pub stored_epochs: u32,
    /// Whether a user resumed it since.
    pub resumed: bool,
}

/// What a run's compute is counted from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunCost {
    /// Epochs it was to train.
    pub planned_epochs: u32,
    /// Epochs stored.
    pub stored_epochs: u32,
    /// Their seconds, summed.
    pub epoch_seconds: f64,
    /// GPUs (0: a CPU run).
    pub gpus: u32,
    /// CPU threads (unknown: 1).
    pub cores: Option<u32>,
    /// Stopped by the rule (and not resumed).
    pub stopped: bool,
}

/// Compute used and saved, by kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ComputeSaved {
    /// Runs stopped (and not resumed).
    pub stopped_runs: u32,
    /// GPU-hours the stored epochs of GPU runs took.
    pub gpu_hours_used: f64,
    /// GPU-hours the stopped GPU runs would have needed to finish.
    pub gpu_hours_saved: f64,
    /// Core-hours the stored epochs of CPU runs took.
    pub core_hours_used: f64,
    /// Core-hours the stopped CPU runs would have needed to finish.
    pub core_hours_saved: f64,
}

impl ComputeSaved {
    /// Adds up the runs.
    pub fn of(runs: impl IntoIterator<Item = RunCost>) -> ComputeSaved {
        let mut out = ComputeSaved::default();
        for run in runs {
            let seconds = if run.epoch_seconds.is_finite() {
                run.epoch_seconds.max(0.0)
            } else {
                0.0
            };
            let devices = if run.gpus > 0 {
                f64::from(run.gpus)
            } else {
                f64::from(run.cores.unwrap_or(1).max(1))
            };
            let used = seconds * devices / 3600.0;
            let saved = if run.stopped && run.stored_epochs > 0 {
                let remaining = run.planned_epochs.saturating_sub(run.stored_epochs);
                seconds / f64::from(run.stored_epochs) * f64::from(remaining) * devices / 3600.0
            } else {
                0.0
            };
            if run.stopped {
                out.stopped_runs += 1;
            }
            if run.gpus > 0 {
                out.gpu_hours_used += used;
                out.gpu_hours_saved += saved;
            } else {
                out.core_hours_used += used;
                out.core_hours_saved += saved;
            }
        }
        out
    }

    /// `saved 1.20 GPU-hours of 3.40 (35 %) …`: one clause a kind of device that ran.
    pub fn sentence(&self) -> String {
        let mut parts = Vec::new();
        for (used, saved, unit) in [
            (self.gpu_hours_used, self.gpu_hours_saved, "GPU-hours"),
            (self.core_hours_used, self.core_hours_saved, "core-hours"),
        ] {
            let full = used + saved;
            if full > 0.0 {
                parts.push(format!(
                    "{} {unit} of {} ({:.0} %)",
                    hours(saved),
                    hours(full),
                    saved / full * 100.0
                ));
            }
        }
        if parts.is_empty() {
            "no compute measured yet".to_string()
        } else {
            format!(
                "saved {} against running every run to the end",
                parts.join(" and ")
            )
        }
    }
}

fn hours(h: f64) -> String {
    if h < 0.01 {
        format!("{h:.4}")
    } else {
        format!("{h:.2}")
    }
}

/// A run's cost inputs from the report's data.
fn cost(run: &RunData, part: &RunStopping) -> RunCost {
    RunCost {
        planned_epochs: part.planned_epochs,
        stored_epochs: run.epochs.len() as u32,
        epoch_seconds: run
            .epochs
            .iter()
            .map(|e| e.seconds)
            .filter(|s| s.is_finite())
            .sum(),
        gpus: part.gpus,
        cores: part.cores,
        stopped: run.state == "stopped" && part.stop.as_ref().is_some_and(|s| !s.resumed),
    }
}

/// The compute used and saved in the report's experiment (`None` without early stopping).
pub fn compute(data: &ReportData) -> Option<ComputeSaved> {
    let stopping = data.early_stopping.as_ref()?;
    Some(ComputeSaved::of(data.runs.iter().filter_map(|run| {
        stopping.runs.get(&run.id).map(|part| cost(run, part))
    })))
}

/// A run's stop decision, if the report has one.
pub fn decision<'a>(data: &'a ReportData, run: &RunData) -> Option<&'a StopDecision> {
    data.early_stopping
        .as_ref()?
        .runs
        .get(&run.id)?
        .stop
        .as_ref()
}

/// The summaries with those of stopped runs emptied, for the aggregates (seeds, factor
/// effects): a stopped run's best accuracy is that of a training cut short.
pub fn without_stopped(data: &ReportData, summaries: &[RunSummary]) -> Vec<RunSummary> {
    data.runs
        .iter()
        .zip(summaries)
        .map(|(run, s)| {
            if run.state == "stopped" {
                RunSummary::default()
            } else {
                *s
            }
        })
        .collect()
}

/// Summary sentences: what the rule stopped and saved; and a warning when a stopped run
/// had a higher eval accuracy than every finished run (it is not called best).
pub fn sentences(view: &ReportView<'_>) -> Vec<String> {
    let data = view.data;
    let Some(stopping) = &data.early_stopping else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let saved = compute(data).unwrap_or_default();
    let stopped: Vec<&str> = data
        .runs
        .iter()
        .filter(|r| r.state == "stopped")
        .map(|r| r.name.as_str())
        .collect();
    if stopped.is_empty() {
        out.push(format!(
            "Early stopping ({}) stopped no run.",
            stopping.rule
        ));
    } else {
        out.push(format!(
            "Early stopping ({}) stopped {} run{} ({}); it {}.",
            stopping.rule,
            stopped.len(),
            if stopped.len() == 1 { "" } else { "s" },
            stopped.join(", "),
            saved.sentence()
        ));
    }
    let best_finished = data
        .runs
        .iter()
        .zip(&view.summaries)
        .filter(|(r, _)| r.state == "finished")
        .filter_map(|(_, s)| s.best_eval_acc)
        .fold(f64::NEG_INFINITY, f64::max);
    for (run, s) in data.runs.iter().zip(&view.summaries) {
        if run.state == "stopped" && s.best_eval_acc.is_some_and(|a| a > best_finished) {
            out.push(format!(
                "Stopped run {} had reached a higher eval accuracy ({}) than every finished \
                 run; it is not called best because it did not finish (ablate resume {} \
                 continues it).",
                run.name,
                super::view::percent(s.best_eval_acc),
                run.id
            ));
        }
    }
    out
}

/// The rows of the stopped-runs table: run, epoch, value, threshold, reason.
pub fn rows(data: &ReportData) -> Vec<[String; 6]> {
    data.runs
        .iter()
        .filter_map(|run| {
            let d = decision(data, run)?;
            let state = if d.resumed {
                format!("{} (resumed)", run.state)
            } else {
                run.state.clone()
            };
            Some([
                run.name.clone(),
                state,
                format!("{} ({})", d.epoch, d.rule),
                format!(
                    "{} {} vs {}",
                    d.metric,
                    fixed(d.value, 4),
                    fixed(d.threshold, 4)
                ),
                format!("{} of {}", d.stored_epochs, planned(data, run)),
                d.reason.clone(),
            ])
        })
        .collect()
}

fn planned(data: &ReportData, run: &RunData) -> u32 {
    data.early_stopping
        .as_ref()
        .and_then(|s| s.runs.get(&run.id))
        .map_or(0, |p| p.planned_epochs)
}

/// Column headers of [`rows`].
pub const COLUMNS: [&str; 6] = [
    "run",
    "state",
    "stopped at epoch",
    "value vs threshold",
    "epochs trained",
    "reason",
];

/// The Markdown section (empty without early stopping).
pub fn markdown(view: &ReportView<'_>) -> String {
    let data = view.data;
    let Some(stopping) = &data.early_stopping else {
        return String::new();
    };
    let mut out = format!(
        "## Early stopping\n\nRule: {}. Stopped runs are left out of the seed and factor \
         aggregates.\n\n",
        stopping.rule
    );
    let rows = rows(data);
    if rows.is_empty() {
        out.push_str("No run was stopped.\n\n");
    } else {
        out.push_str(&format!("| {} |\n", COLUMNS.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push('\n');
    }
    if let Some(saved) = compute(data) {
        out.push_str(&format!("Compute: {}.\n\n", saved.sentence()));
    }
    out
}

/// The HTML section (empty without early stopping); `escape` escapes text.
pub fn html(view: &ReportView<'_>, escape: impl Fn(&str) -> String) -> String {
    let data = view.data;
    let Some(stopping) = &data.early_stopping else {
        return String::new();
    };
    let mut out = format!(
        "<h2>Early stopping</h2>\n<p>Rule: {}. Stopped runs are left out of the seed and \
         factor aggregates.</p>\n",
        escape(&stopping.rule)
    );
    let rows = rows(data);
    if rows.is_empty() {
        out.push_str("<p>No run was stopped.</p>\n");
    } else {
        out.push_str("<table>\n<thead><tr>");
        for c in COLUMNS {
            out.push_str(&format!("<th>{}</th>", escape(c)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            out.push_str("<tr>");
            for c in row {
                out.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if let Some(saved) = compute(data) {
        out.push_str(&format!("<p>Compute: {}.</p>\n", escape(&saved.sentence())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_compute_counts_the_remaining_epochs_at_the_mean_epoch_time() {
        let saved = ComputeSaved::of([
            // A CPU run on 2 threads, stopped after 2 of 10 epochs of 90 s each.
            RunCost {
                planned_epochs: 10,
                stored_epochs: 2,
                epoch_seconds: 180.0,
                gpus: 0,
                cores: Some(2),
                stopped: true,
            },
            // A finished CPU run: 10 epochs of 36 s on 1 thread.
            RunCost {
                planned_epochs: 10,
                stored_epochs: 10,
                epoch_seconds: 360.0,
                gpus: 0,
                cores: None,
                stopped: false,
            },
            // A 2-GPU run stopped after 1 of 4 epochs of 1 h.
            RunCost {
                planned_epochs: 4,
                stored_epochs: 1,
                epoch_seconds: 3600.0,
                gpus: 2,
                cores: Some(16),
                stopped: true,
            },
        ]);
        assert_eq!(saved.stopped_runs, 2);
        assert!((saved.core_hours_used - (360.0 + 360.0) / 3600.0).abs() < 1e-12);
        assert!((saved.core_hours_saved - 8.0 * 90.0 * 2.0 / 3600.0).abs() < 1e-12);
        assert!((saved.gpu_hours_used - 2.0).abs() < 1e-12);
        assert!((saved.gpu_hours_saved - 6.0).abs() < 1e-12);
        assert_eq!(
            saved.sentence(),
            "saved 6.00 GPU-hours of 8.00 (75 %) and 0.40 core-hours of 0.60 (67 %) against \
             running every run to the end"
        );
    }

    fn run(id: &str, name: &str, state: &str, accs: &[f64]) -> RunData {
        RunData {
            id: id.into(),
            name: name.into(),
            model: "lenet".into(),
            factors: [
                (
                    "lr".to_string(),
                    serde_json::json!(name.split('=').nth(1).unwrap_or("")),
                ),
                ("seed".to_string(), serde_json::json!(id.len() % 2)),
            ]
            .into(),
            params: 10,
            state: state.into(),
            attempts: 1,
            wall_s: 1.0,
            epochs: accs
                .iter()
                .enumerate()
                .map(|(i, a)| ablate_common::metrics::EpochRecord {
                    epoch: i as u32 + 1,
                    train_loss: 1.0,
                    train_acc: *a,
                    eval_loss: 1.0,
                    eval_acc: *a,
                    lr: 0.1,
                    seconds: 30.0,
                    images_per_sec: 10.0,
                })
                .collect(),
            error: None,
        }
    }

    fn part(stop: Option<StopDecision>) -> RunStopping {
        RunStopping {
            planned_epochs: 3,
            gpus: 0,
            cores: Some(2),
            stop,
        }
    }

    #[test]
    fn a_stopped_run_is_shown_left_out_of_aggregates_and_never_called_best() {
        let decision = StopDecision {
            rule: "median".into(),
            metric: "eval_acc".into(),
            epoch: 1,
            value: Some(0.9),
            threshold: Some(0.95),
            compared: vec![Some(0.96), Some(0.95), Some(0.5)],
            pending: 0,
            reason: "below the median".into(),
            stored_epochs: 1,
            resumed: false,
        };
        let data = ReportData {
            experiment: crate::report::ExperimentInfo {
                id: "e".into(),
                name: "g".into(),
                state: "finished".into(),
            },
            runs: vec![
                run("a", "lenet lr=0.1", "finished", &[0.5, 0.6, 0.7]),
                run("bb", "lenet lr=0.2", "finished", &[0.4, 0.5, 0.6]),
                // Stopped at a higher accuracy than any finished run (a loss metric, say).
                run("c", "lenet lr=0.3", "stopped", &[0.9]),
            ],
            claims: Vec::new(),
            early_stopping: Some(StoppingData {
                rule: "median rule from epoch 1".into(),
                runs: [
                    ("a".to_string(), part(None)),
                    ("bb".to_string(), part(None)),
                    ("c".to_string(), part(Some(decision))),
                ]
                .into(),
            }),
        };
        let view = ReportView::new(&data);
        assert!(!view.partial, "a stopped run is done");
        let text = view.summary_sentences().join(" ");
        assert!(text.contains("Best: lenet lr=0.1 with 70.0 %"), "{text}");
        assert!(
            text.contains("Early stopping (median rule from epoch 1) stopped 1 run (lenet lr=0.3)"),
            "{text}"
        );
        assert!(
            text.contains("Stopped run lenet lr=0.3 had reached a higher"),
            "{text}"
        );
        // 2 more epochs of 30 s on 2 threads saved; 7 epochs of 30 s on 2 threads used.
        let saved = compute(&data).unwrap();
        assert!((saved.core_hours_saved - 120.0 / 3600.0).abs() < 1e-12);
        assert!((saved.core_hours_used - 420.0 / 3600.0).abs() < 1e-12);
        let lr = view
            .effects
            .iter()
            .find(|e| e.factor == "lr")
            .expect("lr varies");
        let labels: Vec<&str> = lr.levels.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            ["0.1", "0.2"],
            "the stopped run is left out of the effects"
        );
        let md = markdown(&view);
        assert!(md.contains("| lenet lr=0.3 | stopped | 1 (median) | eval_acc 0.9000 vs 0.9500 | 1 of 3 | below the median |"), "{md}");
        let csv = crate::report::render(&data, crate::report::Format::Csv);
        assert!(
            csv.lines().any(|l| l.ends_with(",1,below the median")),
            "{csv}"
        );
    }
}
