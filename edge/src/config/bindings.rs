//! A worker's bindings as the config and uploads name them: KV, D1, R2,
//! services, queues, cron triggers and secrets, and the checks they pass.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A KV namespace on a worker's `env` (`[[worker.kv]]`, as wrangler's
/// `kv_namespaces`): `binding` is the name on `env`, `namespace` the store
/// (its file); workers naming the same namespace share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KvBinding {
  pub binding: String,
  /// Default: the binding's name.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub namespace: Option<String>,
}

impl KvBinding {
  pub fn namespace(&self) -> &str {
    self.namespace.as_deref().unwrap_or(&self.binding)
  }
}

/// A D1 database on a worker's `env` (`[[worker.d1]]`, as wrangler's
/// `d1_databases`): `binding` is the name on `env`, `database` the store
/// (its file); workers naming the same database share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct D1Binding {
  pub binding: String,
  /// Default: the binding's name.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub database: Option<String>,
}

impl D1Binding {
  pub fn database(&self) -> &str {
    self.database.as_deref().unwrap_or(&self.binding)
  }
}

/// An R2 bucket on a worker's `env` (`[[worker.r2]]`, as wrangler's
/// `r2_buckets`): `binding` is the name on `env`, `bucket_name` the store
/// (its file); workers naming the same bucket share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct R2Binding {
  pub binding: String,
  /// Default: the binding's name.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub bucket_name: Option<String>,
}

impl R2Binding {
  pub fn bucket(&self) -> &str {
    self.bucket_name.as_deref().unwrap_or(&self.binding)
  }
}

/// A worker's cron triggers (`[worker.triggers] crons = [...]`, as
/// wrangler's `[triggers]`): five-field expressions in UTC, each calling
/// the worker's `scheduled()` once a matching minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
  #[serde(default)]
  pub crons: Vec<String>,
}

/// The most cron triggers one worker may have (Cloudflare's: 5 on the free
/// plan, 250 on paid accounts).
pub const MAX_CRONS: usize = 32;

impl Triggers {
  pub fn is_empty(&self) -> bool {
    self.crons.is_empty()
  }

  /// Parses every cron.
  pub fn schedules(&self) -> Result<Vec<edge_core::cron::Schedule>, String> {
    if self.crons.len() > MAX_CRONS {
      return Err(format!(
        "triggers.crons: {} crons, at most {MAX_CRONS}",
        self.crons.len()
      ));
    }
    self
      .crons
      .iter()
      .map(|c| edge_core::cron::Schedule::parse(c).map_err(|m| format!("triggers.crons: {m}")))
      .collect()
  }
}

/// A worker's queues (`[[worker.queues.producers]]` and
/// `[[worker.queues.consumers]]`, as wrangler's `[[queues.*]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Queues {
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub producers: Vec<QueueProducer>,
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub consumers: Vec<QueueConsumer>,
}

/// A queue on a worker's `env`: `env.<binding>.send(body)` stores a message
/// in the queue `queue` (its file).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueProducer {
  pub binding: String,
  pub queue: String,
}

/// The worker's `queue(batch, env, ctx)` consumes `queue`: batches of up to
/// `max_batch_size` messages, handed over once that many are waiting or
/// the oldest has waited `max_batch_timeout` seconds. A message retried
/// more than `max_retries` times goes to `dead_letter_queue` (or is
/// dropped); a retry without its own delay waits `retry_delay` seconds,
/// doubled at each further attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConsumer {
  pub queue: String,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub max_batch_size: Option<u32>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub max_batch_timeout: Option<u32>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub max_retries: Option<u32>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub dead_letter_queue: Option<String>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub retry_delay: Option<u32>,
}

/// The most retries a consumer may ask for (Cloudflare's).
pub const MAX_RETRIES: u32 = 100;
/// The longest batch timeout, in seconds (Cloudflare's).
pub const MAX_BATCH_TIMEOUT_S: u32 = 60;

impl QueueConsumer {
  pub fn batch_size(&self) -> usize {
    self.max_batch_size.unwrap_or(10) as usize
  }
  pub fn batch_timeout_ms(&self) -> i64 {
    i64::from(self.max_batch_timeout.unwrap_or(5)) * 1000
  }
  pub fn retries(&self) -> u32 {
    self.max_retries.unwrap_or(3)
  }
  pub fn retry_delay_s(&self) -> u32 {
    self.retry_delay.unwrap_or(0)
  }

  /// Checks the settings; `Err` names the field.
  pub fn check(&self) -> Result<(), String> {
    edge_storage::check_namespace(&self.queue).map_err(|e| format!("queues.consumers: {e}"))?;
    let size = self.batch_size();
    if size == 0 || size > edge_storage::queues::MAX_CONSUMER_BATCH {
      return Err(format!(
        "queues.consumers: {}: max_batch_size {size}, from 1 to {}",
        self.queue,
        edge_storage::queues::MAX_CONSUMER_BATCH
      ));
    }
    if self.max_batch_timeout.unwrap_or(0) > MAX_BATCH_TIMEOUT_S {
      return Err(format!(
        "queues.consumers: {}: max_batch_timeout at most {MAX_BATCH_TIMEOUT_S} seconds",
        self.queue
      ));
    }
    if self.retries() > MAX_RETRIES {
      return Err(format!(
        "queues.consumers: {}: max_retries at most {MAX_RETRIES}",
        self.queue
      ));
    }
    if self.retry_delay_s() > edge_storage::queues::MAX_DELAY_S {
      return Err(format!(
        "queues.consumers: {}: retry_delay at most {} seconds",
        self.queue,
        edge_storage::queues::MAX_DELAY_S
      ));
    }
    if let Some(dlq) = &self.dead_letter_queue {
      edge_storage::check_namespace(dlq).map_err(|e| format!("queues.consumers: dead_letter_queue: {e}"))?;
      if *dlq == self.queue {
        return Err(format!(
          "queues.consumers: {dlq}: a queue cannot be its own dead_letter_queue"
        ));
      }
    }
    Ok(())
  }
}

/// The most queues one worker may consume.
pub const MAX_CONSUMERS: usize = 16;

impl Queues {
  pub fn is_empty(&self) -> bool {
    self.producers.is_empty() && self.consumers.is_empty()
  }

  /// Checks the consumers (producers are checked as bindings).
  pub fn check(&self) -> Result<(), String> {
    if self.consumers.len() > MAX_CONSUMERS {
      return Err(format!("queues.consumers: at most {MAX_CONSUMERS}"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &self.consumers {
      c.check()?;
      if !seen.insert(&c.queue) {
        return Err(format!("queues.consumers: {:?} is consumed twice", c.queue));
      }
    }
    Ok(())
  }
}

/// Another worker on a worker's `env` (`[[worker.services]]`, as
/// wrangler's `services`): `env.<binding>.fetch(request)` runs the request
/// through the worker named `service`, in process; any other method is an
/// RPC call to its `WorkerEntrypoint`. `entrypoint` names a class its main
/// module exports to call instead of the default export.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBinding {
  pub binding: String,
  pub service: String,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub entrypoint: Option<String>,
}

/// A worker's bindings to stores and other workers, as its config or
/// upload names them.
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
  pub kv: &'a [KvBinding],
  pub d1: &'a [D1Binding],
  pub r2: &'a [R2Binding],
  pub services: &'a [ServiceBinding],
  /// Queue producers.
  pub queues: &'a [QueueProducer],
}

/// Secret values (`[worker.secrets]`, a `secrets_file`, an upload's
/// `secrets`): on `env` as strings like vars, but never printed (`Debug`
/// names them only) nor listed by the admin API.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_map().entries(self.0.keys().map(|k| (k, "<secret>"))).finish()
  }
}

impl Secrets {
  pub fn is_empty(&self) -> bool {
    self.0.is_empty()
  }
}

/// Reads an env file of secrets (`NAME=value` lines).
pub fn read_secrets_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
  let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
  let pairs = edge_core::envfile::parse(&text).map_err(|(line, m)| format!("{}:{line}: {m}", path.display()))?;
  Ok(pairs.into_iter().collect())
}

/// The most bindings (KV, D1, R2, services and queues) one worker may have.
pub const MAX_BINDINGS: usize = 64;

/// Checks a worker's bindings: names that are JS identifiers, none given
/// twice (vars included), namespaces that name files, services that name
/// workers.
pub fn check_bindings(
  vars: &BTreeMap<String, String>,
  secrets: &BTreeMap<String, String>,
  bindings: Bindings<'_>,
) -> Result<(), String> {
  let Bindings {
    kv,
    d1,
    r2,
    services,
    queues,
  } = bindings;
  for k in secrets.keys() {
    if k.is_empty() {
      return Err("secrets: a secret needs a name".into());
    }
    if vars.contains_key(k) {
      return Err(format!("secrets: {k:?} is a var too"));
    }
  }
  let count = kv.len() + d1.len() + r2.len() + services.len() + queues.len();
  if count > MAX_BINDINGS {
    return Err(format!(
      "kv, d1, r2, services and queues: {count} bindings, at most {MAX_BINDINGS}"
    ));
  }
  let mut seen = std::collections::BTreeSet::new();
  let all = kv
    .iter()
    .map(|b| ("kv", &b.binding, b.namespace()))
    .chain(d1.iter().map(|b| ("d1", &b.binding, b.database())))
    .chain(r2.iter().map(|b| ("r2", &b.binding, b.bucket())))
    .chain(services.iter().map(|b| ("services", &b.binding, b.service.as_str())))
    .chain(
      queues
        .iter()
        .map(|b| ("queues.producers", &b.binding, b.queue.as_str())),
    );
  for (kind, binding, target) in all {
    if !is_identifier(binding) {
      return Err(format!(
        "{kind}: binding {binding:?} is not a name (letters, digits, '_' and '$', at most 64)"
      ));
    }
    if vars.contains_key(binding) || secrets.contains_key(binding) || !seen.insert(binding.as_str()) {
      return Err(format!("{kind}: {binding:?} is bound twice"));
    }
    if kind == "services" {
      edge_core::names::check_worker_name(target).map_err(|e| format!("{kind}: {binding}: {e}"))?;
    } else {
      edge_storage::check_namespace(target).map_err(|e| format!("{kind}: {e}"))?;
    }
  }
  for b in services {
    if let Some(e) = &b.entrypoint {
      if !is_identifier(e) || e == "default" {
        return Err(format!(
          "services: {}: entrypoint {e:?} is not the name of an export (letters, digits, '_' and '$', at most 64; leave it out for the default export)",
          b.binding
        ));
      }
    }
  }
  Ok(())
}

/// The compatibility flags edge acts on (Workers has many more; a config
/// naming one edge does not know is refused rather than half-honoured).
pub const COMPATIBILITY_FLAGS: &[&str] = &["nodejs_compat", "nodejs_compat_v2", "nodejs_als"];

/// Checks a worker's `compatibility_flags`.
pub fn check_compatibility_flags(flags: &[String]) -> Result<(), String> {
  match flags.iter().find(|f| !COMPATIBILITY_FLAGS.contains(&f.as_str())) {
    Some(f) => Err(format!(
      "compatibility_flags: {f:?} is not a flag edge knows (it knows {})",
      COMPATIBILITY_FLAGS.join(", ")
    )),
    None => Ok(()),
  }
}

/// A JS identifier of at most 64 ASCII characters (binding and export
/// names).
fn is_identifier(name: &str) -> bool {
  !name.is_empty()
    && name.len() <= 64
    && name
      .chars()
      .enumerate()
      .all(|(i, c)| c == '_' || c == '$' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}
