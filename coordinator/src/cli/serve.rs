//! `ablate serve`: the coordinator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use super::app::{default_data_dir, parse_duration, parse_token};
use ablate_common::auth::resolve_token;
use ablate_common::tls::read_pem;

use crate::rpc::auth::{RoleTokens, Token};
use crate::rpc::server::{serve_with_dashboard, ServerConfig, ServerError, ServerTls};

/// Options of `ablate serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on. A non-loopback address needs --tls-cert/--tls-key (or
    /// --insecure-plaintext).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Directory of the SQLite store, checkpoints and TensorBoard logs.
    #[arg(long, default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// The token users present (submit, status, watch, cancel, report); prefer
    /// ABLATE_USER_TOKEN or --user-token-file.
    #[arg(long, env = "ABLATE_USER_TOKEN", hide_env_values = true, value_parser = parse_token)]
    user_token: Option<Token>,
    /// A file holding the user token.
    #[arg(long, env = "ABLATE_USER_TOKEN_FILE")]
    user_token_file: Option<PathBuf>,
    /// The token workers present (register, acquire, progress, checkpoints); prefer
    /// ABLATE_WORKER_TOKEN or --worker-token-file.
    #[arg(long, env = "ABLATE_WORKER_TOKEN", hide_env_values = true, value_parser = parse_token)]
    worker_token: Option<Token>,
    /// A file holding the worker token.
    #[arg(long, env = "ABLATE_WORKER_TOKEN_FILE")]
    worker_token_file: Option<PathBuf>,
    /// The old single shared token: refused (users could act as workers); kept so that
    /// the error can say what to use instead.
    #[arg(long, env = "ABLATE_TOKEN", hide = true, hide_env_values = true, value_parser = parse_token)]
    token: Option<Token>,
    /// Serve without tokens (only on a network you trust).
    #[arg(long)]
    no_auth: bool,
    /// A lease not renewed for this long expires and its run is re-queued.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// Complete checkpoints kept per run on the coordinator (the newest ones).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep_checkpoints: u32,
    /// PEM certificate (chain) of the coordinator: serve TLS.
    #[arg(long, env = "ABLATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ABLATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA of worker client certificates: workers must present one signed by it.
    #[arg(long, env = "ABLATE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (tokens cross the network in clear text).
    #[arg(long, env = "ABLATE_INSECURE_PLAINTEXT")]
    insecure_plaintext: bool,
    /// A user's share weight, NAME=W (W from 1 to 100; repeatable): users share the cluster
    /// by their weights (1 when not named), then each user's experiments by `priority`.
    #[arg(long, value_parser = crate::scheduling::users::parse_user_weight)]
    user_weight: Vec<(String, u32)>,
    #[command(flatten)]
    launcher: crate::launcher::args::LauncherArgs,
    /// Serve the live dashboard (a browser UI; log in with the user token) on this address,
    /// e.g. 127.0.0.1:8080; TLS and the non-loopback rule as for --listen.
    #[arg(long, env = "ABLATE_HTTP", value_name = "ADDR")]
    http: Option<String>,
}

impl ServeArgs {
    fn tokens(&self) -> anyhow::Result<Option<RoleTokens>> {
        let user = resolve_token(
            self.user_token.as_ref(),
            self.user_token_file.as_deref(),
            None,
        )?;
        let worker = resolve_token(
            self.worker_token.as_ref(),
            self.worker_token_file.as_deref(),
            None,
        )?;
        match (user, worker) {
            (Some(user), Some(worker)) => Ok(Some(RoleTokens::new(user, worker)?)),
            (None, None) if self.no_auth => Ok(None),
            (None, None) if self.token.is_some() => anyhow::bail!(
                "one shared token (--token/ABLATE_TOKEN) is no longer served: it would let every \
                 user act as a worker. Give the coordinator --user-token and --worker-token \
                 (or ABLATE_USER_TOKEN and ABLATE_WORKER_TOKEN); users keep theirs in \
                 ABLATE_TOKEN or ABLATE_USER_TOKEN, workers get the worker token"
            ),
            (Some(_), None) => anyhow::bail!(
                "--user-token is set but not --worker-token: give both (or --no-auth)"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--worker-token is set but not --user-token: give both (or --no-auth)"
            ),
            (None, None) => Err(ServerError::NoToken.into()),
        }
    }

    fn tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        Ok(Some(ServerTls {
            cert: read_pem(cert, "--tls-cert")?,
            key: read_pem(key, "--tls-key")?,
            client_ca: self
                .tls_client_ca
                .as_deref()
                .map(|p| read_pem(p, "--tls-client-ca"))
                .transpose()?,
        }))
    }
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
    let tokens = args.tokens()?;
    let tls = args.tls()?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let dashboard = match &args.http {
        Some(http) => Some(
            TcpListener::bind(http)
                .await
                .with_context(|| format!("--http: cannot listen on {http}"))?,
        ),
        None => None,
    };
    let dashboard_addr = dashboard.as_ref().map(|l| l.local_addr()).transpose()?;
    for open in std::iter::once(addr).chain(dashboard_addr) {
        refuse_plaintext(open, tls.is_some(), args.insecure_plaintext)?;
    }
    eprintln!(
        "ablate coordinator on {addr} ({}, data in {}, auth {})",
        if tls.is_some() { "TLS" } else { "plain HTTP" },
        args.data_dir.display(),
        if tokens.is_some() { "on" } else { "OFF" }
    );
    let launcher = args
        .launcher
        .build(&crate::launcher::args::Served {
            addr,
            tls: tls.is_some(),
            client_certs: tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            tokens: tokens.as_ref(),
            data_dir: &args.data_dir,
        })
        .map_err(anyhow::Error::msg)?
        .map(crate::launcher::LauncherStart::new);
    if let Some(a) = dashboard_addr {
        eprintln!(
            "dashboard on {}{}",
            crate::dashboard::listen::url(a, tls.is_some()),
            if tokens.is_some() {
                " (log in with the user token)"
            } else {
                ""
            }
        );
    }
    let config = ServerConfig {
        data_dir: args.data_dir,
        tokens,
        allow_no_auth: args.no_auth,
        lease_ttl: args.lease_ttl,
        keep_checkpoints: args.keep_checkpoints as usize,
        tls,
        user_weights: args.user_weight,
        launcher,
    };
    serve_with_dashboard(config, listener, dashboard, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Plain HTTP only on loopback, unless the operator said otherwise.
fn refuse_plaintext(
    addr: std::net::SocketAddr,
    tls: bool,
    insecure_plaintext: bool,
) -> anyhow::Result<()> {
    if !tls && !addr.ip().is_loopback() {
        if !insecure_plaintext {
            anyhow::bail!(
                "refusing to serve plain HTTP on {addr}: tokens would cross the network in clear \
                 text. Give --tls-cert and --tls-key (deploy/make-certs.sh makes them), listen \
                 on 127.0.0.1, or pass --insecure-plaintext on a network you trust"
            );
        }
        tracing::warn!("serving plain HTTP on {addr} (--insecure-plaintext): tokens cross the network in clear text");
    }
    Ok(())
}
