//! A deployed worker: its code (shared by every isolate that runs it), its
//! settings, where its module files come from (a folder named by the
//! config, or an upload through the admin API), and a version that changes
//! whenever any of these does.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use js_api::{ModuleSource, NetPolicy, WorkerCode};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{Config, WorkerConfig};
use crate::error::ConfigError;
use crate::limits::{Limits, LimitsConfig};
use crate::stats::WorkerStats;

/// Where a worker was defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
  /// A `[[worker]]` of the config file.
  Config,
  /// Uploaded through the admin API.
  Api,
}

/// One version of a worker, immutable once built; a new deploy makes a new
/// one and retires the old.
pub struct Worker {
  pub name: Arc<str>,
  pub code: Arc<WorkerCode>,
  pub net: NetPolicy,
  pub limits: Limits,
  /// Host patterns routed to it.
  pub routes: Vec<String>,
  pub origin: Origin,
  /// 16 hex digits identifying this version's code and settings.
  pub version: String,
  /// Module paths relative to the worker's folder (uploads), or the main
  /// module's path (config).
  pub modules: Vec<String>,
  /// Counters, shared by every version of the worker.
  pub stats: Arc<WorkerStats>,
  retired: AtomicBool,
}

impl Worker {
  /// Whether a newer version replaced this one (or it was removed): its
  /// isolates are dropped when their requests finish.
  pub fn is_retired(&self) -> bool {
    self.retired.load(Ordering::Relaxed)
  }

  pub fn retire(&self) {
    self.retired.store(true, Ordering::Relaxed);
  }

  /// A `[[worker]]` of the config file; its modules are read from the main
  /// module's folder.
  pub fn from_config(
    config: &Config,
    index: usize,
    w: &WorkerConfig,
    stats: Arc<WorkerStats>,
  ) -> Result<Arc<Self>, ConfigError> {
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
    let limits = config.limits_of(w);
    let version = config_version(w, &limits, root);
    let code = WorkerCode::new(
      w.name.as_str(),
      root_url,
      main_url,
      Box::new(DiskSource {
        root: root.to_path_buf(),
      }),
      w.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    );
    let code = crate::code_cache::with_code_cache_dir(code, config, &stats);
    Ok(Arc::new(Self {
      name: Arc::from(w.name.as_str()),
      code: Arc::new(code),
      net: NetPolicy {
        allow_private_network: w.allow_private_network,
      },
      limits,
      routes: w.routes.clone(),
      origin: Origin::Config,
      version,
      modules: vec![main.display().to_string()],
      stats,
      retired: AtomicBool::new(false),
    }))
  }

  /// An uploaded worker; its modules are held in memory.
  pub fn from_upload(config: &Config, upload: &Upload, stats: Arc<WorkerStats>) -> Result<Arc<Self>, String> {
    let m = &upload.meta;
    let root = Url::parse(&format!("file:///deployed/{}/", upload.name)).map_err(|e| e.to_string())?;
    let main = root.join(&m.main_module).map_err(|e| e.to_string())?;
    let limits = config.default_limits().with(&m.limits);
    let code = WorkerCode::new(
      upload.name.as_str(),
      root.clone(),
      main,
      Box::new(MemorySource {
        root,
        files: upload
          .modules
          .iter()
          .map(|(k, v)| (k.clone(), Arc::<[u8]>::from(&v[..])))
          .collect(),
      }),
      m.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    );
    let code = crate::code_cache::with_code_cache_dir(code, config, &stats);
    Ok(Arc::new(Self {
      name: Arc::from(upload.name.as_str()),
      code: Arc::new(code),
      net: NetPolicy {
        allow_private_network: m.allow_private_network,
      },
      limits,
      routes: m.routes.clone(),
      origin: Origin::Api,
      version: upload.version(),
      modules: upload.modules.keys().cloned().collect(),
      stats,
      retired: AtomicBool::new(false),
    }))
  }
}

/// The version of a config worker: its settings and the names, sizes and
/// modification times of the files in its folder (so that `--watch` and
/// SIGHUP see an edited module).
pub fn config_version(w: &WorkerConfig, limits: &Limits, root: &Path) -> String {
  let mut h = std::collections::hash_map::DefaultHasher::new();
  format!("{w:?}{limits:?}").hash(&mut h);
  folder_stamp(root, &mut h);
  format!("{:016x}", h.finish())
}

/// Hashes the names, sizes and modification times of the files under
/// `root` (at most a few thousand, a few levels deep).
pub fn folder_stamp(root: &Path, h: &mut impl Hasher) {
  let mut stack = vec![(root.to_path_buf(), 0)];
  let mut seen = 0;
  while let Some((dir, depth)) = stack.pop() {
    let Ok(rd) = std::fs::read_dir(&dir) else { continue };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
      seen += 1;
      if seen > 4096 {
        return;
      }
      let Ok(md) = e.metadata() else { continue };
      e.file_name().hash(h);
      if md.is_dir() {
        if depth < 6 {
          stack.push((e.path(), depth + 1));
        }
      } else {
        md.len().hash(h);
        md.modified().ok().hash(h);
      }
    }
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

/// Module files of an upload, by path relative to the worker's root URL.
struct MemorySource {
  root: Url,
  files: BTreeMap<String, Arc<[u8]>>,
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
      .ok_or_else(|| format!("{rel}: no such module in the upload"))
  }
}

/// The settings of an uploaded worker (the `metadata` part of an upload).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadMeta {
  /// Path of the main module among the uploaded ones.
  pub main_module: String,
  #[serde(default)]
  pub routes: Vec<String>,
  #[serde(default)]
  pub vars: BTreeMap<String, String>,
  #[serde(default)]
  pub limits: LimitsConfig,
  #[serde(default)]
  pub allow_private_network: bool,
}

/// A worker as uploaded: settings and module files.
#[derive(Clone, Debug)]
pub struct Upload {
  pub name: String,
  pub meta: UploadMeta,
  /// Module path (relative, `/`-separated) to its bytes.
  pub modules: BTreeMap<String, Bytes>,
}

impl Upload {
  /// Checks what can be checked without running it: names, paths, routes,
  /// limits.
  pub fn validate(&self) -> Result<(), String> {
    check_worker_name(&self.name)?;
    if self.modules.is_empty() {
      return Err("the upload has no modules".into());
    }
    for path in self.modules.keys() {
      check_module_path(path)?;
    }
    if !self.modules.contains_key(&self.meta.main_module) {
      return Err(format!(
        "main_module {:?} is not among the uploaded modules ({})",
        self.meta.main_module,
        self.modules.keys().cloned().collect::<Vec<_>>().join(", ")
      ));
    }
    for r in &self.meta.routes {
      crate::config::check_host_pattern(r, true).map_err(|m| format!("routes: {m}"))?;
    }
    crate::config::check_limits(&self.meta.limits).map_err(|(field, m)| format!("limits.{field}: {m}"))?;
    if self.meta.vars.keys().any(|k| k.is_empty()) {
      return Err("vars: a var needs a name".into());
    }
    Ok(())
  }

  /// A hash of the settings and modules.
  pub fn version(&self) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&self.meta).unwrap_or_default().hash(&mut h);
    for (k, v) in &self.modules {
      k.hash(&mut h);
      v.hash(&mut h);
    }
    format!("{:016x}", h.finish())
  }
}

/// Letters, digits, `-` and `_`.
pub fn check_worker_name(name: &str) -> Result<(), String> {
  if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
    return Err(format!("{name:?}: a worker name uses letters, digits, '-' and '_'"));
  }
  Ok(())
}

/// A relative path of `/`-separated plain names ending in .js, .mjs,
/// .json or .wasm.
fn check_module_path(p: &str) -> Result<(), String> {
  let ok_ext = [".js", ".mjs", ".json", ".wasm"].iter().any(|e| p.ends_with(e));
  let ok_parts = !p.is_empty()
    && p.split('/').all(|part| {
      !part.is_empty()
        && part != "."
        && part != ".."
        && part
          .chars()
          .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
  if ok_ext && ok_parts {
    Ok(())
  } else {
    Err(format!(
      "{p:?}: a module path is relative, of letters, digits, '-', '_' and '.', and ends in .js, .mjs, .json or .wasm"
    ))
  }
}
