//! A worker from a wrangler config (`wrangler.toml`, `wrangler.json`,
//! `wrangler.jsonc`): the fields edge has are mapped onto a
//! [`WorkerConfig`]; every field it does not have is named in a note (the
//! caller logs them), so a project runs as is and says what it lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{
  D1Binding, KvBinding, QueueConsumer, QueueProducer, Queues, R2Binding, ServiceBinding, Triggers, WorkerConfig,
};

/// The file names wrangler reads, in its order of preference.
pub const FILE_NAMES: [&str; 3] = ["wrangler.jsonc", "wrangler.json", "wrangler.toml"];

/// Whether `path` names a wrangler config file.
pub fn is_wrangler_file(path: &Path) -> bool {
  path
    .file_name()
    .and_then(|n| n.to_str())
    .is_some_and(|n| FILE_NAMES.contains(&n))
}

/// The wrangler config of `path`: the file itself, or the one in the
/// folder it names.
pub fn find(path: &Path) -> Option<PathBuf> {
  if path.is_dir() {
    FILE_NAMES.iter().map(|n| path.join(n)).find(|p| p.is_file())
  } else {
    is_wrangler_file(path).then(|| path.to_path_buf())
  }
}

/// A worker as a wrangler config describes it, and what of it edge
/// ignores.
#[derive(Debug)]
pub struct FromWrangler {
  /// `main` is absolute (resolved against the file's folder).
  pub worker: WorkerConfig,
  /// One line per field ignored or changed in meaning.
  pub notes: Vec<String>,
}

/// Reads the wrangler config at `path`; `env` picks an `[env.<name>]`.
pub fn load(path: &Path, env: Option<&str>) -> Result<FromWrangler, String> {
  let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
  let dir = path
    .parent()
    .map(Path::to_path_buf)
    .unwrap_or_else(|| PathBuf::from("."));
  let dir = dir.canonicalize().unwrap_or(dir);
  let toml = path.extension().is_some_and(|e| e == "toml");
  let tree = parse(&text, toml).map_err(|m| format!("{}: {m}", path.display()))?;
  from_tree(tree, &dir, env).map_err(|m| format!("{}: {m}", path.display()))
}

/// The file's text as a JSON tree (TOML converted; JSONC's comments and
/// trailing commas allowed).
pub fn parse(text: &str, toml: bool) -> Result<Value, String> {
  if toml {
    let v: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(v).map_err(|e| e.to_string())
  } else {
    let options = jsonc_parser::ParseOptions::default();
    jsonc_parser::parse_to_serde_value::<Value>(text, &options).map_err(|e| e.to_string())
  }
}

#[derive(Deserialize, Default)]
struct Wrangler {
  name: Option<String>,
  main: Option<String>,
  #[serde(default)]
  compatibility_flags: Vec<String>,
  #[serde(default)]
  vars: BTreeMap<String, Value>,
  route: Option<Value>,
  #[serde(default)]
  routes: Vec<Value>,
  #[serde(default)]
  kv_namespaces: Vec<Kv>,
  #[serde(default)]
  d1_databases: Vec<D1>,
  #[serde(default)]
  r2_buckets: Vec<R2>,
  #[serde(default)]
  services: Vec<Service>,
  triggers: Option<WTriggers>,
  queues: Option<WQueues>,
  limits: Option<WLimits>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct Kv {
  binding: String,
  id: Option<String>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct D1 {
  binding: String,
  database_name: Option<String>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct R2 {
  binding: String,
  bucket_name: Option<String>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct Service {
  binding: String,
  service: String,
  #[serde(default)]
  entrypoint: Option<String>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct WTriggers {
  #[serde(default)]
  crons: Vec<String>,
}

#[derive(Deserialize)]
struct WQueues {
  #[serde(default)]
  producers: Vec<Producer>,
  #[serde(default)]
  consumers: Vec<Consumer>,
}

#[derive(Deserialize)]
struct Producer {
  binding: String,
  queue: String,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct Consumer {
  queue: String,
  max_batch_size: Option<u32>,
  max_batch_timeout: Option<u32>,
  max_retries: Option<u32>,
  dead_letter_queue: Option<String>,
  retry_delay: Option<u32>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct WLimits {
  cpu_ms: Option<u64>,
  #[serde(flatten)]
  other: BTreeMap<String, Value>,
}

/// Fields with no meaning here that need no note (wrangler's deploy
/// settings).
const QUIET: [&str; 6] = [
  "$schema",
  "compatibility_date",
  "workers_dev",
  "preview_urls",
  "account_id",
  "send_metrics",
];

/// Top-level bindings edge does not provide: `env.<binding>` is undefined.
const MISSING_BINDINGS: [&str; 14] = [
  "durable_objects",
  "ai",
  "browser",
  "vectorize",
  "hyperdrive",
  "analytics_engine_datasets",
  "workflows",
  "dispatch_namespaces",
  "mtls_certificates",
  "send_email",
  "images",
  "version_metadata",
  "secrets_store_secrets",
  "assets",
];

fn note_other(notes: &mut Vec<String>, at: &str, other: &BTreeMap<String, Value>) {
  for k in other.keys() {
    notes.push(format!("{at}.{k}: ignored"));
  }
}

/// A name a store's file may have: `s` itself if it is one.
fn store_name(s: Option<&str>) -> Option<String> {
  s.filter(|s| edge_storage::check_namespace(s).is_ok())
    .map(str::to_string)
}

/// The hosts of a route pattern (`example.com/*`, `*.example.com/api/*`;
/// `*example.com/*` is the zone and its subdomains).
fn route_hosts(pattern: &str, notes: &mut Vec<String>) -> Vec<String> {
  let (host, path) = match pattern.split_once('/') {
    Some((h, p)) => (h, p),
    None => (pattern, ""),
  };
  if !path.is_empty() && path != "*" {
    notes.push(format!(
      "routes: {pattern:?}: edge routes by host only; every path of {host:?} goes to this worker"
    ));
  }
  match host.strip_prefix('*') {
    Some(zone) if !zone.starts_with('.') && !zone.is_empty() => vec![zone.to_string(), format!("*.{zone}")],
    _ => vec![host.to_string()],
  }
}

fn from_tree(mut tree: Value, dir: &Path, env: Option<&str>) -> Result<FromWrangler, String> {
  let mut notes = Vec::new();
  let Some(top) = tree.as_object_mut() else {
    return Err("not a table of settings".into());
  };
  let envs = top.remove("env");
  if let Some(name) = env {
    let section = envs
      .as_ref()
      .and_then(|e| e.get(name))
      .and_then(Value::as_object)
      .ok_or_else(|| format!("env.{name}: no such environment"))?;
    // As wrangler does: an environment's keys replace the top level's
    // (its bindings are not inherited), and its name is <name>-<env>.
    let base = top.get("name").and_then(Value::as_str).map(|n| format!("{n}-{name}"));
    for key in MISSING_BINDINGS.iter().chain(&[
      "kv_namespaces",
      "d1_databases",
      "r2_buckets",
      "services",
      "queues",
      "vars",
    ]) {
      top.remove(*key);
    }
    if let Some(base) = base {
      top.insert("name".into(), Value::String(base));
    }
    for (k, v) in section {
      top.insert(k.clone(), v.clone());
    }
  }
  let w: Wrangler = serde_json::from_value(tree).map_err(|e| e.to_string())?;
  let name = w.name.ok_or("name: a worker needs a name")?;
  let main = w
    .main
    .ok_or("main: a worker needs its main module (bundle it first if wrangler builds it)")?;
  let main = dir.join(main);
  let mut compatibility_flags = Vec::new();
  for f in &w.compatibility_flags {
    if !super::COMPATIBILITY_FLAGS.contains(&f.as_str()) {
      notes.push(format!("compatibility_flags: {f:?}: ignored"));
      continue;
    }
    if js_api::NodeCompat::from_flags(std::slice::from_ref(f)) == js_api::NodeCompat::Full {
      notes.push(format!(
        "compatibility_flags: {f:?}: edge has {} of the Node built-ins; imports of the others fail",
        js_api::node_builtins_list()
      ));
    }
    compatibility_flags.push(f.clone());
  }
  let mut vars = BTreeMap::new();
  for (k, v) in w.vars {
    let text = match v {
      Value::String(s) => s,
      other => {
        notes.push(format!("vars.{k}: not a string; env.{k} is its JSON text"));
        other.to_string()
      }
    };
    vars.insert(k, text);
  }
  let mut routes = Vec::new();
  for r in w.route.into_iter().chain(w.routes) {
    let pattern = match &r {
      Value::String(s) => s.clone(),
      Value::Object(o) => match o.get("pattern").and_then(Value::as_str) {
        Some(p) => p.to_string(),
        None => return Err(format!("routes: {r}: a route needs a pattern")),
      },
      _ => return Err(format!("routes: {r}: a pattern or {{ pattern = ... }}")),
    };
    routes.extend(route_hosts(&pattern, &mut notes));
  }
  let kv = w
    .kv_namespaces
    .into_iter()
    .enumerate()
    .map(|(i, k)| {
      note_other(&mut notes, &format!("kv_namespaces[{i}]"), &k.other);
      KvBinding {
        namespace: store_name(k.id.as_deref()),
        binding: k.binding,
      }
    })
    .collect();
  let d1 = w
    .d1_databases
    .into_iter()
    .enumerate()
    .map(|(i, d)| {
      let quiet: BTreeMap<_, _> = d.other.into_iter().filter(|(k, _)| k != "database_id").collect();
      note_other(&mut notes, &format!("d1_databases[{i}]"), &quiet);
      D1Binding {
        database: store_name(d.database_name.as_deref()),
        binding: d.binding,
      }
    })
    .collect();
  let r2 = w
    .r2_buckets
    .into_iter()
    .enumerate()
    .map(|(i, b)| {
      note_other(&mut notes, &format!("r2_buckets[{i}]"), &b.other);
      R2Binding {
        bucket_name: store_name(b.bucket_name.as_deref()),
        binding: b.binding,
      }
    })
    .collect();
  let services = w
    .services
    .into_iter()
    .enumerate()
    .map(|(i, s)| {
      note_other(&mut notes, &format!("services[{i}]"), &s.other);
      ServiceBinding {
        binding: s.binding,
        service: s.service,
        entrypoint: s.entrypoint,
      }
    })
    .collect();
  let mut queues = Queues::default();
  if let Some(q) = w.queues {
    for (i, p) in q.producers.into_iter().enumerate() {
      note_other(&mut notes, &format!("queues.producers[{i}]"), &p.other);
      queues.producers.push(QueueProducer {
        binding: p.binding,
        queue: p.queue,
      });
    }
    for (i, c) in q.consumers.into_iter().enumerate() {
      note_other(&mut notes, &format!("queues.consumers[{i}]"), &c.other);
      queues.consumers.push(QueueConsumer {
        queue: c.queue,
        max_batch_size: c.max_batch_size,
        max_batch_timeout: c.max_batch_timeout,
        max_retries: c.max_retries,
        dead_letter_queue: c.dead_letter_queue,
        retry_delay: c.retry_delay,
      });
    }
  }
  let mut limits = edge_core::limits::LimitsConfig::default();
  if let Some(l) = w.limits {
    limits.cpu_ms = l.cpu_ms;
    note_other(&mut notes, "limits", &l.other);
  }
  for (k, _) in w.other {
    if QUIET.contains(&k.as_str()) {
      continue;
    }
    notes.push(if MISSING_BINDINGS.contains(&k.as_str()) {
      format!("{k}: not provided by edge; these bindings are undefined on env")
    } else {
      format!("{k}: ignored")
    });
  }
  Ok(FromWrangler {
    worker: WorkerConfig {
      name,
      main,
      routes,
      vars,
      kv,
      d1,
      r2,
      services,
      triggers: Triggers {
        crons: w.triggers.map(|t| t.crons).unwrap_or_default(),
      },
      queues,
      limits,
      compatibility_flags,
      ..Default::default()
    },
    notes,
  })
}
