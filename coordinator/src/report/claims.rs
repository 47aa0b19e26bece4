//! The report's "Claims" section: each claim of the grid judged on the runs it selects
//! ([`crate::report::verdict::judge`]), and the text and CSV cells every renderer shares.

use std::collections::HashMap;

use ablate_common::spec::claims::{Claim, ClaimForm, ClaimSide, Metric};
use serde::{Deserialize, Serialize};

use super::csv::field;
use super::data::{ReportData, RunData};
use super::summary::{MeanStd, RunSummary, SEED_KEY};
use crate::report::verdict::{judge, p_text, Evidence, Outcome, RunObservation, Verdict};

/// Run states whose numbers are final: finished, or stopped early on purpose.
pub const JUDGED_STATES: [&str; 2] = ["finished", "stopped"];

/// The claims of a stored grid (accepted when it was submitted). A grid that no longer
/// parses (a catalogue change since) has its claims left out of the report, with a warning.
pub fn claims_of_grid(grid_toml: &str, file_name: &str) -> Vec<Claim> {
    if !grid_toml.contains("claims") {
        return Vec::new();
    }
    match ablate_common::spec::grid::parse_grid(grid_toml, file_name) {
        Ok(grid) => grid.claims,
        Err(e) => {
            tracing::warn!(error = %e, "the stored grid no longer parses; its claims are left out of the report");
            Vec::new()
        }
    }
}

/// One sentence over all verdicts: `3 claims: 2 hold, 1 fails.`, plus a caveat when some
/// selected runs are not finished.
pub fn overview(verdicts: &[ClaimVerdict<'_>]) -> String {
    let count = |o: Outcome| verdicts.iter().filter(|v| v.verdict.outcome == o).count();
    let (holds, fails, open) = (
        count(Outcome::Holds),
        count(Outcome::Fails),
        count(Outcome::Inconclusive),
    );
    let mut parts = Vec::new();
    if holds > 0 {
        parts.push(format!("{holds} hold{}", if holds == 1 { "s" } else { "" }));
    }
    if fails > 0 {
        parts.push(format!("{fails} fail{}", if fails == 1 { "s" } else { "" }));
    }
    if open > 0 {
        parts.push(format!("{open} inconclusive"));
    }
    let mut text = format!(
        "{} claim{}: {}. A claim holds when its difference beyond the margin is significantly \
         positive over seeds (one-sided t test at the claim's alpha, paired by seed), fails \
         when it is significantly negative or every seed ties, and is inconclusive otherwise; \
         with one seed the verdict is a single, untested observation.",
        verdicts.len(),
        if verdicts.len() == 1 { "" } else { "s" },
        parts.join(", ")
    );
    if verdicts.iter().any(|v| v.verdict.partial) {
        text.push_str(
            " Some selected runs are not finished: those verdicts judge the finished runs only \
             and may change.",
        );
    }
    text
}

/// A claim with its verdict.
#[derive(Debug, Clone)]
pub struct ClaimVerdict<'a> {
    /// The claim as the grid states it.
    pub claim: &'a Claim,
    /// How the data judge it.
    pub verdict: Verdict,
}

/// The verdicts on every claim of `data`, in the grid's order.
pub fn verdicts<'a>(data: &'a ReportData, summaries: &[RunSummary]) -> Vec<ClaimVerdict<'a>> {
    if data.claims.is_empty() {
        return Vec::new();
    }
    let by_name: HashMap<&str, usize> = data
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let runs = Runs {
        data,
        summaries,
        by_name,
    };
    data.claims
        .iter()
        .map(|claim| {
            let mut notes = Vec::new();
            let side = runs.observations(claim.metric, &claim.side, &mut notes);
            let than = match &claim.than {
                Some(than) => runs.observations(claim.metric, than, &mut notes),
                None => Vec::new(),
            };
            let mut verdict = judge(claim, &side, &than);
            verdict.notes.extend(notes);
            ClaimVerdict { claim, verdict }
        })
        .collect()
}

/// The experiment's runs with their summaries, found by name.
struct Runs<'a> {
    data: &'a ReportData,
    summaries: &'a [RunSummary],
    by_name: HashMap<&'a str, usize>,
}

impl Runs<'_> {
    /// The observations of one side's runs; notes missing runs and censored values.
    fn observations(
        &self,
        metric: Metric,
        side: &ClaimSide,
        notes: &mut Vec<String>,
    ) -> Vec<RunObservation> {
        let mut censored = 0;
        let mut out = Vec::with_capacity(side.runs.len());
        for name in &side.runs {
            let Some(&i) = self.by_name.get(name.as_str()) else {
                notes.push(format!("run `{name}` is not in the experiment"));
                continue;
            };
            let run = &self.data.runs[i];
            let (value, was_censored) = metric_value(metric, run, &self.summaries[i]);
            let done = JUDGED_STATES.contains(&run.state.as_str());
            if done && was_censored {
                censored += 1;
            }
            out.push(RunObservation {
                seed: run
                    .factors
                    .get(SEED_KEY)
                    .map(super::effects::level_label)
                    .unwrap_or_default(),
                done,
                value,
            });
        }
        if censored > 0 {
            if let Metric::EpochsToEvalAcc { threshold } = metric {
                notes.push(format!(
                    "{censored} run(s) never reached {} eval accuracy and count as one epoch \
                     more than they trained",
                    super::view::percent(Some(threshold))
                ));
            }
        }
        out
    }
}

/// A run's value of `metric`, and whether it is censored (an `epochs_to_eval_acc` run that
/// never reached the threshold counts as one epoch more than it trained).
pub fn metric_value(metric: Metric, run: &RunData, summary: &RunSummary) -> (Option<f64>, bool) {
    match metric {
        Metric::BestEvalAcc => (summary.best_eval_acc, false),
        Metric::FinalEvalAcc => (summary.final_eval_acc, false),
        Metric::FinalEvalLoss => (summary.final_eval_loss, false),
        Metric::TrainEvalGap => (
            summary
                .train_acc
                .zip(summary.final_eval_acc)
                .map(|(t, e)| t - e),
            false,
        ),
        Metric::EpochsToEvalAcc { threshold } => {
            if run.epochs.is_empty() {
                return (None, false);
            }
            match run.epochs.iter().find(|e| e.eval_acc >= threshold) {
                Some(e) => (Some(f64::from(e.epoch)), false),
                None => (Some(f64::from(summary.epochs_done) + 1.0), true),
            }
        }
    }
}

/// A value of `metric` as text: percent for fractions, 3 decimals for losses, 1 for epochs.
pub fn value_text(metric: Metric, m: Option<MeanStd>) -> String {
    let Some(m) = m else {
        return "–".into();
    };
    let (scale, decimals, unit) = unit(metric);
    match m.std {
        Some(s) => format!(
            "{:.d$} ± {:.d$}{unit} (n={})",
            m.mean * scale,
            s * scale,
            m.n,
            d = decimals
        ),
        None => format!("{:.d$}{unit} (n=1)", m.mean * scale, d = decimals),
    }
}

/// Scale, decimals and unit suffix of a metric's text.
fn unit(metric: Metric) -> (f64, usize, &'static str) {
    match metric {
        Metric::FinalEvalLoss => (1.0, 3, ""),
        Metric::EpochsToEvalAcc { .. } => (1.0, 1, " ep"),
        Metric::TrainEvalGap => (100.0, 1, " pts"),
        _ => (100.0, 1, " %"),
    }
}

/// A signed difference of `metric` as text (`+3.1 pts`, `−0.041`, `+2.0 ep`).
pub fn difference_text(metric: Metric, d: Option<f64>) -> String {
    let Some(d) = d else {
        return "–".into();
    };
    let (scale, decimals, _) = unit(metric);
    let unit = match metric {
        Metric::FinalEvalLoss => "",
        Metric::EpochsToEvalAcc { .. } => " ep",
        _ => " pts",
    };
    let v = d * scale;
    let sign = if v < 0.0 { "−" } else { "+" };
    format!("{sign}{:.d$}{unit}", v.abs(), d = decimals)
}

/// The test behind a verdict, as text.
pub fn evidence_text(metric: Metric, form: ClaimForm, v: &Verdict) -> String {
    match v.evidence {
        Evidence::None => "–".into(),
        Evidence::SingleObservation => "single observation (1 seed), untested".into(),
        Evidence::TTest {
            n,
            p,
            interval,
            level,
            ..
        } => format!(
            "{} t, {n} seeds, {}, {:.0} % CI {} … {}",
            if form.against_chance() {
                "one-sample"
            } else {
                "paired"
            },
            p_text(p),
            level * 100.0,
            difference_text(metric, Some(interval.0)),
            difference_text(metric, Some(interval.1))
        ),
    }
}

/// What a claim compares, in words: `better than` / `overfits less than` / `learns`.
pub fn statement(claim: &Claim) -> String {
    let margin = if claim.margin > 0.0 {
        let shown = match claim.metric {
            Metric::FinalEvalLoss | Metric::EpochsToEvalAcc { .. } => format!("{}", claim.margin),
            _ => format!("{} pts", crate::report::verdict::points(claim.margin)),
        };
        format!(" by more than {shown}")
    } else {
        String::new()
    };
    match (&claim.than, claim.form) {
        (Some(than), ClaimForm::OverfitsLess) => format!(
            "{} overfits less than {}{margin} (train − eval gap)",
            claim.side.selector, than.selector
        ),
        (Some(than), _) => format!(
            "{} better than {} on {}{margin}",
            claim.side.selector,
            than.selector,
            claim.metric.label()
        ),
        (None, ClaimForm::DoesNotLearn) => format!(
            "{} not above chance ({}) on {}{margin}",
            claim.side.selector,
            super::view::percent(claim.chance),
            claim.metric.label()
        ),
        (None, _) => format!(
            "{} above chance ({}) on {}{margin}",
            claim.side.selector,
            super::view::percent(claim.chance),
            claim.metric.label()
        ),
    }
}

/// The comparison column: `side vs than` means, or `side vs chance`.
pub fn comparison_text(cv: &ClaimVerdict<'_>) -> String {
    let metric = cv.claim.metric;
    let side = value_text(metric, cv.verdict.side);
    match &cv.claim.than {
        Some(_) => format!("{side} vs {}", value_text(metric, cv.verdict.than)),
        None => format!("{side} vs chance {}", super::view::percent(cv.claim.chance)),
    }
}

/// Columns of the claims CSV.
pub const CSV_COLUMNS: [&str; 24] = [
    "claim",
    "form",
    "metric",
    "margin",
    "side",
    "side_runs",
    "side_mean",
    "side_std",
    "side_seeds",
    "than",
    "than_runs",
    "than_mean",
    "than_std",
    "than_seeds",
    "chance",
    "difference",
    "test",
    "n",
    "p",
    "ci_low",
    "ci_high",
    "ci_level",
    "verdict",
    "partial",
];

/// The claims as CSV (RFC 4180, `\n` line ends): one row a claim, raw numbers (fractions
/// for accuracies), then the reason and the notes (`; `-separated).
pub fn render_csv(verdicts: &[ClaimVerdict<'_>]) -> String {
    let num = |v: Option<f64>| match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    };
    let mut out = String::new();
    let header: Vec<&str> = CSV_COLUMNS
        .iter()
        .copied()
        .chain(["reason", "notes"])
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for cv in verdicts {
        let (c, v) = (cv.claim, &cv.verdict);
        let (test, n, p, ci) = match v.evidence {
            Evidence::None => ("none", String::new(), None, None),
            Evidence::SingleObservation => ("single_observation", "1".into(), None, None),
            Evidence::TTest {
                n,
                p,
                interval,
                level,
                ..
            } => (
                if c.form.against_chance() {
                    "one_sample_t"
                } else {
                    "paired_t"
                },
                n.to_string(),
                Some(p),
                Some((interval, level)),
            ),
        };
        let row: Vec<String> = vec![
            c.name.clone(),
            c.form.key().into(),
            c.metric.label(),
            num(Some(c.margin)),
            c.side.selector.to_string(),
            c.side.runs.len().to_string(),
            num(v.side.map(|m| m.mean)),
            num(v.side.and_then(|m| m.std)),
            v.side.map(|m| m.n.to_string()).unwrap_or_default(),
            c.than
                .as_ref()
                .map(|t| t.selector.to_string())
                .unwrap_or_default(),
            c.than
                .as_ref()
                .map(|t| t.runs.len().to_string())
                .unwrap_or_default(),
            num(v.than.map(|m| m.mean)),
            num(v.than.and_then(|m| m.std)),
            v.than.map(|m| m.n.to_string()).unwrap_or_default(),
            num(c.chance),
            num(v.difference),
            test.into(),
            n,
            num(p),
            num(ci.map(|((lo, _), _)| lo)),
            num(ci.map(|((_, hi), _)| hi)),
            num(ci.map(|(_, level)| level)),
            v.outcome.as_str().into(),
            v.partial.to_string(),
            v.reason.clone(),
            v.notes.join("; "),
        ];
        let row: Vec<String> = row.iter().map(|f| field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// One claim in `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonClaim {
    /// The claim in words.
    pub name: String,
    /// `better`, `overfits_less` or `learns`.
    pub form: String,
    /// The metric (`best_eval_acc`, `epochs_to_eval_acc(0.8)`, …).
    pub metric: String,
    /// By more than this much, metric units.
    pub margin: f64,
    /// Significance level.
    pub alpha: f64,
    /// Chance accuracy of a `learns` claim.
    pub chance: Option<f64>,
    /// The first side.
    pub side: JsonClaimSide,
    /// `than`; `null` for `learns`.
    pub than: Option<JsonClaimSide>,
    /// `holds`, `fails` or `inconclusive`.
    pub verdict: String,
    /// Mean over paired seeds of side − than (side − chance), metric units.
    pub difference: Option<f64>,
    /// The test behind the verdict.
    pub test: JsonTest,
    /// Why, in one sentence.
    pub reason: String,
    /// Caveats (unfinished runs, missing values, unpaired seeds).
    pub notes: Vec<String>,
    /// Whether some selected runs were not finished.
    pub partial: bool,
}

/// One side of a claim in `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonClaimSide {
    /// The selector as written (`model`, `name`, factor keys).
    pub selector: std::collections::BTreeMap<String, serde_json::Value>,
    /// Names of the runs it selects.
    pub runs: Vec<String>,
    /// Mean of the metric over seeds (per-seed means).
    pub mean: Option<f64>,
    /// Its sample standard deviation over seeds.
    pub std: Option<f64>,
    /// Seeds with a value.
    pub seeds: usize,
}

/// The test of a claim in `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonTest {
    /// `none`, `single_observation`, `paired_t` or `one_sample_t`.
    pub kind: String,
    /// Seeds compared.
    pub n: usize,
    /// The t statistic (`null` when infinite or untested).
    pub t: Option<f64>,
    /// One-sided p-value in the claim's direction.
    pub p: Option<f64>,
    /// Interval of the mean difference, metric units.
    pub interval: Option<[f64; 2]>,
    /// Its level (0.90 for alpha 0.05).
    pub level: Option<f64>,
}

impl JsonClaim {
    /// The JSON form of a verdict.
    pub fn of(cv: &ClaimVerdict<'_>) -> JsonClaim {
        let (c, v) = (cv.claim, &cv.verdict);
        let side = |s: &ClaimSide, m: Option<MeanStd>| JsonClaimSide {
            selector: s.selector.keys.clone(),
            runs: s.runs.clone(),
            mean: m.map(|m| m.mean),
            std: m.and_then(|m| m.std),
            seeds: m.map_or(0, |m| m.n),
        };
        let test = match v.evidence {
            Evidence::None => JsonTest {
                kind: "none".into(),
                n: 0,
                t: None,
                p: None,
                interval: None,
                level: None,
            },
            Evidence::SingleObservation => JsonTest {
                kind: "single_observation".into(),
                n: 1,
                t: None,
                p: None,
                interval: None,
                level: None,
            },
            Evidence::TTest {
                n,
                t,
                p,
                interval,
                level,
            } => JsonTest {
                kind: if c.form.against_chance() {
                    "one_sample_t"
                } else {
                    "paired_t"
                }
                .into(),
                n,
                t: t.is_finite().then_some(t),
                p: Some(p),
                interval: Some([interval.0, interval.1]),
                level: Some(level),
            },
        };
        JsonClaim {
            name: c.name.clone(),
            form: c.form.key().into(),
            metric: c.metric.label(),
            margin: c.margin,
            alpha: c.alpha,
            chance: c.chance,
            side: side(&c.side, v.side),
            than: c.than.as_ref().map(|t| side(t, v.than)),
            verdict: v.outcome.as_str().into(),
            difference: v.difference,
            test,
            reason: v.reason.clone(),
            notes: v.notes.clone(),
            partial: v.partial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        let m = MeanStd {
            mean: 0.8123,
            std: Some(0.0101),
            n: 3,
        };
        assert_eq!(
            value_text(Metric::BestEvalAcc, Some(m)),
            "81.2 ± 1.0 % (n=3)"
        );
        assert_eq!(
            value_text(
                Metric::FinalEvalLoss,
                Some(MeanStd {
                    mean: 0.41234,
                    std: None,
                    n: 1
                })
            ),
            "0.412 (n=1)"
        );
        assert_eq!(
            difference_text(Metric::BestEvalAcc, Some(0.031)),
            "+3.1 pts"
        );
        assert_eq!(
            difference_text(Metric::TrainEvalGap, Some(-0.05)),
            "−5.0 pts"
        );
        assert_eq!(
            difference_text(Metric::FinalEvalLoss, Some(-0.0412)),
            "−0.041"
        );
        assert_eq!(
            difference_text(Metric::EpochsToEvalAcc { threshold: 0.5 }, Some(2.0)),
            "+2.0 ep"
        );
    }
}
