//! The runtime as a library: build it from a [`Config`] value, then serve
//! the front door ([`Engine::start`] with listeners) and/or hand it requests
//! for a named worker from any thread ([`Engine::handle`]), as a CDN node's
//! proxy would.

use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use http::{Request, Response};
use js_api::{IsolateConfig, JsRequest};
use tokio::sync::{mpsc, oneshot, watch};

use crate::body::SendBody;
use crate::config::Config;
use crate::deploy::Deployments;
use crate::error::{RequestError, StartError};
use crate::executor::{ExecutorHandle, Job, Listeners};
use crate::limits::Watchdog;
use crate::pool::PoolLimits;
use crate::routing::Router;
use crate::stats::{Stats, StatsSnapshot};
use crate::tls::CertStore;
use crate::worker::Worker;

/// State every executor thread reads.
pub struct Shared {
  /// The config the engine started with (see [`Shared::reload`] for what a
  /// reload changes).
  pub config: Config,
  /// Stops JS that runs past its CPU deadline, on every executor.
  pub watchdog: Watchdog,
  pub pool_limits: PoolLimits,
  pub stats: Arc<Stats>,
  pub isolate_config: IsolateConfig,
  /// Swapped whole when workers change.
  pub router: RwLock<Arc<Router>>,
  pub certs: RwLock<Option<Arc<CertStore>>>,
  pub deployments: tokio::sync::Mutex<Deployments>,
  /// Where uploaded workers are kept (`[admin] data_dir`).
  pub data_dir: Option<std::path::PathBuf>,
  /// Set once: stop accepting, let connections finish.
  pub draining: watch::Sender<bool>,
  jobs: OnceLock<Vec<mpsc::UnboundedSender<Job>>>,
}

impl Shared {
  pub fn router(&self) -> Arc<Router> {
    self.router.read().expect("router lock").clone()
  }

  pub fn certs(&self) -> Option<Arc<CertStore>> {
    self.certs.read().expect("certs lock").clone()
  }

  /// Every executor's job channel.
  pub fn executor_jobs(&self) -> &[mpsc::UnboundedSender<Job>] {
    self.jobs.get().map_or(&[], Vec::as_slice)
  }

  /// The executor where the worker named `name` runs requests that come
  /// through [`Engine::handle`] (and its deploy check): the same one every
  /// time, so its isolates there stay warm.
  pub fn executor_for(&self, name: &str) -> &mpsc::UnboundedSender<Job> {
    use std::hash::{Hash, Hasher};
    let jobs = self.executor_jobs();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    &jobs[(h.finish() as usize) % jobs.len()]
  }
}

pub struct Engine {
  shared: Arc<Shared>,
  admin: Option<crate::admin::AdminServer>,
  executors: Vec<ExecutorHandle>,
  shutdown: watch::Sender<bool>,
  http_addr: Option<std::net::SocketAddr>,
  https_addr: Option<std::net::SocketAddr>,
}

/// Sets V8's process-wide flags once (the first engine of the process
/// decides): no Wasm memory may grow past the largest memory budget of any
/// worker. (Each isolate's Wasm memory also counts against its own budget:
/// `js_api` checks it when JS makes or grows a memory and every few
/// milliseconds while JS or Wasm runs.)
fn init_v8_once(config: &Config) {
  static ONCE: std::sync::Once = std::sync::Once::new();
  ONCE.call_once(|| {
    let largest = config
      .workers
      .iter()
      .map(|w| config.limits_of(w).memory_bytes)
      .chain([config.default_limits().memory_bytes])
      .max()
      .unwrap_or(128 << 20);
    let pages = format!("--wasm-max-mem-pages={}", (largest / 65536).max(1));
    js_api::init_v8(&[&pages]);
  });
}

impl Engine {
  /// Starts executor threads for `config` without listening anywhere:
  /// requests come only through [`Engine::handle`].
  pub fn new(config: Config) -> Result<Self, StartError> {
    Self::start_with(config, Listeners::default())
  }

  /// Binds the configured listeners and starts serving them.
  pub fn start(config: Config) -> Result<Self, StartError> {
    let bind = |addr: std::net::SocketAddr| -> Result<std::net::TcpListener, StartError> {
      let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)
        .map_err(|e| StartError::Bind { addr, source: e })?;
      let _ = sock.set_reuse_address(true);
      sock
        .bind(&addr.into())
        .map_err(|e| StartError::Bind { addr, source: e })?;
      sock.listen(1024).map_err(|e| StartError::Bind { addr, source: e })?;
      Ok(sock.into())
    };
    let listeners = Listeners {
      http: config.listen.http.map(bind).transpose()?,
      https: config.listen.https.map(bind).transpose()?,
    };
    let admin = config.admin.listen.map(bind).transpose()?;
    let token = config.admin_token()?;
    let mut engine = Self::start_with(config, listeners)?;
    if let (Some(listener), Some(token)) = (admin, token) {
      let server =
        crate::admin::AdminServer::start(engine.shared.clone(), listener, token).map_err(StartError::Threads)?;
      engine.admin = Some(server);
    }
    Ok(engine)
  }

  /// The bound admin address (useful with port 0).
  pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
    self.admin.as_ref().map(|a| a.addr)
  }

  fn start_with(config: Config, listeners: Listeners) -> Result<Self, StartError> {
    config.validate()?;
    init_v8_once(&config);
    let stats = Arc::new(Stats::default());
    let mut from_config = std::collections::BTreeMap::new();
    for (i, w) in config.workers.iter().enumerate() {
      let worker = Worker::from_config(&config, i, w, stats.worker(&w.name))?;
      from_config.insert(w.name.clone(), worker);
    }
    let data_dir = config.admin.data_dir.as_ref().map(|d| config.resolve(d));
    let mut deployments = Deployments {
      config: config.clone(),
      from_config,
      from_api: Default::default(),
    };
    if let Some(dir) = &data_dir {
      deployments.add_stored(dir, &stats);
    }
    let router = deployments.router();
    let certs = if config.tls.is_empty() {
      None
    } else {
      Some(Arc::new(CertStore::from_config(&config)?))
    };
    let isolate_config = isolate_config(&config)?;
    let threads = match config.runtime.threads {
      0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
      n => n,
    };
    let http_addr = listeners.http.as_ref().and_then(|l| l.local_addr().ok());
    let https_addr = listeners.https.as_ref().and_then(|l| l.local_addr().ok());
    let rt = &config.runtime;
    let pool_limits = PoolLimits {
      blank_target: rt.blank_isolates,
      max_per_worker: rt.max_isolates_per_worker,
      max_isolates: rt.max_isolates.div_ceil(threads),
      max_idle_heap: (rt.max_heap_mb << 20).div_ceil(threads),
      idle_timeout: std::time::Duration::from_secs(rt.idle_timeout_s),
    };
    let watchdog = Watchdog::start().map_err(StartError::Threads)?;
    let (draining, _) = watch::channel(false);
    let shared = Arc::new(Shared {
      deployments: tokio::sync::Mutex::new(deployments),
      config,
      watchdog,
      pool_limits,
      stats,
      isolate_config,
      router: RwLock::new(Arc::new(router)),
      certs: RwLock::new(certs),
      data_dir,
      draining,
      jobs: OnceLock::new(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut executors = Vec::with_capacity(threads);
    for i in 0..threads {
      let h = crate::executor::spawn(i, shared.clone(), &listeners, shutdown_rx.clone(), ready_tx.clone())
        .map_err(StartError::Threads)?;
      executors.push(h);
    }
    drop(ready_tx);
    let _ = shared.jobs.set(executors.iter().map(|e| e.jobs.clone()).collect());
    for _ in 0..threads {
      if ready_rx.recv().is_err() {
        return Err(StartError::Threads(std::io::Error::other(
          "an executor thread failed to start",
        )));
      }
    }
    Ok(Self {
      shared,
      admin: None,
      executors,
      shutdown,
      http_addr,
      https_addr,
    })
  }

  /// The bound plain-HTTP address (useful with port 0).
  pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
    self.http_addr
  }

  /// The bound TLS address.
  pub fn https_addr(&self) -> Option<std::net::SocketAddr> {
    self.https_addr
  }

  /// The engine's counters (cold and warm starts, evictions, ...).
  pub fn stats(&self) -> StatsSnapshot {
    self.shared.stats.snapshot()
  }

  /// The live counters and latency histograms.
  pub fn stats_detail(&self) -> &Stats {
    &self.shared.stats
  }

  /// PEM certificates in use (self-signed ones included), in config order.
  pub fn certificates_pem(&self) -> Vec<String> {
    self
      .shared
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
    let w = self
      .shared
      .router()
      .by_name(worker)
      .cloned()
      .ok_or_else(|| RequestError::NoWorker { name: worker.into() })?;
    let (parts, body) = req.into_parts();
    let (body, body_over) =
      crate::body::request_body(Box::pin(body), w.limits.request_body_bytes).map_err(|e| RequestError::Limit {
        worker: worker.into(),
        hit: crate::limits::LimitHit::body(e.limit, "the declared length is larger"),
      })?;
    let req = JsRequest {
      method: parts.method,
      url: parts.uri.to_string(),
      headers: parts.headers,
      body,
    };
    // The same worker goes to the same thread, where its isolates are warm.
    let (reply, rx) = oneshot::channel();
    self
      .shared
      .executor_for(worker)
      .send(Job::Request {
        worker: w,
        req,
        body_over,
        reply,
      })
      .map_err(|_| RequestError::ShuttingDown)?;
    rx.await.map_err(|_| RequestError::ShuttingDown)?
  }

  /// The engine's shared state, for the admin API and deploys
  /// ([`Shared::deploy`], [`Shared::remove`], [`Shared::reload`]).
  pub fn shared(&self) -> &Arc<Shared> {
    &self.shared
  }

  /// Stops accepting connections, lets open ones finish their requests
  /// (HTTP/1.1 connections close after the current response, HTTP/2 ones
  /// get a GOAWAY), and waits until no request holds an isolate (their
  /// streamed bodies and `waitUntil` work done) or `timeout` passes.
  /// Returns whether everything finished.
  pub async fn drain(&self, timeout: std::time::Duration) -> bool {
    let _ = self.shared.draining.send(true);
    let until = std::time::Instant::now() + timeout;
    let s = &self.shared.stats;
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
      tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
  }

  /// Stops accepting and ends the executor threads.
  pub fn shutdown(mut self) {
    self.stop();
  }

  fn stop(&mut self) {
    self.admin = None;
    let _ = self.shutdown.send(true);
    for e in &mut self.executors {
      if let Some(t) = e.thread.take() {
        let _ = t.join();
      }
    }
  }
}

impl Drop for Engine {
  fn drop(&mut self) {
    self.stop();
  }
}

fn isolate_config(config: &Config) -> Result<IsolateConfig, StartError> {
  let mut ic = IsolateConfig {
    memory_limit_bytes: config.default_limits().memory_bytes,
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
