//! The ablate worker: models in tch, the data pipeline, the training engine, collectives
//! and the agent that takes runs from a coordinator.
//!
//! # Layout
//! - [`model`]: tch modules built from the catalogue's layer trees.
//! - [`data`]: datasets, decoding, augmentation and batch building (the loader), and the
//!   loader's throughput (`data-bench`).
//! - [`train`]: optimizers, the epoch loop, checkpoints, and training throughput on random
//!   data (`bench`).
//! - [`collective`]: gradient all-reduce across replicas (in-process CPU, NCCL).
//! - [`devices`]: the check of a device list against this machine and build.
//! - [`agent`]: the loop that registers with a coordinator and trains what it assigns.
//! - [`cli`]: the `ablate-worker` command line, one module per subcommand.
//! - [`memory`]: the allocator settings that keep freed memory for the next batch.
//! - [`signals`]: SIGTERM/SIGINT as a shutdown flag.

pub mod agent;
pub mod cli;
pub mod collective;
pub mod data;
pub mod devices;
pub mod memory;
pub mod model;
pub mod signals;
pub mod train;
