//! The command tree and the dispatcher.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ablate_common::auth::resolve_token;
use ablate_common::tls::ClientTls;

use crate::cli::models::{self, ModelsArgs};
use crate::rpc::auth::Token;
use crate::rpc::client::{self, Client};

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
    Serve(Box<super::serve::ServeArgs>),
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
    /// Queue runs that early stopping stopped again (a run id, or an experiment): they
    /// continue from their checkpoint to their last epoch.
    Resume(super::resume::ResumeArgs),
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
    ablate_common::spec::parse_duration(text).map_err(|e| e.to_string())
}

/// The coordinator's answer to a call, or its message as the error: a refusal already
/// names the file, field or run, and the gRPC code adds nothing a user acts on.
pub(super) trait Answer<T> {
    /// The answer's body.
    fn answer(self) -> anyhow::Result<T>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| anyhow::anyhow!("{}", s.message()))
    }
}

/// Where the coordinator is, how to reach it and the user token to show it.
#[derive(Debug, Clone, Args)]
pub(super) struct Remote {
    /// Coordinator URL: https://HOST:PORT (with --ca), or http:// on loopback.
    #[arg(
        long,
        env = "ABLATE_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub(super) coordinator: String,
    /// The user token (prefer the ABLATE_USER_TOKEN environment variable or
    /// --user-token-file: command lines are visible to other users).
    #[arg(long, env = "ABLATE_USER_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub(super) user_token: Option<Token>,
    /// A file holding the user token.
    #[arg(long, env = "ABLATE_USER_TOKEN_FILE")]
    pub(super) user_token_file: Option<PathBuf>,
    /// The user token under its older name (ABLATE_TOKEN); --user-token wins.
    #[arg(long, env = "ABLATE_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub(super) token: Option<Token>,
    #[command(flatten)]
    pub(super) tls: ClientTlsArgs,
}

/// TLS options of a client.
#[derive(Debug, Clone, Args)]
pub(super) struct ClientTlsArgs {
    /// PEM file of the CA that signed the coordinator's certificate (https URLs).
    #[arg(long, env = "ABLATE_CA")]
    pub(super) ca: Option<PathBuf>,
    /// The name the coordinator's certificate must carry (default: the URL's host).
    #[arg(long, env = "ABLATE_TLS_DOMAIN")]
    pub(super) tls_domain: Option<String>,
    /// Allow plain http:// to a host that is not loopback (the token crosses the network
    /// in clear text).
    #[arg(long, env = "ABLATE_INSECURE_PLAINTEXT")]
    pub(super) insecure_plaintext: bool,
}

impl ClientTlsArgs {
    pub(super) fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca: self.ca.clone(),
            cert: None,
            key: None,
            domain: self.tls_domain.clone(),
            insecure_plaintext: self.insecure_plaintext,
        }
    }
}

impl Remote {
    pub(super) async fn connect(&self) -> anyhow::Result<Client> {
        let token = resolve_token(
            self.user_token.as_ref(),
            self.user_token_file.as_deref(),
            self.token.as_ref(),
        )?;
        Ok(client::connect(&self.coordinator, token.as_ref(), &self.tls.client_tls()).await?)
    }
}

/// The default data directory of `serve` and `run`.
pub(super) fn default_data_dir() -> PathBuf {
    PathBuf::from("ablate-data")
}

/// Runs a parsed command line; the exit code says whether the work succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => super::serve::run(*args).await,
        Command::Submit(args) => super::submit::run(args).await,
        Command::Watch(args) => super::watch::run(args).await,
        Command::Status(args) => super::status::run(args).await,
        Command::Workers(args) => super::workers::run(args).await,
        Command::Cancel(args) => super::cancel::run(args).await,
        Command::Report(args) => super::report::run(args).await,
        Command::Validate(args) => super::validate::run(&args),
        Command::Models(args) => models::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => super::run_grid::run(args).await,
        Command::Resume(args) => super::resume::run(args).await,
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
