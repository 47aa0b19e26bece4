//! The gRPC layer: thin services that validate, convert (proto ↔ domain, with `TryFrom`)
//! and delegate to [`crate::state::Coordinator`]; the server, its tokens and sessions; the
//! CLI's client.
//!
//! # Layout
//! - [`server`]: [`server::serve`] with graceful shutdown and the lease-expiry timer.
//! - [`auth`]: the user and worker tokens (server interceptor per role).
//! - [`session`]: worker session secrets (issued at `Register`, checked on every call).
//! - [`client`]: a connected `Experiments` client with the user token.
//! - `convert`: proto ↔ domain conversions and the one `From<CoordError> for Status`.
//! - `workers`: [`WorkersService`], the worker-facing service.
//! - `experiments`: [`ExperimentsService`], the user-facing service.
//! - `test_hold`: a test-only hold on blocking work (`ABLATE_TEST_COORD_HOLD_DIR`).

pub mod auth;
pub mod client;
mod convert;
mod experiments;
pub mod server;
pub mod session;
pub mod test_hold;
mod workers;

pub use experiments::ExperimentsService;
pub use workers::WorkersService;
