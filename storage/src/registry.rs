//! [`Storage`]: the namespaces of one data folder. A namespace's file is
//! opened once per process while anything holds it, and shared by every
//! worker that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::kv::KvStore;
use crate::{check_namespace, sqlite, StorageError};

/// The namespaces kept in one folder.
#[derive(Clone, Debug)]
pub struct Storage {
  dir: PathBuf,
}

/// Open namespaces by file, process-wide.
fn open_files() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Weak<dyn KvStore>>> {
  static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<dyn KvStore>>>> = OnceLock::new();
  OPEN
    .get_or_init(Default::default)
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

  /// The KV namespace `name` (its file `kv/<name>.sqlite3`, made if new).
  pub fn kv(&self, name: &str) -> Result<Arc<dyn KvStore>, StorageError> {
    check_namespace(name)?;
    let folder = self.dir.join("kv");
    let failed = |message: String| StorageError::Open {
      path: folder.display().to_string(),
      message,
    };
    std::fs::create_dir_all(&folder).map_err(|e| failed(e.to_string()))?;
    // One key per file however the folder was named.
    let folder = folder.canonicalize().map_err(|e| failed(e.to_string()))?;
    let path = folder.join(format!("{name}.sqlite3"));
    let mut open = open_files();
    open.retain(|_, w| w.strong_count() > 0);
    if let Some(s) = open.get(&path).and_then(Weak::upgrade) {
      return Ok(s);
    }
    let open_error = |message: String| StorageError::Open {
      path: path.display().to_string(),
      message,
    };
    let store: Arc<dyn KvStore> = Arc::new(sqlite::SqliteKv::open(&path).map_err(|e| open_error(e.to_string()))?);
    open.insert(path, Arc::downgrade(&store));
    Ok(store)
  }
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
    for bad in ["", "../x", "a/b", "a.b", &"n".repeat(65)] {
      assert!(matches!(a.kv(bad), Err(StorageError::BadName(_))), "{bad:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
  }
}
