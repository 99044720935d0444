//! The runtime as a library: [`Engine::builder`] from a [`Config`] value,
//! then serve the front door (listeners bound by the engine or handed in),
//! and/or hand it requests for a named worker from any thread
//! ([`Engine::handle_with`]), as a CDN node's proxy would; deploy and
//! remove workers with code from any module source ([`Engine::deploy`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use js_api::IsolateConfig;

use crate::config::Config;
use crate::control::admin::AdminServer;
use crate::control::cron::{CronClock, CronRunner};
use crate::control::deploy::{Deployed, Deployer, Deployments, Reloaded, WorkerInfo};
use crate::control::queues::QueueRunner;
use crate::control::store::Tidy;
use crate::dispatch::Dispatch;
use crate::error::{DeployError, RequestError, StartError};
use crate::exec::body::SendBody;
use crate::exec::jobs::{Failed, Handled};
use crate::front::accept::Listeners;
use crate::front::tls::CertStore;
use crate::front::view::ServingView;
use crate::obs::observer::{ConsoleOutput, RequestObserver};
use crate::obs::stats::{Stats, StatsSnapshot};
use crate::pool::PoolLimits;
use crate::threads::{Executors, ThreadParams};
use crate::worker::{Upload, WorkerSpec};

pub use crate::dispatch::RequestContext;

/// Builds an [`Engine`]: the config, and what a config file cannot say.
pub struct EngineBuilder {
  config: Config,
  listeners: Option<Listeners>,
  admin: Option<(TcpListener, String)>,
  observer: Option<Arc<dyn RequestObserver>>,
  console: Option<Arc<dyn ConsoleOutput>>,
  supervisor: Option<std::os::unix::net::UnixStream>,
  cron_clock: CronClock,
  /// Only load and evaluate the workers (`edge check`).
  checking: bool,
}

impl EngineBuilder {
  /// Loads and evaluates every worker of the config as a start does, and
  /// serves nothing: no listeners, no admin API, no cron or queue runs, no
  /// uploads of a data directory (which it leaves as it is). The number of
  /// workers checked, or the first that fails, named with its file and
  /// line. What `edge check` runs.
  pub fn check(mut self) -> Result<usize, StartError> {
    self.checking = true;
    self.listeners = None;
    self.admin = None;
    self.supervisor = None;
    self.config.runtime.check_at_start = true;
    self.config.admin.data_dir = None;
    let engine = Engine::start_with(self)?;
    let n = engine.view.router().workers().count();
    engine.shutdown();
    Ok(n)
  }

  /// The clock cron triggers are read on (default: real time; tests speed
  /// it up).
  pub fn cron_clock(mut self, clock: CronClock) -> Self {
    self.cron_clock = clock;
    self
  }

  /// Executor threads (0: one per core).
  pub fn threads(mut self, n: usize) -> Self {
    self.config.runtime.threads = n;
    self
  }

  /// The default limits of every worker that sets none of its own.
  pub fn limits(mut self, limits: crate::limits::LimitsConfig) -> Self {
    self.config.limits = limits;
    self
  }

  /// Pool sizes (`[runtime]` of the config).
  pub fn runtime(mut self, runtime: crate::config::RuntimeConfig) -> Self {
    self.config.runtime = runtime;
    self
  }

  /// Serve these already bound sockets (plain HTTP, TLS) instead of the
  /// config's `listen` addresses.
  pub fn listeners(mut self, http: Option<TcpListener>, https: Option<TcpListener>) -> Self {
    self.listeners = Some(Listeners { http, https });
    self
  }

  /// Serve the config's `listen` addresses, bound now.
  pub fn bind_listeners(mut self) -> Result<Self, StartError> {
    self.listeners = Some(Listeners {
      http: self.config.listen.http.map(bind).transpose()?,
      https: self.config.listen.https.map(bind).transpose()?,
    });
    if let (Some(addr), Some(token)) = (self.config.admin.listen, self.config.admin_token()?) {
      self.admin = Some((bind(addr)?, token));
    }
    Ok(self)
  }

  /// Serve the admin API on `listener`, every request carrying `token`.
  pub fn admin(mut self, listener: TcpListener, token: String) -> Self {
    self.admin = Some((listener, token));
    self
  }

  /// This engine is one process of a supervisor's (`runtime.processes` >
  /// 1): it reads the data directory at start but never writes it (the
  /// supervisor does), and answers the supervisor's admin requests on
  /// `link`.
  #[doc(hidden)]
  pub fn supervisor_link(mut self, link: std::os::unix::net::UnixStream) -> Self {
    self.supervisor = Some(link);
    self
  }

  /// Tell `observer` of every request's outcome (billing, own metrics).
  pub fn observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
    self.observer = Some(observer);
    self
  }

  /// Send workers' `console.*` lines to `output` instead of the log.
  pub fn console(mut self, output: Arc<dyn ConsoleOutput>) -> Self {
    self.console = Some(output);
    self
  }

  /// Starts the executor threads (and the admin API if given).
  pub fn start(self) -> Result<Engine, StartError> {
    Engine::start_with(self)
  }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
  let err = |e| StartError::Bind { addr, source: e };
  let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(err)?;
  let _ = sock.set_reuse_address(true);
  sock.bind(&addr.into()).map_err(err)?;
  sock.listen(1024).map_err(err)?;
  Ok(sock.into())
}

pub struct Engine {
  dispatch: Arc<Dispatch>,
  view: Arc<ServingView>,
  executors: Arc<Executors>,
  deployer: Arc<Deployer>,
  admin: Option<AdminServer>,
  cron: Option<CronRunner>,
  queues: Option<QueueRunner>,
  http_addr: Option<SocketAddr>,
  https_addr: Option<SocketAddr>,
}

/// Sets V8's process-wide flags once: no Wasm memory may grow past the
/// largest memory budget of the first engine's workers (each isolate's
/// Wasm memory also counts against its own budget: `js_api` checks it when
/// JS makes or grows a memory and every few milliseconds while JS or Wasm
/// runs). A later engine whose workers need more is told so.
fn init_v8_once(config: &Config) {
  static PAGES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
  let largest = config
    .workers
    .iter()
    .map(|w| config.limits_of(w).memory_bytes)
    .chain([config.default_limits().memory_bytes])
    .max()
    .unwrap_or(128 << 20);
  let wanted = (largest as u64 / 65536).max(1);
  let pages = *PAGES.get_or_init(|| {
    js_api::init_v8(&[&format!("--wasm-max-mem-pages={wanted}")]);
    wanted
  });
  if wanted > pages {
    tracing::warn!(
      "V8 was set up for Wasm memories of at most {} MB by this process's first engine; this one's workers allow {} MB",
      (pages * 65536) >> 20,
      (wanted * 65536) >> 20
    );
  }
}

impl Engine {
  /// A builder for an engine running `config`.
  pub fn builder(config: Config) -> EngineBuilder {
    EngineBuilder {
      config,
      listeners: None,
      admin: None,
      observer: None,
      console: None,
      supervisor: None,
      cron_clock: CronClock::real(),
      checking: false,
    }
  }

  /// Starts executor threads for `config` without listening anywhere:
  /// requests come only through [`Engine::handle_with`].
  pub fn new(config: Config) -> Result<Self, StartError> {
    Self::builder(config).start()
  }

  /// Binds the configured listeners (and admin API) and starts serving.
  pub fn start(config: Config) -> Result<Self, StartError> {
    Self::builder(config).bind_listeners()?.start()
  }

  fn start_with(b: EngineBuilder) -> Result<Self, StartError> {
    let EngineBuilder {
      config,
      listeners,
      admin,
      observer,
      console,
      supervisor,
      cron_clock,
      checking,
    } = b;
    let listeners = listeners.unwrap_or_default();
    config.validate()?;
    init_v8_once(&config);
    // The process's Cache API store is bounded once, by the first engine.
    edge_storage::cache::HttpCache::configure(config.storage.cache_mb << 20);
    let stats = Arc::new(Stats::default());
    let data_dir = config.admin.data_dir.as_ref().map(|d| config.resolve(d));
    let tls_stamp = crate::control::deploy::TlsStamp::of(&config);
    let certs = if config.tls.is_empty() {
      None
    } else {
      Some(CertStore::from_config(&config)?)
    };
    let isolate_config = isolate_config(&config)?;
    let threads = match config.runtime.threads {
      0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
      n => n,
    };
    let rt = &config.runtime;
    let id_prefix = edge_core::request_id::random_prefix();
    let params = ThreadParams {
      isolate_config,
      pool_limits: PoolLimits {
        blank_target: rt.blank_isolates,
        max_per_worker: rt.max_isolates_per_worker,
        max_per_isolate: rt.max_requests_per_isolate,
        max_isolates: rt.max_isolates.div_ceil(threads),
        max_idle_heap: (rt.max_heap_mb << 20).div_ceil(threads),
        idle_timeout: Duration::from_secs(rt.idle_timeout_s),
        max_queue: Duration::from_millis(rt.max_queue_ms),
      },
      console_limits: config.log.console(),
      encode_rate: config.server.encode_bytes_per_s,
      id_prefix,
      observer,
      console,
    };
    let http_addr = listeners.http.as_ref().and_then(|l| l.local_addr().ok());
    let https_addr = listeners.https.as_ref().and_then(|l| l.local_addr().ok());
    let (access_log, dev, door) = (config.log.access, config.dev, config.server.door());
    // A supervised process reads the data directory its supervisor writes.
    let tidy = match supervisor {
      Some(_) => Tidy::No,
      None => Tidy::Yes,
    };
    // Cron runs are claimed in the storage folder (one process of a node
    // fires each).
    let config_storage_dir = config.storage_dir();
    let test_scheduled = config.test_scheduled;
    let origin = config.origin.clone();
    let check_at_start = config.runtime.check_at_start;
    let geo = crate::front::geo::Geo::open(
      config.server.geoip.as_ref().map(|p| config.resolve(p)).as_deref(),
      config.server.geoip_asn.as_ref().map(|p| config.resolve(p)).as_deref(),
    )
    .map_err(|m| config.invalid("server.geoip", m))?;
    let client = crate::front::client::ClientSettings {
      colo: config.server.colo.clone(),
      trusted: config.server.trusted_proxies().unwrap_or_default(),
      geo: geo.map(Arc::new),
    };
    let deployments = Deployments::load(config, tls_stamp, data_dir.as_deref().map(|d| (d, tidy)), &stats)?;
    let mut view = ServingView::new(deployments.router(), certs, stats.clone(), access_log, dev, door);
    view.test_scheduled = test_scheduled;
    view.client = client;
    let view = Arc::new(view);
    // Service bindings reach other workers through the same dispatch as
    // an embedder's requests.
    let dispatch = Arc::new(Dispatch::new(id_prefix, view.clone()));
    let mut params = params;
    params.isolate_config.services = Some(dispatch.clone());
    let executors = Arc::new(Executors::start(threads, params, view.clone(), &listeners).map_err(StartError::Threads)?);
    dispatch.set_executors(&executors);
    let checked = if check_at_start {
      check_config_workers(&view, &executors, &origin)
    } else {
      Ok(())
    };
    if let Err(e) = checked {
      executors.join();
      return Err(e);
    }
    // A check (`edge check`) fires no cron and delivers no queue message.
    let (cron, queues) = if checking {
      (None, None)
    } else {
      let cron = CronRunner::start(view.clone(), dispatch.clone(), config_storage_dir, cron_clock)
        .map_err(StartError::Threads)?;
      let queues = QueueRunner::start(view.clone(), dispatch.clone()).map_err(StartError::Threads)?;
      (Some(cron), Some(queues))
    };
    let writes = if supervisor.is_some() { None } else { data_dir };
    let deployer = Arc::new(Deployer::new(deployments, writes, view.clone(), executors.clone()));
    if let Some(link) = supervisor {
      crate::control::link::serve(link, deployer.clone(), stats.clone()).map_err(StartError::Threads)?;
    }
    let admin = match admin {
      Some((listener, token)) => {
        Some(AdminServer::start(deployer.clone(), stats, listener, token).map_err(StartError::Threads)?)
      }
      None => None,
    };
    Ok(Self {
      dispatch,
      view,
      executors,
      deployer,
      admin,
      cron,
      queues,
      http_addr,
      https_addr,
    })
  }

  /// The bound plain-HTTP address (useful with port 0).
  pub fn http_addr(&self) -> Option<SocketAddr> {
    self.http_addr
  }

  /// The bound TLS address.
  pub fn https_addr(&self) -> Option<SocketAddr> {
    self.https_addr
  }

  /// The bound admin address.
  pub fn admin_addr(&self) -> Option<SocketAddr> {
    self.admin.as_ref().map(|a| a.addr)
  }

  /// The engine's counters (cold and warm starts, evictions, ...).
  pub fn stats(&self) -> StatsSnapshot {
    self.view.stats.snapshot()
  }

  /// The live counters and latency histograms.
  pub fn stats_detail(&self) -> &Stats {
    &self.view.stats
  }

  /// The counters in the Prometheus text format.
  pub fn metrics_text(&self) -> String {
    crate::obs::metrics::render(&self.view.stats)
  }

  /// [`Self::metrics_text`] from any thread, for as long as it is kept.
  pub fn metrics_source(&self) -> impl Fn() -> String + Send + Sync + 'static {
    let stats = self.view.stats.clone();
    move || crate::obs::metrics::render(&stats)
  }

  /// PEM certificates in use (self-signed ones included), in config order.
  pub fn certificates_pem(&self) -> Vec<String> {
    self
      .view
      .certs()
      .iter()
      .flat_map(|c| c.entries().iter().map(|e| e.cert_pem.clone()))
      .collect()
  }

  /// Runs `req` through the worker named `worker`, from any thread. The
  /// worker sees `req`'s URI as `request.url` (give it an absolute one).
  pub async fn handle<B>(&self, worker: &str, req: Request<B>) -> Result<Response<SendBody>, RequestError>
  where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
  {
    self
      .handle_with(worker, req, RequestContext::default())
      .await
      .map(|h| h.response)
      .map_err(|f| *f.error)
  }

  /// Runs `req` through the worker named `worker` with what the caller
  /// knows of it, and says what it cost: its id, CPU time, cold or warm.
  pub async fn handle_with<B>(&self, worker: &str, req: Request<B>, ctx: RequestContext) -> Result<Handled, Failed>
  where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
  {
    self.dispatch.handle_with(worker, req, ctx).await
  }

  /// Deploys a worker (or a new version of one) whose modules come from
  /// any source: checked in an isolate before it serves.
  pub async fn deploy(&self, spec: WorkerSpec) -> Result<Deployed, DeployError> {
    self.deployer.deploy_spec(spec).await
  }

  /// Deploys an upload (the admin API's shape), kept in the data directory
  /// if there is one.
  pub async fn deploy_upload(&self, upload: Upload) -> Result<Deployed, DeployError> {
    self.deployer.deploy(upload).await
  }

  /// Removes a deployed worker.
  pub async fn remove(&self, name: &str) -> Result<(), DeployError> {
    self.deployer.remove(name).await
  }

  /// The running workers, by name.
  pub async fn workers(&self) -> Vec<WorkerInfo> {
    self
      .deployer
      .workers()
      .await
      .iter()
      .map(|w| WorkerInfo::of(w))
      .collect()
  }

  /// Applies a new config: its workers, limits and certificates (see
  /// [`Deployer::reload`]).
  pub async fn reload(&self, config: Config) -> Result<Reloaded, DeployError> {
    self.deployer.reload(config).await
  }

  /// Stops accepting connections, lets open ones finish their requests
  /// (HTTP/1.1 connections close after the current response, HTTP/2 ones
  /// get a GOAWAY), and waits until no request holds an isolate (their
  /// streamed bodies and `waitUntil` work done) or `timeout` passes.
  /// Returns whether everything finished.
  pub async fn drain(&self, timeout: Duration) -> bool {
    self.view.start_draining();
    let until = std::time::Instant::now() + timeout;
    let s = &self.view.stats;
    loop {
      if s.open_connections.get() <= 0 && s.in_flight.get() <= 0 {
        return true;
      }
      if std::time::Instant::now() >= until {
        tracing::warn!(
          connections = s.open_connections.get(),
          requests = s.in_flight.get(),
          "drain timeout: exiting with work unfinished"
        );
        return false;
      }
      tokio::time::sleep(Duration::from_millis(10)).await;
    }
  }

  /// Stops accepting and ends the executor threads.
  pub fn shutdown(mut self) {
    self.stop();
  }

  fn stop(&mut self) {
    self.cron = None;
    self.queues = None;
    self.admin = None;
    self.executors.join();
  }
}

impl Drop for Engine {
  fn drop(&mut self) {
    self.stop();
  }
}

/// Loads and evaluates every worker once, as a deploy does, before the
/// node is handed out: a worker of the config file that fails stops the
/// start, naming it and where it failed; an uploaded one (kept in the data
/// directory) that fails is logged and answers 500 as before (one
/// tenant's upload must not keep the node down). The isolates are dropped
/// again: the pool starts as it would have.
fn check_config_workers(view: &ServingView, executors: &Executors, file: &str) -> Result<(), StartError> {
  let router = view.router();
  let mut waits = Vec::new();
  for w in router.workers() {
    if let Some(rx) = executors.prepare(w, false) {
      waits.push((w.clone(), rx));
    }
  }
  for (w, rx) in waits {
    // The executors run on their own threads: waiting here (even on an
    // async caller's thread) cannot hold them up.
    let Ok(Err(e)) = futures::executor::block_on(rx) else {
      continue;
    };
    let at = e.thrown_at().map(|p| format!(" (at {p})")).unwrap_or_default();
    let e = match &e {
      RequestError::Startup { error, .. } => error.to_string(),
      other => other.to_string(),
    };
    if w.origin == crate::worker::Origin::Config {
      return Err(StartError::Worker {
        file: file.to_string(),
        worker: w.name.to_string(),
        main: w.modules.first().cloned().unwrap_or_default(),
        message: format!("{e}{at}"),
      });
    }
    tracing::warn!(worker = %w.name, "an uploaded worker does not start: {e}{at}");
  }
  Ok(())
}

fn isolate_config(config: &Config) -> Result<IsolateConfig, StartError> {
  let mut ic = IsolateConfig {
    memory_limit_bytes: config.default_limits().memory_bytes,
    heap_slack_bytes: config.runtime.heap_slack_mb << 20,
    ..Default::default()
  };
  if !config.fetch.ca_files.is_empty() {
    let mut pems = Vec::new();
    for (i, p) in config.fetch.ca_files.iter().enumerate() {
      let p = config.resolve(p);
      pems.push(std::fs::read(&p).map_err(|e| StartError::Tls {
        file: config.origin.clone(),
        field: format!("fetch.ca_files[{i}]"),
        message: format!("cannot read {}: {e}", p.display()),
      })?);
    }
    let roots = js_api::net::RootCerts::with_extra_pem(&pems).map_err(|message| StartError::Tls {
      file: config.origin.clone(),
      field: "fetch.ca_files".into(),
      message,
    })?;
    ic.root_certs = Some(Arc::new(roots));
  }
  Ok(ic)
}
