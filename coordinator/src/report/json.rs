//! `report.json`: the machine-readable report other tools read. Its keys are a contract:
//!
//! ```text
//! {"experiment": {"id", "name", "state", "partial"},
//!  "runs": [{"id", "name", "model", "factors": {…}, "params", "state", "attempts",
//!            "best_eval_acc", "best_epoch", "final_eval_loss", "train_acc", "wall_s",
//!            "images_per_sec",
//!            "epochs": [{"epoch", "train_loss", "train_acc", "eval_loss", "eval_acc",
//!                        "lr", "seconds"}],
//!            "stop": {…}}],           # only for a run early stopping stopped
//!  "early_stopping": {"rule", "compute": {…}},   # only with [early_stopping]
//!  "claims": [{"name", "form", "metric", "margin", "alpha", "chance",
//!              "side": {"selector", "runs", "mean", "std", "seeds"}, "than": {…} | null,
//!              "verdict", "difference",
//!              "test": {"kind", "n", "t", "p", "interval", "level"},
//!              "reason", "notes", "partial"}]}   # only when the grid states claims
//! ```
//!
//! `claims` is present only when the grid states claims (see [`super::claims::JsonClaim`]).
//!
//! Accuracies are fractions in [0, 1]. A run with no epoch yet has `null` best_*, final
//! and throughput numbers; a non-finite value (a diverged loss) is `null` too. Runs are in
//! submission order (the tables sort; this file keeps the experiment's order).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::ReportData;
use super::stopping::{ComputeSaved, StopDecision};
use super::view::ReportView;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonReport {
    /// The experiment.
    pub experiment: JsonExperiment,
    /// Its runs, in submission order.
    pub runs: Vec<JsonRun>,
    /// Early stopping, when the grid has an `[early_stopping]` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<JsonStopping>,
    /// The grid's claims with their verdicts; absent when the grid states none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<super::claims::JsonClaim>,
}

/// `early_stopping`: the rule and the compute used and saved (per run, `stop`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonStopping {
    /// The rule, in words.
    pub rule: String,
    /// Compute used and saved against running every run to the end.
    pub compute: ComputeSaved,
}

/// `experiment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonExperiment {
    /// Experiment id.
    pub id: String,
    /// Grid name.
    pub name: String,
    /// Experiment state.
    pub state: String,
    /// Whether runs may still change (the experiment or a run is not terminal).
    pub partial: bool,
}

/// One entry of `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRun {
    /// Run id.
    pub id: String,
    /// Readable name.
    pub name: String,
    /// Catalogue model.
    pub model: String,
    /// Grid values that vary, by grid key.
    pub factors: BTreeMap<String, serde_json::Value>,
    /// Trainable parameters.
    pub params: u64,
    /// Run state.
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Highest eval accuracy (fraction).
    pub best_eval_acc: Option<f64>,
    /// First epoch that reached it (1-based).
    pub best_epoch: Option<u32>,
    /// Eval loss of the last epoch.
    pub final_eval_loss: Option<f64>,
    /// Train accuracy of the last epoch (fraction).
    pub train_acc: Option<f64>,
    /// Training wall time, seconds.
    pub wall_s: f64,
    /// Mean training throughput, images per second.
    pub images_per_sec: Option<f64>,
    /// Per-epoch metrics.
    pub epochs: Vec<JsonEpoch>,
    /// The early-stopping decision that stopped the run, with its numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopDecision>,
}

/// One entry of a run's `epochs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JsonEpoch {
    /// 1-based epoch.
    pub epoch: u32,
    /// Mean training loss.
    pub train_loss: Option<f64>,
    /// Training accuracy (fraction).
    pub train_acc: Option<f64>,
    /// Eval loss.
    pub eval_loss: Option<f64>,
    /// Eval accuracy (fraction).
    pub eval_acc: Option<f64>,
    /// Learning rate.
    pub lr: Option<f64>,
    /// Epoch wall time, seconds.
    pub seconds: Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The document for a report.
pub fn report(view: &ReportView<'_>) -> JsonReport {
    let data: &ReportData = view.data;
    JsonReport {
        experiment: JsonExperiment {
            id: data.experiment.id.clone(),
            name: data.experiment.name.clone(),
            state: data.experiment.state.clone(),
            partial: view.partial,
        },
        runs: data
            .runs
            .iter()
            .zip(&view.summaries)
            .map(|(run, s)| JsonRun {
                id: run.id.clone(),
                name: run.name.clone(),
                model: run.model.clone(),
                factors: run.factors.clone(),
                params: run.params,
                state: run.state.clone(),
                attempts: run.attempts,
                best_eval_acc: s.best_eval_acc,
                best_epoch: s.best_epoch,
                final_eval_loss: s.final_eval_loss,
                train_acc: s.train_acc,
                wall_s: if run.wall_s.is_finite() {
                    run.wall_s
                } else {
                    0.0
                },
                images_per_sec: s.images_per_sec,
                epochs: run
                    .epochs
                    .iter()
                    .map(|e| JsonEpoch {
                        epoch: e.epoch,
                        train_loss: finite(e.train_loss),
                        train_acc: finite(e.train_acc),
                        eval_loss: finite(e.eval_loss),
                        eval_acc: finite(e.eval_acc),
                        lr: finite(e.lr),
                        seconds: finite(e.seconds),
                    })
                    .collect(),
                stop: super::stopping::decision(data, run).cloned(),
            })
            .collect(),
        early_stopping: data.early_stopping.as_ref().map(|s| JsonStopping {
            rule: s.rule.clone(),
            compute: super::stopping::compute(data).unwrap_or_default(),
        }),
        claims: view
            .claims
            .iter()
            .map(super::claims::JsonClaim::of)
            .collect(),
    }
}

/// `report.json`, pretty-printed, with a final newline.
pub fn render(view: &ReportView<'_>) -> String {
    let mut text =
        serde_json::to_string_pretty(&report(view)).expect("a JSON report always serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::{ExperimentInfo, RunData};
    use ablate_common::metrics::EpochRecord;

    #[test]
    fn a_run_without_epochs_has_null_best_and_nan_becomes_null() {
        let epoch = EpochRecord {
            epoch: 1,
            train_loss: f64::NAN,
            train_acc: 0.1,
            eval_loss: f64::INFINITY,
            eval_acc: 0.1,
            lr: 0.001,
            seconds: 2.0,
            images_per_sec: 50.0,
        };
        let mk = |id: &str, epochs: Vec<EpochRecord>| RunData {
            id: id.into(),
            name: id.into(),
            model: "lenet".into(),
            factors: BTreeMap::new(),
            params: 5,
            state: "running".into(),
            attempts: 1,
            wall_s: 2.0,
            epochs,
            error: None,
        };
        let data = ReportData {
            experiment: ExperimentInfo {
                id: "e1".into(),
                name: "g".into(),
                state: "running".into(),
            },
            runs: vec![mk("a", vec![epoch]), mk("b", vec![])],
            early_stopping: None,
            claims: Vec::new(),
        };
        let text = render(&ReportView::new(&data));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["experiment"]["partial"], true);
        assert_eq!(v["runs"][0]["best_eval_acc"], 0.1);
        assert_eq!(v["runs"][0]["final_eval_loss"], serde_json::Value::Null);
        assert_eq!(
            v["runs"][0]["epochs"][0]["train_loss"],
            serde_json::Value::Null
        );
        assert_eq!(v["runs"][1]["best_eval_acc"], serde_json::Value::Null);
        assert_eq!(v["runs"][1]["best_epoch"], serde_json::Value::Null);
        assert_eq!(v["runs"][1]["epochs"], serde_json::json!([]));
    }
}
