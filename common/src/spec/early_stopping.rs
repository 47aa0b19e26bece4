//! The `[early_stopping]` section of a grid: which rule stops hopeless variants, on which
//! metric, after how many epochs, and how much compute that can save.
//!
//! ```toml
//! [early_stopping]
//! rule = "median"        # or "asha"
//! metric = "eval_acc"    # eval_acc | eval_loss | train_acc | train_loss
//! mode = "max"           # optional: max for accuracies, min for losses
//! grace_epochs = 2       # no run is judged before this epoch (ASHA's first rung)
//! min_runs = 3           # other variants that must have reached an epoch to judge it
//! eta = 3                # asha: keep the top 1/eta at each rung
//! max_rungs = 3          # asha: at most this many rungs (default: all that fit)
//! group_seeds = true     # runs that differ only by seed are judged as one variant
//! ```
//!
//! The section is parsed on its own ([`parse_section`]) so that the coordinator can read
//! it back from a stored grid without expanding the grid again ([`stored_early_stopping`]).

use serde::{Deserialize, Serialize};

use super::run::RunSpec;

/// The keys `[early_stopping]` may have.
pub const KEYS: &[&str] = &[
    "rule",
    "metric",
    "mode",
    "grace_epochs",
    "min_runs",
    "eta",
    "max_rungs",
    "group_seeds",
];

/// The largest `eta` and `max_rungs` a grid may ask for.
pub const MAX_ETA: u32 = 100;

/// Which rule judges the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Stop a variant whose best metric so far is below the median of the others' at the
    /// same epoch, at every epoch from `grace_epochs` on.
    Median,
    /// Asynchronous successive halving: at rungs `grace·eta^k`, keep the top `1/eta`.
    Asha,
}

impl Rule {
    /// The rule's name as written in a grid.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Median => "median",
            Rule::Asha => "asha",
        }
    }
}

/// The epoch metric the rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Accuracy on the eval split.
    EvalAcc,
    /// Cross-entropy on the eval split.
    EvalLoss,
    /// Training accuracy of the epoch.
    TrainAcc,
    /// Mean training loss of the epoch.
    TrainLoss,
}

impl Metric {
    /// The metric's name as written in a grid.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::EvalAcc => "eval_acc",
            Metric::EvalLoss => "eval_loss",
            Metric::TrainAcc => "train_acc",
            Metric::TrainLoss => "train_loss",
        }
    }

    /// The direction in which the metric improves.
    pub fn natural_mode(self) -> Mode {
        match self {
            Metric::EvalAcc | Metric::TrainAcc => Mode::Max,
            Metric::EvalLoss | Metric::TrainLoss => Mode::Min,
        }
    }

    /// The metric's value in an epoch record (`NaN` when the epoch has none).
    pub fn of(self, epoch: &crate::metrics::EpochRecord) -> f64 {
        match self {
            Metric::EvalAcc => epoch.eval_acc,
            Metric::EvalLoss => epoch.eval_loss,
            Metric::TrainAcc => epoch.train_acc,
            Metric::TrainLoss => epoch.train_loss,
        }
    }

    fn parse(text: &str) -> Option<Metric> {
        Some(match text {
            "eval_acc" => Metric::EvalAcc,
            "eval_loss" => Metric::EvalLoss,
            "train_acc" => Metric::TrainAcc,
            "train_loss" => Metric::TrainLoss,
            _ => return None,
        })
    }
}

/// Whether a larger or a smaller metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Larger is better.
    Max,
    /// Smaller is better.
    Min,
}

impl Mode {
    /// `max` or `min`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Max => "max",
            Mode::Min => "min",
        }
    }
}

/// A validated `[early_stopping]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// The rule.
    pub rule: Rule,
    /// The metric compared.
    pub metric: Metric,
    /// Its direction.
    pub mode: Mode,
    /// No run is judged before this epoch (1-based); ASHA's first rung.
    pub grace_epochs: u32,
    /// Other variants that must have a value at an epoch before a variant is judged there.
    pub min_runs: u32,
    /// ASHA's reduction factor: each rung keeps the top `1/eta` (rounded up).
    pub eta: u32,
    /// ASHA: at most this many rungs (`None`: every rung below the last epoch).
    pub max_rungs: Option<u32>,
    /// Whether runs that differ only by seed are judged together, as one variant.
    pub group_seeds: bool,
}

/// Default of `grace_epochs`.
pub const DEFAULT_GRACE_EPOCHS: u32 = 1;
/// Default of `min_runs`.
pub const DEFAULT_MIN_RUNS: u32 = 3;
/// Default of `eta`.
pub const DEFAULT_ETA: u32 = 3;

/// What is wrong with a section, and the key to blame (empty: the section itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionError {
    /// The key under `[early_stopping]`, when one is to blame.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn bad(key: &str, message: impl Into<String>) -> SectionError {
    SectionError {
        key: Some(key.to_string()),
        message: format!("early_stopping.{key}: {}", message.into()),
    }
}

fn integer(
    table: &toml::Table,
    key: &str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, SectionError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if (i64::from(min)..=i64::from(max)).contains(n) => {
            Ok(Some(*n as u32))
        }
        Some(other) => Err(bad(
            key,
            format!("must be an integer from {min} to {max}, not {other}"),
        )),
    }
}

fn string<'a>(table: &'a toml::Table, key: &str) -> Result<Option<&'a str>, SectionError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(bad(
            key,
            format!("must be a string, not {}", other.type_str()),
        )),
    }
}

/// Parses and checks the section's own keys (not yet against the grid's runs).
pub fn parse_section(value: &toml::Value) -> Result<EarlyStopping, SectionError> {
    let toml::Value::Table(table) = value else {
        return Err(SectionError {
            key: None,
            message: format!(
                "`early_stopping` must be a table ([early_stopping]), not {}",
                value.type_str()
            ),
        });
    };
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(
            key,
            format!("unknown key (the section has: {})", KEYS.join(", ")),
        ));
    }
    let rule = match string(table, "rule")? {
        Some("median") => Rule::Median,
        Some("asha") => Rule::Asha,
        Some(other) => {
            return Err(bad(
                "rule",
                format!("unknown rule `{other}` (expected \"median\" or \"asha\")"),
            ))
        }
        None => {
            return Err(SectionError {
                key: None,
                message: "early_stopping: missing `rule = \"median\"` or `rule = \"asha\"`"
                    .to_string(),
            })
        }
    };
    let metric = match string(table, "metric")? {
        Some(text) => Metric::parse(text).ok_or_else(|| {
            bad(
                "metric",
                format!(
                    "unknown metric `{text}` (expected eval_acc, eval_loss, train_acc or \
                     train_loss)"
                ),
            )
        })?,
        None => Metric::EvalAcc,
    };
    let mode = match string(table, "mode")? {
        None => metric.natural_mode(),
        Some(text) => {
            let mode = match text {
                "max" => Mode::Max,
                "min" => Mode::Min,
                other => {
                    return Err(bad(
                        "mode",
                        format!("unknown mode `{other}` (expected \"max\" or \"min\")"),
                    ))
                }
            };
            if mode != metric.natural_mode() {
                return Err(bad(
                    "mode",
                    format!(
                        "`{}` improves towards {}; mode = \"{}\" would keep the worst runs",
                        metric.as_str(),
                        metric.natural_mode().as_str(),
                        mode.as_str()
                    ),
                ));
            }
            mode
        }
    };
    let grace_epochs =
        integer(table, "grace_epochs", 1, 1_000_000)?.unwrap_or(DEFAULT_GRACE_EPOCHS);
    let min_runs = integer(table, "min_runs", 1, 10_000)?.unwrap_or(DEFAULT_MIN_RUNS);
    let eta = integer(table, "eta", 2, MAX_ETA)?;
    let max_rungs = integer(table, "max_rungs", 1, MAX_ETA)?;
    if rule == Rule::Median {
        for key in ["eta", "max_rungs"] {
            if table.contains_key(key) {
                return Err(bad(
                    key,
                    "only the asha rule has rungs (the median rule judges every epoch)",
                ));
            }
        }
    }
    let group_seeds = match table.get("group_seeds") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            return Err(bad(
                "group_seeds",
                format!("must be true or false, not {other}"),
            ))
        }
    };
    Ok(EarlyStopping {
        rule,
        metric,
        mode,
        grace_epochs,
        min_runs,
        eta: eta.unwrap_or(DEFAULT_ETA),
        max_rungs,
        group_seeds,
    })
}

/// The section of a grid that was accepted before (its text is stored): `None` when it
/// has none or it does not parse. Reads only that section, without expanding the grid.
pub fn stored_early_stopping(text: &str) -> Option<EarlyStopping> {
    let table: toml::Table = toml::from_str(text).ok()?;
    parse_section(table.get("early_stopping")?).ok()
}

impl EarlyStopping {
    /// The epochs at which a run of `epochs` epochs is judged, ascending: every epoch from
    /// `grace_epochs` to the one before the last (median), or `grace·eta^k` below the
    /// last epoch (ASHA). Judging at the last epoch would save nothing.
    pub fn rungs(&self, epochs: u32) -> Vec<u32> {
        match self.rule {
            Rule::Median => (self.grace_epochs..epochs).collect(),
            Rule::Asha => {
                let mut out = Vec::new();
                let mut rung = u64::from(self.grace_epochs);
                while rung < u64::from(epochs)
                    && self.max_rungs.is_none_or(|m| out.len() < m as usize)
                {
                    out.push(rung as u32);
                    rung *= u64::from(self.eta);
                }
                out
            }
        }
    }

    /// One line describing the rule (`median of eval_acc (max) from epoch 2, ≥ 3 other
    /// variants, seeds judged together`).
    pub fn describe(&self) -> String {
        let rule = match self.rule {
            Rule::Median => format!("median rule from epoch {}", self.grace_epochs),
            Rule::Asha => format!(
                "ASHA (eta {}, keep the top 1/{} at each rung)",
                self.eta, self.eta
            ),
        };
        format!(
            "{rule} on {} ({}), at least {} other variant{} to compare, seeds {}",
            self.metric.as_str(),
            self.mode.as_str(),
            self.min_runs,
            if self.min_runs == 1 { "" } else { "s" },
            if self.group_seeds {
                "judged together"
            } else {
                "judged one by one"
            }
        )
    }

    /// Group-epochs trained by `variants` variants of `epochs` epochs: (worst case, every
    /// run to the end; expected). Expected for ASHA: each rung keeps exactly the top
    /// `1/eta` (rounded up). Expected for the median rule: the lower half of the variants
    /// stops at the grace epoch (a variant below the median of the others), the rest run
    /// to the end.
    pub fn variant_epochs(&self, variants: u32, epochs: u32) -> (u64, u64) {
        let worst = u64::from(variants) * u64::from(epochs);
        let can_judge = variants > self.min_runs;
        let rungs = self.rungs(epochs);
        if !can_judge || rungs.is_empty() {
            return (worst, worst);
        }
        let expected = match self.rule {
            Rule::Median => {
                let stopped = u64::from((variants - 1) / 2);
                let kept = u64::from(variants) - stopped;
                stopped * u64::from(rungs[0]) + kept * u64::from(epochs)
            }
            Rule::Asha => {
                let mut alive = u64::from(variants);
                let mut total = 0;
                let mut from = 0u64;
                for &rung in &rungs {
                    total += alive * (u64::from(rung) - from);
                    from = u64::from(rung);
                    alive = alive.div_ceil(u64::from(self.eta));
                }
                total + alive * (u64::from(epochs) - from)
            }
        };
        (worst, expected)
    }
}

/// The variant a run belongs to: runs with the same key are judged together. With
/// `group_seeds`, the spec without its seed; otherwise the whole spec.
pub fn variant_key(spec: &RunSpec, group_seeds: bool) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if group_seeds {
        if let Some(object) = value.as_object_mut() {
            object.remove("seed");
        }
    }
    value.to_string()
}

/// Checks the section against the grid's runs; on error, the key to blame and why.
pub(crate) fn check_against_runs(
    stopping: &EarlyStopping,
    runs: &[super::grid::PlannedRun],
) -> Result<(), (&'static str, String)> {
    let longest = runs.iter().map(|r| r.spec.epochs).max().unwrap_or(0);
    if stopping.rungs(longest).is_empty() {
        return Err((
            "grace_epochs",
            format!(
                "early_stopping.grace_epochs = {}: the longest run trains {longest} epoch{}, and \
                 a run is never judged at its last epoch, so no run could ever be stopped",
                stopping.grace_epochs,
                if longest == 1 { "" } else { "s" }
            ),
        ));
    }
    let variants = plan(stopping, runs).variants;
    if variants <= stopping.min_runs as usize {
        return Err((
            "min_runs",
            format!(
                "early_stopping.min_runs = {}: the grid has {variants} variant{}{}, so no \
                 variant ever has {} others to be compared with",
                stopping.min_runs,
                if variants == 1 { "" } else { "s" },
                if stopping.group_seeds {
                    " (runs that differ only by seed count once)"
                } else {
                    ""
                },
                stopping.min_runs
            ),
        ));
    }
    Ok(())
}

/// What early stopping can do to a grid, as `ablate validate` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoppingPlan {
    /// Variants judged (runs that share a variant key count once).
    pub variants: usize,
    /// The epochs at which the longest run is judged.
    pub rungs: Vec<u32>,
    /// Run-epochs when every run trains to the end.
    pub worst_run_epochs: f64,
    /// Run-epochs expected with the rule (see [`EarlyStopping::variant_epochs`]).
    pub expected_run_epochs: f64,
    /// Training FLOPs when every run trains to the end, and expected (runs whose cost is
    /// unknown are left out of both).
    pub worst_flops: f64,
    /// See `worst_flops`.
    pub expected_flops: f64,
}

/// The variants, rungs and the worst-case and expected compute of a grid's runs.
pub fn plan(stopping: &EarlyStopping, runs: &[super::grid::PlannedRun]) -> StoppingPlan {
    let mut keys: Vec<String> = runs
        .iter()
        .map(|r| variant_key(&r.spec, stopping.group_seeds))
        .collect();
    keys.sort();
    keys.dedup();
    let variants = keys.len();
    let longest = runs.iter().map(|r| r.spec.epochs).max().unwrap_or(0);
    let mut out = StoppingPlan {
        variants,
        rungs: stopping.rungs(longest),
        worst_run_epochs: 0.0,
        expected_run_epochs: 0.0,
        worst_flops: 0.0,
        expected_flops: 0.0,
    };
    for run in runs {
        let epochs = run.spec.epochs;
        let (worst, expected) =
            stopping.variant_epochs(variants.min(u32::MAX as usize) as u32, epochs);
        let share = if worst == 0 {
            1.0
        } else {
            expected as f64 / worst as f64
        };
        out.worst_run_epochs += f64::from(epochs);
        out.expected_run_epochs += f64::from(epochs) * share;
        if let Some(flops) = run.train_flops() {
            out.worst_flops += flops;
            out.expected_flops += flops * share;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<EarlyStopping, SectionError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse_section(&toml::Value::Table(table))
    }

    #[test]
    fn defaults_follow_the_metric() {
        let s = section("rule = \"median\"").unwrap();
        assert_eq!(s.metric, Metric::EvalAcc);
        assert_eq!(s.mode, Mode::Max);
        assert_eq!((s.grace_epochs, s.min_runs), (1, 3));
        assert!(s.group_seeds);
        let s = section("rule = \"asha\"\nmetric = \"eval_loss\"\ngroup_seeds = false").unwrap();
        assert_eq!(s.mode, Mode::Min);
        assert_eq!(s.eta, 3);
        assert!(!s.group_seeds);
    }

    #[test]
    fn bad_keys_name_themselves() {
        let key = |text: &str| section(text).unwrap_err().key;
        assert_eq!(key("rule = \"median\"\ngrace = 2"), Some("grace".into()));
        assert_eq!(key("rule = \"hyperband\""), Some("rule".into()));
        assert_eq!(key("rule = \"asha\"\neta = 1"), Some("eta".into()));
        assert_eq!(key("rule = \"median\"\neta = 3"), Some("eta".into()));
        assert_eq!(
            key("rule = \"median\"\nmetric = \"acc\""),
            Some("metric".into())
        );
        assert_eq!(
            key("rule = \"median\"\nmetric = \"eval_loss\"\nmode = \"max\""),
            Some("mode".into())
        );
        assert_eq!(
            key("rule = \"median\"\ngrace_epochs = 0"),
            Some("grace_epochs".into())
        );
        assert_eq!(
            key("rule = \"median\"\ngroup_seeds = 1"),
            Some("group_seeds".into())
        );
        assert_eq!(key("metric = \"eval_acc\""), None);
        let e = section("rule = \"asha\"\neta = 1").unwrap_err();
        assert_eq!(
            e.message,
            "early_stopping.eta: must be an integer from 2 to 100, not 1"
        );
    }

    #[test]
    fn asha_rungs_grow_by_eta_below_the_last_epoch() {
        let s = section("rule = \"asha\"\ngrace_epochs = 2\neta = 3").unwrap();
        assert_eq!(s.rungs(60), vec![2, 6, 18, 54]);
        assert_eq!(s.rungs(54), vec![2, 6, 18]);
        assert_eq!(s.rungs(2), Vec::<u32>::new());
        let capped = section("rule = \"asha\"\ngrace_epochs = 2\nmax_rungs = 2").unwrap();
        assert_eq!(capped.rungs(60), vec![2, 6]);
        let median = section("rule = \"median\"\ngrace_epochs = 3").unwrap();
        assert_eq!(median.rungs(6), vec![3, 4, 5]);
    }

    #[test]
    fn expected_compute() {
        // 9 variants, 27 epochs, rungs 1, 3, 9: 9×1 + 3×2 + 1×6 + 1×18 = 39.
        let s = section("rule = \"asha\"\ngrace_epochs = 1\nmin_runs = 2").unwrap();
        assert_eq!(s.variant_epochs(9, 27), (243, 9 + 6 + 6 + 18));
        // Median, 5 variants, 10 epochs, grace 2: 2 stop at 2, 3 run 10.
        let m = section("rule = \"median\"\ngrace_epochs = 2\nmin_runs = 2").unwrap();
        assert_eq!(m.variant_epochs(5, 10), (50, 2 * 2 + 3 * 10));
        // Too few variants to compare: nothing is saved.
        assert_eq!(m.variant_epochs(2, 10), (20, 20));
    }

    #[test]
    fn stored_sections_are_read_back() {
        let text = "name = \"g\"\n[early_stopping]\nrule = \"asha\"\neta = 2\n";
        assert_eq!(stored_early_stopping(text).unwrap().eta, 2);
        assert_eq!(stored_early_stopping("name = \"g\"\n"), None);
    }
}
