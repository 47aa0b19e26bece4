//! Serving: the two services behind their role's token check, a health service, and the
//! lease expiry task; optional TLS; graceful shutdown when a future completes (mini-redis
//! style).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ablate_common::proto::experiments_server::ExperimentsServer;
use ablate_common::proto::workers_server::WorkersServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{error, info, warn};

use crate::rpc::auth::{Role, RoleTokens, ServerAuth};
use crate::rpc::session::Sessions;
use crate::rpc::{ExperimentsService, WorkersService};
use crate::state::{CoordError, Coordinator, CoordinatorConfig};

/// The largest message the coordinator sends (a report can be large) and a client accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The largest message a user may send: a grid file (capped at
/// [`ablate_common::spec::grid::MAX_GRID_FILE_BYTES`]) and its name.
pub const MAX_USER_REQUEST_BYTES: usize =
    ablate_common::spec::grid::MAX_GRID_FILE_BYTES + (64 << 10);

/// The largest message a worker may send: a checkpoint chunk (1 MiB) with room to spare.
pub const MAX_WORKER_REQUEST_BYTES: usize = 4 << 20;

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
    /// Neither tokens nor `--no-auth`.
    #[error("refusing to serve without tokens: pass --user-token and --worker-token (or ABLATE_USER_TOKEN and ABLATE_WORKER_TOKEN, or their *_FILE variants; --no-auth only on a trusted network)")]
    NoToken,
    /// The dashboard cannot start (its TLS configuration).
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
    /// The session key file cannot be read or created.
    #[error("worker session key in {path}: {cause}")]
    SessionKey {
        /// The data directory.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The SQLite file, checkpoints and TensorBoard logs live here.
    pub data_dir: PathBuf,
    /// The user and worker tokens; `None` only with `allow_no_auth`.
    pub tokens: Option<RoleTokens>,
    /// Serve without a token (explicit `--no-auth`).
    pub allow_no_auth: bool,
    /// Lease time-to-live.
    pub lease_ttl: Duration,
    /// Complete checkpoints kept per run.
    pub keep_checkpoints: usize,
    /// TLS; `None` serves plain HTTP/2 (loopback, or `--insecure-plaintext`).
    pub tls: Option<ServerTls>,
    /// Users' share weights against each other (a user not named here has 1).
    pub user_weights: Vec<(String, u32)>,
    /// Workers started as cluster jobs (`--launcher`), if any.
    pub launcher: Option<crate::launcher::LauncherStart>,
}

/// The server's TLS material (PEM).
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate chain.
    pub cert: Vec<u8>,
    /// Private key.
    pub key: Vec<u8>,
    /// CA of worker client certificates: when set, the `Workers` service requires a
    /// client certificate signed by it (users need none).
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    fn config(&self) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key));
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        config
    }
}

impl ServerConfig {
    /// Defaults around a data directory and the tokens.
    pub fn new(data_dir: PathBuf, tokens: Option<RoleTokens>) -> ServerConfig {
        ServerConfig {
            data_dir,
            tokens,
            allow_no_auth: false,
            lease_ttl: DEFAULT_LEASE_TTL,
            keep_checkpoints: 1,
            tls: None,
            user_weights: Vec::new(),
            launcher: None,
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
    serve_with_dashboard(config, listener, None, shutdown).await
}

/// [`serve`], and the dashboard ([`crate::dashboard`]) on `dashboard` when given, with the
/// same tokens and TLS, until the server stops.
pub async fn serve_with_dashboard(
    config: ServerConfig,
    listener: TcpListener,
    dashboard: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    if config.tokens.is_none() && !config.allow_no_auth {
        return Err(ServerError::NoToken);
    }
    let coord = Coordinator::open(&CoordinatorConfig {
        data_dir: config.data_dir.clone(),
        lease_ttl: config.lease_ttl,
        keep_checkpoints: config.keep_checkpoints,
    })?;
    for (user, weight) in &config.user_weights {
        coord.set_user_weight(user, *weight);
    }
    let dashboard = dashboard
        .map(|l| {
            crate::dashboard::DashboardServer::new(
                coord.clone(),
                config.tokens.as_ref(),
                config.tls.as_ref(),
                l,
            )
        })
        .transpose()?
        .map(|d| tokio::spawn(d.run()));
    let launcher = config
        .launcher
        .as_ref()
        .and_then(|l| l.start(coord.clone()));
    let state = coord.clone();
    let served = serve_state(
        coord,
        config.tokens.as_ref(),
        config.tls.as_ref(),
        listener,
        shutdown,
    )
    .await;
    // The dashboard stops when the state closes (serving closes it, unless it failed
    // before it began); the launcher then cancels its pending jobs and ends.
    state.close();
    if let Some(d) = dashboard {
        let _ = d.await;
    }
    if let Some(launcher) = launcher {
        let _ = launcher.await;
    }
    served
}

/// Serves an opened state (see [`serve`]); `tls` `None` serves plain HTTP/2.
pub async fn serve_state(
    coord: Arc<Coordinator>,
    tokens: Option<&RoleTokens>,
    tls: Option<&ServerTls>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let sessions = Sessions::open(coord.data_dir()).map_err(|cause| ServerError::SessionKey {
        path: coord.data_dir().to_path_buf(),
        cause,
    })?;
    if tokens.is_none() {
        warn!("authentication is OFF (--no-auth): anyone who can reach this port controls the coordinator");
    }
    let expiry = tokio::spawn(expire_leases(coord.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkersServer<WorkersService>>().await;
    health
        .set_serving::<ExperimentsServer<ExperimentsService>>()
        .await;

    let workers = InterceptedService::new(
        WorkersServer::new(WorkersService::new(coord.clone(), sessions))
            .max_decoding_message_size(MAX_WORKER_REQUEST_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        ServerAuth::new(Role::Worker, tokens)
            .require_client_cert(tls.is_some_and(|t| t.client_ca.is_some())),
    );
    let experiments = InterceptedService::new(
        ExperimentsServer::new(ExperimentsService::new(coord.clone()))
            .max_decoding_message_size(MAX_USER_REQUEST_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        ServerAuth::new(Role::User, tokens),
    );
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, auth = tokens.is_some(), tls = tls.is_some(), "coordinator listening");
    }
    let closing = coord.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.config())?;
    }
    let result = builder
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
