//! `ablate serve`: the coordinator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use super::app::{default_data_dir, parse_duration, parse_token};
use crate::auth::Token;
use crate::server::{serve, ServerConfig, ServerError};

/// Options of `ablate serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50051")]
    listen: String,
    /// Directory of the SQLite store, checkpoints and TensorBoard logs.
    #[arg(long, default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Shared token every client and worker must present (prefer ABLATE_TOKEN).
    #[arg(long, env = "ABLATE_TOKEN", hide_env_values = true, value_parser = parse_token)]
    token: Option<Token>,
    /// Serve without a token (only on a network you trust).
    #[arg(long)]
    no_auth: bool,
    /// A lease not renewed for this long expires and its run is re-queued.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// Complete checkpoints kept per run on the coordinator (the newest ones).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep_checkpoints: u32,
}

/// Completes on Ctrl-C, SIGTERM or SIGHUP (the terminal closed: stop as cleanly as on
/// SIGTERM). The handlers are installed when this is called, not when it is first polled,
/// so a signal that comes in between is neither lost nor fatal.
#[cfg(unix)]
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    async move {
        match signals {
            (Ok(mut int), Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.token.is_none() && !args.no_auth {
        return Err(ServerError::NoToken.into());
    }
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "ablate coordinator on {addr} (data in {}, auth {})",
        args.data_dir.display(),
        if args.token.is_some() { "on" } else { "OFF" }
    );
    let config = ServerConfig {
        data_dir: args.data_dir,
        token: args.token,
        allow_no_auth: args.no_auth,
        lease_ttl: args.lease_ttl,
        keep_checkpoints: args.keep_checkpoints as usize,
    };
    serve(config, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
