//! The HTML report: one self-contained file (inline CSS, inline SVG charts, no JavaScript,
//! nothing fetched) with the summary, the runs table (a colour swatch a run, matching the
//! curves), seeds aggregated, factor effects, and one chart a metric.

use super::charts::{chart_svg, hex, run_color, Metric};
use super::effects::signed;
use super::view::{
    duration, factor_pairs, fixed, mean_std, params, percent, percent_mean_std, throughput,
    ReportView, RUN_COLUMNS, SEED_COLUMNS,
};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f9fafb; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1440px; margin: 0 auto; padding: 24px 16px 40px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
header .meta { color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; vertical-align: middle; margin-left: 6px; }
.badge.partial { background: #fef3c7; color: #92400e; border: 1px solid #fcd34d; }
.badge.done { background: #dcfce7; color: #166534; border: 1px solid #86efac; }
.banner { margin: 16px 0; padding: 10px 14px; border-radius: 8px; background: #fffbeb;
  border: 1px solid #fcd34d; color: #78350f; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 16px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,0.03); }
section h2 { margin: 0 0 4px; font-size: 18px; font-weight: 620; }
section p.note { margin: 0 0 12px; color: var(--muted); font-size: 13px; }
.summary p { margin: 0 0 6px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 5px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { text-align: left; font-weight: 600; color: #374151; background: #f3f4f6;
  border-bottom: 1px solid #d1d5db; white-space: normal; vertical-align: bottom;
  font-size: 12px; line-height: 1.3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
tbody tr:hover { background: #eff6ff; }
td.name { font-weight: 550; font-size: 12.5px; }
td.factors { white-space: normal; min-width: 160px; max-width: 280px; line-height: 1.8; }
td.factors span { display: inline-block; margin: 0 3px 0 0; padding: 0 5px; line-height: 1.5;
  border-radius: 4px; background: #f1f5f9; color: #334155; white-space: nowrap;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 11px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
  margin-right: 8px; vertical-align: -1px; }
.overfit { color: #b91c1c; font-weight: 600; }
.state { font-size: 12px; padding: 1px 7px; border-radius: 999px; background: #f3f4f6; }
.state.finished { background: #dcfce7; color: #166534; }
.state.running { background: #dbeafe; color: #1e40af; }
.state.queued { background: #f3f4f6; color: #4b5563; }
.state.failed { background: #fee2e2; color: #991b1b; }
.state.cancelled { background: #fef3c7; color: #92400e; }
tr.baseline td { color: var(--muted); }
.bar { position: relative; width: 180px; height: 10px; background: #f3f4f6; border-radius: 5px; }
.bar span { position: absolute; top: 0; height: 10px; border-radius: 5px; }
.bar span.pos { left: 50%; background: #16a34a; }
.bar span.neg { right: 50%; background: #dc2626; }
.bar::after { content: ""; position: absolute; left: 50%; top: -2px; width: 1px; height: 14px;
  background: #9ca3af; }
ul.sentences { margin: 12px 0 0; padding-left: 20px; }
ul.sentences li { margin: 3px 0; }
figure.chart { margin: 0 0 18px; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
figure.chart figcaption { color: var(--muted); font-size: 12px; margin-top: 2px; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.verdict { font-size: 12px; font-weight: 650; padding: 1px 8px; border-radius: 999px; }
.verdict.holds { background: #dcfce7; color: #166534; }
.verdict.fails { background: #fee2e2; color: #991b1b; }
.verdict.inconclusive { background: #f3f4f6; color: #4b5563; }
td.claim { white-space: normal; min-width: 220px; }
td.claim small, td.why { color: var(--muted); white-space: normal; font-size: 12px; }
"#;

fn th(label: &str, num: bool) -> String {
    if num {
        format!("<th class=\"num\">{}</th>", escape(label))
    } else {
        format!("<th>{}</th>", escape(label))
    }
}

fn td_num(text: &str) -> String {
    format!("<td class=\"num\">{}</td>", escape(text))
}

/// Renders the HTML report.
pub fn render(view: &ReportView<'_>) -> String {
    let data = view.data;
    let exp = &data.experiment;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!(
        "<title>{}{} — ablate report</title>\n",
        escape(&exp.name),
        if view.partial { " (partial)" } else { "" }
    ));
    h.push_str(&format!(
        "<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
    ));

    // Header.
    h.push_str("<header>\n");
    h.push_str(&format!(
        "<h1>{}<span class=\"badge {}\">{}</span></h1>\n",
        escape(&exp.name),
        if view.partial { "partial" } else { "done" },
        if view.partial {
            "partial report"
        } else {
            "complete"
        }
    ));
    h.push_str(&format!(
        "<div class=\"meta\">experiment <code>{}</code> · {} · {} run{}</div>\n</header>\n",
        escape(&exp.id),
        escape(&exp.state),
        data.runs.len(),
        if data.runs.len() == 1 { "" } else { "s" }
    ));
    if view.partial {
        h.push_str(
            "<div class=\"banner\"><strong>Partial report.</strong> The experiment is still \
             running; every number and curve below is from the epochs recorded so far.</div>\n",
        );
    }

    // Summary.
    h.push_str("<section class=\"summary\">\n<h2>Summary</h2>\n");
    for s in view.summary_sentences() {
        h.push_str(&format!("<p>{}</p>\n", escape(&s)));
    }
    h.push_str("</section>\n");

    if !view.claims.is_empty() {
        claims_section(view, &mut h);
    }
    runs_table(view, &mut h);
    let stopping = super::stopping::html(view, escape);
    if !stopping.is_empty() {
        h.push_str("<section class=\"stopping\">\n");
        h.push_str(&stopping);
        h.push_str("</section>\n");
    }
    if view.show_groups() {
        groups_table(view, &mut h);
    }
    if view.show_effects() {
        effects_section(view, &mut h);
    }

    // Curves.
    h.push_str("<section class=\"curves\">\n<h2>Curves</h2>\n");
    h.push_str(
        "<p class=\"note\">One chart a metric, every run overlaid in its table colour; the \
         legend lists the runs best first.</p>\n",
    );
    for metric in Metric::ALL {
        h.push_str(&format!(
            "<figure class=\"chart\" id=\"chart-{key}\" data-metric=\"{key}\">\n",
            key = metric.key()
        ));
        h.push_str(&chart_svg(view, metric));
        h.push_str(&format!(
            "\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(metric.description())
        ));
    }
    h.push_str("</section>\n");

    h.push_str(
        "<footer>Rendered by <code>ablate report</code>. Accuracies are on the eval split; \
         images/s is the mean training throughput over the epochs.</footer>\n",
    );
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn runs_table(view: &ReportView<'_>, h: &mut String) {
    let data = view.data;
    h.push_str("<section class=\"runs\">\n<h2>Runs</h2>\n");
    h.push_str(
        "<p class=\"note\">Sorted by best eval accuracy. <em>Epoch</em> is the best epoch over \
         the epochs done; <em>train acc</em> is the last epoch's, with the train − eval gap in \
         points (red above 10: overfitting).</p>\n",
    );
    h.push_str("<div class=\"scroll\"><table id=\"runs\">\n<thead><tr>");
    for (label, num) in RUN_COLUMNS {
        h.push_str(&th(label, num));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (rank, &i) in view.order.iter().enumerate() {
        let run = &data.runs[i];
        let s = &view.summaries[i];
        h.push_str(&format!("<tr data-run=\"{}\">", escape(&run.id)));
        h.push_str(&td_num(&(rank + 1).to_string()));
        h.push_str(&format!(
            "<td class=\"name\"><span class=\"swatch\" style=\"background:{}\"></span>{}</td>",
            hex(run_color(i)),
            escape(&run.name)
        ));
        h.push_str(&format!("<td>{}</td>", escape(&run.model)));
        let factors: Vec<String> = factor_pairs(run)
            .iter()
            .map(|f| format!("<span>{}</span>", escape(f)))
            .collect();
        h.push_str(&format!("<td class=\"factors\">{}</td>", factors.concat()));
        h.push_str(&td_num(&params(run.params)));
        h.push_str(&format!(
            "<td class=\"num\"><strong>{}</strong></td>",
            escape(&percent(s.best_eval_acc))
        ));
        h.push_str(&td_num(&match s.best_epoch {
            Some(e) => format!("{e} / {}", s.epochs_done),
            None => "–".into(),
        }));
        h.push_str(&td_num(&fixed(s.final_eval_loss, 3)));
        match s.gap_points() {
            Some(gap) => h.push_str(&format!(
                "<td class=\"num{}\" title=\"train − eval at the last epoch\">{} ({})</td>",
                if s.overfits() { " overfit" } else { "" },
                escape(&percent(s.train_acc)),
                signed(gap)
            )),
            None => h.push_str(&td_num(&percent(s.train_acc))),
        }
        h.push_str(&td_num(&duration(run.wall_s)));
        h.push_str(&td_num(&throughput(s.images_per_sec)));
        h.push_str(&td_num(&run.attempts.to_string()));
        let state_title = run
            .error
            .as_ref()
            .map(|e| format!(" title=\"{}\"", escape(e)))
            .unwrap_or_default();
        h.push_str(&format!(
            "<td><span class=\"state {}\"{}>{}</span></td>",
            escape(&run.state),
            state_title,
            escape(&run.state)
        ));
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n");
    let errors: Vec<String> = data
        .runs
        .iter()
        .filter_map(|r| {
            r.error.as_ref().map(|e| {
                format!(
                    "<li><strong>{}</strong>: {}</li>",
                    escape(&r.name),
                    escape(e)
                )
            })
        })
        .collect();
    if !errors.is_empty() {
        h.push_str(&format!(
            "<p class=\"note\">Errors:</p><ul>{}</ul>\n",
            errors.join("")
        ));
    }
    h.push_str("</section>\n");
}

fn groups_table(view: &ReportView<'_>, h: &mut String) {
    h.push_str("<section class=\"seeds\">\n<h2>Seeds aggregated</h2>\n");
    h.push_str(
        "<p class=\"note\">Runs that differ only by seed: mean ± sample standard deviation.</p>\n",
    );
    h.push_str("<div class=\"scroll\"><table id=\"seeds\">\n<thead><tr>");
    for (label, num) in SEED_COLUMNS {
        h.push_str(&th(label, num));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for g in &view.groups {
        h.push_str("<tr>");
        h.push_str(&format!(
            "<td class=\"name\"><span class=\"swatch\" style=\"background:{}\"></span>{}</td>",
            hex(run_color(g.runs[0])),
            escape(&g.label)
        ));
        h.push_str(&format!("<td>{}</td>", escape(&g.model)));
        h.push_str(&td_num(&g.runs.len().to_string()));
        h.push_str(&format!(
            "<td class=\"num\"><strong>{}</strong></td>",
            escape(&percent_mean_std(g.best_eval_acc))
        ));
        h.push_str(&td_num(&mean_std(g.best_epoch, 1)));
        h.push_str(&td_num(&mean_std(g.final_eval_loss, 3)));
        h.push_str(&td_num(&percent_mean_std(g.train_acc)));
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n</section>\n");
}

fn effects_section(view: &ReportView<'_>, h: &mut String) {
    h.push_str("<section class=\"effects\">\n<h2>Factor effects</h2>\n");
    h.push_str(
        "<p class=\"note\">Mean best eval accuracy of the runs at each level (averaged over \
         every other factor) and its difference to the baseline level (the first of the grid), \
         in points; the spread is the standard deviation of that difference over seeds. \
         Factors with the largest effect first.</p>\n",
    );
    let scale = view
        .effects
        .iter()
        .map(|f| f.strength())
        .fold(1.0, f64::max);
    h.push_str("<div class=\"scroll\"><table id=\"effects\">\n<thead><tr>");
    for (label, num) in [
        ("factor", false),
        ("level", false),
        ("runs", true),
        ("mean best eval acc", true),
        ("Δ points", true),
        ("", false),
        ("spread over seeds", true),
    ] {
        h.push_str(&th(label, num));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for f in &view.effects {
        for (k, l) in f.levels.iter().enumerate() {
            h.push_str(if k == 0 {
                "<tr class=\"baseline\">"
            } else {
                "<tr>"
            });
            h.push_str(&format!(
                "<td>{}</td>",
                if k == 0 {
                    escape(&f.factor)
                } else {
                    String::new()
                }
            ));
            h.push_str(&format!("<td><code>{}</code></td>", escape(&l.label)));
            h.push_str(&td_num(&l.acc.n.to_string()));
            h.push_str(&td_num(&percent_mean_std(Some(l.acc))));
            match l.delta_points {
                Some(d) => {
                    h.push_str(&format!(
                        "<td class=\"num\"><strong>{}</strong></td>",
                        signed(d)
                    ));
                    let width = (d.abs() / scale * 50.0).min(50.0);
                    h.push_str(&format!(
                        "<td><div class=\"bar\"><span class=\"{}\" style=\"width:{width:.1}%\">\
                         </span></div></td>",
                        if d >= 0.0 { "pos" } else { "neg" }
                    ));
                }
                None => h.push_str("<td class=\"num\">baseline</td><td></td>"),
            }
            h.push_str(&td_num(&match l.seed_spread_points {
                Some(s) => format!("±{s:.1} ({} seeds)", l.seeds_compared),
                None => "–".into(),
            }));
            h.push_str("</tr>\n");
        }
    }
    h.push_str("</tbody></table></div>\n<ul class=\"sentences\">\n");
    for f in &view.effects {
        h.push_str(&format!("<li>{}</li>\n", escape(&f.sentence())));
    }
    h.push_str("</ul>\n</section>\n");
}

/// The "Claims" section: a verdict badge a claim, the numbers behind it, and why.
fn claims_section(view: &ReportView<'_>, h: &mut String) {
    use super::claims::{comparison_text, difference_text, evidence_text, overview, statement};
    h.push_str("<section class=\"claims\">\n<h2>Claims</h2>\n");
    h.push_str(&format!(
        "<p class=\"note\">{}</p>\n",
        escape(&overview(&view.claims))
    ));
    h.push_str("<div class=\"scroll\"><table id=\"claims\">\n<thead><tr>");
    for (label, num) in [
        ("claim", false),
        ("verdict", false),
        ("mean ± std over seeds", true),
        ("difference", true),
        ("test", false),
        ("why", false),
    ] {
        h.push_str(&th(label, num));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for cv in &view.claims {
        let outcome = cv.verdict.outcome.as_str();
        let mut why = escape(&cv.verdict.reason);
        for note in &cv.verdict.notes {
            why.push_str(&format!("<br>{}", escape(note)));
        }
        h.push_str(&format!(
            "<tr data-verdict=\"{outcome}\"><td class=\"claim\">{}<br><small>{}</small></td>\
             <td><span class=\"verdict {outcome}\">{outcome}</span></td>{}{}<td class=\"test\">{}</td>\
             <td class=\"why\">{why}</td></tr>\n",
            escape(&cv.claim.name),
            escape(&statement(cv.claim)),
            td_num(&comparison_text(cv)),
            td_num(&difference_text(cv.claim.metric, cv.verdict.difference)),
            escape(&evidence_text(cv.claim.metric, cv.claim.form, &cv.verdict)),
        ));
    }
    h.push_str("</tbody></table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
