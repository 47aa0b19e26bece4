//! The store's errors, shared by its implementations.

use std::fmt;
use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be opened or set up.
    #[error("cannot open the store {path}: {cause}")]
    Open {
        /// The SQLite file.
        path: PathBuf,
        /// Why.
        #[source]
        cause: rusqlite::Error,
    },
    /// The file was written by a newer build.
    #[error("the store {path} has schema version {found}; this build knows up to {supported}")]
    TooNew {
        /// The SQLite file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// A query failed.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value does not decode.
    #[error("store: corrupt value in {what}: {message}")]
    Corrupt {
        /// Where.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A stored value that does not decode.
pub(crate) fn corrupt(what: &'static str, message: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: message.to_string(),
    }
}
