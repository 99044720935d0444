//! Steps 1-3 of a request on the front door: a connection accepted on an
//! executor thread, TLS if it came to the HTTPS listener, HTTP/1.1 or
//! HTTP/2 by hyper, then each request routed by its host to a worker and run
//! on this same thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use js_api::JsRequest;
use tokio::net::TcpStream;

use crate::body::{request_body, EdgeBody};
use crate::error::RequestError;
use crate::executor::Executor;
use crate::invoke::RunInfo;
use crate::logging::{AccessLine, RequestId};
use crate::tls::CertEntry;
use crate::worker::Worker;

/// hyper's executor for HTTP/2 streams: tasks stay on this thread.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
  fn execute(&self, fut: F) {
    tokio::task::spawn_local(fut);
  }
}

/// What a request needs to know about its connection.
struct Conn {
  tls: Option<Arc<CertEntry>>,
  peer: SocketAddr,
}

pub async fn serve_tcp(exec: Rc<Executor>, tcp: TcpStream, peer: SocketAddr, tls: bool) {
  if !tls {
    serve_http(exec, TokioIo::new(tcp), Conn { tls: None, peer }, false).await;
    return;
  }
  let Some(certs) = exec.shared.certs() else {
    return;
  };
  // Warm the worker of the named host while the handshake completes.
  let warm = |sni: Option<&str>| {
    if let Some(worker) = sni.and_then(|name| exec.shared.router().route(name).cloned()) {
      exec.pool.prewarm(&worker);
    }
  };
  let stats = &exec.shared.stats;
  match crate::tls::accept(tcp, &certs, warm).await {
    Ok(acc) => {
      stats.tls_handshakes.inc();
      let conn = Conn {
        tls: Some(acc.cert.clone()),
        peer,
      };
      serve_http(exec, TokioIo::new(acc.stream), conn, acc.h2).await;
    }
    Err(e) => {
      stats.handshake_failed(e.failure());
      tracing::debug!(%peer, "TLS: {e}");
    }
  }
}

async fn serve_http<I>(exec: Rc<Executor>, io: TokioIo<I>, conn: Conn, h2_only: bool)
where
  I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
  let conn = Rc::new(conn);
  let mut draining = exec.draining.clone();
  let stats = exec.shared.stats.clone();
  let svc = hyper::service::service_fn(move |req| handle(exec.clone(), conn.clone(), req));
  let mut builder = auto::Builder::new(LocalExec);
  builder.http1().timer(TokioTimer::new()).keep_alive(true);
  builder.http2().timer(TokioTimer::new());
  let builder = if h2_only { builder.http2_only() } else { builder };
  stats.open_connections.add(1);
  let connection = builder.serve_connection(io, svc);
  tokio::pin!(connection);
  let ended = tokio::select! {
    r = connection.as_mut() => r,
    _ = draining.wait_for(|d| *d) => {
      // HTTP/1.1: close after the response in progress; HTTP/2: GOAWAY,
      // then finish the open streams.
      connection.as_mut().graceful_shutdown();
      connection.await
    }
  };
  stats.open_connections.add(-1);
  if let Err(e) = ended {
    tracing::debug!("connection ended: {e}");
  }
}

const EDGE_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("edge-request-id");

async fn handle(exec: Rc<Executor>, conn: Rc<Conn>, req: Request<Incoming>) -> Result<Response<EdgeBody>, Infallible> {
  let started = Instant::now();
  let request_id = exec.next_request_id();
  let access = exec.shared.config.log.access;
  let (method, path, host) = if access {
    let host = request_host(req.uri(), req.headers()).unwrap_or("-").to_string();
    (req.method().clone(), req.uri().path().to_string(), host)
  } else {
    Default::default()
  };
  let mut info = RunInfo::default();
  let mut worker: Option<Arc<Worker>> = None;
  let result = route_and_run(&exec, &conn, req, request_id, &mut info, &mut worker).await;
  let mut res = finish(
    result,
    worker.as_deref(),
    started,
    &info,
    request_id,
    exec.shared.config.dev,
  );
  // The id the worker's console lines and the server's log carry.
  res.headers_mut().insert(EDGE_REQUEST_ID, request_id.header_value());
  if access {
    let line = AccessLine {
      request_id,
      peer: Some(conn.peer),
      host,
      worker: worker.map(|w| w.name.clone()),
      method,
      path,
      status: res.status().as_u16(),
      wall: started.elapsed(),
      cpu: info.cpu,
      cold: info.cold,
    };
    res.body_mut().log_access(line);
  }
  Ok(res)
}

/// The response of a request that was routed (or not), counted in its
/// worker's metrics; a failure logged and turned into its error response.
pub fn finish(
  result: Result<Response<EdgeBody>, RequestError>,
  worker: Option<&Worker>,
  started: Instant,
  info: &RunInfo,
  request_id: RequestId,
  dev: bool,
) -> Response<EdgeBody> {
  let (res, limit) = match result {
    Ok(res) => (res, None),
    Err(e) => {
      e.log(request_id);
      (e.to_response(dev), e.limit_kind())
    }
  };
  if let Some(w) = worker {
    w.stats.finished(res.status(), limit, started.elapsed(), info.cpu);
  }
  res
}

/// The host a request is for: HTTP/2's `:authority` (or an absolute URI),
/// else the `Host` header; `None` when neither names one.
fn request_host<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
  uri
    .authority()
    .map(|a| a.as_str())
    .or_else(|| headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
    .filter(|h| !h.is_empty())
}

async fn route_and_run(
  exec: &Rc<Executor>,
  conn: &Conn,
  req: Request<Incoming>,
  request_id: RequestId,
  info: &mut RunInfo,
  routed: &mut Option<Arc<Worker>>,
) -> Result<Response<EdgeBody>, RequestError> {
  let (parts, body) = req.into_parts();
  let host = request_host(&parts.uri, &parts.headers)
    .ok_or(RequestError::NoHost)?
    .to_string();
  let bare = crate::routing::strip_port(&host);
  if let Some(cert) = &conn.tls {
    if !cert.covers(bare) {
      return Err(RequestError::Misdirected { host: bare.to_string() });
    }
  }
  let router = exec.shared.router();
  let worker = router
    .route(&host)
    .ok_or_else(|| RequestError::NoRoute { host: bare.to_string() })?
    .clone();
  *routed = Some(worker.clone());
  let scheme = if conn.tls.is_some() { "https" } else { "http" };
  let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
  let mut url = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
  for part in [scheme, "://", &host, path] {
    url.push_str(part);
  }
  let (body, over) = request_body(body, worker.limits.request_body_bytes).map_err(|_| RequestError::Limit {
    worker: worker.name.to_string(),
    hit: crate::limits::LimitHit::body(
      worker.limits.request_body_bytes,
      "the declared Content-Length is larger",
    ),
  })?;
  let req = JsRequest {
    method: parts.method,
    url,
    headers: parts.headers,
    body,
  };
  crate::invoke::run(exec, &worker, req, over, request_id, info).await
}
