//! The embedded queue engine: one SQLite file per queue (WAL, like every
//! store here: a send that returned survives the process being killed).
//! A lease is an update of `visible_ms` in one immediate transaction, so
//! several processes of a node consuming one file never lease the same
//! message at once. A queue holds at most [`MAX_QUEUE_BYTES`].

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use crate::queues::{Backlog, Message, MessageQueue, NewMessage, QueueError, RETENTION_MS};

/// The largest a queue's file may grow: a send past it fails full.
pub const MAX_QUEUE_BYTES: u64 = 1 << 30;

pub struct SqliteQueue {
  conn: Mutex<Connection>,
  /// When messages past retention were last dropped (ms).
  swept_ms: AtomicI64,
}

/// How often messages past retention are looked for.
const SWEEP_MS: i64 = 60_000;

fn backend(e: rusqlite::Error) -> QueueError {
  if let rusqlite::Error::SqliteFailure(f, _) = &e {
    if f.code == rusqlite::ErrorCode::DiskFull {
      return QueueError::Full;
    }
  }
  QueueError::Backend(e.to_string())
}

impl SqliteQueue {
  pub fn open(path: &Path) -> Result<Self, QueueError> {
    Self::open_capped(path, MAX_QUEUE_BYTES)
  }

  /// A queue whose file grows to at most `max_bytes` (tests).
  pub fn open_capped(path: &Path, max_bytes: u64) -> Result<Self, QueueError> {
    let conn = crate::sqlite::open_file(path, max_bytes).map_err(backend)?;
    conn
      .execute_batch(
        "CREATE TABLE IF NOT EXISTS messages (
           seq INTEGER PRIMARY KEY AUTOINCREMENT,
           id TEXT NOT NULL UNIQUE,
           body BLOB NOT NULL,
           content_type TEXT NOT NULL,
           sent_ms INTEGER NOT NULL,
           visible_ms INTEGER NOT NULL,
           attempts INTEGER NOT NULL DEFAULT 0
         );
         CREATE INDEX IF NOT EXISTS messages_visible ON messages (visible_ms, seq);",
      )
      .map_err(backend)?;
    Ok(Self {
      conn: Mutex::new(conn),
      swept_ms: AtomicI64::new(i64::MIN / 2),
    })
  }

  fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
    // Each statement is atomic: a panic elsewhere left nothing half done.
    self.conn.lock().unwrap_or_else(|p| p.into_inner())
  }
}

impl MessageQueue for SqliteQueue {
  fn send(&self, messages: &[NewMessage], now_ms: i64) -> Result<(), QueueError> {
    let mut conn = self.conn();
    let tx = conn.transaction().map_err(backend)?;
    {
      let mut insert = tx
        .prepare_cached(
          "INSERT INTO messages (id, body, content_type, sent_ms, visible_ms)
           VALUES (lower(hex(randomblob(16))), ?1, ?2, ?3, ?4)",
        )
        .map_err(backend)?;
      for m in messages {
        let visible = now_ms + i64::from(m.delay_s) * 1000;
        insert
          .execute(params![m.body, m.content_type, now_ms, visible])
          .map_err(backend)?;
      }
    }
    tx.commit().map_err(backend)
  }

  fn backlog(&self, max: usize, now_ms: i64) -> Result<Backlog, QueueError> {
    let conn = self.conn();
    // Past retention: dropped, as Cloudflare drops them (a scan, so at
    // most once a sweep interval).
    if now_ms - self.swept_ms.load(Ordering::Relaxed) >= SWEEP_MS {
      self.swept_ms.store(now_ms, Ordering::Relaxed);
      conn
        .prepare_cached("DELETE FROM messages WHERE sent_ms < ?1")
        .and_then(|mut s| s.execute(params![now_ms - RETENTION_MS]))
        .map_err(backend)?;
    }
    let mut q = conn
      .prepare_cached(
        "SELECT count(*), min(visible_ms) FROM
           (SELECT visible_ms FROM messages WHERE visible_ms <= ?1 ORDER BY visible_ms, seq LIMIT ?2)",
      )
      .map_err(backend)?;
    let (ready, oldest): (i64, Option<i64>) = q
      .query_row(params![now_ms, max as i64], |r| Ok((r.get(0)?, r.get(1)?)))
      .map_err(backend)?;
    Ok(Backlog {
      ready: ready as usize,
      oldest_ms: oldest,
    })
  }

  fn lease(&self, max: usize, max_bytes: usize, now_ms: i64, lease_ms: i64) -> Result<Vec<Message>, QueueError> {
    let mut conn = self.conn();
    let tx = conn
      .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
      .map_err(backend)?;
    let mut leased = Vec::new();
    {
      let mut due = tx
        .prepare_cached(
          "SELECT seq, length(body) FROM messages WHERE visible_ms <= ?1 ORDER BY visible_ms, seq LIMIT ?2",
        )
        .map_err(backend)?;
      let rows = due
        .query_map(params![now_ms, max as i64], |r| {
          Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(backend)?;
      let mut seqs = Vec::new();
      let mut bytes = 0usize;
      for row in rows {
        let (seq, len) = row.map_err(backend)?;
        bytes = bytes.saturating_add(len.max(0) as usize);
        if !seqs.is_empty() && bytes > max_bytes {
          break;
        }
        seqs.push(seq);
      }
      let mut take = tx
        .prepare_cached(
          "UPDATE messages SET visible_ms = ?2, attempts = attempts + 1 WHERE seq = ?1
           RETURNING id, body, content_type, sent_ms, attempts",
        )
        .map_err(backend)?;
      for seq in seqs {
        let m = take
          .query_row(params![seq, now_ms + lease_ms], |r| {
            Ok(Message {
              id: r.get(0)?,
              body: r.get(1)?,
              content_type: r.get(2)?,
              sent_ms: r.get(3)?,
              attempts: r.get::<_, i64>(4)?.clamp(0, u32::MAX as i64) as u32,
            })
          })
          .map_err(backend)?;
        leased.push(m);
      }
    }
    tx.commit().map_err(backend)?;
    Ok(leased)
  }

  fn ack(&self, ids: &[String]) -> Result<(), QueueError> {
    let mut conn = self.conn();
    let tx = conn.transaction().map_err(backend)?;
    {
      let mut delete = tx
        .prepare_cached("DELETE FROM messages WHERE id = ?1")
        .map_err(backend)?;
      for id in ids {
        delete.execute(params![id]).map_err(backend)?;
      }
    }
    tx.commit().map_err(backend)
  }

  fn retry(&self, id: &str, visible_ms: i64) -> Result<(), QueueError> {
    self
      .conn()
      .prepare_cached("UPDATE messages SET visible_ms = ?2 WHERE id = ?1")
      .and_then(|mut s| s.execute(params![id, visible_ms]))
      .map(|_| ())
      .map_err(backend)
  }

  fn depth(&self) -> Result<u64, QueueError> {
    self
      .conn()
      .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
      .map(|n| n as u64)
      .map_err(backend)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn new(body: &str, delay_s: u32) -> NewMessage {
    NewMessage {
      body: body.as_bytes().to_vec(),
      content_type: "text".into(),
      delay_s,
    }
  }

  fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-queue-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("q.sqlite3")
  }

  #[test]
  fn lease_hides_ack_deletes_retry_shows_again_across_openers() {
    let path = temp("lease");
    let q = SqliteQueue::open(&path).unwrap();
    q.send(&[new("a", 0), new("b", 0), new("later", 10)], 1_000).unwrap();
    assert_eq!(
      q.backlog(10, 1_000).unwrap(),
      Backlog {
        ready: 2,
        oldest_ms: Some(1_000)
      }
    );
    let other = SqliteQueue::open(&path).unwrap();
    let batch = q.lease(10, usize::MAX, 1_000, 5_000).unwrap();
    let bodies: Vec<_> = batch.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [b"a".as_slice(), b"b"]);
    assert!(batch.iter().all(|m| m.attempts == 1 && m.id.len() == 32));
    assert!(
      other.lease(10, usize::MAX, 2_000, 5_000).unwrap().is_empty(),
      "leased already"
    );
    q.ack(&[batch[0].id.clone()]).unwrap();
    q.retry(&batch[1].id, 3_000).unwrap();
    let again = other.lease(10, usize::MAX, 3_000, 5_000).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].body.as_slice(), again[0].attempts), (b"b".as_slice(), 2));
    // The lease ran out (the consumer died): it shows again.
    let third = other.lease(10, usize::MAX, 8_000, 5_000).unwrap();
    assert_eq!(third[0].attempts, 3);
    let delayed = other.lease(10, usize::MAX, 11_000, 5_000).unwrap();
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].body, b"later");
    assert_eq!(q.depth().unwrap(), 2);
    drop((q, other));
    let reopened = SqliteQueue::open(&path).unwrap();
    assert_eq!(reopened.depth().unwrap(), 2, "kept across a restart");
    // Past retention: gone.
    assert_eq!(reopened.backlog(10, 1_000 + RETENTION_MS + 1).unwrap().ready, 0);
    assert_eq!(reopened.depth().unwrap(), 0);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
  }

  #[test]
  fn a_lease_holds_at_most_its_bytes_and_one_message_at_least() {
    let path = temp("bytes");
    let q = SqliteQueue::open(&path).unwrap();
    q.send(&[new("1234", 0), new("5678", 0), new("9", 0)], 0).unwrap();
    let small = q.lease(10, 3, 0, 5_000).unwrap();
    assert_eq!(small.len(), 1, "one message even past the bound");
    let fit = q.lease(10, 5, 0, 5_000).unwrap();
    assert_eq!(
      fit.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>(),
      [b"5678".as_slice(), b"9"]
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
  }

  #[test]
  fn a_full_queue_refuses_the_whole_send() {
    let path = temp("full");
    let q = SqliteQueue::open_capped(&path, 256 << 10).unwrap();
    let big = NewMessage {
      body: vec![7; 100_000],
      content_type: "bytes".into(),
      delay_s: 0,
    };
    let mut sent = 0;
    let err = loop {
      match q.send(&[big.clone(), big.clone()], 0) {
        Ok(()) => sent += 2,
        Err(e) => break e,
      }
      assert!(sent < 100, "never full");
    };
    assert_eq!(err, QueueError::Full);
    assert_eq!(q.depth().unwrap(), sent, "nothing of the refused batch kept");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
  }
}
