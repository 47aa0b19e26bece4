//! The Markdown report: opening sentences, the runs table, seeds aggregated, the factor
//! effects table, and one plain sentence a factor at the end. Curves are in the HTML
//! report (Markdown cannot carry them without extra files).

use super::effects::signed;
use super::view::{
    duration, factors_text, fixed, mean_std, params, percent, percent_mean_std, throughput,
    ReportView, RUN_COLUMNS, SEED_COLUMNS,
};

/// Escapes what would break a table cell (pipes, line breaks).
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, header: &[(&str, bool)], rows: &[Vec<String>]) {
    out.push_str("| ");
    out.push_str(
        &header
            .iter()
            .map(|(h, _)| *h)
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n|");
    for (_, right) in header {
        out.push_str(if *right { "---:|" } else { "---|" });
    }
    out.push('\n');
    for row in rows {
        out.push_str("| ");
        out.push_str(&row.join(" | "));
        out.push_str(" |\n");
    }
}

/// Renders the Markdown report.
pub fn render(view: &ReportView<'_>) -> String {
    let data = view.data;
    let mut out = String::new();
    out.push_str(&format!("# Report: {}\n\n", cell(&data.experiment.name)));
    if view.partial {
        out.push_str(
            "> **Partial report.** The experiment is still running; every number below is \
             from the epochs recorded so far.\n\n",
        );
    }
    out.push_str(&view.summary_sentences().join(" "));
    if !view.claims.is_empty() {
        claims_section(&mut out, view);
    }
    out.push_str("\n\n## Runs\n\n");
    out.push_str(
        "Sorted by best eval accuracy. *Epoch* is the best epoch over the epochs done; \
         *train acc* is the last epoch's, with the train − eval gap in points \
         (⚠ above 10: overfitting).\n\n",
    );
    let rows: Vec<Vec<String>> = view
        .order
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let run = &data.runs[i];
            let s = &view.summaries[i];
            let train = match (s.train_acc, s.gap_points()) {
                (Some(_), Some(gap)) => format!(
                    "{} ({}{})",
                    percent(s.train_acc),
                    signed(gap),
                    if s.overfits() { " ⚠" } else { "" }
                ),
                _ => percent(s.train_acc),
            };
            vec![
                (rank + 1).to_string(),
                cell(&run.name),
                cell(&run.model),
                cell(&factors_text(run)),
                params(run.params),
                percent(s.best_eval_acc),
                match s.best_epoch {
                    Some(e) => format!("{e} / {}", s.epochs_done),
                    None => "–".into(),
                },
                fixed(s.final_eval_loss, 3),
                train,
                duration(run.wall_s),
                throughput(s.images_per_sec),
                run.attempts.to_string(),
                cell(&run.state),
            ]
        })
        .collect();
    table(&mut out, &RUN_COLUMNS, &rows);
    let failed: Vec<String> = data
        .runs
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("- {}: {}\n", cell(&r.name), cell(e)))
        })
        .collect();
    if !failed.is_empty() {
        out.push_str("\nErrors:\n\n");
        out.extend(failed);
    }
    let stopping = super::stopping::markdown(view);
    if !stopping.is_empty() {
        out.push('\n');
        out.push_str(stopping.trim_end());
        out.push('\n');
    }

    if view.show_groups() {
        out.push_str("\n## Seeds aggregated\n\n");
        out.push_str("Runs that differ only by seed, mean ± sample standard deviation.\n\n");
        let rows: Vec<Vec<String>> = view
            .groups
            .iter()
            .map(|g| {
                vec![
                    cell(&g.label),
                    cell(&g.model),
                    g.runs.len().to_string(),
                    percent_mean_std(g.best_eval_acc),
                    mean_std(g.best_epoch, 1),
                    mean_std(g.final_eval_loss, 3),
                    percent_mean_std(g.train_acc),
                ]
            })
            .collect();
        table(&mut out, &SEED_COLUMNS, &rows);
    }

    if view.show_effects() {
        out.push_str("\n## Factor effects\n\n");
        out.push_str(
            "For each factor, the mean best eval accuracy of the runs at each level \
             (averaged over every other factor) and its difference to the baseline level \
             (the first of the grid), in points; the spread is the standard deviation of \
             that difference over seeds.\n\n",
        );
        let mut rows = Vec::new();
        for f in &view.effects {
            for l in &f.levels {
                rows.push(vec![
                    cell(&f.factor),
                    cell(&l.label),
                    l.acc.n.to_string(),
                    percent_mean_std(Some(l.acc)),
                    match l.delta_points {
                        Some(d) => signed(d),
                        None => "baseline".into(),
                    },
                    match l.seed_spread_points {
                        Some(s) => format!("±{s:.1} ({} seeds)", l.seeds_compared),
                        None => "–".into(),
                    },
                ]);
            }
        }
        table(
            &mut out,
            &[
                ("factor", false),
                ("level", false),
                ("runs", true),
                ("mean best eval acc", true),
                ("Δ points", true),
                ("spread over seeds", true),
            ],
            &rows,
        );
    }

    out.push_str(
        "\nCurves of eval accuracy, eval loss, train loss and learning rate per epoch are \
         in the HTML report (`ablate report EXP --format html`).\n",
    );
    if view.show_effects() {
        out.push_str("\n## In one sentence a factor\n\n");
        for f in &view.effects {
            out.push_str(&format!("- {}\n", f.sentence()));
        }
    }
    out
}

/// The "Claims" section: one row a claim with its verdict, then the reasons and caveats.
fn claims_section(out: &mut String, view: &ReportView<'_>) {
    use super::claims::{comparison_text, difference_text, evidence_text, statement};
    out.push_str("\n\n## Claims\n\n");
    out.push_str(&super::claims::overview(&view.claims));
    out.push_str("\n\n");
    let rows: Vec<Vec<String>> = view
        .claims
        .iter()
        .map(|cv| {
            vec![
                format!("{}<br>{}", cell(&cv.claim.name), cell(&statement(cv.claim))),
                format!("**{}**", cv.verdict.outcome.as_str()),
                cell(&comparison_text(cv)),
                difference_text(cv.claim.metric, cv.verdict.difference),
                cell(&evidence_text(cv.claim.metric, cv.claim.form, &cv.verdict)),
            ]
        })
        .collect();
    table(
        out,
        &[
            ("claim", false),
            ("verdict", false),
            ("mean ± std over seeds", true),
            ("difference", true),
            ("test", false),
        ],
        &rows,
    );
    out.push('\n');
    for cv in &view.claims {
        let mut line = format!("- {}: {}.", cell(&cv.claim.name), cell(&cv.verdict.reason));
        for note in &cv.verdict.notes {
            line.push_str(&format!(" {}.", cell(note)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.pop();
}
