//! The gRPC layer: thin services that validate, convert (proto ↔ domain, with `TryFrom`)
//! and delegate to [`crate::state::Coordinator`].
//!
//! # Layout
//! - `convert`: proto ↔ domain conversions and the one `From<CoordError> for Status`.
//! - `workers`: [`WorkersService`], the worker-facing service.
//! - `experiments`: [`ExperimentsService`], the user-facing service.

mod convert;
mod experiments;
mod workers;

pub use experiments::ExperimentsService;
pub use workers::WorkersService;
