//! The training engine: optimizers, the epoch loop with data-parallel replicas, checkpoints.
//!
//! # Layout
//! - `engine`: [`train`], the epoch loop with its replicas; [`TrainOptions`].
//! - `options`: the one path from a run spec to [`TrainOptions`] ([`Placement`]).
//! - [`step`]: one forward/backward step; [`optimizer`]: the optimizers and schedules.
//! - [`precision`]: mixed precision (CUDA autocast); [`pacing`]: which epochs checkpoint.
//! - [`checkpoint`]: the checkpoint file (save, load, verify); `archive_check`: its bytes
//!   checked before libtorch reads them.
//! - [`throughput`]: training throughput on random data (`ablate-worker bench`).

mod archive_check;
pub mod checkpoint;
mod engine;
pub mod optimizer;
mod options;
pub mod pacing;
pub mod precision;
pub mod step;
pub mod throughput;

pub use engine::{
    train, Observer, Outcome, ReplicaSetupError, Silent, StateMismatch, TrainError, TrainOptions,
    PANIC_REPLICA_ENV,
};
pub use options::{threads_per_replica, Placement};
