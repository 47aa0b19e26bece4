//! Verdicts on a grid's claims: pure functions from the selected runs' numbers to
//! *holds*, *fails* or *inconclusive*, with the numbers behind it.
//!
//! Each side's runs are averaged per seed (a side that selects several configurations is
//! their mean), then the sides are paired by seed. With one paired seed the verdict is the
//! sign of the single observation and says so; with several it is a paired t test over the
//! seeds (one-sided, at the claim's `alpha`): the claim holds when the difference beyond the
//! margin is significantly positive, fails when it is significantly negative (or every seed
//! ties), and is inconclusive otherwise. A `learns` claim compares its side with chance the
//! same way (a one-sample test). Only finished runs are judged; the verdict says when some
//! selected runs are not finished yet.

use std::collections::BTreeMap;

use ablate_common::spec::claims::{Claim, ClaimForm};

use crate::report::stats::TTest;
use crate::report::summary::MeanStd;

/// One selected run as the verdict sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunObservation {
    /// The run's seed (its `seed` factor as text; empty when the seed does not vary).
    pub seed: String,
    /// Whether the run is done training (finished, or stopped early).
    pub done: bool,
    /// The claim's metric for the run; `None` when it has no finite value.
    pub value: Option<f64>,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The data support the claim.
    Holds,
    /// The data contradict it.
    Fails,
    /// The data decide neither way (too few seeds, too much spread, nothing finished).
    Inconclusive,
}

impl Outcome {
    /// `holds`, `fails`, `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Holds => "holds",
            Outcome::Fails => "fails",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// How the difference was tested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evidence {
    /// Nothing to compare.
    None,
    /// One paired seed: the difference of a single observation, untested.
    SingleObservation,
    /// A t test over `n` paired seeds (one-sample against chance for `learns`).
    TTest {
        /// Seeds compared.
        n: usize,
        /// The t statistic (infinite when every seed differs by the same amount).
        t: f64,
        /// One-sided p-value in the claim's direction.
        p: f64,
        /// The (1 − 2·alpha) interval of the mean difference, metric units.
        interval: (f64, f64),
        /// Its level (0.90 for alpha 0.05).
        level: f64,
    },
}

/// A claim's verdict with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// holds / fails / inconclusive.
    pub outcome: Outcome,
    /// The first side's metric over seeds (per-seed means).
    pub side: Option<MeanStd>,
    /// `than`'s metric over seeds; `None` for `learns`.
    pub than: Option<MeanStd>,
    /// Mean over paired seeds of side − than (side − chance for `learns`), metric units.
    pub difference: Option<f64>,
    /// The test behind the verdict.
    pub evidence: Evidence,
    /// Why, in one sentence.
    pub reason: String,
    /// Caveats: unfinished runs, missing values, unpaired seeds.
    pub notes: Vec<String>,
    /// Whether some selected runs were not done and the verdict may change.
    pub partial: bool,
}

/// Judges `claim` on its sides' runs (`than` is empty for `learns`).
pub fn judge(claim: &Claim, side: &[RunObservation], than: &[RunObservation]) -> Verdict {
    let mut notes = Vec::new();
    let mut partial = false;
    let side_key = claim.form.key();
    let side_seeds = per_seed(side, side_key, &mut notes, &mut partial);
    let than_seeds = if claim.form.against_chance() {
        None
    } else {
        Some(per_seed(than, "than", &mut notes, &mut partial))
    };
    let summary =
        |seeds: &BTreeMap<String, f64>| MeanStd::of(&seeds.values().copied().collect::<Vec<_>>());
    let side_stats = summary(&side_seeds);
    let than_stats = than_seeds.as_ref().and_then(summary);
    let inconclusive = |reason: String, notes: Vec<String>| Verdict {
        outcome: Outcome::Inconclusive,
        side: side_stats,
        than: than_stats,
        difference: None,
        evidence: Evidence::None,
        reason,
        notes,
        partial,
    };
    if side_seeds.is_empty() {
        return inconclusive(
            format!("no finished run of `{side_key}` has a value yet"),
            notes,
        );
    }
    // Differences side − reference, per paired seed.
    let differences: Vec<f64> = match (&than_seeds, claim.chance) {
        (Some(than_seeds), _) => {
            if than_seeds.is_empty() {
                return inconclusive("no finished run of `than` has a value yet".into(), notes);
            }
            for (seed, who, missing_in) in unpaired(&side_seeds, than_seeds, side_key) {
                notes.push(format!(
                    "seed {seed} has no value on `{missing_in}`; its `{who}` runs are left out \
                     of the pairing"
                ));
            }
            side_seeds
                .iter()
                .filter_map(|(seed, v)| Some(v - than_seeds.get(seed)?))
                .collect()
        }
        (None, Some(chance)) => side_seeds.values().map(|v| v - chance).collect(),
        (None, None) => {
            return inconclusive(
                format!("a `{side_key}` claim without a chance level"),
                notes,
            )
        }
    };
    if differences.is_empty() {
        return inconclusive(
            "the two sides share no seed to pair their runs by".into(),
            notes,
        );
    }
    let difference = differences.iter().sum::<f64>() / differences.len() as f64;
    // Oriented so that positive means "as claimed", then beyond the margin (for
    // `does_not_learn`, "at most the margin above chance": the margin is on its side).
    let sign = match claim.form {
        ClaimForm::Learns => 1.0,
        ClaimForm::DoesNotLearn => -1.0,
        _ if claim.metric.higher_is_better() => 1.0,
        _ => -1.0,
    };
    let margin = if claim.form == ClaimForm::DoesNotLearn {
        -claim.margin
    } else {
        claim.margin
    };
    let excess: Vec<f64> = differences.iter().map(|d| sign * d - margin).collect();
    let direction = direction_words(claim);
    let (outcome, evidence, reason) = if excess.len() == 1 {
        let e = excess[0];
        let outcome = if e > 0.0 {
            Outcome::Holds
        } else {
            Outcome::Fails
        };
        let reason = format!(
            "a single observation (one seed, untested): {} {direction}",
            if e > 0.0 { "is" } else { "is not" }
        );
        (outcome, Evidence::SingleObservation, reason)
    } else {
        let test = TTest::of(&excess).expect("two or more finite differences");
        let level = 1.0 - 2.0 * claim.alpha;
        let (lo, hi) = test.interval(level);
        // Back from oriented excess to the raw difference's interval.
        let interval = if sign > 0.0 {
            (lo + margin, hi + margin)
        } else {
            (-(hi + margin), -(lo + margin))
        };
        let n = excess.len();
        let test_name = if claim.form.against_chance() {
            "one-sample t test"
        } else {
            "paired t test"
        };
        let evidence = |p: f64| Evidence::TTest {
            n,
            t: test.t,
            p,
            interval,
            level,
        };
        if test.p_above < claim.alpha {
            (
                Outcome::Holds,
                evidence(test.p_above),
                format!(
                    "{direction} over {n} seeds ({test_name}, {})",
                    p_text(test.p_above)
                ),
            )
        } else if test.mean == 0.0 && test.std == 0.0 {
            (
                Outcome::Fails,
                evidence(test.p_above),
                format!("every one of {n} seeds ties: not {direction}"),
            )
        } else if test.p_below < claim.alpha {
            (
                Outcome::Fails,
                evidence(test.p_above),
                format!(
                    "not {direction}: the data point the other way over {n} seeds \
                     ({test_name}, {} against the claim)",
                    p_text(test.p_below)
                ),
            )
        } else {
            (
                Outcome::Inconclusive,
                evidence(test.p_above),
                format!(
                    "{n} seeds do not decide whether {direction} ({test_name}, {}; \
                     alpha {})",
                    p_text(test.p_above),
                    claim.alpha
                ),
            )
        }
    };
    Verdict {
        outcome,
        side: side_stats,
        than: than_stats,
        difference: Some(difference),
        evidence,
        reason,
        notes,
        partial,
    }
}

/// What holding means for this claim, in words: `better than \`than\` by more than 0.02`.
fn direction_words(claim: &Claim) -> String {
    // Accuracies and gaps are fractions: their margins read as points.
    let margin = if claim.metric.is_fraction() || claim.form.against_chance() {
        format!("{} pts", points(claim.margin))
    } else {
        format!("{}", claim.margin)
    };
    let by = if claim.margin > 0.0 {
        format!(" by more than {margin}")
    } else {
        String::new()
    };
    match claim.form {
        ClaimForm::Learns => format!("above chance{by}"),
        ClaimForm::DoesNotLearn if claim.margin > 0.0 => {
            format!("at most {margin} above chance")
        }
        ClaimForm::DoesNotLearn => "at or below chance".to_string(),
        ClaimForm::OverfitsLess => format!("a smaller train − eval gap{by}"),
        ClaimForm::Better => format!("better on {}{by}", claim.metric.label()),
    }
}

/// A fraction as points, without float noise (`0.07` → `7`).
pub fn points(fraction: f64) -> f64 {
    (fraction * 100.0 * 1e6).round() / 1e6
}

/// A p-value as text: `p = 0.012`, or `p < 0.001` below that.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

/// A side's done runs with a value, averaged per seed; notes what was left out.
fn per_seed(
    runs: &[RunObservation],
    who: &str,
    notes: &mut Vec<String>,
    partial: &mut bool,
) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let not_done = runs.iter().filter(|r| !r.done).count();
    let mut no_value = 0;
    for run in runs.iter().filter(|r| r.done) {
        match run.value {
            Some(v) if v.is_finite() => {
                let entry = sums.entry(run.seed.clone()).or_insert((0.0, 0));
                entry.0 += v;
                entry.1 += 1;
            }
            _ => no_value += 1,
        }
    }
    if not_done > 0 {
        *partial = true;
        notes.push(format!(
            "{} of {} runs of `{who}` not finished yet: judged on the finished ones",
            not_done,
            runs.len()
        ));
    }
    if no_value > 0 {
        notes.push(format!(
            "{no_value} finished run(s) of `{who}` have no finite value and are left out"
        ));
    }
    sums.into_iter()
        .map(|(seed, (sum, n))| (seed, sum / n as f64))
        .collect()
}

/// Seeds with a value on one side only: (seed, the side that has it, the side missing it).
fn unpaired<'a>(
    side: &'a BTreeMap<String, f64>,
    than: &'a BTreeMap<String, f64>,
    side_key: &'a str,
) -> Vec<(&'a str, &'a str, &'a str)> {
    let mut out: Vec<(&str, &str, &str)> = side
        .keys()
        .filter(|s| !than.contains_key(*s))
        .map(|s| (s.as_str(), side_key, "than"))
        .collect();
    out.extend(
        than.keys()
            .filter(|s| !side.contains_key(*s))
            .map(|s| (s.as_str(), "than", side_key)),
    );
    out
}

#[cfg(test)]
mod tests {
    use ablate_common::spec::claims::{ClaimSide, Metric, Selector};

    use super::*;

    fn claim(form: ClaimForm, metric: Metric, margin: f64) -> Claim {
        let side = ClaimSide {
            selector: Selector::default(),
            runs: Vec::new(),
        };
        Claim {
            name: "c".into(),
            form,
            metric,
            margin,
            alpha: 0.05,
            side: side.clone(),
            than: (!form.against_chance()).then_some(side),
            chance: form.against_chance().then_some(0.1),
        }
    }

    fn better() -> Claim {
        claim(ClaimForm::Better, Metric::BestEvalAcc, 0.0)
    }

    fn runs(values: &[(u64, f64)]) -> Vec<RunObservation> {
        values
            .iter()
            .map(|&(seed, v)| RunObservation {
                seed: seed.to_string(),
                done: true,
                value: Some(v),
            })
            .collect()
    }

    #[test]
    fn a_consistent_difference_over_seeds_holds() {
        let v = judge(
            &better(),
            &runs(&[(1, 0.80), (2, 0.82), (3, 0.81)]),
            &runs(&[(1, 0.70), (2, 0.71), (3, 0.72)]),
        );
        assert_eq!(v.outcome, Outcome::Holds, "{v:?}");
        assert!((v.difference.unwrap() - 0.1).abs() < 1e-12);
        assert!((v.side.unwrap().mean - 0.81).abs() < 1e-12);
        assert_eq!(v.side.unwrap().n, 3);
        let Evidence::TTest { n, p, interval, .. } = v.evidence else {
            panic!("{v:?}")
        };
        assert_eq!(n, 3);
        assert!(p < 0.01, "{p}");
        assert!(interval.0 > 0.0 && interval.1 > interval.0);
        assert!(!v.partial && v.notes.is_empty());
    }

    #[test]
    fn a_margin_larger_than_the_difference_fails() {
        let mut c = better();
        c.margin = 0.2;
        let v = judge(
            &c,
            &runs(&[(1, 0.80), (2, 0.82), (3, 0.81)]),
            &runs(&[(1, 0.70), (2, 0.71), (3, 0.72)]),
        );
        assert_eq!(v.outcome, Outcome::Fails, "{v:?}");
    }

    #[test]
    fn noisy_seeds_are_inconclusive() {
        let v = judge(
            &better(),
            &runs(&[(1, 0.80), (2, 0.60), (3, 0.75)]),
            &runs(&[(1, 0.70), (2, 0.71), (3, 0.72)]),
        );
        assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
        assert!(v.reason.contains("do not decide"), "{}", v.reason);
    }

    #[test]
    fn exact_ties_fail_and_zero_variance_differences_are_decisive() {
        let same = runs(&[(1, 0.5), (2, 0.6)]);
        let v = judge(&better(), &same, &same.clone());
        assert_eq!(v.outcome, Outcome::Fails);
        assert!(v.reason.contains("ties"), "{}", v.reason);
        let v = judge(&better(), &runs(&[(1, 0.6), (2, 0.7)]), &same);
        assert_eq!(v.outcome, Outcome::Holds);
        let Evidence::TTest { p, .. } = v.evidence else {
            panic!()
        };
        assert_eq!(p, 0.0);
    }

    #[test]
    fn one_seed_is_a_single_observation() {
        let v = judge(&better(), &runs(&[(1, 0.6)]), &runs(&[(1, 0.5)]));
        assert_eq!(v.outcome, Outcome::Holds);
        assert_eq!(v.evidence, Evidence::SingleObservation);
        assert!(v.reason.starts_with("a single observation"));
        assert_eq!(v.side.unwrap().std, None);
        let v = judge(&better(), &runs(&[(1, 0.5)]), &runs(&[(1, 0.5)]));
        assert_eq!(v.outcome, Outcome::Fails);
    }

    #[test]
    fn lower_is_better_metrics_and_overfitting() {
        let loss = claim(ClaimForm::Better, Metric::FinalEvalLoss, 0.0);
        let v = judge(
            &loss,
            &runs(&[(1, 0.30), (2, 0.31), (3, 0.29)]),
            &runs(&[(1, 0.50), (2, 0.52), (3, 0.49)]),
        );
        assert_eq!(v.outcome, Outcome::Holds);
        assert!(v.difference.unwrap() < 0.0);
        let Evidence::TTest { interval, .. } = v.evidence else {
            panic!()
        };
        assert!(interval.1 < 0.0, "{interval:?}");
        let gap = claim(ClaimForm::OverfitsLess, Metric::TrainEvalGap, 0.0);
        let v = judge(
            &gap,
            &runs(&[(1, 0.30), (2, 0.31), (3, 0.29)]),
            &runs(&[(1, 0.10), (2, 0.12), (3, 0.09)]),
        );
        assert_eq!(v.outcome, Outcome::Fails, "{v:?}");
        assert!(v.reason.contains("the other way"), "{}", v.reason);
    }

    #[test]
    fn learns_compares_with_chance() {
        let mut learns = claim(ClaimForm::Learns, Metric::BestEvalAcc, 0.05);
        let at_chance = runs(&[(1, 0.10), (2, 0.10), (3, 0.10)]);
        let v = judge(&learns, &at_chance, &[]);
        assert_eq!(v.outcome, Outcome::Fails, "{v:?}");
        assert!(v.than.is_none());
        assert!((v.difference.unwrap()).abs() < 1e-12);
        let v = judge(&learns, &runs(&[(1, 0.7), (2, 0.72), (3, 0.69)]), &[]);
        assert_eq!(v.outcome, Outcome::Holds);
        learns.chance = None;
        assert_eq!(
            judge(&learns, &at_chance, &[]).outcome,
            Outcome::Inconclusive
        );
        let flat = claim(ClaimForm::DoesNotLearn, Metric::BestEvalAcc, 0.05);
        let v = judge(&flat, &runs(&[(1, 0.10), (2, 0.11), (3, 0.10)]), &[]);
        assert_eq!(v.outcome, Outcome::Holds, "{v:?}");
        let Evidence::TTest { interval, .. } = v.evidence else {
            panic!()
        };
        // The interval is of the raw difference from chance, around +0.003.
        assert!(interval.0 < 0.0034 && interval.1 > 0.0033, "{interval:?}");
        let v = judge(&flat, &runs(&[(1, 0.70), (2, 0.72), (3, 0.69)]), &[]);
        assert_eq!(v.outcome, Outcome::Fails, "{v:?}");
        let v = judge(&flat, &runs(&[(1, 0.12)]), &[]);
        assert_eq!(v.outcome, Outcome::Holds);
        assert_eq!(v.evidence, Evidence::SingleObservation);
    }

    #[test]
    fn unfinished_and_missing_runs_are_left_out_and_said() {
        let mut side = runs(&[(1, 0.80), (2, 0.82), (3, 0.81)]);
        side[2].done = false;
        let mut than = runs(&[(1, 0.70), (2, 0.71), (3, 0.72), (4, 0.7)]);
        than[1].value = None;
        let v = judge(&better(), &side, &than);
        assert!(v.partial);
        let notes = v.notes.join(" | ");
        assert!(
            notes.contains("1 of 3 runs of `better` not finished yet"),
            "{notes}"
        );
        assert!(
            notes.contains("1 finished run(s) of `than` have no finite value"),
            "{notes}"
        );
        assert!(notes.contains("seed 2 has no value on `than`"), "{notes}");
        assert!(notes.contains("seed 4 has no value on `better`"), "{notes}");
        // Only seed 1 pairs: a single observation.
        assert_eq!(v.evidence, Evidence::SingleObservation);
        assert_eq!(v.side.unwrap().n, 2);
    }

    #[test]
    fn nothing_finished_or_nothing_paired_is_inconclusive() {
        let mut side = runs(&[(1, 0.8)]);
        side[0].done = false;
        let v = judge(&better(), &side, &runs(&[(1, 0.7)]));
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v.partial);
        let v = judge(&better(), &runs(&[(1, 0.8)]), &runs(&[(2, 0.7)]));
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v.reason.contains("share no seed"));
    }

    #[test]
    fn several_runs_per_seed_are_averaged() {
        let side = runs(&[(1, 0.8), (1, 0.6), (2, 0.9), (2, 0.7)]);
        let v = judge(&better(), &side, &runs(&[(1, 0.5), (2, 0.6)]));
        assert!((v.side.unwrap().mean - 0.75).abs() < 1e-12);
        assert_eq!(v.side.unwrap().n, 2);
        assert!((v.difference.unwrap() - 0.2).abs() < 1e-12);
    }
}
