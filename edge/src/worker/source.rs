//! Where a worker's module files come from: a folder on disk (config
//! workers) or files held in memory (uploads, embedders' code).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use js_api::ModuleSource;
use url::Url;

/// Module files from a folder on disk (read once per worker, then cached
/// by `WorkerCode`).
pub struct DiskSource {
  pub(crate) root: PathBuf,
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

/// The root URL of a worker whose modules are not on disk.
pub fn deployed_root(name: &str) -> Result<Url, String> {
  Url::parse(&format!("file:///deployed/{name}/")).map_err(|e| e.to_string())
}

/// Module files held in memory, by path relative to the worker's root
/// (`index.js`, `lib/util.js`).
pub struct MemorySource {
  root: Url,
  files: BTreeMap<String, Arc<[u8]>>,
}

impl MemorySource {
  /// The files of worker `name`.
  pub fn new(name: &str, files: impl IntoIterator<Item = (String, Arc<[u8]>)>) -> Result<Self, String> {
    Ok(Self {
      root: deployed_root(name)?,
      files: files.into_iter().collect(),
    })
  }

  /// The module paths it holds.
  pub fn paths(&self) -> Vec<String> {
    self.files.keys().cloned().collect()
  }
}

impl ModuleSource for MemorySource {
  fn read(&self, url: &Url) -> Result<Arc<[u8]>, String> {
    let rel = url
      .as_str()
      .strip_prefix(self.root.as_str())
      .ok_or_else(|| format!("{url} is outside the worker's folder"))?;
    self
      .files
      .get(rel)
      .cloned()
      .ok_or_else(|| format!("{rel}: no such module"))
  }
}

/// A source shared with its owner (an embedder keeps its handle).
pub(crate) struct SharedSource(pub Arc<dyn ModuleSource>);

impl ModuleSource for SharedSource {
  fn read(&self, url: &Url) -> Result<Arc<[u8]>, String> {
    self.0.read(url)
  }
}
