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
