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
    /// The word users see for the state ("queued", "running", …): its proto name without
    /// the `RUN_STATE_` prefix, in lower case.
    pub fn label(self) -> String {
        label(self.as_str_name(), "RUN_STATE_")
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
        f.write_str(&self.label())
    }
}

impl ExperimentState {
    /// The word users see for the state ("queued", "running", "finished", …).
    pub fn label(self) -> String {
        label(self.as_str_name(), "EXPERIMENT_STATE_")
    }
}

impl std::fmt::Display for ExperimentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// `RUN_STATE_RUNNING` → `running`.
fn label(proto_name: &str, prefix: &str) -> String {
    proto_name
        .strip_prefix(prefix)
        .unwrap_or(proto_name)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_labels_are_the_lower_case_proto_names() {
        assert_eq!(RunState::Running.label(), "running");
        assert_eq!(RunState::Unspecified.label(), "unspecified");
        assert_eq!(ExperimentState::Cancelled.to_string(), "cancelled");
    }
}
