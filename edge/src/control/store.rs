//! The data directory (`[admin] data_dir`): uploaded workers kept across
//! restarts so that a crash at any point leaves the old version or the new
//! one. Each worker has a folder of versions and a pointer:
//!
//! ```text
//! workers/<name>/current       the committed version's folder name
//! workers/<name>/v<id>/        metadata.json, modules/...
//! workers/<name>/.v<id>.tmp/   a version being written
//! ```
//!
//! A new version is written and fsynced beside the old, renamed complete,
//! then `current` is replaced by one atomic rename (the commit); the rest is
//! removed after, or at the next start. Removing a worker first removes
//! `current`. The layout before this one (`workers/<name>/metadata.json`,
//! and the `.<name>.old` a crash between its two renames left) is still
//! read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::worker::{Upload, UploadMeta};

const CURRENT: &str = "current";

/// Writes an upload as the committed version of `dir/workers/<name>/`.
pub fn store(dir: &Path, upload: &Upload) -> std::io::Result<()> {
  let workers = dir.join("workers");
  std::fs::create_dir_all(&workers)?;
  let wdir = workers.join(&upload.name);
  if !wdir.exists() {
    std::fs::create_dir(&wdir)?;
    sync_dir(&workers)?;
  }
  let id = version_id(upload);
  let tmp = wdir.join(format!(".{id}.tmp"));
  let _ = std::fs::remove_dir_all(&tmp);
  write_version(&tmp, upload)?;
  std::fs::rename(&tmp, wdir.join(&id))?;
  sync_dir(&wdir)?;
  // The commit: one rename of the pointer.
  let pointer = wdir.join(".current.tmp");
  write_synced(&pointer, id.as_bytes())?;
  std::fs::rename(&pointer, wdir.join(CURRENT))?;
  sync_dir(&wdir)?;
  clean(&wdir, Some(&id));
  Ok(())
}

/// A folder name no earlier version of this worker had.
fn version_id(upload: &Upload) -> String {
  let nanos = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_nanos());
  format!("v{}-{nanos:x}", upload.version())
}

/// The upload's files under `at` (a new folder), each fsynced, then
/// every folder of it.
fn write_version(at: &Path, upload: &Upload) -> std::io::Result<()> {
  let modules = at.join("modules");
  std::fs::create_dir_all(&modules)?;
  let meta = serde_json::to_vec_pretty(&upload.meta).map_err(std::io::Error::other)?;
  write_synced(&at.join("metadata.json"), &meta)?;
  for (path, bytes) in &upload.modules {
    let p = modules.join(path);
    if let Some(parent) = p.parent() {
      std::fs::create_dir_all(parent)?;
    }
    write_synced(&p, bytes)?;
  }
  sync_tree(at)
}

/// Fsyncs every folder under `p`, deepest first, and `p`.
fn sync_tree(p: &Path) -> std::io::Result<()> {
  for e in std::fs::read_dir(p)?.flatten() {
    if e.file_type()?.is_dir() {
      sync_tree(&e.path())?;
    }
  }
  sync_dir(p)
}

fn write_synced(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
  let mut f = File::create(p)?;
  f.write_all(bytes)?;
  f.sync_all()
}

/// Makes a folder's entries (files made, renamed or removed in it)
/// durable.
fn sync_dir(p: &Path) -> std::io::Result<()> {
  File::open(p)?.sync_all()
}

/// Removes everything in a worker's folder but the pointer and `keep`.
fn clean(wdir: &Path, keep: Option<&str>) {
  let Ok(rd) = std::fs::read_dir(wdir) else { return };
  for e in rd.flatten() {
    let name = e.file_name();
    let name = name.to_string_lossy();
    if name == CURRENT || Some(&*name) == keep {
      continue;
    }
    let p = e.path();
    let gone = if p.is_dir() {
      std::fs::remove_dir_all(&p)
    } else {
      std::fs::remove_file(&p)
    };
    if let Err(e) = gone {
      tracing::warn!("{}: cannot remove this leftover: {e}", p.display());
    }
  }
}

/// Whether a reader of the data directory also removes what a crash left
/// half done: only its writer does (a supervised process reads the folder
/// its supervisor writes, maybe while a version is being written).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tidy {
  Yes,
  No,
}

/// The uploads kept under `dir` (unreadable ones are logged and skipped);
/// with [`Tidy::Yes`], what a crash left half done is removed.
pub fn load_stored(dir: &Path, tidy: Tidy) -> Vec<Upload> {
  let workers = dir.join("workers");
  let Ok(rd) = std::fs::read_dir(&workers) else {
    return Vec::new();
  };
  let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
  paths.sort();
  let mut out = Vec::new();
  for p in &paths {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
      continue;
    };
    if let Some(legacy) = name.strip_prefix('.') {
      load_legacy_leftover(&workers, legacy, tidy, &mut out);
      continue;
    }
    match load_worker(p, name, tidy) {
      Ok(Some(u)) => out.push(u),
      Ok(None) => {}
      Err(e) => tracing::error!("{}: cannot load this stored worker: {e}", p.display()),
    }
  }
  out
}

/// One worker's folder: its committed version (leftovers removed), the
/// old layout's files, or nothing (never committed, or being removed: the
/// folder is removed).
fn load_worker(wdir: &Path, name: &str, tidy: Tidy) -> Result<Option<Upload>, String> {
  let pointer = wdir.join(CURRENT);
  match std::fs::read_to_string(&pointer) {
    Ok(id) => {
      let id = id.trim();
      if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\']) {
        return Err(format!("{}: {id:?} is not a version folder", pointer.display()));
      }
      let upload = read_stored(&wdir.join(id), name)?;
      if tidy == Tidy::Yes {
        clean(wdir, Some(id));
      }
      Ok(Some(upload))
    }
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
      if wdir.join("metadata.json").exists() {
        return read_stored(wdir, name).map(Some);
      }
      if tidy == Tidy::No {
        return Ok(None);
      }
      tracing::info!(
        "{}: no committed version (a crash while storing or removing it): removed",
        wdir.display()
      );
      let _ = std::fs::remove_dir_all(wdir);
      Ok(None)
    }
    Err(e) => Err(format!("{}: {e}", pointer.display())),
  }
}

/// The old layout's `.<name>.old` (kept while `<name>` was replaced) or
/// `.<name>.new` (being written): the old copy is the worker if a crash
/// came between the two renames, else both are leftovers.
fn load_legacy_leftover(workers: &Path, leftover: &str, tidy: Tidy, out: &mut Vec<Upload>) {
  let path = workers.join(format!(".{leftover}"));
  if let Some(name) = leftover.strip_suffix(".old") {
    if !workers.join(name).exists() {
      match read_stored(&path, name) {
        Ok(u) => {
          tracing::warn!(worker = name, "recovered from {}", path.display());
          out.push(u);
        }
        Err(e) => tracing::error!("{}: cannot load this stored worker: {e}", path.display()),
      }
      return;
    }
  }
  if tidy == Tidy::Yes && (leftover.ends_with(".new") || leftover.ends_with(".old")) {
    let _ = std::fs::remove_dir_all(&path);
  }
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

/// Removes the stored copy of worker `name`, if there is one: the pointer
/// first (then a crash leaves nothing that loads), then the rest.
pub fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
  let wdir = dir.join("workers").join(name);
  if !wdir.exists() {
    return Ok(());
  }
  // (The old layout's metadata.json is its pointer.)
  for pointer in [CURRENT, "metadata.json"] {
    match std::fs::remove_file(wdir.join(pointer)) {
      Ok(()) => sync_dir(&wdir)?,
      Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
      Err(e) => return Err(e),
    }
  }
  std::fs::remove_dir_all(&wdir)
}
