//! What every renderer needs, computed once: per-run summaries, the table order, seed
//! groups, factor effects; and the number formats the human-readable renderers share.

use super::claims::{verdicts, ClaimVerdict};
use super::data::{ReportData, RunData};
use super::effects::{factor_effects, worth_showing, FactorEffect};
use super::summary::{
    has_repeats, is_partial, seed_groups, table_order, RunSummary, SeedGroup, TERMINAL_STATES,
};

/// A report's data with its derived numbers.
#[derive(Debug)]
pub struct ReportView<'a> {
    /// The input.
    pub data: &'a ReportData,
    /// One summary per run, in `data.runs` order.
    pub summaries: Vec<RunSummary>,
    /// Indices of `data.runs` in table order (best eval accuracy first).
    pub order: Vec<usize>,
    /// Runs grouped over seeds.
    pub groups: Vec<SeedGroup>,
    /// Factor effects (empty when nothing varies).
    pub effects: Vec<FactorEffect>,
    /// Whether runs or the experiment may still change.
    pub partial: bool,
    /// The grid's claims with their verdicts (empty when it states none).
    pub claims: Vec<ClaimVerdict<'a>>,
}

impl<'a> ReportView<'a> {
    /// Derives everything from `data`.
    pub fn new(data: &'a ReportData) -> Self {
        let summaries: Vec<RunSummary> = data.runs.iter().map(RunSummary::of).collect();
        let order = table_order(data, &summaries);
        // A stopped run's numbers are those of an unfinished training: the aggregates
        // leave them out (the runs table and the early-stopping section show them).
        let aggregated = super::stopping::without_stopped(data, &summaries);
        let groups = seed_groups(data, &aggregated);
        let effects = factor_effects(data, &aggregated);
        let claims = verdicts(data, &summaries);
        ReportView {
            claims,
            partial: is_partial(data),
            data,
            summaries,
            order,
            groups,
            effects,
        }
    }

    /// Whether the seed-aggregated table says something (a configuration ran over seeds).
    pub fn show_groups(&self) -> bool {
        has_repeats(&self.groups)
    }

    /// Whether the factor-effects section says something.
    pub fn show_effects(&self) -> bool {
        worth_showing(&self.effects)
    }

    /// Runs per state, in a fixed order (`finished`, `running`, …), states with no run
    /// left out.
    pub fn state_counts(&self) -> Vec<(String, usize)> {
        let mut states: Vec<String> = ["finished", "running", "queued", "failed", "cancelled"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for r in &self.data.runs {
            if !states.contains(&r.state) {
                states.push(r.state.clone());
            }
        }
        states
            .into_iter()
            .map(|s| {
                let n = self.data.runs.iter().filter(|r| r.state == s).count();
                (s, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The opening sentences: what the experiment is, how far it got, the best and worst
    /// runs, and any overfitting.
    pub fn summary_sentences(&self) -> Vec<String> {
        let data = self.data;
        let runs = &data.runs;
        let mut out = Vec::new();
        let done = runs
            .iter()
            .filter(|r| TERMINAL_STATES.contains(&r.state.as_str()))
            .count();
        let states: Vec<String> = self
            .state_counts()
            .into_iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        out.push(format!(
            "Experiment {} ({}) is {}: {} run{} ({}).",
            data.experiment.name,
            data.experiment.id,
            data.experiment.state,
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            if states.is_empty() {
                "none yet".to_string()
            } else {
                states.join(", ")
            }
        ));
        if self.partial {
            out.push(format!(
                "This is a partial report: {done} of {} runs are done and the numbers will \
                 change as the others train.",
                runs.len()
            ));
        }
        // Only a finished run can be called best or worst: a failed or unfinished run's
        // accuracy is that of a model that never finished training.
        let finished_with_acc: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&i| runs[i].state == "finished" && self.summaries[i].best_eval_acc.is_some())
            .collect();
        let any_acc = self.summaries.iter().any(|s| s.best_eval_acc.is_some());
        if let (Some(&best), Some(&worst)) = (finished_with_acc.first(), finished_with_acc.last()) {
            let s = &self.summaries[best];
            out.push(format!(
                "Best: {} with {} eval accuracy at epoch {}.",
                runs[best].name,
                percent(s.best_eval_acc),
                s.best_epoch.unwrap_or(0)
            ));
            if worst != best {
                out.push(format!(
                    "Worst: {} with {}.",
                    runs[worst].name,
                    percent(self.summaries[worst].best_eval_acc)
                ));
            }
        } else if any_acc {
            out.push("No run has finished yet, so none is called best.".to_string());
        } else {
            out.push("No run has finished an epoch yet.".to_string());
        }
        let overfit: Vec<&str> = self
            .order
            .iter()
            .filter(|&&i| self.summaries[i].overfits())
            .map(|&i| runs[i].name.as_str())
            .collect();
        if !overfit.is_empty() {
            out.push(format!(
                "{} run{} overfit{} (train accuracy more than {:.0} points above eval): {}.",
                overfit.len(),
                if overfit.len() == 1 { "" } else { "s" },
                if overfit.len() == 1 { "s" } else { "" },
                super::summary::OVERFIT_GAP_POINTS,
                overfit.join(", ")
            ));
        }
        let failed: Vec<&RunData> = runs.iter().filter(|r| r.state == "failed").collect();
        if !failed.is_empty() {
            out.push(format!(
                "Failed: {}.",
                failed
                    .iter()
                    .map(|r| match &r.error {
                        Some(e) => format!("{} ({e})", r.name),
                        None => r.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        out.extend(super::stopping::sentences(self));
        if let Some(top) = self.effects.first().filter(|_| self.show_effects()) {
            if let Some(level) = top.levels.iter().skip(1).max_by(|a, b| {
                let (x, y) = (a.delta_points.unwrap_or(0.0), b.delta_points.unwrap_or(0.0));
                x.abs().total_cmp(&y.abs())
            }) {
                out.push(format!(
                    "The factor that matters most is {}: {}={} moves the best eval accuracy by \
                     {} points on average.",
                    top.factor,
                    top.factor,
                    level.label,
                    super::effects::signed(level.delta_points.unwrap_or(0.0))
                ));
            }
        }
        out
    }
}

/// A fraction as percent with one decimal (`66.2 %`), `–` for none.
pub fn percent(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1} %", v * 100.0),
        _ => "–".to_string(),
    }
}

/// A number with a fixed number of decimals, `–` for none or non-finite.
pub fn fixed(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".to_string(),
    }
}

/// A parameter count: `431`, `61.2 k`, `57.0 M`.
pub fn params(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        _ => format!("{:.1} M", n as f64 / 1e6),
    }
}

/// A duration: `42.5 s`, `3 min 05 s`, `2 h 07 min`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".to_string();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// Images per second, rounded: `1234`, `87.5`.
pub fn throughput(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v >= 100.0 => format!("{v:.0}"),
        Some(v) if v.is_finite() => format!("{v:.1}"),
        _ => "–".to_string(),
    }
}

/// The run's factors other than `model` (which has its own column), as `key=value`.
pub fn factor_pairs(run: &RunData) -> Vec<String> {
    run.factors
        .iter()
        .filter(|(k, _)| k.as_str() != "model")
        .map(|(k, v)| format!("{k}={}", super::effects::level_label(v)))
        .collect()
}

/// [`factor_pairs`] joined by spaces.
pub fn factors_text(run: &RunData) -> String {
    factor_pairs(run).join(" ")
}

/// Mean ± std of fractions as percent (`61.2 ± 1.3 %`, or `61.2 %` for one value).
pub fn percent_mean_std(m: Option<super::summary::MeanStd>) -> String {
    match m {
        Some(m) => match m.std {
            Some(s) => format!("{:.1} ± {:.1} %", m.mean * 100.0, s * 100.0),
            None => format!("{:.1} %", m.mean * 100.0),
        },
        None => "–".to_string(),
    }
}

/// Mean ± std of plain numbers with `decimals` decimals.
pub fn mean_std(m: Option<super::summary::MeanStd>, decimals: usize) -> String {
    match m {
        Some(m) => match m.std {
            Some(s) => format!("{:.d$} ± {:.d$}", m.mean, s, d = decimals),
            None => format!("{:.d$}", m.mean, d = decimals),
        },
        None => "–".to_string(),
    }
}

/// Columns of the seed-aggregated table (label, right-aligned), shared by the Markdown and
/// HTML reports.
pub(super) const SEED_COLUMNS: [(&str, bool); 7] = [
    ("configuration", false),
    ("model", false),
    ("seeds", true),
    ("best eval acc", true),
    ("best epoch", true),
    ("final eval loss", true),
    ("train acc", true),
];

/// Columns of the runs table (label, right-aligned), shared by the Markdown and HTML reports.
pub(super) const RUN_COLUMNS: [(&str, bool); 13] = [
    ("#", true),
    ("run", false),
    ("model", false),
    ("factors", false),
    ("params", true),
    ("best eval acc", true),
    ("epoch", true),
    ("final eval loss", true),
    ("train acc (gap)", true),
    ("wall time", true),
    ("images/s", true),
    ("attempts", true),
    ("state", false),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(percent(Some(0.6617)), "66.2 %");
        assert_eq!(percent(None), "–");
        assert_eq!(params(431), "431");
        assert_eq!(params(61_234), "61.2 k");
        assert_eq!(params(57_012_345), "57.0 M");
        assert_eq!(duration(42.49), "42.5 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(7620.0), "2 h 07 min");
        assert_eq!(throughput(Some(1234.4)), "1234");
        assert_eq!(throughput(Some(87.46)), "87.5");
    }
}
