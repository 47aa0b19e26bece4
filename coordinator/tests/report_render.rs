//! Every report format rendered from real training metrics: a 2×2×2 factorial grid of the
//! CNN family trained on Fashion-MNIST over two seeds (`tests/fixtures/factorial-metrics.json`,
//! made by `tests/fixtures/make_factorial_metrics.py`). The expected numbers are recomputed
//! here from the raw epochs, independently of the report code.
//!
//! The Markdown report is also compared with a golden file; after a deliberate change,
//! re-bless it with `ABLATE_BLESS=1 cargo test -p ablate-coordinator --test report_render`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ablate_coordinator::report::{render, Format, ReportData};
use serde_json::Value;

fn fixture() -> ReportData {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/factorial-metrics.json");
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("the fixture is a ReportData")
}

/// Independent per-run numbers: (best eval acc, best epoch, final eval loss, final train acc).
fn expected_run(run: &ablate_coordinator::report::RunData) -> Option<(f64, u32, f64, f64)> {
    let last = run.epochs.last()?;
    let mut best = (f64::MIN, 0);
    for e in &run.epochs {
        if e.eval_acc > best.0 {
            best = (e.eval_acc, e.epoch);
        }
    }
    Some((best.0, best.1, last.eval_loss, last.train_acc))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sample_std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
}

fn parse_points(cell: &str) -> f64 {
    cell.trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a number: `{cell}`"))
}

#[test]
fn json_has_the_report_json_shape_and_the_right_numbers() {
    let data = fixture();
    let v: Value = serde_json::from_str(&render(&data, Format::Json)).expect("valid JSON");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    };
    let set = |k: &[&str]| -> BTreeSet<String> { k.iter().map(|s| s.to_string()).collect() };
    assert_eq!(keys(&v), set(&["experiment", "runs"]));
    assert_eq!(
        keys(&v["experiment"]),
        set(&["id", "name", "state", "partial"])
    );
    assert_eq!(v["experiment"]["id"], "exp-fixture");
    assert_eq!(v["experiment"]["partial"], false);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), data.runs.len());
    for (r, run) in runs.iter().zip(&data.runs) {
        assert_eq!(
            keys(r),
            set(&[
                "id",
                "name",
                "model",
                "factors",
                "params",
                "state",
                "attempts",
                "best_eval_acc",
                "best_epoch",
                "final_eval_loss",
                "train_acc",
                "wall_s",
                "images_per_sec",
                "epochs"
            ])
        );
        assert_eq!(r["id"], run.id.as_str(), "runs keep submission order");
        assert_eq!(r["factors"], serde_json::to_value(&run.factors).unwrap());
        let (best, epoch, loss, train) = expected_run(run).unwrap();
        assert_eq!(r["best_eval_acc"].as_f64().unwrap(), best);
        assert_eq!(r["best_epoch"].as_u64().unwrap(), u64::from(epoch));
        assert_eq!(r["final_eval_loss"].as_f64().unwrap(), loss);
        assert_eq!(r["train_acc"].as_f64().unwrap(), train);
        let ips: Vec<f64> = run.epochs.iter().map(|e| e.images_per_sec).collect();
        assert!((r["images_per_sec"].as_f64().unwrap() - mean(&ips)).abs() < 1e-9);
        let epochs = r["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), run.epochs.len());
        for (e, rec) in epochs.iter().zip(&run.epochs) {
            assert_eq!(
                keys(e),
                set(&[
                    "epoch",
                    "train_loss",
                    "train_acc",
                    "eval_loss",
                    "eval_acc",
                    "lr",
                    "seconds"
                ])
            );
            assert_eq!(e["eval_acc"].as_f64().unwrap(), rec.eval_acc);
            assert_eq!(e["lr"].as_f64().unwrap(), rec.lr);
            for k in ["train_acc", "eval_acc"] {
                let a = e[k].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&a), "{k} = {a} is a fraction");
            }
        }
    }
}

#[test]
fn csv_parses_with_one_row_a_run_in_table_order() {
    let data = fixture();
    let text = render(&data, Format::Csv);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "id",
        "name",
        "model",
        "activation",
        "batch_norm",
        "head",
        "seed",
        "params",
        "best_eval_acc",
        "best_epoch",
        "final_eval_loss",
        "train_acc",
        "wall_s",
        "images_per_sec",
        "attempts",
        "state",
    ] {
        assert!(
            header.iter().any(|h| h == col),
            "column {col} in {header:?}"
        );
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(rows.len(), data.runs.len(), "one row a run");
    let mut ids = BTreeSet::new();
    let mut last = f64::INFINITY;
    for row in &rows {
        assert_eq!(row.len(), header.len());
        let run = data
            .runs
            .iter()
            .find(|r| r.id == row[col("id")])
            .expect("a known run");
        ids.insert(run.id.clone());
        assert_eq!(&row[col("name")], run.name, "names with spaces survive");
        assert_eq!(&row[col("head")], run.factors["head"].as_str().unwrap());
        let (best, epoch, loss, _) = expected_run(run).unwrap();
        let acc: f64 = row[col("best_eval_acc")].parse().unwrap();
        assert_eq!(acc, best);
        assert_eq!(row[col("best_epoch")].parse::<u32>().unwrap(), epoch);
        assert_eq!(row[col("final_eval_loss")].parse::<f64>().unwrap(), loss);
        assert!(acc <= last, "sorted by best eval accuracy");
        last = acc;
    }
    assert_eq!(ids.len(), data.runs.len());
}

/// The value of `attr="…"` in an element's text.
fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

/// The elements `<tag …>` inside `text`, as their opening-tag text.
fn elements<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let end = rest[i..].find('>').expect("a closed tag") + i;
        out.push(&rest[i..=end]);
        rest = &rest[end..];
    }
    out
}

#[test]
fn html_is_one_file_with_an_inline_svg_a_metric_and_a_polyline_point_an_epoch() {
    let data = fixture();
    let html = render(&data, Format::Html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for external in ["<script", "<link", " src=", "href=\"http", "url("] {
        assert!(
            !html.contains(external),
            "self-contained: found `{external}`"
        );
    }
    // Each run's table row carries the colour of its curves.
    let mut colour_of: BTreeMap<String, String> = BTreeMap::new();
    for row in elements(&html, "tr") {
        if let Some(id) = attr(row, "data-run") {
            let after = &html[html.find(row).unwrap()..];
            let swatch = elements(after, "span")[0];
            let style = attr(swatch, "style").unwrap();
            colour_of.insert(
                id.to_string(),
                style.trim_start_matches("background:").to_lowercase(),
            );
        }
    }
    assert_eq!(colour_of.len(), data.runs.len());
    let distinct: BTreeSet<&String> = colour_of.values().collect();
    assert_eq!(distinct.len(), data.runs.len(), "a distinct colour a run");

    type Getter = fn(&ablate_common::metrics::EpochRecord) -> f64;
    let metrics: [(&str, Getter); 4] = [
        ("eval_acc", |e| e.eval_acc),
        ("eval_loss", |e| e.eval_loss),
        ("train_loss", |e| e.train_loss),
        ("lr", |e| e.lr),
    ];
    for (key, value) in metrics {
        let open = format!("<figure class=\"chart\" id=\"chart-{key}\" data-metric=\"{key}\">");
        let start = html
            .find(&open)
            .unwrap_or_else(|| panic!("a chart for {key}"));
        let figure = &html[start..start + html[start..].find("</figure>").unwrap()];
        assert_eq!(figure.matches("<svg ").count(), 1, "{key}: one inline SVG");
        assert!(figure.contains("</svg>"));
        let polylines = elements(figure, "polyline");
        assert_eq!(
            polylines.len(),
            data.runs.len(),
            "{key}: one polyline a run"
        );
        for run in &data.runs {
            let colour = &colour_of[&run.id];
            let line = polylines
                .iter()
                .find(|p| attr(p, "stroke").unwrap().to_lowercase() == *colour)
                .unwrap_or_else(|| panic!("{key}: the curve of {}", run.name));
            let points: Vec<(f64, f64)> = attr(line, "points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            assert_eq!(points.len(), run.epochs.len(), "{key}: one point an epoch");
            // x grows with the epoch; a larger value is drawn higher (smaller pixel y).
            for w in points.windows(2) {
                assert!(w[1].0 > w[0].0, "{key}: epochs left to right");
            }
            for (a, pa) in run.epochs.iter().zip(&points) {
                for (b, pb) in run.epochs.iter().zip(&points) {
                    if value(a) > value(b) * (1.0 + 1e-3) + 1e-9 {
                        assert!(
                            pa.1 <= pb.1,
                            "{key} of {}: higher value, higher point",
                            run.name
                        );
                    }
                }
            }
        }
        assert!(figure.contains("epoch"), "{key}: the x axis is labelled");
        for run in &data.runs {
            assert!(
                figure.contains(&run.name),
                "{key}: legend names {}",
                run.name
            );
        }
    }
}

/// Rows of the Markdown table that follows `heading`, as cells.
fn markdown_table(md: &str, heading: &str) -> Vec<Vec<String>> {
    let section = &md[md
        .find(heading)
        .unwrap_or_else(|| panic!("section {heading}"))..];
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn factor_effects_match_an_independent_computation() {
    let data = fixture();
    let md = render(&data, Format::Markdown);
    let rows = markdown_table(&md, "## Factor effects");
    // factor → level → (best accs, seed → best accs), levels in submission order.
    let mut checked = 0;
    for factor in ["activation", "batch_norm", "head"] {
        let mut levels: Vec<String> = Vec::new();
        for run in &data.runs {
            let l = match &run.factors[factor] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !levels.contains(&l) {
                levels.push(l);
            }
        }
        let accs = |level: &str, seed: Option<u64>| -> Vec<f64> {
            data.runs
                .iter()
                .filter(|r| {
                    let l = match &r.factors[factor] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    l == level && seed.is_none_or(|s| r.factors["seed"] == s)
                })
                .map(|r| expected_run(r).unwrap().0)
                .collect()
        };
        let baseline = mean(&accs(&levels[0], None));
        let mut current_factor = String::new();
        let factor_rows: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| {
                if !r[0].is_empty() {
                    current_factor = r[0].clone();
                }
                current_factor == factor
            })
            .collect();
        assert_eq!(factor_rows.len(), levels.len(), "{factor}: a row a level");
        for (row, level) in factor_rows.iter().zip(&levels) {
            assert_eq!(
                &row[1], level,
                "{factor}: levels in grid order, baseline first"
            );
            let a = accs(level, None);
            assert_eq!(row[2].parse::<usize>().unwrap(), a.len());
            let (m, s) = row[3].split_once('±').expect("mean ± std");
            assert!(
                (parse_points(m) - mean(&a) * 100.0).abs() <= 0.051,
                "{factor}={level} mean"
            );
            assert!(
                (parse_points(s) - sample_std(&a) * 100.0).abs() <= 0.051,
                "{factor}={level} std"
            );
            if level == &levels[0] {
                assert_eq!(row[4], "baseline");
                continue;
            }
            let delta = (mean(&a) - baseline) * 100.0;
            assert!(
                (parse_points(&row[4]) - delta).abs() <= 0.051,
                "{factor}={level}: Δ {delta}"
            );
            let per_seed: Vec<f64> = [1u64, 2]
                .iter()
                .map(|&s| (mean(&accs(level, Some(s))) - mean(&accs(&levels[0], Some(s)))) * 100.0)
                .collect();
            let spread = sample_std(&per_seed);
            let cell = row[5].trim_start_matches('±');
            let printed: f64 = cell.split_whitespace().next().unwrap().parse().unwrap();
            assert!(
                (printed - spread).abs() <= 0.051,
                "{factor}={level}: spread {spread}"
            );
            let sentence = format!(
                "- {factor}={level}: {}{:.1} points on average over {} runs",
                if delta >= 0.0 { "+" } else { "" },
                delta,
                a.len()
            );
            assert!(md.contains(&sentence), "sentence `{sentence}` in\n{md}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
    // Markdown opens with the summary and ends with the factor sentences.
    assert!(md.starts_with(
        "# Report: factorial-tiny\n\nExperiment factorial-tiny (exp-fixture) is finished: 16 runs"
    ));
    let last_section = &md[md.rfind("\n## ").unwrap()..];
    assert!(last_section.starts_with("\n## In one sentence a factor"));
    assert_eq!(
        last_section.lines().filter(|l| l.starts_with("- ")).count(),
        3
    );
}

#[test]
fn seeds_are_aggregated_as_mean_and_std() {
    let data = fixture();
    let md = render(&data, Format::Markdown);
    let rows = markdown_table(&md, "## Seeds aggregated");
    assert_eq!(rows.len(), data.runs.len() / 2, "two seeds a configuration");
    for row in rows {
        let accs: Vec<f64> = data
            .runs
            .iter()
            .filter(|r| {
                let without: Vec<&str> = r
                    .name
                    .split(' ')
                    .filter(|t| !t.starts_with("seed="))
                    .collect();
                without.join(" ") == row[0]
            })
            .map(|r| expected_run(r).unwrap().0)
            .collect();
        assert_eq!(accs.len(), 2, "{}", row[0]);
        assert_eq!(row[2], "2");
        let (m, s) = row[3].split_once('±').expect("mean ± std");
        assert!((parse_points(m) - mean(&accs) * 100.0).abs() <= 0.051);
        assert!((parse_points(s) - sample_std(&accs) * 100.0).abs() <= 0.051);
    }
}

#[test]
fn markdown_matches_the_golden_file() {
    let md = render(&fixture(), Format::Markdown);
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/factorial-report.md");
    if std::env::var_os("ABLATE_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &md).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file (create it with ABLATE_BLESS=1)");
    assert_eq!(
        md, want,
        "the Markdown report changed; re-bless if intended"
    );
}

/// The fixture as it stood mid-experiment: some runs done, two training, one queued.
fn mid_experiment() -> ReportData {
    let mut data = fixture();
    data.experiment.state = "running".into();
    data.runs[3].state = "running".into();
    data.runs[3].epochs.truncate(2);
    data.runs[9].state = "running".into();
    data.runs[9].epochs.truncate(1);
    data.runs[15].state = "queued".into();
    data.runs[15].epochs.clear();
    data.runs[15].attempts = 0;
    data.runs[15].wall_s = 0.0;
    data
}

#[test]
fn a_partial_report_is_marked_in_every_format() {
    let data = mid_experiment();
    let md = render(&data, Format::Markdown);
    assert!(md.contains("**Partial report.**"));
    assert!(md.contains("13 of 16 runs are done"));
    let queued_row = md
        .lines()
        .find(|l| l.contains(&data.runs[15].name))
        .unwrap();
    assert!(
        queued_row.contains("| – |") && queued_row.ends_with("| queued |"),
        "{queued_row}"
    );
    let running_row = md.lines().find(|l| l.contains(&data.runs[3].name)).unwrap();
    assert!(
        running_row.contains(" / 2 |"),
        "best epoch over the 2 done: {running_row}"
    );

    let v: Value = serde_json::from_str(&render(&data, Format::Json)).unwrap();
    assert_eq!(v["experiment"]["partial"], true);
    assert_eq!(v["experiment"]["state"], "running");
    let queued = &v["runs"][15];
    for k in [
        "best_eval_acc",
        "best_epoch",
        "final_eval_loss",
        "train_acc",
        "images_per_sec",
    ] {
        assert!(queued[k].is_null(), "{k} of a run with no epoch is null");
    }
    assert_eq!(v["runs"][9]["epochs"].as_array().unwrap().len(), 1);

    let html = render(&data, Format::Html);
    assert!(html.contains("partial report"));
    assert!(html.contains("<title>factorial-tiny (partial)"));
    let figure = &html[html.find("data-metric=\"eval_acc\"").unwrap()..];
    let figure = &figure[..figure.find("</figure>").unwrap()];
    let polylines = elements(figure, "polyline");
    assert_eq!(polylines.len(), 15, "the queued run has no curve yet");
    let lengths: BTreeSet<usize> = polylines
        .iter()
        .map(|p| attr(p, "points").unwrap().split_whitespace().count())
        .collect();
    assert_eq!(lengths, [1, 2, 4].into_iter().collect());

    let csv_text = render(&data, Format::Csv);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 16);
    let last = rows.last().unwrap();
    assert!(
        last.iter().any(|c| c == "queued"),
        "the run with no epoch is last"
    );
}

#[test]
fn a_failed_or_unfinished_run_is_never_called_best() {
    let mut data = fixture();
    data.runs
        .retain(|r| r.factors["seed"] == 1 && r.factors["head"] == "fc");
    let summaries: Vec<(usize, f64)> = data
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| expected_run(r).map(|(acc, ..)| (i, acc)))
        .collect();
    let (top, _) = *summaries.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    data.runs[top].state = "failed".into();
    data.runs[top].error = Some("lease expired".into());
    let top_name = data.runs[top].name.clone();
    let md = render(&data, Format::Markdown);
    let summary = md.lines().nth(2).unwrap_or_default();
    assert!(summary.contains("Best: "), "{md}");
    assert!(
        !summary.contains(&format!("Best: {top_name} ")),
        "the failed run is called best: {summary}"
    );
    assert!(
        !summary.contains(&format!("Worst: {top_name} ")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("Failed: {top_name} (lease expired)")),
        "{summary}"
    );

    for r in &mut data.runs {
        r.state = "running".into();
    }
    data.experiment.state = "running".into();
    let md = render(&data, Format::Markdown);
    assert!(!md.contains("Best: "), "{md}");
    assert!(md.contains("No run has finished yet, so none is called best."));
}

#[test]
fn a_single_factor_grid_without_seeds_has_no_effects_section() {
    let mut data = fixture();
    data.runs.retain(|r| {
        r.factors["seed"] == 1 && r.factors["batch_norm"] == true && r.factors["head"] == "fc"
    });
    for r in &mut data.runs {
        r.factors.retain(|k, _| k == "activation");
    }
    let md = render(&data, Format::Markdown);
    assert!(!md.contains("## Factor effects"), "{md}");
    assert!(!md.contains("## Seeds aggregated"));
    assert!(md.contains("Best: cnn act=leaky_relu bn=true head=fc seed=1"));
}

#[test]
fn every_format_renders_to_a_file() {
    // Samples for a human to look at: target/tmp/report-sample/report.{md,html,csv,json}.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-sample");
    std::fs::create_dir_all(&dir).unwrap();
    for (data, stem) in [(fixture(), "report"), (mid_experiment(), "partial")] {
        for format in Format::ALL {
            let text = render(&data, format);
            assert!(!text.is_empty());
            std::fs::write(dir.join(format!("{stem}.{}", format.extension())), text).unwrap();
        }
    }
}
