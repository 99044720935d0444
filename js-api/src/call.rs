//! One request through the handler: the values that cross into JS (method,
//! URL; headers and body lazily through ops) and the response that comes
//! back (status, headers, and a body that is bytes or a stream resource).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use deno_core::{v8, AsyncResult, BufView, OpState, Resource};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{JsApiError, JsException};
use crate::ext::body::RequestBody;

/// A request as the isolate takes it.
pub struct JsRequest {
  pub method: http::Method,
  /// The absolute URL the worker sees as `request.url`.
  pub url: String,
  pub headers: HeaderMap,
  pub body: Option<RequestBody>,
  /// Set for a cron trigger's run or a queue's delivery: the worker's
  /// `scheduled()` or `queue()` is called instead of `fetch()`.
  pub trigger: Option<Trigger>,
  /// `request.cf`, as JSON (the server's; shared by a connection's
  /// requests). `None`: `request.cf` is undefined.
  pub cf: Option<std::sync::Arc<str>>,
  /// For a service binding's request: its chain's budget of calls.
  pub chain: Option<crate::ServiceChain>,
  /// For a service binding's request: the named entrypoint (a class the
  /// main module exports) it calls instead of the default export.
  pub entrypoint: Option<String>,
}

/// A cron trigger's run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduled {
  /// The trigger's expression, as configured.
  pub cron: String,
  /// When it was due, in ms since the epoch (`controller.scheduledTime`).
  pub time_ms: f64,
}

/// What calls a handler other than `fetch()`.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
  Scheduled(Scheduled),
  /// The batch is the request's body.
  Queue(QueueDelivery),
  /// An RPC call over a service binding; the arguments are the body.
  Rpc(crate::ext::service::RpcCall),
}

/// A queue's delivery of a batch to its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDelivery {
  /// The queue's name (`batch.queue`).
  pub queue: String,
}

/// The response a handler produced.
pub struct JsResponse {
  pub status: http::StatusCode,
  pub headers: HeaderMap,
  pub body: JsBody,
  /// Settles when the request's `ctx.waitUntil` work is done.
  pub wait_until: Option<v8::Global<v8::Promise>>,
  /// The body is already in the coding its `Content-Encoding` names
  /// (`encodeBody: "manual"`, or a fetch() response passed on undecoded);
  /// otherwise the server applies that coding (gzip, br) as it sends it.
  pub encoded: bool,
}

pub enum JsBody {
  Empty,
  Bytes(Bytes),
  /// Written by JS while the isolate's event loop runs.
  Stream(ResponseStream),
}

pub enum CallState {
  Ready(JsResponse),
  Pending(PendingCall),
}

/// A handler that has not answered yet.
pub struct PendingCall {
  promise: v8::Global<v8::Promise>,
  id: u32,
}

impl PendingCall {
  /// The isolate's number for the request.
  pub fn id(&self) -> u32 {
    self.id
  }
}

/// Calls the bootstrap's `handle(reqId, method, url, bodyLength)`
/// (`bodyLength`: 0 for no body, -1 for a body of unknown length).
/// What the bootstrap's `handle()` is called with besides the request's
/// number.
pub(crate) struct CallArgs<'a> {
  pub method: &'a http::Method,
  pub url: &'a str,
  /// The body's declared length, -1 if it has none, 0 for no body.
  pub body_length: f64,
  pub trigger: Option<&'a Trigger>,
  pub entrypoint: Option<&'a str>,
}

pub(crate) fn invoke(
  scope: &mut v8::PinScope,
  handle: &v8::Global<v8::Function>,
  op_state: &Rc<RefCell<OpState>>,
  id: u32,
  args: CallArgs<'_>,
) -> Result<CallState, JsApiError> {
  let CallArgs {
    method,
    url,
    body_length,
    trigger,
    entrypoint,
  } = args;
  v8::tc_scope!(let tc, scope);
  let f = v8::Local::new(tc, handle);
  let id_n = id;
  let id = v8::Integer::new_from_unsigned(tc, id).into();
  let method = v8::String::new_from_one_byte(tc, method.as_str().as_bytes(), v8::NewStringType::Internalized)
    .ok_or_else(|| JsApiError::Threw(exception("method too long")))?
    .into();
  let url = v8::String::new_from_utf8(tc, url.as_bytes(), v8::NewStringType::Normal)
    .ok_or_else(|| JsApiError::Threw(exception("URL too long")))?
    .into();
  let body_length = v8::Number::new(tc, body_length).into();
  let undefined = v8::undefined(tc).into();
  let (cron, time) = match trigger {
    Some(Trigger::Scheduled(s)) => (
      v8::String::new(tc, &s.cron)
        .ok_or_else(|| JsApiError::Threw(exception("cron too long")))?
        .into(),
      v8::Number::new(tc, s.time_ms).into(),
    ),
    _ => (undefined, undefined),
  };
  let queue = match trigger {
    Some(Trigger::Queue(q)) => v8::String::new(tc, &q.queue)
      .ok_or_else(|| JsApiError::Threw(exception("queue name too long")))?
      .into(),
    _ => undefined,
  };
  let rpc = match trigger {
    Some(Trigger::Rpc(r)) => v8::String::new(tc, &r.method)
      .ok_or_else(|| JsApiError::Threw(exception("RPC method name too long")))?
      .into(),
    _ => undefined,
  };
  let entrypoint = match entrypoint {
    Some(e) => v8::String::new(tc, e)
      .ok_or_else(|| JsApiError::Threw(exception("entrypoint name too long")))?
      .into(),
    None => undefined,
  };
  let Some(ret) = f.call(
    tc,
    undefined,
    &[id, method, url, body_length, cron, time, queue, entrypoint, rpc],
  ) else {
    if tc.has_terminated() || tc.is_execution_terminating() {
      return Err(JsApiError::Terminated);
    }
    let e = tc.exception().map(|e| e.to_rust_string_lossy(tc)).unwrap_or_default();
    return Err(JsApiError::Threw(exception(&e)));
  };
  if let Ok(promise) = v8::Local::<v8::Promise>::try_from(ret) {
    // Run the microtasks the call queued: an `async fetch()` that awaits
    // nothing external has settled by the end of this.
    tc.perform_microtask_checkpoint();
    if tc.has_terminated() || tc.is_execution_terminating() {
      return Err(JsApiError::Terminated);
    }
    return match promise.state() {
      v8::PromiseState::Pending => Ok(CallState::Pending(PendingCall {
        promise: v8::Global::new(tc, promise),
        id: id_n,
      })),
      _ => {
        let value = promise.result(tc);
        read_tuple(tc, value, op_state).map(CallState::Ready)
      }
    };
  }
  read_tuple(tc, ret, op_state).map(CallState::Ready)
}

/// The response of a pending call, if its promise has settled.
pub(crate) fn settled(
  scope: &mut v8::PinScope,
  pending: &PendingCall,
  op_state: &Rc<RefCell<OpState>>,
) -> Option<Result<JsResponse, JsApiError>> {
  let p = v8::Local::new(scope, &pending.promise);
  match p.state() {
    v8::PromiseState::Pending => None,
    v8::PromiseState::Fulfilled => {
      let v = p.result(scope);
      Some(read_tuple(scope, v, op_state))
    }
    // The bootstrap turns every rejection into an error tuple; a rejection
    // here is a termination unwinding.
    v8::PromiseState::Rejected => Some(Err(JsApiError::Terminated)),
  }
}

fn exception(message: &str) -> JsException {
  JsException {
    message: message.to_string(),
    stack: None,
  }
}

/// Reads `[status, headerList|null, body, waitUntil, encoded?]` or the error tuple
/// `[-1, message, stack]` (see `serialize` in bootstrap.js).
fn read_tuple(
  scope: &mut v8::PinScope,
  value: v8::Local<v8::Value>,
  op_state: &Rc<RefCell<OpState>>,
) -> Result<JsResponse, JsApiError> {
  let bad = || JsApiError::Threw(exception("internal: malformed response tuple"));
  let arr = v8::Local::<v8::Array>::try_from(value).map_err(|_| bad())?;
  let status = arr.get_index(scope, 0).ok_or_else(bad)?;
  let status = status.int32_value(scope).ok_or_else(bad)?;
  if status < 0 {
    let message = arr
      .get_index(scope, 1)
      .map(|v| v.to_rust_string_lossy(scope))
      .unwrap_or_default();
    let stack = arr
      .get_index(scope, 2)
      .filter(|v| v.is_string())
      .map(|v| v.to_rust_string_lossy(scope));
    return Err(JsApiError::Threw(JsException { message, stack }));
  }
  let status = http::StatusCode::from_u16(status as u16)
    .map_err(|_| JsApiError::Threw(exception(&format!("invalid status {status}"))))?;

  let mut headers = HeaderMap::new();
  let list = arr.get_index(scope, 1).ok_or_else(bad)?;
  if list.is_null() {
    headers.insert(
      http::header::CONTENT_TYPE,
      HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
  } else {
    let list = v8::Local::<v8::Array>::try_from(list).map_err(|_| bad())?;
    let mut buf = Vec::new();
    for i in 0..list.length() {
      let pair = list.get_index(scope, i).ok_or_else(bad)?;
      let pair = v8::Local::<v8::Array>::try_from(pair).map_err(|_| bad())?;
      let name = pair.get_index(scope, 0).ok_or_else(bad)?;
      let value = pair.get_index(scope, 1).ok_or_else(bad)?;
      let name = latin1(scope, name, &mut buf)
        .and_then(|b| HeaderName::from_bytes(b).ok())
        .ok_or_else(bad)?;
      let value = latin1(scope, value, &mut buf)
        .and_then(|b| HeaderValue::from_bytes(b).ok())
        .ok_or_else(bad)?;
      headers.append(name, value);
    }
  }

  let body = arr.get_index(scope, 2).ok_or_else(bad)?;
  let body = if body.is_null_or_undefined() {
    JsBody::Empty
  } else if body.is_string() {
    let s = v8::Local::<v8::String>::try_from(body).map_err(|_| bad())?;
    let mut out = String::new();
    s.write_utf8_into(scope, &mut out);
    JsBody::Bytes(Bytes::from(out))
  } else if let Ok(view) = v8::Local::<v8::ArrayBufferView>::try_from(body) {
    let mut out = vec![0u8; view.byte_length()];
    view.copy_contents(&mut out);
    JsBody::Bytes(Bytes::from(out))
  } else if body.is_number() {
    let rid = body.uint32_value(scope).ok_or_else(bad)?;
    let resource = op_state.borrow_mut().resource_table.take_any(rid).map_err(|_| bad())?;
    JsBody::Stream(ResponseStream::new(resource))
  } else {
    return Err(bad());
  };

  let wait = arr.get_index(scope, 3);
  let wait_until = wait
    .and_then(|w| v8::Local::<v8::Promise>::try_from(w).ok())
    .map(|p| v8::Global::new(scope, p));
  // (Sent only when true.)
  let encoded = arr.length() > 4;
  Ok(JsResponse {
    status,
    headers,
    body,
    wait_until,
    encoded,
  })
}

/// A header name or value (a JS ByteString) as bytes.
fn latin1<'b>(scope: &mut v8::PinScope, v: v8::Local<v8::Value>, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
  let s = v8::Local::<v8::String>::try_from(v).ok()?;
  let len = s.length();
  buf.clear();
  buf.resize(len, 0);
  s.write_one_byte_v2(scope, 0, buf, v8::WriteFlags::empty());
  Some(&buf[..])
}

/// A streamed response body: reads the resource JS writes into. Lives on
/// the isolate's thread (the isolate's event loop must run to fill it).
pub struct ResponseStream {
  resource: Rc<dyn Resource>,
  read: Option<AsyncResult<BufView>>,
  shared: Rc<StreamShared>,
}

/// What the body and the task driving the isolate tell each other.
#[derive(Default)]
pub struct StreamShared {
  finished: Cell<bool>,
  abandoned: Cell<bool>,
  /// The body's reader, woken when the isolate abandons the stream.
  waker: RefCell<Option<Waker>>,
  /// The task driving the isolate, woken when the body finishes.
  drive_waker: RefCell<Option<Waker>>,
}

impl StreamShared {
  /// The driving task wants to know when the body is finished.
  pub fn set_drive_waker(&self, w: &Waker) {
    let mut slot = self.drive_waker.borrow_mut();
    if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
      *slot = Some(w.clone());
    }
  }

  fn finish(&self) {
    self.finished.set(true);
    if let Some(w) = self.drive_waker.borrow_mut().take() {
      w.wake();
    }
  }

  /// The body was read to its end or dropped.
  pub fn is_finished(&self) -> bool {
    self.finished.get()
  }

  /// The isolate stopped (limit, error, or nothing left to run): the body
  /// ends with an error at its next read.
  pub fn abandon(&self) {
    self.abandoned.set(true);
    if let Some(w) = self.waker.borrow_mut().take() {
      w.wake();
    }
  }
}

/// Why a streamed body ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
  #[error("the worker stopped before finishing the response body")]
  Abandoned,
  #[error("the worker's response stream failed: {0}")]
  Js(String),
}

impl ResponseStream {
  fn new(resource: Rc<dyn Resource>) -> Self {
    Self {
      resource,
      read: None,
      shared: Rc::default(),
    }
  }

  pub fn shared(&self) -> Rc<StreamShared> {
    self.shared.clone()
  }

  /// Next chunk; `None` at the end.
  pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
    if self.shared.finished.get() {
      return Poll::Ready(None);
    }
    if self.shared.abandoned.get() {
      self.shared.finish();
      return Poll::Ready(Some(Err(StreamError::Abandoned)));
    }
    let fut = self.read.get_or_insert_with(|| self.resource.clone().read(64 * 1024));
    match fut.as_mut().poll(cx) {
      Poll::Pending => {
        *self.shared.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
      }
      Poll::Ready(r) => {
        self.read = None;
        match r {
          Ok(buf) if buf.is_empty() => {
            self.shared.finish();
            Poll::Ready(None)
          }
          Ok(buf) => Poll::Ready(Some(Ok(Bytes::copy_from_slice(&buf)))),
          Err(e) => {
            self.shared.finish();
            Poll::Ready(Some(Err(StreamError::Js(e.to_string()))))
          }
        }
      }
    }
  }
}

impl Drop for ResponseStream {
  fn drop(&mut self) {
    self.shared.finish();
    self.resource.clone().close();
  }
}

impl http_body::Body for ResponseStream {
  type Data = Bytes;
  type Error = StreamError;

  fn poll_frame(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
  ) -> Poll<Option<Result<http_body::Frame<Bytes>, StreamError>>> {
    self
      .get_mut()
      .poll_chunk(cx)
      .map(|o| o.map(|r| r.map(http_body::Frame::data)))
  }
}
