//! What every request on one executor thread shares: the thread's isolate
//! pool (which holds its CPU deadline) and its request ids.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use std::time::Duration;

use edge_core::limits::LimitKind;
use edge_core::request_id::RequestId;

use crate::obs::observer::{Outcome, RequestObserver};
use crate::pool::Pool;
use crate::worker::Worker;

/// What the access log and an embedder want to know of a handled request.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunInfo {
  pub cold: bool,
  pub cpu: Duration,
  /// Run (and counted, and logged) on the quarantine thread.
  pub forwarded: bool,
}

pub struct ThreadContext {
  pub index: usize,
  pub pool: Rc<Pool>,
  /// The engine's random id prefix (see [`RequestId`]).
  id_prefix: u64,
  next_request: Cell<u64>,
  observer: Option<Arc<dyn RequestObserver>>,
  /// `server.encode_bytes_per_s` (read at start).
  pub encode_rate: u64,
}

impl ThreadContext {
  pub fn new(
    index: usize,
    pool: Rc<Pool>,
    id_prefix: u64,
    observer: Option<Arc<dyn RequestObserver>>,
    encode_rate: u64,
  ) -> Self {
    Self {
      index,
      pool,
      id_prefix,
      next_request: Cell::new(0),
      observer,
      encode_rate,
    }
  }

  /// Counts a request its worker answered (the one place: front door and
  /// embedders alike) and tells the embedder's observer.
  #[allow(clippy::too_many_arguments)]
  pub fn finished(
    &self,
    worker: &Worker,
    request_id: RequestId,
    status: http::StatusCode,
    limit: Option<LimitKind>,
    wall: Duration,
    info: &RunInfo,
    what: Option<&(http::Method, String)>,
  ) {
    worker.stats.finished(status, limit, wall, info.cpu);
    worker.stats.tail.publish(|| {
      serde_json::json!({
        "type": "request",
        "time": crate::obs::tail::now_ms(),
        "request_id": request_id.to_string(),
        "method": what.map(|(m, _)| m.as_str()),
        "url": what.map(|(_, u)| u.as_str()),
        "status": status.as_u16(),
        "limit": limit.map(|l| l.as_str()),
        "wall_ms": wall.as_secs_f64() * 1e3,
        "cpu_ms": info.cpu.as_secs_f64() * 1e3,
        "start": if info.cold { "cold" } else { "warm" },
      })
    });
    if let Some(o) = &self.observer {
      o.finished(&Outcome {
        worker: &worker.name,
        request_id,
        status: status.as_u16(),
        limit,
        cpu: info.cpu,
        wall,
        cold: info.cold,
      });
    }
  }

  /// A request id unique across threads, restarts and nodes.
  pub fn next_request_id(&self) -> RequestId {
    let n = self.next_request.get().wrapping_add(1);
    self.next_request.set(n);
    RequestId::new(self.id_prefix, self.index as u16, n)
  }
}
