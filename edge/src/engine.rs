//! The runtime as a library: build it from a [`Config`] value, then serve
//! the front door ([`Engine::start`] with listeners) and/or hand it requests
//! for a named worker from any thread ([`Engine::handle`]), as a CDN node's
//! proxy would.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Request, Response};
use js_api::{IsolateConfig, JsRequest};
use tokio::sync::{oneshot, watch};

use crate::body::SendBody;
use crate::config::Config;
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
  pub config: Config,
  /// Stops JS that runs past its CPU deadline, on every executor.
  pub watchdog: Watchdog,
  pub pool_limits: PoolLimits,
  pub stats: Arc<Stats>,
  pub isolate_config: IsolateConfig,
  pub router: RwLock<Arc<Router>>,
  pub certs: Option<Arc<CertStore>>,
}

impl Shared {
  pub fn router(&self) -> Arc<Router> {
    self.router.read().expect("router lock").clone()
  }
}

pub struct Engine {
  shared: Arc<Shared>,
  executors: Vec<ExecutorHandle>,
  shutdown: watch::Sender<bool>,
  http_addr: Option<std::net::SocketAddr>,
  https_addr: Option<std::net::SocketAddr>,
}

/// Sets V8's process-wide flags once (the first engine of the process
/// decides): a Wasm memory may not grow past the largest memory budget of
/// any worker (growth from JS is also counted against the isolate's own
/// budget; growth from inside Wasm is bounded only by this).
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
    Self::start_with(config, listeners)
  }

  fn start_with(config: Config, listeners: Listeners) -> Result<Self, StartError> {
    config.validate()?;
    init_v8_once(&config);
    let mut workers = Vec::new();
    let mut routes = Vec::new();
    for (i, w) in config.workers.iter().enumerate() {
      let worker = Worker::from_config(&config, i, w)?;
      for r in &w.routes {
        routes.push((r.clone(), worker.clone()));
      }
      workers.push(worker);
    }
    let router = Router::new(routes, &workers);
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
    let shared = Arc::new(Shared {
      config,
      watchdog,
      pool_limits,
      stats: Arc::new(Stats::default()),
      isolate_config,
      router: RwLock::new(Arc::new(router)),
      certs,
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
    for _ in 0..threads {
      if ready_rx.recv().is_err() {
        return Err(StartError::Threads(std::io::Error::other(
          "an executor thread failed to start",
        )));
      }
    }
    Ok(Self {
      shared,
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
      .certs
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
    let idx = {
      use std::hash::{Hash, Hasher};
      let mut h = std::collections::hash_map::DefaultHasher::new();
      worker.hash(&mut h);
      (h.finish() as usize) % self.executors.len()
    };
    let (reply, rx) = oneshot::channel();
    self.executors[idx]
      .jobs
      .send(Job::Request {
        worker: w,
        req,
        body_over,
        reply,
      })
      .map_err(|_| RequestError::ShuttingDown)?;
    rx.await.map_err(|_| RequestError::ShuttingDown)?
  }

  /// Stops accepting and ends the executor threads.
  pub fn shutdown(mut self) {
    self.stop();
  }

  fn stop(&mut self) {
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
