//! Steps 5 and 6 of a request: run the worker's handler in the leased
//! isolate, counting its CPU time, and turn its Response into hyper's. Work
//! that outlives the response head (a streamed body, `ctx.waitUntil`) keeps
//! the lease in a task on this thread until it is done.

use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use http::Response;
use js_api::{CallState, JsApiError, JsBody, JsRequest, JsResponse, StreamShared};

use crate::body::EdgeBody;
use crate::error::RequestError;
use crate::limits::CpuMeter;
use crate::logging::RequestId;
use crate::pool::{Lease, Pool};
use crate::worker::Worker;

/// What the access log wants to know of a handled request.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunInfo {
  pub cold: bool,
  pub cpu: Duration,
}

/// How long work may continue after the response head (streams, waitUntil).
const BACKGROUND_WALL: Duration = Duration::from_secs(30);

/// Runs one request through `worker` on this thread.
pub async fn run(
  pool: &Rc<Pool>,
  worker: &std::sync::Arc<Worker>,
  req: JsRequest,
  request_id: RequestId,
  info: &mut RunInfo,
) -> Result<Response<EdgeBody>, RequestError> {
  let mut lease = pool.acquire(worker).await?;
  info.cold = lease.cold;
  let mut cpu = CpuMeter::default();
  let started = cpu.measure(|| lease.isolate().call(req, request_id.0));
  let result = match started {
    Ok(CallState::Ready(r)) => Ok(r),
    Ok(CallState::Pending(p)) => {
      std::future::poll_fn(|cx| {
        let iso = lease.isolate();
        cpu.measure(|| iso.poll_call(cx, &p))
      })
      .await
    }
    Err(e) => Err(e),
  };
  info.cpu = cpu.used();
  let res = match result {
    Ok(res) => res,
    Err(error) => {
      if matches!(error, JsApiError::Terminated) {
        lease.isolate().poison();
      }
      lease.isolate().finish_request();
      return Err(RequestError::Worker {
        worker: worker.name.to_string(),
        error,
      });
    }
  };
  Ok(respond(lease, res, cpu, request_id))
}

fn respond(mut lease: Lease, res: JsResponse, cpu: CpuMeter, request_id: RequestId) -> Response<EdgeBody> {
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
    tokio::task::spawn_local(background(lease, shared, wait_until, cpu, request_id));
  } else {
    lease.isolate().finish_request();
  }
  let mut out = Response::new(body);
  *out.status_mut() = status;
  *out.headers_mut() = headers;
  out
}

/// Keeps the isolate's event loop running for a streamed body and for
/// `ctx.waitUntil` promises; returns the isolate to the pool after.
async fn background(
  mut lease: Lease,
  body: Option<Rc<StreamShared>>,
  wait: Option<js_api::v8::Global<js_api::v8::Promise>>,
  mut cpu: CpuMeter,
  request_id: RequestId,
) {
  let drive = std::future::poll_fn(|cx| {
    if let Some(b) = &body {
      b.set_drive_waker(cx.waker());
    }
    let iso = lease.isolate();
    let turn = cpu.measure(|| iso.poll_event_loop(cx));
    if let Poll::Ready(Err(e)) = turn {
      return Poll::Ready(Err(e));
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
  let outcome = tokio::time::timeout(BACKGROUND_WALL, drive).await;
  let worker = lease.worker().name.clone();
  match outcome {
    Ok(Ok(())) => {}
    Ok(Err(e)) => {
      tracing::warn!(worker = &*worker, %request_id, "after the response: {e}");
    }
    Err(_) => {
      tracing::warn!(worker = &*worker, %request_id, "work after the response passed {BACKGROUND_WALL:?}; stopped");
      lease.isolate().poison();
    }
  }
  if let Some(b) = &body {
    b.abandon();
  }
  lease.isolate().finish_request();
  tracing::trace!(worker = &*worker, %request_id, cpu_us = cpu.used().as_micros() as u64, "background done");
}
