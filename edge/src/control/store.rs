//! The data directory (`[admin] data_dir`): uploaded workers kept across
//! restarts, one folder each, written to a new folder and renamed into
//! place so a reader sees the old version or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::worker::{Upload, UploadMeta};

/// Writes an upload under `dir/workers/<name>/` (a new folder renamed into
/// place, so a reader sees the old version or the new one).
pub fn store(dir: &Path, upload: &Upload) -> std::io::Result<()> {
  let workers = dir.join("workers");
  std::fs::create_dir_all(&workers)?;
  let tmp = workers.join(format!(".{}.new", upload.name));
  let _ = std::fs::remove_dir_all(&tmp);
  std::fs::create_dir_all(tmp.join("modules"))?;
  let meta = serde_json::to_vec_pretty(&upload.meta).map_err(std::io::Error::other)?;
  std::fs::write(tmp.join("metadata.json"), meta)?;
  for (path, bytes) in &upload.modules {
    let p = tmp.join("modules").join(path);
    if let Some(parent) = p.parent() {
      std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, bytes)?;
  }
  let dest = workers.join(&upload.name);
  let old = workers.join(format!(".{}.old", upload.name));
  let _ = std::fs::remove_dir_all(&old);
  if dest.exists() {
    std::fs::rename(&dest, &old)?;
  }
  std::fs::rename(&tmp, &dest)?;
  let _ = std::fs::remove_dir_all(&old);
  Ok(())
}

/// The uploads kept under `dir` (unreadable ones are logged and skipped).
pub fn load_stored(dir: &Path) -> Vec<Upload> {
  let workers = dir.join("workers");
  let Ok(rd) = std::fs::read_dir(&workers) else {
    return Vec::new();
  };
  let mut out = Vec::new();
  let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
  names.sort();
  for p in names {
    let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
      continue;
    };
    if name.starts_with('.') {
      continue;
    }
    match read_stored(&p, &name) {
      Ok(u) => out.push(u),
      Err(e) => tracing::error!("{}: cannot load this stored worker: {e}", p.display()),
    }
  }
  out
}

fn read_stored(p: &Path, name: &str) -> Result<Upload, String> {
  let meta = std::fs::read(p.join("metadata.json")).map_err(|e| format!("metadata.json: {e}"))?;
  let meta: UploadMeta = serde_json::from_slice(&meta).map_err(|e| format!("metadata.json: {e}"))?;
  let root = p.join("modules");
  let mut modules = BTreeMap::new();
  let mut stack = vec![root.clone()];
  while let Some(dir) = stack.pop() {
    for e in std::fs::read_dir(&dir)
      .map_err(|e| format!("{}: {e}", dir.display()))?
      .flatten()
    {
      let path = e.path();
      if path.is_dir() {
        stack.push(path);
        continue;
      }
      let rel = path
        .strip_prefix(&root)
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .replace('\\', "/");
      let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
      modules.insert(rel, Bytes::from(bytes));
    }
  }
  let upload = Upload {
    name: name.to_string(),
    meta,
    modules,
  };
  upload.validate()?;
  Ok(upload)
}

/// Removes the stored copy of worker `name`, if there is one.
pub fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
  let p = dir.join("workers").join(name);
  if p.exists() {
    std::fs::remove_dir_all(&p)?;
  }
  Ok(())
}
