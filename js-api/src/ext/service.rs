//! Service bindings: `env.NAME.fetch()` for a `[[worker.services]]` runs a
//! request through another worker of this node in process, with no socket.
//! The op builds the request and hands it to the node's [`ServiceCaller`]
//! (the embedder's; edge sends it to the callee's executor like any other
//! request); JS then reads the answer through deno_fetch's own resources
//! (`op_fetch_send`, a body stream read as the callee writes it).
//!
//! Bodies stream both ways. The caller's request body is read on the
//! caller's thread (its stream belongs to the caller's isolate) and passed
//! to the callee, which may run on another thread, through a channel of one
//! piece: the callee reads it as the caller writes it, and a caller that
//! writes faster than the callee reads waits. The answer's body is the
//! callee's response body, read as the callee writes it.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use deno_core::convert::ByteString;
use deno_core::{op2, JsBuffer, OpState, ResourceId};
use deno_error::JsErrorBox;
use deno_fetch::{FetchCancelHandle, FetchError, FetchRequestResource, ResourceToBodyAdapter};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::body::BoxError;

/// The answer's body, as the callee sends it.
pub type ServiceResponseBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What the node does with a service binding's request: runs it through
/// the worker named `service`. `Err` says why it could not run at all (no
/// such worker, the node shutting down): the caller's `fetch()` rejects
/// with it. A request that ran and failed (the callee threw, hit a limit)
/// is an answer, as it would be over HTTP.
pub trait ServiceCaller: Send + Sync {
  #[allow(clippy::type_complexity)]
  fn call(
    self: Arc<Self>,
    service: String,
    req: http::Request<ServiceRequestBody>,
  ) -> Pin<Box<dyn Future<Output = Result<http::Response<ServiceResponseBody>, String>>>>;
}

/// How many service-binding calls a request chain may make in all: the
/// request a client sent and every request its workers make of each other
/// through service bindings, however deep or wide (Cloudflare's limit is
/// 32 Worker invocations per request). The hop count bounds depth only: a
/// worker calling itself twice per call would otherwise make 2^16 calls
/// from one client request.
pub const MAX_SERVICE_CALLS: u32 = 32;

/// The budget of service-binding calls a request chain shares (see
/// [`MAX_SERVICE_CALLS`]). Made at the chain's first call, carried on each
/// call's `http::Request` as an extension (no client can set one) and
/// handed to the callee's request.
#[derive(Clone, Debug, Default)]
pub struct ServiceChain(Arc<std::sync::atomic::AtomicU32>);

impl ServiceChain {
  /// Takes one call from the budget; false when it is spent.
  pub fn admit(&self) -> bool {
    use std::sync::atomic::Ordering;
    self
      .0
      .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < MAX_SERVICE_CALLS).then_some(n + 1)
      })
      .is_ok()
  }

  /// The calls made so far.
  pub fn calls(&self) -> u32 {
    self.0.load(std::sync::atomic::Ordering::Relaxed)
  }
}

/// What a service binding calls: a worker, and optionally one of its
/// named entrypoints (a `WorkerEntrypoint` class its main module exports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTarget {
  pub service: String,
  pub entrypoint: Option<String>,
}

/// The named entrypoint a service binding calls, carried on its
/// `http::Request` as an extension (no client can set one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entrypoint(pub String);

/// A service binding's RPC call (`env.NAME.method(...args)`), carried on
/// its `http::Request` as an extension; the body is the arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcCall {
  /// The method called.
  pub method: String,
}

/// The service bindings of the isolate's worker: the callee's name, in the
/// order the bindings are given to JS, and the node's caller.
pub struct ServiceBindings {
  pub services: Vec<ServiceTarget>,
  pub caller: Option<Arc<dyn ServiceCaller>>,
}

/// A service binding's request body: empty, whole, or the caller's stream
/// passed on a piece at a time. It may cross threads.
pub struct ServiceRequestBody(Kind);

enum Kind {
  Full(Option<Bytes>),
  Channel {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    length: Option<u64>,
  },
}

impl ServiceRequestBody {
  pub fn full(bytes: Bytes) -> Self {
    Self(Kind::Full((!bytes.is_empty()).then_some(bytes)))
  }

  pub fn empty() -> Self {
    Self(Kind::Full(None))
  }
}

impl Body for ServiceRequestBody {
  type Data = Bytes;
  type Error = BoxError;

  fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match &mut self.get_mut().0 {
      Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
      Kind::Channel { rx, .. } => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
    }
  }

  fn is_end_stream(&self) -> bool {
    matches!(self.0, Kind::Full(None))
  }

  fn size_hint(&self) -> SizeHint {
    match &self.0 {
      Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
      Kind::Channel { length: Some(n), .. } => SizeHint::with_exact(*n),
      Kind::Channel { length: None, .. } => SizeHint::default(),
    }
  }
}

/// Reads the caller's body stream on this thread into a channel of one
/// piece. Ends when the stream does, or when the callee lets go of the
/// body (it answered without reading it all, or its request ended).
fn pump(resource: Rc<dyn deno_core::Resource>, length: Option<u64>) -> ServiceRequestBody {
  let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(1);
  deno_core::unsync::spawn(async move {
    let mut body = ResourceToBodyAdapter::new(resource);
    loop {
      let frame = tokio::select! {
        f = body.frame() => f,
        _ = tx.closed() => break,
      };
      let piece = match frame {
        None => break,
        Some(Ok(f)) => match f.into_data() {
          Ok(d) if d.is_empty() => continue,
          Ok(d) => Ok(d),
          Err(_) => continue,
        },
        Some(Err(e)) => Err(BoxError::from(e.to_string())),
      };
      let failed = piece.is_err();
      if tx.send(piece).await.is_err() || failed {
        break;
      }
    }
  });
  ServiceRequestBody(Kind::Channel { rx, length })
}

/// The request's resource for `op_fetch_send`, and the handle that
/// cancels it (the request's `AbortSignal`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceFetch {
  request_rid: ResourceId,
  cancel_handle_rid: ResourceId,
}

fn refused(message: String) -> JsErrorBox {
  JsErrorBox::type_error(message)
}

/// Starts `env.<binding>.fetch()` for binding number `index` made by
/// request `id`: JS has checked the request and stamped its hop count; the
/// body is `data` (whole) or the stream resource `resource` (of `length`
/// bytes if known). `rpc` names the method of an RPC call (the body is
/// its arguments).
#[op2]
#[serde]
#[allow(clippy::too_many_arguments)]
pub fn op_edge_service_fetch(
  state: &mut OpState,
  #[smi] id: u32,
  #[smi] index: u32,
  #[scoped] method: ByteString,
  #[string] url: String,
  #[scoped] headers: Vec<(ByteString, ByteString)>,
  #[buffer] data: Option<JsBuffer>,
  #[smi] resource: Option<ResourceId>,
  length: f64,
  #[string] rpc: Option<String>,
) -> Result<ServiceFetch, JsErrorBox> {
  let (ServiceTarget { service, entrypoint }, caller) = {
    let b = state
      .try_borrow::<ServiceBindings>()
      .ok_or_else(|| refused("service binding: this worker has none".into()))?;
    let service = b
      .services
      .get(index as usize)
      .cloned()
      .ok_or_else(|| refused("service binding: no such binding".into()))?;
    let caller = b
      .caller
      .clone()
      .ok_or_else(|| refused("service binding: this node runs no other workers".into()))?;
    (service, caller)
  };
  let method = http::Method::from_bytes(&method).map_err(|e| refused(format!("service binding: {e}")))?;
  let parsed =
    deno_core::url::Url::parse(&url).map_err(|e| refused(format!("service binding: invalid URL {url}: {e}")))?;
  let uri: http::Uri = parsed
    .as_str()
    .parse()
    .map_err(|_| refused(format!("service binding: invalid URL {url}")))?;
  // The chain's budget (made at its first call), before anything is taken
  // from JS.
  let chain = {
    let slot = state
      .try_borrow_mut::<super::RequestSlots>()
      .and_then(|s| s.live.get_mut(&id))
      .ok_or_else(|| refused("service binding: a call from code whose request has ended".into()))?;
    let chain = slot.chain.get_or_insert_with(ServiceChain::default).clone();
    if !chain.admit() {
      slot.subrequest_limit_hit = true;
      return Err(refused(format!(
        "Too many service binding calls: a request and the workers it reaches through service bindings \
         may make at most {MAX_SERVICE_CALLS} in all (edge-limit: subrequests)"
      )));
    }
    chain
  };
  // Headers first: nothing is taken from JS for a request refused.
  let mut map = http::HeaderMap::with_capacity(headers.len());
  for (k, v) in headers {
    let name = http::HeaderName::from_bytes(&k).map_err(|e| refused(format!("service binding: {e}")))?;
    let value = http::HeaderValue::from_bytes(&v).map_err(|e| refused(format!("service binding: {e}")))?;
    if name != http::header::CONTENT_LENGTH {
      map.append(name, value);
    }
  }
  let body = match (data, resource) {
    (Some(d), _) => ServiceRequestBody::full(Bytes::from(d.to_vec())),
    (None, Some(rid)) => {
      let r = state.resource_table.take_any(rid).map_err(JsErrorBox::from_err)?;
      let known = (length >= 0.0).then_some(length as u64);
      pump(r, known)
    }
    (None, None) => ServiceRequestBody::empty(),
  };
  // The length is the body's, as fetch() sends it (none for a stream of
  // unknown length; 0 for a POST or PUT without a body).
  let length = match Body::size_hint(&body).exact() {
    Some(0) if !matches!(method, http::Method::POST | http::Method::PUT) => None,
    n => n,
  };
  let mut req = http::Request::new(body);
  *req.method_mut() = method;
  *req.uri_mut() = uri;
  *req.headers_mut() = map;
  if let Some(n) = length {
    req.headers_mut().insert(http::header::CONTENT_LENGTH, n.into());
  }
  req.extensions_mut().insert(chain);
  if let Some(name) = entrypoint {
    req.extensions_mut().insert(Entrypoint(name));
  }
  if let Some(method) = rpc {
    req.extensions_mut().insert(RpcCall { method });
  }
  let cancel = deno_core::CancelHandle::new_rc();
  let cancel_ = cancel.clone();
  let fut = async move {
    use deno_core::CancelFuture;
    async move {
      match caller.call(service, req).await {
        Ok(res) => Ok(res.map(|b| b.map_err(|e| JsErrorBox::generic(e.to_string())).boxed())),
        Err(message) => Err(FetchError::Other(refused(message))),
      }
    }
    .or_cancel(cancel_)
    .await
  };
  let request_rid = state.resource_table.add(FetchRequestResource {
    future: Box::pin(fut),
    url: parsed,
  });
  let cancel_handle_rid = state.resource_table.add(FetchCancelHandle(cancel));
  Ok(ServiceFetch {
    request_rid,
    cancel_handle_rid,
  })
}
