//! A deployed worker: its code (shared by every isolate that runs it), its
//! settings, where its module files come from (a folder named by the
//! config, an upload through the admin API, or any [`ModuleSource`] an
//! embedder hands in), and a version that changes whenever any of these
//! does.

pub mod code_cache;
pub mod source;
pub mod upload;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use edge_core::limits::{Limits, LimitsConfig};
use js_api::{ModuleSource, NetPolicy, WorkerCode};
use serde::Serialize;
use url::Url;

use crate::config::{
  check_bindings, Bindings, Config, D1Binding, KvBinding, QueueConsumer, Queues, R2Binding, Secrets, ServiceBinding,
  Triggers, WorkerConfig,
};
use crate::error::ConfigError;
use crate::obs::stats::WorkerStats;

pub use source::{DiskSource, MemorySource};
pub use upload::{Upload, UploadMeta, MAX_UPLOAD_BYTES};

/// Where a worker was defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
  /// A `[[worker]]` of the config file.
  Config,
  /// Uploaded through the admin API, or deployed by an embedder.
  Api,
}

/// Identifies one worker version in this process (pools key their slots
/// by it): never reused, unlike an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(u64);

impl WorkerId {
  fn next() -> Self {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Self(NEXT.fetch_add(1, Ordering::Relaxed))
  }
}

/// A worker as an embedder deploys it: code from any [`ModuleSource`],
/// under a root URL of `file:///deployed/<name>/`.
#[derive(Clone)]
pub struct WorkerSpec {
  /// Letters, digits, `-` and `_`.
  pub name: String,
  /// The main module's path under the root (`index.js`).
  pub main_module: String,
  /// Reads a module by its URL under the root, once per worker version
  /// (then cached), on an executor thread: serve it from memory.
  pub source: Arc<dyn ModuleSource>,
  /// A version for this code and these settings, chosen by the caller (a
  /// deploy id or a content hash): the same version again is a no-op.
  pub version: String,
  pub routes: Vec<String>,
  pub vars: BTreeMap<String, String>,
  /// KV namespaces on `env`, kept in the config's storage folder.
  pub kv: Vec<KvBinding>,
  /// D1 databases on `env`, kept in the config's storage folder.
  pub d1: Vec<D1Binding>,
  /// R2 buckets on `env`, kept in the config's storage folder.
  pub r2: Vec<R2Binding>,
  /// Other workers on `env`, called in process.
  pub services: Vec<ServiceBinding>,
  /// Cron triggers.
  pub triggers: Triggers,
  /// Queues it sends to and consumes.
  pub queues: Queues,
  /// Strings on `env` like vars, never listed.
  pub secrets: Secrets,
  pub limits: LimitsConfig,
  pub allow_private_network: bool,
  /// `nodejs_compat`, `nodejs_als` (edge.toml's `compatibility_flags`).
  pub compatibility_flags: Vec<String>,
  /// Module paths, for listings.
  pub modules: Vec<String>,
}

impl WorkerSpec {
  /// Checks what can be checked without running it.
  pub fn validate(&self) -> Result<(), String> {
    edge_core::names::check_worker_name(&self.name)?;
    edge_core::names::check_module_path(&self.main_module).map_err(|m| format!("main_module: {m}"))?;
    for r in &self.routes {
      edge_core::host::check_host_pattern(r, true).map_err(|m| format!("routes: {m}"))?;
    }
    self
      .limits
      .check()
      .map_err(|(field, m)| format!("limits.{field}: {m}"))?;
    if self.vars.keys().any(|k| k.is_empty()) {
      return Err("vars: a var needs a name".into());
    }
    check_bindings(&self.vars, &self.secrets.0, self.bindings())?;
    self.queues.check()?;
    crate::config::check_compatibility_flags(&self.compatibility_flags)?;
    self.triggers.schedules().map(|_| ())
  }

  pub fn bindings(&self) -> Bindings<'_> {
    Bindings {
      kv: &self.kv,
      d1: &self.d1,
      r2: &self.r2,
      services: &self.services,
      queues: &self.queues.producers,
    }
  }
}

/// The strings on `env`: vars, then secrets.
fn env_strings(vars: &BTreeMap<String, String>, secrets: &BTreeMap<String, String>) -> Vec<(String, String)> {
  vars
    .iter()
    .chain(secrets)
    .map(|(k, v)| (k.clone(), v.clone()))
    .collect()
}

/// Gives `code` the stores its bindings name (opened in the config's
/// storage folder) and the workers it calls; `Err` names the field.
fn with_bindings(code: WorkerCode, config: &Config, b: Bindings<'_>) -> Result<WorkerCode, (&'static str, String)> {
  let storage = edge_storage::Storage::at(&config.storage_dir());
  let kv = b
    .kv
    .iter()
    .map(|k| Ok((k.binding.clone(), storage.kv(k.namespace())?)))
    .collect::<Result<_, edge_storage::StorageError>>()
    .map_err(|e| ("kv", format!("kv: {e}")))?;
  let d1 = b
    .d1
    .iter()
    .map(|d| Ok((d.binding.clone(), storage.sql(d.database())?)))
    .collect::<Result<_, edge_storage::StorageError>>()
    .map_err(|e| ("d1", format!("d1: {e}")))?;
  let r2 = b
    .r2
    .iter()
    .map(|r| Ok((r.binding.clone(), storage.objects(r.bucket())?)))
    .collect::<Result<_, edge_storage::StorageError>>()
    .map_err(|e| ("r2", format!("r2: {e}")))?;
  let queues = b
    .queues
    .iter()
    .map(|q| Ok((q.binding.clone(), storage.queue(&q.queue)?)))
    .collect::<Result<_, edge_storage::StorageError>>()
    .map_err(|e| ("queues", format!("queues: {e}")))?;
  let services = b
    .services
    .iter()
    .map(|s| {
      let target = js_api::ServiceTarget {
        service: s.service.clone(),
        entrypoint: s.entrypoint.clone(),
      };
      (s.binding.clone(), target)
    })
    .collect();
  Ok(
    code
      .with_kv(kv)
      .with_d1(d1)
      .with_r2(r2)
      .with_services(services)
      .with_queues(queues),
  )
}

/// A queue a worker consumes: its settings and stores.
#[derive(Clone)]
pub struct Consumer {
  pub settings: QueueConsumer,
  pub queue: Arc<dyn edge_storage::MessageQueue>,
  pub dead_letter: Option<Arc<dyn edge_storage::MessageQueue>>,
}

/// The consumers `queues` names, their queues opened in the config's
/// storage folder.
fn consumers(config: &Config, queues: &Queues) -> Result<Vec<Consumer>, String> {
  queues.check()?;
  let storage = edge_storage::Storage::at(&config.storage_dir());
  let open = |name: &str| storage.queue(name).map_err(|e| format!("queues: {e}"));
  queues
    .consumers
    .iter()
    .map(|c| {
      Ok(Consumer {
        settings: c.clone(),
        queue: open(&c.queue)?,
        dead_letter: c.dead_letter_queue.as_deref().map(open).transpose()?,
      })
    })
    .collect()
}

/// One version of a worker, immutable once built; a new deploy makes a new
/// one and retires the old.
pub struct Worker {
  pub id: WorkerId,
  pub name: Arc<str>,
  pub code: Arc<WorkerCode>,
  pub net: NetPolicy,
  pub limits: Limits,
  /// Host patterns routed to it.
  pub routes: Vec<String>,
  /// The names among `code.vars` that are secrets (not listed).
  pub secrets: Vec<String>,
  /// Its cron triggers.
  pub crons: Vec<edge_core::cron::Schedule>,
  /// The queues its `queue()` consumes.
  pub consumers: Vec<Consumer>,
  pub origin: Origin,
  /// Identifies this version's code and settings.
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
    let invalid_at = |field: &str, message: String| ConfigError::Invalid {
      file: config.origin.clone(),
      field: format!("worker[{index}].{field}"),
      message,
    };
    let invalid = |message: String| invalid_at("main", message);
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
    let secrets = config.secrets_of(w).map_err(|m| invalid_at("secrets_file", m))?;
    let version = config_version(w, &secrets, &limits, root);
    let code = WorkerCode::new(
      w.name.as_str(),
      root_url,
      main_url,
      Box::new(DiskSource {
        root: root.to_path_buf(),
      }),
      env_strings(&w.vars, &secrets),
    )
    .with_node(js_api::NodeCompat::from_flags(&w.compatibility_flags));
    let mut code = with_bindings(code, config, w.bindings()).map_err(|(field, m)| invalid_at(field, m))?;
    let consumers = consumers(config, &w.queues).map_err(|m| invalid_at("queues", m))?;
    code.queue_consumer = !consumers.is_empty();
    let code = code_cache::with_code_cache_dir(code, config, &stats);
    Ok(Arc::new(Self {
      id: WorkerId::next(),
      name: Arc::from(w.name.as_str()),
      code: Arc::new(code),
      net: NetPolicy {
        allow_private_network: w.allow_private_network,
      },
      limits,
      routes: w.routes.clone(),
      secrets: secrets.into_keys().collect(),
      crons: w.triggers.schedules().map_err(|m| invalid_at("triggers", m))?,
      consumers,
      origin: Origin::Config,
      version,
      modules: vec![main.display().to_string()],
      stats,
      retired: AtomicBool::new(false),
    }))
  }

  /// A worker deployed through the admin API or by an embedder; its
  /// limits default to the config's.
  pub fn from_spec(config: &Config, spec: &WorkerSpec, stats: Arc<WorkerStats>) -> Result<Arc<Self>, String> {
    let root = source::deployed_root(&spec.name)?;
    let main = root.join(&spec.main_module).map_err(|e| e.to_string())?;
    let limits = config.default_limits().with(&spec.limits);
    let code = WorkerCode::new(
      spec.name.as_str(),
      root,
      main,
      Box::new(source::SharedSource(spec.source.clone())),
      env_strings(&spec.vars, &spec.secrets.0),
    )
    .with_node(js_api::NodeCompat::from_flags(&spec.compatibility_flags));
    let mut code = with_bindings(code, config, spec.bindings()).map_err(|(_, m)| m)?;
    let consumers = consumers(config, &spec.queues)?;
    code.queue_consumer = !consumers.is_empty();
    let code = code_cache::with_code_cache_dir(code, config, &stats);
    Ok(Arc::new(Self {
      id: WorkerId::next(),
      name: Arc::from(spec.name.as_str()),
      code: Arc::new(code),
      net: NetPolicy {
        allow_private_network: spec.allow_private_network,
      },
      limits,
      routes: spec.routes.clone(),
      secrets: spec.secrets.0.keys().cloned().collect(),
      crons: spec.triggers.schedules()?,
      consumers,
      origin: Origin::Api,
      version: spec.version.clone(),
      modules: spec.modules.clone(),
      stats,
      retired: AtomicBool::new(false),
    }))
  }
}

/// The version of a config worker: its settings and the names, sizes and
/// modification times of the files in its folder (so that `--watch` and
/// SIGHUP see an edited module).
pub fn config_version(w: &WorkerConfig, secrets: &BTreeMap<String, String>, limits: &Limits, root: &Path) -> String {
  let mut h = std::collections::hash_map::DefaultHasher::new();
  // (The config's Debug names secrets only: their values are hashed here.)
  format!("{w:?}{limits:?}").hash(&mut h);
  secrets.hash(&mut h);
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
