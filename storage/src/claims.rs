//! Claims: the first process to claim a (key, instant) pair gets it, every
//! later claim of the same pair is refused, across the processes of a node
//! and across restarts (a row in a SQLite file). Cron triggers claim each
//! run so that one process of a node fires it, once.

use std::path::Path;

use rusqlite::{params, Connection};

/// Claims older than this (ms before the newest) are forgotten.
const KEEP_MS: i64 = 24 * 3600 * 1000;
/// The file stays small (a day of claims); this bounds it anyway.
const MAX_BYTES: u64 = 64 << 20;

pub struct Claims {
  conn: Connection,
  claimed: u32,
}

impl Claims {
  pub fn open(path: &Path) -> Result<Self, String> {
    if let Some(dir) = path.parent() {
      std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let conn = crate::sqlite::open_file(path, MAX_BYTES).map_err(|e| format!("{}: {e}", path.display()))?;
    conn
      .execute_batch(
        "CREATE TABLE IF NOT EXISTS claims (key TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (key, at)) WITHOUT ROWID;",
      )
      .map_err(|e| e.to_string())?;
    Ok(Self { conn, claimed: 0 })
  }

  /// Whether this call is the first to claim `key` at `at`.
  pub fn claim(&mut self, key: &str, at: i64) -> Result<bool, String> {
    let n = self
      .conn
      .prepare_cached("INSERT OR IGNORE INTO claims (key, at) VALUES (?1, ?2)")
      .and_then(|mut s| s.execute(params![key, at]))
      .map_err(|e| e.to_string())?;
    self.claimed = self.claimed.wrapping_add(1);
    if self.claimed.is_multiple_of(1024) {
      let _ = self
        .conn
        .execute("DELETE FROM claims WHERE at < ?1", params![at - KEEP_MS]);
    }
    Ok(n == 1)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_claim_is_granted_once_across_openers() {
    let dir = std::env::temp_dir().join(format!("edge-claims-{}", std::process::id()));
    let path = dir.join("c.sqlite3");
    let mut a = Claims::open(&path).unwrap();
    let mut b = Claims::open(&path).unwrap();
    assert!(a.claim("w\n* * * * *", 60_000).unwrap());
    assert!(!b.claim("w\n* * * * *", 60_000).unwrap());
    assert!(b.claim("w\n* * * * *", 120_000).unwrap());
    drop((a, b));
    let mut again = Claims::open(&path).unwrap();
    assert!(!again.claim("w\n* * * * *", 120_000).unwrap(), "kept across a restart");
    let _ = std::fs::remove_dir_all(&dir);
  }
}
