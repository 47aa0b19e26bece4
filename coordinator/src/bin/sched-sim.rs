//! `sched-sim`: the scheduling simulation at the issue's scale (500 workers × 8 GPUs, a
//! 10,000-run grid of 1/2/4/8-GPU runs, 5 workers dying) or smaller; prints a Markdown
//! table. See `ablate_coordinator::scheduling::sim`.
//!
//! ```text
//! cargo run --release -p ablate-coordinator --bin sched-sim -- [--workers N] [--runs N]
//!     [--dying N] [--seed N] [--data-dir DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use ablate_coordinator::scheduling::sim::{self, SimConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|cfg| {
        let report = sim::run(&cfg)?;
        print!(
            "{}",
            sim::table(&report, cfg.workers == 500 && cfg.runs == 10_000)
        );
        Ok(())
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sched-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> anyhow::Result<SimConfig> {
    let dir = tempdir_path();
    let mut cfg = SimConfig::full(dir);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag}: a value is missing"))
        };
        match flag.as_str() {
            "--workers" => cfg.workers = value()?.parse()?,
            "--runs" => cfg.runs = value()?.parse()?,
            "--dying" => cfg.dying_workers = value()?.parse()?,
            "--seed" => cfg.seed = value()?.parse()?,
            "--data-dir" => cfg.data_dir = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("sched-sim [--workers 500] [--runs 10000] [--dying 5] [--seed 14] [--data-dir DIR]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument `{other}` (see --help)"),
        }
    }
    anyhow::ensure!(
        cfg.workers > 0 && cfg.runs > 0,
        "--workers and --runs must be positive"
    );
    if cfg.data_dir.exists() {
        anyhow::ensure!(
            !cfg.data_dir
                .join(ablate_coordinator::state::STORE_FILE)
                .exists(),
            "{} already holds a store: give an empty --data-dir",
            cfg.data_dir.display()
        );
    }
    Ok(cfg)
}

/// A fresh directory under the system's temporary directory.
fn tempdir_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "ablate-sched-sim-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}
