//! The "Claims" section of every report format, on the real training metrics of the report
//! fixture (a 2×2×2 CNN-family factorial on Fashion-MNIST, two seeds), with claims parsed
//! from a grid that expands to the same runs. Each verdict follows from the fixture's
//! numbers (worked out in the comments), so each outcome is shown in each format.

use std::path::PathBuf;

use ablate_common::spec::grid::parse_grid;
use ablate_coordinator::report::{render, Format, ReportData};
use serde_json::Value;

const GRID: &str = r#"name = "factorial-tiny"

[base]
model = "cnn"
image_size = 32
channels = 1
classes = 10

[grid]
activation = ["sigmoid", "leaky_relu"]
batch_norm = [false, true]
head = ["fc", "gap"]
seed = [1, 2]

# Per seed, BN on vs off: 0.764 vs 0.335 and 0.770 vs 0.319; t = 38 over 2 seeds, p ≈ 0.008.
[[claims]]
name = "BN helps"
better = { batch_norm = true }
than = { batch_norm = false }

# The sigmoid CNN without BN: 11.5 % and 10.8 %, within 5 points of chance (10 %).
[[claims]]
name = "sigmoid without BN does not learn"
does_not_learn = { activation = "sigmoid", batch_norm = false }
margin = 0.05

# GAP vs FC head: −9.5 and −11.1 points, p ≈ 0.025 the other way.
[[claims]]
name = "the GAP head beats the FC head"
better = { head = "gap" }
than = { head = "fc" }

# LeakyReLU vs sigmoid: +26.0 and +25.0 points; beyond a 25-point margin by +1.0 and 0.0:
# two seeds cannot tell.
[[claims]]
name = "LeakyReLU beats sigmoid by 25 points"
better = { activation = "leaky_relu" }
than = { activation = "sigmoid" }
margin = 0.25

# One run each: 83.6 % vs 74.5 %.
[[claims]]
name = "one seed: LeakyReLU beats sigmoid with BN and FC"
better = { name = "cnn act=leaky_relu bn=true head=fc seed=1" }
than = { name = "cnn act=sigmoid bn=true head=fc seed=1" }
"#;

const EXPECTED: [(&str, &str); 5] = [
    ("BN helps", "holds"),
    ("sigmoid without BN does not learn", "holds"),
    ("the GAP head beats the FC head", "fails"),
    ("LeakyReLU beats sigmoid by 25 points", "inconclusive"),
    ("one seed: LeakyReLU beats sigmoid with BN and FC", "holds"),
];

fn fixture() -> ReportData {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/factorial-metrics.json");
    let mut data: ReportData =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let grid = parse_grid(GRID, "claims.toml").unwrap();
    let names: Vec<&str> = grid.runs.iter().map(|r| r.name.as_str()).collect();
    let fixture_names: Vec<&str> = data.runs.iter().map(|r| r.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let mut fixture_sorted = fixture_names.clone();
    fixture_sorted.sort();
    assert_eq!(
        sorted, fixture_sorted,
        "the grid expands to the fixture's runs"
    );
    data.claims = grid.claims;
    data
}

#[test]
fn json_carries_each_verdict_with_its_numbers() {
    let v: Value = serde_json::from_str(&render(&fixture(), Format::Json)).unwrap();
    let claims = v["claims"].as_array().expect("claims");
    assert_eq!(claims.len(), EXPECTED.len());
    for ((name, verdict), c) in EXPECTED.iter().zip(claims) {
        assert_eq!(c["name"], *name);
        assert_eq!(c["verdict"], *verdict, "{c:#}");
        assert_eq!(c["partial"], false);
    }
    let bn = &claims[0];
    assert_eq!(bn["side"]["runs"].as_array().unwrap().len(), 8);
    assert_eq!(bn["side"]["seeds"], 2);
    assert_eq!(bn["test"]["kind"], "paired_t");
    assert!(bn["test"]["p"].as_f64().unwrap() < 0.01, "{bn:#}");
    let d = bn["difference"].as_f64().unwrap();
    assert!((d - 0.44).abs() < 0.001, "{d}");
    let flat = &claims[1];
    assert_eq!(flat["form"], "does_not_learn");
    assert_eq!(flat["chance"], 0.1);
    assert_eq!(flat["than"], Value::Null);
    assert_eq!(flat["test"]["kind"], "one_sample_t");
    assert_eq!(claims[4]["test"]["kind"], "single_observation");
    assert_eq!(claims[4]["test"]["p"], Value::Null);
    // A report without claims has no `claims` key (report.json stays as it was).
    let mut plain = fixture();
    plain.claims.clear();
    let v: Value = serde_json::from_str(&render(&plain, Format::Json)).unwrap();
    assert!(v.get("claims").is_none());
}

#[test]
fn markdown_has_a_claims_section_with_a_row_a_claim() {
    let md = render(&fixture(), Format::Markdown);
    let claims_at = md.find("## Claims").expect("a Claims section");
    assert!(claims_at < md.find("## Runs").unwrap(), "claims come first");
    assert!(
        md.contains("5 claims: 3 hold, 1 fails, 1 inconclusive."),
        "{md}"
    );
    for (name, verdict) in EXPECTED {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {name}<br>")))
            .unwrap_or_else(|| panic!("no row for {name}"));
        assert!(row.contains(&format!("| **{verdict}** |")), "{row}");
    }
    let one = md.lines().find(|l| l.starts_with("| one seed:")).unwrap();
    assert!(
        one.contains("single observation (1 seed), untested"),
        "{one}"
    );
    assert!(one.contains("83.6 % (n=1) vs 74.5 % (n=1)"), "{one}");
    let bn = md.lines().find(|l| l.starts_with("| BN helps")).unwrap();
    assert!(bn.contains("paired t, 2 seeds, p = 0.00"), "{bn}");
    assert!(bn.contains("| +44.0 pts |"), "{bn}");
    assert!(md.contains("- the GAP head beats the FC head: not better on best_eval_acc: the data point the other way"), "{md}");
}

#[test]
fn html_and_claims_csv_carry_the_verdicts() {
    let data = fixture();
    let html = render(&data, Format::Html);
    assert!(html.contains("<section class=\"claims\">"));
    assert_eq!(html.matches("<tr data-verdict=\"holds\">").count(), 3);
    assert_eq!(html.matches("<tr data-verdict=\"fails\">").count(), 1);
    assert_eq!(
        html.matches("<tr data-verdict=\"inconclusive\">").count(),
        1
    );
    assert!(html.contains("<span class=\"verdict inconclusive\">inconclusive</span>"));

    let csv = render(&data, Format::ClaimsCsv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + EXPECTED.len(), "{csv}");
    assert!(
        lines[0].ends_with(",verdict,partial,reason,notes"),
        "{}",
        lines[0]
    );
    for ((name, verdict), line) in EXPECTED.iter().zip(&lines[1..]) {
        assert!(line.starts_with(name), "{line}");
        assert!(line.contains(&format!(",{verdict},false,")), "{line}");
    }
    assert!(
        lines[5].contains(",single_observation,1,,,,,"),
        "{}",
        lines[5]
    );
}

#[test]
fn a_partial_experiment_judges_finished_runs_and_says_so() {
    let mut data = fixture();
    data.experiment.state = "running".into();
    let i = data
        .runs
        .iter()
        .position(|r| r.name == "cnn act=leaky_relu bn=true head=fc seed=2")
        .unwrap();
    data.runs[i].state = "running".into();
    data.runs[i].epochs.truncate(1);
    let v: Value = serde_json::from_str(&render(&data, Format::Json)).unwrap();
    let bn = &v["claims"][0];
    assert_eq!(bn["partial"], true);
    assert_eq!(
        bn["verdict"], "holds",
        "7 finished runs still decide it: {bn:#}"
    );
    let notes = bn["notes"].to_string();
    assert!(
        notes.contains("1 of 8 runs of `better` not finished yet: judged on the finished ones"),
        "{notes}"
    );
    let md = render(&data, Format::Markdown);
    assert!(md.contains("Some selected runs are not finished"), "{md}");
    // The claim that does not select the unfinished run is not partial.
    assert_eq!(v["claims"][1]["partial"], false);
}

#[test]
fn claims_csv_of_a_grid_without_claims_is_its_header() {
    let mut data = fixture();
    data.claims.clear();
    let csv = render(&data, Format::ClaimsCsv);
    assert_eq!(csv.lines().count(), 1);
    assert!(!render(&data, Format::Markdown).contains("## Claims"));
}
