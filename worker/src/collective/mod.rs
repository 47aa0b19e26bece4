//! Gradient averaging across data-parallel replicas.
//!
//! Each replica thread calls [`Collective::all_reduce_sum`] with the same tensor shape at
//! the same point of every step; every call returns the element-wise sum over all ranks.
//! Calls time out: a replica that died or hangs fails the run with an error instead of
//! blocking its peers forever.

mod cpu;
#[cfg(feature = "cuda")]
pub mod nccl;

use std::time::Duration;

pub use cpu::CpuCollective;
#[cfg(feature = "cuda")]
pub use nccl::NcclCollective;

/// Errors of a collective call.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// A peer did not reach the collective in time.
    #[error("collective timed out after {0:?}: a data-parallel replica is dead or stuck")]
    Timeout(Duration),
    /// A peer failed and aborted the group.
    #[error("collective aborted: {0}")]
    Aborted(String),
    /// The backend (libtorch or NCCL) failed.
    #[error("collective backend error: {0}")]
    Backend(String),
}

/// An all-reduce group of `world` replicas, one call per rank and step.
pub trait Collective: Send + Sync {
    /// Number of ranks.
    fn world(&self) -> usize;
    /// Replaces `tensor` (same shape on every rank) by its sum over all ranks.
    fn all_reduce_sum(&self, rank: usize, tensor: &mut tch::Tensor) -> Result<(), CollectiveError>;
    /// Makes every pending and future call fail with `reason` (a replica failed).
    fn abort(&self, reason: &str);
}
