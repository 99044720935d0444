//! The admin API, on its own listener and thread (off unless `[admin]
//! listen` is set): deploy, list and remove workers, and `/metrics`. Every
//! request carries `Authorization: Bearer <token>`; the public listeners
//! never answer these paths.
//!
//! - `PUT /workers/{name}`: a `multipart/form-data` body with a `metadata`
//!   part (JSON: `main_module`, `routes`, `vars`, `limits`,
//!   `allow_private_network`) and one part per module, named by its path.
//! - `GET /workers`, `GET /workers/{name}`, `DELETE /workers/{name}`.
//! - `GET /metrics`: Prometheus text format.
//!
//! With `runtime.processes` > 1 the supervisor serves this listener with
//! `/metrics` alone, summed over its processes ([`AdminServer::metrics_only`]);
//! deploys go through the config file there.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::deploy::{Deployer, WorkerInfo};
use crate::error::DeployError;
use crate::obs::stats::Stats;
use crate::worker::{Upload, UploadMeta};

/// The largest upload body accepted: the modules' cap and room for the
/// multipart framing.
const MAX_UPLOAD: usize = crate::worker::MAX_UPLOAD_BYTES + (1 << 20);

/// The running admin listener.
pub struct AdminServer {
  pub addr: std::net::SocketAddr,
  stop: watch::Sender<bool>,
  thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
  pub fn start(
    deployer: Arc<Deployer>,
    stats: Arc<Stats>,
    listener: std::net::TcpListener,
    token: String,
  ) -> std::io::Result<Self> {
    Self::serve(Control::Deploys { deployer, stats }, listener, token)
  }

  /// `/metrics` only, rendered by `metrics` (called on a blocking thread);
  /// the deploy paths answer 409.
  pub fn metrics_only(
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
    listener: std::net::TcpListener,
    token: String,
  ) -> std::io::Result<Self> {
    Self::serve(Control::MetricsOnly(metrics), listener, token)
  }

  fn serve(control: Control, listener: std::net::TcpListener, token: String) -> std::io::Result<Self> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let (stop, mut stopped) = watch::channel(false);
    let token: Arc<[u8]> = Arc::from(token.into_bytes());
    let thread = std::thread::Builder::new().name("edge-admin".into()).spawn(move || {
      let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
          tracing::error!("admin: cannot build its runtime: {e}");
          return;
        }
      };
      rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
          Ok(l) => l,
          Err(e) => {
            tracing::error!("admin: cannot use its listener: {e}");
            return;
          }
        };
        loop {
          let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
              Ok(a) => a,
              Err(e) => {
                tracing::warn!("admin: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
              }
            },
            _ = stopped.wait_for(|s| *s) => return,
          };
          let api = Api {
            control: control.clone(),
            token: token.clone(),
          };
          tokio::spawn(async move {
            let api = Arc::new(api);
            let svc = hyper::service::service_fn(move |req| serve(api.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
              .timer(TokioTimer::new())
              .serve_connection(TokioIo::new(tcp), svc)
              .await;
          });
        }
      });
    })?;
    Ok(Self {
      addr,
      stop,
      thread: Some(thread),
    })
  }
}

impl Drop for AdminServer {
  fn drop(&mut self) {
    let _ = self.stop.send(true);
    if let Some(t) = self.thread.take() {
      let _ = t.join();
    }
  }
}

type Reply = Response<Full<Bytes>>;

/// What the admin API reaches.
#[derive(Clone)]
enum Control {
  /// The deployer and the counters of this process.
  Deploys { deployer: Arc<Deployer>, stats: Arc<Stats> },
  /// A supervisor's: the processes' metrics, summed.
  MetricsOnly(Arc<dyn Fn() -> String + Send + Sync>),
}

struct Api {
  control: Control,
  token: Arc<[u8]>,
}

async fn serve(api: Arc<Api>, req: Request<Incoming>) -> Result<Reply, Infallible> {
  if !authorized(&req, &api.token) {
    let mut res = text(
      StatusCode::UNAUTHORIZED,
      "401 Unauthorized: send Authorization: Bearer <token>\n",
    );
    res
      .headers_mut()
      .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    return Ok(res);
  }
  let path = req.uri().path().to_string();
  let method = req.method().clone();
  let (deployer, stats) = match &api.control {
    Control::Deploys { deployer, stats } => (deployer, stats),
    Control::MetricsOnly(metrics) => {
      return Ok(match (method, path.as_str()) {
        (Method::GET, "/metrics") => {
          let metrics = metrics.clone();
          let text = tokio::task::spawn_blocking(move || metrics()).await.unwrap_or_default();
          metrics_reply(text)
        }
        _ => text(
          StatusCode::CONFLICT,
          "409 Conflict: with runtime.processes > 1 workers are deployed through the config file \
           (SIGHUP reloads every process); this listener has /metrics\n",
        ),
      });
    }
  };
  let res = match (method, path.as_str()) {
    (Method::GET, "/metrics") => metrics_reply(crate::obs::metrics::render(stats)),
    (Method::GET, "/workers") => {
      let list: Vec<WorkerInfo> = deployer.workers().await.iter().map(|w| WorkerInfo::of(w)).collect();
      json(StatusCode::OK, &list)
    }
    (method, p) if p.starts_with("/workers/") => {
      let name = &p["/workers/".len()..];
      match method {
        Method::GET => match deployer.workers().await.iter().find(|w| &*w.name == name) {
          Some(w) => json(StatusCode::OK, &WorkerInfo::of(w)),
          None => DeployError::NotFound { name: name.into() }.to_response(),
        },
        Method::PUT => match read_upload(name, req).await {
          Ok(upload) => match deployer.deploy(upload).await {
            Ok(d) => json(StatusCode::OK, &d),
            Err(e) => e.to_response(),
          },
          Err(e) => e.to_response(),
        },
        Method::DELETE => match deployer.remove(name).await {
          Ok(()) => {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
          }
          Err(e) => e.to_response(),
        },
        _ => text(
          StatusCode::METHOD_NOT_ALLOWED,
          "405 Method Not Allowed: use GET, PUT or DELETE\n",
        ),
      }
    }
    _ => text(
      StatusCode::NOT_FOUND,
      "404 Not Found: the admin API has /workers, /workers/{name} and /metrics\n",
    ),
  };
  Ok(res)
}

fn metrics_reply(text: String) -> Reply {
  let mut res = Response::new(Full::new(Bytes::from(text)));
  res.headers_mut().insert(
    http::header::CONTENT_TYPE,
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
  );
  res
}

/// The bearer token, compared in constant time (only its length can leak).
fn authorized(req: &Request<Incoming>, token: &[u8]) -> bool {
  let Some(given) = req
    .headers()
    .get(http::header::AUTHORIZATION)
    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
  else {
    return false;
  };
  constant_time_eq(given, token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
  if a.len() != b.len() {
    return false;
  }
  let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
  // Keep the comparison from being short-circuited by the optimiser.
  std::hint::black_box(diff) == 0
}

/// Reads a multipart upload: the `metadata` part and the module parts.
async fn read_upload(name: &str, req: Request<Incoming>) -> Result<Upload, DeployError> {
  let invalid = |m: String| DeployError::Invalid(m);
  let boundary = req
    .headers()
    .get(http::header::CONTENT_TYPE)
    .and_then(|v| v.to_str().ok())
    .and_then(|ct| multer::parse_boundary(ct).ok())
    .ok_or_else(|| invalid("send the worker as multipart/form-data (a metadata part and module parts)".into()))?;
  let body = Limited::new(req.into_body(), MAX_UPLOAD)
    .collect()
    .await
    .map_err(|e| invalid(format!("cannot read the upload (at most {} MB): {e}", MAX_UPLOAD >> 20)))?
    .to_bytes();
  let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
  let mut form = multer::Multipart::new(stream, boundary);
  let mut meta: Option<UploadMeta> = None;
  let mut modules = BTreeMap::new();
  while let Some(field) = form
    .next_field()
    .await
    .map_err(|e| invalid(format!("bad multipart body: {e}")))?
  {
    let part = field
      .name()
      .map(str::to_string)
      .ok_or_else(|| invalid("every part needs a name".into()))?;
    let bytes = field
      .bytes()
      .await
      .map_err(|e| invalid(format!("part {part:?}: {e}")))?;
    if part == "metadata" {
      meta = Some(serde_json::from_slice(&bytes).map_err(|e| invalid(format!("metadata: {e}")))?);
    } else if modules.insert(part.clone(), bytes).is_some() {
      return Err(invalid(format!("module {part:?} is in the upload twice")));
    }
  }
  let meta = meta.ok_or_else(|| invalid("the upload has no metadata part".into()))?;
  Ok(Upload {
    name: name.to_string(),
    meta,
    modules,
  })
}

fn text(status: StatusCode, body: &'static str) -> Reply {
  let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
  *res.status_mut() = status;
  res.headers_mut().insert(
    http::header::CONTENT_TYPE,
    HeaderValue::from_static("text/plain; charset=utf-8"),
  );
  res
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Reply {
  let body = serde_json::to_vec_pretty(v).unwrap_or_default();
  let mut res = Response::new(Full::new(Bytes::from(body)));
  *res.status_mut() = status;
  res
    .headers_mut()
    .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
  res
}
