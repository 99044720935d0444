//! A deployed worker: its code (shared by every isolate that runs it), its
//! settings, and where its module files are read from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use js_api::{ModuleSource, NetPolicy, WorkerCode};
use url::Url;

use crate::config::{Config, WorkerConfig};
use crate::error::ConfigError;
use crate::limits::Limits;

/// One worker, immutable once built; a new deploy makes a new one.
pub struct Worker {
  pub name: Arc<str>,
  pub code: Arc<WorkerCode>,
  pub net: NetPolicy,
  pub limits: Limits,
}

impl Worker {
  pub fn from_config(config: &Config, index: usize, w: &WorkerConfig) -> Result<Arc<Self>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
      file: config.origin.clone(),
      field: format!("worker[{index}].main"),
      message,
    };
    let main = config.resolve(&w.main);
    let main = main
      .canonicalize()
      .map_err(|e| invalid(format!("{}: {e}", main.display())))?;
    let root = main
      .parent()
      .ok_or_else(|| invalid("the main module has no folder".into()))?;
    let root_url = Url::from_directory_path(root).map_err(|_| invalid(format!("bad folder {}", root.display())))?;
    let main_url = Url::from_file_path(&main).map_err(|_| invalid(format!("bad path {}", main.display())))?;
    let code = WorkerCode::new(
      w.name.as_str(),
      root_url,
      main_url,
      Box::new(DiskSource {
        root: root.to_path_buf(),
      }),
      w.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    );
    Ok(Arc::new(Self {
      name: Arc::from(w.name.as_str()),
      code: Arc::new(code),
      net: NetPolicy {
        allow_private_network: w.allow_private_network,
      },
      limits: config.limits_of(w),
    }))
  }
}

/// Module files from a folder on disk (read once per worker, then cached
/// by [`WorkerCode`]).
pub struct DiskSource {
  root: PathBuf,
}

impl ModuleSource for DiskSource {
  fn read(&self, url: &Url) -> Result<Arc<[u8]>, String> {
    let path = url.to_file_path().map_err(|_| format!("{url} is not a file URL"))?;
    let path = Path::new(&path);
    if !path.starts_with(&self.root) {
      return Err(format!("{url} is outside the worker's folder"));
    }
    std::fs::read(path).map(Arc::from).map_err(|e| e.to_string())
  }
}
