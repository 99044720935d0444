//! The embedded engine: one SQLite file per KV namespace, in WAL mode. A
//! write returns once its transaction is in the log, so an acknowledged
//! put survives the process being killed (`synchronous = NORMAL`: on a
//! power loss the last transactions may be lost, never torn). Several
//! processes of one node may open the same file (the busy timeout
//! serializes their writers). A namespace holds at most
//! [`MAX_NAMESPACE_BYTES`].

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::kv::{encode_cursor, prefix_end, KvEntry, KvError, KvKey, KvListing, KvStore, ListQuery};

/// One namespace in one file.
pub struct SqliteKv {
  conn: Mutex<Connection>,
  /// Puts since expired entries were last swept.
  puts: AtomicU32,
}

/// The largest a namespace's file may grow (a tenant cannot fill the
/// node's disk): a put past it fails.
pub const MAX_NAMESPACE_BYTES: u64 = 4 << 30;

/// Puts between two sweeps of expired entries (reads skip them anyway).
const SWEEP_EVERY: u32 = 512;

fn backend(e: rusqlite::Error) -> KvError {
  KvError::Backend(e.to_string())
}

/// Opens a store's file the way every engine here does: WAL (a commit is
/// in the log before it returns; `synchronous = NORMAL` keeps it across a
/// killed process), a busy timeout so that several processes' writers take
/// turns, and at most `max_bytes` of file (a write past it fails full).
pub(crate) fn open_file(path: &Path, max_bytes: u64) -> rusqlite::Result<Connection> {
  let conn = Connection::open(path)?;
  conn.busy_timeout(Duration::from_secs(10))?;
  let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
  conn.execute_batch(&format!(
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA max_page_count = {};",
    max_bytes / page_size.max(512)
  ))?;
  Ok(conn)
}

impl SqliteKv {
  pub fn open(path: &Path) -> Result<Self, KvError> {
    let conn = open_file(path, MAX_NAMESPACE_BYTES).map_err(backend)?;
    conn
      .execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (
           key BLOB PRIMARY KEY NOT NULL,
           value BLOB NOT NULL,
           metadata TEXT,
           expiration INTEGER
         ) WITHOUT ROWID;",
      )
      .map_err(backend)?;
    Ok(Self {
      conn: Mutex::new(conn),
      puts: AtomicU32::new(0),
    })
  }

  fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
    // A panic while the lock was held left the connection as SQLite left
    // it (each statement is atomic): go on with it.
    self.conn.lock().unwrap_or_else(|p| p.into_inner())
  }
}

fn as_i64(n: u64) -> i64 {
  n.min(i64::MAX as u64) as i64
}

fn from_i64(n: Option<i64>) -> Option<u64> {
  n.map(|n| n.max(0) as u64)
}

impl KvStore for SqliteKv {
  fn get(&self, key: &str, now: u64) -> Result<Option<KvEntry>, KvError> {
    self
      .conn()
      .prepare_cached(
        "SELECT value, metadata, expiration FROM kv
         WHERE key = ?1 AND (expiration IS NULL OR expiration > ?2)",
      )
      .map_err(backend)?
      .query_row(params![key.as_bytes(), as_i64(now)], |r| {
        Ok(KvEntry {
          value: r.get(0)?,
          metadata: r.get(1)?,
          expiration: from_i64(r.get(2)?),
        })
      })
      .optional()
      .map_err(backend)
  }

  fn put(&self, key: &str, entry: &KvEntry, now: u64) -> Result<(), KvError> {
    let conn = self.conn();
    conn
      .prepare_cached("INSERT OR REPLACE INTO kv (key, value, metadata, expiration) VALUES (?1, ?2, ?3, ?4)")
      .map_err(backend)?
      .execute(params![
        key.as_bytes(),
        entry.value,
        entry.metadata,
        entry.expiration.map(as_i64)
      ])
      .map_err(backend)?;
    if self.puts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
      conn
        .execute("DELETE FROM kv WHERE expiration <= ?1", params![as_i64(now)])
        .map_err(backend)?;
    }
    Ok(())
  }

  fn delete(&self, key: &str) -> Result<(), KvError> {
    self
      .conn()
      .prepare_cached("DELETE FROM kv WHERE key = ?1")
      .map_err(backend)?
      .execute(params![key.as_bytes()])
      .map_err(backend)?;
    Ok(())
  }

  fn list(&self, q: &ListQuery, now: u64) -> Result<KvListing, KvError> {
    let start = match &q.after {
      Some(a) if a.as_str() >= q.prefix.as_str() => a.clone(),
      _ => String::new(),
    };
    let end = prefix_end(q.prefix.as_bytes());
    let conn = self.conn();
    let mut stmt = conn
      .prepare_cached(
        "SELECT key, expiration, metadata FROM kv
         WHERE key >= ?1 AND key > ?2 AND (?3 IS NULL OR key < ?3)
           AND (expiration IS NULL OR expiration > ?4)
         ORDER BY key LIMIT ?5",
      )
      .map_err(backend)?;
    // One more than asked for tells whether more follow.
    let rows = stmt
      .query_map(
        params![q.prefix.as_bytes(), start.as_bytes(), end, as_i64(now), q.limit + 1],
        |r| {
          let key: Vec<u8> = r.get(0)?;
          Ok(KvKey {
            name: String::from_utf8_lossy(&key).into_owned(),
            expiration: from_i64(r.get(1)?),
            metadata: r.get(2)?,
          })
        },
      )
      .map_err(backend)?;
    let mut keys = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
    let cursor = if keys.len() > q.limit as usize {
      keys.truncate(q.limit as usize);
      keys.last().map(|k| encode_cursor(&k.name))
    } else {
      None
    };
    Ok(KvListing { keys, cursor })
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::kv::check_list;

  pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
  }

  fn entry(v: &str) -> KvEntry {
    KvEntry {
      value: v.as_bytes().to_vec(),
      metadata: None,
      expiration: None,
    }
  }

  #[test]
  fn put_get_delete_and_reopen() {
    let dir = scratch("basic");
    let path = dir.join("ns.sqlite3");
    let kv = SqliteKv::open(&path).unwrap();
    assert_eq!(kv.get("a", 0).unwrap(), None);
    let e = KvEntry {
      value: vec![0, 1, 255],
      metadata: Some("{\"n\":1}".into()),
      expiration: Some(100),
    };
    kv.put("a", &e, 0).unwrap();
    assert_eq!(kv.get("a", 99).unwrap(), Some(e.clone()));
    assert_eq!(kv.get("a", 100).unwrap(), None, "expired at its second");
    kv.put("b", &entry("x"), 0).unwrap();
    drop(kv);
    let kv = SqliteKv::open(&path).unwrap();
    assert_eq!(kv.get("b", 0).unwrap(), Some(entry("x")));
    kv.delete("b").unwrap();
    kv.delete("never").unwrap();
    assert_eq!(kv.get("b", 0).unwrap(), None);
    std::fs::remove_dir_all(dir).unwrap();
  }

  #[test]
  fn lists_by_prefix_in_pages() {
    let dir = scratch("list");
    let kv = SqliteKv::open(&dir.join("ns.sqlite3")).unwrap();
    for k in ["a", "b/1", "b/2", "b/3", "b\u{ff}", "b0", "c", "b/gone"] {
      kv.put(k, &entry(k), 0).unwrap();
    }
    kv.put(
      "b/gone",
      &KvEntry {
        expiration: Some(5),
        ..entry("")
      },
      0,
    )
    .unwrap();
    let names = |l: &KvListing| l.keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
    let q = check_list(Some("b/".into()), Some(2.0), None).unwrap();
    let page = kv.list(&q, 10).unwrap();
    assert_eq!(names(&page), ["b/1", "b/2"]);
    let q = check_list(Some("b/".into()), Some(2.0), page.cursor.as_deref()).unwrap();
    let page = kv.list(&q, 10).unwrap();
    assert_eq!(names(&page), ["b/3"], "the expired key is not listed");
    assert_eq!(page.cursor, None);
    let all = kv.list(&check_list(None, None, None).unwrap(), 10).unwrap();
    assert_eq!(names(&all), ["a", "b/1", "b/2", "b/3", "b0", "b\u{ff}", "c"]);
    let b = kv.list(&check_list(Some("b".into()), None, None).unwrap(), 10).unwrap();
    assert_eq!(b.keys.len(), 5);
    std::fs::remove_dir_all(dir).unwrap();
  }
}
