//! The ablate worker: models in tch, the data pipeline, the training engine, collectives
//! and the agent that takes runs from a coordinator.
//!
//! # Layout
//! - [`model`]: tch modules built from the catalogue's layer trees.
//! - [`data`]: datasets, decoding, augmentation and batch loading.
//! - [`train`]: optimizers, the epoch loop, checkpoints.
//! - [`collective`]: gradient all-reduce across replicas (in-process CPU, NCCL).
//! - [`devices`]: the check of a device list against this machine and build.
//! - [`agent`]: the loop that registers with a coordinator and trains what it assigns.
//! - [`bench`]: training throughput on random data.
pub mod agent;
pub mod bench;
pub mod cli;
pub mod cli_data;
pub mod collective;
pub mod data;
pub mod devices;
pub mod memory;
pub mod model;
pub mod signals;
pub mod train;
