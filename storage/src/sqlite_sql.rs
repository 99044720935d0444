//! The embedded SQL engine: one SQLite file per D1 database, opened like a
//! KV namespace's (WAL, `synchronous = NORMAL`). Tenant SQL is contained by
//! SQLite's own hooks rather than by reading it: an authorizer that refuses
//! ATTACH and DETACH and allows only the PRAGMAs D1 allows (a list of the
//! allowed, so a PRAGMA nobody looked at is refused), limits on attached
//! databases, value and statement lengths and bound parameters, a progress
//! handler that interrupts a call past [`MAX_CALL_TIME`], a page cap that
//! keeps the file under [`MAX_DATABASE_BYTES`], and a cap on the bytes a
//! call's results hold.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, TransactionBehavior};

use crate::sql::{
  SqlDatabase, SqlError, SqlResult, SqlValue, Statement, MAX_CALL_TIME, MAX_DATABASE_BYTES, MAX_PARAMS,
  MAX_RESULT_BYTES, MAX_VALUE_BYTES,
};

/// The longest statement text (D1's: 100 KB).
const MAX_SQL_BYTES: i32 = 100_000;

/// PRAGMAs that read the schema or a setting: allowed with any argument
/// (a table or index name).
const INSPECT_PRAGMAS: &[&str] = &[
  "table_list",
  "table_info",
  "table_xinfo",
  "index_list",
  "index_info",
  "index_xinfo",
  "foreign_key_list",
  "foreign_key_check",
  "quick_check",
  "integrity_check",
  "optimize",
];
/// PRAGMAs a statement may read and set (the connection's behaviour only).
const SETTING_PRAGMAS: &[&str] = &[
  "foreign_keys",
  "defer_foreign_keys",
  "case_sensitive_like",
  "ignore_check_constraints",
  "legacy_alter_table",
  "recursive_triggers",
  "reverse_unordered_selects",
];
/// PRAGMAs that may only be read.
const READ_PRAGMAS: &[&str] = &["page_count", "page_size", "freelist_count", "data_version"];

/// `tenant`: the statement being prepared is the worker's (our own BEGIN
/// and COMMIT around a batch are not).
fn authorize(ctx: AuthContext<'_>, tenant: bool) -> Authorization {
  match ctx.action {
    AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
    // A batch is one transaction of ours; a worker's BEGIN, COMMIT or
    // SAVEPOINT would break it up, or leave one open on the connection.
    AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } if tenant => Authorization::Deny,
    AuthAction::Pragma {
      pragma_name,
      pragma_value,
    } => {
      let name = pragma_name.to_ascii_lowercase();
      let name = name.as_str();
      let ok = INSPECT_PRAGMAS.contains(&name)
        || SETTING_PRAGMAS.contains(&name)
        || (READ_PRAGMAS.contains(&name) && pragma_value.is_none());
      if ok {
        Authorization::Allow
      } else {
        Authorization::Deny
      }
    }
    _ => Authorization::Allow,
  }
}

/// One database in one file.
pub struct SqliteDb {
  conn: Mutex<Connection>,
  /// Set while a worker's statement is prepared (see [`authorize`]).
  tenant: Arc<AtomicBool>,
  /// Milliseconds after `base` at which the running call is interrupted
  /// (0: no call running).
  deadline: Arc<AtomicU64>,
  base: Instant,
  /// How long a call may run ([`MAX_CALL_TIME`]; shorter in tests).
  call_time: std::time::Duration,
}

fn sql_error(e: rusqlite::Error) -> SqlError {
  match e {
    rusqlite::Error::SqliteFailure(f, msg) => {
      let code = f.extended_code & 0xff;
      let name = match code {
        1 => "SQLITE_ERROR",
        5 => "SQLITE_BUSY",
        9 => return SqlError::Timeout,
        13 => "SQLITE_FULL",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        23 => return SqlError::Refused(msg.unwrap_or_else(|| "not authorized".into())),
        25 => "SQLITE_RANGE",
        _ => "SQLITE_ERROR",
      };
      let msg = msg.unwrap_or_else(|| f.to_string());
      SqlError::Sql(format!("{msg}: {name}"))
    }
    rusqlite::Error::InvalidParameterCount(..) => {
      SqlError::Invalid("Wrong number of parameter bindings for SQL query.".into())
    }
    other => SqlError::Sql(format!("{other}: SQLITE_ERROR")),
  }
}

impl SqliteDb {
  pub fn open(path: &Path) -> Result<Self, SqlError> {
    let conn = crate::sqlite::open_file(path, MAX_DATABASE_BYTES).map_err(sql_error)?;
    conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(sql_error)?;
    for (limit, value) in [
      (Limit::SQLITE_LIMIT_ATTACHED, 0),
      (Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES as i32),
      (Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES),
      (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS as i32),
    ] {
      conn.set_limit(limit, value).map_err(sql_error)?;
    }
    let tenant = Arc::new(AtomicBool::new(false));
    let preparing = tenant.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
      authorize(ctx, preparing.load(Ordering::Relaxed))
    }));
    let deadline = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let watch = deadline.clone();
    conn.progress_handler(
      10_000,
      Some(move || {
        let d = watch.load(Ordering::Relaxed);
        d != 0 && base.elapsed().as_millis() as u64 >= d
      }),
    );
    Ok(Self {
      conn: Mutex::new(conn),
      tenant,
      deadline,
      base,
      call_time: MAX_CALL_TIME,
    })
  }

  /// The connection, with the call's deadline set until the guard goes.
  fn call(&self) -> Call<'_> {
    let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
    let at = (self.base.elapsed() + self.call_time).as_millis() as u64;
    self.deadline.store(at.max(1), Ordering::Relaxed);
    Call { conn, db: self }
  }
}

struct Call<'a> {
  conn: std::sync::MutexGuard<'a, Connection>,
  db: &'a SqliteDb,
}

impl Drop for Call<'_> {
  fn drop(&mut self) {
    self.db.deadline.store(0, Ordering::Relaxed);
  }
}

fn value_of(v: ValueRef<'_>) -> SqlValue {
  match v {
    ValueRef::Null => SqlValue::Null,
    ValueRef::Integer(i) => SqlValue::Integer(i),
    ValueRef::Real(f) => SqlValue::Real(f),
    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
  }
}

fn to_sql(v: &SqlValue) -> rusqlite::types::Value {
  use rusqlite::types::Value;
  match v {
    SqlValue::Null => Value::Null,
    SqlValue::Integer(i) => Value::Integer(*i),
    SqlValue::Real(f) => Value::Real(*f),
    SqlValue::Text(s) => Value::Text(s.clone()),
    SqlValue::Blob(b) => Value::Blob(b.clone()),
  }
}

/// Runs one statement to its end; `left` is what the call's results may
/// still hold.
fn run(conn: &Connection, tenant: &AtomicBool, s: &Statement, left: &mut usize) -> Result<SqlResult, SqlError> {
  let start = Instant::now();
  tenant.store(true, Ordering::Relaxed);
  let stmt = conn.prepare_cached(&s.sql);
  tenant.store(false, Ordering::Relaxed);
  let mut stmt = stmt.map_err(sql_error)?;
  if stmt.parameter_count() != s.params.len() {
    return Err(SqlError::Invalid(
      "Wrong number of parameter bindings for SQL query.".into(),
    ));
  }
  for (i, p) in s.params.iter().enumerate() {
    stmt.raw_bind_parameter(i + 1, to_sql(p)).map_err(sql_error)?;
  }
  let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
  let readonly = stmt.readonly();
  let mut rows_out = Vec::new();
  {
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(sql_error)? {
      let mut out = Vec::with_capacity(columns.len());
      for i in 0..columns.len() {
        let v = value_of(row.get_ref(i).map_err(sql_error)?);
        *left = left.checked_sub(v.size()).ok_or(SqlError::TooLarge)?;
        out.push(v);
      }
      rows_out.push(out);
    }
  }
  Ok(SqlResult {
    columns,
    rows: rows_out,
    changes: if readonly { 0 } else { conn.changes() },
    last_row_id: conn.last_insert_rowid(),
    duration_ms: start.elapsed().as_secs_f64() * 1000.0,
    size_after: 0,
  })
}

fn size_of(conn: &Connection) -> u64 {
  let q = |p: &str| conn.query_row(p, [], |r| r.get::<_, u64>(0)).unwrap_or(0);
  q("PRAGMA page_count") * q("PRAGMA page_size")
}

impl SqlDatabase for SqliteDb {
  fn batch(&self, statements: &[Statement]) -> Result<Vec<SqlResult>, SqlError> {
    crate::sql::check_batch(statements)?;
    let mut call = self.call();
    let mut left = MAX_RESULT_BYTES;
    let tx = call
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)
      .map_err(sql_error)?;
    let mut out = Vec::with_capacity(statements.len());
    for s in statements {
      out.push(run(&tx, &self.tenant, s, &mut left)?);
    }
    tx.commit().map_err(sql_error)?;
    let size = size_of(&call.conn);
    for r in &mut out {
      r.size_after = size;
    }
    Ok(out)
  }

  fn exec(&self, script: &str) -> Result<usize, SqlError> {
    if script.trim().is_empty() {
      return Err(SqlError::Invalid("No SQL query was provided".into()));
    }
    let call = self.call();
    let mut count = 0;
    let mut batch = rusqlite::Batch::new(&call.conn, script);
    loop {
      // Each statement is prepared as it is reached: the worker's.
      self.tenant.store(true, Ordering::Relaxed);
      let next = batch.next();
      self.tenant.store(false, Ordering::Relaxed);
      let Some(mut stmt) = next.map_err(sql_error)? else {
        break;
      };
      let mut rows = stmt.raw_query();
      while rows.next().map_err(sql_error)?.is_some() {}
      count += 1;
    }
    Ok(count)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn db(name: &str) -> (SqliteDb, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("edge-sql-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (SqliteDb::open(&dir.join("db.sqlite3")).unwrap(), dir)
  }

  fn st(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement {
      sql: sql.into(),
      params,
    }
  }

  #[test]
  fn statements_batches_and_values() {
    let (db, dir) = db("basic");
    assert_eq!(
      db.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, score REAL);\nCREATE INDEX tn ON t(name);"
      )
      .unwrap(),
      2
    );
    let r = db
      .batch(&[st(
        "INSERT INTO t (name, data, score) VALUES (?, ?, ?)",
        vec![
          SqlValue::Text("a".into()),
          SqlValue::Blob(vec![1, 2]),
          SqlValue::Real(1.5),
        ],
      )])
      .unwrap();
    assert_eq!((r[0].changes, r[0].last_row_id), (1, 1));
    assert!(r[0].size_after > 0);
    let r = db.batch(&[st("SELECT * FROM t", vec![])]).unwrap();
    assert_eq!(r[0].columns, ["id", "name", "data", "score"]);
    assert_eq!(
      r[0].rows,
      [vec![
        SqlValue::Integer(1),
        SqlValue::Text("a".into()),
        SqlValue::Blob(vec![1, 2]),
        SqlValue::Real(1.5)
      ]]
    );
    assert_eq!(r[0].changes, 0, "a read changes nothing");
    // A batch is one transaction: a failing statement undoes the others.
    let e = db
      .batch(&[
        st("INSERT INTO t (name) VALUES ('b')", vec![]),
        st("INSERT INTO t (id) VALUES (1)", vec![]),
      ])
      .unwrap_err();
    assert_eq!(
      e,
      SqlError::Sql("UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT".into())
    );
    let r = db.batch(&[st("SELECT count(*) AS n FROM t", vec![])]).unwrap();
    assert_eq!(r[0].rows, [vec![SqlValue::Integer(1)]]);
    assert_eq!(
      db.batch(&[st("SELECT ?", vec![])]).unwrap_err(),
      SqlError::Invalid("Wrong number of parameter bindings for SQL query.".into())
    );
    assert_eq!(
      db.batch(&[st("SELECT * FROM nope", vec![])]).unwrap_err(),
      SqlError::Sql("no such table: nope: SQLITE_ERROR".into())
    );
    std::fs::remove_dir_all(dir).unwrap();
  }

  #[test]
  fn tenant_sql_stays_in_its_file() {
    let (db, dir) = db("contain");
    let outside = dir.join("outside.sqlite3");
    for sql in [
      format!("ATTACH DATABASE '{}' AS x", outside.display()),
      format!("VACUUM INTO '{}'", outside.display()),
      "PRAGMA writable_schema = 1".into(),
      "PRAGMA max_page_count = 999999999".into(),
      "PRAGMA journal_mode = DELETE".into(),
      "PRAGMA page_size = 512".into(),
      "SELECT load_extension('/tmp/x')".into(),
      "BEGIN".into(),
      "COMMIT".into(),
      "SAVEPOINT s".into(),
    ] {
      assert!(db.batch(&[st(&sql, vec![])]).is_err(), "{sql} was allowed");
      assert!(db.exec(&sql).is_err(), "{sql} was allowed by exec");
    }
    assert!(!outside.exists());
    db.exec("CREATE TABLE t (a)").unwrap();
    let r = db.batch(&[st("PRAGMA table_info(t)", vec![])]).unwrap();
    assert_eq!(r[0].rows.len(), 1);
    db.batch(&[st("PRAGMA foreign_keys = OFF", vec![])]).unwrap();
    db.batch(&[st("PRAGMA page_count", vec![])]).unwrap();
    // No transaction was left open by the refused BEGIN: batches go on.
    db.batch(&[st("INSERT INTO t VALUES (1)", vec![])]).unwrap();
    db.exec("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)").unwrap();
    std::fs::remove_dir_all(dir).unwrap();
  }

  #[test]
  fn a_query_that_never_ends_is_interrupted() {
    let (mut db, dir) = db("forever");
    db.call_time = std::time::Duration::from_millis(300);
    let since = Instant::now();
    let e = db
      .batch(&[st(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c",
        vec![],
      )])
      .unwrap_err();
    assert_eq!(e, SqlError::Timeout);
    assert!(since.elapsed() < std::time::Duration::from_secs(10));
    // The connection serves the next call.
    db.batch(&[st("SELECT 1", vec![])]).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
  }

  #[test]
  fn big_values_and_results_are_refused() {
    let (db, dir) = db("caps");
    assert!(matches!(
      db.batch(&[st("SELECT ?", vec![SqlValue::Blob(vec![0; MAX_VALUE_BYTES + 1])])]),
      Err(SqlError::Invalid(_))
    ));
    // zeroblob past the length limit.
    let e = db.batch(&[st("SELECT zeroblob(3000000)", vec![])]).unwrap_err();
    assert!(
      matches!(e, SqlError::Sql(ref m) if m.contains("SQLITE_TOOBIG")),
      "{e:?}"
    );
    // 40 rows of 1 MB: over the result cap.
    let e = db
      .batch(&[st(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 40) SELECT zeroblob(1000000) FROM c",
        vec![],
      )])
      .unwrap_err();
    assert_eq!(e, SqlError::TooLarge);
    std::fs::remove_dir_all(dir).unwrap();
  }
}
