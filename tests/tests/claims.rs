//! Claims end to end: `ablate run` trains a tiny grid that states claims whose outcome is
//! certain (a LeNet whose learning rate is 1e-9 stays where its random initialisation put
//! it; one at 0.003 learns Fashion-MNIST within three epochs), and every report format
//! carries the verdicts.

use std::process::Command;

use ablate_tests::{binary, lenet_base};
use serde_json::Value;

/// Six LeNet runs (two learning rates × three seeds) and four claims.
fn grid() -> String {
    format!(
        r#"{}
[grid]
lr = [1e-9, 0.003]
seed = [1, 2, 3]

[[claims]]
name = "training at lr 0.003 learns"
learns = {{ lr = 0.003 }}
metric = "final_eval_acc"
margin = 0.15

[[claims]]
name = "a frozen model does not learn"
does_not_learn = {{ lr = 1e-9 }}
metric = "final_eval_acc"
margin = 0.15

[[claims]]
name = "lr 0.003 beats a frozen model"
better = {{ lr = 0.003 }}
than = {{ lr = 1e-9 }}
margin = 0.1

[[claims]]
name = "a frozen model beats lr 0.003"
better = {{ lr = 1e-9 }}
than = {{ lr = 0.003 }}
"#,
        lenet_base("claims-e2e", 3, 2048, "")
    )
}

#[test]
fn a_grid_with_claims_trains_and_every_report_format_carries_the_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let grid_path = dir.path().join("claims.toml");
    std::fs::write(&grid_path, grid()).unwrap();

    // `validate` lists the claims and what each side selects.
    let out = Command::new(binary("ablate"))
        .arg("validate")
        .arg(&grid_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4 claim(s):"), "{text}");
    assert!(
        text.contains(
            "   learns { lr = 0.003 } selects 3 run(s): lenet lr=0.003 seed=1, lenet lr=0.003 \
             seed=2, lenet lr=0.003 seed=3"
        ),
        "{text}"
    );

    // A selector that matches nothing is refused, at its line and column.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        grid().replace("than = { lr = 1e-9 }", "than = { lr = 0.5 }"),
    )
    .unwrap();
    let out = Command::new(binary("ablate"))
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml:39:1: claim `lr 0.003 beats a frozen model`: `than` = { lr = 0.5 } selects no run"),
        "{stderr}"
    );

    let data_dir = dir.path().join("data");
    let out = Command::new(binary("ablate"))
        .args(["run", grid_path.to_str().unwrap(), "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ablate run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = data_dir.join("reports").join("claims-e2e");
    let read = |name: &str| {
        std::fs::read_to_string(reports.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let expected = [
        ("training at lr 0.003 learns", "holds"),
        ("a frozen model does not learn", "holds"),
        ("lr 0.003 beats a frozen model", "holds"),
        ("a frozen model beats lr 0.003", "fails"),
    ];

    let json: Value = serde_json::from_str(&read("report.json")).unwrap();
    let claims = json["claims"].as_array().expect("a claims array");
    assert_eq!(claims.len(), 4, "{json:#}");
    for ((name, verdict), claim) in expected.iter().zip(claims) {
        assert_eq!(claim["name"], *name);
        assert_eq!(claim["verdict"], *verdict, "{claim:#}");
        assert_eq!(claim["partial"], false);
        assert_eq!(claim["side"]["seeds"], 3, "{claim:#}");
        assert_eq!(claim["side"]["runs"].as_array().unwrap().len(), 3);
        let kind = if claim["form"] == "better" {
            "paired_t"
        } else {
            "one_sample_t"
        };
        assert_eq!(claim["test"]["kind"], kind, "{claim:#}");
        assert_eq!(claim["test"]["n"], 3);
        assert!(claim["test"]["p"].as_f64().unwrap() <= 1.0);
    }
    // The frozen side's numbers are the same runs in both `better` claims, mirrored.
    let d = |i: usize| claims[i]["difference"].as_f64().unwrap();
    assert!(
        d(2) > 0.1 && (d(2) + d(3)).abs() < 1e-9,
        "{} {}",
        d(2),
        d(3)
    );

    let md = read("report.md");
    assert!(md.contains("## Claims"), "{md}");
    assert!(md.contains("4 claims: 3 hold, 1 fails."), "{md}");
    for (name, verdict) in expected {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {name}<br>")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{md}"));
        assert!(row.contains(&format!("| **{verdict}** |")), "{row}");
        assert!(row.contains("t, 3 seeds, p "), "{row}");
    }

    let html = read("report.html");
    assert!(html.contains("<table id=\"claims\">"));
    assert_eq!(html.matches("<tr data-verdict=\"holds\">").count(), 3);
    assert_eq!(html.matches("<tr data-verdict=\"fails\">").count(), 1);

    let csv = read("report.claims.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[0].starts_with("claim,form,metric,margin,side,"),
        "{csv}"
    );
    for ((name, verdict), line) in expected.iter().zip(&lines[1..]) {
        assert!(line.starts_with(&format!("{name},")), "{line}");
        assert!(line.contains(&format!(",{verdict},false,")), "{line}");
    }
}
