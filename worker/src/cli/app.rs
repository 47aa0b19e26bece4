//! The `ablate-worker` command line: the agent (default) and the standalone tools; [`run`]
//! dispatches to the subcommands' modules.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::agent::{self, AgentConfig};
use crate::cli;
use crate::data::roots::DataRoots;
use ablate_common::auth::{resolve_token, Token};
use ablate_common::tls::ClientTls;
use clap::{Parser, Subcommand};

/// Trains ablate runs: as an agent of a coordinator, or standalone.
#[derive(Debug, Parser)]
#[command(name = "ablate-worker", version, about)]
pub struct Cli {
    /// Coordinator URL (agent mode): https://HOST:PORT (with --ca), or http:// on loopback.
    #[arg(long, env = "ABLATE_COORDINATOR")]
    coordinator: Option<String>,
    /// The coordinator's worker token (prefer ABLATE_WORKER_TOKEN or --worker-token-file:
    /// command lines are visible to other users).
    #[arg(long, env = "ABLATE_WORKER_TOKEN", hide_env_values = true, value_parser = parse_token)]
    worker_token: Option<Token>,
    /// A file holding the worker token.
    #[arg(long, env = "ABLATE_WORKER_TOKEN_FILE")]
    worker_token_file: Option<PathBuf>,
    /// The worker token under its older name (ABLATE_TOKEN); --worker-token wins.
    #[arg(long, env = "ABLATE_TOKEN", hide_env_values = true, value_parser = parse_token)]
    token: Option<Token>,
    /// PEM file of the CA that signed the coordinator's certificate (https URLs).
    #[arg(long, env = "ABLATE_CA")]
    ca: Option<PathBuf>,
    /// The name the coordinator's certificate must carry (default: the URL's host).
    #[arg(long, env = "ABLATE_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// PEM client certificate, for a coordinator that requires one from workers.
    #[arg(long, env = "ABLATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, env = "ABLATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain http:// to a coordinator that is not on loopback (the token crosses the
    /// network in clear text).
    #[arg(long, env = "ABLATE_INSECURE_PLAINTEXT")]
    insecure_plaintext: bool,
    /// A directory datasets may be read from (repeatable; default /usr/share/datasets).
    /// A run whose dataset lies elsewhere fails with an error naming these.
    #[arg(long = "data-root", env = "ABLATE_DATA_ROOTS", value_delimiter = ':')]
    data_roots: Vec<PathBuf>,
    /// Devices to offer: `cpu`, `cpu:N` (N data-parallel replicas), `cuda:0,1` or `auto`.
    #[arg(long, default_value = "auto")]
    devices: String,
    /// Worker name shown by `ablate status` (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Directory for run checkpoints.
    #[arg(long, default_value = "ablate-worker-data")]
    work_dir: PathBuf,
    /// Intra-op CPU threads in total (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Leave (deregister and exit 0) after this long without a run, e.g. `2m` (a worker
    /// started as a cluster job gives its allocation back).
    #[arg(long, value_parser = ablate_common::spec::parse_duration)]
    exit_when_idle: Option<std::time::Duration>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one run from a spec file, printing a line per epoch.
    Train(cli::train::TrainArgs),
    /// Time training steps on random data.
    Bench(cli::bench::BenchArgs),
    /// Print a model's layer tree as JSON.
    Arch(cli::arch::ArchArgs),
    /// Time the data pipeline: decode to normalized batches.
    DataBench(cli::data::DataBenchArgs),
    /// Count and check a dataset before training on it.
    DataInspect(cli::data::DataInspectArgs),
    /// NCCL with a world of one on a GPU: init, all-reduce, forced abort, destroy
    /// (deploy/gpu-check.sh).
    #[command(hide = true)]
    NcclCheck(cli::nccl_check::NcclCheckArgs),
}

/// Runs what the command line asks: a subcommand, or the agent.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Train(args)) => cli::train::run(args),
        Some(Command::Bench(args)) => cli::bench::run(args),
        Some(Command::Arch(args)) => cli::arch::run(args),
        Some(Command::NcclCheck(args)) => cli::nccl_check::run(args),
        Some(Command::DataBench(args)) => cli::data::run_data_bench(args).map_err(Into::into),
        Some(Command::DataInspect(args)) => cli::data::run_data_inspect(args).map_err(Into::into),
        None => run_agent(cli),
    }
}

fn run_agent(cli: &Cli) -> anyhow::Result<()> {
    let url = cli.coordinator.clone().ok_or_else(|| {
        anyhow::anyhow!("give --coordinator URL to run as an agent, or a subcommand (see --help)")
    })?;
    let threads = cli.threads.unwrap_or_else(cli::train::num_cpus);
    let token = resolve_token(
        cli.worker_token.as_ref(),
        cli.worker_token_file.as_deref(),
        cli.token.as_ref(),
    )?;
    let data_roots = if cli.data_roots.is_empty() {
        DataRoots::default_roots()
    } else {
        DataRoots::new(&cli.data_roots).map_err(anyhow::Error::msg)?
    };
    let config = AgentConfig {
        url,
        token: token.map(|t| t.expose().to_string()),
        tls: ClientTls {
            ca: cli.ca.clone(),
            cert: cli.tls_cert.clone(),
            key: cli.tls_key.clone(),
            domain: cli.tls_domain.clone(),
            insecure_plaintext: cli.insecure_plaintext,
        },
        data_roots,
        devices: cli.devices.clone(),
        name: cli.name.clone().unwrap_or_else(hostname),
        work_dir: cli.work_dir.clone(),
        threads,
        exit_when_idle: cli.exit_when_idle,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    crate::signals::stop_on_terminate(shutdown.clone())?;
    let runtime = tokio::runtime::Runtime::new()?;
    // The message alone: it already quotes what it wraps, so the chain would repeat it.
    runtime
        .block_on(agent::run(config, shutdown))
        .map_err(anyhow::Error::msg)
}

fn parse_token(text: &str) -> Result<Token, String> {
    Token::new(text).map_err(|e| e.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}
