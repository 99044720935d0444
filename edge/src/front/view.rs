//! What the request path reads of the engine, and nothing else: the
//! router and certificates (swapped whole by deploys and reloads), the
//! counters, whether the server drains, and the logging switches.

use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::watch;

use super::routing::Router;
use super::tls::CertStore;
use crate::exec::jobs::Job;
use crate::obs::stats::Stats;

pub struct ServingView {
  router: RwLock<Arc<Router>>,
  certs: RwLock<Option<Arc<CertStore>>>,
  pub stats: Arc<Stats>,
  /// Set once: stop accepting, let connections finish.
  draining: watch::Sender<bool>,
  /// One `access` line per request.
  pub access_log: bool,
  /// Development: error responses carry the exception's stack.
  pub dev: bool,
  /// Development: `/__scheduled?cron=` runs the worker's `scheduled()`.
  pub test_scheduled: bool,
  /// The node's colo and the proxies it trusts (`request.cf`, forwarded
  /// headers).
  pub client: super::client::ClientSettings,
  /// The front door's caps and timeouts, and its open connections.
  pub door: super::guard::DoorLimits,
  pub connections: Arc<super::guard::Connections>,
  /// The quarantine lane: the low-priority executor thread that runs the
  /// requests of abusive workers (set when the executors start).
  quarantine: OnceLock<tokio::sync::mpsc::UnboundedSender<Job>>,
}

impl ServingView {
  pub fn new(
    router: Router,
    certs: Option<CertStore>,
    stats: Arc<Stats>,
    access_log: bool,
    dev: bool,
    door: super::guard::DoorLimits,
  ) -> Self {
    Self {
      router: RwLock::new(Arc::new(router)),
      certs: RwLock::new(certs.map(Arc::new)),
      stats,
      draining: watch::channel(false).0,
      access_log,
      dev,
      test_scheduled: false,
      client: Default::default(),
      door,
      connections: Arc::default(),
      quarantine: OnceLock::new(),
    }
  }

  /// Where the requests of abusive workers go, if there is such a lane.
  pub fn quarantine(&self) -> Option<&tokio::sync::mpsc::UnboundedSender<Job>> {
    self.quarantine.get()
  }

  pub(crate) fn set_quarantine(&self, lane: tokio::sync::mpsc::UnboundedSender<Job>) {
    let _ = self.quarantine.set(lane);
  }

  pub fn router(&self) -> Arc<Router> {
    self.router.read().expect("router lock").clone()
  }

  pub fn certs(&self) -> Option<Arc<CertStore>> {
    self.certs.read().expect("certs lock").clone()
  }

  /// Becomes true when the server drains.
  pub fn draining(&self) -> watch::Receiver<bool> {
    self.draining.subscribe()
  }

  pub(crate) fn start_draining(&self) {
    let _ = self.draining.send(true);
  }

  /// Every request routed after this sees `router` (deploys, reloads).
  pub(crate) fn publish_router(&self, router: Router) {
    *self.router.write().expect("router lock") = Arc::new(router);
  }

  /// Handshakes after this use `certs` (reloads).
  pub(crate) fn publish_certs(&self, certs: CertStore) {
    *self.certs.write().expect("certs lock") = Some(Arc::new(certs));
  }
}
