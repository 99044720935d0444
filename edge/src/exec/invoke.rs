//! Steps 5 and 6 of a request: run the worker's handler in an isolate of
//! its worker under its limits (the isolate's driver, `pool::host`, runs
//! it, interleaved with the other requests in the isolate), and turn its
//! Response into hyper's. A streamed body and `ctx.waitUntil` work go on in
//! the isolate after the response head, under the same limits.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use edge_core::request_id::RequestId;
use http::{HeaderValue, Response};
use js_api::{JsBody, JsRequest, JsResponse};
use tokio::time::Instant;

use super::body::{BodyOverLimit, EdgeBody, EncodeBudget};
use super::context::{RunInfo, ThreadContext};
use crate::error::RequestError;
use crate::limits::{LimitHit, LimitKind, Limits, Phase};
use crate::pool::{Failure, Head, Member};
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
  let head_request = req.method == http::Method::HEAD;
  // (A cheap clone: the value's bytes are shared.)
  let accept_encoding = req.headers.get(http::header::ACCEPT_ENCODING).cloned();
  let limits = worker.limits;
  let limit_err = |hit: LimitHit| RequestError::Limit {
    worker: worker.name.to_string(),
    hit,
  };
  let body_over = || body_over.as_ref().is_some_and(|b| b.load(Ordering::SeqCst));
  let mut req = req;
  // Waiting for room in an isolate is not the worker's time (bounded by
  // max_queue); the wall clock starts when the request is in one.
  let mut now = Instant::from_std(started);
  let head = loop {
    let wall_until = until.map_or(now + limits.wall, |u| u.min(now + limits.wall));
    let member = Member::new(req, request_id, limits.cpu, wall_until);
    let (ticket, cold) = ctx.pool.join(worker, member).await?;
    info.cold |= cold;
    match ticket.await {
      // The isolate was stopped before this request's code ran.
      Head::Moved(r) => {
        req = r;
        now = Instant::now();
      }
      head => break head,
    }
  };
  let hit = matches!(&head, Head::Failed { failure: Failure::Limit(h), .. } if matches!(h.kind, LimitKind::Cpu | LimitKind::Memory));
  worker.stats.abuse.record(edge_core::abuse::second_at(started), hit);
  let (res, subrequests_hit) = match head {
    Head::Moved(_) => unreachable!("moved requests are retried above"),
    Head::Failed { failure, cpu } => {
      info.cpu = cpu;
      // A read of a body cut off at its limit fails: the body is what it
      // hit.
      if body_over() && !matches!(failure, Failure::Limit(ref h) if h.kind != LimitKind::Wall) {
        return Err(limit_err(body_hit(&limits)));
      }
      return Err(match failure {
        Failure::Limit(hit) => limit_err(hit),
        Failure::Worker(error) => RequestError::Worker {
          worker: worker.name.to_string(),
          error,
        },
        Failure::Lost(cause) => RequestError::IsolateLost {
          worker: worker.name.to_string(),
          cause,
        },
      });
    }
    Head::Response {
      res,
      subrequests_hit,
      cpu,
    } => {
      info.cpu = cpu;
      (res, subrequests_hit)
    }
  };
  if body_over() {
    return Err(limit_err(body_hit(&limits)));
  }
  let stats = ctx.pool.stats();
  let latency = if info.cold {
    &stats.cold_latency
  } else {
    &stats.warm_latency
  };
  latency.record(started.elapsed());
  let budget = EncodeBudget {
    stats: worker.stats.clone(),
    per_s: ctx.encode_rate,
  };
  let mut out =
    respond(res, head_request, accept_encoding.as_ref(), budget).map_err(|why| RequestError::BadResponse {
      worker: worker.name.to_string(),
      why,
    })?;
  if subrequests_hit {
    out
      .headers_mut()
      .insert("edge-limit", HeaderValue::from_static("subrequests"));
  }
  Ok(out)
}

fn body_hit(limits: &Limits) -> LimitHit {
  LimitHit::body(limits.request_body_bytes, Phase::Handler)
}

/// Headers that frame the message or belong to one connection: the
/// server sets them, never the worker (a worker's `Content-Length: 5` on a
/// longer body put the rest on the keep-alive connection as the next
/// response).
const HOP_BY_HOP: [http::HeaderName; 7] = [
  http::header::CONNECTION,
  http::header::TRANSFER_ENCODING,
  http::header::UPGRADE,
  http::header::TE,
  http::header::TRAILER,
  http::HeaderName::from_static("keep-alive"),
  http::HeaderName::from_static("proxy-connection"),
];

/// The worker's response as the server sends it: framed by the server (the
/// body's length, or chunked), statuses 200-599 only. A `Content-Length`
/// is kept only on an empty answer to HEAD, where it tells the size.
fn respond(
  res: JsResponse,
  head_request: bool,
  accept_encoding: Option<&HeaderValue>,
  budget: EncodeBudget,
) -> Result<Response<EdgeBody>, String> {
  let JsResponse {
    status,
    mut headers,
    body,
    encoded,
    ..
  } = res;
  if !(200..=599).contains(&status.as_u16()) {
    return Err(format!("status {} (a worker may answer 200-599)", status.as_u16()));
  }
  // Most answers have none of these: one pass over their few headers
  // before any removal.
  let keep_length = head_request && matches!(body, JsBody::Empty);
  let framing = |k: &http::HeaderName| HOP_BY_HOP.contains(k) || (!keep_length && k == http::header::CONTENT_LENGTH);
  if headers.keys().any(framing) {
    for name in &HOP_BY_HOP {
      headers.remove(name);
    }
    if !keep_length {
      headers.remove(http::header::CONTENT_LENGTH);
    }
  }
  let body = match body {
    JsBody::Empty => return Ok(answer(status, headers, EdgeBody::empty())),
    JsBody::Bytes(b) => EdgeBody::full(b),
    JsBody::Stream(s) => EdgeBody::stream(s),
  };
  // `Content-Encoding: gzip` (or br) over a body not encoded yet: the
  // server encodes it (workerd's `encodeBody: "automatic"`), or sends it
  // unencoded to a client that does not accept the coding.
  let body = match (encoded, super::encode::Coding::of(&headers)) {
    (false, Some(coding)) => {
      super::encode::vary_on_accept_encoding(&mut headers);
      if coding.accepted(accept_encoding) {
        body.encoded(coding, budget)
      } else {
        headers.remove(http::header::CONTENT_ENCODING);
        body
      }
    }
    _ => body,
  };
  Ok(answer(status, headers, body))
}

fn answer(status: http::StatusCode, headers: http::HeaderMap, body: EdgeBody) -> Response<EdgeBody> {
  let mut out = Response::new(body);
  *out.status_mut() = status;
  *out.headers_mut() = headers;
  out
}
