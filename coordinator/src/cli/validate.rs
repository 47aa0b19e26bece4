//! `ablate validate GRID`: expand and check a grid, print its runs and cost; contacts
//! nobody.

use std::path::PathBuf;
use std::process::ExitCode;

use ablate_common::spec::early_stopping::{self, EarlyStopping, Rule};
use ablate_common::spec::grid::{parse_grid, Grid};
use clap::Args;

use super::display::{si, si_unit, table};

/// Options of `ablate validate`.
#[derive(Debug, Args)]
pub(super) struct ValidateArgs {
    /// The grid file (TOML).
    grid: PathBuf,
}

/// The runs and the cost of a grid, as `validate` prints them.
pub(super) fn describe(grid: &Grid, file_name: &str) -> String {
    let mut out = format!("{} ({file_name}): {} runs\n", grid.name, grid.runs.len());
    let rows: Vec<Vec<String>> = grid
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let devices = match run.spec.gpus {
                0 => "cpu".to_string(),
                n => format!("{n} gpu"),
            };
            vec![
                (i + 1).to_string(),
                run.name.clone(),
                si(run.params as f64),
                si(run.flops as f64),
                run.spec.epochs.to_string(),
                run.spec.batch_size.to_string(),
                devices,
                run.train_flops().map(si).unwrap_or_else(|| "?".into()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "#",
            "RUN",
            "PARAMS",
            "FLOP/IMG",
            "EPOCHS",
            "BATCH",
            "DEVICES",
            "TRAIN FLOP",
        ],
        &rows,
    ));
    let params: u64 = grid.runs.iter().map(|r| r.params).sum();
    let forward: u64 = grid.runs.iter().map(|r| r.flops).sum();
    let (flops, unknown) = grid.train_flops();
    out.push_str(&format!(
        "total: {} runs, {} parameters, {} per image forward",
        grid.runs.len(),
        si(params as f64),
        si_unit(forward as f64, "FLOP")
    ));
    if unknown < grid.runs.len() {
        out.push_str(&format!(
            ", ≈ {} of training (3 × forward per training image, 1 × per eval image, every \
             epoch)",
            si_unit(flops, "FLOP")
        ));
    }
    if unknown > 0 {
        out.push_str(&format!(
            "; training cost of {unknown} run(s) unknown (their dataset splits have no `limit`)"
        ));
    }
    out.push('\n');
    if let Some(stopping) = &grid.early_stopping {
        out.push_str(&describe_stopping(grid, stopping));
    }
    out.push_str(&describe_claims(grid));
    out
}

/// The early-stopping lines: the rule, the variants and rungs, worst-case and expected
/// compute.
fn describe_stopping(grid: &Grid, stopping: &EarlyStopping) -> String {
    let plan = early_stopping::plan(stopping, &grid.runs);
    let rungs: Vec<String> = plan.rungs.iter().map(u32::to_string).collect();
    let longest = grid.runs.iter().map(|r| r.spec.epochs).max().unwrap_or(0);
    let mut out = format!("early stopping: {}\n", stopping.describe());
    out.push_str(&format!(
        "  {} variants judged; epochs judged (rungs) of a {longest}-epoch run: {}\n",
        plan.variants,
        rungs.join(", ")
    ));
    let share = |expected: f64, worst: f64| {
        if worst > 0.0 {
            expected / worst * 100.0
        } else {
            100.0
        }
    };
    let mut worst = format!("{:.0} run-epochs", plan.worst_run_epochs);
    let mut expected = format!(
        "{:.0} run-epochs ({:.0} %)",
        plan.expected_run_epochs,
        share(plan.expected_run_epochs, plan.worst_run_epochs)
    );
    if plan.worst_flops > 0.0 {
        worst.push_str(&format!(", ≈ {}", si_unit(plan.worst_flops, "FLOP")));
        expected.push_str(&format!(", ≈ {}", si_unit(plan.expected_flops, "FLOP")));
    }
    let assumption = match stopping.rule {
        Rule::Median => "the lower half of the variants stops at the grace epoch",
        Rule::Asha => "each rung keeps exactly the top 1/eta",
    };
    out.push_str(&format!(
        "  compute: worst case (nothing stopped) {worst}; expected ({assumption}) {expected}\n"
    ));
    out
}

/// The grid's claims and the runs each side selects (nothing when it states none).
pub(super) fn describe_claims(grid: &Grid) -> String {
    use ablate_common::spec::claims::ClaimForm;
    if grid.claims.is_empty() {
        return String::new();
    }
    let mut out = format!("\n{} claim(s):\n", grid.claims.len());
    for (i, claim) in grid.claims.iter().enumerate() {
        let what = match claim.form {
            ClaimForm::Better => format!("better on {}", claim.metric.label()),
            ClaimForm::OverfitsLess => "overfits less (train − eval gap)".to_string(),
            ClaimForm::Learns => format!(
                "learns: {} above chance {:.3}",
                claim.metric.label(),
                claim.chance.unwrap_or(0.0)
            ),
            ClaimForm::DoesNotLearn => format!(
                "does not learn: {} not above chance {:.3}",
                claim.metric.label(),
                claim.chance.unwrap_or(0.0)
            ),
        };
        let margin = if claim.margin > 0.0 {
            format!(", margin {}", claim.margin)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{}. {} [{what}{margin}, alpha {}]\n",
            i + 1,
            claim.name,
            claim.alpha
        ));
        out.push_str(&format!(
            "   {} {} selects {} run(s): {}\n",
            claim.form.key(),
            claim.side.selector,
            claim.side.runs.len(),
            claim.side.runs.join(", ")
        ));
        if let Some(than) = &claim.than {
            out.push_str(&format!(
                "   than {} selects {} run(s): {}\n",
                than.selector,
                than.runs.len(),
                than.runs.join(", ")
            ));
        }
    }
    out
}

pub(super) fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (text, file_name) = super::submit::read_grid(&args.grid)?;
    match parse_grid(&text, &file_name) {
        Ok(grid) => {
            print!("{}", describe(&grid, &file_name));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_runs_and_cost() {
        let text = "name = \"t\"\n[base]\nimage_size = 32\nchannels = 1\nclasses = 10\n\
                    epochs = 2\n[base.dataset]\nformat = \"idx\"\nroot = \"/d\"\n\
                    train = { images = \"a\", labels = \"b\", limit = 100 }\n\
                    eval = { images = \"c\", labels = \"d\", limit = 10 }\n\
                    [grid]\nmodel = [\"lenet\"]\nseed = [1, 2]\n";
        let grid = parse_grid(text, "t.toml").unwrap();
        let out = describe(&grid, "t.toml");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "t (t.toml): 2 runs");
        assert!(lines[1].starts_with("#  RUN"), "{out}");
        assert!(lines[2].starts_with("1  lenet seed=1"), "{out}");
        assert!(lines[3].starts_with("2  lenet seed=2"), "{out}");
        let per_run = grid.runs[0].train_flops().unwrap();
        assert_eq!(
            per_run,
            (3.0 * 100.0 + 10.0) * grid.runs[0].flops as f64 * 2.0
        );
        assert!(lines[4].starts_with("total: 2 runs, "), "{out}");
        assert!(lines[4].contains(&si_unit(2.0 * per_run, "FLOP")), "{out}");
        assert_eq!(lines.len(), 5, "no claims, no claims section: {out}");
    }

    #[test]
    fn lists_the_claims_and_the_runs_each_side_selects() {
        let text = "name = \"t\"\n[base]\nimage_size = 32\nchannels = 1\nclasses = 10\n\
                    [grid]\nmodel = [\"lenet\"]\nlr = [0.001, 0.01]\nseed = [1, 2]\n\
                    [[claims]]\nname = \"lr 0.01 beats lr 0.001\"\nbetter = { lr = 0.01 }\n\
                    than = { lr = 0.001 }\nmargin = 0.05\n\
                    [[claims]]\nname = \"lr 0.001 learns\"\nlearns = { lr = 0.001 }\n";
        let grid = parse_grid(text, "t.toml").unwrap();
        let out = describe(&grid, "t.toml");
        let tail: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.contains("claim(s)"))
            .collect();
        assert_eq!(
            tail,
            [
                "2 claim(s):",
                "1. lr 0.01 beats lr 0.001 [better on best_eval_acc, margin 0.05, alpha 0.05]",
                "   better { lr = 0.01 } selects 2 run(s): lenet lr=0.01 seed=1, lenet lr=0.01 seed=2",
                "   than { lr = 0.001 } selects 2 run(s): lenet lr=0.001 seed=1, lenet lr=0.001 seed=2",
                "2. lr 0.001 learns [learns: best_eval_acc above chance 0.100, alpha 0.05]",
                "   learns { lr = 0.001 } selects 2 run(s): lenet lr=0.001 seed=1, lenet lr=0.001 seed=2",
            ],
            "{out}"
        );
    }

    #[test]
    fn shows_rungs_and_compute_of_early_stopping() {
        let text = "name = \"t\"\n[base]\nimage_size = 32\nchannels = 1\nclasses = 10\n\
                    epochs = 27\n[grid]\nmodel = [\"lenet\"]\n\
                    lr = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0001]\n\
                    seed = [1, 2]\n[early_stopping]\nrule = \"asha\"\neta = 3\n";
        let grid = parse_grid(text, "t.toml").unwrap();
        let out = describe(&grid, "t.toml");
        assert!(out.contains("early stopping: ASHA (eta 3"), "{out}");
        assert!(
            out.contains("  9 variants judged; epochs judged (rungs) of a 27-epoch run: 1, 3, 9\n"),
            "{out}"
        );
        // 9 variants × 2 seeds × 27 epochs = 486; expected (9 + 3·2 + 1·6 + 1·18) × 2 = 78.
        assert!(
            out.contains(
                "compute: worst case (nothing stopped) 486 run-epochs; expected (each \
                          rung keeps exactly the top 1/eta) 78 run-epochs (16 %)"
            ),
            "{out}"
        );
    }
}
