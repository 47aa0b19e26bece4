//! `ablate-worker`: the agent (default) and standalone tools (see `ablate-worker --help`).

use ablate_worker::cli::{self, Cli};
use clap::Parser;

fn main() {
    ablate_worker::memory::keep_freed_memory();
    ablate_common::telemetry::init("info");
    let cli = Cli::parse();
    if let Err(e) = cli::run(&cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
