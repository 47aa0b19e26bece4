//! Shared types of ablate, used by the coordinator and the worker alike.
//!
//! # Layout
//! - [`auth`]: tokens and the client-side interceptor (role token + worker session).
//! - [`fuzz`]: a seeded mutation fuzzer for bounded fuzz tests on stable Rust.
//! - [`tls`]: how clients reach the coordinator (https with a CA, or loopback http).
//! - [`proto`]: the generated gRPC types and clients/servers (`proto/ablate.proto`).
//! - [`arch`]: models as data: a layer tree, its shape inference, parameter and FLOP counts.
//! - [`zoo`]: the catalogue: the seed's models, the CNN family and its factors, ResNets.
//! - [`spec`]: run, dataset and grid specs (serde + TOML) and their validation.
//! - [`metrics`]: per-epoch and per-step metric records.
//! - [`telemetry`]: tracing set-up shared by the binaries.

pub mod arch;
pub mod auth;
pub mod fuzz;
pub mod metrics;
pub mod proto;
pub mod spec;
pub mod telemetry;
pub mod tls;
pub mod zoo;
