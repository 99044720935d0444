//! Work sent to an executor thread from other threads: an embedder's
//! request, a deploy's check, a retired version's clean-up.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use edge_core::request_id::RequestId;
use http::Response;
use js_api::JsRequest;
use tokio::sync::oneshot;

use super::body::{BodyOverLimit, EdgeBody, SendBody};
use super::context::RunInfo;
use super::context::ThreadContext;
use crate::error::RequestError;
use crate::worker::Worker;

/// An embedder's request, answered with what billing and logs need.
pub struct Handled {
  pub response: Response<SendBody>,
  pub request_id: RequestId,
  /// CPU time of the request's JS and Wasm before the response head (work
  /// after it, a streamed body or `waitUntil`, is still limited but not in
  /// this figure).
  pub cpu: Duration,
  /// Whether it bound a fresh isolate.
  pub cold: bool,
}

/// A failed embedder's request, with the same figures.
#[derive(Debug)]
pub struct Failed {
  pub error: Box<RequestError>,
  pub request_id: RequestId,
  pub cpu: Duration,
  pub cold: bool,
}

/// An embedder's request, sent to the worker's executor.
pub struct RequestJob {
  pub worker: Arc<Worker>,
  pub req: JsRequest,
  pub body_over: Option<BodyOverLimit>,
  /// The caller's id for the request, if it has one.
  pub request_id: Option<RequestId>,
  /// The request's wall time ends here if this comes before its wall
  /// limit does.
  pub deadline: Option<tokio::time::Instant>,
  pub reply: oneshot::Sender<Result<Handled, Failed>>,
}

pub enum Job {
  Request(Box<RequestJob>),
  /// Load and evaluate a new worker version in an isolate, which then stays
  /// idle (warm) for its first request if `keep` (a deploy), or is dropped
  /// (the check of every worker at start).
  Prepare {
    worker: Arc<Worker>,
    keep: bool,
    reply: oneshot::Sender<Result<(), RequestError>>,
  },
  /// Drop the idle isolates of a replaced or removed worker version.
  Retire(Arc<Worker>),
}

/// Runs `job` on this thread (in a task of its own where it waits).
pub fn run_job(ctx: &Rc<ThreadContext>, job: Job) {
  match job {
    Job::Request(job) => {
      let RequestJob {
        worker,
        req,
        body_over,
        request_id,
        deadline,
        reply,
      } = *job;
      let ctx = ctx.clone();
      tokio::task::spawn_local(async move {
        let started = std::time::Instant::now();
        let request_id = request_id.unwrap_or_else(|| ctx.next_request_id());
        let mut info = RunInfo::default();
        let what = worker
          .stats
          .tail
          .listening()
          .then(|| (req.method.clone(), req.url.clone()));
        let res = super::invoke::run(&ctx, &worker, req, body_over, request_id, deadline, &mut info).await;
        // The embedder maps errors itself; they are counted and logged.
        let (status, limit) = match &res {
          Ok(r) => (r.status(), None),
          Err(e) => {
            e.log(request_id);
            (e.status(), e.limit_kind())
          }
        };
        ctx.finished(
          &worker,
          request_id,
          status,
          limit,
          started.elapsed(),
          &info,
          what.as_ref(),
        );
        let out = match res {
          Ok(r) => Ok(Handled {
            response: r.map(EdgeBody::into_send),
            request_id,
            cpu: info.cpu,
            cold: info.cold,
          }),
          Err(error) => Err(Failed {
            error: Box::new(error),
            request_id,
            cpu: info.cpu,
            cold: info.cold,
          }),
        };
        let _ = reply.send(out);
      });
    }
    Job::Prepare { worker, keep, reply } => {
      let pool = ctx.pool.clone();
      tokio::task::spawn_local(async move {
        let res = pool.prepare(&worker, keep).await;
        let _ = reply.send(res);
      });
    }
    Job::Retire(worker) => ctx.pool.retire(&worker),
  }
}
