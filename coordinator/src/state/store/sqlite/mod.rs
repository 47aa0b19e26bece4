//! [`SqliteStore`]: the store in one SQLite file, the one the coordinator runs on.
//!
//! WAL with `synchronous = NORMAL` (see [`SqliteStore::open`]): a commit survives the
//! coordinator's process dying at any instant.
//!
//! # Layout
//! - `schema`: the tables and their migrations (`PRAGMA user_version`).
//! - `db`: [`SqliteStore`] (open, reads) and [`SqliteTx`] (writes): the
//!   [`Store`](super::Store) and [`Tx`](super::Tx) implementations.
//! - `checkpointer`: checkpoints of the write-ahead log on a thread of their own.
//! - `stops`: early-stopping decisions and what they are computed from.

mod checkpointer;
mod db;
mod schema;
mod stops;

pub use db::{SqliteStore, SqliteTx};
pub use schema::SCHEMA_VERSION;
