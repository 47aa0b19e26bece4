//! The SQLite store: experiments, runs (spec, scheduling state, lease), epoch metrics,
//! sampled step losses, events and workers, in one file.
//!
//! Every state change is one transaction ([`Store::write`]), so the coordinator can be
//! killed at any instant and restarted on the same file: what was acknowledged is there,
//! and nothing is half-written (WAL with `synchronous = NORMAL`: see [`Store::open`]). Epoch rows are unique on `(run_id, epoch)`: written once.
//!
//! # Layout
//! - `schema`: the tables and their migrations (`PRAGMA user_version`).
//! - `db`: [`Store`] (open, reads) and [`Tx`] (writes).
//! - `checkpointer`: checkpoints of the write-ahead log on a thread of their own.
//! - `records`: the rows the store takes and returns.
//! - `stops`: early-stopping decisions and what they are computed from.

mod checkpointer;
mod db;
mod records;
mod schema;
mod stops;

pub use db::{Store, StoreError, Tx};
pub use records::{
    AssignmentRow, EventRow, ExperimentRow, NewExperiment, NewRun, ProgressUpdate, RunRow,
};
pub use schema::SCHEMA_VERSION;
pub use stops::{ComputeRow, StopInputRow, StopRow};
