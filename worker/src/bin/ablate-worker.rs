//! `ablate-worker`: the agent (default) and standalone tools (train, bench, arch, data-*).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ablate_worker::agent::{self, AgentConfig};
use ablate_worker::cli;
use clap::{Parser, Subcommand};

/// Trains ablate runs: as an agent of a coordinator, or standalone.
#[derive(Debug, Parser)]
#[command(name = "ablate-worker", version, about)]
struct Cli {
    /// Coordinator URL (agent mode), e.g. http://127.0.0.1:7070.
    #[arg(long, env = "ABLATE_COORDINATOR")]
    coordinator: Option<String>,
    /// Shared token of the coordinator (prefer the ABLATE_TOKEN environment variable).
    #[arg(long, env = "ABLATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    Arch(cli::bench::ArchArgs),
    /// Time the data pipeline: decode to normalized batches.
    DataBench(ablate_worker::cli_data::DataBenchArgs),
    /// Count and check a dataset before training on it.
    DataInspect(ablate_worker::cli_data::DataInspectArgs),
    /// NCCL with a world of one on a GPU: init, all-reduce, forced abort, destroy
    /// (deploy/gpu-check.sh).
    #[command(hide = true)]
    NcclCheck(cli::nccl_check::NcclCheckArgs),
}

fn main() {
    ablate_worker::memory::keep_freed_memory();
    ablate_common::telemetry::init("info");
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Train(args)) => cli::train::run(args),
        Some(Command::Bench(args)) => cli::bench::run_bench(args),
        Some(Command::Arch(args)) => cli::bench::run_arch(args),
        Some(Command::NcclCheck(args)) => cli::nccl_check::run(args),
        Some(Command::DataBench(args)) => {
            ablate_worker::cli_data::run_data_bench(args).map_err(Into::into)
        }
        Some(Command::DataInspect(args)) => {
            ablate_worker::cli_data::run_data_inspect(args).map_err(Into::into)
        }
        None => run_agent(&cli),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(cli: &Cli) -> anyhow::Result<()> {
    let url = cli.coordinator.clone().ok_or_else(|| {
        anyhow::anyhow!("give --coordinator URL to run as an agent, or a subcommand (see --help)")
    })?;
    let threads = cli.threads.unwrap_or_else(cli::train::num_cpus);
    let config = AgentConfig {
        url,
        token: cli.token.clone(),
        devices: cli.devices.clone(),
        name: cli.name.clone().unwrap_or_else(hostname),
        work_dir: cli.work_dir.clone(),
        threads,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    ablate_worker::signals::stop_on_terminate(shutdown.clone())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(agent::run(config, shutdown))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}
