//! The embedded object engine: one SQLite file per bucket (WAL, as KV).
//! Bodies are rows of pieces keyed by a version made per write; a put
//! stages its pieces (each its own small transaction, so a slow client
//! holds no lock), then one transaction swaps the object's row to the new
//! version and drops the old pieces: a reader sees one version whole, an
//! acknowledged put survives the process being killed, and a put cut off
//! leaves only staged pieces, swept at the next open. Multipart parts are
//! staged the same way and joined in one transaction.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::kv::prefix_end;
use crate::objects::{
  check_key, multipart_etag, now_ms, Conditions, ObjectError, ObjectListing, ObjectMeta, ObjectQuery, ObjectStore,
  PutMeta, Staged, MAX_LIST, MAX_PARTS, MAX_PUT_BYTES, MIN_PART_BYTES,
};

/// The largest a bucket's file may grow: a write past it fails.
pub const MAX_BUCKET_BYTES: u64 = 8 << 30;
/// The largest piece row (bigger pieces are split).
const PIECE_ROW: usize = 1 << 20;
/// Staged bodies older than this at open were cut off (no request lasts
/// this long).
const STALE_STAGED_MS: u64 = 3600 * 1000;
/// Multipart uploads not completed in this long are dropped (R2's default).
const STALE_UPLOAD_MS: u64 = 7 * 24 * 3600 * 1000;

pub struct SqliteObjects {
  conn: Mutex<Connection>,
}

fn backend(e: rusqlite::Error) -> ObjectError {
  match e.sqlite_error_code() {
    Some(rusqlite::ErrorCode::DiskFull) => {
      ObjectError::Full(format!("the bucket holds at most {MAX_BUCKET_BYTES} bytes"))
    }
    _ => ObjectError::Backend(e.to_string()),
  }
}

/// A version or upload id no other write of any process makes.
fn fresh_id() -> String {
  static NEXT: AtomicU64 = AtomicU64::new(0);
  let nanos = SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_nanos() as u64)
    .unwrap_or(0);
  format!(
    "{nanos:016x}{:08x}{:08x}",
    std::process::id(),
    NEXT.fetch_add(1, Ordering::Relaxed) as u32
  )
}

fn as_i64(n: u64) -> i64 {
  n.min(i64::MAX as u64) as i64
}

const COLUMNS: &str = "key, version, size, etag, uploaded, http, custom, checksums";

fn meta_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectMeta> {
  let key: Vec<u8> = r.get(0)?;
  Ok(ObjectMeta {
    key: String::from_utf8_lossy(&key).into_owned(),
    version: r.get(1)?,
    size: r.get::<_, i64>(2)?.max(0) as u64,
    etag: r.get(3)?,
    uploaded: r.get::<_, i64>(4)?.max(0) as u64,
    http_metadata: r.get(5)?,
    custom_metadata: r.get(6)?,
    checksums: r.get(7)?,
  })
}

fn current(tx: &Connection, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
  tx.prepare_cached(&format!("SELECT {COLUMNS} FROM objects WHERE key = ?1"))
    .map_err(backend)?
    .query_row(params![key.as_bytes()], meta_of)
    .optional()
    .map_err(backend)
}

fn drop_pieces(tx: &Connection, version: &str) -> Result<(), ObjectError> {
  tx.prepare_cached("DELETE FROM chunks WHERE version = ?1")
    .map_err(backend)?
    .execute(params![version])
    .map_err(backend)?;
  Ok(())
}

fn write_object(tx: &Transaction<'_>, o: &ObjectMeta) -> Result<(), ObjectError> {
  tx.prepare_cached(&format!(
    "INSERT OR REPLACE INTO objects ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
  ))
  .map_err(backend)?
  .execute(params![
    o.key.as_bytes(),
    o.version,
    as_i64(o.size),
    o.etag,
    as_i64(o.uploaded),
    o.http_metadata,
    o.custom_metadata,
    o.checksums
  ])
  .map_err(backend)?;
  Ok(())
}

impl SqliteObjects {
  pub fn open(path: &Path) -> Result<Self, ObjectError> {
    let conn = crate::sqlite::open_file(path, MAX_BUCKET_BYTES).map_err(backend)?;
    conn
      .execute_batch(
        "CREATE TABLE IF NOT EXISTS objects (
           key BLOB PRIMARY KEY NOT NULL, version TEXT NOT NULL, size INTEGER NOT NULL,
           etag TEXT NOT NULL, uploaded INTEGER NOT NULL, http TEXT NOT NULL,
           custom TEXT NOT NULL, checksums TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS objects_version ON objects (version);
         CREATE TABLE IF NOT EXISTS chunks (version TEXT NOT NULL, start INTEGER NOT NULL, data BLOB NOT NULL);
         CREATE UNIQUE INDEX IF NOT EXISTS chunks_at ON chunks (version, start);
         CREATE TABLE IF NOT EXISTS staging (version TEXT PRIMARY KEY NOT NULL, created INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS uploads (
           id TEXT PRIMARY KEY NOT NULL, key BLOB NOT NULL, http TEXT NOT NULL,
           custom TEXT NOT NULL, created INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS parts (
           upload TEXT NOT NULL, number INTEGER NOT NULL, version TEXT NOT NULL,
           size INTEGER NOT NULL, etag TEXT NOT NULL, PRIMARY KEY (upload, number)
         );",
      )
      .map_err(backend)?;
    let store = Self { conn: Mutex::new(conn) };
    store.sweep(now_ms())?;
    Ok(store)
  }

  fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
    self.conn.lock().unwrap_or_else(|p| p.into_inner())
  }

  /// Drops bodies staged by puts that were cut off (a process killed) and
  /// multipart uploads left incomplete for a week.
  fn sweep(&self, now: u64) -> Result<(), ObjectError> {
    let mut conn = self.conn();
    let tx = conn.transaction().map_err(backend)?;
    let stale = as_i64(now.saturating_sub(STALE_STAGED_MS));
    tx.execute(
      "DELETE FROM chunks WHERE version IN (SELECT version FROM staging WHERE created < ?1)",
      params![stale],
    )
    .map_err(backend)?;
    tx.execute("DELETE FROM staging WHERE created < ?1", params![stale])
      .map_err(backend)?;
    let old = as_i64(now.saturating_sub(STALE_UPLOAD_MS));
    tx.execute(
      "DELETE FROM chunks WHERE version IN
         (SELECT p.version FROM parts p JOIN uploads u ON p.upload = u.id WHERE u.created < ?1)",
      params![old],
    )
    .map_err(backend)?;
    tx.execute(
      "DELETE FROM parts WHERE upload IN (SELECT id FROM uploads WHERE created < ?1)",
      params![old],
    )
    .map_err(backend)?;
    tx.execute("DELETE FROM uploads WHERE created < ?1", params![old])
      .map_err(backend)?;
    tx.commit().map_err(backend)
  }

  fn upload_key(tx: &Connection, upload: &str) -> Result<Vec<u8>, ObjectError> {
    tx.query_row("SELECT key FROM uploads WHERE id = ?1", params![upload], |r| r.get(0))
      .optional()
      .map_err(backend)?
      .ok_or(ObjectError::NoSuchUpload)
  }

  fn unstage(tx: &Connection, version: &str) -> Result<(), ObjectError> {
    tx.prepare_cached("DELETE FROM staging WHERE version = ?1")
      .map_err(backend)?
      .execute(params![version])
      .map_err(backend)?;
    Ok(())
  }
}

impl ObjectStore for SqliteObjects {
  fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
    current(&self.conn(), key)
  }

  fn read(&self, version: &str, offset: u64, max: usize) -> Result<Vec<u8>, ObjectError> {
    let conn = self.conn();
    let size: Option<i64> = conn
      .prepare_cached("SELECT size FROM objects WHERE version = ?1")
      .map_err(backend)?
      .query_row(params![version], |r| r.get(0))
      .optional()
      .map_err(backend)?;
    let Some(size) = size.map(|s| s.max(0) as u64) else {
      return Err(ObjectError::Invalid(
        "the object was replaced or deleted while it was being read".into(),
      ));
    };
    let end = size.min(offset.saturating_add(max as u64));
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut stmt = conn
      .prepare_cached(
        "SELECT start, data FROM chunks WHERE version = ?1 AND start <= ?2
         ORDER BY start DESC LIMIT 1",
      )
      .map_err(backend)?;
    let mut at = offset;
    while at < end {
      let row: Option<(i64, Vec<u8>)> = stmt
        .query_row(params![version, as_i64(at)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
      let Some((start, data)) = row else { break };
      let from = (at - start.max(0) as u64) as usize;
      if from >= data.len() {
        break;
      }
      let take = (data.len() - from).min((end - at) as usize);
      out.extend_from_slice(&data[from..from + take]);
      at += take as u64;
    }
    Ok(out)
  }

  fn stage(&self) -> Result<Staged, ObjectError> {
    let id = fresh_id();
    self
      .conn()
      .prepare_cached("INSERT INTO staging (version, created) VALUES (?1, ?2)")
      .map_err(backend)?
      .execute(params![id, as_i64(now_ms())])
      .map_err(backend)?;
    Ok(Staged::new(id))
  }

  fn append(&self, staged: &mut Staged, piece: &[u8]) -> Result<(), ObjectError> {
    if staged.size + piece.len() as u64 > MAX_PUT_BYTES {
      return Err(ObjectError::Invalid(format!(
        "Your proposed upload exceeds the maximum allowed object size of {MAX_PUT_BYTES} bytes. (100100)"
      )));
    }
    let conn = self.conn();
    let mut stmt = conn
      .prepare_cached("INSERT INTO chunks (version, start, data) VALUES (?1, ?2, ?3)")
      .map_err(backend)?;
    for row in piece.chunks(PIECE_ROW) {
      stmt
        .execute(params![staged.id, as_i64(staged.size), row])
        .map_err(backend)?;
      staged.note(row);
    }
    Ok(())
  }

  fn commit(
    &self,
    staged: Staged,
    key: &str,
    meta: &PutMeta,
    only_if: &Conditions,
    now_ms: u64,
  ) -> Result<Option<ObjectMeta>, ObjectError> {
    check_key(key)?;
    let etag = staged.md5_hex();
    let mut conn = self.conn();
    let tx = conn
      .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
      .map_err(backend)?;
    let now = current(&tx, key)?;
    let refused = if !only_if.hold(now.as_ref()) {
      Some(None)
    } else if meta.md5.as_ref().is_some_and(|m| !m.eq_ignore_ascii_case(&etag)) {
      Some(Some(ObjectError::Invalid(
        "The Content-MD5 you specified did not match what we received. (10037)".into(),
      )))
    } else {
      None
    };
    if let Some(error) = refused {
      drop_pieces(&tx, &staged.id)?;
      Self::unstage(&tx, &staged.id)?;
      tx.commit().map_err(backend)?;
      return match error {
        Some(e) => Err(e),
        None => Ok(None),
      };
    }
    if let Some(old) = &now {
      drop_pieces(&tx, &old.version)?;
    }
    let object = ObjectMeta {
      key: key.to_string(),
      version: staged.id.clone(),
      size: staged.size,
      etag,
      uploaded: now_ms,
      http_metadata: meta.http_metadata.clone(),
      custom_metadata: meta.custom_metadata.clone(),
      checksums: meta.checksums.clone(),
    };
    write_object(&tx, &object)?;
    Self::unstage(&tx, &staged.id)?;
    tx.commit().map_err(backend)?;
    Ok(Some(object))
  }

  fn discard(&self, staged: Staged) {
    let conn = self.conn();
    let _ = drop_pieces(&conn, &staged.id);
    let _ = Self::unstage(&conn, &staged.id);
  }

  fn delete(&self, keys: &[String]) -> Result<(), ObjectError> {
    let mut conn = self.conn();
    let tx = conn.transaction().map_err(backend)?;
    for key in keys {
      if let Some(old) = current(&tx, key)? {
        drop_pieces(&tx, &old.version)?;
        tx.execute("DELETE FROM objects WHERE key = ?1", params![key.as_bytes()])
          .map_err(backend)?;
      }
    }
    tx.commit().map_err(backend)
  }

  fn list(&self, q: &ObjectQuery) -> Result<ObjectListing, ObjectError> {
    let limit = q.limit.clamp(1, MAX_LIST);
    let prefix = q.prefix.as_bytes();
    let end = prefix_end(prefix);
    // The least key still to look at (inclusive).
    let mut from: Vec<u8> = match &q.from {
      Some(f) if f.as_slice() >= prefix => f.clone(),
      _ => prefix.to_vec(),
    };
    let conn = self.conn();
    let mut stmt = conn
      .prepare_cached(&format!(
        "SELECT {COLUMNS} FROM objects WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) ORDER BY key LIMIT 256"
      ))
      .map_err(backend)?;
    let mut out = ObjectListing::default();
    let mut count = 0;
    'pages: loop {
      let rows: Vec<ObjectMeta> = stmt
        .query_map(params![from, end], meta_of)
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
      if rows.is_empty() {
        break;
      }
      for o in rows {
        let bytes = o.key.as_bytes();
        if bytes < from.as_slice() {
          // (Lossy keys: cannot happen for keys written as UTF-8.)
          continue;
        }
        let rolled = q.delimiter.as_deref().filter(|d| !d.is_empty()).and_then(|d| {
          let rest = &o.key[q.prefix.len().min(o.key.len())..];
          rest.find(d).map(|i| format!("{}{}", q.prefix, &rest[..i + d.len()]))
        });
        if count == limit {
          out.truncated = true;
          out.cursor = Some(from);
          break 'pages;
        }
        count += 1;
        match rolled {
          Some(p) => {
            // Every key under this prefix is rolled into it: skip them.
            match prefix_end(p.as_bytes()) {
              Some(next) => from = next,
              None => break 'pages,
            }
            out.delimited_prefixes.push(p);
            continue 'pages;
          }
          None => {
            from = bytes.to_vec();
            from.push(0);
            out.objects.push(o);
          }
        }
      }
    }
    Ok(out)
  }

  fn create_multipart(&self, key: &str, meta: &PutMeta, now_ms: u64) -> Result<String, ObjectError> {
    check_key(key)?;
    let id = fresh_id();
    self
      .conn()
      .execute(
        "INSERT INTO uploads (id, key, http, custom, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
          id,
          key.as_bytes(),
          meta.http_metadata,
          meta.custom_metadata,
          as_i64(now_ms)
        ],
      )
      .map_err(backend)?;
    Ok(id)
  }

  fn commit_part(&self, upload: &str, key: &str, number: u32, staged: Staged) -> Result<String, ObjectError> {
    if number == 0 || number > MAX_PARTS {
      self.discard(staged);
      return Err(ObjectError::Invalid(format!(
        "Part number must be between 1 and {MAX_PARTS} (inclusive). (10039)"
      )));
    }
    let etag = staged.md5_hex();
    let mut conn = self.conn();
    let tx = conn
      .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
      .map_err(backend)?;
    if Self::upload_key(&tx, upload).ok().as_deref() != Some(key.as_bytes()) {
      drop_pieces(&tx, &staged.id)?;
      Self::unstage(&tx, &staged.id)?;
      tx.commit().map_err(backend)?;
      return Err(ObjectError::NoSuchUpload);
    }
    let old: Option<String> = tx
      .query_row(
        "SELECT version FROM parts WHERE upload = ?1 AND number = ?2",
        params![upload, number],
        |r| r.get(0),
      )
      .optional()
      .map_err(backend)?;
    if let Some(old) = old {
      drop_pieces(&tx, &old)?;
    }
    tx.execute(
      "INSERT OR REPLACE INTO parts (upload, number, version, size, etag) VALUES (?1, ?2, ?3, ?4, ?5)",
      params![upload, number, staged.id, as_i64(staged.size), etag],
    )
    .map_err(backend)?;
    Self::unstage(&tx, &staged.id)?;
    tx.commit().map_err(backend)?;
    Ok(etag)
  }

  fn complete_multipart(
    &self,
    upload: &str,
    key: &str,
    parts: &[(u32, String)],
    now_ms: u64,
  ) -> Result<ObjectMeta, ObjectError> {
    let mut conn = self.conn();
    let tx = conn
      .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
      .map_err(backend)?;
    if Self::upload_key(&tx, upload)? != key.as_bytes() {
      return Err(ObjectError::NoSuchUpload);
    }
    let (http, custom): (String, String) = tx
      .query_row("SELECT http, custom FROM uploads WHERE id = ?1", params![upload], |r| {
        Ok((r.get(0)?, r.get(1)?))
      })
      .map_err(backend)?;
    if parts.is_empty() {
      return Err(ObjectError::Invalid(
        "You must specify at least one part to complete a multipart upload. (10011)".into(),
      ));
    }
    let missing = || ObjectError::Invalid("One or more of the specified parts could not be found. (10025)".into());
    let mut found = Vec::with_capacity(parts.len());
    let mut last_number = 0;
    for (number, etag) in parts {
      if *number <= last_number {
        return Err(ObjectError::Invalid(
          "The list of parts was not in ascending order. (10048)".into(),
        ));
      }
      last_number = *number;
      let row: Option<(String, i64, String)> = tx
        .query_row(
          "SELECT version, size, etag FROM parts WHERE upload = ?1 AND number = ?2",
          params![upload, number],
          |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
      let Some((version, size, stored)) = row else {
        return Err(missing());
      };
      if stored != etag.trim_matches('"') {
        return Err(missing());
      }
      found.push((version, size.max(0) as u64, stored));
    }
    if found[..found.len() - 1]
      .iter()
      .any(|(_, size, _)| *size < MIN_PART_BYTES)
    {
      return Err(ObjectError::Invalid(
        "Your proposed upload is smaller than the minimum allowed object size. (10011)".into(),
      ));
    }
    let version = fresh_id();
    let mut offset = 0u64;
    for (part, size, _) in &found {
      tx.execute(
        "UPDATE chunks SET version = ?1, start = start + ?2 WHERE version = ?3",
        params![version, as_i64(offset), part],
      )
      .map_err(backend)?;
      offset += size;
    }
    // Parts not named are dropped with the upload.
    let unused: Vec<String> = tx
      .prepare("SELECT version FROM parts WHERE upload = ?1")
      .map_err(backend)?
      .query_map(params![upload], |r| r.get(0))
      .map_err(backend)?
      .collect::<Result<_, _>>()
      .map_err(backend)?;
    for v in unused {
      drop_pieces(&tx, &v)?;
    }
    tx.execute("DELETE FROM parts WHERE upload = ?1", params![upload])
      .map_err(backend)?;
    tx.execute("DELETE FROM uploads WHERE id = ?1", params![upload])
      .map_err(backend)?;
    if let Some(old) = current(&tx, key)? {
      drop_pieces(&tx, &old.version)?;
    }
    let etags: Vec<&str> = found.iter().map(|(_, _, e)| e.as_str()).collect();
    let object = ObjectMeta {
      key: key.to_string(),
      version,
      size: offset,
      etag: multipart_etag(&etags),
      uploaded: now_ms,
      http_metadata: http,
      custom_metadata: custom,
      checksums: String::new(),
    };
    write_object(&tx, &object)?;
    tx.commit().map_err(backend)?;
    Ok(object)
  }

  fn abort_multipart(&self, upload: &str, key: &str) -> Result<(), ObjectError> {
    let mut conn = self.conn();
    let tx = conn.transaction().map_err(backend)?;
    match Self::upload_key(&tx, upload) {
      Ok(k) if k == key.as_bytes() => {}
      Ok(_) | Err(ObjectError::NoSuchUpload) => return Err(ObjectError::NoSuchUpload),
      Err(e) => return Err(e),
    }
    tx.execute(
      "DELETE FROM chunks WHERE version IN (SELECT version FROM parts WHERE upload = ?1)",
      params![upload],
    )
    .map_err(backend)?;
    tx.execute("DELETE FROM parts WHERE upload = ?1", params![upload])
      .map_err(backend)?;
    tx.execute("DELETE FROM uploads WHERE id = ?1", params![upload])
      .map_err(backend)?;
    tx.commit().map_err(backend)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn store() -> (tempdir::Dir, SqliteObjects) {
    let d = tempdir::Dir::new();
    let s = SqliteObjects::open(&d.0.join("b.sqlite3")).unwrap();
    (d, s)
  }

  mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
      pub fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
          "edge-objects-{}-{}",
          std::process::id(),
          N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
      }
    }
    impl Drop for Dir {
      fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
      }
    }
  }

  fn put(s: &SqliteObjects, key: &str, pieces: &[&[u8]]) -> ObjectMeta {
    let mut st = s.stage().unwrap();
    for p in pieces {
      s.append(&mut st, p).unwrap();
    }
    s.commit(st, key, &PutMeta::default(), &Conditions::default(), 1000)
      .unwrap()
      .unwrap()
  }

  #[test]
  fn puts_read_back_in_ranges_and_replace_whole() {
    let (_d, s) = store();
    let o = put(&s, "a/b", &[b"hello ", b"wor", b"ld"]);
    assert_eq!((o.size, o.etag.as_str()), (11, "5eb63bbbe01eeed093cb22bb8f5acdc3"));
    assert_eq!(s.read(&o.version, 0, 100).unwrap(), b"hello world");
    assert_eq!(s.read(&o.version, 4, 4).unwrap(), b"o wo");
    assert_eq!(s.read(&o.version, 11, 4).unwrap(), b"");
    let again = put(&s, "a/b", &[b"new"]);
    assert!(s.read(&o.version, 0, 1).is_err(), "the old version is gone");
    assert_eq!(s.read(&again.version, 0, 100).unwrap(), b"new");
    let left: i64 = s
      .conn()
      .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
      .unwrap();
    assert_eq!(left, 1, "the old pieces are dropped");
    s.delete(&["a/b".into(), "none".into()]).unwrap();
    assert_eq!(s.head("a/b").unwrap(), None);
  }

  #[test]
  fn conditional_puts_and_md5_checks_drop_the_staged_body() {
    let (_d, s) = store();
    let o = put(&s, "k", &[b"v1"]);
    let st = s.stage().unwrap();
    let only_if = Conditions {
      etag_matches: Some(vec!["nope".into()]),
      ..Default::default()
    };
    assert_eq!(s.commit(st, "k", &PutMeta::default(), &only_if, 2000).unwrap(), None);
    let mut st = s.stage().unwrap();
    s.append(&mut st, b"x").unwrap();
    let bad = PutMeta {
      md5: Some("00".into()),
      ..Default::default()
    };
    assert!(s.commit(st, "k", &bad, &Conditions::default(), 2000).is_err());
    assert_eq!(s.head("k").unwrap().unwrap().version, o.version);
    let counts: (i64, i64) = s
      .conn()
      .query_row(
        "SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM staging)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
      )
      .unwrap();
    assert_eq!(counts, (1, 0));
  }

  #[test]
  fn lists_page_and_roll_up_at_the_delimiter() {
    let (_d, s) = store();
    for k in ["a", "b/1", "b/2", "b/3", "c", "d/x/1", "e"] {
      put(&s, k, &[b"."]);
    }
    let q = |from: Option<Vec<u8>>, delimiter: Option<&str>, limit| ObjectQuery {
      prefix: String::new(),
      from,
      delimiter: delimiter.map(str::to_string),
      limit,
    };
    let page = s.list(&q(None, Some("/"), 3)).unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
      (keys, page.delimited_prefixes.clone(), page.truncated),
      (vec!["a", "c"], vec!["b/".to_string()], true)
    );
    let page = s.list(&q(page.cursor, Some("/"), 3)).unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
      (keys, page.delimited_prefixes, page.truncated),
      (vec!["e"], vec!["d/".to_string()], false)
    );
    let all = s.list(&q(None, None, 1000)).unwrap();
    assert_eq!(all.objects.len(), 7);
    let under = s
      .list(&ObjectQuery {
        prefix: "b/".into(),
        limit: 2,
        ..Default::default()
      })
      .unwrap();
    assert_eq!(under.objects.len(), 2);
    assert!(under.truncated);
    let rest = s
      .list(&ObjectQuery {
        prefix: "b/".into(),
        from: under.cursor,
        limit: 2,
        ..Default::default()
      })
      .unwrap();
    assert_eq!(rest.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["b/3"]);
  }

  #[test]
  fn multipart_uploads_join_their_parts() {
    let (_d, s) = store();
    let id = s.create_multipart("big", &PutMeta::default(), 1).unwrap();
    let big = vec![7u8; MIN_PART_BYTES as usize];
    let mut p1 = s.stage().unwrap();
    s.append(&mut p1, &big).unwrap();
    let e1 = s.commit_part(&id, "big", 1, p1).unwrap();
    let mut p2 = s.stage().unwrap();
    s.append(&mut p2, b"tail").unwrap();
    let e2 = s.commit_part(&id, "big", 2, p2).unwrap();
    let mut p3 = s.stage().unwrap();
    s.append(&mut p3, b"unused").unwrap();
    s.commit_part(&id, "big", 3, p3).unwrap();
    assert!(s
      .complete_multipart(&id, "big", &[(2, e2.clone()), (1, e1.clone())], 5)
      .is_err());
    assert!(s.complete_multipart(&id, "big", &[(1, "bad".into())], 5).is_err());
    let o = s.complete_multipart(&id, "big", &[(1, e1), (2, e2)], 5).unwrap();
    assert_eq!(o.size, MIN_PART_BYTES + 4);
    assert!(o.etag.ends_with("-2"));
    assert_eq!(s.read(&o.version, MIN_PART_BYTES - 2, 10).unwrap(), b"\x07\x07tail");
    assert_eq!(
      s.complete_multipart(&id, "big", &[(1, "x".into())], 5),
      Err(ObjectError::NoSuchUpload)
    );
    let chunks: i64 = s
      .conn()
      .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
      .unwrap();
    assert_eq!(
      chunks, 6,
      "5 rows of the first part, 1 of the second; the unused part dropped"
    );
    // Small parts are refused but the last.
    let id = s.create_multipart("small", &PutMeta::default(), 1).unwrap();
    let mut etags = Vec::new();
    for n in 1..=2 {
      let mut p = s.stage().unwrap();
      s.append(&mut p, b"small").unwrap();
      etags.push((n, s.commit_part(&id, "small", n, p).unwrap()));
    }
    assert!(s.complete_multipart(&id, "small", &etags, 5).is_err());
    s.abort_multipart(&id, "small").unwrap();
    assert_eq!(s.abort_multipart(&id, "small"), Err(ObjectError::NoSuchUpload));
  }

  #[test]
  fn a_put_cut_off_is_swept_at_the_next_open() {
    let d = tempdir::Dir::new();
    let path = d.0.join("b.sqlite3");
    {
      let s = SqliteObjects::open(&path).unwrap();
      let mut st = s.stage().unwrap();
      s.append(&mut st, b"half").unwrap();
      // Staged an hour and more ago: the process that staged it is gone.
      s.conn().execute("UPDATE staging SET created = 0", []).unwrap();
      std::mem::forget(st);
    }
    let s = SqliteObjects::open(&path).unwrap();
    let left: (i64, i64) = s
      .conn()
      .query_row(
        "SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM staging)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
      )
      .unwrap();
    assert_eq!(left, (0, 0));
  }
}
