//! Clients of the user-facing service, with the token attached to every call.

use ablate_common::proto::experiments_client::ExperimentsClient;
use ablate_common::tls::ClientTls;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::rpc::auth::{ClientAuth, Token};
use crate::rpc::server::MAX_MESSAGE_BYTES;

/// An `Experiments` client that sends the token.
pub type Client = ExperimentsClient<InterceptedService<Channel, ClientAuth>>;

/// Errors of connecting.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a URL tonic takes, or its TLS settings are wrong.
    #[error("coordinator `{url}`: {detail}")]
    Address {
        /// The address.
        url: String,
        /// Why, with its causes.
        detail: String,
    },
    /// Nothing answers there.
    #[error("cannot reach the coordinator at {url}: {detail}")]
    Connect {
        /// The address.
        url: String,
        /// Why, with its causes.
        detail: String,
    },
}

/// An error and its causes on one line, repeated messages skipped (tonic's transport
/// error says only "transport error"; the cause is in its sources).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if parts.last() != Some(&text) && text != "transport error" {
            parts.push(text);
        }
        current = err.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

/// Connects to the coordinator at `url` (`https://host:port` with `tls.ca`, or
/// `http://` on loopback) with the user token.
pub async fn connect(
    url: &str,
    token: Option<&Token>,
    tls: &ClientTls,
) -> Result<Client, ClientError> {
    let endpoint = ablate_common::tls::endpoint(url, tls).map_err(|e| ClientError::Address {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
        url: url.to_string(),
        detail: chain(&e),
    })?;
    Ok(
        ExperimentsClient::with_interceptor(channel, ClientAuth::with_token(token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}
