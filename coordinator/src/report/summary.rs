//! Numbers derived from a run's epochs (best eval accuracy and its epoch, final eval loss,
//! train accuracy, throughput), the order of the runs table, and runs aggregated over seeds.
//!
//! Accuracies stay fractions in [0, 1] here; the renderers turn them into percent.
//! Non-finite values (a diverged run's `NaN` loss) are skipped, never propagated into a
//! mean or a maximum.

use std::collections::BTreeMap;

use super::data::{ReportData, RunData};

/// Run states after which a run changes no more.
pub const TERMINAL_STATES: [&str; 4] = ["finished", "failed", "cancelled", "stopped"];

/// A train − eval accuracy gap (at the last epoch) above this many points flags overfitting.
pub const OVERFIT_GAP_POINTS: f64 = 10.0;

/// Numbers a report shows for one run, computed from its epochs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunSummary {
    /// Highest eval accuracy over the epochs so far; `None` before the first epoch.
    pub best_eval_acc: Option<f64>,
    /// The (1-based) epoch that first reached [`RunSummary::best_eval_acc`].
    pub best_epoch: Option<u32>,
    /// Eval loss of the last epoch.
    pub final_eval_loss: Option<f64>,
    /// Eval accuracy of the last epoch.
    pub final_eval_acc: Option<f64>,
    /// Train accuracy of the last epoch.
    pub train_acc: Option<f64>,
    /// Mean training throughput over the epochs, images per second.
    pub images_per_sec: Option<f64>,
    /// Epochs recorded so far.
    pub epochs_done: u32,
}

impl RunSummary {
    /// Summarises one run's epochs. The best epoch is the first one with the highest eval
    /// accuracy (ties go to the earlier epoch).
    pub fn of(run: &RunData) -> RunSummary {
        let mut best: Option<(f64, u32)> = None;
        for e in &run.epochs {
            if !e.eval_acc.is_finite() {
                continue;
            }
            if best.is_none_or(|(acc, _)| e.eval_acc > acc) {
                best = Some((e.eval_acc, e.epoch));
            }
        }
        let last = run.epochs.last();
        let finite = |v: f64| v.is_finite().then_some(v);
        let throughput: Vec<f64> = run
            .epochs
            .iter()
            .map(|e| e.images_per_sec)
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        RunSummary {
            best_eval_acc: best.map(|(acc, _)| acc),
            best_epoch: best.map(|(_, epoch)| epoch),
            final_eval_loss: last.and_then(|e| finite(e.eval_loss)),
            final_eval_acc: last.and_then(|e| finite(e.eval_acc)),
            train_acc: last.and_then(|e| finite(e.train_acc)),
            images_per_sec: mean(&throughput),
            epochs_done: run.epochs.len() as u32,
        }
    }

    /// Train − eval accuracy at the last epoch, in points (positive: train is higher).
    pub fn gap_points(&self) -> Option<f64> {
        Some((self.train_acc? - self.final_eval_acc?) * 100.0)
    }

    /// Whether the train − eval gap exceeds [`OVERFIT_GAP_POINTS`].
    pub fn overfits(&self) -> bool {
        self.gap_points().is_some_and(|g| g > OVERFIT_GAP_POINTS)
    }
}

/// Whether a report of `data` is partial: the experiment or one of its runs may still
/// change.
pub fn is_partial(data: &ReportData) -> bool {
    !TERMINAL_STATES.contains(&data.experiment.state.as_str())
        || data
            .runs
            .iter()
            .any(|r| !TERMINAL_STATES.contains(&r.state.as_str()))
}

/// Indices of `data.runs` in the order of the runs table: best eval accuracy first, runs
/// without an epoch last, ties in submission order.
pub fn table_order(data: &ReportData, summaries: &[RunSummary]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..data.runs.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (summaries[a].best_eval_acc, summaries[b].best_eval_acc);
        match (x, y) {
            (Some(x), Some(y)) => y.total_cmp(&x).then(a.cmp(&b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(&b),
        }
    });
    order
}

/// Arithmetic mean; `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (n − 1); `None` for fewer than two values.
pub fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64;
    Some(var.sqrt())
}

/// Mean and sample standard deviation of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation; `None` for a single value.
    pub std: Option<f64>,
    /// How many values.
    pub n: usize,
}

impl MeanStd {
    /// Mean ± std of the values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<MeanStd> {
        Some(MeanStd {
            mean: mean(values)?,
            std: sample_std(values),
            n: values.len(),
        })
    }
}

/// The factor key that names a seed; runs differing only in it are repeats of one
/// configuration.
pub const SEED_KEY: &str = "seed";

/// Runs that share everything but the seed, aggregated.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedGroup {
    /// The runs' name without its `seed=…` part.
    pub label: String,
    /// Catalogue model.
    pub model: String,
    /// Indices into `ReportData::runs`, in submission order.
    pub runs: Vec<usize>,
    /// The seeds of those runs, where the factors name them.
    pub seeds: Vec<serde_json::Value>,
    /// Best eval accuracy over the runs that have one.
    pub best_eval_acc: Option<MeanStd>,
    /// Best epoch over the runs that have one.
    pub best_epoch: Option<MeanStd>,
    /// Final eval loss.
    pub final_eval_loss: Option<MeanStd>,
    /// Train accuracy at the last epoch.
    pub train_acc: Option<MeanStd>,
}

/// The run name without its `seed=…` token (`cnn act=relu seed=2` → `cnn act=relu`).
pub fn name_without_seed(name: &str) -> String {
    let prefix = format!("{SEED_KEY}=");
    name.split_whitespace()
        .filter(|t| !t.starts_with(&prefix))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Groups runs that differ only by seed: same name once `seed=…` is removed, same model
/// and same factors except `seed`. Groups come best mean eval accuracy first (groups
/// without an epoch last, ties in order of their first run).
pub fn seed_groups(data: &ReportData, summaries: &[RunSummary]) -> Vec<SeedGroup> {
    let mut keys: Vec<(String, String, String)> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, run) in data.runs.iter().enumerate() {
        let factors: BTreeMap<&String, &serde_json::Value> =
            run.factors.iter().filter(|(k, _)| *k != SEED_KEY).collect();
        let key = (
            name_without_seed(&run.name),
            run.model.clone(),
            serde_json::to_string(&factors).unwrap_or_default(),
        );
        match keys.iter().position(|k| *k == key) {
            Some(g) => members[g].push(i),
            None => {
                keys.push(key);
                members.push(vec![i]);
            }
        }
    }
    let mut groups: Vec<SeedGroup> = keys
        .into_iter()
        .zip(members)
        .map(|((label, model, _), runs)| {
            let pick = |f: &dyn Fn(&RunSummary) -> Option<f64>| -> Vec<f64> {
                runs.iter().filter_map(|&i| f(&summaries[i])).collect()
            };
            SeedGroup {
                label,
                model,
                seeds: runs
                    .iter()
                    .filter_map(|&i| data.runs[i].factors.get(SEED_KEY).cloned())
                    .collect(),
                best_eval_acc: MeanStd::of(&pick(&|s| s.best_eval_acc)),
                best_epoch: MeanStd::of(&pick(&|s| s.best_epoch.map(f64::from))),
                final_eval_loss: MeanStd::of(&pick(&|s| s.final_eval_loss)),
                train_acc: MeanStd::of(&pick(&|s| s.train_acc)),
                runs,
            }
        })
        .collect();
    groups.sort_by(|a, b| match (a.best_eval_acc, b.best_eval_acc) {
        (Some(x), Some(y)) => y.mean.total_cmp(&x.mean),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    groups
}

/// Whether any configuration was repeated over seeds (the aggregated table is worth
/// showing).
pub fn has_repeats(groups: &[SeedGroup]) -> bool {
    groups.iter().any(|g| g.runs.len() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::ExperimentInfo;
    use ablate_common::metrics::EpochRecord;

    fn epoch(epoch: u32, eval_acc: f64, eval_loss: f64, train_acc: f64, ips: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0,
            train_acc,
            eval_loss,
            eval_acc,
            lr: 0.001,
            seconds: 1.0,
            images_per_sec: ips,
        }
    }

    fn run(name: &str, seed: Option<u64>, epochs: Vec<EpochRecord>) -> RunData {
        let mut factors = BTreeMap::new();
        if let Some(s) = seed {
            factors.insert("seed".to_string(), serde_json::json!(s));
        }
        RunData {
            id: name.replace(' ', "-"),
            name: name.to_string(),
            model: "cnn".into(),
            factors,
            params: 10,
            state: "finished".into(),
            attempts: 1,
            wall_s: 1.0,
            epochs,
            error: None,
        }
    }

    #[test]
    fn best_epoch_is_the_first_maximum_and_nan_is_skipped() {
        let r = run(
            "a",
            None,
            vec![
                epoch(1, 0.5, 1.0, 0.4, 100.0),
                epoch(2, 0.7, 0.8, 0.6, f64::NAN),
                epoch(3, f64::NAN, 0.9, 0.9, 300.0),
                epoch(4, 0.7, f64::NAN, 0.95, 200.0),
            ],
        );
        let s = RunSummary::of(&r);
        assert_eq!(s.best_eval_acc, Some(0.7));
        assert_eq!(s.best_epoch, Some(2));
        assert_eq!(s.final_eval_loss, None, "the last epoch's loss is NaN");
        assert_eq!(s.train_acc, Some(0.95));
        assert_eq!(s.images_per_sec, Some(200.0));
        assert_eq!(s.epochs_done, 4);
        assert!((s.gap_points().unwrap() - 25.0).abs() < 1e-9);
        assert!(s.overfits());
    }

    #[test]
    fn a_run_without_epochs_has_no_numbers() {
        let s = RunSummary::of(&run("a", None, vec![]));
        assert_eq!(s, RunSummary::default());
        assert!(!s.overfits());
    }

    #[test]
    fn std_is_the_sample_std() {
        assert_eq!(sample_std(&[1.0]), None);
        let s = sample_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        // Population std is 2; the sample std is 2·sqrt(8/7).
        assert!((s - 2.0 * (8.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn seeds_are_grouped_and_order_is_by_best_accuracy() {
        let data = ReportData {
            experiment: ExperimentInfo {
                id: "e".into(),
                name: "g".into(),
                state: "running".into(),
            },
            runs: vec![
                run(
                    "cnn bn=true seed=1",
                    Some(1),
                    vec![epoch(1, 0.6, 1.0, 0.6, 1.0)],
                ),
                run(
                    "cnn bn=false seed=1",
                    Some(1),
                    vec![epoch(1, 0.9, 1.0, 0.6, 1.0)],
                ),
                run(
                    "cnn bn=true seed=2",
                    Some(2),
                    vec![epoch(1, 0.8, 1.0, 0.6, 1.0)],
                ),
                run("cnn bn=false seed=2", Some(2), vec![]),
            ],
            early_stopping: None,
            claims: Vec::new(),
        };
        let summaries: Vec<RunSummary> = data.runs.iter().map(RunSummary::of).collect();
        assert_eq!(table_order(&data, &summaries), vec![1, 2, 0, 3]);
        let groups = seed_groups(&data, &summaries);
        assert_eq!(groups.len(), 2);
        // bn=false (0.9, one run with an epoch) before bn=true (mean 0.7).
        assert_eq!(groups[0].label, "cnn bn=false");
        assert_eq!(groups[0].runs, vec![1, 3]);
        assert_eq!(
            groups[0].best_eval_acc.unwrap().n,
            1,
            "one of its runs has no epoch"
        );
        assert_eq!(groups[1].label, "cnn bn=true");
        assert_eq!(groups[1].runs, vec![0, 2]);
        let acc = groups[1].best_eval_acc.unwrap();
        assert!((acc.mean - 0.7).abs() < 1e-12);
        assert!((acc.std.unwrap() - (0.02f64).sqrt()).abs() < 1e-12);
        assert!(has_repeats(&groups));
        assert!(is_partial(&data));
    }
}
