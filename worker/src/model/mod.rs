//! tch modules built from an [`Architecture`](ablate_common::arch::Architecture): the model a
//! worker trains is the layer tree that the catalogue describes and the coordinator counts.
//!
//! - `network`: [`Network`], the module, and its forward pass.
//! - `builder`: [`try_build`], from a layer tree to tch layers.
//! - `init`: the Paddle and PyTorch initialisation schemes.
//! - `leaky_relu`: leaky ReLU with any slope, through ATen (tch cannot pass the slope).
//! - `rng`: [`ReplicaRng`], a replica's own generator for its dropout masks ([`RngError`]).

mod builder;
mod init;
mod leaky_relu;
mod network;
mod rng;

pub use builder::try_build;
pub use network::Network;
pub(crate) use rng::take_error as take_shim_error;
pub use rng::{ReplicaRng, RngError};
