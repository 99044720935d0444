//! Requests that come from inside the node rather than through the front
//! door: an embedder's ([`crate::Engine::handle_with`]) and a service
//! binding's (`env.AUTH.fetch()` in a worker). Both go to the executor that
//! owns the worker, as a job, and come back with the response, its body
//! able to cross threads. Each writes an access line as the front door's
//! (host and path as the request names them: `http://<worker>/__queue`,
//! `http://rpc.invalid/<method>`); `bytes` counts only a whole body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use edge_core::request_id::RequestId;
use http::Request;
use http_body_util::BodyExt;
use js_api::{JsRequest, ServiceRequestBody, ServiceResponseBody};
use tokio::sync::oneshot;

use crate::error::RequestError;
use crate::exec::jobs::{Failed, Handled, Job, RequestJob};
use crate::front::head::MAX_HOPS;
use crate::front::view::ServingView;
use crate::limits::{LimitHit, Phase};
use crate::obs::logging::AccessLine;
use crate::threads::Executors;

/// What a caller knows of a request it hands in.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
  /// The client, for logs.
  pub peer: Option<std::net::SocketAddr>,
  /// The caller's id for the request (else the engine makes one).
  pub request_id: Option<RequestId>,
  /// The request's wall time ends here if this comes before its worker's
  /// wall limit.
  pub deadline: Option<std::time::Instant>,
}

/// Sends requests to the executor of their worker.
pub struct Dispatch {
  /// For ids of requests refused before they reach an executor.
  id_prefix: u64,
  refused: AtomicU64,
  view: Arc<ServingView>,
  /// Set once the executors run (they are made with this in their isolates'
  /// config, for service bindings).
  executors: OnceLock<Weak<Executors>>,
}

impl Dispatch {
  pub fn new(id_prefix: u64, view: Arc<ServingView>) -> Self {
    Self {
      id_prefix,
      refused: AtomicU64::new(0),
      view,
      executors: OnceLock::new(),
    }
  }

  pub fn set_executors(&self, executors: &Arc<Executors>) {
    let _ = self.executors.set(Arc::downgrade(executors));
  }

  /// Runs `req` through the worker named `worker` and says what it cost.
  pub async fn handle_with<B>(&self, worker: &str, req: Request<B>, ctx: RequestContext) -> Result<Handled, Failed>
  where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
  {
    // A request refused here gets an id of its own (thread field 0xffff).
    let fail = |error| Failed {
      error: Box::new(error),
      request_id: ctx.request_id.unwrap_or_else(|| {
        let n = self.refused.fetch_add(1, Ordering::Relaxed);
        RequestId::new(self.id_prefix, u16::MAX, n + 1)
      }),
      cpu: Duration::ZERO,
      cold: false,
    };
    let Some(w) = self.view.router().by_name(worker).cloned() else {
      return Err(fail(RequestError::NoWorker { name: worker.into() }));
    };
    let started = std::time::Instant::now();
    let (mut parts, body) = req.into_parts();
    // For the access line: the request as the worker sees it.
    let line = self.view.access_log.then(|| {
      let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
      (
        parts.method.clone(),
        parts.uri.host().unwrap_or("-").to_string(),
        path,
        w.name.clone(),
      )
    });
    let (body, body_over) = match crate::exec::body::request_body(Box::pin(body), w.limits.request_body_bytes) {
      Ok(b) => b,
      Err(e) => {
        return Err(fail(RequestError::Limit {
          worker: worker.into(),
          hit: LimitHit::body(e.limit, Phase::DeclaredBody),
        }))
      }
    };
    let req = JsRequest {
      method: parts.method,
      url: parts.uri.to_string(),
      headers: parts.headers,
      body,
      // A cron trigger's run (control/cron.rs) or a queue's delivery
      // (control/queues.rs) says so in an extension no client can set.
      trigger: if let Some(s) = parts.extensions.remove::<js_api::Scheduled>() {
        Some(js_api::Trigger::Scheduled(s))
      } else if let Some(q) = parts.extensions.remove::<js_api::QueueDelivery>() {
        Some(js_api::Trigger::Queue(q))
      } else {
        parts.extensions.remove::<js_api::RpcCall>().map(js_api::Trigger::Rpc)
      },
      entrypoint: parts.extensions.remove::<js_api::Entrypoint>().map(|e| e.0),
      cf: None,
      // A service binding's request shares its caller's budget of calls.
      chain: parts.extensions.remove::<js_api::ServiceChain>(),
    };
    if let Some(peer) = ctx.peer {
      tracing::debug!(worker, %peer, "request from an embedder");
    }
    let (reply, rx) = oneshot::channel();
    let job = Job::Request(Box::new(RequestJob {
      worker: w,
      req,
      body_over,
      request_id: ctx.request_id,
      deadline: ctx.deadline.map(tokio::time::Instant::from_std),
      reply,
    }));
    // The same worker goes to the same thread, where its isolates are warm.
    let executors = self.executors.get().and_then(Weak::upgrade);
    if !executors.is_some_and(|e| e.send_to(worker, job)) {
      return Err(fail(RequestError::ShuttingDown));
    }
    let result = rx.await.unwrap_or_else(|_| Err(fail(RequestError::ShuttingDown)));
    if let Some((method, host, path, name)) = line {
      let (status, cpu, cold, bytes, request_id) = match &result {
        Ok(h) => (
          h.response.status(),
          h.cpu,
          h.cold,
          http_body::Body::size_hint(h.response.body()).exact().unwrap_or(0),
          h.request_id,
        ),
        Err(f) => (f.error.status(), f.cpu, f.cold, 0, f.request_id),
      };
      AccessLine {
        request_id,
        peer: ctx.peer,
        host,
        worker: Some(name),
        method,
        path,
        status: status.as_u16(),
        wall: started.elapsed(),
        cpu,
        cold,
      }
      .emit(bytes);
    }
    result
  }
}

/// A service binding's request: run like any other request of the callee
/// (its own limits, counters and access line); a failure that is an answer
/// over HTTP (the callee threw, hit a limit, a loop) is the same answer
/// here. The callee is asked for no content coding (the caller reads the
/// body as it would a decoded `fetch()` answer).
impl js_api::ServiceCaller for Dispatch {
  fn call(
    self: Arc<Self>,
    service: String,
    mut req: Request<ServiceRequestBody>,
  ) -> Pin<Box<dyn Future<Output = Result<http::Response<ServiceResponseBody>, String>>>> {
    Box::pin(async move {
      let hops = js_api::hops_of(req.headers());
      let answer = |e: RequestError| {
        Ok(
          e.to_response(self.view.dev)
            .map(|b| http_body_util::Full::new(b).map_err(|never| match never {}).boxed()),
        )
      };
      if hops >= MAX_HOPS {
        return answer(RequestError::Loop { hops });
      }
      req.headers_mut().remove(http::header::ACCEPT_ENCODING);
      match self.handle_with(&service, req, RequestContext::default()).await {
        Ok(h) => Ok(h.response.map(BodyExt::boxed)),
        Err(f) => match *f.error {
          RequestError::NoWorker { name } => Err(format!("service binding: no worker named {name:?} is deployed")),
          RequestError::ShuttingDown => Err("service binding: the node is shutting down".into()),
          e => answer(e),
        },
      }
    })
  }
}
