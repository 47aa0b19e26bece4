//! Serving: the two services behind the token check, a health service, and the lease
//! expiry task; graceful shutdown when a future completes (mini-redis style).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ablate_common::proto::experiments_server::ExperimentsServer;
use ablate_common::proto::workers_server::WorkersServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tracing::{error, info, warn};

use crate::auth::{ServerAuth, Token};
use crate::service::{ExperimentsService, WorkersService};
use crate::state::{CoordError, Coordinator, CoordinatorConfig};

/// The largest message the coordinator accepts (checkpoint chunks are the big ones).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The default lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The state cannot be opened.
    #[error(transparent)]
    State(#[from] CoordError),
    /// The transport failed.
    #[error("the gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
    /// Neither a token nor `--no-auth`.
    #[error("refusing to serve without a token: pass --token or set ABLATE_TOKEN (or --no-auth on a trusted network)")]
    NoToken,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The SQLite file, checkpoints and TensorBoard logs live here.
    pub data_dir: PathBuf,
    /// The shared token; `None` only with `allow_no_auth`.
    pub token: Option<Token>,
    /// Serve without a token (explicit `--no-auth`).
    pub allow_no_auth: bool,
    /// Lease time-to-live.
    pub lease_ttl: Duration,
    /// Complete checkpoints kept per run.
    pub keep_checkpoints: usize,
}

impl ServerConfig {
    /// Defaults around a data directory and a token.
    pub fn new(data_dir: PathBuf, token: Option<Token>) -> ServerConfig {
        ServerConfig {
            data_dir,
            token,
            allow_no_auth: false,
            lease_ttl: DEFAULT_LEASE_TTL,
            keep_checkpoints: 1,
        }
    }
}

/// Opens the state under `config.data_dir` and serves on `listener` until `shutdown`
/// completes; then stops watchers and the expiry task and waits for in-flight calls.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    if config.token.is_none() && !config.allow_no_auth {
        return Err(ServerError::NoToken);
    }
    let coord = Coordinator::open(&CoordinatorConfig {
        data_dir: config.data_dir.clone(),
        lease_ttl: config.lease_ttl,
        keep_checkpoints: config.keep_checkpoints,
    })?;
    serve_state(coord, config.token.as_ref(), listener, shutdown).await
}

/// Serves an opened state (see [`serve`]).
pub async fn serve_state(
    coord: Arc<Coordinator>,
    token: Option<&Token>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let auth = ServerAuth::new(token);
    if !auth.enabled() {
        warn!("authentication is OFF (--no-auth): anyone who can reach this port controls the coordinator");
    }
    let expiry = tokio::spawn(expire_leases(coord.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkersServer<WorkersService>>().await;
    health
        .set_serving::<ExperimentsServer<ExperimentsService>>()
        .await;

    let workers = InterceptedService::new(
        WorkersServer::new(WorkersService::new(coord.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        auth.clone(),
    );
    let experiments = InterceptedService::new(
        ExperimentsServer::new(ExperimentsService::new(coord.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        auth,
    );
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, auth = token.is_some(), "coordinator listening");
    }
    let closing = coord.clone();
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(workers)
        .add_service(experiments)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            shutdown.await;
            info!("shutting down");
            closing.close();
        })
        .await;
    coord.close();
    expiry.abort();
    result?;
    info!("coordinator stopped");
    Ok(())
}

/// Expires lapsed leases, a few times per TTL, until the coordinator closes.
async fn expire_leases(coord: Arc<Coordinator>) {
    let period = Duration::from_millis((coord.lease_ttl_ms() / 4).clamp(50, 1_000));
    let mut closing = coord.subscribe().closing;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        let c = coord.clone();
        match tokio::task::spawn_blocking(move || c.expire()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!("lease expiry failed: {e}"),
            Err(e) => error!("lease expiry task failed: {e}"),
        }
    }
}
