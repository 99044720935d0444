//! Steps 5 and 6 of a request: run the worker's handler in the leased
//! isolate under its limits, and turn its Response into hyper's. Work that
//! outlives the response head (a streamed body, `ctx.waitUntil`) keeps the
//! lease in a task on this thread until it is done, under the same limits.
//! Every entry into the isolate goes through [`metered::run`].

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use edge_core::request_id::RequestId;
use http::{HeaderValue, Response};
use js_api::{CallState, JsApiError, JsBody, JsRequest, JsResponse, StreamShared};
use tokio::time::Instant;

use super::body::{BodyOverLimit, EdgeBody};
use super::context::{RunInfo, ThreadContext};
use crate::error::RequestError;
use crate::limits::metered::{self, Meter, Metered};
use crate::limits::{CpuDeadline, CpuMeter, LimitHit, LimitKind, Limits, Phase};
use crate::pool::Lease;
use crate::worker::Worker;

/// Runs one request through `worker` on this thread; its wall time ends
/// at its wall limit, or at `until` if that comes first.
pub async fn run(
  ctx: &ThreadContext,
  worker: &Arc<Worker>,
  req: JsRequest,
  body_over: Option<BodyOverLimit>,
  request_id: RequestId,
  until: Option<Instant>,
  info: &mut RunInfo,
) -> Result<Response<EdgeBody>, RequestError> {
  let started = std::time::Instant::now();
  let limits = worker.limits;
  // Waiting for a free isolate is not the worker's time: each busy one is
  // bounded by its own limits. The wall clock starts with the handler.
  let lease = ctx.pool.acquire(worker).await?;
  info.cold = lease.cold;
  let mut running = Running {
    wall_until: until.map_or(Instant::now() + limits.wall, |u| u.min(Instant::now() + limits.wall)),
    lease,
    cpu: CpuMeter::new(limits.cpu),
    deadline: ctx.deadline.clone(),
  };
  let limit_err = |hit: LimitHit| RequestError::Limit {
    worker: worker.name.to_string(),
    hit,
  };
  let body_over = || body_over.as_ref().is_some_and(|b| b.load(Ordering::SeqCst));
  let outcome = call(&mut running, req, request_id).await;
  info.cpu = running.cpu.used();
  let result = match outcome {
    Metered::Limit(hit) => {
      running.after_limit();
      // Still pending at the wall limit because its body was cut off: the
      // body is what it hit.
      let body_cut = hit.kind == LimitKind::Wall && body_over();
      return Err(limit_err(if body_cut { body_hit(&limits) } else { hit }));
    }
    Metered::Done(r) => r,
  };
  if body_over() {
    running.lease.isolate().finish_request();
    return Err(limit_err(body_hit(&limits)));
  }
  let res = match result {
    Ok(res) => res,
    Err(error) => {
      if matches!(error, JsApiError::Terminated) {
        running.lease.isolate().poison();
      }
      running.lease.isolate().finish_request();
      return Err(RequestError::Worker {
        worker: worker.name.to_string(),
        error,
      });
    }
  };
  let subrequests_hit = running.lease.isolate().take_subrequest_limit_hit();
  let stats = ctx.pool.stats();
  let latency = if info.cold {
    &stats.cold_latency
  } else {
    &stats.warm_latency
  };
  latency.record(started.elapsed());
  let mut out = respond(running, res, request_id);
  if subrequests_hit {
    out
      .headers_mut()
      .insert("edge-limit", HeaderValue::from_static("subrequests"));
  }
  Ok(out)
}

/// A request holding its isolate.
struct Running {
  lease: Lease,
  cpu: CpuMeter,
  deadline: Arc<CpuDeadline>,
  wall_until: Instant,
}

impl Running {
  /// The meter for the next stretch of this request's work.
  fn meter<'a>(
    cpu: &'a mut CpuMeter,
    deadline: &'a CpuDeadline,
    stopper: &'a Arc<js_api::IsolateStopper>,
    limits: &Limits,
    wall_until: Instant,
    phase: Phase,
  ) -> Meter<'a> {
    Meter {
      cpu,
      deadline,
      stopper,
      memory_limit: limits.memory_bytes,
      wall: limits.wall,
      wall_until,
      phase,
    }
  }

  /// After a limit hit: the isolate (already condemned) may run JS again
  /// to unwind, and lets go of the request.
  fn after_limit(&mut self) {
    let iso = self.lease.isolate();
    iso.cancel_termination();
    iso.finish_request();
  }
}

fn body_hit(limits: &Limits) -> LimitHit {
  LimitHit::body(limits.request_body_bytes, Phase::Handler)
}

/// Calls the handler and drives it until its response is ready. A handler
/// that answers without waiting needs no timer at all.
async fn call(r: &mut Running, req: JsRequest, request_id: RequestId) -> Metered<Result<JsResponse, JsApiError>> {
  let stopper = r.lease.isolate_ref().stopper().clone();
  let limits = r.lease.worker().limits;
  let meter = Running::meter(&mut r.cpu, &r.deadline, &stopper, &limits, r.wall_until, Phase::Handler);
  let lease = &mut r.lease;
  let mut req = Some(req);
  let mut pending = None;
  metered::run(meter, |cx| {
    let iso = lease.isolate();
    if let Some(req) = req.take() {
      match iso.call(req, request_id.0) {
        Ok(CallState::Ready(res)) => return Poll::Ready(Ok(res)),
        Err(e) => return Poll::Ready(Err(e)),
        // Polled again at once, with the task's waker.
        Ok(CallState::Pending(p)) => {
          pending = Some(p);
          return Poll::Pending;
        }
      }
    }
    match &pending {
      Some(p) => iso.poll_call(cx, p),
      None => Poll::Ready(Err(JsApiError::NeverSettles)),
    }
  })
  .await
}

fn respond(mut running: Running, res: JsResponse, request_id: RequestId) -> Response<EdgeBody> {
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
    tokio::task::spawn_local(background(running, shared, wait_until, request_id));
  } else {
    running.lease.isolate().finish_request();
  }
  let mut out = Response::new(body);
  *out.status_mut() = status;
  *out.headers_mut() = headers;
  out
}

/// Keeps the isolate's event loop running for a streamed body and for
/// `ctx.waitUntil` promises; returns the isolate to the pool after.
async fn background(
  mut running: Running,
  body: Option<Rc<StreamShared>>,
  wait: Option<js_api::v8::Global<js_api::v8::Promise>>,
  request_id: RequestId,
) {
  let stopper = running.lease.isolate_ref().stopper().clone();
  let worker = running.lease.worker().clone();
  let limits = worker.limits;
  let outcome = {
    let meter = Running::meter(
      &mut running.cpu,
      &running.deadline,
      &stopper,
      &limits,
      running.wall_until,
      Phase::AfterResponse,
    );
    let lease = &mut running.lease;
    metered::run(meter, |cx| {
      if let Some(b) = &body {
        b.set_drive_waker(cx.waker());
      }
      let iso = lease.isolate();
      let turn = iso.poll_event_loop(cx);
      if let Poll::Ready(Err(e)) = turn {
        return Poll::Ready(Err(e.to_string()));
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
    })
    .await
  };
  match &outcome {
    Metered::Limit(hit) => {
      worker.stats.limit_hit(hit.kind);
      tracing::warn!(worker = &*worker.name, %request_id, "after the response: {hit}");
      running.after_limit();
    }
    Metered::Done(Err(e)) => tracing::warn!(worker = &*worker.name, %request_id, "after the response: {e}"),
    Metered::Done(Ok(())) => {}
  }
  if let Some(b) = &body {
    b.abandon();
  }
  running.lease.isolate().finish_request();
}
