//! Generated gRPC types, clients and servers of `proto/ablate.proto`.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]

tonic::include_proto!("ablate.v1");

/// Version of the wire protocol this build speaks; checked at registration.
pub const PROTOCOL_VERSION: u32 = 1;

/// The metadata key that carries the shared token.
pub const AUTH_METADATA_KEY: &str = "authorization";

/// The metadata key that carries a worker's session secret: `Register` answers with it and
/// every later worker call sends it back.
pub const SESSION_METADATA_KEY: &str = "ablate-session";

impl RunState {
    /// The word users see for the state ("queued", "running", …), as the CLI, the
    /// reports and the dashboard print it.
    pub fn label(self) -> &'static str {
        match self {
            RunState::Unspecified => "unknown",
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Stopped => "stopped",
        }
    }

    /// Whether the run will not change state again (a stopped run only by `resume`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Finished | RunState::Failed | RunState::Cancelled | RunState::Stopped
        )
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl ExperimentState {
    /// The word users see for the state ("queued", "running", "finished", …).
    pub fn label(self) -> &'static str {
        match self {
            ExperimentState::Unspecified => "unknown",
            ExperimentState::Queued => "queued",
            ExperimentState::Running => "running",
            ExperimentState::Finished => "finished",
            ExperimentState::Failed => "failed",
            ExperimentState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ExperimentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}
