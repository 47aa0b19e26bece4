//! `ablate run GRID`: single-node mode. An in-process coordinator on a loopback port with
//! its store under the data directory, local `ablate-worker` processes, the grid submitted
//! and watched over gRPC, and the report files written at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ablate_common::spec::grid::parse_grid;
use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::app::{default_data_dir, parse_duration};
use super::watch::WatchOutcome;
use crate::cli::single_node::{find_worker_binary, split_devices, LocalWorkers, WorkerLaunch};
use crate::report::Format;
use crate::rpc::auth::{RoleTokens, Token};
use crate::rpc::client;
use crate::rpc::server::serve_state;
use crate::scheduling::local_fit::{self, LocalOffer};
use crate::state::tensorboard::path_component;
use crate::state::{Coordinator, CoordinatorConfig};

/// Options of `ablate run`.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The grid file (TOML).
    grid: PathBuf,
    /// Local worker processes to start.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Devices for the workers: `cpu` (each worker), `cpu:N`, `cuda:0,1,…` (split among
    /// the workers) or `auto` (one worker).
    #[arg(long, default_value = "cpu")]
    devices: String,
    /// Directory of the store, checkpoints, logs and reports.
    #[arg(long, default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// CPU threads per worker (default: the cores shared among the workers).
    #[arg(long)]
    threads: Option<usize>,
    /// The `ablate-worker` binary (default: next to `ablate`, else on PATH).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// Lease time-to-live.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// Complete checkpoints kept per run on the coordinator (the newest ones).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep_checkpoints: u32,
    /// Loopback address of the live dashboard (port 0: any free port); its URL is printed,
    /// the token to log in with is written to DATA_DIR/dashboard-token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: String,
    /// No dashboard.
    #[arg(long)]
    no_dashboard: bool,
}

/// The dashboard of `ablate run`, on loopback, and the file holding the token to log in
/// with (readable by the owner only).
async fn start_dashboard(
    coord: &std::sync::Arc<Coordinator>,
    tokens: &RoleTokens,
    addr: &str,
    data_dir: &Path,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--http: cannot listen on {addr}"))?;
    if !listener.local_addr()?.ip().is_loopback() {
        anyhow::bail!("--http {addr}: `ablate run` serves its dashboard on loopback only (use `ablate serve --http` with TLS for a network)");
    }
    let token_file = data_dir.join("dashboard-token");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{}", tokens.user.expose())?;
    let server =
        crate::dashboard::DashboardServer::new(coord.clone(), Some(tokens), None, listener)?;
    eprintln!(
        "dashboard on {} (log in with the token in {})",
        server.url(),
        token_file.display()
    );
    Ok(tokio::spawn(server.run()))
}

/// An error listing why the local workers cannot run the grid, if there is any reason.
fn refuse_unless_empty(reasons: Vec<String>) -> anyhow::Result<()> {
    if reasons.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to train: the local workers cannot run every run of the grid:\n  {}",
        reasons.join("\n  ")
    )
}

/// With `--devices auto` the devices are known once the workers registered: waits for them
/// (or for all of them to exit) and checks the grid against them.
async fn check_auto_workers(
    coord: &Coordinator,
    grid: &ablate_common::spec::grid::Grid,
    workers: &mut LocalWorkers,
    count: usize,
    interrupted: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while coord.workers().iter().filter(|w| w.connected).count() < count {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the local workers did not register within 120 s");
        }
        tokio::select! {
            _ = workers.all_exited() => anyhow::bail!("every local worker exited before registering: {}", workers.exits().join("; ")),
            _ = &mut *interrupted => anyhow::bail!("interrupted before the grid was submitted"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let sizes = local_fit::sizes(grid)
        .into_iter()
        .map(|(gpus, (count, _))| (gpus, count))
        .collect();
    refuse_unless_empty(coord.unfittable(&sizes))
}

/// Writes the report in every format under `dir`; returns the paths.
async fn write_reports(
    client: &mut client::Client,
    experiment: &str,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for format in [
        Format::Json,
        Format::Markdown,
        Format::Html,
        Format::Csv,
        Format::ClaimsCsv,
    ] {
        let report = super::report::fetch(client, experiment, format).await?;
        let path = dir.join(format!("report.{}", format.extension()));
        std::fs::write(&path, report.content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The local workers may read the grid's own datasets (the user of `ablate run` owns both)
/// and the usual dataset directory.
fn data_roots(grid: &ablate_common::spec::grid::Grid) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = vec![PathBuf::from("/usr/share/datasets")];
    for run in &grid.runs {
        if let Some(dataset) = &run.spec.dataset {
            if !roots.contains(&dataset.root) {
                roots.push(dataset.root.clone());
            }
        }
    }
    roots.retain(|r| r.is_dir());
    roots
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be checked before starting anything.
    let (text, file_name) = super::submit::read_grid(&args.grid)?;
    let grid = parse_grid(&text, &file_name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let device_sets = split_devices(&args.devices, args.workers)?;
    let offers: Vec<LocalOffer> = device_sets.iter().map(|d| LocalOffer::parse(d)).collect();
    refuse_unless_empty(local_fit::refusal(&grid, &offers, &args.devices))?;
    let program = match &args.worker_bin {
        Some(p) => p.clone(),
        None => find_worker_binary()?,
    };
    let threads = args.threads.or_else(|| {
        device_sets.iter().all(|d| d.starts_with("cpu")).then(|| {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            (cores / args.workers).max(1)
        })
    });

    // From here on, Ctrl-C, SIGTERM and SIGHUP stop everything in order.
    let mut interrupted = Box::pin(super::serve::shutdown_signal());

    // The coordinator, in process, on a loopback port, with fresh random tokens (one for
    // this process as the user, one for the local workers).
    let tokens = RoleTokens::generate();
    let coord = Coordinator::open(&CoordinatorConfig {
        data_dir: args.data_dir.clone(),
        lease_ttl: args.lease_ttl,
        keep_checkpoints: args.keep_checkpoints as usize,
    })?;
    let dashboard = match args.no_dashboard {
        true => None,
        false => Some(start_dashboard(&coord, &tokens, &args.http, &args.data_dir).await?),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = {
        let coord = coord.clone();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            serve_state(coord, Some(&tokens), None, listener, async {
                let _ = stopped.await;
            })
            .await
        })
    };

    let mut workers = LocalWorkers::spawn(&WorkerLaunch {
        program,
        url: url.clone(),
        token: tokens.worker.clone(),
        devices: device_sets.clone(),
        data_roots: data_roots(&grid),
        threads,
        data_dir: args.data_dir.clone(),
    })?;
    eprintln!(
        "coordinator on {url} (store {}), {} local worker(s): {}",
        args.data_dir.join(crate::state::STORE_FILE).display(),
        device_sets.len(),
        device_sets.join(" | ")
    );

    let checked = if offers.contains(&LocalOffer::Auto) {
        check_auto_workers(
            &coord,
            &grid,
            &mut workers,
            device_sets.len(),
            &mut interrupted,
        )
        .await
    } else {
        Ok(())
    };
    let result = match checked {
        Err(e) => Err(e),
        Ok(()) => {
            drive(
                &coord,
                &url,
                &tokens.user,
                &text,
                &file_name,
                &grid.name,
                &args.data_dir,
                &mut workers,
                &mut interrupted,
            )
            .await
        }
    };

    workers.stop(Duration::from_secs(15)).await;
    let _ = stop_server.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("coordinator: {e}"),
        Err(e) => eprintln!("coordinator task: {e}"),
    }
    if let Some(d) = dashboard {
        let _ = d.await;
    }
    result
}

/// Submits (or resumes), watches and writes the reports.
#[allow(clippy::too_many_arguments)]
async fn drive(
    coord: &Coordinator,
    url: &str,
    token: &Token,
    text: &str,
    file_name: &str,
    name: &str,
    data_dir: &Path,
    workers: &mut LocalWorkers,
    interrupted: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> anyhow::Result<ExitCode> {
    let mut client = client::connect(url, Some(token), &Default::default()).await?;
    let experiment = match coord.resumable(name, text)? {
        Some(e) => {
            eprintln!(
                "resuming {} ({}): {} of {} runs done",
                e.id,
                e.name,
                e.finished + e.failed + e.cancelled,
                e.runs
            );
            e.id
        }
        None => {
            let submitted =
                super::submit::submit(&mut client, text.to_string(), file_name.to_string()).await?;
            eprintln!(
                "submitted {} ({}): {} runs",
                submitted.experiment_id, submitted.name, submitted.runs
            );
            submitted.experiment_id
        }
    };
    let others: Vec<String> = coord
        .experiments()?
        .into_iter()
        .filter(|e| e.id != experiment && !e.is_done())
        .map(|e| format!("{} ({})", e.id, e.name))
        .collect();
    if !others.is_empty() {
        eprintln!(
            "note: unfinished experiments in {} run first on these workers: {} (ablate cancel them to skip)",
            data_dir.display(),
            others.join(", ")
        );
    }

    let mut watch_client = client.clone();
    let outcome = tokio::select! {
        outcome = super::watch::watch(&mut watch_client, &experiment) => outcome?,
        _ = workers.all_exited() => {
            eprintln!("every local worker exited before the experiment was done:");
            for line in workers.exits() {
                eprintln!("  {line}");
            }
            WatchOutcome::Interrupted
        }
        _ = interrupted => {
            eprintln!("interrupted: stopping the workers (their runs go back to the queue); `ablate run` the same grid again to resume");
            WatchOutcome::Interrupted
        }
    };

    let dir = data_dir.join("reports").join(path_component(name));
    let written = write_reports(&mut client, &experiment, &dir).await?;
    for path in &written {
        println!("{}", path.display());
    }
    if matches!(outcome, WatchOutcome::Failed(_)) {
        eprintln!(
            "worker logs: {}",
            workers
                .logs()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(outcome.exit_code())
}
