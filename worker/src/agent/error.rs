//! Why the agent stops with an error (a stop on request or when idle is not one).

use ablate_common::auth::TokenError;
use ablate_common::spec::DeviceError;

/// Why the agent could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `--devices` does not name devices of this machine.
    #[error("--devices {0}")]
    Devices(#[source] DeviceError),
    /// The token is not usable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The coordinator's URL or TLS settings give no client.
    #[error("{0}")]
    Connection(String),
    /// The coordinator refused to register this worker.
    #[error("registration refused: {}", .0.message())]
    Registration(#[source] tonic::Status),
    /// The coordinator refused this worker's request for work.
    #[error("coordinator refused this worker: {}", .0.message())]
    Refused(#[source] tonic::Status),
}
