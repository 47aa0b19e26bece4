//! The command tree and the dispatcher.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::Token;
use crate::cli_models::{self, ModelsArgs};
use crate::client::{self, Client};

/// Ablation grids of image-classification CNNs, scheduled on workers.
#[derive(Debug, Parser)]
#[command(name = "ablate", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinator (gRPC) on a data directory.
    Serve(super::serve::ServeArgs),
    /// Submit a grid to a coordinator.
    Submit(super::submit::SubmitArgs),
    /// Follow an experiment: a progress bar a run.
    Watch(super::watch::WatchArgs),
    /// List experiments, or show one experiment's runs.
    Status(super::status::StatusArgs),
    /// List the registered workers: devices, free devices, runs, last heartbeat.
    Workers(super::workers::WorkersArgs),
    /// Cancel an experiment (id or name) or one run (id).
    Cancel(super::cancel::CancelArgs),
    /// Render an experiment's report.
    Report(super::report::ReportArgs),
    /// Expand and check a grid; print its runs and cost (contacts nobody).
    Validate(super::validate::ValidateArgs),
    /// List the model catalogue with parameters and FLOPs.
    Models(ModelsArgs),
    /// Single-node mode: a local coordinator and workers train a grid, then the report.
    Run(super::run_grid::RunArgs),
}

impl Cli {
    /// The log filter when `RUST_LOG` is unset: the server logs its work; the client
    /// commands (and single-node mode, whose progress bars share the terminal) only
    /// warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}

/// Parses a token argument (its `Debug` is redacted, so `Cli` can be printed).
pub(super) fn parse_token(text: &str) -> Result<Token, String> {
    Token::new(text).map_err(|e| e.to_string())
}

/// Parses `15s`, `500ms`, `2m` or a number of seconds.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    ablate_common::spec::parse_duration(text)
}

/// Where the coordinator is and the token to show it.
#[derive(Debug, Clone, Args)]
pub(super) struct Remote {
    /// Coordinator URL.
    #[arg(
        long,
        env = "ABLATE_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub(super) coordinator: String,
    /// Shared token (prefer the ABLATE_TOKEN environment variable: command lines are
    /// visible to other users).
    #[arg(long, env = "ABLATE_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub(super) token: Option<Token>,
}

impl Remote {
    pub(super) async fn connect(&self) -> anyhow::Result<Client> {
        Ok(client::connect(&self.coordinator, self.token.as_ref()).await?)
    }
}

/// The default data directory of `serve` and `run`.
pub(super) fn default_data_dir() -> PathBuf {
    PathBuf::from("ablate-data")
}

/// Runs a parsed command line; the exit code says whether the work succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => super::serve::run(args).await,
        Command::Submit(args) => super::submit::run(args).await,
        Command::Watch(args) => super::watch::run(args).await,
        Command::Status(args) => super::status::run(args).await,
        Command::Workers(args) => super::workers::run(args).await,
        Command::Cancel(args) => super::cancel::run(args).await,
        Command::Report(args) => super::report::run(args).await,
        Command::Validate(args) => super::validate::run(&args),
        Command::Models(args) => cli_models::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => super::run_grid::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["ablate", "run", "g.toml", "--workers", "2"]).unwrap();
        assert!(matches!(cli.command, Command::Run(_)));
    }
}
