//! [`Storage`]: the KV namespaces, D1 databases, R2 buckets and queues of one data folder. A
//! file is opened once per process while anything holds it, and shared by
//! every worker that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::kv::KvStore;
use crate::objects::ObjectStore;
use crate::queues::MessageQueue;
use crate::sql::SqlDatabase;
use crate::{check_namespace, sqlite, sqlite_objects, sqlite_queues, sqlite_sql, StorageError};

/// The namespaces kept in one folder.
#[derive(Clone, Debug)]
pub struct Storage {
  dir: PathBuf,
}

/// What is open, by file, process-wide.
struct Open {
  kv: HashMap<PathBuf, Weak<dyn KvStore>>,
  sql: HashMap<PathBuf, Weak<dyn SqlDatabase>>,
  objects: HashMap<PathBuf, Weak<dyn ObjectStore>>,
  queues: HashMap<PathBuf, Weak<dyn MessageQueue>>,
}

fn open_files() -> std::sync::MutexGuard<'static, Open> {
  static OPEN: OnceLock<Mutex<Open>> = OnceLock::new();
  OPEN
    .get_or_init(|| {
      Mutex::new(Open {
        kv: HashMap::new(),
        sql: HashMap::new(),
        objects: HashMap::new(),
        queues: HashMap::new(),
      })
    })
    .lock()
    .unwrap_or_else(|p| p.into_inner())
}

impl Storage {
  /// The storage kept in `dir` (made when a namespace is first opened).
  pub fn at(dir: &Path) -> Self {
    Self { dir: dir.to_path_buf() }
  }

  pub fn dir(&self) -> &Path {
    &self.dir
  }

  /// The file of `name` in the subfolder `kind`, the folder made.
  fn file(&self, kind: &str, name: &str) -> Result<PathBuf, StorageError> {
    check_namespace(name)?;
    let folder = self.dir.join(kind);
    let failed = |message: String| StorageError::Open {
      path: folder.display().to_string(),
      message,
    };
    std::fs::create_dir_all(&folder).map_err(|e| failed(e.to_string()))?;
    // One key per file however the folder was named.
    let folder = folder.canonicalize().map_err(|e| failed(e.to_string()))?;
    Ok(folder.join(format!("{name}.sqlite3")))
  }

  /// The KV namespace `name` (its file `kv/<name>.sqlite3`, made if new).
  pub fn kv(&self, name: &str) -> Result<Arc<dyn KvStore>, StorageError> {
    let path = self.file("kv", name)?;
    shared(&mut open_files().kv, path, |p| {
      sqlite::SqliteKv::open(p)
        .map(|s| Arc::new(s) as Arc<dyn KvStore>)
        .map_err(|e| e.to_string())
    })
  }

  /// The D1 database `name` (its file `d1/<name>.sqlite3`, made if new).
  pub fn sql(&self, name: &str) -> Result<Arc<dyn SqlDatabase>, StorageError> {
    let path = self.file("d1", name)?;
    shared(&mut open_files().sql, path, |p| {
      sqlite_sql::SqliteDb::open(p)
        .map(|s| Arc::new(s) as Arc<dyn SqlDatabase>)
        .map_err(|e| e.to_string())
    })
  }

  /// The R2 bucket `name` (its file `r2/<name>.sqlite3`, made if new).
  pub fn objects(&self, name: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let path = self.file("r2", name)?;
    shared(&mut open_files().objects, path, |p| {
      sqlite_objects::SqliteObjects::open(p)
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| e.to_string())
    })
  }

  /// The queue `name` (its file `queues/<name>.sqlite3`, made if new).
  pub fn queue(&self, name: &str) -> Result<Arc<dyn MessageQueue>, StorageError> {
    let path = self.file("queues", name)?;
    shared(&mut open_files().queues, path, |p| {
      sqlite_queues::SqliteQueue::open(p)
        .map(|s| Arc::new(s) as Arc<dyn MessageQueue>)
        .map_err(|e| e.to_string())
    })
  }
}

/// What `open` makes of `path`, or the one already open there.
fn shared<T: ?Sized>(
  open: &mut HashMap<PathBuf, Weak<T>>,
  path: PathBuf,
  make: impl FnOnce(&Path) -> Result<Arc<T>, String>,
) -> Result<Arc<T>, StorageError> {
  open.retain(|_, w| w.strong_count() > 0);
  if let Some(s) = open.get(&path).and_then(Weak::upgrade) {
    return Ok(s);
  }
  let made = make(&path).map_err(|message| StorageError::Open {
    path: path.display().to_string(),
    message,
  })?;
  open.insert(path, Arc::downgrade(&made));
  Ok(made)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn one_store_per_file_and_names_checked() {
    let dir = std::env::temp_dir().join(format!("edge-storage-reg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = Storage::at(&dir);
    let one = a.kv("cache").unwrap();
    let two = Storage::at(&dir).kv("cache").unwrap();
    assert!(Arc::ptr_eq(&one, &two));
    assert!(dir.join("kv/cache.sqlite3").exists());
    let other = a.kv("other").unwrap();
    assert!(!Arc::ptr_eq(&one, &other));
    let db = a.sql("cache").unwrap();
    assert!(Arc::ptr_eq(&db, &a.sql("cache").unwrap()));
    assert!(
      dir.join("d1/cache.sqlite3").exists(),
      "a database apart from the namespace of the same name"
    );
    for bad in ["", "../x", "a/b", "a.b", &"n".repeat(65)] {
      assert!(matches!(a.kv(bad), Err(StorageError::BadName(_))), "{bad:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
  }
}
