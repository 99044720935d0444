//! The server's configuration: a TOML file (or a value built in code),
//! checked by [`Config::validate`] with messages naming the file and field.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

mod bindings;
pub mod wrangler;
pub use bindings::*;
use edge_core::host::check_host_pattern;
use edge_core::limits::{Limits, LimitsConfig};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
  #[serde(default)]
  pub listen: Listen,
  #[serde(default)]
  pub runtime: RuntimeConfig,
  #[serde(default)]
  pub fetch: FetchConfig,
  /// Default limits of every worker's requests.
  #[serde(default)]
  pub limits: LimitsConfig,
  #[serde(default)]
  pub tls: Vec<TlsEntry>,
  #[serde(default)]
  pub server: ServerConfig,
  #[serde(default)]
  pub log: LogConfig,
  /// The admin API; off unless `[admin] listen` is set.
  #[serde(default)]
  pub admin: AdminConfig,
  /// Where the storage bindings keep their data.
  #[serde(default)]
  pub storage: StorageConfig,
  #[serde(default, rename = "worker")]
  pub workers: Vec<WorkerConfig>,
  /// Folder that relative paths are resolved against (the config file's).
  #[serde(skip)]
  pub base_dir: PathBuf,
  /// Where the config came from, for error messages.
  #[serde(skip)]
  pub origin: String,
  /// Development mode: error responses carry the exception's stack.
  #[serde(skip)]
  pub dev: bool,
  /// `edge dev --test-scheduled`: `/__scheduled?cron=...` runs the
  /// worker's `scheduled()` (as wrangler's).
  #[serde(skip)]
  pub test_scheduled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
  /// Plain HTTP/1.1 (and h2c) listener.
  pub http: Option<SocketAddr>,
  /// TLS listener, HTTP/1.1 and HTTP/2 by ALPN.
  pub https: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
  /// Executor threads; 0 means one per core.
  pub threads: usize,
  /// Blank isolates kept ready per thread for cold starts.
  pub blank_isolates: usize,
  /// Isolates one worker may have per thread. A second one is made only
  /// when the first is full (`max_requests_per_isolate`) or was stopped.
  pub max_isolates_per_worker: usize,
  /// Requests one isolate serves at once, interleaved at their awaits
  /// (sharing the worker's globals, as on Workers). Past this and
  /// `max_isolates_per_worker`, requests wait (`max_queue_ms`).
  pub max_requests_per_isolate: usize,
  /// Isolates bound to workers, over all threads; past it the least
  /// recently used idle one is dropped.
  pub max_isolates: usize,
  /// Heap of idle isolates, over all threads, in MiB; past it the least
  /// recently used idle one is dropped.
  pub max_heap_mb: usize,
  /// An isolate idle this long is dropped.
  pub idle_timeout_s: u64,
  /// How long a request may wait for an isolate of its worker (all of
  /// them busy, or the thread at its cap) before it gets 503 with
  /// Retry-After.
  pub max_queue_ms: u64,
  /// A directory where V8's code cache for workers' modules is kept, so
  /// that the first isolate of a worker after a restart skips compiling.
  pub code_cache_dir: Option<PathBuf>,
  /// Load and evaluate every worker once at start (the isolate is not
  /// kept): a config worker that fails stops the start. Off: workers are
  /// first evaluated by their first request (a node with thousands of
  /// config workers starts at once).
  pub check_at_start: bool,
  /// `edge serve` processes sharing the listeners under a supervisor that
  /// replaces one that dies, wedges or outgrows its share of
  /// `max_memory_mb`; 1: the server runs in the one process.
  pub processes: usize,
  /// The node's memory ceiling in MiB, shared evenly by the processes;
  /// 0: the machine's or its cgroup's memory, less a tenth.
  pub max_memory_mb: u64,
  /// Heap an isolate may use past its `memory_mb` while V8 finishes the
  /// step it is in, once the script has been told to stop; a step that
  /// needs more ends the process (replaced by the supervisor).
  pub heap_slack_mb: usize,
}

impl Default for RuntimeConfig {
  fn default() -> Self {
    Self {
      threads: 0,
      blank_isolates: 2,
      max_isolates_per_worker: 8,
      max_requests_per_isolate: 256,
      max_isolates: 4096,
      max_heap_mb: 8192,
      idle_timeout_s: 300,
      max_queue_ms: 10_000,
      code_cache_dir: None,
      check_at_start: true,
      processes: 1,
      max_memory_mb: 0,
      heap_slack_mb: js_api::DEFAULT_HEAP_SLACK >> 20,
    }
  }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
  /// On SIGTERM/SIGINT, how long requests in flight (and their waitUntil
  /// work) may take to finish before the process exits anyway.
  pub drain_timeout_s: u64,
  /// Client connections open at once, in all and from one address; past
  /// either a new connection is closed at accept.
  pub max_connections: usize,
  pub max_connections_per_ip: usize,
  /// From accept to the end of the TLS handshake.
  pub handshake_timeout_s: u64,
  /// A connection with no request in flight that sends and receives
  /// nothing for this long is closed (before its first request too).
  pub idle_timeout_s: u64,
  /// From a request's first byte to the end of its head.
  pub header_timeout_s: u64,
  /// A request head (request line and headers) may be this long, in KiB
  /// (past it: 431)...
  pub max_header_kb: usize,
  /// ...and its request line, or any one header line, this long (past
  /// it: 414 for the line, 431 for a header).
  pub max_header_line_kb: usize,
  /// A connection whose client reads nothing of what it is sent for this
  /// long is closed.
  pub send_timeout_s: u64,
  /// A request body must arrive at this rate on average, after the grace
  /// below (past it: 408); 0: no minimum.
  pub min_body_bytes_per_s: u64,
  pub body_rate_grace_s: u64,
  /// HTTP/1.1 heads and trailers whose lines end in a bare LF (no CR) are
  /// accepted (RFC 9112 2.2 allows it); off: they are 400.
  pub allow_bare_lf: bool,
  /// Bytes a second the server compresses for one worker's responses (a
  /// `Content-Encoding` it applies), a second's worth as the burst; past
  /// it they slow down. 0: no limit. Read at start.
  pub encode_bytes_per_s: u64,
  /// This node's colo, as `request.cf.colo` (a data center code).
  pub colo: Option<String>,
  /// Proxies in front of the node (addresses or CIDR ranges) whose
  /// `CF-Connecting-IP` and `X-Forwarded-For` name the client; from any
  /// other peer those headers are replaced.
  pub trusted_proxies: Vec<String>,
  /// A MaxMind-format City or Country database (GeoLite2-City.mmdb),
  /// relative to the config: `request.cf.country`, `city`, `latitude`, ...
  /// Read at start.
  pub geoip: Option<PathBuf>,
  /// A MaxMind-format ASN database: `request.cf.asn`, `asOrganization`.
  pub geoip_asn: Option<PathBuf>,
}

impl Default for ServerConfig {
  fn default() -> Self {
    let d = DoorLimits::default();
    Self {
      drain_timeout_s: 30,
      max_connections: d.max_connections,
      max_connections_per_ip: d.max_connections_per_ip,
      handshake_timeout_s: d.handshake_timeout.as_secs(),
      idle_timeout_s: d.idle_timeout.as_secs(),
      header_timeout_s: d.header_timeout.as_secs(),
      max_header_kb: d.max_header_bytes >> 10,
      max_header_line_kb: d.max_header_line_bytes >> 10,
      send_timeout_s: d.send_timeout.as_secs(),
      min_body_bytes_per_s: d.min_body_rate,
      body_rate_grace_s: d.body_rate_grace.as_secs(),
      allow_bare_lf: !d.strict_lines,
      encode_bytes_per_s: 64 << 20,
      colo: None,
      trusted_proxies: Vec::new(),
      geoip: None,
      geoip_asn: None,
    }
  }
}

/// The front door's caps and timeouts (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct DoorLimits {
  pub max_connections: usize,
  pub max_connections_per_ip: usize,
  /// From accept to the end of the TLS handshake.
  pub handshake_timeout: Duration,
  /// A connection with no request in flight that reads and writes nothing
  /// for this long is closed (the first request too).
  pub idle_timeout: Duration,
  /// From a request's first byte to the end of its head (hyper's).
  pub header_timeout: Duration,
  /// A request head in all, and one line of it.
  pub max_header_bytes: usize,
  pub max_header_line_bytes: usize,
  /// A write that makes no progress for this long closes the connection.
  pub send_timeout: Duration,
  /// Bytes a second a request body must average after its grace (0: any).
  pub min_body_rate: u64,
  pub body_rate_grace: Duration,
  /// HTTP/1.1 lines must end in CRLF (`edge_core::framing`).
  pub strict_lines: bool,
}

impl Default for DoorLimits {
  fn default() -> Self {
    Self {
      max_connections: 10_000,
      max_connections_per_ip: 1_024,
      handshake_timeout: Duration::from_secs(10),
      idle_timeout: Duration::from_secs(60),
      header_timeout: Duration::from_secs(30),
      max_header_bytes: 64 << 10,
      max_header_line_bytes: 16 << 10,
      send_timeout: Duration::from_secs(30),
      min_body_rate: 240,
      body_rate_grace: Duration::from_secs(5),
      strict_lines: true,
    }
  }
}

impl ServerConfig {
  /// The front door's caps and timeouts. `max_connections` is kept under
  /// the process's open-file limit (less 512 for listeners, upstream
  /// connections and files), so that the cap, not `accept`, says no.
  /// The trusted proxies, parsed.
  pub fn trusted_proxies(&self) -> Result<Vec<edge_core::client::Cidr>, String> {
    self
      .trusted_proxies
      .iter()
      .map(|p| edge_core::client::Cidr::parse(p))
      .collect()
  }

  pub fn door(&self) -> DoorLimits {
    let mut nofile = libc::rlimit {
      rlim_cur: 0,
      rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) } == 0 {
      (nofile.rlim_cur as usize).saturating_sub(512).max(64)
    } else {
      usize::MAX
    };
    DoorLimits {
      max_connections: self.max_connections.min(fds),
      max_connections_per_ip: self.max_connections_per_ip,
      handshake_timeout: Duration::from_secs(self.handshake_timeout_s),
      idle_timeout: Duration::from_secs(self.idle_timeout_s),
      header_timeout: Duration::from_secs(self.header_timeout_s),
      max_header_bytes: self.max_header_kb << 10,
      max_header_line_bytes: self.max_header_line_kb << 10,
      send_timeout: Duration::from_secs(self.send_timeout_s),
      min_body_rate: self.min_body_bytes_per_s,
      body_rate_grace: Duration::from_secs(self.body_rate_grace_s),
      strict_lines: !self.allow_bare_lf,
    }
  }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
  /// One `access` line per request, at info level.
  pub access: bool,
  /// `console.*` lines a worker may log per second (over all its
  /// isolates); the rest are dropped and counted. 0: no limit.
  pub console_lines_per_s: u32,
  /// ...and bytes (a second's worth is the burst). 0: no limit.
  pub console_bytes_per_s: u64,
  /// A longer line is cut to this many bytes (at most 65536).
  pub console_line_bytes: usize,
}

/// What a worker may write with `console.*` (`[log]`).
#[derive(Debug, Clone, Copy)]
pub struct ConsoleLimits {
  pub lines_per_s: u32,
  pub bytes_per_s: u64,
  pub line_bytes: usize,
}

impl LogConfig {
  pub fn console(&self) -> ConsoleLimits {
    ConsoleLimits {
      lines_per_s: self.console_lines_per_s,
      bytes_per_s: self.console_bytes_per_s,
      line_bytes: self.console_line_bytes,
    }
  }
}

impl Default for LogConfig {
  fn default() -> Self {
    Self {
      access: true,
      console_lines_per_s: 200,
      console_bytes_per_s: 1 << 20,
      console_line_bytes: 16 << 10,
    }
  }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
  /// Address of the admin listener (plain HTTP; keep it on loopback or a
  /// private network).
  pub listen: Option<SocketAddr>,
  /// File holding the bearer token every admin request must carry.
  pub token_file: Option<PathBuf>,
  /// Where workers deployed through the admin API are kept, so that they
  /// survive a restart. Without it they live in memory only.
  pub data_dir: Option<PathBuf>,
  /// The most an uploaded worker may ask for; a field not set here is the
  /// server's `[limits]` value.
  #[serde(default)]
  pub max_limits: LimitsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
  /// Extra CA certificates (PEM files) trusted for subrequests over HTTPS.
  pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
  /// The folder of the KV namespaces and D1 databases (one SQLite file
  /// each, under `kv/` and `d1/`).
  /// Default: `storage/` in `admin.data_dir` if that is set, else
  /// `.edge-state/` beside the config file.
  pub dir: Option<PathBuf>,
  /// The Cache API's memory, per process (least recently used entries go
  /// first; an entry may take an eighth).
  pub cache_mb: usize,
}

impl Default for StorageConfig {
  fn default() -> Self {
    Self {
      dir: None,
      cache_mb: edge_storage::cache::DEFAULT_CACHE_BYTES >> 20,
    }
  }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsEntry {
  /// Host names this certificate serves; `*.x` covers one label under x.
  pub hosts: Vec<String>,
  pub cert: Option<PathBuf>,
  pub key: Option<PathBuf>,
  /// Generate a certificate for `hosts` at start (development).
  #[serde(default)]
  pub self_signed: bool,
  /// Served when the client sends no SNI or a name no entry has.
  #[serde(default)]
  pub default: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
  /// Required unless `wrangler` names it.
  #[serde(default)]
  pub name: String,
  /// Main module, relative to the config file (required unless `wrangler`
  /// names it).
  #[serde(default)]
  pub main: PathBuf,
  /// A wrangler config (`wrangler.toml`, `.json`, `.jsonc`, or a folder
  /// holding one), relative to the config file: the worker's name, main
  /// module, vars, bindings, triggers, queues and CPU limit come from it.
  /// `name` and `routes` set here win; `limits` here are over its.
  #[serde(default)]
  pub wrangler: Option<PathBuf>,
  /// The wrangler config's `[env.<name>]` to use.
  #[serde(default)]
  pub wrangler_env: Option<String>,
  /// Host names routed to this worker: `a.example`, `*.a.example`, or `*`
  /// (every host no other route claims).
  #[serde(default)]
  pub routes: Vec<String>,
  #[serde(default)]
  pub vars: BTreeMap<String, String>,
  /// KV namespaces on `env`.
  #[serde(default)]
  pub kv: Vec<KvBinding>,
  /// D1 databases on `env`.
  #[serde(default)]
  pub d1: Vec<D1Binding>,
  /// R2 buckets on `env`.
  #[serde(default)]
  pub r2: Vec<R2Binding>,
  /// Other workers on `env`, called in process.
  #[serde(default)]
  pub services: Vec<ServiceBinding>,
  /// Cron triggers.
  #[serde(default)]
  pub triggers: Triggers,
  /// Queues it sends to and consumes.
  #[serde(default)]
  pub queues: Queues,
  /// Secrets on `env` (over those of `secrets_file`).
  #[serde(default)]
  pub secrets: Secrets,
  /// An env file of secrets (`NAME=value` lines), relative to the config.
  #[serde(default)]
  pub secrets_file: Option<PathBuf>,
  /// Let `fetch()` reach loopback and private addresses.
  #[serde(default)]
  pub allow_private_network: bool,
  /// Workers' compatibility flags edge acts on: `nodejs_compat` (the Node
  /// built-ins edge has), `nodejs_als` (`node:async_hooks` only).
  #[serde(default)]
  pub compatibility_flags: Vec<String>,
  /// This worker's own limits (fields not set come from `[limits]`).
  #[serde(default)]
  pub limits: LimitsConfig,
}

impl WorkerConfig {
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

impl Config {
  /// Reads, parses and validates a config file.
  pub fn load(path: &Path) -> Result<Self, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
      file: origin.clone(),
      source: e,
    })?;
    let mut config = Self::parse(&text, &origin)?;
    config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if config.base_dir.as_os_str().is_empty() {
      config.base_dir = PathBuf::from(".");
    }
    config.expand_wrangler()?;
    config.validate()?;
    Ok(config)
  }

  /// Fills each `[[worker]]` that names a `wrangler` config from it (its
  /// notes logged: what of it edge ignores).
  pub fn expand_wrangler(&mut self) -> Result<(), ConfigError> {
    for i in 0..self.workers.len() {
      let Some(path) = self.workers[i].wrangler.clone() else {
        continue;
      };
      let field = |f: &str| format!("worker[{i}].{f}");
      let at = self.resolve(&path);
      let file = wrangler::find(&at).ok_or_else(|| {
        self.invalid(
          field("wrangler"),
          format!(
            "{}: no wrangler.toml, wrangler.json or wrangler.jsonc there",
            at.display()
          ),
        )
      })?;
      let w = &self.workers[i];
      let own = [
        ("main", w.main.as_os_str().is_empty()),
        ("vars", w.vars.is_empty()),
        ("kv", w.kv.is_empty()),
        ("d1", w.d1.is_empty()),
        ("r2", w.r2.is_empty()),
        ("services", w.services.is_empty()),
        ("triggers", w.triggers.is_empty()),
        ("queues", w.queues.is_empty()),
      ];
      if let Some((f, _)) = own.iter().find(|(_, unset)| !unset) {
        return Err(self.invalid(
          field(f),
          format!("set in {} (this worker's wrangler config)", file.display()),
        ));
      }
      let from = wrangler::load(&file, w.wrangler_env.as_deref()).map_err(|m| self.invalid(field("wrangler"), m))?;
      for n in &from.notes {
        tracing::warn!(worker = from.worker.name, "{}: {n}", file.display());
      }
      let w = &mut self.workers[i];
      let mut next = from.worker;
      if !w.name.is_empty() {
        next.name = std::mem::take(&mut w.name);
      }
      if !w.routes.is_empty() {
        next.routes = std::mem::take(&mut w.routes);
      }
      next.limits = next.limits.with_overrides(&w.limits);
      next.secrets = std::mem::take(&mut w.secrets);
      next.secrets_file = w.secrets_file.take();
      next.allow_private_network = w.allow_private_network;
      if !w.compatibility_flags.is_empty() {
        next.compatibility_flags = std::mem::take(&mut w.compatibility_flags);
      }
      next.wrangler = Some(file);
      next.wrangler_env = w.wrangler_env.take();
      *w = next;
    }
    Ok(())
  }

  /// Parses TOML text; `origin` names it in errors.
  pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
    let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
      file: origin.to_string(),
      message: e.to_string(),
    })?;
    config.origin = origin.to_string();
    Ok(config)
  }

  /// A path from the config, made absolute against the config's folder.
  pub fn resolve(&self, p: &Path) -> PathBuf {
    if p.is_absolute() {
      p.to_path_buf()
    } else {
      self.base_dir.join(p)
    }
  }

  /// An error in field `field` of this config.
  pub fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
      file: self.origin.clone(),
      field: field.into(),
      message: message.into(),
    }
  }

  /// The folder of the storage bindings (see [`StorageConfig::dir`]).
  pub fn storage_dir(&self) -> PathBuf {
    match (&self.storage.dir, &self.admin.data_dir) {
      (Some(d), _) => self.resolve(d),
      (None, Some(d)) => self.resolve(d).join("storage"),
      (None, None) => self.base_dir.join(".edge-state"),
    }
  }

  /// The secrets of `w`: its `secrets_file`'s, then its `secrets`.
  pub fn secrets_of(&self, w: &WorkerConfig) -> Result<BTreeMap<String, String>, String> {
    let mut all = match &w.secrets_file {
      Some(p) => read_secrets_file(&self.resolve(p))?,
      None => BTreeMap::new(),
    };
    all.extend(w.secrets.0.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(all)
  }

  /// The limits of `w`: its own, then the server's, then the defaults.
  pub fn limits_of(&self, w: &WorkerConfig) -> Limits {
    self.default_limits().with(&w.limits)
  }

  /// The limits of a worker that sets none of its own.
  pub fn default_limits(&self) -> Limits {
    Limits::default().with(&self.limits)
  }

  /// The most a worker uploaded through the admin API may set its limits
  /// to: `[admin.max_limits]` over `[limits]` over the defaults.
  pub fn upload_ceiling(&self) -> Limits {
    Limits::default().with(&self.limits).with(&self.admin.max_limits)
  }

  fn check_limits(&self, field: &str, l: &LimitsConfig) -> Result<(), ConfigError> {
    l.check()
      .map_err(|(name, m)| self.invalid(format!("{field}.{name}"), m))
  }

  /// The admin token, read from `admin.token_file` (surrounding whitespace
  /// trimmed).
  pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
    let (Some(_), Some(file)) = (&self.admin.listen, &self.admin.token_file) else {
      return Ok(None);
    };
    let p = self.resolve(file);
    let token = std::fs::read_to_string(&p)
      .map_err(|e| self.invalid("admin.token_file", format!("cannot read {}: {e}", p.display())))?;
    let token = token.trim();
    if token.len() < 16 {
      return Err(self.invalid("admin.token_file", "the token must be at least 16 characters"));
    }
    Ok(Some(token.to_string()))
  }

  /// Checks everything that can be checked without starting: listeners,
  /// certificates' files, workers' files, duplicate names and routes.
  pub fn validate(&self) -> Result<(), ConfigError> {
    if self.listen.https.is_some() && self.tls.is_empty() {
      return Err(self.invalid("tls", "listen.https needs at least one [[tls]] entry"));
    }
    if self.runtime.max_isolates_per_worker == 0 {
      return Err(self.invalid("runtime.max_isolates_per_worker", "must be at least 1"));
    }
    if self.runtime.max_requests_per_isolate == 0 {
      return Err(self.invalid("runtime.max_requests_per_isolate", "must be at least 1"));
    }
    if self.runtime.max_isolates == 0 {
      return Err(self.invalid("runtime.max_isolates", "must be at least 1"));
    }
    if self.runtime.max_queue_ms == 0 {
      return Err(self.invalid("runtime.max_queue_ms", "must be at least 1"));
    }
    if self.runtime.idle_timeout_s == 0 {
      return Err(self.invalid("runtime.idle_timeout_s", "must be at least 1"));
    }
    if !(64..=65536).contains(&self.runtime.heap_slack_mb) {
      return Err(self.invalid("runtime.heap_slack_mb", "must be 64-65536"));
    }
    if !(1..=65536).contains(&self.storage.cache_mb) {
      return Err(self.invalid("storage.cache_mb", "must be 1-65536"));
    }
    if !(1..=64).contains(&self.runtime.processes) {
      return Err(self.invalid("runtime.processes", "must be 1-64"));
    }
    self.check_limits("limits", &self.limits)?;
    self.check_limits("admin.max_limits", &self.admin.max_limits)?;
    for (field, v) in [
      ("server.max_connections", self.server.max_connections as u64),
      (
        "server.max_connections_per_ip",
        self.server.max_connections_per_ip as u64,
      ),
      ("server.handshake_timeout_s", self.server.handshake_timeout_s),
      ("server.idle_timeout_s", self.server.idle_timeout_s),
      ("server.header_timeout_s", self.server.header_timeout_s),
      ("server.send_timeout_s", self.server.send_timeout_s),
    ] {
      if v == 0 {
        return Err(self.invalid(field, "must be at least 1"));
      }
    }
    if !(1..=js_api::MAX_LOG_LINE).contains(&self.log.console_line_bytes) {
      return Err(self.invalid("log.console_line_bytes", format!("must be 1-{}", js_api::MAX_LOG_LINE)));
    }
    // hyper's read buffer, which holds the head, has a floor of 8 KiB.
    if !(8..=1024).contains(&self.server.max_header_kb) {
      return Err(self.invalid("server.max_header_kb", "must be 8-1024"));
    }
    if !(1..=self.server.max_header_kb).contains(&self.server.max_header_line_kb) {
      return Err(self.invalid(
        "server.max_header_line_kb",
        "must be at least 1 and at most server.max_header_kb",
      ));
    }
    self
      .server
      .trusted_proxies()
      .map_err(|m| self.invalid("server.trusted_proxies", m))?;
    if let Some(colo) = &self.server.colo {
      if colo.is_empty() || colo.len() > 16 || !colo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(self.invalid("server.colo", "letters, digits and '-', at most 16"));
      }
    }
    if self.admin.listen.is_some() && self.admin.token_file.is_none() {
      return Err(self.invalid("admin.token_file", "the admin listener needs a token_file"));
    }
    let clash = |a: SocketAddr| a.port() != 0 && (Some(a) == self.listen.http || Some(a) == self.listen.https);
    if self.admin.listen.is_some_and(clash) {
      return Err(self.invalid(
        "admin.listen",
        "the admin API needs its own address, not a public listener's",
      ));
    }
    self.admin_token()?;
    for (i, ca) in self.fetch.ca_files.iter().enumerate() {
      let p = self.resolve(ca);
      if !p.is_file() {
        return Err(self.invalid(format!("fetch.ca_files[{i}]"), format!("cannot read {}", p.display())));
      }
    }
    let mut defaults = 0;
    for (i, t) in self.tls.iter().enumerate() {
      let field = |f: &str| format!("tls[{i}].{f}");
      if t.hosts.is_empty() {
        return Err(self.invalid(field("hosts"), "list at least one host"));
      }
      for h in &t.hosts {
        check_host_pattern(h, false).map_err(|m| self.invalid(field("hosts"), m))?;
      }
      match (t.self_signed, &t.cert, &t.key) {
        (true, None, None) => {}
        (true, _, _) => {
          return Err(self.invalid(field("self_signed"), "give either cert/key or self_signed, not both"))
        }
        (false, Some(c), Some(k)) => {
          for (name, p) in [("cert", c), ("key", k)] {
            let p = self.resolve(p);
            std::fs::metadata(&p)
              .map_err(|e| self.invalid(field(name), format!("cannot read {}: {e}", p.display())))?;
          }
        }
        (false, _, _) => return Err(self.invalid(field("cert"), "give both cert and key (or self_signed = true)")),
      }
      if t.default {
        defaults += 1;
      }
    }
    if defaults > 1 {
      return Err(self.invalid("tls", "only one entry may be default = true"));
    }
    let mut names = HashSet::new();
    let mut routes: BTreeMap<String, &str> = BTreeMap::new();
    for (i, w) in self.workers.iter().enumerate() {
      let field = |f: &str| format!("worker[{i}].{f}");
      edge_core::names::check_worker_name(&w.name).map_err(|m| self.invalid(field("name"), m))?;
      if w.main.as_os_str().is_empty() {
        return Err(self.invalid(
          field("main"),
          "the worker's main module, or wrangler = \"<its wrangler config>\"",
        ));
      }
      if !names.insert(w.name.as_str()) {
        return Err(self.invalid(field("name"), format!("two workers are named {:?}", w.name)));
      }
      let main = self.resolve(&w.main);
      if !main.is_file() {
        return Err(self.invalid(field("main"), format!("no such file: {}", main.display())));
      }
      for r in &w.routes {
        check_host_pattern(r, true).map_err(|m| self.invalid(field("routes"), m))?;
        let key = r.to_ascii_lowercase();
        if let Some(other) = routes.insert(key, &w.name) {
          return Err(self.invalid(
            field("routes"),
            format!("route {r:?} is claimed by both {other:?} and {:?}", w.name),
          ));
        }
      }
      self.check_limits(&field("limits"), &w.limits)?;
      for k in w.vars.keys() {
        if k.is_empty() {
          return Err(self.invalid(field("vars"), "a var needs a name"));
        }
      }
      let secrets = self.secrets_of(w).map_err(|m| self.invalid(field("secrets_file"), m))?;
      check_bindings(&w.vars, &secrets, w.bindings()).map_err(|m| self.invalid(field("bindings"), m))?;
      w.triggers.schedules().map_err(|m| self.invalid(field("triggers"), m))?;
      w.queues.check().map_err(|m| self.invalid(field("queues"), m))?;
      bindings::check_compatibility_flags(&w.compatibility_flags)
        .map_err(|m| self.invalid(field("compatibility_flags"), m))?;
    }
    // A service the config names must be one of its workers, unless the
    // admin API may deploy it later (a call to a worker not deployed
    // rejects).
    if self.admin.listen.is_none() {
      for (i, w) in self.workers.iter().enumerate() {
        if let Some(s) = w.services.iter().find(|s| !names.contains(s.service.as_str())) {
          return Err(self.invalid(
            format!("worker[{i}].services"),
            format!("{}: no worker named {:?} in this config", s.binding, s.service),
          ));
        }
      }
    }
    Ok(())
  }
}
