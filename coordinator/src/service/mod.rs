//! The gRPC layer: thin services that validate, convert (proto ↔ domain, with `TryFrom`)
//! and delegate to [`crate::state::Coordinator`].
//!
//! # Layout
//! - `convert`: proto ↔ domain conversions and the one `From<CoordError> for Status`.
//! - `workers`: [`WorkersService`], the worker-facing service.
//! - `experiments`: [`ExperimentsService`], the user-facing service.
//! - `test_hold`: a test-only hold on blocking work (`ABLATE_TEST_COORD_HOLD_DIR`).

mod convert;
mod experiments;
pub mod test_hold;
mod workers;

pub use experiments::ExperimentsService;
pub use workers::WorkersService;
