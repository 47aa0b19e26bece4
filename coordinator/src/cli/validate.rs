//! `ablate validate GRID`: expand and check a grid, print its runs and cost; contacts
//! nobody.

use std::path::PathBuf;
use std::process::ExitCode;

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
    }
}
