//! The runs table as CSV (RFC 4180): a header, then one row a run in table order (best
//! eval accuracy first). Each factor is its own column, named by its grid key, between
//! `model` and `params`. Accuracies are fractions, times are seconds, empty cells are
//! unknown values.

use std::collections::BTreeSet;

use super::view::ReportView;

/// Fixed columns before the factors.
const LEAD: [&str; 4] = ["rank", "id", "name", "model"];
/// Fixed columns after the factors.
const TAIL: [&str; 13] = [
    "params",
    "best_eval_acc",
    "best_epoch",
    "final_eval_loss",
    "final_eval_acc",
    "train_acc",
    "epochs",
    "wall_s",
    "images_per_sec",
    "attempts",
    "state",
    "partial",
    "error",
];

/// Columns added at the end when the grid has early stopping: the epoch the rule
/// stopped the run at and why (empty for runs it did not stop).
const STOP_COLUMNS: [&str; 2] = ["stopped_at_epoch", "stop_reason"];

/// Quotes a field when it holds a comma, a quote, a line break or outer spaces.
pub fn field(text: &str) -> String {
    let needs =
        text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ');
    if needs {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// The factor columns: every factor key of any run, sorted, except those that a fixed
/// column already carries (`model`).
pub fn factor_columns(view: &ReportView<'_>) -> Vec<String> {
    let keys: BTreeSet<&String> = view
        .data
        .runs
        .iter()
        .flat_map(|r| r.factors.keys())
        .collect();
    keys.into_iter()
        .filter(|k| !LEAD.contains(&k.as_str()) && !TAIL.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// The CSV text, `\r\n`-free (`\n` line ends), with a final newline.
pub fn render(view: &ReportView<'_>) -> String {
    let factors = factor_columns(view);
    let mut out = String::new();
    let header: Vec<String> = LEAD
        .iter()
        .map(|s| s.to_string())
        .chain(factors.iter().cloned())
        .chain(TAIL.iter().map(|s| s.to_string()))
        .map(|h| field(&h))
        .collect();
    let stopping = view.data.early_stopping.is_some();
    let mut header = header;
    if stopping {
        header.extend(STOP_COLUMNS.iter().map(|s| s.to_string()));
    }
    out.push_str(&header.join(","));
    out.push('\n');
    for (rank, &i) in view.order.iter().enumerate() {
        let run = &view.data.runs[i];
        let s = &view.summaries[i];
        let mut row: Vec<String> = vec![
            (rank + 1).to_string(),
            run.id.clone(),
            run.name.clone(),
            run.model.clone(),
        ];
        for key in &factors {
            row.push(
                run.factors
                    .get(key)
                    .map(super::effects::level_label)
                    .unwrap_or_default(),
            );
        }
        row.extend([
            run.params.to_string(),
            number(s.best_eval_acc),
            s.best_epoch.map(|e| e.to_string()).unwrap_or_default(),
            number(s.final_eval_loss),
            number(s.final_eval_acc),
            number(s.train_acc),
            s.epochs_done.to_string(),
            number(Some(run.wall_s)),
            number(s.images_per_sec),
            run.attempts.to_string(),
            run.state.clone(),
            view.partial.to_string(),
            run.error.clone().unwrap_or_default(),
        ]);
        if stopping {
            let d = super::stopping::decision(view.data, run);
            row.extend([
                d.map(|d| d.epoch.to_string()).unwrap_or_default(),
                d.map(|d| d.reason.clone()).unwrap_or_default(),
            ]);
        }
        let row: Vec<String> = row.iter().map(|f| field(f)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field(" padded"), "\" padded\"");
    }
}
