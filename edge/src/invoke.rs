//! Steps 5 and 6 of a request: run the worker's handler in the leased
//! isolate under its limits, and turn its Response into hyper's. Work that
//! outlives the response head (a streamed body, `ctx.waitUntil`) keeps the
//! lease in a task on this thread until it is done, under the same limits.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{HeaderValue, Response};
use js_api::{CallState, JsApiError, JsBody, JsRequest, JsResponse, StreamShared};
use tokio::time::Instant;

use crate::body::{BodyOverLimit, EdgeBody};
use crate::error::RequestError;
use crate::executor::Executor;
use crate::limits::{CpuMeter, LimitHit, Limits, Watch};
use crate::logging::RequestId;
use crate::pool::Lease;
use crate::worker::Worker;

/// What the access log wants to know of a handled request.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunInfo {
  pub cold: bool,
  pub cpu: Duration,
}

/// Runs one request through `worker` on this thread.
pub async fn run(
  exec: &Executor,
  worker: &Arc<Worker>,
  req: JsRequest,
  body_over: Option<BodyOverLimit>,
  request_id: RequestId,
  info: &mut RunInfo,
) -> Result<Response<EdgeBody>, RequestError> {
  let started = std::time::Instant::now();
  let limits = worker.limits;
  // Waiting for a free isolate is not the worker's time: each busy one is
  // bounded by its own limits. The wall clock starts with the handler.
  let (pool, watch) = (&exec.pool, &exec.watch);
  let lease = pool.acquire(worker).await?;
  info.cold = lease.cold;
  let deadline = Instant::now() + limits.wall;
  let mut flight = Flight {
    lease,
    cpu: CpuMeter::new(limits.cpu),
    watch: watch.clone(),
  };
  let limit_err = |hit: LimitHit| RequestError::Limit {
    worker: worker.name.to_string(),
    hit,
  };
  let body_over = || body_over.as_ref().is_some_and(|b| b.load(Ordering::SeqCst));
  let result = match call(&mut flight, req, request_id, deadline).await {
    Some(r) => r.map_err(|error| {
      if matches!(error, JsApiError::Terminated) {
        flight.lease.isolate().poison();
      }
      RequestError::Worker {
        worker: worker.name.to_string(),
        error,
      }
    }),
    None => {
      // Still pending at the wall limit: its isolate is not reused.
      discard(&mut flight);
      if body_over() {
        return Err(limit_err(body_hit(&limits)));
      }
      return Err(limit_err(LimitHit::wall(
        limits.wall,
        "the response did not start in time",
      )));
    }
  };
  info.cpu = flight.cpu.used();
  if let Some(hit) = flight.limit_hit(&limits) {
    discard(&mut flight);
    return Err(limit_err(hit));
  }
  if body_over() {
    flight.lease.isolate().finish_request();
    return Err(limit_err(body_hit(&limits)));
  }
  let res = match result {
    Ok(res) => res,
    Err(error) => {
      flight.lease.isolate().finish_request();
      return Err(error);
    }
  };
  let subrequests_hit = flight.lease.isolate().take_subrequest_limit_hit();
  let latency = if info.cold {
    &pool.stats().cold_latency
  } else {
    &pool.stats().warm_latency
  };
  latency.record(started.elapsed());
  let mut out = respond(flight, res, deadline, request_id);
  if subrequests_hit {
    out
      .headers_mut()
      .insert("edge-limit", HeaderValue::from_static("subrequests"));
  }
  Ok(out)
}

/// A request holding its isolate.
struct Flight {
  lease: Lease,
  cpu: CpuMeter,
  watch: Arc<Watch>,
}

impl Flight {
  /// The CPU or memory limit this request went over, if any.
  fn limit_hit(&self, limits: &Limits) -> Option<LimitHit> {
    let memory = &self.lease.isolate_ref().stopper().memory;
    if memory.exceeded() {
      return Some(LimitHit::memory(
        limits.memory_bytes,
        format!("{} MB of heap, ArrayBuffers and Wasm memory", memory.reached() >> 20),
      ));
    }
    self.cpu.exceeded().then(|| self.cpu.hit())
  }
}

/// Drops the isolate once the request lets go of it.
fn discard(f: &mut Flight) {
  let iso = f.lease.isolate();
  iso.poison();
  iso.cancel_termination();
  iso.finish_request();
}

fn body_hit(limits: &Limits) -> LimitHit {
  LimitHit::body(limits.request_body_bytes, "the request body is larger")
}

/// Calls the handler and drives it until its response is ready; `None`
/// when the wall clock ran out first. A handler that answers without
/// waiting needs no timer at all.
async fn call(
  f: &mut Flight,
  req: JsRequest,
  request_id: RequestId,
  deadline: Instant,
) -> Option<Result<JsResponse, JsApiError>> {
  let stopper = f.lease.isolate().stopper().clone();
  let started = {
    let (cpu, lease, watch) = (&mut f.cpu, &mut f.lease, &f.watch);
    cpu.measure(watch, &stopper, || lease.isolate().call(req, request_id.0))
  };
  match started {
    Ok(CallState::Ready(r)) => Some(Ok(r)),
    Err(e) => Some(Err(e)),
    Ok(CallState::Pending(p)) => {
      let drive = std::future::poll_fn(|cx| {
        let (cpu, lease, watch) = (&mut f.cpu, &mut f.lease, &f.watch);
        cpu.measure(watch, &stopper, || lease.isolate().poll_call(cx, &p))
      });
      tokio::time::timeout_at(deadline, drive).await.ok()
    }
  }
}

fn respond(mut flight: Flight, res: JsResponse, deadline: Instant, request_id: RequestId) -> Response<EdgeBody> {
  let JsResponse {
    status,
    headers,
    body,
    wait_until,
  } = res;
  let (body, shared) = match body {
    JsBody::Empty => (EdgeBody::empty(), None),
    JsBody::Bytes(b) => (EdgeBody::full(b), None),
    JsBody::Stream(s) => {
      let shared = s.shared();
      (EdgeBody::stream(s), Some(shared))
    }
  };
  if shared.is_some() || wait_until.is_some() {
    tokio::task::spawn_local(background(flight, shared, wait_until, deadline, request_id));
  } else {
    flight.lease.isolate().finish_request();
  }
  let mut out = Response::new(body);
  *out.status_mut() = status;
  *out.headers_mut() = headers;
  out
}

/// Keeps the isolate's event loop running for a streamed body and for
/// `ctx.waitUntil` promises; returns the isolate to the pool after.
async fn background(
  mut flight: Flight,
  body: Option<Rc<StreamShared>>,
  wait: Option<js_api::v8::Global<js_api::v8::Promise>>,
  deadline: Instant,
  request_id: RequestId,
) {
  let stopper = flight.lease.isolate().stopper().clone();
  let drive = std::future::poll_fn(|cx| {
    if let Some(b) = &body {
      b.set_drive_waker(cx.waker());
    }
    let (cpu, lease, watch) = (&mut flight.cpu, &mut flight.lease, &flight.watch);
    let iso = lease.isolate();
    let turn = cpu.measure(watch, &stopper, || iso.poll_event_loop(cx));
    if let Poll::Ready(Err(e)) = turn {
      return Poll::Ready(Err(e.to_string()));
    }
    if cpu.exceeded() || stopper.memory.exceeded() {
      return Poll::Ready(Err("limit".into()));
    }
    let idle = turn.is_ready();
    let body_done = body.as_ref().is_none_or(|b| b.is_finished());
    // With the loop idle, an unsettled waitUntil promise can never settle.
    let wait_done = idle || wait.as_ref().is_none_or(|p| iso.is_settled(p));
    if body_done && wait_done {
      Poll::Ready(Ok(()))
    } else {
      Poll::Pending
    }
  });
  let outcome = tokio::time::timeout_at(deadline, drive).await;
  let worker = flight.lease.worker().name.clone();
  let limits = flight.lease.worker().limits;
  let hit = flight.limit_hit(&limits);
  if let Some(hit) = &hit {
    flight.lease.worker().stats.limit_hit(hit.kind);
  }
  match (&outcome, &hit) {
    (_, Some(hit)) => tracing::warn!(worker = &*worker, %request_id, "after the response: {hit}"),
    (Ok(Err(e)), None) => tracing::warn!(worker = &*worker, %request_id, "after the response: {e}"),
    (Err(_), None) => tracing::warn!(
      worker = &*worker,
      %request_id,
      "after the response: wall limit of {} ms exceeded; stopped",
      limits.wall.as_millis()
    ),
    (Ok(Ok(())), None) => {}
  }
  if hit.is_some() || outcome.is_err() {
    discard(&mut flight);
  }
  if let Some(b) = &body {
    b.abandon();
  }
  flight.lease.isolate().finish_request();
}
