//! V8's code cache for workers' modules kept on disk
//! (`runtime.code_cache_dir`), so the first isolate of a worker after a
//! restart skips compiling its modules.

use std::path::PathBuf;
use std::sync::Arc;

use js_api::{CodeCacheStore, WorkerCode};

use crate::config::Config;
use crate::obs::stats::WorkerStats;

/// One file per module text: `<hash>-<V8 version>.v8cache`, written to a
/// temporary name and renamed into place.
struct DirCodeCache {
  dir: PathBuf,
  stats: Arc<WorkerStats>,
}

impl DirCodeCache {
  fn path(&self, key: u64) -> PathBuf {
    self
      .dir
      .join(format!("{key:016x}-{}.v8cache", js_api::v8::V8::get_version()))
  }
}

impl CodeCacheStore for DirCodeCache {
  fn get(&self, key: u64) -> Option<Vec<u8>> {
    let data = std::fs::read(self.path(key)).ok()?;
    self.stats.code_cache_read.inc();
    Some(data)
  }

  fn put(&self, key: u64, data: &[u8]) {
    let path = self.path(key);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::create_dir_all(&self.dir)
      .and_then(|()| std::fs::write(&tmp, data))
      .and_then(|()| std::fs::rename(&tmp, &path));
    match written {
      Ok(()) => self.stats.code_cache_written.inc(),
      Err(e) => {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!("cannot write the code cache {}: {e}", path.display());
      }
    }
  }
}

/// `code`, keeping its code cache in `runtime.code_cache_dir` if the
/// config names one.
pub fn with_code_cache_dir(code: WorkerCode, config: &Config, stats: &Arc<WorkerStats>) -> WorkerCode {
  match &config.runtime.code_cache_dir {
    Some(dir) => code.with_code_cache_store(Arc::new(DirCodeCache {
      dir: config.resolve(dir),
      stats: stats.clone(),
    })),
    None => code,
  }
}
