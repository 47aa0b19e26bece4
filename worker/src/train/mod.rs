//! The training engine: optimizers, the epoch loop with data-parallel replicas, checkpoints.

mod archive_check;
pub mod checkpoint;
mod engine;
pub mod optimizer;
pub mod pacing;
pub mod precision;
pub mod step;

pub use engine::{train, Observer, Outcome, Silent, TrainError, TrainOptions, PANIC_REPLICA_ENV};
