//! Steps 2-3 of a request on the front door: TLS if the connection came to
//! the HTTPS listener, HTTP/1.1 or HTTP/2 by hyper, then each request
//! routed by its host to a worker and run on this same thread.

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

use edge_core::host::Authority;
use edge_core::request_id::RequestId;

use super::guard::{Activity, Slot, Watched};
use super::head::Head;
use super::slow::MinRate;
use super::tls::CertEntry;
use super::FrontDoor;
use crate::error::RequestError;
use crate::exec::body::{request_body, EdgeBody};
use crate::exec::context::RunInfo;
use crate::exec::jobs::{Job, RequestJob};
use crate::limits::{LimitHit, Phase};
use crate::obs::logging::{request_id_header, AccessLine};
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
  activity: Rc<Activity>,
  /// `request.cf` of its requests (JSON).
  cf: Arc<str>,
  /// With geo databases: the last client address seen (the peer, or what
  /// a trusted proxy said) and its `request.cf`.
  geo_cf: std::cell::RefCell<Option<(std::net::IpAddr, Arc<str>)>>,
}

impl Conn {
  /// `request.cf` of a request from `client`, looked up once per client a
  /// connection carries in a row.
  fn cf_for(&self, client: std::net::IpAddr, settings: &super::client::ClientSettings) -> Arc<str> {
    if settings.geo.is_none() {
      return self.cf.clone();
    }
    let mut last = self.geo_cf.borrow_mut();
    if let Some((ip, cf)) = &*last {
      if *ip == client {
        return cf.clone();
      }
    }
    let cf = super::client::cf_with_geo(&self.cf, client, settings);
    *last = Some((client, cf.clone()));
    cf
  }
}

/// Serves one accepted connection; `_slot` holds its place under the caps.
pub async fn serve_tcp(door: Rc<FrontDoor>, tcp: TcpStream, peer: SocketAddr, tls: bool, _slot: Slot) {
  let activity = Rc::new(Activity::default());
  if !tls {
    let conn = Conn {
      tls: None,
      peer,
      activity: activity.clone(),
      cf: super::client::cf_json(&door.view.client, false, None),
      geo_cf: Default::default(),
    };
    let mut io = Watched::new(tcp, activity, door.view.door.send_timeout, door.view.stats.clone());
    if door.view.door.strict_lines {
      io = io.strict_lines();
    }
    serve_http(door, io, conn, false).await;
    return;
  }
  let Some(certs) = door.view.certs() else {
    return;
  };
  // Warm the worker of the named host while the handshake completes.
  let warm = |sni: Option<&str>| {
    if let Some(worker) = sni.and_then(|name| door.view.router().route(name).cloned()) {
      door.ctx.pool.prewarm(&worker);
    }
  };
  let stats = door.view.stats.clone();
  let handshake = tokio::time::timeout(door.view.door.handshake_timeout, super::tls::accept(tcp, &certs, warm));
  match handshake.await {
    Ok(Ok(acc)) => {
      stats.tls_handshakes.inc();
      let conn = Conn {
        tls: Some(acc.cert.clone()),
        peer,
        activity: activity.clone(),
        cf: super::client::cf_json(&door.view.client, acc.h2, Some(acc.tls)),
        geo_cf: Default::default(),
      };
      let mut io = Watched::new(acc.stream, activity, door.view.door.send_timeout, stats);
      if door.view.door.strict_lines && !acc.h2 {
        io = io.strict_lines();
      }
      serve_http(door, io, conn, acc.h2).await;
    }
    Ok(Err(e)) => {
      stats.handshake_failed(e.failure());
      tracing::debug!(%peer, "TLS: {e}");
    }
    Err(_) => {
      stats.handshake_timeouts.inc();
      tracing::debug!(%peer, "TLS: handshake not finished within server.handshake_timeout_s");
    }
  }
}

/// HTTP/2: a connection quiet for the idle timeout plus this is pinged
/// (one with no request in flight has been closed by then: pings, which
/// count as activity, do not keep idle connections open); no answer
/// within this closes it.
const H2_PING: std::time::Duration = std::time::Duration::from_secs(20);

async fn serve_http<I>(door: Rc<FrontDoor>, io: Watched<I>, conn: Conn, h2_only: bool)
where
  I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
  let limits = door.view.door;
  let activity = conn.activity.clone();
  let conn = Rc::new(conn);
  let mut draining = door.view.draining();
  let stats = door.view.stats.clone();
  let svc = hyper::service::service_fn(move |req| handle(door.clone(), conn.clone(), req));
  let mut builder = auto::Builder::new(LocalExec);
  // The read buffer holds a request's whole head: its size caps the head
  // (431 past it). HTTP/2 caps the decoded header list the same.
  builder
    .http1()
    .timer(TokioTimer::new())
    .keep_alive(true)
    .max_buf_size(limits.max_header_bytes)
    .header_read_timeout(limits.header_timeout);
  builder
    .http2()
    .timer(TokioTimer::new())
    .max_header_list_size(limits.max_header_bytes.try_into().unwrap_or(u32::MAX))
    .keep_alive_interval(limits.idle_timeout + H2_PING)
    .keep_alive_timeout(H2_PING);
  let builder = if h2_only { builder.http2_only() } else { builder };
  stats.open_connections.add(1);
  let connection = builder.serve_connection(TokioIo::new(io), svc);
  tokio::pin!(connection);
  // Closed when nothing was sent or received for the idle timeout and no
  // request is in flight (before the first request too).
  let idle = activity.idle(limits.idle_timeout);
  let ended = tokio::select! {
    r = connection.as_mut() => r,
    _ = draining.wait_for(|d| *d) => {
      // HTTP/1.1: close after the response in progress; HTTP/2: GOAWAY,
      // then finish the open streams.
      connection.as_mut().graceful_shutdown();
      connection.await
    }
    _ = idle => {
      stats.idle_timeouts.inc();
      Ok(())
    }
  };
  stats.open_connections.add(-1);
  if let Err(e) = ended {
    tracing::debug!("connection ended: {e}");
  }
}

const EDGE_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("edge-request-id");

async fn handle(door: Rc<FrontDoor>, conn: Rc<Conn>, req: Request<Incoming>) -> Result<Response<EdgeBody>, Infallible> {
  let _in_flight = conn.activity.request();
  let started = Instant::now();
  let request_id = door.ctx.next_request_id();
  let access = door.view.access_log;
  let (method, path, host) = if access {
    let host = request_host(req.uri(), req.headers()).unwrap_or("-").to_string();
    (req.method().clone(), req.uri().path().to_string(), host)
  } else {
    Default::default()
  };
  let mut info = RunInfo::default();
  let mut worker: Option<Arc<Worker>> = None;
  let mut what = None;
  let result = route_and_run(
    &door,
    &conn,
    req,
    request_id,
    started,
    &mut info,
    &mut worker,
    &mut what,
  )
  .await;
  let mut res = finish(
    &door,
    result,
    worker.as_deref(),
    started,
    &info,
    request_id,
    what.as_ref(),
  );
  // The id the worker's console lines and the server's log carry.
  res.headers_mut().insert(EDGE_REQUEST_ID, request_id_header(request_id));
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
fn finish(
  door: &FrontDoor,
  result: Result<Response<EdgeBody>, RequestError>,
  worker: Option<&Worker>,
  started: Instant,
  info: &RunInfo,
  request_id: RequestId,
  what: Option<&(http::Method, String)>,
) -> Response<EdgeBody> {
  let (res, limit) = match result {
    Ok(res) => (res, None),
    Err(e) => {
      if !info.forwarded {
        e.log(request_id);
      }
      (e.to_response(door.view.dev).map(EdgeBody::full), e.limit_kind())
    }
  };
  if let Some(w) = worker.filter(|_| !info.forwarded) {
    door
      .ctx
      .finished(w, request_id, res.status(), limit, started.elapsed(), info, what);
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

/// The one host a request is for, checked (RFC 9112 3.2, RFC 9113
/// 8.3.1): the authority of its URI (HTTP/2's `:authority`, an absolute
/// HTTP/1.1 target) or its one `Host` header; both present, they must
/// agree.
fn request_authority(uri: &http::Uri, headers: &http::HeaderMap) -> Result<Authority, RequestError> {
  let bad = |why: String| RequestError::BadHost { why };
  let mut hosts = headers.get_all(http::header::HOST).iter();
  let header = hosts.next();
  if hosts.next().is_some() {
    return Err(bad("more than one Host header".into()));
  }
  let header = match header {
    Some(h) => Some(
      h.to_str()
        .map_err(|_| bad("the Host header is not visible ASCII".into()))?,
    ),
    None => None,
  };
  let parse = |s: &str| Authority::parse(s).map_err(|e| bad(e.to_string()));
  match (uri.authority(), header) {
    (Some(a), h) => {
      let authority = parse(a.as_str())?;
      if let Some(h) = h {
        if parse(h)? != authority {
          return Err(bad("the Host header differs from the request's authority".into()));
        }
      }
      Ok(authority)
    }
    (None, Some(h)) => parse(h),
    (None, None) => Err(RequestError::NoHost),
  }
}

#[allow(clippy::too_many_arguments)]
async fn route_and_run(
  door: &FrontDoor,
  conn: &Conn,
  req: Request<Incoming>,
  request_id: RequestId,
  started: Instant,
  info: &mut RunInfo,
  routed: &mut Option<Arc<Worker>>,
  what: &mut Option<(http::Method, String)>,
) -> Result<Response<EdgeBody>, RequestError> {
  let (mut parts, body) = req.into_parts();
  let head = super::head::check(&parts, &door.view.door)?;
  let authority = request_authority(&parts.uri, &parts.headers)?;
  if let Head::ServerOptions = head {
    return Ok(super::head::server_options());
  }
  let hops = js_api::hops_of(&parts.headers);
  if hops >= super::head::MAX_HOPS {
    door.view.stats.loops_refused.inc();
    return Err(RequestError::Loop { hops });
  }
  if let Some(cert) = &conn.tls {
    if !cert.covers(&authority.host) {
      return Err(RequestError::Misdirected { host: authority.host });
    }
  }
  let router = door.view.router();
  let worker = router
    .route(&authority.host)
    .ok_or_else(|| RequestError::NoRoute {
      host: authority.host.clone(),
    })?
    .clone();
  *routed = Some(worker.clone());
  // The worker sees the host it was routed by.
  let scheme = if conn.tls.is_some() { "https://" } else { "http://" };
  let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
  let mut url = String::with_capacity(scheme.len() + authority.host.len() + 6 + path.len());
  url.push_str(scheme);
  authority.write_url_host(&mut url);
  url.push_str(path);
  if worker.stats.tail.listening() {
    *what = Some((parts.method.clone(), url.clone()));
  }
  let limits = &door.view.door;
  let (body, slow) = MinRate::new(body, limits.min_body_rate, limits.body_rate_grace, started);
  let (body, over) = request_body(body, worker.limits.request_body_bytes).map_err(|_| RequestError::Limit {
    worker: worker.name.to_string(),
    hit: LimitHit::body(worker.limits.request_body_bytes, Phase::DeclaredBody),
  })?;
  // `edge dev --test-scheduled`: wrangler's way to run scheduled().
  let scheduled = match door.view.test_scheduled && parts.uri.path() == "/__scheduled" {
    true => Some(js_api::Trigger::Scheduled(dev_scheduled(parts.uri.query()))),
    false => None,
  };
  let client = super::client::forwarded(&mut parts.headers, conn.peer, conn.tls.is_some(), &door.view.client);
  let req = JsRequest {
    method: parts.method,
    url,
    headers: parts.headers,
    body,
    trigger: scheduled,
    cf: Some(conn.cf_for(client, &door.view.client)),
    chain: None,
    entrypoint: None,
  };
  let lane = door.view.quarantine();
  let result = match lane {
    Some(lane) if worker.stats.abuse.is_abusive(edge_core::abuse::second_at(started)) => {
      quarantined(lane, worker, req, over, request_id, info).await
    }
    _ => crate::exec::invoke::run(&door.ctx, &worker, req, over, request_id, None, info).await,
  };
  // A body that came too slowly failed whatever the worker made of it.
  if slow.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
    door.view.stats.slow_bodies.inc();
    return Err(RequestError::BodyTooSlow);
  }
  result
}

/// Runs the request of an abusive worker (most of its recent requests
/// ended at a limit) on the quarantine thread: the OS runs that thread
/// after this one, so its spinning costs the node's other tenants CPU
/// share, not latency. Counted and logged there.
async fn quarantined(
  lane: &tokio::sync::mpsc::UnboundedSender<Job>,
  worker: Arc<Worker>,
  req: JsRequest,
  body_over: Option<crate::exec::body::BodyOverLimit>,
  request_id: RequestId,
  info: &mut RunInfo,
) -> Result<Response<EdgeBody>, RequestError> {
  let (reply, answer) = tokio::sync::oneshot::channel();
  worker.stats.quarantined.inc();
  info.forwarded = true;
  let job = RequestJob {
    worker,
    req,
    body_over,
    request_id: Some(request_id),
    deadline: None,
    reply,
  };
  if lane.send(Job::Request(Box::new(job))).is_err() {
    return Err(RequestError::ShuttingDown);
  }
  match answer.await {
    Ok(Ok(h)) => {
      (info.cpu, info.cold) = (h.cpu, h.cold);
      Ok(h.response.map(EdgeBody::from_send))
    }
    Ok(Err(f)) => {
      (info.cpu, info.cold) = (f.cpu, f.cold);
      Err(*f.error)
    }
    Err(_) => Err(RequestError::ShuttingDown),
  }
}

/// The run `/__scheduled?cron=...` asks for (wrangler's query; the cron
/// defaults to every minute), due now.
fn dev_scheduled(query: Option<&str>) -> js_api::Scheduled {
  let cron = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
    .find(|(k, _)| k == "cron")
    .map_or_else(|| "* * * * *".to_string(), |(_, v)| v.into_owned());
  let time_ms = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0.0, |d| d.as_millis() as f64);
  js_api::Scheduled { cron, time_ms }
}
