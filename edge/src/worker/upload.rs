//! A worker as uploaded through the admin API (or handed in by an
//! embedder): its settings and module files, checked before it is built.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use edge_core::limits::LimitsConfig;
use edge_core::names::{check_module_path, check_worker_name};
use serde::{Deserialize, Serialize};

use super::{MemorySource, WorkerSpec};
use crate::config::{
  check_bindings, Bindings, D1Binding, KvBinding, Queues, R2Binding, Secrets, ServiceBinding, Triggers,
};

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
  /// KV namespaces on `env` (`[{"binding": "CACHE", "namespace": "cache"}]`).
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub kv: Vec<KvBinding>,
  /// D1 databases on `env` (`[{"binding": "DB", "database": "main"}]`).
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub d1: Vec<D1Binding>,
  /// R2 buckets on `env` (`[{"binding": "FILES", "bucket_name": "files"}]`).
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub r2: Vec<R2Binding>,
  /// Other workers on `env` (`[{"binding": "AUTH", "service": "auth"}]`).
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub services: Vec<ServiceBinding>,
  /// Cron triggers (`{"crons": ["*/5 * * * *"]}`).
  #[serde(default, skip_serializing_if = "Triggers::is_empty")]
  pub triggers: Triggers,
  /// Queues (`{"producers": [{"binding": "JOBS", "queue": "jobs"}],
  /// "consumers": [{"queue": "jobs"}]}`).
  #[serde(default, skip_serializing_if = "Queues::is_empty")]
  pub queues: Queues,
  /// Strings on `env` like vars, never listed (`{"API_KEY": "..."}`).
  #[serde(default, skip_serializing_if = "Secrets::is_empty")]
  pub secrets: Secrets,
  #[serde(default)]
  pub limits: LimitsConfig,
  #[serde(default)]
  pub allow_private_network: bool,
  /// `["nodejs_compat"]`, as in Cloudflare's upload metadata.
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub compatibility_flags: Vec<String>,
}

/// What one upload may hold: modules (count and bytes in all) and vars
/// (Cloudflare's: 128, of 5 KB each).
pub const MAX_MODULES: usize = 1000;
pub const MAX_UPLOAD_BYTES: usize = 64 << 20;
pub const MAX_VARS: usize = 128;
pub const MAX_VAR_NAME: usize = 256;
pub const MAX_VAR_BYTES: usize = 5 << 10;

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
    if self.modules.len() > MAX_MODULES {
      return Err(format!("{} modules: at most {MAX_MODULES}", self.modules.len()));
    }
    let bytes: usize = self.modules.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_UPLOAD_BYTES {
      return Err(format!("{bytes} bytes of modules: at most {MAX_UPLOAD_BYTES}"));
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
      edge_core::host::check_host_pattern(r, true).map_err(|m| format!("routes: {m}"))?;
    }
    self
      .meta
      .limits
      .check()
      .map_err(|(field, m)| format!("limits.{field}: {m}"))?;
    if self.meta.vars.keys().any(|k| k.is_empty()) {
      return Err("vars: a var needs a name".into());
    }
    if self.meta.vars.len() > MAX_VARS {
      return Err(format!("vars: {} of them, at most {MAX_VARS}", self.meta.vars.len()));
    }
    if let Some((k, v)) = self
      .meta
      .vars
      .iter()
      .find(|(k, v)| k.len() > MAX_VAR_NAME || v.len() > MAX_VAR_BYTES)
    {
      return Err(format!(
        "vars: {:?} ({} bytes of name, {} of value): at most {MAX_VAR_NAME} and {MAX_VAR_BYTES}",
        k.chars().take(32).collect::<String>(),
        k.len(),
        v.len()
      ));
    }
    if self.meta.vars.len() + self.meta.secrets.0.len() > MAX_VARS {
      return Err(format!("vars and secrets: at most {MAX_VARS} in all"));
    }
    if let Some(k) = self
      .meta
      .secrets
      .0
      .iter()
      .find(|(k, v)| k.len() > MAX_VAR_NAME || v.len() > MAX_VAR_BYTES)
      .map(|(k, _)| k)
    {
      return Err(format!(
        "secrets: {:?}: at most {MAX_VAR_NAME} bytes of name and {MAX_VAR_BYTES} of value",
        k.chars().take(32).collect::<String>()
      ));
    }
    check_bindings(
      &self.meta.vars,
      &self.meta.secrets.0,
      Bindings {
        kv: &self.meta.kv,
        d1: &self.meta.d1,
        r2: &self.meta.r2,
        services: &self.meta.services,
        queues: &self.meta.queues.producers,
      },
    )
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

  /// The upload as a deployable spec, its modules held in memory.
  pub fn spec(&self) -> Result<WorkerSpec, String> {
    let files = self.modules.iter().map(|(k, v)| (k.clone(), Arc::<[u8]>::from(&v[..])));
    let source = MemorySource::new(&self.name, files)?;
    Ok(WorkerSpec {
      name: self.name.clone(),
      main_module: self.meta.main_module.clone(),
      modules: source.paths(),
      source: Arc::new(source),
      version: self.version(),
      routes: self.meta.routes.clone(),
      vars: self.meta.vars.clone(),
      kv: self.meta.kv.clone(),
      d1: self.meta.d1.clone(),
      r2: self.meta.r2.clone(),
      services: self.meta.services.clone(),
      triggers: self.meta.triggers.clone(),
      queues: self.meta.queues.clone(),
      secrets: self.meta.secrets.clone(),
      limits: self.meta.limits.clone(),
      allow_private_network: self.meta.allow_private_network,
      compatibility_flags: self.meta.compatibility_flags.clone(),
    })
  }
}
