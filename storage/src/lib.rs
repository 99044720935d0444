//! Storage for the bindings workers see: [`Storage`] opens a node's KV
//! namespaces, D1 databases, R2 buckets and queues under one folder (each its own file) and
//! hands each worker only the ones its config names; [`kv::KvStore`] and
//! [`sql::SqlDatabase`] are what an engine implements (the embedded ones
//! are on SQLite; a shared engine for a fleet implements the same traits).

pub mod cache;
#[cfg(feature = "sqlite")]
pub mod claims;
pub mod kv;
pub mod objects;
pub mod queues;
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "sqlite")]
pub mod sqlite_objects;
#[cfg(feature = "sqlite")]
pub mod sqlite_queues;
#[cfg(feature = "sqlite")]
pub mod sqlite_sql;

#[cfg(feature = "sqlite")]
mod registry;
#[cfg(feature = "sqlite")]
pub use registry::Storage;

pub use kv::{KvEntry, KvError, KvKey, KvListing, KvStore, ListQuery, PutOptions};
pub use objects::{ObjectError, ObjectMeta, ObjectStore};
pub use queues::{MessageQueue, QueueError};
pub use sql::{SqlDatabase, SqlError, SqlResult, SqlValue, Statement};

/// Why a namespace could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
  #[error("namespace {0:?}: letters, digits, '-' and '_' only, at most 64")]
  BadName(String),
  #[error("{path}: {message}")]
  Open { path: String, message: String },
}

/// A namespace name: it names a file.
pub fn check_namespace(name: &str) -> Result<(), StorageError> {
  let ok = !name.is_empty()
    && name.len() <= 64
    && name
      .bytes()
      .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
  if ok {
    Ok(())
  } else {
    Err(StorageError::BadName(name.to_string()))
  }
}
