//! The worker's connection to its coordinator: connect with back-off, register, and tell
//! apart errors worth retrying from refusals.

use std::time::Duration;

use ablate_common::auth::ClientAuth;
use ablate_common::proto::workers_client::WorkersClient;
use ablate_common::proto::{Device, RegisterRequest, RegisterResponse, PROTOCOL_VERSION};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

/// A Workers client that sends the token with every call.
pub(crate) type Client = WorkersClient<InterceptedService<Channel, ClientAuth>>;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where and who to connect as.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:7070`.
    pub url: String,
    /// Worker token and, once registered, the session secret.
    pub auth: ClientAuth,
    /// TLS (https with a CA) or loopback http.
    pub tls: ablate_common::tls::ClientTls,
    /// Human name of this worker.
    pub name: String,
    /// Devices offered.
    pub devices: Vec<String>,
    /// CPU threads.
    pub threads: u32,
    /// Dataset roots, reported at registration.
    pub data_roots: Vec<String>,
}

/// Whether a failed call may succeed if retried (the coordinator is away or restarting).
pub fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Internal
    )
}

/// A lazily-connecting client: calls fail with `Unavailable` while the coordinator is down,
/// and the channel reconnects by itself when it is back. Calls time out after a minute.
pub(crate) fn client(config: &ConnectionConfig) -> Result<Client, String> {
    client_with_timeout(config, Some(Duration::from_secs(60)))
}

/// [`client`] on a connection of its own, with its own call timeout (`None`: calls such
/// as a checkpoint transfer may take as long as their bytes take). Separate connections
/// keep heartbeats from queueing behind a transfer's bytes.
pub(crate) fn client_with_timeout(
    config: &ConnectionConfig,
    timeout: Option<Duration>,
) -> Result<Client, String> {
    let mut endpoint = ablate_common::tls::endpoint(&config.url, &config.tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_keepalive(Some(Duration::from_secs(10)));
    if let Some(timeout) = timeout {
        endpoint = endpoint.timeout(timeout);
    }
    let channel = endpoint.connect_lazy();
    Ok(
        WorkersClient::with_interceptor(channel, config.auth.clone())
            .max_decoding_message_size(64 << 20),
    )
}

/// Registers, retrying with back-off while the coordinator is unreachable. A refusal
/// (wrong token, protocol mismatch) is returned as an error at once.
pub(crate) async fn register(
    client: &mut Client,
    config: &ConnectionConfig,
    previous_id: Option<&str>,
) -> Result<RegisterResponse, tonic::Status> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let request = RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: config.name.clone(),
            devices: config
                .devices
                .iter()
                .map(|d| Device { name: d.clone() })
                .collect(),
            threads: config.threads,
            worker_id: previous_id.unwrap_or_default().to_string(),
            data_roots: config.data_roots.clone(),
        };
        match client.register(request).await {
            Ok(response) => {
                let secret = response
                    .metadata()
                    .get(ablate_common::proto::SESSION_METADATA_KEY)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        tonic::Status::failed_precondition(
                            "the coordinator sent no session secret (an older coordinator?)",
                        )
                    })?;
                config
                    .auth
                    .set_session(secret)
                    .map_err(|e| tonic::Status::failed_precondition(e.to_string()))?;
                return Ok(response.into_inner());
            }
            Err(status) if is_transient(&status) => {
                tracing::warn!(
                    "coordinator {} unreachable ({}); retrying in {:?}",
                    config.url,
                    status.message(),
                    backoff
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(status) => return Err(status),
        }
    }
}
