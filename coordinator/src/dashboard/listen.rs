//! Serving the dashboard: an accept loop over plain TCP or TLS (rustls with ring, the
//! coordinator's certificate and key, as the gRPC server), HTTP/1.1 by hyper, until the
//! coordinator closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::rpc::auth::RoleTokens;
use crate::rpc::server::ServerTls;
use crate::state::Coordinator;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

/// A TLS handshake or a request's headers must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The certificate or key does not make a TLS configuration.
    #[error("dashboard TLS: {0}")]
    Tls(String),
    /// The listener has no address.
    #[error("dashboard listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// The address to open in a browser for a dashboard on `addr` (`https://localhost:PORT`
/// over TLS on loopback: the certificate names the host, not the address).
pub fn url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = match addr.ip() {
        ip if ip.is_unspecified() || (ip.is_loopback() && tls) => "localhost".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("{scheme}://{host}:{}/", addr.port())
}

/// A dashboard ready to serve on its listener.
pub struct DashboardServer {
    coord: Arc<Coordinator>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    addr: SocketAddr,
}

impl std::fmt::Debug for DashboardServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl DashboardServer {
    /// The dashboard of `coord` on `listener`: TLS when `tls` is given, a login with the
    /// user token of `tokens` (`None`: no login, `--no-auth`).
    pub fn new(
        coord: Arc<Coordinator>,
        tokens: Option<&RoleTokens>,
        tls: Option<&ServerTls>,
        listener: TcpListener,
    ) -> Result<DashboardServer, DashboardError> {
        let addr = listener.local_addr()?;
        let tls = tls.map(acceptor).transpose()?;
        let router = super::router(coord.clone(), tokens, tls.is_some());
        Ok(DashboardServer {
            coord,
            listener,
            tls,
            router,
            addr,
        })
    }

    /// The address to open in a browser (see [`url`]).
    pub fn url(&self) -> String {
        url(self.addr, self.tls.is_some())
    }

    /// Serves until the coordinator closes; open connections are then dropped.
    pub async fn run(self) {
        info!(addr = %self.addr, tls = self.tls.is_some(), "dashboard listening");
        let mut closing = self.coord.subscribe().closing;
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = closing.wait_for(|c| *c) => break,
            };
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    warn!("dashboard: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if connections.len() >= MAX_CONNECTIONS {
                debug!(%peer, "dashboard: too many connections, dropping one");
                continue;
            }
            let service = TowerToHyperService::new(self.router.clone());
            let tls = self.tls.clone();
            connections.spawn(async move {
                match tls {
                    None => serve_connection(TokioIo::new(stream), service).await,
                    Some(tls) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), service).await,
                            Ok(Err(e)) => debug!(%peer, "dashboard: TLS handshake failed: {e}"),
                            Err(_) => debug!(%peer, "dashboard: TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        connections.abort_all();
        info!("dashboard stopped");
    }
}

async fn serve_connection<I>(io: TokioIo<I>, service: TowerToHyperService<Router>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(64 << 10)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        debug!("dashboard connection: {e}");
    }
}

/// rustls from the coordinator's PEM certificate chain and key (no client certificate:
/// people log in with the user token).
fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, DashboardError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DashboardError::Tls(format!("--tls-cert: {e}")))?;
    if certs.is_empty() {
        return Err(DashboardError::Tls(
            "--tls-cert: no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key)
        .map_err(|e| DashboardError::Tls(format!("--tls-key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DashboardError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| DashboardError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
