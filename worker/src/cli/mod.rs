//! The `ablate-worker` subcommands, one module each; the binary only parses and dispatches.

pub mod bench;
pub mod nccl_check;
pub mod train;
