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

/// Completes on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
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
