//! D1-style SQL databases: the backend trait, its values and results, and
//! the caps every engine keeps (D1's: a value or row of at most 2 MB, a
//! call of at most 30 s; ours: a result of at most 16 MiB, a database of at
//! most [`MAX_DATABASE_BYTES`]).

use std::time::Duration;

/// The longest string or blob, in bytes (D1's row limit).
pub const MAX_VALUE_BYTES: usize = 2_000_000;
/// The most bytes a call's results may hold in all.
pub const MAX_RESULT_BYTES: usize = 16 << 20;
/// The longest a call may run.
pub const MAX_CALL_TIME: Duration = Duration::from_secs(30);
/// The largest a database may grow (a tenant cannot fill the node's disk).
pub const MAX_DATABASE_BYTES: u64 = 1 << 30;
/// The most statements one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// The most parameters one statement may bind.
pub const MAX_PARAMS: usize = 100;

/// A value in or out of SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
  Null,
  Integer(i64),
  Real(f64),
  Text(String),
  Blob(Vec<u8>),
}

impl SqlValue {
  /// Bytes it holds, for the result cap.
  pub fn size(&self) -> usize {
    match self {
      Self::Text(s) => s.len() + 8,
      Self::Blob(b) => b.len() + 8,
      _ => 8,
    }
  }
}

/// One statement and its bound parameters (`?` or `?NNN`).
#[derive(Debug, Clone)]
pub struct Statement {
  pub sql: String,
  pub params: Vec<SqlValue>,
}

/// What one statement did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlResult {
  pub columns: Vec<String>,
  pub rows: Vec<Vec<SqlValue>>,
  /// Rows changed by an INSERT, UPDATE or DELETE (0 for others).
  pub changes: u64,
  pub last_row_id: i64,
  pub duration_ms: f64,
  /// The database's size after the statement, in bytes.
  pub size_after: u64,
}

/// Why a call failed: D1's `D1_ERROR: <message>` family.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SqlError {
  /// SQLite refused or failed the statement (its message, its code name).
  #[error("{0}")]
  Sql(String),
  /// Something the engine does not allow (ATTACH, most PRAGMAs).
  #[error("{0}: SQLITE_AUTH")]
  Refused(String),
  #[error("the call ran past {}s and was interrupted", MAX_CALL_TIME.as_secs())]
  Timeout,
  #[error("the results are over {} MiB", MAX_RESULT_BYTES >> 20)]
  TooLarge,
  #[error("{0}")]
  Invalid(String),
}

/// One SQL database. Calls block: run them off the isolate's thread.
pub trait SqlDatabase: Send + Sync {
  /// Runs `statements` in one transaction: all take effect or none (a
  /// single statement is a batch of one).
  fn batch(&self, statements: &[Statement]) -> Result<Vec<SqlResult>, SqlError>;
  /// Runs a script of statements without parameters, each in its own
  /// transaction unless the script makes its own; gives how many ran.
  fn exec(&self, script: &str) -> Result<usize, SqlError>;
}

/// Checks a batch's shape before any engine sees it.
pub fn check_batch(statements: &[Statement]) -> Result<(), SqlError> {
  if statements.len() > MAX_BATCH {
    return Err(SqlError::Invalid(format!(
      "a batch holds at most {MAX_BATCH} statements"
    )));
  }
  for s in statements {
    if s.sql.trim().is_empty() {
      return Err(SqlError::Invalid("No SQL query was provided".into()));
    }
    if s.params.len() > MAX_PARAMS {
      return Err(SqlError::Invalid(format!(
        "too many SQL variables: at most {MAX_PARAMS}"
      )));
    }
    if s.params.iter().any(|p| p.size() > MAX_VALUE_BYTES + 8) {
      return Err(SqlError::Invalid(format!(
        "a bound value is over {MAX_VALUE_BYTES} bytes"
      )));
    }
  }
  Ok(())
}
