//! The `ablate-worker` command line, one module per subcommand; [`run`] dispatches (the
//! binary only parses and calls it).
//!
//! # Layout
//! - [`app`]: [`Cli`], the agent's arguments, and [`run`].
//! - [`train`]: `train`, one run from a spec file, standalone.
//! - [`bench`]: `bench`, training throughput on random data.
//! - [`arch`]: `arch`, a model's layer tree as JSON.
//! - [`data`]: `data-bench` (loader throughput) and `data-inspect` (a dataset's check).
//! - [`nccl_check`]: the hidden `nccl-check` of `deploy/gpu-check.sh`.

pub mod app;
pub mod arch;
pub mod bench;
pub mod data;
pub mod nccl_check;
pub mod train;

pub use app::{run, Cli};
