//! Early stopping decisions: which variants of an experiment the grid's `[early_stopping]`
//! rule stops, computed from the stored epochs alone. Pure: no I/O, no clock.
//!
//! # Determinism
//! A verdict is a function of the *set* of stored epochs and of which runs ended, never of
//! the order they arrived in. A variant is stopped at an epoch only once the verdict can
//! no longer change: the variants that have not reached that epoch yet count at their
//! worst for the stop test (and at their best for the keep test), so more epochs can only
//! confirm a verdict. The verdict is therefore exactly the one the rule would give with
//! every variant's epoch in hand; it is only taken as soon as it is certain. A variant's
//! rungs are judged in order: while one is undecided, the later ones wait.
//!
//! A variant that the rule stops at epoch `e` takes no part in the comparisons after `e`
//! (ASHA's promotion; for the median rule, the runs still going), whether or not its runs
//! were still running to be stopped, so that verdicts do not depend on timing. A variant
//! a user resumed after a stop is never judged again and counts with all its epochs.
//!
//! # Variants
//! Runs with the same variant key (the spec without its seed, when seeds are judged
//! together) are one variant; its value at an epoch is the mean over its runs of each
//! run's best metric up to that epoch, known once every run has stored every epoch up to
//! it (or ended after it). A run that ended before an epoch leaves the comparison there.

use std::collections::BTreeMap;

use ablate_common::spec::early_stopping::{EarlyStopping, Mode, Rule};

use crate::scheduling::scheduler::RunState;

/// One run of the experiment as the rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInput {
    /// Run id.
    pub run_id: String,
    /// Its index in the experiment (orders the output).
    pub index: u32,
    /// Its variant key (runs with the same key are judged together).
    pub variant: String,
    /// Epochs it is to train.
    pub epochs: u32,
    /// Its state now.
    pub state: RunState,
    /// The epoch a recorded, not resumed, decision stopped it at.
    pub stopped_at: Option<u32>,
    /// Resumed after a stop: never judged again.
    pub exempt: bool,
    /// The stored epochs: (epoch, metric value; `NaN` when the epoch has none).
    pub values: Vec<(u32, f64)>,
}

/// A variant to stop now.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The variant's key.
    pub variant: String,
    /// Its runs that are still queued or running: these stop.
    pub runs: Vec<String>,
    /// The epoch the verdict was taken at.
    pub epoch: u32,
    /// The variant's value there (metric units; the mean over its runs).
    pub value: f64,
    /// What it was compared with: the median of the others (median rule) or the worst
    /// value the rung keeps (ASHA), in metric units.
    pub threshold: f64,
    /// The other variants' values known at that epoch, best first (metric units).
    pub compared: Vec<f64>,
    /// Other variants that had not reached the epoch (counted at their worst).
    pub pending: u32,
    /// A readable sentence with the numbers.
    pub reason: String,
}

/// Where a variant stands at one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Standing {
    /// Its value (a score: larger is better) is final.
    Known(f64),
    /// It may still report, or leave the comparison.
    Pending,
    /// It takes no part (stopped earlier, ended before, or trains fewer epochs).
    Out,
}

/// The rule's verdict on a variant at one epoch.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Keep,
    Stop(Box<Decision>),
    Undecided,
}

struct Variant<'a> {
    key: &'a str,
    runs: Vec<&'a RunInput>,
    epochs: u32,
    exempt: bool,
    /// The epoch a recorded decision stopped it at.
    recorded_stop: Option<u32>,
}

/// A score: larger is better; `NaN` (a diverged epoch) is the worst.
fn score(mode: Mode, value: f64) -> f64 {
    if value.is_nan() {
        return f64::NEG_INFINITY;
    }
    match mode {
        Mode::Max => value,
        Mode::Min => -value,
    }
}

fn unscore(mode: Mode, score: f64) -> f64 {
    match mode {
        Mode::Max => score,
        Mode::Min => -score,
    }
}

/// Where a run stands at `epoch`: its best score up to it once that is final (every epoch
/// up to it stored, or the run ended after it), out when it trains fewer epochs or ended
/// before it, pending otherwise.
fn run_standing(run: &RunInput, epoch: u32, mode: Mode) -> Standing {
    if run.epochs < epoch {
        return Standing::Out;
    }
    let ended = run.state.is_terminal();
    let last = run.values.iter().map(|(e, _)| *e).max().unwrap_or(0);
    let up_to: Vec<&(u32, f64)> = run.values.iter().filter(|(e, _)| *e <= epoch).collect();
    let complete = up_to.len() as u32 == epoch;
    if !(complete || (ended && last >= epoch)) {
        return if ended {
            Standing::Out
        } else {
            Standing::Pending
        };
    }
    let best = up_to
        .iter()
        .map(|(_, v)| score(mode, *v))
        .fold(f64::NEG_INFINITY, f64::max);
    Standing::Known(best)
}

/// The median of the other variants: `known` (sorted ascending, holding the judged
/// variant's own score `skip` once, which is left out) and `extra` more values of `fill`
/// (−∞ or +∞: the variants still to report, at their worst or best). `NaN` (−∞ and +∞ in
/// the middle) becomes `fill`; `None` when there are no others.
fn median_of_others(known: &[f64], skip: f64, extra: usize, fill: f64) -> Option<f64> {
    let skip_at = known.partition_point(|v| v.total_cmp(&skip).is_lt());
    let rest = known.len() - 1;
    let n = rest + extra;
    if n == 0 {
        return None;
    }
    let below = if fill < 0.0 { extra } else { 0 };
    // The i-th smallest of the others.
    let at = |i: usize| -> f64 {
        if i < below || i - below >= rest {
            return fill;
        }
        let j = i - below;
        if j < skip_at {
            known[j]
        } else {
            known[j + 1]
        }
    };
    let m = if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    };
    Some(if m.is_nan() { fill } else { m })
}

fn fmt_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "none (diverged)".to_string()
    }
}

/// The verdict on one variant with score `x` at `epoch`, given the others' standings.
fn judge(
    config: &EarlyStopping,
    epoch: u32,
    x: f64,
    known_sorted: &[f64],
    pending: usize,
) -> Result<Option<(f64, String)>, ()> {
    // Err(()): undecided; Ok(None): kept; Ok(Some((threshold score, reason))): stopped.
    let known_others = known_sorted.len() - 1;
    let min = config.min_runs as usize;
    if known_others + pending < min {
        return Ok(None);
    }
    let metric = config.metric.as_str();
    match config.rule {
        Rule::Median => {
            let low = median_of_others(known_sorted, x, pending, f64::NEG_INFINITY)
                .unwrap_or(f64::NEG_INFINITY);
            if known_others >= min && x < low {
                let mut reason = format!(
                    "best {metric} by epoch {epoch} ({}) is below the median ({}) of the {} \
                     other variant{} at epoch {epoch}",
                    fmt_value(unscore(config.mode, x)),
                    fmt_value(unscore(config.mode, low)),
                    known_others,
                    if known_others == 1 { "" } else { "s" }
                );
                if pending > 0 {
                    reason.push_str(&format!(
                        "; {pending} variant{} still to reach epoch {epoch} could not lift the \
                         median",
                        if pending == 1 { "" } else { "s" }
                    ));
                }
                return Ok(Some((low, reason)));
            }
            let high = median_of_others(known_sorted, x, pending, f64::INFINITY)
                .unwrap_or(f64::NEG_INFINITY);
            if x >= high {
                Ok(None)
            } else {
                Err(())
            }
        }
        Rule::Asha => {
            let eta = config.eta as usize;
            let better = known_sorted.len() - known_sorted.partition_point(|v| *v <= x);
            let keep_most = (1 + known_others + pending).div_ceil(eta);
            let keep_least = (1 + known_others).div_ceil(eta);
            if known_others >= min && better >= keep_most {
                // The worst score the rung keeps: the keep_most-th best known.
                let cut = known_sorted[known_sorted.len() - keep_most];
                let reason = format!(
                    "rung at epoch {epoch}: best {metric} ({}) ranks below {better} of the {} \
                     other variants; the rung keeps the top {keep_most} of {} (1/{}, cut-off {})",
                    fmt_value(unscore(config.mode, x)),
                    known_others + pending,
                    1 + known_others + pending,
                    config.eta,
                    fmt_value(unscore(config.mode, cut))
                );
                return Ok(Some((cut, reason)));
            }
            if better + pending < keep_least {
                Ok(None)
            } else {
                Err(())
            }
        }
    }
}

/// The variants to stop now: a verdict of the rule on a variant that still has queued or
/// running runs and was not stopped or resumed before. Ordered by the variant's first run.
pub fn decide(config: &EarlyStopping, runs: &[RunInput]) -> Vec<Decision> {
    let mut by_key: BTreeMap<&str, Vec<&RunInput>> = BTreeMap::new();
    for run in runs {
        by_key.entry(run.variant.as_str()).or_default().push(run);
    }
    let mut variants: Vec<Variant<'_>> = by_key
        .into_iter()
        .map(|(key, mut members)| {
            members.sort_by_key(|r| r.index);
            Variant {
                key,
                epochs: members.iter().map(|r| r.epochs).max().unwrap_or(0),
                exempt: members.iter().any(|r| r.exempt),
                recorded_stop: members
                    .iter()
                    .filter(|r| !r.exempt)
                    .filter_map(|r| r.stopped_at)
                    .min(),
                runs: members,
            }
        })
        .collect();
    variants.sort_by_key(|v| v.runs[0].index);

    let longest = variants.iter().map(|v| v.epochs).max().unwrap_or(0);
    let rungs = config.rungs(longest);
    let mode = config.mode;
    // Per variant: the rung it was stopped at, or whether its judging waits.
    let mut stopped_at: Vec<Option<u32>> = variants.iter().map(|v| v.recorded_stop).collect();
    let mut waiting: Vec<bool> = vec![false; variants.len()];
    let mut out: Vec<Decision> = Vec::new();
    for &epoch in &rungs {
        let standings: Vec<Standing> = variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if stopped_at[i].is_some_and(|s| s < epoch) || v.epochs < epoch {
                    return Standing::Out;
                }
                if waiting[i] {
                    return Standing::Pending;
                }
                let mut sum = 0.0;
                let mut known = 0;
                for run in &v.runs {
                    match run_standing(run, epoch, mode) {
                        Standing::Pending => return Standing::Pending,
                        Standing::Known(s) => {
                            sum += s;
                            known += 1;
                        }
                        Standing::Out => {}
                    }
                }
                if known == 0 {
                    Standing::Out
                } else {
                    Standing::Known(sum / known as f64)
                }
            })
            .collect();
        let mut known_sorted: Vec<f64> = standings
            .iter()
            .filter_map(|s| match s {
                Standing::Known(x) => Some(*x),
                _ => None,
            })
            .collect();
        known_sorted.sort_by(f64::total_cmp);
        let pending_all = standings
            .iter()
            .filter(|s| **s == Standing::Pending)
            .count();
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(variants.len());
        for (i, v) in variants.iter().enumerate() {
            let verdict = match standings[i] {
                Standing::Known(x)
                    if !v.exempt
                        && stopped_at[i].is_none()
                        && config.rungs(v.epochs).contains(&epoch) =>
                {
                    match judge(config, epoch, x, &known_sorted, pending_all) {
                        Err(()) => Verdict::Undecided,
                        Ok(None) => Verdict::Keep,
                        Ok(Some((threshold, reason))) => {
                            let mut compared: Vec<f64> = Vec::new();
                            let mut skipped = false;
                            for s in known_sorted.iter().rev() {
                                if !skipped && s.total_cmp(&x).is_eq() {
                                    skipped = true;
                                    continue;
                                }
                                compared.push(unscore(mode, *s));
                            }
                            Verdict::Stop(Box::new(Decision {
                                variant: v.key.to_string(),
                                runs: v
                                    .runs
                                    .iter()
                                    .filter(|r| !r.state.is_terminal())
                                    .map(|r| r.run_id.clone())
                                    .collect(),
                                epoch,
                                value: unscore(mode, x),
                                threshold: unscore(mode, threshold),
                                compared,
                                pending: pending_all as u32,
                                reason,
                            }))
                        }
                    }
                }
                Standing::Pending => Verdict::Undecided,
                _ => Verdict::Keep,
            };
            verdicts.push(verdict);
        }
        for (i, verdict) in verdicts.into_iter().enumerate() {
            match verdict {
                Verdict::Keep => {}
                Verdict::Undecided => waiting[i] = true,
                Verdict::Stop(decision) => {
                    stopped_at[i] = Some(epoch);
                    if !decision.runs.is_empty() {
                        out.push(*decision);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ablate_common::spec::early_stopping::{Metric, Rule};

    fn config(rule: Rule, grace: u32, min_runs: u32) -> EarlyStopping {
        EarlyStopping {
            rule,
            metric: Metric::EvalAcc,
            mode: Mode::Max,
            grace_epochs: grace,
            min_runs,
            eta: 2,
            max_rungs: None,
            group_seeds: true,
        }
    }

    /// A run of variant `variant` with eval accuracies for epochs 1, 2, ….
    fn run(index: u32, variant: &str, state: RunState, accs: &[f64]) -> RunInput {
        RunInput {
            run_id: format!("r{index}"),
            index,
            variant: variant.to_string(),
            epochs: 6,
            state,
            stopped_at: None,
            exempt: false,
            values: accs
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u32 + 1, *a))
                .collect(),
        }
    }

    use RunState::{Finished, Running};

    #[test]
    fn median_stops_the_variant_below_the_others() {
        let runs = vec![
            run(0, "a", Finished, &[0.5, 0.6, 0.7, 0.7, 0.8, 0.8]),
            run(1, "b", Finished, &[0.4, 0.6, 0.65, 0.7, 0.7, 0.75]),
            run(2, "c", Finished, &[0.45, 0.5, 0.6, 0.6, 0.7, 0.7]),
            run(3, "flat", Running, &[0.1, 0.1]),
        ];
        let d = decide(&config(Rule::Median, 2, 3), &runs);
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert_eq!((d.variant.as_str(), d.epoch), ("flat", 2));
        assert_eq!(d.runs, vec!["r3".to_string()]);
        assert_eq!(d.value, 0.1);
        assert_eq!(d.threshold, 0.6);
        assert_eq!(d.compared, vec![0.6, 0.6, 0.5]);
        assert_eq!(d.pending, 0);
        assert!(
            d.reason
                .starts_with("best eval_acc by epoch 2 (0.1000) is below the median (0.6000)"),
            "{}",
            d.reason
        );
        // Before the grace epoch, nothing is judged.
        assert!(decide(&config(Rule::Median, 3, 3), &runs).is_empty());
        // With fewer other variants than min_runs, nothing is judged either.
        assert!(decide(&config(Rule::Median, 2, 4), &runs).is_empty());
    }

    #[test]
    fn a_tie_with_the_median_is_kept() {
        let runs = vec![
            run(0, "a", Finished, &[0.5, 0.5, 0.5]),
            run(1, "b", Finished, &[0.3, 0.3, 0.3]),
            run(2, "c", Running, &[0.4, 0.4]),
        ];
        // c's median of others: (0.3 + 0.5) / 2 = 0.4 = c: kept.
        assert!(decide(&config(Rule::Median, 2, 2), &runs).is_empty());
        let lower = vec![
            runs[0].clone(),
            runs[1].clone(),
            run(2, "c", Running, &[0.39, 0.39]),
        ];
        assert_eq!(decide(&config(Rule::Median, 2, 2), &lower).len(), 1);
    }

    #[test]
    fn a_verdict_waits_until_the_missing_variants_could_not_change_it() {
        // "low" at epoch 2 with two variants known above it and three still training.
        let mut runs = vec![
            run(0, "a", Running, &[0.6, 0.7]),
            run(1, "b", Running, &[0.6, 0.7]),
            run(2, "c", Running, &[0.6]),
            run(3, "d", Running, &[0.6]),
            run(4, "e", Running, &[0.6]),
            run(5, "low", Running, &[0.1, 0.1]),
        ];
        let cfg = config(Rule::Median, 2, 2);
        // Others at their worst: [-inf, -inf, -inf, 0.7, 0.7]: median -inf. Undecided.
        assert!(decide(&cfg, &runs).is_empty());
        runs[2].values.push((2, 0.65));
        // [-inf, -inf, 0.65, 0.7, 0.7]: median 0.65 > 0.1: certain, whatever d and e do.
        let d = decide(&cfg, &runs);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].variant.as_str(), d[0].pending), ("low", 2));
        assert_eq!(d[0].threshold, 0.65);
        assert!(
            d[0].reason.contains("2 variants still to reach epoch 2"),
            "{}",
            d[0].reason
        );
    }

    #[test]
    fn seeds_are_judged_together() {
        // Seed 1 of "unlucky" is bad, seed 2 good: the mean is above the median.
        let runs = vec![
            run(0, "a", Finished, &[0.5, 0.5, 0.5]),
            run(1, "a", Finished, &[0.5, 0.5, 0.5]),
            run(2, "b", Finished, &[0.4, 0.4, 0.4]),
            run(3, "b", Finished, &[0.4, 0.4, 0.4]),
            run(4, "unlucky", Running, &[0.1, 0.1]),
            run(5, "unlucky", Running, &[0.95, 0.95]),
        ];
        assert!(decide(&config(Rule::Median, 2, 2), &runs).is_empty());
        // Judged one by one, seed 1 would be stopped.
        let mut single = runs.clone();
        for r in &mut single {
            r.variant = r.run_id.clone();
        }
        let d = decide(&config(Rule::Median, 2, 2), &single);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].runs, vec!["r4".to_string()]);
        // Both seeds hopeless: the variant stops, with both its runs.
        let mut hopeless = runs.clone();
        hopeless[5].values = vec![(1, 0.1), (2, 0.12)];
        let d = decide(&config(Rule::Median, 2, 2), &hopeless);
        assert_eq!(d[0].runs, vec!["r4".to_string(), "r5".to_string()]);
        assert!((d[0].value - 0.11).abs() < 1e-12);
        // One seed still before the epoch: the variant waits for it.
        hopeless[5].values.truncate(1);
        assert!(decide(&config(Rule::Median, 2, 2), &hopeless).is_empty());
    }

    #[test]
    fn missing_epochs_wait_until_the_run_ends() {
        let mut runs = vec![
            run(0, "a", Finished, &[0.6, 0.6, 0.6]),
            run(1, "b", Finished, &[0.5, 0.5, 0.5]),
            // Epoch 1 never stored (lost with a crashed attempt), epoch 2 and 3 are.
            RunInput {
                values: vec![(2, 0.1), (3, 0.1)],
                ..run(2, "c", Running, &[])
            },
        ];
        // While c runs, its epoch 1 may still come (a resumed attempt re-trains it): wait.
        assert!(decide(&config(Rule::Median, 2, 2), &runs).is_empty());
        // A run that failed after epoch 3 is final with what it stored.
        runs[2].state = RunState::Failed;
        assert!(
            decide(&config(Rule::Median, 2, 2), &runs).is_empty(),
            "nothing left to stop"
        );
        // A variant that never reached the epoch leaves the comparison: "d" is judged
        // against a and b alone.
        runs[2].values = vec![(1, 0.1)];
        runs.push(run(3, "d", Running, &[0.2, 0.2]));
        let d = decide(&config(Rule::Median, 2, 2), &runs);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].variant.as_str(), d[0].compared.len()), ("d", 2));
    }

    #[test]
    fn asha_keeps_the_top_of_each_rung() {
        // eta 2, grace 1, 6 epochs: rungs 1, 2, 4.
        let runs = vec![
            run(0, "a", Running, &[0.5, 0.7, 0.8, 0.85]),
            run(1, "b", Running, &[0.45, 0.6, 0.7, 0.72]),
            run(2, "c", Running, &[0.4, 0.5]),
            run(3, "d", Running, &[0.1]),
        ];
        let d = decide(&config(Rule::Asha, 1, 1), &runs);
        // Rung 1: 4 variants, keep 2: c and d stop at 1. Rung 2: a, b; keep 1: b stops.
        let got: Vec<(&str, u32)> = d.iter().map(|d| (d.variant.as_str(), d.epoch)).collect();
        assert_eq!(got, vec![("c", 1), ("d", 1), ("b", 2)]);
        assert_eq!(d[0].threshold, 0.45);
        assert!(d[2].reason.starts_with("rung at epoch 2: best eval_acc (0.6000) ranks below 1 of the 1 other variants; the rung keeps the top 1 of 2"), "{}", d[2].reason);
        // A tie at the cut-off is kept.
        let tie = vec![
            run(0, "a", Running, &[0.5]),
            run(1, "b", Running, &[0.5]),
            run(2, "c", Running, &[0.5]),
        ];
        assert!(decide(&config(Rule::Asha, 1, 1), &tie).is_empty());
    }

    #[test]
    fn losses_are_minimised() {
        let mut cfg = config(Rule::Median, 1, 2);
        cfg.metric = Metric::EvalLoss;
        cfg.mode = Mode::Min;
        let mk = |i, v: &str, state, losses: &[f64]| RunInput {
            values: losses
                .iter()
                .enumerate()
                .map(|(e, l)| (e as u32 + 1, *l))
                .collect(),
            ..run(i, v, state, &[])
        };
        let runs = vec![
            mk(0, "a", Finished, &[0.5, 0.4]),
            mk(1, "b", Finished, &[0.6, 0.5]),
            mk(2, "diverged", Running, &[f64::NAN]),
            mk(3, "high", Running, &[2.3]),
        ];
        let d = decide(&cfg, &runs);
        let got: Vec<(&str, u32)> = d.iter().map(|d| (d.variant.as_str(), d.epoch)).collect();
        assert_eq!(got, vec![("diverged", 1), ("high", 1)]);
        assert_eq!(d[1].value, 2.3);
    }

    #[test]
    fn the_same_epochs_in_any_order_give_the_same_decisions() {
        // Epochs of six variants arrive one by one in many orders; after each arrival the
        // decisions so far are taken (a stopped variant's later epochs are dropped, as a
        // stopped run reports none). Every order ends with the same stops.
        let curves: Vec<(&str, Vec<f64>)> = vec![
            ("a", vec![0.3, 0.5, 0.6, 0.7, 0.75, 0.8]),
            ("b", vec![0.35, 0.45, 0.55, 0.6, 0.65, 0.7]),
            ("c", vec![0.2, 0.3, 0.5, 0.55, 0.6, 0.62]),
            ("d", vec![0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
            ("e", vec![0.25, 0.28, 0.3, 0.31, 0.31, 0.31]),
            ("f", vec![0.3, 0.5, 0.52, 0.53, 0.53, 0.53]),
        ];
        let arrivals: Vec<(usize, u32)> = (0..curves.len())
            .flat_map(|v| (1..=6u32).map(move |e| (v, e)))
            .collect();
        for rule in [Rule::Median, Rule::Asha] {
            let cfg = config(rule, 1, 2);
            let mut outcomes = Vec::new();
            for seed in 0..40u64 {
                // A deterministic shuffle that keeps each run's epochs in order.
                let mut order = arrivals.clone();
                let mut state = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                for i in (1..order.len()).rev() {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let j = (state >> 33) as usize % (i + 1);
                    order.swap(i, j);
                }
                let mut next = vec![1u32; curves.len()];
                let mut sequence = Vec::new();
                let mut pool = order.into_iter().map(|(v, _)| v).collect::<Vec<_>>();
                // Each arrival is the next epoch of the variant drawn.
                for v in pool.drain(..) {
                    sequence.push((v, next[v]));
                    next[v] += 1;
                }
                let mut runs: Vec<RunInput> = curves
                    .iter()
                    .enumerate()
                    .map(|(i, (v, _))| RunInput {
                        epochs: 6,
                        ..run(i as u32, v, Running, &[])
                    })
                    .collect();
                let mut stops: BTreeMap<String, u32> = BTreeMap::new();
                for (v, e) in sequence {
                    if runs[v].state == RunState::Stopped {
                        continue;
                    }
                    runs[v].values.push((e, curves[v].1[e as usize - 1]));
                    if e == 6 {
                        runs[v].state = Finished;
                    }
                    for d in decide(&cfg, &runs) {
                        for id in &d.runs {
                            let r = runs.iter_mut().find(|r| &r.run_id == id).unwrap();
                            r.state = RunState::Stopped;
                            r.stopped_at = Some(d.epoch);
                        }
                        stops.insert(d.variant.clone(), d.epoch);
                    }
                }
                outcomes.push(stops);
            }
            // Every order gives each variant it stops the same epoch: the verdict a rule
            // with every epoch in hand would give. (A variant can finish before its
            // verdict is certain in one order and be stopped in another.)
            let mut epochs: BTreeMap<String, std::collections::BTreeSet<u32>> = BTreeMap::new();
            for o in &outcomes {
                for (v, e) in o {
                    epochs.entry(v.clone()).or_default().insert(*e);
                }
            }
            assert!(epochs.contains_key("d"), "{rule:?} stops d: {outcomes:?}");
            for (v, e) in &epochs {
                assert_eq!(e.len(), 1, "{rule:?}: {v} stopped at {e:?}");
            }
        }
    }

    #[test]
    fn the_decision_ignores_the_order_of_its_input() {
        let runs = vec![
            run(0, "a", Finished, &[0.5, 0.6, 0.7]),
            run(1, "b", Finished, &[0.4, 0.6, 0.65]),
            run(2, "c", Finished, &[0.45, 0.5, 0.6]),
            run(3, "flat", Running, &[0.1, 0.1]),
            run(4, "flat2", Running, &[0.1, 0.09]),
        ];
        let cfg = config(Rule::Median, 2, 3);
        let forward = decide(&cfg, &runs);
        let mut reversed = runs.clone();
        reversed.reverse();
        for r in &mut reversed {
            r.values.reverse();
        }
        assert_eq!(decide(&cfg, &reversed), forward);
        assert_eq!(forward.len(), 2);
    }

    #[test]
    fn resumed_and_stopped_variants_are_not_judged_again() {
        let mut runs = vec![
            run(0, "a", Finished, &[0.5, 0.6, 0.7]),
            run(1, "b", Finished, &[0.4, 0.6, 0.65]),
            run(2, "c", Finished, &[0.45, 0.5, 0.6]),
            run(3, "flat", Running, &[0.1, 0.1, 0.1]),
        ];
        runs[3].exempt = true;
        assert!(decide(&config(Rule::Median, 2, 3), &runs).is_empty());
        runs[3].exempt = false;
        runs[3].state = RunState::Stopped;
        runs[3].stopped_at = Some(2);
        assert!(decide(&config(Rule::Median, 2, 3), &runs).is_empty());
    }
}
