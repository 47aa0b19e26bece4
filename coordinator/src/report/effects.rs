//! Factor effects of a factorial grid: for each factor and level, the mean best eval
//! accuracy of the runs that share the level (averaged over every other factor), its
//! difference to the factor's baseline level, and how much that difference varies between
//! seeds.
//!
//! # Rules
//! - A factor is a key of the runs' `factors` other than `seed` that takes at least two
//!   values among the runs that have a best eval accuracy (runs without an epoch yet do not
//!   count; in a partial report the numbers are those of the epochs so far).
//! - Levels are listed in order of first appearance in submission order, which is the
//!   order of the grid's arrays. The **baseline** is the first level: the value of the
//!   first submitted run, i.e. the first entry of the factor's grid array.
//! - The difference is `mean(level) − mean(baseline)` in accuracy points. With a full
//!   factorial grid this is the factor's main effect.
//! - The spread over seeds: for each seed that both levels have, the same difference
//!   restricted to that seed's runs; the spread is the sample standard deviation of those
//!   per-seed differences (`None` with fewer than two seeds).
//! - Factors are ordered by their largest absolute difference, the most influential first.

use std::collections::BTreeSet;

use super::data::ReportData;
use super::summary::{mean, sample_std, MeanStd, RunSummary, SEED_KEY};

/// One level of a factor.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelEffect {
    /// The level's value as the grid wrote it.
    pub value: serde_json::Value,
    /// Its display form (`gap`, `true`, `0.5`).
    pub label: String,
    /// Best eval accuracy (fraction) over the runs at this level: mean, std, count.
    pub acc: MeanStd,
    /// `mean − baseline mean`, in accuracy points; `None` for the baseline itself.
    pub delta_points: Option<f64>,
    /// Sample standard deviation of the per-seed difference, in points.
    pub seed_spread_points: Option<f64>,
    /// How many seeds the per-seed differences were computed over.
    pub seeds_compared: usize,
}

/// Every level of one factor.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorEffect {
    /// The grid key (`head`, `batch_norm`).
    pub factor: String,
    /// Levels in grid order; the first is the baseline.
    pub levels: Vec<LevelEffect>,
}

impl FactorEffect {
    /// The baseline level.
    pub fn baseline(&self) -> &LevelEffect {
        &self.levels[0]
    }

    /// Largest absolute difference of a level to the baseline, in points.
    pub fn strength(&self) -> f64 {
        self.levels
            .iter()
            .filter_map(|l| l.delta_points)
            .map(f64::abs)
            .fold(0.0, f64::max)
    }

    /// One plain sentence: `head=gap: +24.8 points on average over 16 runs (baseline
    /// head=fc: 61.2 % over 16 runs; spread over 2 seeds ±1.3).`
    pub fn sentence(&self) -> String {
        let base = self.baseline();
        let parts: Vec<String> = self.levels[1..]
            .iter()
            .map(|l| {
                let delta = l.delta_points.unwrap_or(0.0);
                let mut s = format!(
                    "{}={}: {} points on average over {} run{}",
                    self.factor,
                    l.label,
                    signed(delta),
                    l.acc.n,
                    if l.acc.n == 1 { "" } else { "s" }
                );
                if let Some(spread) = l.seed_spread_points {
                    s.push_str(&format!(" (±{spread:.1} over {} seeds)", l.seeds_compared));
                }
                s
            })
            .collect();
        format!(
            "{}; baseline {}={} at {:.1} % over {} run{}.",
            parts.join("; "),
            self.factor,
            base.label,
            base.acc.mean * 100.0,
            base.acc.n,
            if base.acc.n == 1 { "" } else { "s" }
        )
    }
}

/// A signed number of points with one decimal (`+24.8`, `-3.0`, `+0.0`).
pub fn signed(points: f64) -> String {
    let rounded = (points * 10.0).round() / 10.0;
    if rounded >= 0.0 {
        format!("+{:.1}", rounded.abs())
    } else {
        format!("{rounded:.1}")
    }
}

/// The display form of a factor value: strings bare, anything else as JSON.
pub fn level_label(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Factor effects of the experiment (see the module's rules). Empty when nothing varies.
pub fn factor_effects(data: &ReportData, summaries: &[RunSummary]) -> Vec<FactorEffect> {
    let keys: BTreeSet<&String> = data
        .runs
        .iter()
        .flat_map(|r| r.factors.keys())
        .filter(|k| *k != SEED_KEY)
        .collect();
    let mut effects = Vec::new();
    for key in keys {
        // (level, seed, best acc) of every run that has the factor and an accuracy.
        let mut observations: Vec<(String, Option<String>, f64)> = Vec::new();
        let mut levels: Vec<(String, serde_json::Value)> = Vec::new();
        for (run, summary) in data.runs.iter().zip(summaries) {
            let (Some(value), Some(acc)) = (run.factors.get(key), summary.best_eval_acc) else {
                continue;
            };
            let level = value.to_string();
            if !levels.iter().any(|(l, _)| *l == level) {
                levels.push((level.clone(), value.clone()));
            }
            let seed = run.factors.get(SEED_KEY).map(|s| s.to_string());
            observations.push((level, seed, acc));
        }
        if levels.len() < 2 {
            continue;
        }
        let accs = |level: &str, seed: Option<&Option<String>>| -> Vec<f64> {
            observations
                .iter()
                .filter(|(l, s, _)| l == level && seed.is_none_or(|want| s == want))
                .map(|(_, _, a)| *a)
                .collect()
        };
        let seeds: Vec<Option<String>> = {
            let mut seen: Vec<Option<String>> = Vec::new();
            for (_, s, _) in &observations {
                if s.is_some() && !seen.contains(s) {
                    seen.push(s.clone());
                }
            }
            seen
        };
        let base_level = levels[0].0.clone();
        let base_mean = mean(&accs(&base_level, None)).expect("the baseline has a run");
        let level_effects = levels
            .into_iter()
            .enumerate()
            .map(|(i, (level, value))| {
                let acc = MeanStd::of(&accs(&level, None)).expect("every level has a run");
                let (delta_points, seed_spread_points, seeds_compared) = if i == 0 {
                    (None, None, 0)
                } else {
                    let per_seed: Vec<f64> = seeds
                        .iter()
                        .filter_map(|s| {
                            let here = mean(&accs(&level, Some(s)))?;
                            let base = mean(&accs(&base_level, Some(s)))?;
                            Some((here - base) * 100.0)
                        })
                        .collect();
                    (
                        Some((acc.mean - base_mean) * 100.0),
                        sample_std(&per_seed),
                        per_seed.len(),
                    )
                };
                LevelEffect {
                    label: level_label(&value),
                    value,
                    acc,
                    delta_points,
                    seed_spread_points,
                    seeds_compared,
                }
            })
            .collect();
        effects.push(FactorEffect {
            factor: key.clone(),
            levels: level_effects,
        });
    }
    effects.sort_by(|a, b| b.strength().total_cmp(&a.strength()));
    effects
}

/// Whether effects say more than the runs table: several factors vary, or some level
/// averages over more than one run.
pub fn worth_showing(effects: &[FactorEffect]) -> bool {
    effects.len() >= 2 || effects.iter().any(|f| f.levels.iter().any(|l| l.acc.n > 1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::data::{ExperimentInfo, RunData};
    use ablate_common::metrics::EpochRecord;
    use serde_json::json;

    fn run(head: &str, bn: bool, seed: u64, acc: f64) -> RunData {
        let factors: BTreeMap<String, serde_json::Value> = [
            ("head".to_string(), json!(head)),
            ("batch_norm".to_string(), json!(bn)),
            ("seed".to_string(), json!(seed)),
        ]
        .into_iter()
        .collect();
        RunData {
            id: format!("{head}-{bn}-{seed}"),
            name: format!("cnn head={head} bn={bn} seed={seed}"),
            model: "cnn".into(),
            factors,
            params: 1,
            state: "finished".into(),
            attempts: 1,
            wall_s: 1.0,
            epochs: vec![EpochRecord {
                epoch: 1,
                train_loss: 1.0,
                train_acc: acc,
                eval_loss: 1.0,
                eval_acc: acc,
                lr: 0.1,
                seconds: 1.0,
                images_per_sec: 1.0,
            }],
            error: None,
        }
    }

    #[test]
    fn main_effects_of_a_two_by_two_with_two_seeds() {
        // head: fc first (baseline). gap adds 0.20 with seed 1, 0.30 with seed 2.
        // batch_norm: false first (baseline); true adds 0.10 everywhere.
        let runs = vec![
            run("fc", false, 1, 0.40),
            run("fc", true, 1, 0.50),
            run("gap", false, 1, 0.60),
            run("gap", true, 1, 0.70),
            run("fc", false, 2, 0.40),
            run("fc", true, 2, 0.50),
            run("gap", false, 2, 0.70),
            run("gap", true, 2, 0.80),
        ];
        let data = ReportData {
            experiment: ExperimentInfo {
                id: "e".into(),
                name: "g".into(),
                state: "finished".into(),
            },
            runs,
            early_stopping: None,
            claims: Vec::new(),
        };
        let summaries: Vec<RunSummary> = data.runs.iter().map(RunSummary::of).collect();
        let effects = factor_effects(&data, &summaries);
        assert_eq!(effects.len(), 2);
        assert!(worth_showing(&effects));
        // head has the larger effect, so it comes first.
        let head = &effects[0];
        assert_eq!(head.factor, "head");
        assert_eq!(head.baseline().label, "fc");
        assert_eq!(head.levels[1].label, "gap");
        assert_eq!(head.levels[1].acc.n, 4);
        assert!((head.levels[1].delta_points.unwrap() - 25.0).abs() < 1e-9);
        // Per-seed differences 20 and 30 → sample std 7.07.
        let spread = head.levels[1].seed_spread_points.unwrap();
        assert!((spread - 50f64.sqrt()).abs() < 1e-9, "{spread}");
        assert_eq!(head.levels[1].seeds_compared, 2);
        let bn = &effects[1];
        assert_eq!(bn.baseline().label, "false");
        assert!((bn.levels[1].delta_points.unwrap() - 10.0).abs() < 1e-9);
        assert!(bn.levels[1].seed_spread_points.unwrap().abs() < 1e-9);
        assert_eq!(
            head.sentence(),
            "head=gap: +25.0 points on average over 4 runs (±7.1 over 2 seeds); \
             baseline head=fc at 45.0 % over 4 runs."
        );
    }

    #[test]
    fn nothing_varies_nothing_to_show() {
        let data = ReportData {
            experiment: ExperimentInfo {
                id: "e".into(),
                name: "g".into(),
                state: "finished".into(),
            },
            runs: vec![run("fc", false, 1, 0.4), run("fc", false, 2, 0.5)],
            early_stopping: None,
            claims: Vec::new(),
        };
        let summaries: Vec<RunSummary> = data.runs.iter().map(RunSummary::of).collect();
        let effects = factor_effects(&data, &summaries);
        assert!(effects.is_empty());
        assert!(!worth_showing(&effects));
    }

    #[test]
    fn signed_points() {
        assert_eq!(signed(24.84), "+24.8");
        assert_eq!(signed(-3.0), "-3.0");
        assert_eq!(signed(-0.04), "+0.0");
    }
}
